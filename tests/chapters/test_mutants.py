"""The solution earns full points with no cell raising, every mutant of every exercise loses its points with
feedback that names what it broke, every alternative-correct fixture earns full points, every rule has a mutant
that loses on one of the rule's edge cases, the cases are deterministic (the fresh run's outputs of the
solution equal the reference run's, bit for bit), and every library ban catches a name bound at import time:
one sandbox run per chapter serves them all.
(A file of its own, so that `pytest -n 2 --dist loadfile` spreads the heaviest tests over both workers.)"""
import numpy as np
import pytest

from llmprep.grading import engine
from llmprep.grading.collect import outputs_of
from llmprep.grading.engine import all_chapters, load_spec

# The last chapter first: test_grading.py, on the other worker, asks for the reference outputs from the first, so
# the two meet once in the middle instead of waiting on each other's computation chapter after chapter.
CHAPTERS = all_chapters()[::-1]
BAN = "library bound at import time"  # the variant of each banning exercise that calls its banned library
_runs: dict = {}


def _run(reference, chapter):
    """(reference run, mutant run) of ``chapter``, once per test process: the solution with every banned callable
    bound at import time in its first code cell, every mutant, every alternative, and one ``extra:`` variant per
    exercise that bans something."""
    if chapter not in _runs:
        reference(chapter)  # computed once per session (and cached on disk), not beside the other worker
        spec = load_spec(chapter)
        bindings, extra = _ban_variants([ex for ex in spec.exercises if ex.bans])
        if bindings:
            def edit(nb):
                first = next(c for c in nb.cells if c.cell_type == "code")
                first.source = bindings + first.source
        else:
            edit = None
        _runs[chapter] = engine.mutant_run(chapter, edit=edit, extra=extra)
    return _runs[chapter]


@pytest.mark.sandbox
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_mutant_loses_points(reference, chapter):
    ref, run = _run(reference, chapter)
    verdicts = engine.judge_variants(chapter, ref, run)
    spec = load_spec(chapter)
    _same_outputs_as_the_reference(ref, run)
    for _grade_id, verdict in verdicts[engine.SUBMITTED].items():  # the solution earns full points
        assert verdict.points == verdict.max_points, verdict
    raised = [c for c in ref.cells + run.cells if c.get("status") == "error"]
    assert not raised, f"cells of the solution raised: {raised}"
    misses = []
    for ex in spec.exercises:
        for mutant in ex.mutants:
            verdict = verdicts[f"mutant:{mutant}"][ex.grade_id]
            assert verdict.points < verdict.max_points, f"{ex.grade_id}: mutant '{mutant}' survived"
            word = ex.mentions(mutant)
            assert word and word.lower() in verdict.message.lower(), (
                f"{ex.grade_id}: the feedback on mutant '{mutant}' does not name {word!r}: {verdict.message}")
        for alt in ex.alternatives:
            verdict = verdicts[f"alt:{alt}"][ex.grade_id]
            assert verdict.points == verdict.max_points, \
                f"{ex.grade_id}: correct alternative '{alt}' rejected: {verdict}"
        misses.extend(_rules_not_broken_on_their_edge(ex, ref, run))
    assert not misses, misses


def _failed_cases(ex, ref, run, variant) -> set[str]:
    """The names of the cases on which ``variant`` loses (an error, or the judge's reason)."""
    want = outputs_of(ref, ex.grade_id, engine.SUBMITTED, len(ex.cases))
    got = outputs_of(run, ex.grade_id, variant, len(ex.cases))
    failed = set()
    for case, (g_status, g), (_, w) in zip(ex.cases, got, want):
        if g_status != "ok" or ex.judge(g, w, case.params):
            failed.add(case.name)
    return failed


def _rules_not_broken_on_their_edge(ex, ref, run) -> list[str]:
    """Issue 29: a rule's edge case is not decoration: at least one of the rule's mutants loses on one of the edge
    cases the rule names (so a wrong answer that breaks the rule exactly there is caught there). Returns the misses."""
    edges = {c.name for c in ex.cases if c.edge}
    misses = []
    for rule in ex.rules:
        named = set(rule.cases) & edges
        if not any(_failed_cases(ex, ref, run, f"mutant:{m}") & named for m in rule.mutants):
            misses.append(f"{ex.grade_id}: no mutant of rule {rule.quote!r} loses on its edge cases {sorted(named)}")
    return misses


def _same_outputs_as_the_reference(ref, run):
    """The cases are deterministic: the solution's outputs in this fresh run equal the (cached or fresh)
    reference run's, bit for bit."""
    assert ref.ok and run.ok
    submitted = f"|{engine.SUBMITTED}|"
    want = {k for k in ref.arrays if submitted in k}
    got = {k for k in run.arrays if submitted in k}
    assert want and want == got
    for key in want:
        np.testing.assert_array_equal(ref.arrays[key], run.arrays[key], err_msg=key)


# --------------------------------------------------------------------------- every library ban

@pytest.mark.sandbox
@pytest.mark.parametrize("chapter", [c for c in CHAPTERS if any(ex.bans for ex in load_spec(c).exercises)])
def test_every_ban_catches_a_name_bound_at_import_time(reference, chapter):
    """Each banned callable of every exercise, bound at import time before any other cell ran (a module the
    notebook had not imported yet included), is refused while that exercise is probed: the variant that calls
    it loses the points with the ban's own words. The bindings sit in the solution's first cell of the same run,
    where the solution keeps full points and no cell raises (binding and calling outside the probes is allowed:
    test_every_mutant_loses_points)."""
    ref, run = _run(reference, chapter)
    for ex in load_spec(chapter).exercises:
        if not ex.bans:
            continue
        verdict = engine.judge_exercise(ex, run, ref, f"extra:{BAN}")
        label = ex.bans[0][2]
        assert verdict.points == 0, verdict
        assert "is not in force" not in verdict.message, verdict.message
        assert f"calls {label}, which this exercise asks you to write yourself" in verdict.message, verdict


def _binding(owner: str, name: str, alias: str) -> str:
    """Source that binds ``owner.name`` to ``alias`` the way a student would at import time: ``from module
    import name as alias``, or ``import module`` then the attribute path (a method of a library class)."""
    import importlib.util

    parts = owner.split(".")
    for cut in range(len(parts), 0, -1):
        module = ".".join(parts[:cut])
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            found = None
        if found is not None:
            rest = parts[cut:]
            if not rest:
                return f"from {module} import {name} as {alias}\n"
            return f"import {module} as {alias}_module\n{alias} = {alias}_module.{'.'.join(rest)}.{name}\n"
    raise AssertionError(f"no importable module in {owner}")


def _ban_variants(exercises) -> tuple[str, dict[str, dict[str, str]]]:
    """(the bindings of every banned callable for the first code cell, {grade_id: {BAN: variant source}}): the
    variant first calls each banned callable of its exercise by its global name (no arguments: a ban in force
    raises before the library runs), then the first one for real; a banned callable that does not raise the ban's
    error says so."""
    bindings, extra = [], {}
    for n, ex in enumerate(exercises):
        aliases = []
        for m, (owner, name, label) in enumerate(ex.bans):
            alias = f"_banned_{n}_{m}"
            bindings.append(_binding(owner, name, alias))
            aliases.append(f"({label!r}, {alias!r})")
        fn = ex.functions[0]
        extra[ex.grade_id] = {BAN: (
            f"_LIBRARY = [{', '.join(aliases)}]\n_SOLUTION = {fn}\n\n"
            f"def {fn}(*args, **kwargs):\n"
            f"    for label, name in _LIBRARY:\n"
            f"        try:\n"
            f"            globals()[name]()\n"
            f"        except RuntimeError as exc:\n"
            f"            if 'which this exercise asks you to write yourself' in str(exc):\n"
            f"                continue\n"
            f"        except Exception:\n"
            f"            pass\n"
            f"        raise AssertionError(f'the ban of {{label}} is not in force')\n"
            f"    globals()[_LIBRARY[0][1]]()\n"
            f"    return _SOLUTION(*args, **kwargs)\n")}
    return "".join(bindings), extra

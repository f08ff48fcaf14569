"""How well the hint ladder tells the known mistakes apart (the README's figure; ``benchmarks/hint_coverage.py``):
every mutant of a chapter submitted as if a learner wrote it and diagnosed as a graded submission is. Imported by
the benchmark and the tests only (it needs the whole engine, which itself uses :mod:`llmprep.grading.hints`)."""
from __future__ import annotations

from dataclasses import dataclass

from llmprep.grading import engine
from llmprep.grading.hints import diagnose
from llmprep.grading.judge import case_outcomes, judge_exercise
from llmprep.grading.reference import mistakes_run


@dataclass
class MutantCoverage:
    grade_id: str
    mutant: str
    shown: list[str]  # the mutants whose hints a submission written as this mutant is shown
    own: bool  # its own hint is among them
    unique: bool  # and it is the only one
    hint_written: bool  # the spec gives it a Hint (else its name stands in)
    zh_written: bool  # ... with a Chinese text
    verdict_zh: bool = True  # its verdict's reason is in Chinese too (a sentence of the shared judges)


def coverage(chapter: str, limits=None) -> tuple[list[MutantCoverage], dict[str, bool]]:
    """Each mutant of ``chapter`` submitted as if a learner wrote it (one fresh sandbox run of the solution
    notebook with every mutant and alternative swapped in, ``engine.mutant_run``), diagnosed against the cached
    known mistakes (``mistakes_run``) exactly as a graded submission is. Returns the per-mutant coverage and, per
    alternative-correct fixture (``grade_id/name``), whether it was (wrongly) given a hint."""
    spec = engine.load_spec(chapter)
    ref, run = engine.mutant_run(chapter, limits=limits)
    mistakes = mistakes_run(chapter, limits)
    rows, alternatives = [], {}
    for ex in spec.exercises:
        for name in ex.mutants:
            got_all, want_all = case_outcomes(ex, run, ref, f"mutant:{name}")
            diagnosis = diagnose(ex, got_all, want_all, mistakes)
            shown = [m.mutant for m in diagnosis.matched] if diagnosis else []
            hint = ex.mutants[name].hint
            zh = judge_exercise(ex, run, ref, f"mutant:{name}").message_zh
            rows.append(MutantCoverage(ex.grade_id, name, shown, name in shown, shown == [name],
                                       hint is not None, bool(hint is not None and hint.zh), "（英文原文）" not in zh))
        for alt in ex.alternatives:
            got_all, want_all = case_outcomes(ex, run, ref, f"alt:{alt}")
            alternatives[f"{ex.grade_id}/{alt}"] = diagnose(ex, got_all, want_all, mistakes) is not None
    return rows, alternatives

"""Stage 1 of grading one submission: read the notebook as data (never executing it here),
match it to a chapter, and turn it into the job the sandbox executes (its shape:
:class:`llmprep.grading.protocol.Job`)."""
from __future__ import annotations

from pathlib import Path

from llmprep.grading import protocol
from llmprep.grading.protocol import SUBMITTED
from llmprep.grading.spec import Exercise
from llmprep.grading.trusted import GradingError, all_chapters, load_spec

__all__ = ["SUBMITTED", "build_job", "code_cells", "match_chapter", "nbgrader_meta", "pick_notebook", "read_notebook",
           "read_submission", "test_cells"]
MAX_NOTEBOOK_BYTES = 50 * 2**20
MAX_CANDIDATES = 20  # notebooks of a submission folder considered when the expected name is missing
MAX_CANDIDATE_BYTES = 64 * 2**20  # and their total size


def read_notebook(path: Path):
    """The notebook as an nbformat v4 node; GradingError with a one-line reason if unreadable."""
    import nbformat

    path = Path(path)
    if path.is_dir():
        raise GradingError(f"{path} is a folder, not a notebook")
    if not path.is_file():
        raise GradingError(f"{path} does not exist")
    if path.stat().st_size > MAX_NOTEBOOK_BYTES:
        raise GradingError(f"{path.name} is larger than {MAX_NOTEBOOK_BYTES // 2**20} MiB")
    try:
        nb = nbformat.read(str(path), as_version=4)
        if not isinstance(nb.get("cells"), list):
            raise ValueError("no cell list")
    except Exception as exc:  # noqa: BLE001 - any parse failure is the student's file, one line
        raise GradingError(f"{path.name} is not a readable notebook ({type(exc).__name__})") from None
    return nb


def nbgrader_meta(cell) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader", {}) if isinstance(cell.get("metadata"), dict) else {}
    return meta if isinstance(meta, dict) else {}


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def test_cells(nb) -> dict[str, dict]:
    """grade_id -> {points, index} of the graded test cells (grade true, solution false)."""
    found = {}
    for i, cell in enumerate(nb.cells):
        meta = nbgrader_meta(cell)
        if meta.get("grade") and not meta.get("solution") and cell.get("cell_type") == "code":
            try:
                points = float(meta.get("points", 0) or 0)
            except (TypeError, ValueError):
                points = 0.0
            found[str(meta.get("grade_id"))] = {"points": points, "index": i}
    return found


def match_chapter(nb, name: str | None = None) -> str:
    """The chapter whose spec shares the most grade ids with the notebook. ``name`` (the notebook's
    file name) only improves the message for a notebook that has no graded cells at all."""
    ids = set(test_cells(nb))
    best, overlap = None, 0
    for chapter in all_chapters():
        n = len(ids & {ex.grade_id for ex in load_spec(chapter).exercises})
        if n > overlap:
            best, overlap = chapter, n
    if best is None:
        if not any(nbgrader_meta(cell) for cell in nb.cells):
            raise GradingError(_no_exercises(name))
        raise GradingError("no graded cell of this notebook matches an exercise of the course "
                           "(were the test cells deleted or their ids changed?)")
    return best


def _no_exercises(name: str | None) -> str:
    """The message for a notebook without any nbgrader cell (a chapter's reference notebook, a scratch
    notebook): it has nothing to grade; name the chapter's exercises notebook when the file name tells it."""
    prefix = (name or "").split("_")[0]
    for chapter in all_chapters() if prefix.startswith("ch") else ():
        if chapter.split("_")[0] == prefix:
            exercises = load_spec(chapter).notebook
            if name == exercises:
                return (f"{name} has lost its graded cells (no nbgrader metadata is left: were its cells copied "
                        f"into a new notebook?); start again from a fresh copy (llmprep start {chapter}) "
                        "/ 这个笔记本的评分单元格元数据丢失了，请从新的副本开始")
            kind = "it is the chapter's reference notebook; " if "reference" in (name or "") else ""
            return (f"{name} has no graded exercises ({kind}the graded exercises of {chapter} are in {exercises}, "
                    f"beside it: check that notebook) / 这个笔记本没有评分练习，本章练习在 {exercises}")
    return ("no graded cell of this notebook matches an exercise of the course: it has no graded cells at all "
            "(each chapter's graded exercises are in its chNN_exercises.ipynb: check that notebook) "
            "/ 这个笔记本没有评分练习，练习在各章的 chNN_exercises.ipynb")


def code_cells(nb) -> list[dict]:
    """The cells the sandbox executes; visible test cells are skipped (they do not grade).

    ``index`` counts every cell from 0 (as nbformat does); ``label`` names the cell as the learner
    sees it in Jupyter: its position counting from 1, and the exercise whose answer it holds."""
    cells = []
    for i, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        meta = nbgrader_meta(cell)
        skip = bool(meta.get("grade")) and not meta.get("solution")
        gid = meta.get("grade_id") if meta.get("solution") else None
        label = f"cell {i + 1}" + (f" (your answer for {gid})" if gid else "")
        cells.append({"index": i, "source": _source(cell), "grade_id": str(gid) if gid else None,
                      "label": label, "skip": skip})
    return cells


def build_job(nb, exercises: list[Exercise], mutants: bool = False) -> protocol.Job:
    """What the sandbox executes: the code cells, then each exercise's probe on every case for
    the submission (and, for the test suite, every mutant and alternative-correct fixture)."""
    return protocol.job(
        cells=code_cells(nb),
        bans={ex.grade_id: [list(b) for b in ex.bans] for ex in exercises if ex.bans},
        exercises=[
            {
                "grade_id": ex.grade_id,
                "probe": ex.probe_source,
                "cases": [{"name": c.name, "params": c.params} for c in ex.cases],
                "variants": [{"name": SUBMITTED, "patch": None}] + (
                    [{"name": f"mutant:{m}", "patch": ex.mutant_source(m)} for m in ex.mutants]
                    + [{"name": f"alt:{a}", "patch": ex.alternative_source(a)} for a in ex.alternatives]
                    if mutants else []),
            }
            for ex in exercises
        ],
    )


def pick_notebook(folder: Path, spec) -> tuple[Path | None, str]:
    """The submitted notebook to grade: the expected name, else the one sharing most grade ids
    with the chapter (students rename files). Returns (path, note). Symlinks are never followed."""
    path, _nb, note = find_notebook(folder, spec)
    return path, note


def find_notebook(folder: Path, spec):
    """As :func:`pick_notebook`, with the notebook node when picking it meant reading it: (path, nb or None, note)."""
    expected = folder / spec.notebook
    if expected.is_file() and not expected.is_symlink():
        return expected, None, ""
    ids = {ex.grade_id for ex in spec.exercises}
    best, best_nb, overlap = None, None, 0
    budget = MAX_CANDIDATE_BYTES
    candidates = [p for p in sorted(folder.glob("*.ipynb"))[:MAX_CANDIDATES]
                  if not p.is_symlink() and p.is_file()]
    for candidate in candidates:  # a cap on what the trusted process parses before the sandbox starts
        size = candidate.stat().st_size
        if size > budget:
            continue
        budget -= size
        try:
            nb = read_notebook(candidate)
            n = len(ids & set(test_cells(nb)))
        except GradingError:
            continue
        if n > overlap:
            best, best_nb, overlap = candidate, nb, n
    if best is None:
        return None, None, f"no notebook with this assignment's graded cells in {folder.name}/"
    return best, best_nb, f"graded {best.name} as {spec.notebook} ({overlap} of {len(ids)} graded cells matched)"


def read_submission(sub) -> bool:
    """Stage 1 for a :class:`~llmprep.grading.engine.Submission`: the notebook (for a class, picked in the
    submission folder: the expected name, else the renamed one with most of the assignment's graded cells)
    parsed once, matched to a chapter (the one asked for, if any), that chapter's exercises, the graded
    cells present, and the job the sandbox executes. False, with the one-line reason
    in ``sub.notes``, when it cannot be graded; a broken spec is the grader's GradingError."""
    if sub.path is None:  # a class's submission folder: the notebook the assignment asked for, maybe renamed
        sub.path, sub.nb, note = find_notebook(sub.folder, load_spec(sub.expected))
        if note:
            sub.notes.append(note)
        if sub.path is None:
            sub.missing = True
            return False
    try:
        if sub.nb is None:
            sub.nb = read_notebook(sub.path)
        sub.chapter = match_chapter(sub.nb, sub.path.name)
    except GradingError as exc:
        sub.notes.append(str(exc))
        return False
    if sub.expected is not None and sub.chapter != sub.expected:
        sub.notes.append(f"this is the {sub.chapter} notebook; expected {sub.expected}")
        return False
    sub.exercises = list(load_spec(sub.chapter).exercises)
    sub.present = test_cells(sub.nb)
    sub.job = build_job(sub.nb, sub.exercises)
    sub.labels = {c["index"]: c["label"] for c in sub.job["cells"]}
    sub.matched = True
    return True

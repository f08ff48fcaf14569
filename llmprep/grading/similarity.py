"""`llmprep similarity CHAPTER`: which submissions' answers look alike, for an instructor to read.

Every ``submitted/<student>/<CHAPTER>/`` notebook (the assignment's name, else the renamed one with most
of its graded cells, as ``llmprep grade`` picks it) is read as data, never run; its answer cells (nbgrader
``solution`` code cells) are joined into one Python text. ``copydetect`` (winnowed k-gram fingerprints
of the token stream with names, strings and comments normalised away, after Schleimer, Wilkerson and
Aiken's MOSS) fingerprints each text, minus the fingerprints of the released stub's answer cells, so
that the code everyone was given (signatures, ``raise NotImplementedError()``) never makes two
submissions alike. Every pair is compared by the share of fingerprints it has in common (set
intersections), and the 2,000 pairs sharing most are measured in full by copydetect: for a pair (A, B)
``similarity_a`` is the share of A's fingerprinted code found in B, and the pairs are ranked by the larger of
the two.

The report is a signal for a person, never a verdict: it changes no grade. Student code and names are
hostile text: every one of them is HTML-escaped in the report and made formula-safe in the CSV.
Outputs: ``build/similarity/CHAPTER.html`` and ``build/similarity/CHAPTER.csv`` (the most similar pairs).
"""
from __future__ import annotations

import csv
import html
import io
import itertools
import sys
from dataclasses import dataclass, field
from pathlib import Path

MAX_ANSWER_CHARS = 200_000  # per submission: the rest is not compared (and the report says so)
SHOWN_PAIRS = 10  # pairs whose code the HTML report shows side by side


@dataclass
class Pair:
    a: str
    b: str
    similarity_a: float  # share of a's fingerprinted answer code also in b
    similarity_b: float
    overlap: int  # tokens of a's filtered code in shared fingerprints
    slices_a: list = field(default_factory=list)  # [(start, end)] in a's answer text
    slices_b: list = field(default_factory=list)

    @property
    def similarity(self) -> float:
        return max(self.similarity_a, self.similarity_b)


@dataclass
class Report:
    chapter: str
    students: dict[str, str]  # student -> answer text compared
    pairs: list[Pair]  # most similar first
    skipped: dict[str, str]  # student -> why not compared
    notes: dict[str, str]  # student -> a note (answer cut, only the stub)
    sharing: int = 0  # pairs with any fingerprint in common (``pairs`` holds the most alike of them, measured)


def answer_code(nb) -> str:
    """The nbgrader answer (solution) code cells of a notebook, in order, as one text."""
    from llmprep.grading.notebook import nbgrader_meta

    parts = []
    for cell in nb.cells:
        if cell.get("cell_type") == "code" and nbgrader_meta(cell).get("solution"):
            src = cell.get("source", "")
            parts.append("".join(src) if isinstance(src, list) else str(src))
    return "\n\n".join(parts)


def _fingerprint(code: str, boilerplate=None):
    from copydetect import CodeFingerprint
    from copydetect.defaults import GUARANTEE_THRESHOLD, NOISE_THRESHOLD

    return CodeFingerprint("answers.py", NOISE_THRESHOLD, GUARANTEE_THRESHOLD - NOISE_THRESHOLD + 1,
                           boilerplate=boilerplate, language="python", fp=io.StringIO(code))


def _slices(arr) -> list[tuple[int, int]]:
    if arr is None or len(arr) == 0 or getattr(arr, "ndim", 1) != 2 or arr.shape[1] == 0:
        return []
    return sorted((int(s), int(e)) for s, e in zip(arr[0], arr[1]))


def compare(chapter: str, root: Path, measured: int = 2000) -> Report:
    """Fingerprint every submission of ``chapter`` under ``root``, compare every pair by shared fingerprints,
    and measure the ``measured`` pairs sharing most in full with copydetect (the report's ranking)."""
    import numpy as np
    from copydetect import compare_files

    from llmprep.grading.batch import name_problem
    from llmprep.grading.notebook import find_notebook, read_notebook
    from llmprep.grading.trusted import GradingError, load_spec

    spec = load_spec(chapter)
    released = [r / "course" / chapter / spec.notebook for r in (root, Path(__file__).resolve().parents[2])]
    stub = read_notebook(next((p for p in released if p.is_file()), released[0]))  # the course root's, else ours
    boilerplate = np.array(sorted(_fingerprint(answer_code(stub)).hashes), dtype=np.int64)
    submitted = root / "submitted"
    folders = sorted(p for p in submitted.iterdir() if (p / chapter).is_dir()) if submitted.is_dir() else []
    students, skipped, notes, prints = {}, {}, {}, {}
    for folder in folders:
        student = folder.name
        problem = name_problem(student)
        if folder.is_symlink() or (folder / chapter).is_symlink():
            skipped[student] = "the submission folder is a symbolic link"
            continue
        if problem:
            skipped[student] = f"the student folder name {problem}"
            continue
        path, nb, _note = find_notebook(folder / chapter, spec)
        if path is None:
            skipped[student] = "no notebook of this assignment"
            continue
        try:
            code = answer_code(nb if nb is not None else read_notebook(path))
        except GradingError as exc:
            skipped[student] = str(exc)
            continue
        if len(code) > MAX_ANSWER_CHARS:
            code = code[:MAX_ANSWER_CHARS]
            notes[student] = f"answer cells cut to their first {MAX_ANSWER_CHARS} characters"
        fp = _fingerprint(code, boilerplate)
        if not fp.hashes:
            notes[student] = "no answer code beyond the released stub (or too short to fingerprint)"
        students[student], prints[student] = code, fp
    # Every pair by the share of fingerprints it has in common (set intersections: cheap), then copydetect's full
    # comparison (token coverage, the shared stretches) on the most alike of them.
    shared = []
    for a, b in itertools.combinations(sorted(students), 2):
        ha, hb = prints[a].hashes, prints[b].hashes
        common = len(ha & hb) if ha and hb else 0
        if common:
            shared.append((common / min(len(ha), len(hb)), a, b))
    shared.sort(key=lambda t: (-t[0], t[1], t[2]))
    pairs = []
    for _, a, b in shared[:max(measured, 1)]:
        overlap, (sim_a, sim_b), (sl_a, sl_b) = compare_files(prints[a], prints[b])
        if overlap:
            pairs.append(Pair(a, b, float(sim_a), float(sim_b), int(overlap), _slices(sl_a), _slices(sl_b)))
    pairs.sort(key=lambda p: (-p.similarity, -p.overlap, p.a, p.b))
    return Report(chapter, students, pairs, skipped, notes, sharing=len(shared))


def write_csv(report: Report, out: Path, top: int) -> Path:
    from llmprep.grading.batch import csv_safe

    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["rank", "student_a", "student_b", "similarity", "similarity_a", "similarity_b",
                         "overlap_tokens"])
        for rank, p in enumerate(report.pairs[:top], 1):
            writer.writerow([rank, csv_safe(p.a), csv_safe(p.b), f"{p.similarity:.3f}", f"{p.similarity_a:.3f}",
                             f"{p.similarity_b:.3f}", p.overlap])
    return out


def _marked(code: str, slices: list[tuple[int, int]]) -> str:
    """The code, HTML-escaped, with the shared stretches in <mark>."""
    out, pos = [], 0
    for start, end in slices:
        start, end = max(start, pos), min(end, len(code))
        if end <= start:
            continue
        out.append(html.escape(code[pos:start]))
        out.append("<mark>" + html.escape(code[start:end]) + "</mark>")
        pos = end
    out.append(html.escape(code[pos:]))
    return "".join(out)


_STYLE = """body{font-family:sans-serif;margin:2em;max-width:90em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}.pair{display:flex;gap:1em}
.pair>div{flex:1;min-width:0}pre{background:#f7f7f7;padding:.5em;overflow:auto;font-size:85%}
mark{background:#ffd27f}.note{color:#555}"""


def write_html(report: Report, out: Path, top: int) -> Path:
    e = html.escape
    rows = "\n".join(
        f"<tr><td>{rank}</td><td>{e(p.a)}</td><td>{e(p.b)}</td><td>{p.similarity:.0%}</td><td>{p.similarity_a:.0%}</td>"
        f"<td>{p.similarity_b:.0%}</td><td>{p.overlap}</td></tr>" for rank, p in enumerate(report.pairs[:top], 1))

    def side(student: str, share: float, slices) -> str:
        return (f"<div><b>{e(student)}</b> ({share:.0%} of it in the other)"
                f"<pre>{_marked(report.students[student], slices)}</pre></div>")

    shown = "\n".join(
        f"<h3>{rank}. {e(p.a)} and {e(p.b)}: {p.similarity:.0%}</h3><div class='pair'>"
        f"{side(p.a, p.similarity_a, p.slices_a)}{side(p.b, p.similarity_b, p.slices_b)}</div>"
        for rank, p in enumerate(report.pairs[:min(top, SHOWN_PAIRS)], 1))
    aside = "".join(f"<li>{e(s)}: {e(why)}</li>" for s, why in sorted(report.skipped.items()))
    noted = "".join(f"<li>{e(s)}: {e(n)}</li>" for s, n in sorted(report.notes.items()))
    n = len(report.students)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>Similarity of {e(report.chapter)} submissions</title><style>{_STYLE}</style></head><body>
<h1>Similarity of {e(report.chapter)} submissions</h1>
<p>{n} submissions compared, {n * (n - 1) // 2} pairs, {report.sharing} with any shared code beyond the released
stub. Answer cells only; the stub's code is ignored; names, strings and comments do not count (copydetect's
winnowed fingerprints). <b>This report points at pairs worth reading; it is not evidence and changes no
grade.</b> Similar answers to a short, tightly specified exercise can be honest.</p>
<h2>The {min(top, len(report.pairs))} most similar pairs</h2>
<table><tr><th>#</th><th>student A</th><th>student B</th><th>similarity</th><th>of A in B</th><th>of B in A</th>
<th>shared tokens</th></tr>
{rows}
</table>
<h2>Side by side (shared code marked)</h2>
{shown or "<p class='note'>No pair shares code beyond the stub.</p>"}
{"<h2>Notes</h2><ul>" + noted + "</ul>" if noted else ""}
{"<h2>Not compared</h2><ul>" + aside + "</ul>" if aside else ""}
</body></html>
"""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


def similarity_report(chapter: str, root: Path | None = None, top: int = 50) -> int:
    """Write the HTML report and the CSV of the ``top`` most similar pairs; an exit code (0 written,
    1 fewer than two submissions to compare, 2 unknown chapter)."""
    from llmprep.grading.batch import shown
    from llmprep.grading.trusted import GradingError, all_chapters, repo_root

    root = root or repo_root()
    if chapter not in all_chapters():
        print(f"error: unknown assignment '{shown(chapter)}'; the assignments are: {', '.join(all_chapters())}",
              file=sys.stderr)
        return 2
    try:
        report = compare(chapter, root, measured=max(2000, top))
    except GradingError as exc:  # e.g. no released stub to tell boilerplate from answers
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for student, why in sorted(report.skipped.items()):
        print(f"skipped {shown(student)}: {why}", file=sys.stderr)
    if len(report.students) < 2:
        print(f"nothing to compare: {len(report.students)} readable submission(s) under {root / 'submitted'}/<student>/"
              f"{chapter}/", file=sys.stderr)
        return 1
    folder = root / "build" / "similarity"
    page = write_html(report, folder / f"{chapter}.html", top)
    table = write_csv(report, folder / f"{chapter}.csv", top)
    for rank, p in enumerate(report.pairs[:5], 1):
        print(f"{rank}. {shown(p.a)} ~ {shown(p.b)}: {p.similarity:.0%} ({p.overlap} shared tokens)")
    print(f"similarity: {len(report.students)} submissions, {report.sharing} pairs sharing code beyond the stub; "
          f"report {page}, pairs {table} (a signal to read, never a grade)")
    return 0

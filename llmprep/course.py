"""The course on disk: its chapters and notebooks, release (solutions/ -> course/ via nbgrader), and a
learner's start (course/<chapter> -> work/<chapter>).

Headless execution lives in :mod:`llmprep.headless`, the results protocol in :mod:`llmprep.results`,
folders in :mod:`llmprep.paths`, nbgrader's environment in :mod:`llmprep.nbgrader_wiring`."""
from __future__ import annotations

import filecmp
import os
import json
import shutil
import tempfile
from pathlib import Path

from llmprep.nbgrader_wiring import KERNELSPEC, LANGUAGE_INFO, nbgrader
from llmprep.paths import chapter_prefix, format_path, repo_root

__all__ = ["UsageError", "chapter_prefix", "chapters", "normalise_metadata", "notebooks", "release", "release_diff",
           "resolve_chapters", "start", "workspace"]


def chapters(root: Path | None = None) -> list[str]:
    """The chapter ids (folders of solutions/), in course order."""
    return sorted(p.name for p in format_path("solutions", root=root).iterdir()
                  if p.is_dir() and p.name.startswith("ch"))


def notebooks(chapter: str, root: Path | None = None) -> list[Path]:
    """A chapter's notebooks, the reference first, then the exercises."""
    folder = format_path("solutions", chapter, root)
    found = sorted(p for p in folder.glob("*.ipynb"))
    return sorted(found, key=lambda p: (0 if "reference" in p.stem else 1, p.name))


class UsageError(ValueError):
    """Bad input from the command line: reported as one ``error: ...`` line, before any work."""


def resolve_chapters(names: list[str] | None, root: Path | None = None) -> list[str]:
    """Chapter ids from what a user typed: ``ch01_training``, ``ch01``, or a path to a chapter folder
    (``course/ch01_training``, ``solutions/ch01_training/``). UsageError names the valid chapters."""
    known = chapters(root)
    if not names:
        return known
    picked = []
    for name in names:
        stem = Path(name.rstrip("/\\")).name if name.strip() else ""
        hits = [stem] if stem in known else [ch for ch in known if stem and chapter_prefix(ch) == stem]
        if len(hits) != 1:
            raise UsageError(f"unknown chapter '{name}'; the chapters are: {', '.join(known)}")
        if hits[0] not in picked:
            picked.append(hits[0])
    return picked


def normalise_metadata(path: Path) -> None:
    """Store the course kernel's spec and language info in one notebook (only rewritten if they differ)."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    if nb.metadata.get("kernelspec") == KERNELSPEC and nb.metadata.get("language_info") == LANGUAGE_INFO:
        return
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = json.loads(json.dumps(LANGUAGE_INFO))
    nbformat.write(nb, str(path))


def release(chapter_ids: list[str] | None = None, root: Path | None = None, db: bool = True) -> None:
    """Regenerate course/<chapter>/ from solutions/<chapter>/ with nbgrader generate_assignment."""
    root = root or repo_root()
    chosen = chapter_ids or chapters(root)
    if not db and set(chosen) == set(chapters(root)):
        # every chapter in one nbgrader process (its start-up is most of a chapter's cost: 16 runs took 30 s)
        nbgrader(["generate_assignment", "*", "--force", "--no-db"], root)
    else:  # the gradebook records one assignment per call
        for chapter in chosen:
            nbgrader(["generate_assignment", chapter, "--force"] + ([] if db else ["--no-db"]), root)
    for chapter in chosen:
        for path in sorted(format_path("course", chapter, root).glob("*.ipynb")):
            normalise_metadata(path)


def workspace(root: Path | None = None) -> Path:
    """The learner's workspace: ``$LLMPREP_WORKSPACE`` if set (where nbgrader's fetch puts assignments too),
    else ``work/`` in the course root (ignored by git); `llmprep start` copies into it, `llmprep lab` opens on it."""
    chosen = os.environ.get("LLMPREP_WORKSPACE")
    return Path(chosen).expanduser().resolve() if chosen else format_path("work", root=root)


def start(chapter: str, dest: Path | None = None, root: Path | None = None) -> Path:
    """Copy course/<chapter>/ into the learner's workspace (default ``work/<chapter>``) so that course/
    stays pristine. Never overwrites: an existing destination is a UsageError."""
    root = root or repo_root()
    (chapter,) = resolve_chapters([chapter], root)
    source = format_path("course", chapter, root)
    if not source.is_dir():
        raise UsageError(f"course/{chapter} does not exist; run `llmprep release {chapter}` first")
    dest = Path(dest) if dest is not None else workspace(root) / chapter
    if dest.exists():
        raise UsageError(f"{dest} already exists; your work there is kept (choose another folder, "
                         "or remove it to start over)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    return dest


def release_diff(root: Path | None = None) -> list[str]:
    """Differences between course/ and what `llmprep release` would generate now (empty: in sync)."""
    root = root or repo_root()
    with tempfile.TemporaryDirectory(prefix="llmprep-release-") as tmp:
        shadow = Path(tmp)
        shutil.copytree(format_path("solutions", root=root), format_path("solutions", root=shadow),
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
        release(chapters(root), shadow, db=False)
        expected, actual = format_path("course", root=shadow), format_path("course", root=root)
        problems = []
        exp_files = {p.relative_to(expected) for p in expected.rglob("*") if p.is_file()} if expected.exists() else set()
        act_files = {p.relative_to(actual) for p in actual.rglob("*") if p.is_file()
                     and ".ipynb_checkpoints" not in p.parts} if actual.exists() else set()
        for rel in sorted(exp_files - act_files):
            problems.append(f"course/{rel} is missing")
        for rel in sorted(act_files - exp_files):
            problems.append(f"course/{rel} is not generated from solutions/")
        for rel in sorted(exp_files & act_files):
            if not filecmp.cmp(expected / rel, actual / rel, shallow=False):
                problems.append(f"course/{rel} differs from what solutions/ generates")
        return problems

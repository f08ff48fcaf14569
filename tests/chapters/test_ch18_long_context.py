"""Chapter 18: every exercise's solution (read from the solution notebook) agrees with its oracle on fresh random
inputs beyond the hidden cases (transformers' RoPE initialisers and mask functions, SDPA, float64 references, the
trusted cache simulator), and llmprep.longctx's streaming forward equals LlamaForCausalLM's (fast, no sandbox)."""
import math
import random

import pytest
import torch
import torch.nn.functional as F

from llmprep.grading.spec import solution_source
from llmprep.grading.trusted import spec_module

CHAPTER, NOTEBOOK = "ch18_long_context", "ch18_exercises.ipynb"


def solution(*names):
    ns = {"math": math, "torch": torch, "F": F}
    exec(compile(solution_source(CHAPTER, NOTEBOOK, names), "<solution>", "exec"), ns)  # noqa: S102 - trusted source
    return ns


def oracle(name):
    return getattr(spec_module(CHAPTER), name)()


@pytest.mark.parametrize("seed", range(6))
def test_rope_scaling_equals_transformers(seed):
    rng = random.Random(seed)
    mine, theirs = solution("rope_inv_freq")["rope_inv_freq"], oracle("oracle_rope")["rope_inv_freq"]
    for kind in ("default", "linear", "dynamic", "yarn"):
        kwargs = dict(head_dim=rng.choice([8, 16, 32, 64, 128]), base=rng.choice([100.0, 10000.0, 500000.0]),
                      kind=kind, factor=rng.choice([1.0, 2.0, 4.0, 8.0, 32.0]), original_max=rng.choice([64, 2048, 8192]))
        if kind == "dynamic":
            kwargs["seq_len"] = rng.choice([None, 100, 4096, 65536])
        if kind == "yarn":
            kwargs.update(beta_fast=rng.choice([32.0, 16.0]), beta_slow=rng.choice([1.0, 2.0]))
        (a, fa), (b, fb) = mine(**kwargs), theirs(**kwargs)
        torch.testing.assert_close(a, b.float(), rtol=1e-5, atol=0, msg=str(kwargs))
        assert math.isclose(fa, fb, rel_tol=1e-9), kwargs


@pytest.mark.parametrize("seed", range(4))
def test_sliding_window_equals_transformers_masks_and_sdpa(seed):
    g = torch.Generator().manual_seed(seed)
    ns, ref = solution("sliding_window_mask", "sliding_window_attention"), oracle("oracle_window")
    b, t = 3, int(torch.randint(2, 12, (1,), generator=g))
    pad = torch.rand(b, t, generator=g) > 0.3
    q, k, v = (torch.randn(b, 2, t, 8, generator=g) for _ in range(3))
    for window in (1, 2, t - 1 or 1, t + 3):
        assert torch.equal(ns["sliding_window_mask"](pad, window), ref["sliding_window_mask"](pad, window))
        torch.testing.assert_close(ns["sliding_window_attention"](q, k, v, pad, window),
                                   ref["sliding_window_attention"](q, k, v, pad, window), rtol=1e-4, atol=1e-5)


def test_sink_trace_equals_the_simulator():
    mine, theirs = solution("streaming_kv_trace")["streaming_kv_trace"], oracle("oracle_sinks")["streaming_kv_trace"]
    rng = random.Random(0)
    for _ in range(200):
        args = (rng.randint(0, 40), rng.randint(0, 6), rng.randint(1, 9), rng.randint(1, 7))
        assert mine(*args) == theirs(*args), args


@pytest.mark.parametrize("seed", range(3))
def test_mla_explicit_and_absorbed_equal_sdpa(seed):
    g = torch.Generator().manual_seed(seed)
    b, t, dm, r, h, hd = 2, 7, 20, 6, 3, 4
    args = (torch.randn(b, t, dm, generator=g), torch.randn(dm, r, generator=g) / 4, torch.randn(r, h * hd, generator=g) / 2,
            torch.randn(r, h * hd, generator=g) / 2, torch.randn(dm, h * hd, generator=g) / 4,
            torch.randn(h * hd, dm, generator=g) / 3, h)
    mine, want = solution("mla_attention")["mla_attention"](*args), oracle("oracle_mla")["mla_attention"](*args)
    for key in ("latent", "out"):
        torch.testing.assert_close(mine[key], want[key], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(mine["out_absorbed"], want["out"], rtol=1e-3, atol=1e-4)
    assert (mine["cache_per_token"], mine["mha_cache_per_token"]) == (r, 2 * h * hd)


@pytest.mark.parametrize("seed", range(3))
def test_linear_attention_forms_equal_the_float64_reference(seed):
    g = torch.Generator().manual_seed(seed)
    ns, ref = solution("linear_attention_parallel", "linear_attention_recurrent"), oracle("oracle_linear")
    q, k = torch.randn(2, 3, 11, 4, generator=g) * 2, torch.randn(2, 3, 11, 4, generator=g) * 2
    v = torch.randn(2, 3, 11, 5, generator=g)
    want, s, z = ref["linear_attention_recurrent"](q, k, v)
    torch.testing.assert_close(ns["linear_attention_parallel"](q, k, v), want, rtol=1e-4, atol=1e-5)
    got, s2, z2 = ns["linear_attention_recurrent"](q, k, v)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(s2, s, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(z2, z, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_selective_scan_equals_the_float64_reference(seed):
    g = torch.Generator().manual_seed(seed)
    x, delta = torch.randn(2, 9, 3, generator=g), F.softplus(torch.randn(2, 9, 3, generator=g))
    a, d = -torch.rand(3, 4, generator=g) - 0.1, torch.randn(3, generator=g)
    b, c = torch.randn(2, 9, 4, generator=g), torch.randn(2, 9, 4, generator=g)
    got = solution("selective_scan")["selective_scan"](x, delta, a, b, c, d)
    want = oracle("oracle_scan")["selective_scan"](x, delta, a, b, c, d)
    for mine, ref in zip(got, want):
        torch.testing.assert_close(mine, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_ring_attention_equals_sdpa(causal):
    g = torch.Generator().manual_seed(int(causal))
    lens = [3, 1, 5, 2]
    qs, ks, vs = ([torch.randn(1, 2, n, 8, generator=g) for n in lens] for _ in range(3))
    got = solution("ring_attention")["ring_attention"](qs, ks, vs, causal)
    want = oracle("oracle_ring")["ring_attention"](qs, ks, vs, causal)
    torch.testing.assert_close(torch.cat(got[0], -2), torch.cat(want[0], -2), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.cat(got[1], -1), torch.cat(want[1], -1), rtol=1e-5, atol=1e-4)
    assert got[2] == want[2]


def _tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, head_dim=8, max_position_embeddings=128)
    return LlamaForCausalLM(cfg).eval()


def test_stream_with_a_full_cache_equals_the_models_forward():
    from llmprep.longctx import stream_nll

    model = _tiny_llama()
    ids = torch.randint(0, 50, (41,), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(ids[None]).logits[0]
    want = F.cross_entropy(logits[:-1], ids[1:], reduction="none")
    for chunk in (1, 7, 40):
        res = stream_nll(model, ids, chunk=chunk)
        torch.testing.assert_close(res.nll, want, rtol=1e-4, atol=1e-5)
        assert res.cache_tokens == 40 and res.cache_bytes == 2 * 2 * 40 * 2 * 8 * 4   # K+V, layers, tokens, heads, dim
    # a bound the stream never reaches evicts nothing; a reached one keeps sinks + window
    torch.testing.assert_close(stream_nll(model, ids, chunk=7, sinks=4, window=60).nll, want, rtol=1e-4, atol=1e-5)
    bounded = stream_nll(model, ids, chunk=7, sinks=2, window=9)
    assert bounded.cache_tokens == 11 and not torch.allclose(bounded.nll, want)
    quant = stream_nll(model, ids, chunk=7, kv_int8=True)
    assert quant.cache_bytes == 2 * 2 * 40 * 2 * (8 + 2) and (quant.nll - want).abs().max() < 0.05


def test_stream_rejects_bad_sizes():
    from llmprep.longctx import stream_nll

    with pytest.raises(ValueError, match="chunk"):
        stream_nll(_tiny_llama(), torch.arange(5), chunk=0)

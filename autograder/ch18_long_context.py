"""Trusted spec of Chapter 18's graded cells (solutions/ch18_long_context/ch18_exercises.ipynb).

Probes run inside the sandbox next to the student's code and are self-contained (imports inside). Oracles run
in the trusted test process: transformers' ``ROPE_INIT_FUNCTIONS`` for linear, dynamic-NTK and YaRN RoPE (1),
transformers' sliding-window and padding mask functions with ``F.scaled_dot_product_attention`` (2), a trusted
StreamingLLM cache simulator (3), the explicit MLA computation through SDPA (4), float64 references of linear
attention (5) and of the selective scan (6), and SDPA with ``torch.logsumexp`` on the concatenated blocks (7).

``RULES`` at the bottom quotes each rule the instructions state, names the hidden cases that break when the rule is
broken and maps each mutant that breaks it to a word its feedback must contain.
"""
import json

from llmprep.grading.spec import (Case, Chapter, Exercise, Hint, Rule, allclose, compare_arrays, json_list, mutate,
                                  whole)

SDPA = ("torch.nn.functional", "scaled_dot_product_attention", "F.scaled_dot_product_attention")


# ============================================================================ 1 RoPE scaling

def probe_rope(ns, params):
    fn = ns["rope_inv_freq"]
    try:
        inv_freq, attention_factor = fn(**params["args"])
    except ValueError:
        return {"raised": True}
    import torch

    return {"raised": False, "inv_freq": torch.as_tensor(inv_freq).detach(), "attention_factor": float(attention_factor)}


def oracle_rope():
    import torch
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    def rope_inv_freq(head_dim, base, kind="default", factor=1.0, original_max=None, seq_len=None,
                      beta_fast=32.0, beta_slow=1.0):
        """transformers' own initialisers, given a LlamaConfig carrying the same parameters."""
        if kind not in ("default", "linear", "dynamic", "yarn") or head_dim < 2 or head_dim % 2 or factor < 1:
            raise ValueError("bad arguments")
        if kind == "default":
            return 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim), 1.0
        rope = {"rope_type": kind, "rope_theta": base, "factor": factor}
        if kind == "yarn":
            rope.update(original_max_position_embeddings=original_max, beta_fast=beta_fast, beta_slow=beta_slow)
        cfg = LlamaConfig(hidden_size=4 * head_dim, num_attention_heads=4, head_dim=head_dim,
                          max_position_embeddings=original_max, rope_parameters=rope)
        return ROPE_INIT_FUNCTIONS[kind](cfg, None, seq_len if kind == "dynamic" else None)

    return {"rope_inv_freq": rope_inv_freq}


def _rope(kind, head_dim=64, base=10000.0, factor=1.0, original_max=2048, **extra):
    return {"args": dict(head_dim=head_dim, base=base, kind=kind, factor=factor, original_max=original_max, **extra)}


# ============================================================================ 2 sliding-window mask

def probe_window(ns, params):
    import torch

    mask_fn, attn_fn = ns["sliding_window_mask"], ns["sliding_window_attention"]
    g = torch.Generator().manual_seed(params["seed"])
    b, h, t, d = params["B"], params["H"], params["T"], params["d"]
    pad = torch.zeros(b, t, dtype=torch.bool)
    for row, (left, length) in enumerate(params["real"]):
        pad[row, left:left + length] = True
    q, k, v = (torch.randn(b, h, t, d, generator=g) for _ in range(3))
    before = [x.clone() for x in (q, k, v, pad)]
    try:
        mask = torch.as_tensor(mask_fn(pad, params["window"]))
        out = attn_fn(q, k, v, pad, params["window"])
    except ValueError:
        return {"raised": True}
    return {"raised": False, "mask": mask.to(torch.int64), "mask_is_bool": mask.dtype == torch.bool,
            "out": torch.as_tensor(out).detach(),
            "inputs_untouched": all(torch.equal(a, b) for a, b in zip(before, (q, k, v, pad)))}


judge_window = allclose(rtol=1e-4, atol=1e-5, messages={
    "mask": "the mask: some query/key pairs are visible that must not be, or hidden that must be visible",
    "mask_is_bool": "the mask must be a torch.bool tensor (True = may attend)",
    "out": "the attention output differs from attention under the sliding-window mask"})


def oracle_window():
    import torch
    import torch.nn.functional as F
    from transformers.masking_utils import and_masks, padding_mask_function, sliding_window_causal_mask_function

    def sliding_window_mask(padding_mask, window):
        if window < 1:
            raise ValueError("window < 1")
        b, t = padding_mask.shape
        fn = and_masks(sliding_window_causal_mask_function(window), padding_mask_function(padding_mask))
        bi, qi, ki = (torch.arange(n) for n in (b, t, t))
        return fn(bi[:, None, None], torch.tensor(0), qi[None, :, None], ki[None, None, :])

    def sliding_window_attention(q, k, v, padding_mask, window):
        mask = sliding_window_mask(padding_mask, window)[:, None]
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask).nan_to_num(0.0)

    return {"sliding_window_mask": sliding_window_mask, "sliding_window_attention": sliding_window_attention}


# ============================================================================ 3 attention-sink cache trace

def probe_sinks(ns, params):
    import json

    fn = ns["streaming_kv_trace"]
    try:
        positions, kept = fn(params["n"], params["sinks"], params["window"], params["chunk"])
    except ValueError:
        return {"raised": True}
    as_lists = lambda rows: [[int(p) for p in row] for row in rows]  # noqa: E731
    return {"raised": False, "positions": json.dumps(as_lists(positions)), "kept": json.dumps(as_lists(kept))}


def judge_sinks(got, want, params):
    reason = compare_arrays("raised", got.get("raised", False), want["raised"], 0, 0)
    if reason or want["raised"]:
        return reason
    for key, what in (("kept", "the positions kept in the cache after the chunk"),
                      ("positions", "the RoPE positions of the chunk's tokens")):
        mine, reason = json_list(got.get(key, ""), what)
        if reason:
            return reason
        theirs = json.loads(str(want[key].reshape(()).item()) if hasattr(want[key], "reshape") else want[key])
        if len(mine) != len(theirs):
            return f"{what}: you returned {len(mine)} chunks, expected {len(theirs)}"
        for c, (a, b) in enumerate(zip(mine, theirs)):
            if a != b and len(a) != len(b):
                return f"{what} differ at chunk {c}: you have {len(a)} entries, expected {len(b)}"
            if a != b:
                first = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
                return f"{what} differ at chunk {c}, first at entry {first}"
    return None


def oracle_sinks():
    from collections import deque

    def streaming_kv_trace(n_tokens, sinks, window, chunk=1):
        """Token by token with a deque for the window and a list for the sinks."""
        if sinks < 0 or window < 1 or chunk < 1:
            raise ValueError("bad sizes")
        sink_list, recent = [], deque()
        positions, kept = [], []
        for start in range(0, n_tokens, chunk):
            size = len(sink_list) + len(recent)
            chunk_tokens = range(start, min(start + chunk, n_tokens))
            positions.append([size + j for j in range(len(chunk_tokens))])
            for tok in chunk_tokens:
                (sink_list if len(sink_list) < sinks else recent).append(tok)
            while len(recent) > window:
                recent.popleft()
            kept.append(sink_list + list(recent))
        return positions, kept

    return {"streaming_kv_trace": streaming_kv_trace}


# ============================================================================ 4 MLA

def probe_mla(ns, params):
    import torch

    fn = ns["mla_attention"]
    g = torch.Generator().manual_seed(params["seed"])
    b, t, dm, r, h, hd = (params[k] for k in ("B", "T", "d_model", "r", "H", "hd"))
    x = torch.randn(b, t, dm, generator=g)
    w_dkv = torch.randn(dm, r, generator=g) / dm ** 0.5
    w_uk = torch.randn(r, h * hd, generator=g) / r ** 0.5 * params.get("k_scale", 1.0)
    w_uv = torch.randn(r, h * hd, generator=g) / r ** 0.5
    w_q = torch.randn(dm, h * hd, generator=g) / dm ** 0.5 * params.get("k_scale", 1.0)
    w_o = torch.randn(h * hd, dm, generator=g) / (h * hd) ** 0.5
    res = fn(x, w_dkv, w_uk, w_uv, w_q, w_o, h)
    return {"latent": torch.as_tensor(res["latent"]).detach(), "out": torch.as_tensor(res["out"]).detach(),
            "out_absorbed": torch.as_tensor(res["out_absorbed"]).detach(),
            "cache_per_token": int(res["cache_per_token"]), "mha_cache_per_token": int(res["mha_cache_per_token"])}


judge_mla = allclose(rtol=1e-4, atol=1e-5, tolerances={"out_absorbed": (1e-3, 1e-4)}, messages={
    "latent": "the latent c = x @ w_dkv is wrong",
    "out": "the explicit attention output is wrong",
    "out_absorbed": "the absorbed-weight output differs from the explicit one",
    "cache_per_token": "cache_per_token (numbers cached per token and layer by MLA) is wrong",
    "mha_cache_per_token": "mha_cache_per_token (numbers cached per token and layer by the same heads as MHA) is wrong"})


def oracle_mla():
    import torch.nn.functional as F

    def mla_attention(x, w_dkv, w_uk, w_uv, w_q, w_o, n_heads):
        """The explicit computation, attention by SDPA; the absorbed output is the same number by definition."""
        b, t, _ = x.shape
        hd = w_q.shape[1] // n_heads
        latent = x @ w_dkv
        split = lambda y: y.view(b, t, n_heads, hd).transpose(1, 2)  # noqa: E731
        out = F.scaled_dot_product_attention(split(x @ w_q), split(latent @ w_uk), split(latent @ w_uv), is_causal=True)
        out = out.transpose(1, 2).reshape(b, t, -1) @ w_o
        return {"latent": latent, "out": out, "out_absorbed": out.clone(), "cache_per_token": w_dkv.shape[1],
                "mha_cache_per_token": 2 * w_q.shape[1]}

    return {"mla_attention": mla_attention}


# ============================================================================ 5 linear attention

def probe_linear(ns, params):
    import torch

    par, rec = ns["linear_attention_parallel"], ns["linear_attention_recurrent"]
    g = torch.Generator().manual_seed(params["seed"])
    dtype = getattr(torch, params.get("dtype", "float32"))
    lead, t, d, e = params["lead"], params["T"], params["d"], params["e"]
    q = (torch.randn(*lead, t, d, generator=g) * params.get("scale", 1.0)).to(dtype)
    k = (torch.randn(*lead, t, d, generator=g) * params.get("scale", 1.0)).to(dtype)
    v = torch.randn(*lead, t, e, generator=g).to(dtype)
    before = [x.clone() for x in (q, k, v)]
    out_p = par(q, k, v)
    out_r, s, z = rec(q, k, v)
    return {"out_parallel": torch.as_tensor(out_p).detach(), "out_recurrent": torch.as_tensor(out_r).detach(),
            "state": torch.as_tensor(s).detach(), "normalizer": torch.as_tensor(z).detach(),
            "inputs_untouched": all(torch.equal(a, b) for a, b in zip(before, (q, k, v)))}


judge_linear = allclose(rtol=1e-4, atol=1e-5, messages={
    "out_parallel": "the parallel form's output is wrong",
    "out_recurrent": "the recurrent form's output is wrong",
    "state": "the final state S is wrong",
    "normalizer": "the final normaliser z is wrong"})


def oracle_linear():
    import torch
    import torch.nn.functional as F

    def reference(q, k, v):
        """Float64, the definition token by token: sum over i <= t of phi(q_t).phi(k_i) v_i over the same sum."""
        dtype = q.dtype
        q, k, v = q.double(), k.double(), v.double()
        fq, fk = F.elu(q) + 1, F.elu(k) + 1
        t = q.shape[-2]
        outs = []
        for i in range(t):
            w = (fq[..., i:i + 1, :] * fk[..., :i + 1, :]).sum(-1)           # [..., i + 1]
            outs.append((w[..., None] * v[..., :i + 1, :]).sum(-2) / w.sum(-1, keepdim=True))
        s = torch.einsum("...td,...te->...de", fk, v)
        return torch.stack(outs, -2).to(dtype), s.to(dtype), fk.sum(-2).to(dtype)

    return {"linear_attention_parallel": lambda q, k, v: reference(q, k, v)[0],
            "linear_attention_recurrent": reference}


# ============================================================================ 6 selective scan

def probe_scan(ns, params):
    import torch
    import torch.nn.functional as F

    fn = ns["selective_scan"]
    g = torch.Generator().manual_seed(params["seed"])
    bt, length, d, n = params["Bt"], params["L"], params["d"], params["n"]
    x = torch.randn(bt, length, d, generator=g)
    delta = F.softplus(torch.randn(bt, length, d, generator=g) + params.get("delta_shift", 0.0))
    a = -torch.exp(torch.randn(d, n, generator=g) * 0.5)
    b = torch.randn(bt, length, n, generator=g)
    c = torch.randn(bt, length, n, generator=g)
    dskip = torch.randn(d, generator=g)
    before = [t.clone() for t in (x, delta, a, b, c, dskip)]
    y, h = fn(x, delta, a, b, c, dskip)
    return {"y": torch.as_tensor(y).detach(), "h": torch.as_tensor(h).detach(),
            "inputs_untouched": all(torch.equal(u, w) for u, w in zip(before, (x, delta, a, b, c, dskip)))}


judge_scan = allclose(rtol=1e-4, atol=1e-5, messages={"y": "the outputs y are wrong",
                                                       "h": "the final hidden state h is wrong"})


def oracle_scan():
    import torch

    def selective_scan(x, delta, A, B, C, D):
        """Float64, unrolled with explicit indices (no broadcasting tricks)."""
        bt, length, d = x.shape
        n = A.shape[1]
        x, delta, A, B, C, D = (t.double() for t in (x, delta, A, B, C, D))
        h = torch.zeros(bt, d, n, dtype=torch.float64)
        y = torch.zeros(bt, length, d, dtype=torch.float64)
        for t in range(length):
            for i in range(d):
                h[:, i] = torch.exp(delta[:, t, i, None] * A[i]) * h[:, i] + delta[:, t, i, None] * B[:, t] * x[:, t, i, None]
                y[:, t, i] = (h[:, i] * C[:, t]).sum(-1) + D[i] * x[:, t, i]
        return y.float(), h.float()

    return {"selective_scan": selective_scan}


# ============================================================================ 7 ring attention

def probe_ring(ns, params):
    import json

    import torch

    fn = ns["ring_attention"]
    g = torch.Generator().manual_seed(params["seed"])
    b, h, d = params["B"], params["H"], params["d"]
    qs = [torch.randn(b, h, n, d, generator=g) * params.get("scale", 1.0) for n in params["lens"]]
    ks = [torch.randn(b, h, n, d, generator=g) * params.get("scale", 1.0) for n in params["lens"]]
    vs = [torch.randn(b, h, n, d, generator=g) for n in params["lens"]]
    outs, lses, computed = fn(qs, ks, vs, causal=params["causal"])
    return {"out": torch.cat([torch.as_tensor(o).detach() for o in outs], dim=-2),
            "lse": torch.cat([torch.as_tensor(x).detach() for x in lses], dim=-1),
            "computed": json.dumps([[int(j) for j in row] for row in computed])}


def judge_ring(got, want, params):
    for key, label, rtol, atol in (("out", "the attention output", 1e-4, 1e-5), ("lse", "the log-sum-exp", 1e-5, 1e-4)):
        if key not in got:
            return f"no value for {label}"
        reason = compare_arrays(label, got[key], want[key], rtol, atol)
        if reason:
            return reason
    mine, reason = json_list(got.get("computed", ""), "computed (the KV blocks each device processed)")
    if reason:
        return reason
    theirs = json.loads(str(want["computed"].reshape(()).item()))
    for i, (a, b) in enumerate(zip(mine, theirs)):
        if a != b:
            return f"computed: device {i} processed the KV blocks in the wrong order or the wrong ones"
    if len(mine) != len(theirs):
        return f"computed: {len(mine)} devices listed, expected {len(theirs)}"
    return None


def oracle_ring():
    import torch
    import torch.nn.functional as F

    def ring_attention(q_blocks, k_blocks, v_blocks, causal=False):
        """SDPA and logsumexp on the whole sequence, cut back into blocks; the ring's visiting order."""
        q, k, v = (torch.cat(x, dim=-2) for x in (q_blocks, k_blocks, v_blocks))
        n_q = q.shape[-2]
        allowed = torch.ones(n_q, k.shape[-2], dtype=torch.bool)
        if causal:
            allowed = allowed.tril()
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        lse = torch.logsumexp((q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5).masked_fill(~allowed, float("-inf")), -1)
        sizes = [x.shape[-2] for x in q_blocks]
        n = len(q_blocks)
        computed = [[(i - s) % n for s in range(n) if not (causal and (i - s) % n > i)] for i in range(n)]
        return list(out.split(sizes, dim=-2)), list(lse.split(sizes, dim=-1)), computed

    return {"ring_attention": ring_attention}


# ============================================================================ exercises

H = Hint
EXERCISES = [
    Exercise(
        grade_id="ch18_rope_scaling_test", functions=("rope_inv_freq",), points=3,
        bans=(("transformers.modeling_rope_utils", "_compute_linear_scaling_rope_parameters", "transformers' linear RoPE"),
              ("transformers.modeling_rope_utils", "_compute_dynamic_ntk_parameters", "transformers' dynamic RoPE"),
              ("transformers.modeling_rope_utils", "_compute_yarn_parameters", "transformers' YaRN")),
        cases=(
            Case("plain RoPE, head_dim 64", _rope("default"), edge="kind default: no scaling at all"),
            Case("linear interpolation x4", _rope("linear", factor=4.0)),
            Case("linear with factor 1", _rope("linear", factor=1.0, head_dim=8), edge="factor = 1: PI is the identity"),
            Case("linear x1.25, head_dim 2", _rope("linear", factor=1.25, head_dim=2),
                 edge="head_dim 2: one frequency, exactly 1 (dimension 0 is divided too); factor just above 1"),
            Case("dynamic NTK, 2x past the trained length", _rope("dynamic", factor=4.0, seq_len=4096)),
            Case("dynamic NTK inside the trained length", _rope("dynamic", factor=4.0, seq_len=1000),
                 edge="seq_len < original_max: the base must not change"),
            Case("dynamic NTK exactly at the trained length", _rope("dynamic", factor=2.0, seq_len=2048, head_dim=16),
                 edge="seq_len = original_max exactly"),
            Case("dynamic NTK without seq_len", _rope("dynamic", factor=2.0, head_dim=16),
                 edge="seq_len None: defaults to original_max"),
            Case("YaRN x4 (Llama-2 sized)", _rope("yarn", factor=4.0)),
            Case("YaRN x8, base 500k, 8k trained", _rope("yarn", factor=8.0, base=500000.0, original_max=8192, head_dim=128)),
            Case("YaRN x16 at a short trained length (ramp clamped at 0)",
                 _rope("yarn", factor=16.0, original_max=64, head_dim=16),
                 edge="the fast boundary falls below dimension 0 and is clamped"),
            Case("YaRN with other betas", _rope("yarn", factor=4.0, head_dim=32, beta_fast=8.0, beta_slow=2.0)),
            Case("YaRN with factor 1", _rope("yarn", factor=1.0, head_dim=32, original_max=128),
                 edge="factor = 1: attention factor exactly 1"),
            Case("unknown kind", _rope("ntk-by-parts"), edge="a kind outside the four named ones"),
            Case("odd head_dim", _rope("linear", head_dim=63, factor=2.0), edge="odd head_dim"),
            Case("factor below 1", _rope("yarn", factor=0.5), edge="factor < 1"),
        ),
        probe=probe_rope, judge=allclose(rtol=1e-5, atol=1e-12, tolerances={"attention_factor": (1e-6, 1e-9)},
                                         messages={"inv_freq": "inv_freq: the inverse frequencies are wrong",
                                                   "attention_factor": "the attention_factor is wrong"}),
        mutants={
            "linear scaling multiplies the frequencies": mutate("inv_freq = inv_freq / factor  ",
                                                                 "inv_freq = inv_freq * factor  ",
                hint=H("位置插值是把位置 m 压缩成 m/s，频率应该变慢而不是变快。",
                       "Position interpolation squeezes position m into m/s: each frequency must get slower, not faster.")),
            "linear raises the base instead (NTK mixed up with PI)": mutate(
                "inv_freq = inv_freq / factor  ", "inv_freq = (base * factor) ** -exponents  ",
                hint=H("位置插值把每一个频率都除以 s，包括最快的那一维（θ_0 = 1）；放大 base 是 NTK 的做法，θ_0 不变。",
                       "Position interpolation divides every frequency by s, the fastest one (1) too; raising the "
                       "base is NTK's idea and leaves it at 1.")),
            "dynamic NTK without the d/(d-2) exponent": mutate("(factor - 1)) ** (d / (d - 2))", "(factor - 1))",
                hint=H("NTK 放大的是 base，而且带一个指数，保证最低频那一维恰好被拉长 s 倍。",
                       "NTK scales the base with an exponent chosen so that the lowest frequency is stretched by exactly s.")),
            "dynamic NTK without the -(factor - 1) term (static NTK)": mutate(
                "(factor * length / original_max - (factor - 1))", "(factor * length / original_max)",
                hint=H("动态 NTK 在恰好等于训练长度时必须和原始 base 一样；−(s − 1) 这一项保证了这种连续性。",
                       "At exactly the trained length dynamic NTK must give the original base; the -(s - 1) term "
                       "makes the scaling start there.")),
            "dynamic NTK also below the trained length": mutate(
                "length = max(seq_len if seq_len is not None else original_max, original_max)",
                "length = seq_len if seq_len is not None else original_max",
                hint=H("动态 NTK 只在序列超过训练长度时才改变 base；短序列应该和原模型完全一样。",
                       "Dynamic NTK changes the base only once the sequence exceeds the trained length; shorter inputs "
                       "must see the original frequencies.")),
            "YaRN ramp reversed (interpolates the high frequencies)": mutate(
                "inv_freq = inv_freq / factor * ramp + inv_freq * (1 - ramp)",
                "inv_freq = inv_freq / factor * (1 - ramp) + inv_freq * ramp",
                hint=H("高频维度在训练长度内已经转了很多圈，应该保持不变（外推）；只有低频维度需要插值。",
                       "High-frequency dimensions already turn many times within the trained length and are kept "
                       "(extrapolated); only the low frequencies are interpolated.")),
            "YaRN attention factor without the 0.1": mutate("0.1 * math.log(factor) + 1.0", "math.log(factor) + 1.0",
                hint=H("YaRN 的注意力温度是 0.1·ln(s) + 1，放大得很温和。",
                       "YaRN's attention temperature is 0.1*ln(s) + 1: a gentle correction.")),
            "YaRN attention factor without the 1 (the log term alone)": mutate(
                "0.1 * math.log(factor) + 1.0 if factor > 1 else 1.0", "0.1 * math.log(factor)",
                hint=H("注意力因子乘在 cos 和 sin 上：不拉伸（s = 1）时它必须恰好是 1，对数项是加在 1 上的修正。",
                       "The attention factor multiplies cos and sin, so with no stretch (s = 1) it must be exactly 1; "
                       "the log term is added to 1.")),
            "YaRN boundaries not rounded to whole dimensions": mutate({
                "low = max(math.floor(dim_of(beta_fast)), 0)": "low = max(dim_of(beta_fast), 0)",
                "high = min(math.ceil(dim_of(beta_slow)), d - 1)": "high = min(dim_of(beta_slow), d - 1)"},
                hint=H("边界要向外取整（下界 floor、上界 ceil），和 transformers 的 truncate=True 一样。",
                       "The boundaries are rounded outwards (floor the low one, ceil the high one), as transformers "
                       "does with truncate=True.")),
            "YaRN boundaries not clamped to the dimensions": mutate("low = max(math.floor(dim_of(beta_fast)), 0)",
                                                                     "low = math.floor(dim_of(beta_fast))",
                hint=H("边界必须限制在 [0, d−1] 内。", "The boundaries must be clamped to [0, d - 1].")),
            "no ValueError for a bad kind, head_dim or factor": mutate({
                'if kind not in ("default", "linear", "dynamic", "yarn"):': "if False:",
                "if head_dim < 2 or head_dim % 2:": "if False:", "if factor < 1:": "if False:"},
                hint=H("题目要求对无效参数抛出 ValueError。", "Invalid arguments must raise ValueError.")),
        },
    ),
    Exercise(
        grade_id="ch18_sliding_window_test", functions=("sliding_window_mask", "sliding_window_attention"), points=2,
        bans=(SDPA, ("transformers.masking_utils", "sliding_window_causal_mask_function",
                     "transformers' sliding-window mask")),
        cases=(
            Case("window 3, no padding", {"seed": 0, "B": 1, "H": 2, "T": 8, "d": 8, "real": [[0, 8]], "window": 3}),
            Case("window 1 (only itself)", {"seed": 1, "B": 1, "H": 1, "T": 5, "d": 4, "real": [[0, 5]], "window": 1},
                 edge="window = 1: each token sees only itself"),
            Case("window longer than the sequence", {"seed": 2, "B": 2, "H": 2, "T": 6, "d": 8,
                                                     "real": [[0, 6], [0, 6]], "window": 9},
                 edge="window > T: plain causal attention"),
            Case("window T - 1", {"seed": 3, "B": 1, "H": 1, "T": 6, "d": 4, "real": [[0, 6]], "window": 5},
                 edge="window = T - 1: only the pair (T-1, 0) falls out"),
            Case("left padding", {"seed": 4, "B": 2, "H": 2, "T": 7, "d": 8, "real": [[2, 5], [0, 7]], "window": 3},
                 edge="left padding: the first query rows see no key at all"),
            Case("right padding", {"seed": 5, "B": 2, "H": 1, "T": 7, "d": 8, "real": [[0, 4], [0, 7]], "window": 4},
                 edge="right padding: padded queries still see real keys"),
            Case("window 0", {"seed": 6, "B": 1, "H": 1, "T": 4, "d": 4, "real": [[0, 4]], "window": 0},
                 edge="window = 0: must raise"),
        ),
        probe=probe_window, judge=judge_window,
        mutants={
            "window counts one key too many": mutate("(i - j < window)", "(i - j <= window)",
                hint=H("窗口 w 包括 token 自己：能看到的是 i−w+1 … i，共 w 个。",
                       "A window of w includes the token itself: keys i - w + 1 ... i, w of them.")),
            "no causal part (sees the future)": mutate("band = (j <= i) & (i - j < window)", "band = (i - j).abs() < window",
                hint=H("滑动窗口是在因果掩码上再加一个限制，不能看未来。",
                       "The sliding window is an extra limit on top of the causal mask: never the future.")),
            "padding ignored": mutate("return band[None] & padding_mask.bool()[:, None, :]",
                                      "return band[None].expand(padding_mask.shape[0], -1, -1)",
                hint=H("padding 的 key 永远不能被看到。", "Padding keys must never be visible.")),
            "padding masks the queries instead of the keys": mutate("padding_mask.bool()[:, None, :]",
                                                                    "padding_mask.bool()[:, :, None]",
                hint=H("padding_mask 作用在 key（最后一维）上。", "padding_mask applies to the keys (the last axis).")),
            "fully masked rows left as NaN": mutate("probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)",
                                                    "probs = torch.softmax(scores, dim=-1)",
                hint=H("全部被遮住的行 softmax 会得到 NaN，要按题意输出 0。",
                       "A row with every key masked softmaxes to NaN; the instructions ask for zeros.")),
            "scores scaled by 1/d": mutate("/ math.sqrt(q.shape[-1])", "/ q.shape[-1]",
                hint=H("缩放因子是 1/√d。", "The scale is 1/sqrt d.")),
            "no ValueError for window < 1": mutate("if window < 1:", "if window < 0:",
                hint=H("window 必须至少为 1。", "window must be at least 1.")),
        },
    ),
    Exercise(
        grade_id="ch18_sink_trace_test", functions=("streaming_kv_trace",), points=2,
        cases=(
            Case("4 sinks, window 8, token by token", {"n": 20, "sinks": 4, "window": 8, "chunk": 1}),
            Case("chunks of 3, 2 sinks, window 4", {"n": 14, "sinks": 2, "window": 4, "chunk": 3},
                 edge="n not a multiple of chunk: a shorter last chunk"),
            Case("no sinks (window only)", {"n": 10, "sinks": 0, "window": 3, "chunk": 2}, edge="sinks = 0"),
            Case("stream shorter than the cache", {"n": 6, "sinks": 2, "window": 5, "chunk": 2},
                 edge="n < sinks + window: nothing is ever evicted"),
            Case("stream exactly fills the cache", {"n": 8, "sinks": 3, "window": 5, "chunk": 4},
                 edge="n = sinks + window exactly"),
            Case("chunk longer than the window", {"n": 16, "sinks": 1, "window": 3, "chunk": 5},
                 edge="chunk > window: positions beyond sinks + window during the chunk"),
            Case("more sinks than tokens", {"n": 3, "sinks": 5, "window": 2, "chunk": 1}, edge="sinks > n"),
            Case("window 1", {"n": 7, "sinks": 1, "window": 1, "chunk": 1}, edge="window = 1"),
            Case("window 0", {"n": 5, "sinks": 1, "window": 0, "chunk": 1}, edge="window = 0: must raise"),
            Case("chunk 0", {"n": 5, "sinks": 1, "window": 2, "chunk": 0}, edge="chunk = 0: must raise"),
            Case("negative sinks", {"n": 5, "sinks": -1, "window": 2, "chunk": 1}, edge="sinks = -1: must raise"),
        ),
        probe=probe_sinks, judge=judge_sinks,
        mutants={
            "original positions for RoPE": mutate("positions.append([len(cache) + j for j in range(len(new))])",
                                                  "positions.append(list(new))",
                hint=H("StreamingLLM 按 token 在缓存中的位置分配 RoPE 位置，而不是它在原文中的位置。",
                       "StreamingLLM gives RoPE positions inside the cache, not positions in the original text.")),
            "no sinks kept (plain window)": mutate("cache = cache[:sinks] + cache[len(cache) - window:]",
                                                   "cache = cache[len(cache) - window:]",
                hint=H("注意力汇聚点（最开始的几个 token）要一直留在缓存里。",
                       "The sink tokens (the first ones of the stream) stay in the cache forever.")),
            "evicts the newest instead of the oldest": mutate("cache = cache[:sinks] + cache[len(cache) - window:]",
                                                              "cache = cache[:sinks + window]",
                hint=H("窗口保留的是最近的 token。", "The window keeps the most recent tokens.")),
            "positions counted after eviction": mutate({
                "        positions.append([len(cache) + j for j in range(len(new))])"
                "  # positions inside the cache, not original ones\n": "",
                "kept.append(list(cache))": "kept.append(list(cache))\n"
                                            "        positions.append([len(cache) - len(new) + j for j in range(len(new))])"},
                hint=H("块内 token 的位置在驱逐之前确定：它们和缓存 + 整个块一起做注意力。",
                       "A chunk's positions are fixed before eviction: its tokens attend to the cache plus the whole chunk.")),
            "no ValueError for bad sizes": mutate("if sinks < 0 or window < 1 or chunk < 1:", "if chunk < 1:",
                hint=H("sinks < 0 或 window < 1 都要抛 ValueError。", "sinks < 0 and window < 1 must raise ValueError.")),
        },
    ),
    Exercise(
        grade_id="ch18_mla_test", functions=("mla_attention",), points=3, bans=(SDPA,),
        cases=(
            Case("2 heads of 5, latent 3", {"seed": 0, "B": 2, "T": 6, "d_model": 16, "r": 3, "H": 2, "hd": 5}),
            Case("one token", {"seed": 1, "B": 1, "T": 1, "d_model": 8, "r": 4, "H": 2, "hd": 3},
                 edge="T = 1: the causal mask is trivial"),
            Case("latent wider than a head", {"seed": 2, "B": 1, "T": 9, "d_model": 24, "r": 12, "H": 4, "hd": 4},
                 edge="r > head_dim: the scale must use head_dim"),
            Case("one head", {"seed": 3, "B": 2, "T": 5, "d_model": 12, "r": 2, "H": 1, "hd": 6}, edge="H = 1"),
            Case("peaked scores", {"seed": 4, "B": 1, "T": 7, "d_model": 16, "r": 6, "H": 3, "hd": 4, "k_scale": 3.0},
                 edge="scores of tens: a near one-hot softmax"),
        ),
        probe=probe_mla, judge=judge_mla,
        mutants={
            "absorbed path scaled by the latent size": mutate("@ latent[:, None].transpose(-2, -1) / math.sqrt(hd))",
                                                              "@ latent[:, None].transpose(-2, -1) / math.sqrt(r))",
                hint=H("吸收只是改变矩阵乘法的结合顺序，分数（和缩放 1/√d_head）完全不变。",
                       "Absorption only re-associates the matrix products: the scores, and their 1/sqrt head_dim scale, "
                       "are unchanged.")),
            "heads split the wrong way": mutate('uk = w_uk.view(r, n_heads, hd).permute(1, 0, 2)',
                                                'uk = w_uk.view(r, hd, n_heads).permute(2, 0, 1)',
                hint=H("第 h 个头用的是 W_UK 的第 h*hd 到 (h+1)*hd 列，和显式计算时一样。",
                       "Head h uses columns h*hd ... (h+1)*hd of W_UK, exactly as in the explicit computation.")),
            "explicit attention not causal": mutate(
                'scores = (q @ k.transpose(-2, -1) / math.sqrt(hd)).masked_fill(~causal, float("-inf"))',
                "scores = q @ k.transpose(-2, -1) / math.sqrt(hd)",
                hint=H("解码器的注意力是因果的。", "Decoder attention is causal: no query may see a later key.")),
            "caches the decompressed K and V": mutate('"cache_per_token": r,', '"cache_per_token": 2 * n_heads * hd,',
                hint=H("MLA 只缓存潜向量 c（每个 token r 个数），这是它省显存的全部原因。",
                       "MLA caches only the latent c (r numbers per token): that is the whole saving.")),
            "MHA cache counts K only": mutate('"mha_cache_per_token": 2 * n_heads * hd', '"mha_cache_per_token": n_heads * hd',
                hint=H("MHA 每个 token 每层缓存 K 和 V 两份。", "MHA caches both K and V per token and layer.")),
        },
    ),
    Exercise(
        grade_id="ch18_linear_attention_test", functions=("linear_attention_parallel", "linear_attention_recurrent"),
        points=2,
        cases=(
            Case("2 x 3 heads, 9 tokens", {"seed": 0, "lead": [2, 3], "T": 9, "d": 4, "e": 5}),
            Case("one token", {"seed": 1, "lead": [1, 1], "T": 1, "d": 3, "e": 2}, edge="T = 1"),
            Case("negative-heavy inputs", {"seed": 2, "lead": [1, 2], "T": 12, "d": 6, "e": 3, "scale": 4.0},
                 edge="inputs of magnitude 4: elu's negative branch near -1, phi near 0"),
            Case("float64", {"seed": 3, "lead": [2, 1], "T": 7, "d": 5, "e": 5, "dtype": "float64"},
                 edge="float64 inputs keep float64"),
            Case("long sequence", {"seed": 4, "lead": [1, 1], "T": 64, "d": 8, "e": 8}),
        ),
        probe=probe_linear, judge=judge_linear,
        mutants={
            "feature map relu instead of elu + 1": mutate("fq, fk = F.elu(q) + 1, F.elu(k) + 1",
                                                          "fq, fk = F.relu(q), F.relu(k)", count=2,
                hint=H("φ(x) = elu(x) + 1 保证特征严格为正，分母不会为 0。",
                       "phi(x) = elu(x) + 1 keeps every feature strictly positive, so the denominator never vanishes.")),
            "parallel form excludes the current token": mutate(
                "torch.ones(t, t, dtype=q.dtype).tril()",
                "torch.ones(t, t, dtype=q.dtype).tril(-1) + torch.eye(t, dtype=q.dtype) * 1e-9",
                hint=H("因果掩码包括当前 token 自己（i ≤ t）。", "The causal sum includes the current token (i <= t).")),
            "no normaliser in the parallel form": mutate("return (weights @ v) / weights.sum(-1, keepdim=True)",
                                                         "return weights @ v",
                hint=H("线性注意力也要除以 φ(q)·Σφ(k)，否则不是加权平均。",
                       "Linear attention divides by phi(q)*sum phi(k) too; without it the output is no weighted average.")),
            "recurrent state updated after the output": mutate({
                "        s = s + fk[..., i, :, None] * v[..., i, None, :]             # S += phi(k_i) v_i^T\n"
                "        z = z + fk[..., i, :]\n": "",
                "        outs.append(num / (fq[..., i, :] * z).sum(-1, keepdim=True))\n":
                    "        outs.append(num / (fq[..., i, :] * z).sum(-1, keepdim=True).clamp_min(1e-9))\n"
                    "        s = s + fk[..., i, :, None] * v[..., i, None, :]\n        z = z + fk[..., i, :]\n"},
                hint=H("先把当前 token 写进状态，再读出输出。", "Write the current token into the state first, then read.")),
            "recurrent normaliser forgotten": mutate("outs.append(num / (fq[..., i, :] * z).sum(-1, keepdim=True))",
                                                     "outs.append(num)",
                hint=H("递归形式也需要 z 做归一化。", "The recurrent form normalises by z as well.")),
        },
    ),
    Exercise(
        grade_id="ch18_selective_scan_test", functions=("selective_scan",), points=3,
        cases=(
            Case("batch 2, 7 steps", {"seed": 0, "Bt": 2, "L": 7, "d": 3, "n": 4}),
            Case("one step", {"seed": 1, "Bt": 1, "L": 1, "d": 2, "n": 3}, edge="L = 1: h starts at zero"),
            Case("large steps (state forgets)", {"seed": 2, "Bt": 1, "L": 9, "d": 4, "n": 2, "delta_shift": 4.0},
                 edge="delta about 4: exp(delta A) near 0"),
            Case("tiny steps (state remembers)", {"seed": 3, "Bt": 2, "L": 12, "d": 3, "n": 5, "delta_shift": -6.0},
                 edge="delta about 0.0025: exp(delta A) near 1"),
            Case("state size 1", {"seed": 4, "Bt": 3, "L": 5, "d": 2, "n": 1}, edge="n = 1"),
        ),
        probe=probe_scan, judge=judge_scan,
        mutants={
            "zero-order hold for B instead of Euler": mutate(
                "h = torch.exp(dt * A) * h + dt * B[:, t, None, :] * x[:, t, :, None]",
                "h = torch.exp(dt * A) * h + (torch.exp(dt * A) - 1) / A * B[:, t, None, :] * x[:, t, :, None]",
                hint=H("题目规定 B 用 Mamba 代码里的简化离散化 B̄ = Δ·B（一阶欧拉），A 用 exp(ΔA)。",
                       "The instructions discretise B as Mamba's code does, B-bar = Delta*B (Euler), and A as exp(DeltaA).")),
            "A not multiplied by the step": mutate("h = torch.exp(dt * A) * h", "h = torch.exp(A) * h",
                hint=H("选择性就在于 Δ 同时控制遗忘（exp(ΔA)）和写入。",
                       "Selectivity is Delta controlling both forgetting (exp(DeltaA)) and writing.")),
            "skip connection D forgotten": mutate("ys.append((h * C[:, t, None, :]).sum(-1) + D * x[:, t])",
                                                  "ys.append((h * C[:, t, None, :]).sum(-1))",
                hint=H("输出 y = C·h + D·x，D 是跳连。", "The output is y = C*h + D*x; D is the skip connection.")),
            "output read before the update": whole('''
                def selective_scan(x, delta, A, B, C, D):
                    bt, length, d = x.shape
                    h = x.new_zeros(bt, d, A.shape[1])
                    ys = []
                    for t in range(length):
                        dt = delta[:, t, :, None]
                        ys.append((h * C[:, t, None, :]).sum(-1) + D * x[:, t])
                        h = torch.exp(dt * A) * h + dt * B[:, t, None, :] * x[:, t, :, None]
                    return torch.stack(ys, dim=1), h
                ''', hint=H("y_t 用的是更新后的 h_t（已经包含 x_t）。",
                           "y_t reads h_t after the update (it already holds x_t).")),
        },
    ),
    Exercise(
        grade_id="ch18_ring_attention_test", functions=("ring_attention",), points=3, bans=(SDPA,),
        cases=(
            Case("4 devices, equal blocks", {"seed": 0, "B": 1, "H": 2, "d": 8, "lens": [4, 4, 4, 4], "causal": False}),
            Case("causal, 4 devices", {"seed": 1, "B": 2, "H": 1, "d": 8, "lens": [3, 3, 3, 3], "causal": True},
                 edge="causal: future blocks skipped, the diagonal block masked"),
            Case("causal, unequal blocks", {"seed": 2, "B": 1, "H": 2, "d": 4, "lens": [2, 5, 1], "causal": True},
                 edge="blocks of different lengths: global offsets"),
            Case("one device", {"seed": 3, "B": 1, "H": 1, "d": 4, "lens": [6], "causal": True}, edge="N = 1"),
            Case("large scores, latest block largest", {"seed": 4, "B": 1, "H": 1, "d": 16, "lens": [3, 3, 3],
                                                        "causal": False, "scale": 12.0},
                 edge="scores in the hundreds: exp overflows without the running maximum"),
        ),
        probe=probe_ring, judge=judge_ring,
        mutants={
            "accumulator not rescaled when the maximum grows": mutate(
                "acc = acc * correction[..., None] + p @ v_blocks[j]", "acc = acc + p @ v_blocks[j]",
                hint=H("运行最大值变大时，之前累加的分子和分母都要乘 exp(m_old − m_new)。",
                       "When the running maximum grows, the accumulated numerator and denominator are both rescaled "
                       "by exp(m_old - m_new).")),
            "blocks visited in the wrong direction": mutate("j = (i - s) % n ", "j = (i + s) % n ",
                hint=H("设备 i 在第 s 步拿到的是从左边邻居传来的块 (i − s) mod N。",
                       "At step s device i holds the block that came from its left neighbour: (i - s) mod N.")),
            "future blocks computed and masked instead of skipped": mutate({
                "if causal and j > i:\n                continue": "pass",
                "if causal and j == i:": "if causal:",
                "p = torch.exp(scores - m_new[..., None])": "p = torch.exp(scores - m_new[..., None]).nan_to_num(0.0)",
                "correction = torch.exp(m - m_new)": "correction = torch.exp(m - m_new).nan_to_num(1.0)"},
                hint=H("因果时，整块都在未来的 KV 不需要计算：这正是环形注意力负载不均、需要 zig-zag 切分的原因。",
                       "With a causal mask a KV block entirely in the future is skipped, which is why ring attention "
                       "needs a zig-zag layout to balance the devices.")),
            "diagonal block left unmasked": mutate("if causal and j == i:", "if False:",
                hint=H("设备自己的那一块（j = i）里仍有未来的 key，要按位置做因果掩码。",
                       "The device's own block (j = i) still holds future keys: mask it causally by position.")),
            "log-sum-exp without the maximum": mutate("lses.append(m + torch.log(l))", "lses.append(torch.log(l))",
                hint=H("l 是减去最大值之后的和，logsumexp = m + log l。",
                       "l is the sum after subtracting the maximum: logsumexp = m + log l.")),
        },
    ),
]

# ============================================================================ rule table and alternatives

R = Rule
RULES = {
    "ch18_rope_scaling_test": (
        R("`linear` (position interpolation) divides every inverse frequency by `factor`",
          ("linear interpolation x4", "linear with factor 1", "linear x1.25, head_dim 2"),
          {"linear scaling multiplies the frequencies": "inverse",
           "linear raises the base instead (NTK mixed up with PI)": "inverse"}),
        R("base′ = base · (factor · L / original_max − (factor − 1))^(d / (d − 2))",
          ("dynamic NTK, 2x past the trained length", "dynamic NTK exactly at the trained length"),
          {"dynamic NTK without the d/(d-2) exponent": "inverse",
           "dynamic NTK without the -(factor - 1) term (static NTK)": "inverse"}),
        R("L = max(seq_len, original_max)",
          ("dynamic NTK inside the trained length", "dynamic NTK without seq_len"),
          {"dynamic NTK also below the trained length": "inverse"}),
        R("ramp 0 (fast dimensions) keeps the original frequency, ramp 1 (slow dimensions) divides it by `factor`",
          ("YaRN x4 (Llama-2 sized)", "YaRN x8, base 500k, 8k trained", "YaRN with other betas",
           "YaRN x16 at a short trained length (ramp clamped at 0)"),
          {"YaRN ramp reversed (interpolates the high frequencies)": "inverse"}),
        R("round `low` down and `high` up, then clamp them to [0, d − 1]",
          ("YaRN x4 (Llama-2 sized)", "YaRN x16 at a short trained length (ramp clamped at 0)"),
          {"YaRN boundaries not rounded to whole dimensions": "inverse",
           "YaRN boundaries not clamped to the dimensions": "inverse"}),
        R("attention factor 0.1 · ln(factor) + 1", ("YaRN x4 (Llama-2 sized)", "YaRN with factor 1"),
          {"YaRN attention factor without the 0.1": "attention_factor",
           "YaRN attention factor without the 1 (the log term alone)": "attention_factor"}),
        R("Raise `ValueError` for an unknown `kind`, an odd `head_dim` or `factor` < 1.",
          ("unknown kind", "odd head_dim", "factor below 1"),
          {"no ValueError for a bad kind, head_dim or factor": "ValueError"}),
    ),
    "ch18_sliding_window_test": (
        R("j ≤ i and i − j < `window`", ("window 3, no padding", "window 1 (only itself)", "window T - 1"),
          {"window counts one key too many": "mask", "no causal part (sees the future)": "mask"}),
        R("a padding key (`padding_mask[b, j]` False) is never visible",
          ("left padding", "right padding"),
          {"padding ignored": "mask", "padding masks the queries instead of the keys": "mask"}),
        R("a query row that sees no key outputs zeros, not NaN", ("left padding",),
          {"fully masked rows left as NaN": "NaN"}),
        R("scores scaled by 1/√d", ("window 3, no padding", "window longer than the sequence"),
          {"scores scaled by 1/d": "out"}),
        R("Raise `ValueError` if `window` < 1.", ("window 0",), {"no ValueError for window < 1": "ValueError"}),
    ),
    "ch18_sink_trace_test": (
        R("the RoPE position of each token of the chunk is its index in the cache",
          ("4 sinks, window 8, token by token", "chunk longer than the window"),
          {"original positions for RoPE": "RoPE positions", "positions counted after eviction": "RoPE positions"}),
        R("keep the first `sinks` tokens of the stream", ("4 sinks, window 8, token by token", "window 1",
                                                         "more sinks than tokens"),
          {"no sinks kept (plain window)": "kept"}),
        R("and the `window` most recent tokens", ("chunks of 3, 2 sinks, window 4", "no sinks (window only)",
                                                  "stream exactly fills the cache"),
          {"evicts the newest instead of the oldest": "kept"}),
        R("Raise `ValueError` if `sinks` < 0, `window` < 1 or `chunk` < 1.",
          ("window 0", "negative sinks", "chunk 0"), {"no ValueError for bad sizes": "ValueError"}),
    ),
    "ch18_mla_test": (
        R("scaled by 1/√`head_dim`", ("latent wider than a head", "2 heads of 5, latent 3"),
          {"absorbed path scaled by the latent size": "absorbed"}),
        R("head h uses columns h·`head_dim` … (h + 1)·`head_dim` − 1", ("2 heads of 5, latent 3", "peaked scores"),
          {"heads split the wrong way": "absorbed"}),
        R("causal softmax attention", ("2 heads of 5, latent 3", "latent wider than a head"),
          {"explicit attention not causal": "explicit"}),
        R("`cache_per_token`: how many numbers MLA caches per token and layer",
          ("one token", "one head"), {"caches the decompressed K and V": "cache_per_token"}),
        R("`mha_cache_per_token`: how many numbers multi-head attention with the same heads would cache",
          ("one token", "one head"), {"MHA cache counts K only": "mha_cache_per_token"}),
    ),
    "ch18_linear_attention_test": (
        R("φ(x) = elu(x) + 1", ("negative-heavy inputs", "2 x 3 heads, 9 tokens"),
          {"feature map relu instead of elu + 1": "parallel"}),
        R("over i ≤ t (the current token included)", ("one token", "2 x 3 heads, 9 tokens"),
          {"parallel form excludes the current token": "parallel",
           "recurrent state updated after the output": "recurrent"}),
        R("divided by φ(q_t) · Σ_{i≤t} φ(k_i)", ("2 x 3 heads, 9 tokens", "long sequence", "float64"),
          {"no normaliser in the parallel form": "parallel", "recurrent normaliser forgotten": "recurrent"}),
    ),
    "ch18_selective_scan_test": (
        R("B̄_t = Δ_t · B_t (Euler, as in Mamba's code)", ("batch 2, 7 steps", "large steps (state forgets)"),
          {"zero-order hold for B instead of Euler": "outputs y"}),
        R("Ā_t = exp(Δ_t · A)", ("batch 2, 7 steps", "tiny steps (state remembers)"),
          {"A not multiplied by the step": "outputs y"}),
        R("y_t = C_t · h_t + D ⊙ x_t", ("one step", "state size 1"), {"skip connection D forgotten": "outputs y"}),
        R("after the update", ("one step", "batch 2, 7 steps"), {"output read before the update": "outputs y"}),
    ),
    "ch18_ring_attention_test": (
        R("merge it into its running maximum, denominator and numerator (online softmax)",
          ("4 devices, equal blocks", "large scores, latest block largest"),
          {"accumulator not rescaled when the maximum grows": "output"}),
        R("at step s device i holds the KV block of device (i − s) mod N",
          ("4 devices, equal blocks", "causal, 4 devices"), {"blocks visited in the wrong direction": "computed"}),
        R("a KV block entirely in the future of device i's queries is skipped (not computed)",
          ("causal, 4 devices", "causal, unequal blocks"),
          {"future blocks computed and masked instead of skipped": "computed"}),
        R("the block j = i is masked causally", ("causal, unequal blocks", "one device"),
          {"diagonal block left unmasked": "output"}),
        R("`lses[i]`: the log-sum-exp of each query's scores", ("4 devices, equal blocks", "one device"),
          {"log-sum-exp without the maximum": "log-sum-exp"}),
    ),
}

ALTERNATIVES = {
    "ch18_rope_scaling_test": {"numpy in float64, YaRN blend written as a mask of three zones": """
        import numpy as np

        def rope_inv_freq(head_dim, base, kind="default", factor=1.0, original_max=None, seq_len=None,
                          beta_fast=32.0, beta_slow=1.0):
            if kind not in {"default", "linear", "dynamic", "yarn"} or head_dim % 2 == 1 or head_dim < 2 or factor < 1:
                raise ValueError("bad RoPE arguments")
            d = head_dim
            i = np.arange(d // 2, dtype=np.float64)
            if kind == "dynamic":
                L = original_max if seq_len is None else max(seq_len, original_max)
                base = base * (factor * L / original_max - factor + 1) ** (d / (d - 2))
            theta = np.power(float(base), -2.0 * i / d)
            att = 1.0
            if kind == "linear":
                theta = theta / factor
            if kind == "yarn":
                wavelen_dim = lambda rot: d * np.log(original_max / (rot * 2 * np.pi)) / (2 * np.log(base))
                lo = max(int(np.floor(wavelen_dim(beta_fast))), 0)
                hi = min(int(np.ceil(wavelen_dim(beta_slow))), d - 1)
                span = (hi - lo) if hi != lo else 0.001
                gamma = np.clip((i - lo) / span, 0.0, 1.0)
                theta = (1 - gamma) * theta + gamma * theta / factor
                att = 1.0 + 0.1 * np.log(factor) if factor > 1 else 1.0
            return torch.tensor(theta, dtype=torch.float32), att
    """},
    "ch18_sliding_window_test": {"mask by broadcasting differences, attention with an additive mask and where": """
        def sliding_window_mask(padding_mask, window):
            if not window >= 1:
                raise ValueError("window must be >= 1")
            n = padding_mask.shape[1]
            pos = torch.arange(n)
            dist = pos.view(-1, 1) - pos.view(1, -1)
            keep = (dist >= 0) & (dist <= window - 1)
            return keep.unsqueeze(0) & padding_mask.unsqueeze(1).to(torch.bool)

        def sliding_window_attention(q, k, v, padding_mask, window):
            keep = sliding_window_mask(padding_mask, window).unsqueeze(1)
            bias = torch.zeros(keep.shape, dtype=q.dtype).masked_fill(~keep, -1e30)
            w = torch.softmax(torch.einsum("bhid,bhjd->bhij", q, k) * q.shape[-1] ** -0.5 + bias, dim=-1)
            w = torch.where(keep.any(-1, keepdim=True), w, torch.zeros_like(w))
            return torch.einsum("bhij,bhjd->bhid", w, v)
    """},
    "ch18_sink_trace_test": {"arithmetic on counts, no cache list": """
        def streaming_kv_trace(n_tokens, sinks, window, chunk=1):
            if sinks < 0 or window < 1 or chunk < 1:
                raise ValueError("bad sizes")
            positions, kept, seen = [], [], 0
            for start in range(0, n_tokens, chunk):
                stop = min(start + chunk, n_tokens)
                size = min(seen, sinks) + min(max(seen - sinks, 0), window)
                positions.append(list(range(size, size + stop - start)))
                seen = stop
                head = list(range(min(seen, sinks)))
                tail_len = min(max(seen - sinks, 0), window)
                kept.append(head + list(range(seen - tail_len, seen)))
            return positions, kept
    """},
    "ch18_mla_test": {"einsum per head, weights absorbed into one r x r-sized query map": """
        def mla_attention(x, w_dkv, w_uk, w_uv, w_q, w_o, n_heads):
            B, T, _ = x.shape
            r = w_dkv.shape[-1]
            hd = w_q.shape[-1] // n_heads
            c = torch.einsum("btd,dr->btr", x, w_dkv)
            q = torch.einsum("btd,dk->btk", x, w_q).reshape(B, T, n_heads, hd)
            k = torch.einsum("btr,rk->btk", c, w_uk).reshape(B, T, n_heads, hd)
            v = torch.einsum("btr,rk->btk", c, w_uv).reshape(B, T, n_heads, hd)
            future = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
            s = torch.einsum("bihk,bjhk->bhij", q, k) / hd ** 0.5
            a = torch.softmax(s.masked_fill(future, -float("inf")), -1)
            explicit = torch.einsum("bhij,bjhk->bihk", a, v).reshape(B, T, -1) @ w_o
            Wuk = w_uk.reshape(r, n_heads, hd)
            Wuv = w_uv.reshape(r, n_heads, hd)
            q_c = torch.einsum("bihk,rhk->bhir", q, Wuk)
            s2 = torch.einsum("bhir,bjr->bhij", q_c, c) / hd ** 0.5
            a2 = torch.softmax(s2.masked_fill(future, -float("inf")), -1)
            o_c = torch.einsum("bhij,bjr->bhir", a2, c)
            w_vo = torch.einsum("rhk,hkd->hrd", Wuv, w_o.reshape(n_heads, hd, -1))   # W_UV folded into W_O
            absorbed = torch.einsum("bhir,hrd->bid", o_c, w_vo)
            return {"latent": c, "out": explicit, "out_absorbed": absorbed, "cache_per_token": r,
                    "mha_cache_per_token": 2 * hd * n_heads}
    """},
    "ch18_linear_attention_test": {"cumulative sums for the parallel form, einsum for the recurrent one": """
        def _phi(x):
            return torch.where(x > 0, x + 1, torch.exp(x))

        def linear_attention_parallel(q, k, v):
            fq, fk = _phi(q), _phi(k)
            kv = torch.cumsum(fk.unsqueeze(-1) * v.unsqueeze(-2), dim=-3)     # [..., T, d, e]
            ksum = torch.cumsum(fk, dim=-2)
            num = torch.einsum("...td,...tde->...te", fq, kv)
            return num / torch.einsum("...td,...td->...t", fq, ksum).unsqueeze(-1)

        def linear_attention_recurrent(q, k, v):
            fq, fk = _phi(q), _phi(k)
            S = torch.zeros(*q.shape[:-2], q.shape[-1], v.shape[-1], dtype=q.dtype)
            z = torch.zeros(*q.shape[:-1][:-1], q.shape[-1], dtype=q.dtype)
            out = torch.empty(*q.shape[:-1], v.shape[-1], dtype=q.dtype)
            for t in range(q.shape[-2]):
                S = S + torch.einsum("...d,...e->...de", fk[..., t, :], v[..., t, :])
                z = z + fk[..., t, :]
                out[..., t, :] = torch.einsum("...d,...de->...e", fq[..., t, :], S) / \\
                    torch.einsum("...d,...d->...", fq[..., t, :], z).unsqueeze(-1)
            return out, S, z
    """},
    "ch18_selective_scan_test": {"parallel associative scan (Hillis-Steele doubling)": """
        def selective_scan(x, delta, A, B, C, D):
            a = torch.exp(delta.unsqueeze(-1) * A)                       # [Bt, L, d, n]
            b = delta.unsqueeze(-1) * B.unsqueeze(2) * x.unsqueeze(-1)   # [Bt, L, d, n]
            L = x.shape[1]
            step = 1
            while step < L:                                              # (a1, b1) then (a2, b2) = (a1 a2, a2 b1 + b2)
                a_prev = torch.cat([torch.ones_like(a[:, :step]), a[:, :-step]], dim=1)
                b_prev = torch.cat([torch.zeros_like(b[:, :step]), b[:, :-step]], dim=1)
                a, b = a * a_prev, a * b_prev + b
                step *= 2
            h = b                                                        # every h_t at once
            y = torch.einsum("bldn,bln->bld", h, C) + D * x
            return y, h[:, -1]
    """},
    "ch18_ring_attention_test": {"explicit message passing between devices, running state as a tuple": """
        def ring_attention(q_blocks, k_blocks, v_blocks, causal=False):
            n = len(q_blocks)
            offsets = [sum(k.shape[-2] for k in k_blocks[:j]) for j in range(n)]
            held = [(j, k_blocks[j], v_blocks[j]) for j in range(n)]        # device i holds its own block first
            state = []
            for i in range(n):
                q = q_blocks[i]
                state.append((torch.full(q.shape[:-1], -math.inf), torch.zeros(q.shape[:-1]),
                              torch.zeros(*q.shape[:-1], v_blocks[0].shape[-1])))
            computed = [[] for _ in range(n)]
            for step in range(n):
                for i in range(n):
                    j, k, v = held[i]
                    if causal and offsets[j] > offsets[i] + q_blocks[i].shape[-2] - 1:
                        continue
                    q = q_blocks[i]
                    s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
                    if causal:
                        qpos = offsets[i] + torch.arange(q.shape[-2]).unsqueeze(1)
                        kpos = offsets[j] + torch.arange(k.shape[-2]).unsqueeze(0)
                        s = torch.where(kpos <= qpos, s, torch.tensor(-math.inf))
                    m, l, o = state[i]
                    m2 = torch.maximum(m, s.max(-1).values)
                    p = (s - m2.unsqueeze(-1)).exp()
                    c = (m - m2).exp()
                    state[i] = (m2, l * c + p.sum(-1), o * c.unsqueeze(-1) + p @ v)
                    computed[i].append(j)
                held = [held[(i - 1) % n] for i in range(n)]                 # send to the right, receive from the left
            outs = [o / l.unsqueeze(-1) for m, l, o in state]
            lses = [m + l.log() for m, l, o in state]
            return outs, lses, computed
    """},
}

ORACLES = {
    "ch18_rope_scaling_test": oracle_rope,
    "ch18_sliding_window_test": oracle_window,
    "ch18_sink_trace_test": oracle_sinks,
    "ch18_mla_test": oracle_mla,
    "ch18_linear_attention_test": oracle_linear,
    "ch18_selective_scan_test": oracle_scan,
    "ch18_ring_attention_test": oracle_ring,
}

CHAPTER = Chapter("ch18_long_context", "ch18_exercises.ipynb", EXERCISES, rules=RULES, alternatives=ALTERNATIVES,
                  oracles=ORACLES)

"""Trusted spec of Chapter 9's graded cells (solutions/ch09_transformer/ch09_exercises.ipynb).

Probes run in the sandbox and are self-contained; every tensor comes from a seeded generator and every model is a
small random configuration (never SmolLM2), so a case takes milliseconds. The library implementation an exercise
imitates is banned while it is probed (``Exercise.bans``); the oracles, in the trusted test process, call it:
``F.scaled_dot_product_attention``, ``nn.MultiheadAttention``, ``nn.RMSNorm``, transformers' Llama modules,
Mixtral's router and ``load_balancing_loss_func``.
"""

import numpy as np

from llmprep.grading.spec import Case, Chapter, Exercise, Hint, Rule, mutate, ordered, with_defaults


# ============================================================================ oracle helpers

def _causal_additive(batch, length):
    import torch

    mask = torch.full((length, length), float("-inf")).triu(1)
    return mask[None, None].expand(batch, 1, length, length)


def _llama_config(hidden, heads, kv_heads, head_dim, intermediate=None, eps=1e-6):
    from transformers import LlamaConfig

    cfg = LlamaConfig(vocab_size=32, hidden_size=hidden, intermediate_size=intermediate or 2 * hidden,
                      num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=head_dim,
                      rms_norm_eps=eps, attention_bias=False, mlp_bias=False, hidden_act="silu",
                      num_hidden_layers=1, max_position_embeddings=4096)
    cfg._attn_implementation = "eager"
    return cfg


# ============================================================================ 1 attention with masks

def probe_attention(ns, params):
    import torch

    fn = ns["attention"]
    g = torch.Generator().manual_seed(params["seed"])
    b, h, lq, lk, d = params["B"], params["H"], params["Lq"], params["Lk"], params["D"]
    q = torch.randn(b, h, lq, d, generator=g) * params.get("scale", 1.0)
    k = torch.randn(b, h, lk, d, generator=g) * params.get("scale", 1.0)
    v = torch.randn(b, h, lk, d, generator=g)
    keep = None
    if "lengths" in params:  # real tokens per row; padding on the given side
        keep = torch.arange(lk)[None, :] < torch.tensor(params["lengths"])[:, None]
        if params.get("side") == "left":
            keep = keep.flip(-1)
    out = fn(q, k, v, causal=params["causal"], key_padding_mask=keep)
    return {"out": out}


_attention_values = ordered(("out", "the attention output", 1e-4, 1e-5))


def judge_attention(got, want, params):
    """The attention output; a query left with no allowed key (its expected row is all zeros) that gets
    finite non-zero values is named as such (NaN there is reported by the value comparison)."""
    if "out" in got:
        g, w = np.asarray(got["out"]), np.asarray(want["out"])
        if g.shape == w.shape and g.dtype.kind == "f" and w.ndim:
            empty = (w == 0).all(-1)
            if empty.any() and np.isfinite(g[empty]).all() and (np.abs(g[empty]) > 1e-6).any():
                return ("the attention output is not zero for a query that has no allowed key: such a query must "
                        "return a row of zeros")
    return _attention_values(got, want, params)


def oracle_attention():
    import torch
    import torch.nn.functional as F

    def attention(q, k, v, causal=False, key_padding_mask=None):
        lq, lk = q.shape[-2], k.shape[-2]
        allowed = torch.ones(q.shape[0], 1, lq, lk, dtype=torch.bool)
        if causal:  # bottom-right aligned: the last query sits at the last key
            allowed = allowed & torch.ones(lq, lk, dtype=torch.bool).tril(lk - lq)
        if key_padding_mask is not None:
            allowed = allowed & key_padding_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        return torch.where(allowed.any(-1, keepdim=True), out, torch.zeros_like(out))

    return {"attention": attention}


# ============================================================================ 2 multi-head attention

def probe_mha(ns, params):
    import torch

    fn = ns["multi_head_attention"]
    g = torch.Generator().manual_seed(params["seed"])
    b, lq, lk, e, heads = params["B"], params["Lq"], params["Lk"], params["E"], params["heads"]
    query = torch.randn(b, lq, e, generator=g)
    if params.get("self"):
        key = value = query
    else:
        key = torch.randn(b, lk, e, generator=g)
        value = torch.randn(b, lk, e, generator=g)
    w_in = torch.randn(3 * e, e, generator=g) * params.get("w", 0.3)
    b_in = torch.randn(3 * e, generator=g) * 0.1
    w_out = torch.randn(e, e, generator=g) * 0.2
    b_out = torch.randn(e, generator=g) * 0.1
    pad = None
    if "lengths" in params:  # PyTorch convention: True = padding, ignored
        pad = torch.arange(key.shape[1])[None, :] >= torch.tensor(params["lengths"])[:, None]
    out, weights = fn(query, key, value, w_in, b_in, w_out, b_out, heads, key_padding_mask=pad)
    return {"out": out, "weights": weights}


def oracle_mha():
    import torch

    def multi_head_attention(query, key, value, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias,
                             num_heads, key_padding_mask=None):
        e = query.shape[-1]
        mha = torch.nn.MultiheadAttention(e, num_heads, batch_first=True).eval()
        with torch.no_grad():
            mha.in_proj_weight.copy_(in_proj_weight)
            mha.in_proj_bias.copy_(in_proj_bias)
            mha.out_proj.weight.copy_(out_proj_weight)
            mha.out_proj.bias.copy_(out_proj_bias)
            return mha(query, key, value, key_padding_mask=key_padding_mask, need_weights=True,
                       average_attn_weights=True)

    return {"multi_head_attention": multi_head_attention}


# ============================================================================ 3 RoPE

def probe_rope(ns, params):
    import torch

    fn = ns["apply_rope"]
    g = torch.Generator().manual_seed(params["seed"])
    b, h, hkv, length, d = params["B"], params["H"], params["Hkv"], params["L"], params["D"]
    q = torch.randn(b, h, length, d, generator=g)
    k = torch.randn(b, hkv, length, d, generator=g)
    pos = torch.arange(length)[None, :] + torch.tensor(params["offsets"])[:, None]
    q_rot, k_rot = fn(q, k, pos, theta=params["theta"])
    return {"q_rot": q_rot, "k_rot": k_rot}


def oracle_rope():
    from transformers.models.llama import modeling_llama as ml

    def apply_rope(q, k, position_ids, theta=10000.0):
        d = q.shape[-1]
        cfg = _llama_config(hidden=d * q.shape[1], heads=q.shape[1], kv_heads=k.shape[1], head_dim=d)
        cfg.rope_parameters = {"rope_type": "default", "rope_theta": float(theta)}
        cos, sin = ml.LlamaRotaryEmbedding(cfg)(q, position_ids)
        return ml.apply_rotary_pos_emb(q, k, cos, sin)

    return {"apply_rope": apply_rope}


# ============================================================================ 4 RMSNorm

def probe_rms_norm(ns, params):
    import torch

    fn = ns["rms_norm"]
    g = torch.Generator().manual_seed(params["seed"])
    x = torch.randn(*params["shape"], generator=g) * params["scale"]
    if params.get("row_scales"):  # rows of very different magnitude
        x = x * torch.logspace(-2, 2, x.shape[-2])[:, None]
    weight = 1.0 + 0.5 * torch.randn(params["shape"][-1], generator=g)
    dtype = getattr(torch, params["dtype"])
    x, weight = x.to(dtype), weight.to(dtype)
    y = fn(x, weight, eps=params["eps"])
    return {"y": torch.as_tensor(y).float(), "dtype": str(torch.as_tensor(y).dtype)}


def judge_rms_norm(got, want, params):
    """Tolerance of a few units in the last place of the input's dtype (float32-correct arithmetic in any order,
    with the weight applied before or after the cast back, passes)."""
    rtol, atol = {"float32": (1e-5, 1e-6), "float16": (4e-3, 1e-3), "bfloat16": (2.4e-2, 1e-2)}[params["dtype"]]
    return ordered(("y", "the normalised output", rtol, atol), ("dtype", "the result's dtype", None, "dtype"))(
        got, want, params)


def oracle_rms_norm():
    import torch

    def rms_norm(x, weight, eps=1e-6):
        norm = torch.nn.RMSNorm(x.shape[-1], eps=eps, dtype=x.dtype)
        with torch.no_grad():
            norm.weight.copy_(weight)
            return norm(x)

    return {"rms_norm": rms_norm}


# ============================================================================ 5 grouped-query attention

def probe_gqa(ns, params):
    import torch

    fn = ns["gqa_attention"]
    g = torch.Generator().manual_seed(params["seed"])
    b, length, hidden, heads, kv, hd = (params[k] for k in ("B", "L", "hidden", "heads", "kv_heads", "head_dim"))
    x = torch.randn(b, length, hidden, generator=g)
    wq = torch.randn(heads * hd, hidden, generator=g) * 0.4
    wk = torch.randn(kv * hd, hidden, generator=g) * 0.4
    wv = torch.randn(kv * hd, hidden, generator=g) * 0.3
    wo = torch.randn(hidden, heads * hd, generator=g) * 0.2
    # cos, sin in the rotate-half layout for positions offset..offset+L-1 (what LlamaRotaryEmbedding returns)
    inv = 1.0 / params["theta"] ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd)
    ang = (torch.arange(length, dtype=torch.float32) + params["offset"])[:, None] * inv
    emb = torch.cat([ang, ang], dim=-1)
    cos, sin = emb.cos()[None].expand(b, -1, -1).contiguous(), emb.sin()[None].expand(b, -1, -1).contiguous()
    out = fn(x, wq, wk, wv, wo, heads, kv, cos, sin)
    return {"out": out}


def oracle_gqa():
    import torch
    from transformers.models.llama import modeling_llama as ml

    def gqa_attention(x, q_weight, k_weight, v_weight, o_weight, num_heads, num_kv_heads, cos, sin):
        hd = q_weight.shape[0] // num_heads
        att = ml.LlamaAttention(_llama_config(x.shape[-1], num_heads, num_kv_heads, hd), layer_idx=0).eval()
        with torch.no_grad():
            for lin, w in ((att.q_proj, q_weight), (att.k_proj, k_weight), (att.v_proj, v_weight),
                           (att.o_proj, o_weight)):
                lin.weight.copy_(w)
            out, _ = att(x, position_embeddings=(cos, sin), attention_mask=_causal_additive(x.shape[0], x.shape[1]))
        return out

    return {"gqa_attention": gqa_attention}


# ============================================================================ 6 SwiGLU

def probe_swiglu(ns, params):
    import torch

    fn = ns["swiglu_mlp"]
    g = torch.Generator().manual_seed(params["seed"])
    d, f = params["hidden"], params["inter"]
    x = torch.randn(*params["lead"], d, generator=g) * params.get("scale", 1.0)
    gate = torch.randn(f, d, generator=g) / d ** 0.5
    up = torch.randn(f, d, generator=g) / d ** 0.5
    down = torch.randn(d, f, generator=g) / f ** 0.5
    out = fn(x, gate, up, down)
    return {"out": out}


def oracle_swiglu():
    import torch
    from transformers.models.llama import modeling_llama as ml

    def swiglu_mlp(x, gate_weight, up_weight, down_weight):
        d, f = x.shape[-1], gate_weight.shape[0]
        mlp = ml.LlamaMLP(_llama_config(d, 1, 1, d, intermediate=f))
        with torch.no_grad():
            mlp.gate_proj.weight.copy_(gate_weight)
            mlp.up_proj.weight.copy_(up_weight)
            mlp.down_proj.weight.copy_(down_weight)
            return mlp(x)

    return {"swiglu_mlp": swiglu_mlp}


# ============================================================================ 7 decoder layer

def probe_decoder_layer(ns, params):
    import torch

    fn = ns["decoder_layer"]
    g = torch.Generator().manual_seed(params["seed"])
    b, length, hidden, heads, kv, hd, inter = (params[k] for k in ("B", "L", "hidden", "heads", "kv_heads",
                                                                     "head_dim", "inter"))
    x = torch.randn(b, length, hidden, generator=g) * params.get("scale", 1.0)
    shapes = {"self_attn.q_proj.weight": (heads * hd, hidden, 0.4), "self_attn.k_proj.weight": (kv * hd, hidden, 0.4),
              "self_attn.v_proj.weight": (kv * hd, hidden, 0.3), "self_attn.o_proj.weight": (hidden, heads * hd, 0.2),
              "mlp.gate_proj.weight": (inter, hidden, hidden ** -0.5), "mlp.up_proj.weight": (inter, hidden, hidden ** -0.5),
              "mlp.down_proj.weight": (hidden, inter, inter ** -0.5)}
    weights = {"input_layernorm.weight": 1.0 + 0.5 * torch.randn(hidden, generator=g),
               "post_attention_layernorm.weight": 1.0 + 0.5 * torch.randn(hidden, generator=g)}
    for name, (rows, cols, std) in shapes.items():
        weights[name] = torch.randn(rows, cols, generator=g) * std
    inv = 1.0 / params["theta"] ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd)
    ang = (torch.arange(length, dtype=torch.float32) + params["offset"])[:, None] * inv
    emb = torch.cat([ang, ang], dim=-1)
    cos, sin = emb.cos()[None].expand(b, -1, -1).contiguous(), emb.sin()[None].expand(b, -1, -1).contiguous()
    out = fn(x, dict(weights), heads, kv, cos, sin, eps=params["eps"])
    return {"out": out}


def oracle_decoder_layer():
    import torch
    from transformers.models.llama import modeling_llama as ml

    def decoder_layer(x, weights, num_heads, num_kv_heads, cos, sin, eps=1e-6):
        hd = weights["self_attn.q_proj.weight"].shape[0] // num_heads
        inter = weights["mlp.gate_proj.weight"].shape[0]
        cfg = _llama_config(x.shape[-1], num_heads, num_kv_heads, hd, intermediate=inter, eps=eps)
        layer = ml.LlamaDecoderLayer(cfg, layer_idx=0).eval()
        layer.load_state_dict(weights)
        with torch.no_grad():
            return layer(x, attention_mask=_causal_additive(x.shape[0], x.shape[1]), position_embeddings=(cos, sin))

    return {"decoder_layer": decoder_layer}


# ============================================================================ 8 top-k router + load balancing

def probe_router(ns, params):
    import torch

    fn = ns["route_top_k"]
    g = torch.Generator().manual_seed(params["seed"])
    b, s, e = params["B"], params["S"], params["E"]
    logits = torch.randn(b * s, e, generator=g) * params["scale"]
    if "favour" in params:  # a router that prefers one expert: the loss should be large
        logits[:, params["favour"]] += params["bias"]
    mask = None
    if "lengths" in params:
        mask = (torch.arange(s)[None, :] < torch.tensor(params["lengths"])[:, None]).long()
    weights, experts, loss = fn(logits.clone(), params["k"], attention_mask=mask)
    return {"weights": weights, "experts": torch.as_tensor(experts).long(),
            "aux_loss": torch.as_tensor(loss, dtype=torch.float64).reshape(())}


def oracle_router():
    import torch
    from transformers import MixtralConfig
    from transformers.models.mixtral import modeling_mixtral as mm

    def route_top_k(router_logits, top_k, attention_mask=None):
        e = router_logits.shape[-1]
        router = mm.MixtralTopKRouter(MixtralConfig(hidden_size=e, num_local_experts=e, num_experts_per_tok=top_k))
        with torch.no_grad():
            router.weight.copy_(torch.eye(e))  # identity gate: the router's logits are the given ones
            _, weights, experts = router(router_logits)
            loss = mm.load_balancing_loss_func((router_logits,), e, top_k, attention_mask)
        return weights, experts, loss

    return {"route_top_k": route_top_k}


# ============================================================================ the spec

# Mutants are edits of the solution's own functions (read from the solution notebook); snippets used twice:
ROW_ZERO = "weights = weights.masked_fill(~allowed.any(dim=-1, keepdim=True), 0.0)"
ROTATE = "torch.cat([-x[..., d // 2:], x[..., :d // 2]], dim=-1)"
ROPE_QK = "q, k = q * c + rotate_half(q) * s, k * c + rotate_half(k) * s"
GLU = "F.silu(F.linear(x, gate_weight)) * F.linear(x, up_weight)"

EXERCISES = [
    Exercise(
        grade_id="ch09_attention_test", functions=("attention",), points=3,
        bans=(("torch.nn.functional", "scaled_dot_product_attention", "F.scaled_dot_product_attention"),
              ("torch.nn.functional", "multi_head_attention_forward", "F.multi_head_attention_forward"),),
        cases=with_defaults(
            {"B": 2, "H": 2, "D": 8, "causal": True},
            Case("no mask", {"seed": 0, "H": 3, "Lq": 5, "Lk": 5, "causal": False}),
            Case("causal, square", {"seed": 1, "Lq": 6, "Lk": 6, "D": 16}, edge="Lq = Lk: the causal offset is 0"),
            Case("causal after a cached prefix (fewer queries than keys)", {"seed": 2, "Lq": 3, "Lk": 7},
                 edge="Lq < Lk: the causal offset Lk - Lq is positive"),
            Case("right padding", {"seed": 3, "B": 3, "Lq": 5, "Lk": 6, "causal": False, "lengths": [6, 2, 4],
                                   "side": "right"}, edge="a row with 2 real keys of 6"),
            Case("left padding with causal: early queries see no key",
                 {"seed": 4, "Lq": 6, "Lk": 6, "lengths": [6, 3], "side": "left"},
                 edge="a query left with no allowed key (left padding under a causal mask)"),
            Case("a row that is all padding", {"seed": 5, "H": 1, "Lq": 4, "Lk": 5, "D": 4, "causal": False,
                                               "lengths": [5, 0], "side": "right"},
                 edge="a key_padding_mask row that is all False"),
            Case("scores of magnitude ~1000", {"seed": 6, "B": 1, "Lq": 4, "Lk": 4, "D": 16, "scale": 16.0},
                 edge="scores in the thousands (exp overflows float32)"),
            Case("causal with more queries than keys: the first queries see no key", {"seed": 7, "Lq": 7, "Lk": 4},
                 edge="Lq > Lk: the offset Lk - Lq is negative and queries 0..Lq-Lk-1 have no allowed key"),
        ),
        probe=probe_attention, judge=judge_attention,
        mutants={
            "scales by 1/d instead of 1/sqrt(d)": mutate("/ math.sqrt(q.shape[-1])", "/ q.shape[-1]",
                hint=Hint("分数除以了 head 维度 d 本身而不是它的平方根，softmax 被压得过于平坦。",
                    "Scores are divided by the head dimension itself, not its square root: the softmax is too flat.")),
            "causal mask aligned top-left (ignores the cached prefix)": mutate(".tril(diagonal=lk - lq)", ".tril()",
                hint=Hint("causal mask 按左上角对齐：有缓存前缀（Lq < Lk）时，查询看不到本该可见的前缀 key。",
                    "The causal mask is aligned top-left, so with a cached prefix (Lq < Lk) queries miss keys they may see.")),
            "causal offset clamped at 0 (square or cached-prefix shapes only)": mutate(
                ".tril(diagonal=lk - lq)", ".tril(diagonal=max(lk - lq, 0))",
                hint=Hint("对角偏移被截到 0：Lq > Lk 时，最后一个查询不再与最后一个 key 对齐。",
                    "The diagonal offset is clamped at 0: when Lq > Lk the last query no longer sits at the last key.")),
            "padding mask read as True = padding": mutate("allowed & key_padding_mask", "allowed & ~key_padding_mask",
                hint=Hint("把 key_padding_mask 的 True 当成了 padding；这里 True 表示真实 token、要保留。",
                    "key_padding_mask is read as True = padding; here True marks a real token that must be kept.")),
            "fully masked rows come out as NaN": mutate(ROW_ZERO, "pass",
                hint=Hint("没有任何可见 key 的查询行得到 NaN（全 -inf 的 softmax），应返回全零行。",
                    "A query with no allowed key gets NaN (softmax over all -inf) instead of a row of zeros.")),
            "masks with -1e9: fully masked rows average every value": mutate(
                {'scores.masked_fill(~allowed, float("-inf"))': "scores.masked_fill(~allowed, -1e9)", ROW_ZERO: "pass"},
                hint=Hint("用 -1e9 代替 -inf 做掩码：全被屏蔽的行变成对所有 value 的平均，而不是零。",
                    "Masking with -1e9, not -inf: a fully masked row becomes a uniform average of the values, not zeros.")),
            "exp without subtracting the row maximum (overflows)": mutate(
                "weights = torch.softmax(scores, dim=-1)",
                "e = scores.exp()\n    weights = e / e.sum(-1, keepdim=True).clamp_min(1e-30)",
                hint=Hint("直接对分数取 exp 而不先减去每行最大值，大分数时溢出成 inf/NaN。",
                    "exp of the raw scores without subtracting the row maximum: large scores overflow to inf/NaN.")),
        },
        alternatives={
            "loop over batch and heads, float64, explicit index lists": """
                def attention(q, k, v, causal=False, key_padding_mask=None):
                    b, h, lq, d = q.shape
                    lk = k.shape[-2]
                    out = torch.zeros(b, h, lq, v.shape[-1], dtype=torch.float64)
                    for bi in range(b):
                        for hi in range(h):
                            for i in range(lq):
                                keys = [j for j in range(lk)
                                        if (not causal or j <= i + lk - lq)
                                        and (key_padding_mask is None or bool(key_padding_mask[bi, j]))]
                                if not keys:
                                    continue
                                s = k[bi, hi, keys].double() @ q[bi, hi, i].double() / math.sqrt(d)
                                out[bi, hi, i] = torch.softmax(s, dim=0) @ v[bi, hi, keys].double()
                    return out.float()
            """,
        },
    ),
    Exercise(
        grade_id="ch09_mha_test", functions=("multi_head_attention",), points=3,
        bans=(("torch.nn.MultiheadAttention", "forward", "nn.MultiheadAttention"),
              ("torch.nn.functional", "multi_head_attention_forward", "F.multi_head_attention_forward"),),
        cases=with_defaults(
            {"B": 2},
            Case("self-attention, 4 heads", {"seed": 0, "Lq": 5, "Lk": 5, "E": 16, "heads": 4, "self": True}),
            Case("cross-attention, different lengths", {"seed": 1, "Lq": 3, "Lk": 6, "E": 12, "heads": 3},
                 edge="Lq != Lk (3 queries, 6 keys)"),
            Case("key padding (True = ignore)", {"seed": 2, "B": 3, "Lq": 4, "Lk": 5, "E": 16, "heads": 2,
                                                  "lengths": [5, 2, 3]}, edge="a row with 2 real keys of 5"),
            Case("one head", {"seed": 3, "B": 1, "Lq": 4, "Lk": 4, "E": 8, "heads": 1, "self": True},
                 edge="num_heads = 1: head_dim = embed_dim"),
            Case("8 heads, peaked attention", {"seed": 4, "Lq": 6, "Lk": 6, "E": 32, "heads": 8, "w": 0.6,
                                               "lengths": [6, 4]},
                 edge="8 heads of dim 4: sqrt(head_dim) and sqrt(embed_dim) differ by sqrt(8)"),
        ),
        probe=probe_mha, judge=ordered(("out", "the attention output", 1e-4, 1e-5),
                                       ("weights", "the returned attention map (mean over heads)", 1e-4, 1e-6)),
        mutants={
            "q, k, v blocks read in the wrong order (k, q, v)": mutate({"w_q, w_k, w_v = ": "w_k, w_q, w_v = ",
                                                                        "b_q, b_k, b_v = ": "b_k, b_q, b_v = "},
                hint=Hint("in_proj_weight 的三块顺序读错了：PyTorch 的顺序是 q、k、v。",
                    "The blocks of in_proj_weight and in_proj_bias are read in the wrong order; PyTorch stacks q, k, v.")),
            "scaled by sqrt(embed_dim) instead of sqrt(head_dim)": mutate("/ math.sqrt(hd)", "/ math.sqrt(e)",
                hint=Hint("缩放用了整个 embed_dim 的平方根，而每个头的点积只跨 head_dim 维。",
                    "Scores are scaled by sqrt(embed_dim), but each head's dot product spans only head_dim dimensions.")),
            "key_padding_mask read as True = keep": mutate("masked_fill(key_padding_mask", "masked_fill(~key_padding_mask",
                hint=Hint("key_padding_mask 按“True = 保留”读了；PyTorch 约定 True 表示 padding、要忽略。",
                    "key_padding_mask is read as True = keep; PyTorch's convention is True = padding, to be ignored.")),
            "keys and values projected from the query (self-attention only)": mutate({
                "split_heads(key, w_k, b_k, lk), split_heads(value, w_v, b_v, lk)":
                    "split_heads(query, w_k, b_k, lq), split_heads(query, w_v, b_v, lq)",
                "if key_padding_mask is not None:": "if key_padding_mask is not None and key_padding_mask.shape[1] == lq:"},
                hint=Hint("key 和 value 都由 query 投影得到，只在 self-attention 时正确，cross-attention 出错。",
                    "Keys and values are projected from the query: right for self-attention only, not cross-attention.")),
            "heads split with view(b, heads, L, head_dim) (no transpose)": mutate({
                ".view(b, length, num_heads, hd).transpose(1, 2)": ".reshape(b, num_heads, length, hd)",
                "(weights @ v).transpose(1, 2).reshape(b, lq, e)": "(weights @ v).reshape(b, lq, e)"},
                hint=Hint("直接 reshape 成 (b, heads, L, head_dim) 而没有转置，每个头拿到的是错位的特征块。",
                    "Heads are split by a plain reshape to (b, heads, L, head_dim), no transpose: features get scrambled.")),
            "returns the first head's weights instead of the mean over heads": mutate("weights.mean(dim=1)", "weights[:, 0]",
                hint=Hint("返回的注意力权重只取了第一个头，而不是所有头的平均。",
                    "The returned attention weights are the first head's only, not the average over heads.")),
        },
        alternatives={
            "one head at a time from weight slices, einsum": """
                def multi_head_attention(query, key, value, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias,
                                         num_heads, key_padding_mask=None):
                    e = query.shape[-1]
                    hd = e // num_heads
                    outs, maps = [], []
                    for h in range(num_heads):
                        rows = slice(h * hd, (h + 1) * hd)
                        q = torch.einsum("ble,de->bld", query, in_proj_weight[:e][rows]) + in_proj_bias[:e][rows]
                        k = torch.einsum("ble,de->bld", key, in_proj_weight[e:2 * e][rows]) + in_proj_bias[e:2 * e][rows]
                        v = torch.einsum("ble,de->bld", value, in_proj_weight[2 * e:][rows]) + in_proj_bias[2 * e:][rows]
                        s = torch.einsum("bqd,bkd->bqk", q, k) * hd ** -0.5
                        if key_padding_mask is not None:
                            s = torch.where(key_padding_mask[:, None, :], torch.tensor(float("-inf")), s)
                        p = torch.softmax(s, dim=-1)
                        maps.append(p)
                        outs.append(torch.einsum("bqk,bkd->bqd", p, v))
                    out = torch.cat(outs, dim=-1) @ out_proj_weight.T + out_proj_bias
                    return out, torch.stack(maps).mean(0)
            """,
        },
    ),
    Exercise(
        grade_id="ch09_rope_test", functions=("apply_rope",), points=3,
        bans=(("transformers.models.llama.modeling_llama", "apply_rotary_pos_emb", "transformers' apply_rotary_pos_emb"),
              ("transformers.models.llama.modeling_llama", "rotate_half", "transformers' rotate_half"),
              ("transformers.models.llama.modeling_llama.LlamaRotaryEmbedding", "forward", "LlamaRotaryEmbedding"),),
        cases=with_defaults(
            {"B": 1, "H": 2, "Hkv": 2, "theta": 10000.0},
            Case("positions from 0, theta 10000", {"seed": 0, "L": 6, "D": 8, "offsets": [0]},
                 edge="position 0: the first token is not rotated"),
            Case("one decode step at position 37", {"seed": 1, "B": 2, "H": 4, "L": 1, "D": 16, "offsets": [37, 37]},
                 edge="L = 1: a single position that is not 0"),
            Case("rows at different offsets", {"seed": 2, "B": 3, "Hkv": 1, "L": 4, "D": 8, "offsets": [0, 5, 123]},
                 edge="each batch row at its own offset (0, 5, 123)"),
            Case("theta 100000 (SmolLM2), positions near 1000",
                 {"seed": 3, "H": 3, "Hkv": 1, "L": 5, "D": 32, "offsets": [1000], "theta": 100000.0},
                 edge="positions near 1000: angles of many turns"),
            Case("theta 500000, head_dim 64", {"seed": 4, "B": 2, "L": 3, "D": 64, "offsets": [7, 300],
                                               "theta": 500000.0},
                 edge="head_dim 64 with theta 500000: the lowest frequencies"),
        ),
        probe=probe_rope, judge=ordered(("q_rot", "the rotated query tensor", 1e-4, 1e-3),
                                        ("k_rot", "the rotated key tensor", 1e-4, 1e-3)),
        mutants={
            "pairs adjacent dimensions (interleaved, GPT-J style)": mutate({
                "torch.cat([angles, angles], dim=-1)[:, None]": "angles.repeat_interleave(2, -1)[:, None]",
                ROTATE: "torch.stack([-x[..., 1::2], x[..., ::2]], dim=-1).flatten(-2)"},
                hint=Hint("把相邻维度配对旋转（GPT-J 交错式），而 Llama 配对的是前半与后半（rotate_half）。",
                    "Adjacent dimensions are paired (interleaved, GPT-J style); Llama pairs the first half with the second.")),
            "positions 0..L-1 whatever position_ids say": mutate(
                "position_ids[..., None].float()", "torch.arange(q.shape[-2]).expand_as(position_ids)[..., None].float()",
                hint=Hint("忽略了 position_ids，总用 0..L-1 作位置，带偏移（如 KV cache）时角度错。",
                    "position_ids are ignored and 0..L-1 used instead, so offset positions (a KV cache) get wrong angles.")),
            "theta fixed at 10000": mutate("1.0 / theta **", "1.0 / 10000.0 **",
                hint=Hint("theta 被写死为 10000，传入的 theta 参数被忽略。",
                    "theta is hard-wired to 10000; the theta argument is ignored.")),
            "rotates the wrong way (sign of rotate_half flipped)": mutate(
                ROTATE, "torch.cat([x[..., d // 2:], -x[..., :d // 2]], dim=-1)",
                hint=Hint("rotate_half 的符号反了，向量按相反方向旋转。",
                    "The sign in rotate_half is flipped, so vectors rotate in the opposite direction.")),
            "frequencies theta^(-i/d) instead of theta^(-2i/d)": mutate("torch.arange(0, d, 2,", "torch.arange(0, d // 2,",
                hint=Hint("频率指数用了 i/d 而不是 2i/d，频率衰减得太慢。",
                    "The frequency exponent steps by 1/d instead of 2/d, so the frequencies decay too slowly.")),
        },
        alternatives={
            "complex multiplication in float64": """
                def apply_rope(q, k, position_ids, theta=10000.0):
                    d = q.shape[-1]
                    inv = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
                    rotor = torch.polar(torch.ones(1, dtype=torch.float64), position_ids[..., None].double() * inv)[:, None]
                    def turn(x):
                        z = torch.complex(x[..., :d // 2].double(), x[..., d // 2:].double()) * rotor
                        return torch.cat([z.real, z.imag], dim=-1).to(x.dtype)
                    return turn(q), turn(k)
            """,
        },
    ),
    Exercise(
        grade_id="ch09_rms_norm_test", functions=("rms_norm",), points=2,
        bans=(("torch.nn.functional", "rms_norm", "F.rms_norm"),
              ("torch", "rms_norm", "torch.rms_norm"),
              ("torch.nn.RMSNorm", "forward", "nn.RMSNorm"),
              ("transformers.models.llama.modeling_llama.LlamaRMSNorm", "forward", "LlamaRMSNorm"),),
        cases=with_defaults(
            {"dtype": "float16", "eps": 1e-5},
            Case("float32, rows of very different scale",
                 {"seed": 0, "shape": [5, 16], "scale": 1.0, "row_scales": True, "dtype": "float32", "eps": 1e-6},
                 edge="rows whose scales differ by orders of magnitude"),
            Case("float16 with values near 500 (x^2 overflows float16)",
                 {"seed": 1, "shape": [3, 64], "scale": 500.0, "eps": 1e-6},
                 edge="x^2 above float16's maximum (65504)"),
            Case("bfloat16, 3-D input", {"seed": 2, "shape": [2, 3, 32], "scale": 2.0, "dtype": "bfloat16"},
                 edge="bfloat16 and a 3-D input"),
            Case("tiny inputs: eps matters", {"seed": 3, "shape": [4, 8], "scale": 1e-3, "dtype": "float32"},
                 edge="mean of x^2 comparable to eps"),
            Case("float16, 3-D, eps 1e-5", {"seed": 4, "shape": [2, 4, 48], "scale": 3.0}),
        ),
        probe=probe_rms_norm,
        judge=judge_rms_norm,
        mutants={
            "computes in the input's precision (float16 x^2 overflows)": mutate("xf = x.float()", "xf = x",
                hint=Hint("统计量直接在输入精度下算：float16 的 x² 会溢出。",
                    "The statistic is computed in the input's precision, where x squared overflows in float16.")),
            "eps added outside the square root": mutate("torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + eps)",
                                                        "1 / (xf.pow(2).mean(dim=-1, keepdim=True).sqrt() + eps)",
                hint=Hint("eps 加在了平方根外面，而不是加在均方值上再开方。",
                    "eps is added outside the square root instead of to the mean square inside it.")),
            "subtracts the mean first (LayerNorm without bias)": mutate(
                "    xf = x.float()\n", "    xf = x.float()\n    xf = xf - xf.mean(dim=-1, keepdim=True)\n",
                hint=Hint("先减去了均值，这是 LayerNorm；RMSNorm 不做中心化。",
                    "The mean is subtracted first, which is LayerNorm; RMSNorm does not centre the input.")),
            "returns float32 for half-precision input": mutate("return weight * normed.to(x.dtype)",
                                                               "return weight.float() * normed",
                hint=Hint("半精度输入返回了 float32：结果应转回输入的 dtype。",
                    "Half-precision input comes back as float32; the result must be cast back to the input's dtype.")),
            "one statistic for the whole tensor, not per row": mutate("xf.pow(2).mean(dim=-1, keepdim=True)",
                                                                      "xf.pow(2).mean()",
                hint=Hint("对整个张量算了一个均方值，而不是沿最后一维对每一行分别计算。",
                    "One mean square is computed for the whole tensor instead of one per row along the last dimension.")),
        },
        alternatives={
            "vector norm in float64, divide, cast back": """
                def rms_norm(x, weight, eps=1e-6):
                    xd = x.double()
                    rms = torch.sqrt(torch.linalg.vector_norm(xd, dim=-1, keepdim=True) ** 2 / x.shape[-1] + eps)
                    return ((xd / rms).to(x.dtype) * weight).to(x.dtype)
            """,
        },
    ),
    Exercise(
        grade_id="ch09_gqa_test", functions=("gqa_attention",), points=3,
        bans=(("transformers.models.llama.modeling_llama.LlamaAttention", "forward", "LlamaAttention"),
              ("transformers.models.llama.modeling_llama", "repeat_kv", "transformers' repeat_kv"),
              ("transformers.models.llama.modeling_llama", "eager_attention_forward", "transformers' eager_attention_forward"),),
        cases=(
            Case("6 query heads share 2 KV heads", {"seed": 0, "B": 2, "L": 5, "hidden": 24, "heads": 6,
                                                    "kv_heads": 2, "head_dim": 4, "offset": 0, "theta": 10000.0}),
            Case("multi-query (1 KV head)", {"seed": 1, "B": 1, "L": 6, "hidden": 16, "heads": 4, "kv_heads": 1,
                                             "head_dim": 4, "offset": 3, "theta": 10000.0}, edge="num_kv_heads = 1"),
            Case("multi-head (as many KV heads as query heads)", {"seed": 2, "B": 2, "L": 4, "hidden": 16, "heads": 2,
                                                                  "kv_heads": 2, "head_dim": 8, "offset": 0,
                                                                  "theta": 10000.0},
                 edge="num_kv_heads = num_heads: repeat_kv is the identity"),
            Case("head_dim not hidden / heads", {"seed": 3, "B": 1, "L": 5, "hidden": 20, "heads": 4, "kv_heads": 2,
                                                 "head_dim": 16, "offset": 10, "theta": 100000.0},
                 edge="head_dim != hidden / num_heads"),
            Case("SmolLM2's ratio: 9 query heads, 3 KV heads", {"seed": 4, "B": 2, "L": 7, "hidden": 36, "heads": 9,
                                                                "kv_heads": 3, "head_dim": 8, "offset": 40,
                                                                "theta": 100000.0}),
        ),
        probe=probe_gqa, judge=ordered(("out", "the attention block's output", 1e-4, 1e-4)),
        mutants={
            "KV heads tiled (repeat) instead of grouped (repeat_interleave)": mutate(
                "repeat_interleave(group, dim=1)", "repeat(1, group, 1, 1)", count=2,
                hint=Hint("KV 头被整体平铺（repeat），而不是每个 KV 头连续服务一组相邻的查询头。",
                    "KV heads are tiled (repeat) instead of each serving a contiguous group of query heads.")),
            "no causal mask": mutate('scores.masked_fill(future, float("-inf"))', "scores",
                hint=Hint("没有 causal mask，每个位置都能看到未来的 token。",
                    "There is no causal mask, so every position attends to future tokens.")),
            "RoPE applied to the queries only": mutate(ROPE_QK, "q = q * c + rotate_half(q) * s",
                hint=Hint("RoPE 只作用在 query 上，key 没有旋转，相对位置信息就丢了。",
                    "RoPE is applied to the queries only; the keys are not rotated, so relative positions are lost.")),
            "scaled by sqrt(hidden / heads) instead of sqrt(head_dim)": mutate(
                "/ math.sqrt(hd)", "/ math.sqrt(x.shape[-1] / num_heads)",
                hint=Hint("缩放用了 hidden/heads 的平方根，但 head_dim 不一定等于 hidden/heads。",
                    "Scores are scaled by sqrt(hidden / heads), but head_dim need not equal hidden / heads.")),
            "RoPE applied to the values too": mutate(ROPE_QK, ROPE_QK + "\n    v = v * c + rotate_half(v) * s",
                hint=Hint("RoPE 也作用在了 value 上；它只该旋转 query 和 key。",
                    "RoPE is applied to the values too; only queries and keys are rotated.")),
        },
        alternatives={
            "loop over query heads, each picking its KV head h // group, float64": """
                def gqa_attention(x, q_weight, k_weight, v_weight, o_weight, num_heads, num_kv_heads, cos, sin):
                    b, l, _ = x.shape
                    hd = q_weight.shape[0] // num_heads
                    group = num_heads // num_kv_heads
                    xd, c, s_ = x.double(), cos.double(), sin.double()
                    def rope(t):
                        return t * c + torch.cat([-t[..., hd // 2:], t[..., :hd // 2]], dim=-1) * s_
                    heads = []
                    future = torch.triu(torch.ones(l, l, dtype=torch.bool), diagonal=1)
                    for h in range(num_heads):
                        j = h // group
                        q = rope(xd @ q_weight[h * hd:(h + 1) * hd].double().T)
                        k = rope(xd @ k_weight[j * hd:(j + 1) * hd].double().T)
                        v = xd @ v_weight[j * hd:(j + 1) * hd].double().T
                        scores = (q @ k.transpose(1, 2)) / math.sqrt(hd)
                        heads.append(torch.softmax(scores.masked_fill(future, -math.inf), dim=-1) @ v)
                    return (torch.cat(heads, dim=-1) @ o_weight.double().T).float()
            """,
        },
    ),
    Exercise(
        grade_id="ch09_swiglu_test", functions=("swiglu_mlp",), points=1,
        bans=(("transformers.models.llama.modeling_llama.LlamaMLP", "forward", "LlamaMLP"),),
        cases=(
            Case("2-D input, width 8/3 d", {"seed": 0, "lead": [5], "hidden": 24, "inter": 64}),
            Case("3-D input (batch, seq, hidden)", {"seed": 1, "lead": [2, 3], "hidden": 16, "inter": 40},
                 edge="three dimensions: the leading ones must survive"),
            Case("intermediate narrower than hidden", {"seed": 2, "lead": [4], "hidden": 32, "inter": 8},
                 edge="intermediate_size < hidden"),
            Case("large pre-activations", {"seed": 3, "lead": [2, 2], "hidden": 8, "inter": 20, "scale": 10.0},
                 edge="pre-activations of tens: SiLU, GELU and sigmoid differ most"),
        ),
        probe=probe_swiglu, judge=ordered(("out", "the MLP output", 1e-5, 1e-5)),
        mutants={
            "SiLU on the up projection instead of the gate": mutate(
                GLU, "F.linear(x, gate_weight) * F.silu(F.linear(x, up_weight))",
                hint=Hint("SiLU 作用在了 up 投影上，而不是 gate 投影上。",
                    "SiLU is applied to the up projection instead of the gate projection.")),
            "GELU instead of SiLU (GeGLU)": mutate("F.silu(", "F.gelu(",
                hint=Hint("用了 GELU（GeGLU），SwiGLU 的门控激活是 SiLU。",
                    "GELU is used (GeGLU); SwiGLU's gate activation is SiLU.")),
            "sigmoid gate (GLU) instead of SiLU": mutate("F.silu(", "torch.sigmoid(",
                hint=Hint("门控用了 sigmoid（原始 GLU），SwiGLU 用的是 SiLU。",
                    "The gate uses a sigmoid (plain GLU); SwiGLU uses SiLU.")),
            "flattens the leading dimensions (returns 2-D)": mutate("    return ",
                                                                    "    x = x.reshape(-1, x.shape[-1])\n    return ",
                hint=Hint("把前面的维度展平了，返回 2-D；输出应保持输入的形状。",
                    "The leading dimensions are flattened into a 2-D result; the output must keep the input's shape.")),
            "no gate: SiLU MLP on the up projection only": mutate(GLU, "F.silu(F.linear(x, up_weight))",
                hint=Hint("没有门控：只对 up 投影做 SiLU，gate 投影没用上。",
                    "There is no gate: only SiLU of the up projection is used and the gate projection is ignored.")),
        },
        alternatives={
            "explicit g * sigmoid(g) with einsum": """
                def swiglu_mlp(x, gate_weight, up_weight, down_weight):
                    g = torch.einsum("...d,fd->...f", x, gate_weight)
                    u = torch.einsum("...d,fd->...f", x, up_weight)
                    return torch.einsum("...f,df->...d", g * torch.sigmoid(g) * u, down_weight)
            """,
        },
    ),
    Exercise(
        grade_id="ch09_decoder_layer_test", functions=("decoder_layer",), points=3,
        bans=(("transformers.models.llama.modeling_llama.LlamaDecoderLayer", "forward", "LlamaDecoderLayer"),
              ("transformers.models.llama.modeling_llama.LlamaAttention", "forward", "LlamaAttention"),
              ("transformers.models.llama.modeling_llama.LlamaMLP", "forward", "LlamaMLP"),
              ("transformers.models.llama.modeling_llama.LlamaRMSNorm", "forward", "LlamaRMSNorm"),),
        cases=(
            Case("GQA layer", {"seed": 0, "B": 2, "L": 5, "hidden": 24, "heads": 6, "kv_heads": 2, "head_dim": 4,
                               "inter": 64, "offset": 0, "theta": 10000.0, "eps": 1e-6}),
            Case("MHA layer, offset positions", {"seed": 1, "B": 1, "L": 6, "hidden": 16, "heads": 2, "kv_heads": 2,
                                                 "head_dim": 8, "inter": 40, "offset": 20, "theta": 10000.0,
                                                 "eps": 1e-5}, edge="num_kv_heads = num_heads, positions starting at 20"),
            Case("small activations: eps reaches both norms", {"seed": 2, "B": 2, "L": 4, "hidden": 16, "heads": 4,
                                                               "kv_heads": 1, "head_dim": 4, "inter": 32, "offset": 0,
                                                               "theta": 10000.0, "eps": 1e-2, "scale": 0.05},
                 edge="activations of the size of sqrt(eps): eps changes both norms"),
            Case("SmolLM2-shaped (9 / 3 heads)", {"seed": 3, "B": 1, "L": 7, "hidden": 36, "heads": 9, "kv_heads": 3,
                                                  "head_dim": 8, "inter": 96, "offset": 5, "theta": 100000.0,
                                                  "eps": 1e-5, "scale": 3.0}),
        ),
        probe=probe_decoder_layer, judge=ordered(("out", "the layer's output", 1e-4, 1e-4)),
        mutants={
            "post-norm (normalises after adding the residual)": mutate({
                'attn_in = rms_norm(x, w["input_layernorm.weight"], eps)': "attn_in = x",
                "cos, sin)\n": 'cos, sin)\n    h = rms_norm(h, w["input_layernorm.weight"], eps)\n',
                'mlp_in = rms_norm(h, w["post_attention_layernorm.weight"], eps)': "mlp_in = h",
                "return h + swiglu_mlp(": "out = h + swiglu_mlp(",
                'w["mlp.down_proj.weight"])':
                    'w["mlp.down_proj.weight"])\n    return rms_norm(out, w["post_attention_layernorm.weight"], eps)'},
                hint=Hint("写成了 post-norm：加完残差后再归一化；Llama 是 pre-norm，残差流本身不归一化。",
                    "This is post-norm (normalise after adding the residual); Llama is pre-norm, the stream stays raw.")),
            "residual adds the normalised input": mutate({"h = x + gqa_attention(": "h = attn_in + gqa_attention(",
                                                          "return h + swiglu_mlp(": "return mlp_in + swiglu_mlp("},
                hint=Hint("残差加的是归一化后的输入，而不是原始的残差流。",
                    "The residual adds the normalised input instead of the un-normalised residual stream.")),
            "input_layernorm's weight used for both norms": mutate('w["post_attention_layernorm.weight"]',
                                                                   'w["input_layernorm.weight"]',
                hint=Hint("两个 RMSNorm 都用了 input_layernorm 的权重，post_attention_layernorm 的权重没用。",
                    "input_layernorm's weight is used for both norms; post_attention_layernorm's weight is never used.")),
            "eps ignored (always 1e-6)": mutate(", eps)", ")", count=2,
                hint=Hint("eps 参数没有传下去，总是用默认的 1e-6。",
                    "The eps argument is not passed on, so the norms always use the default 1e-6.")),
            "parallel block (MLP reads x, not the attention output)": mutate("mlp_in = rms_norm(h,", "mlp_in = rms_norm(x,",
                hint=Hint("写成了并行块：MLP 读的是 x，而不是加上注意力输出之后的 h。",
                    "A parallel block: the MLP reads x instead of h, the stream after adding the attention output.")),
        },
        alternatives={
            "self-contained (no helper functions), float64 inside": """
                def decoder_layer(x, weights, num_heads, num_kv_heads, cos, sin, eps=1e-6):
                    w = {name: t.double() for name, t in weights.items()}
                    b, l, _ = x.shape
                    hd = w["self_attn.q_proj.weight"].shape[0] // num_heads
                    c, s_ = cos.double()[:, None], sin.double()[:, None]
                    def norm(t, g):
                        return g * t / torch.sqrt(t.pow(2).mean(-1, keepdim=True) + eps)
                    def split(t, n):
                        return t.reshape(b, l, n, hd).permute(0, 2, 1, 3)
                    def rope(t):
                        return t * c + torch.cat([-t[..., hd // 2:], t[..., :hd // 2]], dim=-1) * s_
                    xd = x.double()
                    n1 = norm(xd, w["input_layernorm.weight"])
                    q = rope(split(n1 @ w["self_attn.q_proj.weight"].T, num_heads))
                    k = rope(split(n1 @ w["self_attn.k_proj.weight"].T, num_kv_heads))
                    v = split(n1 @ w["self_attn.v_proj.weight"].T, num_kv_heads)
                    idx = torch.arange(num_heads) // (num_heads // num_kv_heads)
                    scores = q @ k[:, idx].transpose(-1, -2) / math.sqrt(hd)
                    scores = scores + torch.full((l, l), -math.inf, dtype=torch.float64).triu(1)
                    att = (scores.softmax(-1) @ v[:, idx]).permute(0, 2, 1, 3).reshape(b, l, -1)
                    h = xd + att @ w["self_attn.o_proj.weight"].T
                    n2 = norm(h, w["post_attention_layernorm.weight"])
                    g = n2 @ w["mlp.gate_proj.weight"].T
                    mlp = (g * torch.sigmoid(g) * (n2 @ w["mlp.up_proj.weight"].T)) @ w["mlp.down_proj.weight"].T
                    return (h + mlp).float()
            """,
        },
    ),
    Exercise(
        grade_id="ch09_router_test", functions=("route_top_k",), points=3,
        bans=(("transformers.models.mixtral.modeling_mixtral", "load_balancing_loss_func", "Mixtral's load_balancing_loss_func"),
              ("transformers.models.mixtral.modeling_mixtral.MixtralTopKRouter", "forward", "MixtralTopKRouter"),),
        cases=(
            Case("8 experts, top-2", {"seed": 0, "B": 2, "S": 6, "E": 8, "k": 2, "scale": 1.0}),
            Case("top-1 (Switch)", {"seed": 1, "B": 1, "S": 10, "E": 4, "k": 1, "scale": 2.0}, edge="k = 1"),
            Case("padding tokens excluded", {"seed": 2, "B": 3, "S": 5, "E": 6, "k": 2, "scale": 1.5,
                                             "lengths": [5, 2, 3]}, edge="padding tokens in the batch"),
            Case("top-3 of 5, peaked logits", {"seed": 3, "B": 2, "S": 4, "E": 5, "k": 3, "scale": 4.0},
                 edge="k = 3 of E = 5 (more than half the experts)"),
            Case("a router that favours one expert", {"seed": 4, "B": 2, "S": 8, "E": 8, "k": 2, "scale": 1.0,
                                                      "favour": 3, "bias": 3.0, "lengths": [8, 6]},
                 edge="one expert takes most tokens: f and P far from uniform"),
        ),
        probe=probe_router, judge=ordered(("experts", "the tensor of chosen experts", None, None),
                                          ("weights", "the tensor of routing weights", 1e-5, 1e-6),
                                          ("aux_loss", "the load-balancing loss", 1e-5, 1e-6)),
        mutants={
            "top-k probabilities not renormalised": mutate(
                "weights = top_probs / top_probs.sum(dim=-1, keepdim=True)", "weights = top_probs",
                hint=Hint("选出的 top-k 概率没有重新归一化，权重之和不为 1。",
                    "The top-k probabilities are not renormalised, so the routing weights do not sum to 1.")),
            "assignment fractions divided by k (they should sum to k)": mutate("f = counts / real.sum()",
                                                                               "f = counts / real.sum() / top_k",
                hint=Hint("分配比例多除了 k；每个 token 选 k 个专家，比例之和应为 k。",
                    "The assignment fractions are divided by k; with k experts per token they should sum to k.")),
            "padding tokens counted in the loss": mutate(
                "real = torch.ones(n_tokens) if attention_mask is None else attention_mask.reshape(-1).float()",
                "real = torch.ones(n_tokens)",
                hint=Hint("padding token 也计入了负载均衡损失，attention_mask 被忽略。",
                    "Padding tokens are counted in the load-balancing loss; attention_mask is ignored.")),
            "loss missing the factor num_experts": mutate("n_experts * (f * p).sum()", "(f * p).sum()",
                hint=Hint("负载均衡损失漏乘了专家数 num_experts。",
                    "The load-balancing loss is missing the factor num_experts.")),
            "experts listed by index, not by weight": mutate(
                "top_probs, experts = torch.topk(probs, top_k, dim=-1)",
                "experts = torch.topk(probs, top_k, dim=-1).indices.sort(dim=-1).values\n"
                "    top_probs = probs.gather(-1, experts)",
                hint=Hint("专家按编号排序，而不是按路由权重从大到小排列。",
                    "The chosen experts are listed by index instead of by routing weight, largest first.")),
        },
        alternatives={
            "softmax over the k chosen logits; counts with one_hot": """
                def route_top_k(router_logits, top_k, attention_mask=None):
                    n, e = router_logits.shape
                    top_logits, experts = torch.topk(router_logits, top_k, dim=-1)
                    weights = torch.softmax(top_logits, dim=-1)
                    keep = torch.ones(n, dtype=torch.bool) if attention_mask is None else attention_mask.reshape(-1).bool()
                    probs = torch.softmax(router_logits.double(), dim=-1)[keep]
                    hits = F.one_hot(experts[keep], e).sum(dim=1).double()
                    frac_tokens = hits.mean(0)
                    frac_probs = probs.mean(0)
                    return weights, experts, e * torch.dot(frac_tokens, frac_probs)
            """,
        },
    ),
]

# Library implementations the exercises imitate (used by the test suite, in the trusted process).
ORACLES = {"ch09_attention_test": oracle_attention, "ch09_mha_test": oracle_mha, "ch09_rope_test": oracle_rope,
           "ch09_rms_norm_test": oracle_rms_norm, "ch09_gqa_test": oracle_gqa, "ch09_swiglu_test": oracle_swiglu,
           "ch09_decoder_layer_test": oracle_decoder_layer, "ch09_router_test": oracle_router}

# Every rule the instructions state, quoted from them: the hidden cases that break when it is broken, and the
# mutants that break it, each with a word its feedback must contain (tests/chapters/test_exercise_rules.py).
R = Rule
RULES = {
    "ch09_attention_test": (
        R(r"scores are scaled by $1/\sqrt{d}$", ("no mask", "causal, square", "scores of magnitude ~1000"),
          {"scales by 1/d instead of 1/sqrt(d)": "attention output"}),
        R("the mask is aligned **bottom-right**", ("causal after a cached prefix (fewer queries than keys)",),
          {"causal mask aligned top-left (ignores the cached prefix)": "attention output"}),
        R("query $i$ may attend to key $j$ only if $j \\le i + (L_k - L_q)$",
          ("causal with more queries than keys: the first queries see no key",),
          {"causal offset clamped at 0 (square or cached-prefix shapes only)": "attention output"}),
        R("**True = real token, False = padding**",
          ("right padding", "left padding with causal: early queries see no key"),
          {"padding mask read as True = padding": "attention output"}),
        R("returns a row of **zeros**, not NaN",
          ("left padding with causal: early queries see no key", "a row that is all padding"),
          {"fully masked rows come out as NaN": "NaN",
           "masks with -1e9: fully masked rows average every value": "zeros"}),
        R("the result must be finite for scores of any magnitude", ("scores of magnitude ~1000",),
          {"exp without subtracting the row maximum (overflows)": "NaN"}),
    ),
    "ch09_mha_test": (
        R("rows `[0:E]` of the packed matrix (and bias) project the query, `[E:2E]` the key, `[2E:3E]` the value",
          ("self-attention, 4 heads", "one head"),
          {"q, k, v blocks read in the wrong order (k, q, v)": "attention output"}),
        R("head $h$ uses features `h*head_dim:(h+1)*head_dim`", ("self-attention, 4 heads", "8 heads, peaked attention"),
          {"heads split with view(b, heads, L, head_dim) (no transpose)": "attention output"}),
        R(r"scores are scaled by $1/\sqrt{\text{head\_dim}}$", ("self-attention, 4 heads", "8 heads, peaked attention"),
          {"scaled by sqrt(embed_dim) instead of sqrt(head_dim)": "attention output"}),
        R("they may differ (**cross-attention**)", ("cross-attention, different lengths",),
          {"keys and values projected from the query (self-attention only)": "attention output"}),
        R("**PyTorch's convention: True = padding, ignored**", ("key padding (True = ignore)", "8 heads, peaked attention"),
          {"key_padding_mask read as True = keep": "attention output"}),
        R("`weights` is the attention map **averaged over the heads**",
          ("self-attention, 4 heads", "8 heads, peaked attention"),
          {"returns the first head's weights instead of the mean over heads": "mean over heads"}),
    ),
    "ch09_rope_test": (
        R("feature $i$ is paired with feature $i + d/2$", ("positions from 0, theta 10000",),
          {"pairs adjacent dimensions (interleaved, GPT-J style)": "rotated query"}),
        R(r"\mathrm{rotate\_half}([x_1, x_2]) = [-x_2, x_1]", ("positions from 0, theta 10000",),
          {"rotates the wrong way (sign of rotate_half flipped)": "rotated query"}),
        R("the angles come from `position_ids`, **not** from `0..L-1`",
          ("one decode step at position 37", "rows at different offsets"),
          {"positions 0..L-1 whatever position_ids say": "rotated query"}),
        R("use the given `theta`", ("theta 100000 (SmolLM2), positions near 1000", "theta 500000, head_dim 64"),
          {"theta fixed at 10000": "rotated query"}),
        R(r"$\omega_i = \theta^{-2i/d}$", ("positions from 0, theta 10000", "theta 500000, head_dim 64"),
          {"frequencies theta^(-i/d) instead of theta^(-2i/d)": "rotated query"}),
    ),
    "ch09_rms_norm_test": (
        R("computed in **float32** whatever the input dtype", ("float16 with values near 500 (x^2 overflows float16)",),
          {"computes in the input's precision (float16 x^2 overflows)": "normalised output"}),
        R(r"$\varepsilon$ goes **inside** the square root", ("tiny inputs: eps matters",),
          {"eps added outside the square root": "normalised output"}),
        R("no mean is subtracted", ("float32, rows of very different scale", "bfloat16, 3-D input"),
          {"subtracts the mean first (LayerNorm without bias)": "normalised output"}),
        R("the result has the **input's dtype**",
          ("float16 with values near 500 (x^2 overflows float16)", "bfloat16, 3-D input"),
          {"returns float32 for half-precision input": "dtype"}),
        R("one statistic per row: the mean of $x^2$ over the **last** dimension", ("float32, rows of very different scale",),
          {"one statistic for the whole tensor, not per row": "normalised output"}),
    ),
    "ch09_gqa_test": (
        R("`repeat_kv` is `repeat_interleave`, **not** `repeat`/tiling",
          ("6 query heads share 2 KV heads", "SmolLM2's ratio: 9 query heads, 3 KV heads", "head_dim not hidden / heads",),
          {"KV heads tiled (repeat) instead of grouped (repeat_interleave)": "attention block"}),
        R("causal attention", ("6 query heads share 2 KV heads", "multi-query (1 KV head)"),
          {"no causal mask": "attention block"}),
        R("to the **queries and keys** (not the values)", ("6 query heads share 2 KV heads", "multi-query (1 KV head)"),
          {"RoPE applied to the queries only": "attention block", "RoPE applied to the values too": "attention block"}),
        R("`head_dim = q_weight.shape[0] // num_heads` — in Llama configs it need **not** equal `hidden // num_heads`",
          ("head_dim not hidden / heads",),
          {"scaled by sqrt(hidden / heads) instead of sqrt(head_dim)": "attention block"}),
    ),
    "ch09_swiglu_test": (
        R("the SiLU goes on the **gate** branch only", ("2-D input, width 8/3 d", "intermediate narrower than hidden"),
          {"SiLU on the up projection instead of the gate": "MLP output",
           "no gate: SiLU MLP on the up projection only": "MLP output"}),
        R(r"$\mathrm{SiLU}(z) = z\,\sigma(z)$", ("large pre-activations", "2-D input, width 8/3 d"),
          {"GELU instead of SiLU (GeGLU)": "MLP output", "sigmoid gate (GLU) instead of SiLU": "MLP output"}),
        R("the result has the same shape as `x`", ("3-D input (batch, seq, hidden)", "large pre-activations"),
          {"flattens the leading dimensions (returns 2-D)": "shape"}),
    ),
    "ch09_decoder_layer_test": (
        R("each reading a **normalised copy** of the residual stream", ("GQA layer", "SmolLM2-shaped (9 / 3 heads)",
                                                                        "MHA layer, offset positions",
                                                                        "small activations: eps reaches both norms",),
          {"post-norm (normalises after adding the residual)": "layer's output"}),
        R("adding its output to the **un-normalised** stream", ("GQA layer", "MHA layer, offset positions"),
          {"residual adds the normalised input": "layer's output"}),
        R("the two norms have their **own** weights", ("GQA layer", "MHA layer, offset positions",
                                                       "small activations: eps reaches both norms",),
          {"input_layernorm's weight used for both norms": "layer's output"}),
        R("both use the given `eps`", ("small activations: eps reaches both norms",),
          {"eps ignored (always 1e-6)": "layer's output"}),
        R("reads the stream **after** the attention residual", ("GQA layer", "SmolLM2-shaped (9 / 3 heads)",
                                                                "MHA layer, offset positions",
                                                                "small activations: eps reaches both norms",),
          {"parallel block (MLP reads x, not the attention output)": "layer's output"}),
    ),
    "ch09_router_test": (
        R("their probabilities **renormalised to sum to 1** per token", ("8 experts, top-2", "top-3 of 5, peaked logits"),
          {"top-k probabilities not renormalised": "routing weights"}),
        R("in **descending order of probability**", ("8 experts, top-2", "top-3 of 5, peaked logits"),
          {"experts listed by index, not by weight": "chosen experts"}),
        R("all $k$ choices of every token count", ("8 experts, top-2", "top-3 of 5, peaked logits"),
          {"assignment fractions divided by k (they should sum to k)": "load-balancing loss"}),
        R(r"$= E \sum_{i=1}^{E} f_i P_i$", ("top-1 (Switch)", "a router that favours one expert"),
          {"loss missing the factor num_experts": "load-balancing loss"}),
        R("padding tokens are left out of both $f$ and $P$",
          ("padding tokens excluded", "a router that favours one expert"),
          {"padding tokens counted in the loss": "load-balancing loss"}),
    ),
}

CHAPTER = Chapter("ch09_transformer", "ch09_exercises.ipynb", EXERCISES, rules=RULES, oracles=ORACLES)

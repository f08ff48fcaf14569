"""Long-context helpers for chapter 18: a Llama forward pass over a token stream with a KV cache the caller
bounds (full, sliding window, or attention sinks + window as in StreamingLLM), optionally int8-quantised.

It runs the modules of a transformers ``LlamaForCausalLM`` (embedding, decoder layers' projections, norms and
MLPs, the LM head) and does only the attention and the cache itself, which ``generate`` cannot bound this way.
The cache holds keys *before* RoPE, so that every chunk can rotate the cached keys by their position inside the
cache (StreamingLLM's re-assigned positions) — with nothing evicted these are the original positions and the
result equals the model's own forward pass (tests/chapters/test_ch18_long_context.py checks it).
torch is imported when a function is called, so importing this module is cheap.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class StreamResult:
    nll: "object"          # float tensor [T - 1]: the loss of predicting token t + 1 from the stream up to t
    cache_tokens: int      # tokens held in the cache at the end
    cache_bytes: int       # bytes of the cache tensors actually allocated at the end (all layers, K and V)


def _rotate(x, cos, sin):
    """RoPE in the rotate-half layout of transformers' Llama."""
    import torch

    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin


def int8_roundtrip(x):
    """Symmetric int8 quantisation of the last dimension (one scale per token and head), returned dequantised,
    plus the int8 tensor and the scales (what a real int8 cache would store)."""
    import torch

    scale = x.abs().amax(-1, keepdim=True).clamp_min(1e-8) / 127.0
    q = torch.round(x / scale).clamp(-127, 127).to(torch.int8)
    return q.to(x.dtype) * scale, q, scale.to(torch.float16)


def stream_nll(model, ids, chunk: int = 32, sinks: int | None = None, window: int | None = None,
               kv_int8: bool = False) -> StreamResult:
    """Feed ``ids`` (1-D token ids) to a Llama model ``chunk`` tokens at a time with a bounded KV cache.

    ``window`` None keeps every token (full cache). Otherwise, after each chunk the cache keeps the first
    ``sinks`` tokens of the stream (0 or None: none) and the ``window`` most recent ones; each chunk attends to
    the cache plus itself, with RoPE positions counted inside the cache. ``kv_int8`` stores K and V as int8 with
    one float16 scale per token and head. Returns the per-token negative log-likelihood and the cache size."""
    import torch
    import torch.nn.functional as F

    if chunk < 1 or (window is not None and window < 1) or (sinks or 0) < 0:
        raise ValueError("stream_nll: need chunk >= 1, window >= 1 (or None) and sinks >= 0")
    ids = torch.as_tensor(ids).reshape(-1)
    inner = model.model
    cfg = model.config
    n_heads, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads
    rope = inner.rotary_emb
    cache_k: list = [None] * len(inner.layers)
    cache_v: list = [None] * len(inner.layers)
    scales: list = [None] * len(inner.layers)
    losses = []
    with torch.no_grad():
        for start in range(0, len(ids) - 1, chunk):
            piece = ids[start:min(start + chunk, len(ids) - 1)]
            c = len(piece)
            held = 0 if cache_k[0] is None else cache_k[0].shape[2]
            pos = torch.arange(held + c, dtype=torch.float32)
            angles = pos[:, None] * rope.inv_freq.float()[None, :]
            angles = torch.cat([angles, angles], dim=-1)
            cos, sin = angles.cos() * rope.attention_scaling, angles.sin() * rope.attention_scaling
            allowed = torch.ones(c, held + c, dtype=torch.bool).tril(held)
            h = inner.embed_tokens(piece[None])
            for li, layer in enumerate(inner.layers):
                attn = layer.self_attn
                x = layer.input_layernorm(h)
                q = attn.q_proj(x).view(1, c, n_heads, hd).transpose(1, 2)
                k = attn.k_proj(x).view(1, c, n_kv, hd).transpose(1, 2)
                v = attn.v_proj(x).view(1, c, n_kv, hd).transpose(1, 2)
                if kv_int8:
                    k, qk, sk = int8_roundtrip(k)
                    v, qv, sv = int8_roundtrip(v)
                    new = (qk, sk, qv, sv)
                    scales[li] = new if scales[li] is None else tuple(
                        torch.cat([a, b], dim=2) for a, b in zip(scales[li], new))
                keys = k if cache_k[li] is None else torch.cat([cache_k[li], k], dim=2)
                values = v if cache_v[li] is None else torch.cat([cache_v[li], v], dim=2)
                out = F.scaled_dot_product_attention(_rotate(q, cos[held:], sin[held:]), _rotate(keys, cos, sin), values,
                                                     attn_mask=allowed, enable_gqa=n_kv != n_heads)
                h = h + attn.o_proj(out.transpose(1, 2).reshape(1, c, -1))
                h = h + layer.mlp(layer.post_attention_layernorm(h))
                if window is not None and keys.shape[2] > (sinks or 0) + window:
                    keep = torch.cat([torch.arange(sinks or 0), torch.arange(keys.shape[2] - window, keys.shape[2])])
                    keys, values = keys[:, :, keep], values[:, :, keep]
                    if kv_int8:
                        scales[li] = tuple(t[:, :, keep] for t in scales[li])
                cache_k[li], cache_v[li] = keys, values
            logits = model.lm_head(inner.norm(h))[0]
            target = ids[start + 1:start + 1 + c]
            losses.append(F.cross_entropy(logits.float(), target, reduction="none"))
    tokens = cache_k[0].shape[2]
    if kv_int8:  # what an int8 cache allocates: int8 K and V plus one float16 scale per token and head
        size = sum(t.nbytes for group in scales for t in group)
    else:
        size = sum(t.nbytes for t in cache_k) + sum(t.nbytes for t in cache_v)
    return StreamResult(torch.cat(losses), tokens, size)

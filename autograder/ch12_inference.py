"""Trusted spec of Chapter 12's graded cells (solutions/ch12_inference/ch12_exercises.ipynb).

Probes run inside the sandbox next to the student's code and are self-contained (imports inside). Every input is
built on the spot from a seed: tiny random GPT-2s (``probing.tiny_gpt2``), random probability rows, scripts of
block-manager operations, request streams, random weights. The structural exercises (block manager, scheduler) are
driven by the probe itself: it replays a script or simulates a stream with the student's decisions and returns the
whole trace as JSON, which the judge compares with the reference trace step by step.

Oracles run in the trusted test process: ``model.generate`` (greedy decoding of the target itself),
``F.scaled_dot_product_attention`` with ``torch.logsumexp``, a float64 GPTQ-style (all-zero groups: scale 1) asymmetric
min-max quantizer, and, where no library exists (speculative sampling, the allocator, the scheduler, the roofline),
a trusted reference written in another style than the solution (the same source as the alternative-correct fixture).
"""
from llmprep.grading.spec import (Case, Chapter, Exercise, Hint, Rule, compare_arrays, json_lists, mutate,
                                  oracle_from_source, ordered, sequence_diff, whole)

# ============================================================================ 1 greedy speculative verification

def probe_verify_greedy(ns, params):
    from llmprep.grading.probing import tiny_gpt2
    import torch

    fn = ns["verify_greedy"]
    vocab, k, n = params["vocab"], params["k"], params["prompt"]
    model = tiny_gpt2(vocab, params["seed"], init=params.get("init", 0.5))
    g = torch.Generator().manual_seed(params["seed"])
    ids = torch.randint(0, vocab, (1, n), generator=g)

    def argmax_after(prefix):
        with torch.no_grad():
            return int(model(prefix).logits[0, -1].argmax())

    draft = []
    for i in range(k):  # the target's greedy path, broken where the case says, re-agreeing where it says
        prefix = torch.cat([ids, torch.tensor([draft], dtype=torch.long).reshape(1, -1)], dim=1)
        best = argmax_after(prefix)
        draft.append((best + 1 + i) % vocab if i in params.get("wrong_at", []) else best)
    draft = torch.tensor(draft, dtype=torch.long)
    calls = [0]
    original = model.forward

    def counting(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    model.forward = counting
    out = fn(model, ids.clone(), draft.clone())
    return {"tokens": torch.as_tensor(out).reshape(-1), "forward_calls": calls[0]}


def judge_verify_greedy(got, want, params):
    import numpy as np

    reason = sequence_diff(got["tokens"], want["tokens"], "tokens", "the emitted tokens", integers=True)
    if reason:
        return reason
    calls = int(np.asarray(got["forward_calls"]).reshape(()))
    if calls != 1:
        return f"the target model was called {calls} times; call it exactly once, on prompt + draft"
    return None


def oracle_verify_greedy():
    from transformers import GenerationMixin

    generate = GenerationMixin.generate

    def verify_greedy(model, input_ids, draft):
        import torch

        clone = type(model)(model.config).eval()  # a fresh instance: generate's calls are not counted
        clone.load_state_dict(model.state_dict())
        n, k = input_ids.shape[1], len(draft)
        greedy = generate(clone, input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=k + 1,
                          do_sample=False, num_beams=1, eos_token_id=None, pad_token_id=0)[0, n:]
        accepted = 0
        while accepted < k and int(draft[accepted]) == int(greedy[accepted]):
            accepted += 1
        with torch.no_grad():  # the one verification pass the exercise requires
            model(torch.cat([input_ids, draft[None]], dim=1))
        return greedy[:accepted + 1]

    return {"verify_greedy": verify_greedy}


# ============================================================================ 2 speculative sampling

def probe_speculative_accept(ns, params):
    import torch

    fn = ns["speculative_accept"]
    g = torch.Generator().manual_seed(params["seed"])
    vocab, n = params["V"], params["grid"]

    def rows(count, temperature, zeros=()):
        probs = torch.softmax(torch.randn(count, vocab, generator=g) * temperature, dim=-1)
        if zeros:
            probs[:, list(zeros)] = 0.0
            probs = probs / probs.sum(-1, keepdim=True)
        return probs

    p = rows(1, params["t_p"], params.get("p_zero", ()))[0]
    q = p.clone() if params.get("same") else rows(1, params["t_q"], params.get("q_zero", ()))[0]
    # the exact-distribution grid: every x (weighted by q(x)), u and v on midpoints
    mid = (torch.arange(n, dtype=torch.float32) + 0.5) / n
    x = torch.arange(vocab).repeat_interleave(n * n)
    u = mid.repeat_interleave(n).repeat(vocab)
    v = mid.repeat(vocab * n)
    big = len(x)
    tokens, _ = fn(p.expand(big, vocab).clone(), q.expand(big, vocab).clone(), x.clone(), u.clone(), v.clone())
    tokens = torch.as_tensor(tokens).long().reshape(-1)
    weight = (q.double()[x] / (n * n))
    dist = torch.zeros(vocab, dtype=torch.float64).index_add_(0, tokens.clamp(0, vocab - 1), weight)
    # random rows, each with its own p and q, x drawn from q
    b = params["B"]
    pr = rows(b, params["t_p"], params.get("p_zero", ()))
    qr = rows(b, params["t_q"], params.get("q_zero", ()))
    xr = torch.multinomial(qr, 1, generator=g)[:, 0]
    ur, vr = torch.rand(b, generator=g), torch.rand(b, generator=g)
    if "rows" in params:  # rows given exactly (u or v at 0, v exactly on a cumulative value) replace the random ones
        given = params["rows"]
        pr = torch.tensor([r[0] for r in given], dtype=torch.float32)
        qr = torch.tensor([r[1] for r in given], dtype=torch.float32)
        xr = torch.tensor([r[2] for r in given], dtype=torch.int64)
        ur = torch.tensor([r[3] for r in given], dtype=torch.float32)
        vr = torch.tensor([r[4] for r in given], dtype=torch.float32)
    tok_r, acc_r = fn(pr.clone(), qr.clone(), xr.clone(), ur.clone(), vr.clone())
    return {"distribution": dist, "target": p.double(), "tokens": torch.as_tensor(tok_r).long().reshape(-1),
            "accepted": torch.as_tensor(acc_r).reshape(-1).to(torch.int64)}


def judge_speculative_accept(got, want, params):
    import numpy as np

    dist, target = np.asarray(got["distribution"], dtype=np.float64), np.asarray(want["target"], dtype=np.float64)
    if dist.shape != target.shape:
        return "the emitted tokens could not be counted (return int64 token ids of shape (B,))"
    gap = float(np.abs(dist - target).max())
    if gap > 1.5 / params["grid"] + 1e-3:  # a midpoint grid of n points is exact up to 1/(2n) per uniform
        return (f"the distribution of the emitted tokens is not the target p (max abs difference {gap:.3f} "
                f"over a fine grid of x ~ q, u, v)")
    reason = sequence_diff(got["tokens"], want["tokens"], "tokens", "the tokens on random rows", integers=True)
    if reason:
        return reason
    return compare_arrays("the accepted flags on random rows", np.asarray(got["accepted"]),
                          np.asarray(want["accepted"]), 0, 0)


SPECULATIVE_REFERENCE = """
    import numpy as np

    def speculative_accept(p, q, x, u, v):
        P, Q = p.double().numpy(), q.double().numpy()
        xs = x.numpy()
        rows = np.arange(len(xs))
        px, qx = P[rows, xs], Q[rows, xs]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(qx > 0, px / np.where(qx > 0, qx, 1.0), np.inf)
        accepted = u.double().numpy() < ratio
        residual = np.maximum(P - Q, 0.0)
        total = residual.sum(axis=1, keepdims=True)
        cdf = np.cumsum(residual / np.where(total > 0, total, 1.0), axis=1)
        vv = v.double().numpy()
        picked = np.array([min(int(np.searchsorted(c, t, side="right")), P.shape[1] - 1) for c, t in zip(cdf, vv)])
        tokens = np.where(accepted, xs, picked)
        return torch.from_numpy(tokens).long(), torch.from_numpy(accepted)
"""


# ============================================================================ 3 paged KV cache

def probe_block_manager(ns, params):
    import json as _json

    cls = ns["BlockManager"]
    total = params["num_blocks"]
    bm = cls(total, params["block_size"])
    live, trace = [], []
    for op in params["ops"]:
        kind, seq = op[0], op[1]
        raised, returned = False, None
        try:
            if kind == "alloc":
                bm.allocate(seq, op[2])
                live.append(seq)
            elif kind == "append":
                returned = bm.append(seq)
            elif kind == "fork":
                bm.fork(seq, op[2])
                live.append(op[2])
            elif kind == "free":
                bm.free(seq)
                live.remove(seq)
        except MemoryError:
            raised = True
        except Exception as exc:  # noqa: BLE001 - reported as this operation's failure
            raised = type(exc).__name__
        if returned is not None:
            returned = [int(b) for b in returned]
        tables = {}
        for s in live:
            try:
                tables[s] = [int(b) for b in bm.block_table(s)]
            except Exception as exc:  # noqa: BLE001
                tables[s] = type(exc).__name__
        trace.append({"op": kind, "raised": raised, "returned": returned, "free": int(bm.num_free()),
                      "tables": tables, "refs": [int(bm.ref_count(b)) for b in range(total)]})
    return {"trace": _json.dumps(trace)}


_ARTICLE = {"alloc": "an allocate", "append": "an append", "fork": "a fork", "free": "a free"}


def judge_block_manager(got, want, params):
    mine, expected, why = json_lists(got, want, "trace", "the trace of your block manager")
    if why:
        return why
    if len(mine) != len(expected):
        return "the operations could not all be replayed"
    for i, (g, w) in enumerate(zip(mine, expected)):
        where = f"after operation {i + 1} ({_ARTICLE.get(w['op'], w['op'])})"
        if g.get("raised") != w["raised"]:
            if isinstance(g.get("raised"), str):
                return f"{where}: your code raised {g['raised'][:40]}"
            return f"{where}: " + ("MemoryError was expected (not enough free blocks)" if w["raised"]
                                   else "MemoryError was raised, but enough blocks were free")
        if g.get("returned") != w["returned"]:
            return (f"{where}: append returned the wrong copy-on-write pair" if w["returned"] or g.get("returned")
                    else f"{where}: append returned the wrong value")
        if g.get("tables") != w["tables"]:
            return f"{where}: a block table differs from the expected one"
        if g.get("free") != w["free"]:
            return f"{where}: the number of free blocks differs from the expected one"
        if g.get("refs") != w["refs"]:
            return f"{where}: a block's reference count differs from the expected one"
    return None


BLOCK_MANAGER_REFERENCE = """
    import heapq

    class BlockManager:
        def __init__(self, num_blocks, block_size):
            self.size = block_size
            self.heap = list(range(num_blocks))
            self.count = {}
            self.seqs = {}

        def _take(self):
            if not self.heap:
                raise MemoryError("out of blocks")
            block = heapq.heappop(self.heap)
            self.count[block] = 1
            return block

        def _drop(self, block):
            self.count[block] -= 1
            if self.count[block] == 0:
                del self.count[block]
                heapq.heappush(self.heap, block)

        def num_free(self):
            return len(self.heap)

        def ref_count(self, block):
            return self.count.get(block, 0)

        def block_table(self, seq_id):
            return self.seqs[seq_id][0][:]

        def allocate(self, seq_id, num_tokens):
            blocks = (num_tokens + self.size - 1) // self.size
            if blocks > len(self.heap):
                raise MemoryError("out of blocks")
            self.seqs[seq_id] = ([self._take() for _ in range(blocks)], num_tokens)

        def append(self, seq_id):
            table, length = self.seqs[seq_id]
            pair = None
            if length == len(table) * self.size:
                table = table + [self._take()]
            elif self.count[table[-1]] >= 2:
                fresh = self._take()
                pair = (table[-1], fresh)
                self._drop(table[-1])
                table = table[:-1] + [fresh]
            self.seqs[seq_id] = (table, length + 1)
            return pair

        def fork(self, parent_id, child_id):
            table, length = self.seqs[parent_id]
            for block in table:
                self.count[block] += 1
            self.seqs[child_id] = (table[:], length)

        def free(self, seq_id):
            table, _ = self.seqs.pop(seq_id)
            for block in table:
                self._drop(block)
"""


# ============================================================================ 4 continuous-batching scheduler

def probe_schedule(ns, params):
    import json as _json

    fn = ns["schedule_step"]
    bs, budget = params["block_size"], params["token_budget"]

    def blocks(n):
        return -(-n // bs)

    if "state" in params:  # one decision on a given state
        st = params["state"]
        out = fn([tuple(r) for r in st["running"]], [tuple(w) for w in st["waiting"]], st["free_blocks"], bs, budget)
        decision = {key: [str(x) for x in out[key]] for key in ("decode", "prefill", "preempted")}
        decision["free_blocks"] = int(out["free_blocks"])
        return {"trace": _json.dumps([decision])}
    running, waiting, free, trace = [], [], params["num_blocks"], []   # entries: [id, tokens, produced, max_new]
    for step in range(params["steps"]):
        for i, (arrival, prompt, new) in enumerate(params["requests"]):
            if arrival == step:
                waiting.append([f"r{i}", prompt, 0, new])
        out = fn([(r[0], r[1]) for r in running], [(w[0], w[1]) for w in waiting], free, bs, budget)
        decision = {key: [str(x) for x in out[key]] for key in ("decode", "prefill", "preempted")}
        decision["free_blocks"] = int(out["free_blocks"])
        trace.append(decision)
        by_id = {r[0]: r for r in running}
        for rid in decision["preempted"]:          # recompute later: cached tokens + the pending one
            r = by_id.pop(rid)
            running.remove(r)
            free += blocks(r[1])
            waiting.insert(0, [rid, r[1] + 1, r[2], r[3]])
        for rid in decision["decode"]:
            r = by_id[rid]
            free -= 1 if r[1] % bs == 0 else 0
            r[1] += 1
            r[2] += 1
        for rid in decision["prefill"]:
            w = next(w for w in waiting if w[0] == rid)
            waiting.remove(w)
            free -= blocks(w[1])
            running.append([rid, w[1], w[2] + 1, w[3]])
        for r in [r for r in running if r[2] >= r[3]]:
            running.remove(r)
            free += blocks(r[1])
    return {"trace": _json.dumps(trace)}


def judge_schedule(got, want, params):
    mine, expected, why = json_lists(got, want, "trace", "the trace of your scheduler")
    if why:
        return why
    if len(mine) != len(expected):
        return "the simulation could not run every step with your decisions"
    words = {"decode": "the decoded requests", "prefill": "the admitted (prefill) requests",
             "preempted": "the preempted requests", "free_blocks": "free_blocks"}
    for step, (g, w) in enumerate(zip(mine, expected)):
        for key in ("preempted", "decode", "prefill", "free_blocks"):
            if g.get(key) != w[key]:
                return f"step {step + 1}: {words[key]} differ from the reference scheduler's"
    return None


SCHEDULER_REFERENCE = """
    from collections import deque

    def schedule_step(running, waiting, free_blocks, block_size, token_budget):
        def blocks(n):
            return (n + block_size - 1) // block_size

        queue = deque(running)
        decode, preempted = [], []
        free, budget = free_blocks, token_budget
        while queue and budget > 0:
            rid, n = queue[0]
            need = int(n % block_size == 0)
            while free < need and len(queue) > 1:
                victim = queue.pop()
                preempted.append(victim[0])
                free += blocks(victim[1])
            if free < need:
                queue.popleft()
                preempted.append(rid)
                free += blocks(n)
                break
            queue.popleft()
            free -= need
            budget -= 1
            decode.append(rid)
        prefill = []
        for rid, n in ([] if preempted else waiting):
            if budget < n or free < blocks(n):
                break
            prefill.append(rid)
            budget -= n
            free -= blocks(n)
        return {"decode": decode, "prefill": prefill, "preempted": preempted, "free_blocks": free}
"""


# ============================================================================ 5 int4 group-wise quantization

def probe_int4(ns, params):
    import torch

    quantize, dequantize = ns["quantize_int4"], ns["dequantize_int4"]
    g = torch.Generator().manual_seed(params["seed"])
    rows, cols, gs = params["rows"], params["cols"], params["group_size"]
    w = torch.randn(rows, cols, generator=g) * params.get("std", 0.05)
    if params.get("halves"):  # exact halves: scale 1, zero 0 in row 0; scale 0.5, zero round(2.5) in row 1
        w[0, :gs] = torch.tensor([0.0, 15.0] + [float(i % 15) + 0.5 for i in range(gs - 2)])
        w[1, :gs] = torch.tensor([-1.25, 6.25] + [((i * 7) % 15) * 0.5 - 1.0 for i in range(gs - 2)])
    if params.get("zero_group"):
        w[-1, :gs] = 0.0
    if params.get("positive_group"):
        w[0, -gs:] = w[0, -gs:].abs() + 0.3
    if params.get("outlier"):
        w[:, params["outlier"]] *= 25.0
    if cols % gs:
        try:
            quantize(w.clone(), gs)
        except ValueError:
            return {"raised": True}
        return {"raised": False}
    q, scale, zero = quantize(w.clone(), gs)
    w_hat = dequantize(q, scale, zero, gs)
    # where float32 and float64 may round differently (within 1e-4 of a half, not exactly a half)
    wd = w.double().reshape(rows, cols // gs, gs)
    lo, hi = wd.amin(-1).clamp_max(0), wd.amax(-1).clamp_min(0)
    s = torch.where(hi > lo, (hi - lo) / 15, torch.ones_like(hi))
    r, z = wd / s[..., None], -lo / s

    def near(t):
        frac = t - t.floor()
        return ((frac - 0.5).abs() < 1e-4) & (frac != 0.5)

    return {"raised": False, "q": torch.as_tensor(q).to(torch.int64), "scale": torch.as_tensor(scale).double(),
            "zero": torch.as_tensor(zero).double(), "w_hat": torch.as_tensor(w_hat).double(),
            "near_q": near(r).reshape(rows, cols), "near_zero": near(z)}


def judge_int4(got, want, params):
    import numpy as np

    if bool(np.asarray(got["raised"])) != bool(np.asarray(want["raised"])):
        return ("no ValueError was raised, but in_features is not a multiple of group_size"
                if bool(np.asarray(want["raised"])) else "a ValueError was raised, but this input is valid")
    if bool(np.asarray(want["raised"])):
        return None
    for key in ("q", "scale", "zero", "w_hat"):
        if key not in got:
            return f"no value for {key}"
    gs = params["group_size"]
    near_zero = np.asarray(want["near_zero"], dtype=bool)
    skip = np.repeat(near_zero, gs, axis=1) | np.asarray(want["near_q"], dtype=bool)   # per element
    q, wq = np.asarray(got["q"]), np.asarray(want["q"])
    if q.shape != wq.shape:
        return f"the quantized values q have shape {q.shape}, expected {wq.shape} (one value per weight)"
    bad = (q != wq) & ~(skip & (np.abs(q.astype(np.int64) - wq) <= 1))
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        return f"the quantized values q: {int(bad.sum())} of {wq.size} differ (first at position {first})"
    for key, label in (("scale", "the scales"), ("zero", "the zero points")):
        g, w = np.asarray(got[key], dtype=np.float64), np.asarray(want[key], dtype=np.float64)
        if g.shape != w.shape:
            return f"{label} have shape {g.shape}, expected {w.shape} (one per group of consecutive columns)"
        if key == "zero":
            g, w = np.where(near_zero, 0, g), np.where(near_zero, 0, w)
        reason = compare_arrays(label, g, w, 1e-5 if key == "scale" else 0.0, 0.0 if key == "zero" else 1e-12)
        if reason:
            return reason
    g, w = np.asarray(got["w_hat"], dtype=np.float64), np.asarray(want["w_hat"], dtype=np.float64)
    if g.shape != w.shape:
        return f"the dequantized weight has shape {g.shape}, expected {w.shape}"
    return compare_arrays("the dequantized weight", np.where(skip, 0, g), np.where(skip, 0, w), 1e-5, 1e-7)


INT4_REFERENCE = """
    import numpy as np

    def quantize_int4(w, group_size):
        rows, cols = w.shape
        if cols % group_size != 0:
            raise ValueError("in_features must be a multiple of group_size")
        x = w.double().numpy()
        n_groups = cols // group_size
        q = np.zeros((rows, cols), dtype=np.int64)
        scale = np.ones((rows, n_groups))
        zero = np.zeros((rows, n_groups))
        for i in range(rows):
            for j in range(n_groups):
                grp = x[i, j * group_size:(j + 1) * group_size]
                lo, hi = min(grp.min(), 0.0), max(grp.max(), 0.0)
                s = (hi - lo) / 15 if hi > lo else 1.0
                z = np.round(-lo / s)
                scale[i, j], zero[i, j] = s, z
                q[i, j * group_size:(j + 1) * group_size] = np.clip(np.round(grp / s) + z, 0, 15)
        return torch.from_numpy(q), torch.from_numpy(scale), torch.from_numpy(zero)

    def dequantize_int4(q, scale, zero, group_size):
        s = np.repeat(scale.double().numpy(), group_size, axis=1)
        z = np.repeat(zero.double().numpy(), group_size, axis=1)
        return torch.from_numpy((q.double().numpy() - z) * s)
"""


# ============================================================================ 6 FlashAttention forward

def probe_flash(ns, params):
    import torch

    fn = ns["flash_attention"]
    g = torch.Generator().manual_seed(params["seed"])
    lead, lq, lk, d = params["lead"], params["Lq"], params["Lk"], params["D"]
    q = torch.randn(*lead, lq, d, generator=g) * params.get("scale", 1.0)
    k = torch.randn(*lead, lk, d, generator=g) * params.get("scale", 1.0)
    v = torch.randn(*lead, lk, d, generator=g)
    if params.get("negative"):  # every score of every row very negative (q . k < 0 term by term)
        q, k = q.abs(), -k.abs()
    out, lse = fn(q, k, v, params["block"], causal=params["causal"])
    return {"out": out, "lse": lse}


judge_flash = ordered(("out", "the attention output", 1e-4, 1e-5), ("lse", "the log-sum-exp", 1e-5, 1e-4))


def oracle_flash():
    import torch
    import torch.nn.functional as F

    sdpa = F.scaled_dot_product_attention

    def flash_attention(q, k, v, block_size, causal=False):
        lq, lk = q.shape[-2], k.shape[-2]
        allowed = torch.ones(lq, lk, dtype=torch.bool)
        if causal:
            allowed = allowed.tril(lk - lq)
        scores = (q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5).masked_fill(~allowed, float("-inf"))
        return sdpa(q, k, v, attn_mask=allowed), torch.logsumexp(scores, dim=-1)

    return {"flash_attention": flash_attention}


# ============================================================================ 7 roofline

def probe_roofline(ns, params):
    args = params["args"]
    if params["kind"] == "matmul":
        out = ns["matmul_roofline"](*args)
    else:
        out = ns["decode_attention_roofline"](*args)
    intensity, seconds, bound = out
    return {"intensity": float(intensity), "seconds": float(seconds), "bound": str(bound)}


def judge_roofline(got, want, params):
    for key, label in (("intensity", "the arithmetic intensity"), ("seconds", "the roofline time")):
        reason = compare_arrays(label, got[key], want[key], 1e-6, 0.0)
        if reason:
            return reason
    if str(got["bound"]) != str(want["bound"]):
        return "the bound (\"compute\" or \"memory\") is wrong for this case"
    return None


ROOFLINE_REFERENCE = """
    from fractions import Fraction

    def _verdict(flops, moved, peak_flops, bandwidth):
        t_compute, t_memory = Fraction(flops) / Fraction(peak_flops), Fraction(moved) / Fraction(bandwidth)
        bound = "compute" if t_compute >= t_memory else "memory"
        return float(Fraction(flops) / Fraction(moved)), float(max(t_compute, t_memory)), bound

    def matmul_roofline(m, n, k, bytes_per_element, peak_flops, bandwidth):
        return _verdict(2 * m * n * k, (m * k + k * n + m * n) * bytes_per_element, peak_flops, bandwidth)

    def decode_attention_roofline(batch, num_heads, num_kv_heads, head_dim, context, bytes_per_element, peak_flops,
                                  bandwidth):
        flops = 2 * batch * num_heads * context * head_dim * 2
        moved = 2 * batch * num_kv_heads * context * head_dim * bytes_per_element
        return _verdict(flops, moved, peak_flops, bandwidth)
"""


# ============================================================================ the spec

# Mutants are edits of the solution's own functions (read from the solution notebook); snippets used twice:
ACCEPT = "accepted = u * qx < px"
FORK_COUNT = "        for block in self.tables[child_id]:\n            self.refs[block] += 1\n"
FITS = "if n > budget or blocks(n) > free_blocks:"
LSE = "m + torch.log(l)"

EXERCISES = [
    Exercise(
        grade_id="ch12_verify_greedy_test", functions=("verify_greedy",), points=3,
        bans=(("transformers.generation.utils.GenerationMixin", "generate", "model.generate"),),
        cases=(
            Case("the whole draft accepted: bonus token", {"seed": 0, "vocab": 40, "prompt": 5, "k": 4},
                 edge="every draft token accepted (accepted = k): the bonus token"),
            Case("first draft token wrong", {"seed": 1, "vocab": 40, "prompt": 4, "k": 3, "wrong_at": [0]},
                 edge="mismatch at position 0: nothing accepted"),
            Case("rejected in the middle", {"seed": 2, "vocab": 50, "prompt": 6, "k": 5, "wrong_at": [2]}),
            Case("later draft tokens agree again after a mismatch",
                 {"seed": 3, "vocab": 32, "prompt": 3, "k": 5, "wrong_at": [1]}),
            Case("empty draft", {"seed": 4, "vocab": 40, "prompt": 5, "k": 0}, edge="k = 0: only the target's own next token"),
            Case("last draft token wrong", {"seed": 5, "vocab": 48, "prompt": 7, "k": 6, "wrong_at": [5]},
                 edge="mismatch at the last draft position k - 1"),
        ),
        probe=probe_verify_greedy, judge=judge_verify_greedy,
        mutants={
            "no bonus token when the whole draft is accepted": mutate(
                "return torch.cat(", "return draft.long() if accepted == k > 0 else torch.cat(",
                hint=Hint("整个草稿都被接受时漏了额外的 bonus token：目标模型在最后一个位置的贪心 token 也要输出。",
                    "When the whole draft is accepted, the bonus token (the target's greedy token after it) is missing.")),
            "compares each draft token with the logits at its own position (off by one)": mutate(
                "greedy = logits[n - 1:]", "greedy = logits[n:]",
                hint=Hint("差一位：草稿 token 应和它前一个位置的 logits（预测它的那个）比较，而不是它自己位置的。",
                    "Off by one: a draft token is checked against the logits of the position before it, which predict it.")),
            "accepts every matching draft token, not the matching prefix": mutate(
                "return torch.cat([draft[:accepted].long(), greedy[accepted:accepted + 1].long()])",
                "keep = [int(d) for d, g in zip(draft, greedy) if int(d) == int(g)]\n"
                "    return torch.tensor(keep + [int(greedy[len(keep)])], dtype=torch.long)",
                hint=Hint("接受了所有匹配的草稿 token；第一次不匹配之后的草稿都要丢弃，只保留匹配的前缀。",
                    "Every matching draft token is kept; after the first mismatch the rest of the draft must be dropped.")),
            "emits the draft token at the first mismatch": mutate(
                "greedy[accepted:accepted + 1].long()", "(draft if accepted < k else greedy)[accepted:accepted + 1].long()",
                hint=Hint("在第一个不匹配处输出了草稿 token，应输出目标模型自己的贪心 token。",
                    "At the first mismatch the draft token is emitted instead of the target's own greedy token.")),
            "one target forward pass per draft token": whole("""
                def verify_greedy(model, input_ids, draft):
                    out = []
                    ids = input_ids
                    with torch.no_grad():
                        for i in range(draft.shape[0] + 1):
                            best = model(ids).logits[0, -1].argmax()
                            out.append(int(best))
                            if i == draft.shape[0] or int(draft[i]) != int(best):
                                break
                            ids = torch.cat([ids, draft[i].reshape(1, 1)], dim=1)
                    return torch.tensor(out, dtype=torch.long)
            """,
                hint=Hint("每个草稿 token 都跑一次目标模型；投机解码的意义在于一次前向就验证整个草稿。",
                    "The target runs once per draft token; the point is to verify the whole draft in one forward pass.")),
        },
    ),
    Exercise(
        grade_id="ch12_speculative_accept_test", functions=("speculative_accept",), points=3,
        cases=(
            Case("draft and target quite different", {"seed": 0, "V": 5, "grid": 100, "t_p": 1.5, "t_q": 1.5, "B": 64}),
            Case("target forbids some tokens the draft proposes",
                 {"seed": 1, "V": 6, "grid": 100, "t_p": 1.0, "t_q": 0.5, "p_zero": [1, 4], "B": 64},
                 edge="p(x) = 0 for drafted tokens: the ratio is 0"),
            Case("draft never proposes some tokens the target likes",
                 {"seed": 2, "V": 5, "grid": 100, "t_p": 1.0, "t_q": 1.0, "q_zero": [0, 2], "B": 64},
                 edge="q(x) = 0 where p(x) > 0: those tokens come only from the residual"),
            Case("a peaked target, a flat draft", {"seed": 3, "V": 4, "grid": 120, "t_p": 3.0, "t_q": 0.1, "B": 80}),
            Case("draft equals target: everything accepted",
                 {"seed": 4, "V": 5, "grid": 60, "t_p": 1.0, "t_q": 1.0, "same": True, "B": 32},
                 edge="p = q: the ratio is exactly 1 and u < 1 always accepts"),
            # residual of each row, normalised: (0, 1, 0, 0) or (0, 0.25, 0.25, 0.5) (cumulative 0, 0.25, 0.5, 1),
            # exact in float32; p(0) = 0 so token 0 may never be emitted
            Case("v = 0 and v exactly on a cumulative value",
                 {"seed": 5, "V": 4, "grid": 40, "t_p": 1.0, "t_q": 1.0, "p_zero": [0], "B": 2,
                  "rows": [[[0.0, 0.5, 0.25, 0.25], [0.5, 0.0, 0.25, 0.25], 0, 0.0, 0.0],
                           [[0.0, 0.25, 0.25, 0.5], [1.0, 0.0, 0.0, 0.0], 0, 0.5, 0.0],
                           [[0.0, 0.25, 0.25, 0.5], [1.0, 0.0, 0.0, 0.0], 0, 0.0, 0.25],
                           [[0.0, 0.25, 0.25, 0.5], [1.0, 0.0, 0.0, 0.0], 0, 0.9, 0.5],
                           [[0.0, 0.5, 0.25, 0.25], [0.5, 0.0, 0.25, 0.25], 2, 0.0, 0.3],
                           [[0.0, 0.25, 0.25, 0.5], [0.0, 0.25, 0.25, 0.5], 3, 0.0, 0.0]]},
                 edge="u = 0 with p(x) = 0 (rejected); v = 0 and v exactly on a cumulative value (0.25, 0.5)"),
        ),
        probe=probe_speculative_accept, judge=judge_speculative_accept,
        mutants={
            "always accepts the draft token": mutate(ACCEPT, "accepted = torch.ones_like(x, dtype=torch.bool)",
                hint=Hint("总是接受草稿 token，输出分布就成了 q 而不是 p。",
                    "The draft token is always accepted, so the output follows q instead of p.")),
            "resamples from p instead of max(0, p - q)": mutate("residual = (p - q).clamp_min(0)", "residual = p",
                hint=Hint("拒绝后从 p 重采样而不是从残差 max(0, p − q)：被接受的部分被重复计算，分布偏了。",
                    "After a rejection it resamples from p, not from the residual, so accepted mass is counted twice.")),
            "accepts with probability q(x) / p(x)": mutate(ACCEPT, "accepted = u * px < qx",
                hint=Hint("接受概率写反了，用了 q(x)/p(x)。",
                    "The acceptance ratio is upside down: q(x) over p(x) instead of p(x) over q(x).")),
            "residual max(0, q - p)": mutate("(p - q).clamp_min(0)", "(q - p).clamp_min(0)",
                hint=Hint("残差方向反了：应是目标分布超出草稿分布的部分，而不是反过来。",
                    "The residual is the wrong way round: it is where the target exceeds the draft, not the reverse.")),
            "residual not normalised before the inverse CDF": mutate(
                "cdf = residual.cumsum(dim=1) / residual.sum(dim=1, keepdim=True)", "cdf = residual.cumsum(dim=1)",
                hint=Hint("逆 CDF 之前没有把残差归一化，累积和到不了 1。",
                    "The residual is not normalised before the inverse CDF, so its cumulative sum does not reach 1.")),
            "inverse CDF counted from the last token": mutate({
                "(p - q).clamp_min(0)": "(p - q).clamp_min(0).flip(1)",
                "resampled = (cdf": "resampled = p.shape[1] - 1 - (cdf"},
                hint=Hint("逆 CDF 从最后一个 token 开始累积；应从 token 0 开始，取第一个超过 v 的。",
                    "The inverse CDF is accumulated from the last token; it runs from token 0 upwards.")),
            "accepts when u > 1 - p(x) / q(x)": mutate(ACCEPT, "accepted = (1 - u) * qx < px",
                hint=Hint("用 1 − u 代替 u 做判断：概率上等价，但给定同一个 u 时决定与规定的不同。",
                    "The test uses 1 - u instead of u: equal in distribution, but with the given u the decisions differ.")),
            "inverse CDF takes the first cumulative value >= v (not > v)": mutate(
                "(cdf <= v[:, None])", "(cdf < v[:, None])",
                hint=Hint("逆 CDF 取了第一个累积值 ≥ v 的 token；规则要求严格大于 v。",
                    "The inverse CDF takes the first cumulative value that reaches v; the rule asks for one that exceeds v.")),
            "accepts when u <= p(x) / q(x)": mutate(ACCEPT, "accepted = u * qx <= px",
                hint=Hint("接受条件用了 ≤ 而不是严格的 <，边界上的 u 被错误接受。",
                    "The acceptance test uses <= instead of a strict <, so a u on the boundary is wrongly accepted.")),
        },
    ),
    Exercise(
        grade_id="ch12_block_manager_test", functions=("BlockManager",), points=3,
        cases=(
            Case("grow one sequence across block boundaries",
                 {"num_blocks": 6, "block_size": 4, "ops": [["alloc", "a", 3], ["append", "a"], ["append", "a"],
                                                            ["append", "a"], ["alloc", "b", 4], ["append", "b"],
                                                            ["free", "a"], ["alloc", "c", 9], ["free", "b"],
                                                            ["free", "c"]]}, edge="lengths exactly a multiple of block_size"),
            Case("parallel samples: fork, then copy on write",
                 {"num_blocks": 10, "block_size": 4, "ops": [["alloc", "p", 6], ["fork", "p", "s1"], ["fork", "p", "s2"],
                                                             ["append", "s1"], ["append", "s2"], ["append", "p"],
                                                             ["append", "p"], ["append", "p"], ["free", "p"],
                                                             ["append", "s1"], ["free", "s1"], ["free", "s2"]]},
                 edge="an append into a block whose count is above 1"),
            Case("beam search: fork at a block boundary, free the parent",
                 {"num_blocks": 8, "block_size": 2, "ops": [["alloc", "b0", 4], ["fork", "b0", "b1"], ["append", "b1"],
                                                            ["append", "b0"], ["free", "b0"], ["fork", "b1", "b2"],
                                                            ["append", "b2"], ["append", "b1"], ["free", "b1"],
                                                            ["alloc", "x", 3], ["free", "b2"], ["free", "x"]]},
                 edge="a fork when the last block is exactly full; a count going back to 1"),
            Case("the pool runs out",
                 {"num_blocks": 5, "block_size": 4, "ops": [["alloc", "a", 8], ["alloc", "b", 16], ["alloc", "c", 9],
                                                            ["fork", "a", "a2"], ["append", "a"], ["append", "a2"],
                                                            ["free", "a"], ["append", "a2"], ["free", "c"],
                                                            ["alloc", "b", 5], ["append", "a2"], ["free", "a2"],
                                                            ["free", "b"]]},
                 edge="an allocation that needs more blocks than are free"),
            Case("blocks freed out of order are reused lowest first",
                 {"num_blocks": 8, "block_size": 2, "ops": [["alloc", "a", 2], ["alloc", "b", 4], ["alloc", "c", 2],
                                                            ["free", "b"], ["free", "a"], ["alloc", "d", 3],
                                                            ["append", "c"], ["free", "c"], ["free", "d"]]},
                 edge="several free blocks at once, freed in an order that is not the lowest-first"),
        ),
        probe=probe_block_manager, judge=judge_block_manager,
        mutants={
            "free returns every block to the pool, shared or not": mutate({
                "self.refs[block] -= 1": "self.refs[block] = max(self.refs[block] - 1, 0)",
                "if self.refs[block] == 0:\n                self.free_ids.add(block)": "self.free_ids.add(block)"},
                hint=Hint("free 把所有 block 都放回了空闲池，包括仍被其他序列共享的；应等引用计数降到 0。",
                    "free returns every block to the pool, even shared ones; a block is free only when its count reaches 0.")),
            "fork copies the parent's blocks instead of sharing them": mutate({
                "self.tables[child_id] = list(self.tables[parent_id])":
                    "self.tables[child_id] = [self._take() for _ in self.tables[parent_id]]",
                FORK_COUNT: ""},
                hint=Hint("fork 给子序列分配了新 block，而不是共享父序列的 block（只加引用计数）。",
                    "fork takes new blocks for the child instead of sharing the parent's blocks and raising their counts.")),
            "append writes into a shared block (no copy-on-write)": mutate("elif self.refs[table[-1]] > 1:", "elif False:",
                hint=Hint("append 直接写进共享的 block，没有 copy-on-write，会覆盖其他序列的数据。",
                    "append writes into a shared block without copy-on-write, overwriting another sequence's tokens.")),
            "reuses the most recently freed block (a stack), not the lowest-numbered": mutate({
                "self.free_ids = set(range(num_blocks))": "self.free_ids = list(range(num_blocks - 1, -1, -1))",
                "block = min(self.free_ids)\n        self.free_ids.remove(block)": "block = self.free_ids.pop()",
                "self.free_ids.add(block)": "self.free_ids.append(block)"},
                hint=Hint("空闲 block 按栈的方式复用最近释放的，而不是编号最小的那个。",
                    "Free blocks are reused as a stack (most recently freed first), not lowest-numbered first.")),
            "allocate takes blocks until the pool runs out (not all-or-nothing)": mutate(
                "if need > len(self.free_ids):", "if False:",
                hint=Hint("allocate 不是全有或全无：空间不够时已经拿走了一部分 block。",
                    "allocate is not all-or-nothing: when the pool runs short it has already taken some blocks.")),
            "takes a new block one token early": mutate("if n % self.block_size == 0:",
                                                        "if (n + 1) % self.block_size == 0:",
                hint=Hint("提前一个 token 就申请了新 block；只有最后一个 block 满了才需要。",
                    "A new block is taken one token early; it is only needed when the last block is full.")),
            "fork does not count the child's references": mutate({
                FORK_COUNT: "", "self.refs[block] -= 1": "self.refs[block] = max(self.refs[block] - 1, 0)"},
                hint=Hint("fork 共享了 block 却没有增加引用计数，释放一方时另一方的 block 被提前回收。",
                    "fork shares the blocks without raising their reference counts, so freeing one sequence frees the other's.")),
        },
    ),
    Exercise(
        grade_id="ch12_schedule_step_test", functions=("schedule_step",), points=3,
        cases=(
            Case("light load: admit as requests arrive",
                 {"block_size": 4, "num_blocks": 40, "token_budget": 64, "steps": 14,
                  "requests": [[0, 5, 4], [0, 9, 3], [1, 3, 6], [2, 12, 2], [4, 7, 5], [6, 4, 3]]}),
            Case("a small token budget: prefills wait their turn",
                 {"block_size": 4, "num_blocks": 40, "token_budget": 12, "steps": 16,
                  "requests": [[0, 10, 3], [0, 3, 5], [0, 2, 4], [1, 8, 2], [2, 1, 6], [3, 11, 2]]}),
            Case("blocks run out: preemption and recompute",
                 {"block_size": 2, "num_blocks": 9, "token_budget": 32, "steps": 18,
                  "requests": [[0, 4, 8], [0, 3, 8], [1, 4, 6], [1, 2, 7], [3, 3, 4]]},
                 edge="no free block for a decode: preemption"),
            Case("more running requests than the token budget",
                 {"block_size": 4, "token_budget": 3,
                  "state": {"running": [["a", 5], ["b", 8], ["c", 3], ["d", 12], ["e", 6]], "waiting": [["f", 1]],
                            "free_blocks": 4}}, edge="token_budget below the number of running requests"),
            Case("a stream under a tight token budget",
                 {"block_size": 4, "num_blocks": 30, "token_budget": 3, "steps": 14,
                  "requests": [[0, 2, 6], [0, 1, 6], [0, 3, 6], [0, 2, 6], [1, 2, 3]]},
                 edge="token_budget = 3, smaller than the prompts"),
            Case("a long request at the front of the queue",
                 {"block_size": 4, "num_blocks": 12, "token_budget": 20, "steps": 14,
                  "requests": [[0, 6, 5], [1, 30, 2], [1, 2, 3], [2, 3, 3], [3, 5, 2]]},
                 edge="the first waiting request does not fit while later ones would"),
        ),
        probe=probe_schedule, judge=judge_schedule,
        mutants={
            "preempts the earliest-admitted request instead of the latest": mutate({
                "running[-1][0] != rid": "len(running) > i + 1",
                "victim, m = running.pop()": "victim, m = running.pop(i + 1)",
                "            running.pop()\n": "            running.pop(i)\n"},
                hint=Hint("抢占的是紧随其后的请求，而不是 running 中最后（最近被接纳）的那个。",
                    "The request right after the current one is preempted instead of the last, most recently admitted one.")),
            "skips a waiting request that does not fit and admits later ones": mutate(
                FITS + "\n                break", FITS + "\n                continue",
                hint=Hint("跳过了放不下的等待请求去接纳后面的；先来先服务要在第一个放不下的请求处停止。",
                    "A waiting request that does not fit is skipped for later ones; FCFS stops at the first that does not fit.")),
            "admits new requests in a step that preempted": mutate("if not preempted:", "if True:",
                hint=Hint("本步已经发生抢占，却仍然接纳了新请求。",
                    "New requests are admitted in a step that preempted; such a step admits nothing.")),
            "prefill ignores the token budget": mutate(FITS, "if blocks(n) > free_blocks:",
                hint=Hint("prefill 没有检查剩余的 token 预算。", "Prefill does not check the remaining token budget.")),
            "a decode never needs a new block": mutate("need = 1 if n % block_size == 0 else 0", "need = 0",
                hint=Hint("decode 从不申请新 block；当 token 数是 block_size 的倍数时，新 token 要开一个新 block。",
                    "A decode never takes a new block, yet a new token starts one when num_tokens is a multiple of block_size.")),
            "decodes ignore the token budget": mutate({
                "        if budget < 1:\n            break\n": "", "        budget -= 1\n": "",
                "    prefill = []\n": "    budget = max(budget - len(decode), 0)\n    prefill = []\n"},
                hint=Hint("decode 不消耗 token 预算，预算用完后仍在解码。",
                    "Decodes do not spend the token budget, so they go on after the budget is used up.")),
        },
    ),
    Exercise(
        grade_id="ch12_quantize_int4_test", functions=("quantize_int4", "dequantize_int4"), points=3,
        cases=(
            Case("exact halves: round half to even", {"seed": 0, "rows": 3, "cols": 16, "group_size": 8,
                                                      "halves": True}, edge="values exactly halfway between two levels"),
            Case("an all-zero group and an all-positive group", {"seed": 1, "rows": 4, "cols": 24, "group_size": 8,
                                                                 "zero_group": True, "positive_group": True},
                 edge="a group with max = min = 0, and one whose minimum is above 0"),
            Case("an outlier column: groups of 32 of 128", {"seed": 2, "rows": 6, "cols": 128, "group_size": 32,
                                                           "outlier": 5},
                 edge="one value far outside the rest sets its group's range"),
            Case("more rows than groups (groups run along each row)", {"seed": 3, "rows": 12, "cols": 8,
                                                                       "group_size": 4, "std": 1.0},
                 edge="more rows than groups per row: grouping down the columns still gives valid shapes"),
            Case("in_features not a multiple of group_size", {"seed": 4, "rows": 2, "cols": 20, "group_size": 8},
                 edge="in_features not a multiple of group_size"),
        ),
        probe=probe_int4, judge=judge_int4,
        mutants={
            "rounds half away from zero": mutate({
                "zero = torch.round(-lo / scale)": "zero = torch.floor(-lo / scale + 0.5)",
                "torch.round(g / scale[..., None])": "torch.sign(g) * torch.floor(g.abs() / scale[..., None] + 0.5)"},
                hint=Hint("取整用了四舍五入（远离零），而规定是 round half to even（torch.round）。",
                    "Rounding is half away from zero; the stated rounding is half to even.")),
            "groups run down the columns (dim 0)": mutate({  # where the rows split into groups; else along the rows
                "g = w.reshape(rows, cols // group_size, group_size)": "down = rows % group_size == 0\n"
                    "    g = w.T.reshape(cols, -1, group_size) if down else w.reshape(rows, -1, group_size)",
                "return q.to(torch.uint8).reshape(rows, cols), scale": "q = q.reshape(cols, rows).T if down "
                    "else q.reshape(rows, cols)\n    return q.to(torch.uint8), scale",
                "g = q.reshape(rows, cols // group_size, group_size).float()": "down = rows % group_size == 0\n"
                    "    g = (q.T.reshape(cols, -1, group_size) if down else q.reshape(rows, -1, group_size)).float()",
                "return ((g - zero[..., None].float()) * scale[..., None]).reshape(rows, cols)":
                    "g = (g - zero[..., None].float()) * scale[..., None]\n"
                    "    return g.reshape(cols, rows).T if down else g.reshape(rows, cols)"},
                hint=Hint("分组沿列方向（dim 0）取；每组应是同一行里连续的输入列。",
                    "The groups run down the columns (dim 0); a group is consecutive input columns of one row.")),
            "symmetric: no zero point": mutate({
                "lo = g.amin(dim=-1).clamp_max(0.0)": "lo = -g.abs().amax(dim=-1) * 8 / 7",
                "hi = g.amax(dim=-1).clamp_min(0.0)": "hi = g.abs().amax(dim=-1)",
                "zero = torch.round(-lo / scale)": "zero = torch.full_like(scale, 8)"},
                hint=Hint("用了对称量化（固定的 zero point）；这里要求非对称 min-max，每组有自己的 zero point。",
                    "This is symmetric quantization with a fixed zero point; each group needs its own asymmetric min-max zero.")),
            "divides the range into 16 steps instead of 15": mutate("scale = (hi - lo) / 15", "scale = (hi - lo) / 16",
                hint=Hint("把范围分成了 16 份；4 bit 有 16 个取值，之间只有 15 个间隔。",
                    "The range is split into 16 steps; 16 levels of 4 bits have only 15 steps between them.")),
            "range from the group's own min and max (0 not included)": mutate({
                "g.amin(dim=-1).clamp_max(0.0)": "g.amin(dim=-1)", "g.amax(dim=-1).clamp_min(0.0)": "g.amax(dim=-1)"},
                hint=Hint("范围只取组内的最小、最大值，没有把 0 包含进来，0 就不能被精确表示。",
                    "The range is the group's own min and max without 0, so zero is not represented exactly.")),
            "an all-zero group keeps scale 0": mutate({
                "    scale = torch.where(scale == 0, torch.ones_like(scale), scale)\n": "",
                "zero = torch.round(-lo / scale)": "zero = torch.round(-lo / scale).nan_to_num(0.0)",
                ").clamp(0, 15)": ").nan_to_num(0.0).clamp(0, 15)"},
                hint=Hint("全零组的 scale 保持为 0；按本课程的约定，此时 scale 取 1。",
                    "An all-zero group keeps scale 0; the course's stated convention uses scale 1 there.")),
            "no ValueError when in_features is not a multiple of group_size": mutate({
                "if cols % group_size:\n        raise": "if False:\n        raise",
                "g = w.reshape(rows, cols // group_size, group_size)":
                    "g = torch.cat([w, w.new_zeros(rows, (-cols) % group_size)], 1).reshape(rows, -1, group_size)",
                "return q.to(torch.uint8).reshape(rows, cols)": "return q.to(torch.uint8).reshape(rows, -1)[:, :cols]"},
                hint=Hint("in_features 不是 group_size 的倍数时没有抛 ValueError，而是悄悄补零。",
                    "No ValueError when in_features is not a multiple of group_size; the row is silently padded.")),
            "dequantize forgets the zero point": mutate("(g - zero[..., None].float())", "g",
                hint=Hint("反量化时忘了减去 zero point。", "Dequantization forgets to subtract the zero point.")),
        },
    ),
    Exercise(
        grade_id="ch12_flash_attention_test", functions=("flash_attention",), points=3,
        bans=(("torch.nn.functional", "scaled_dot_product_attention", "F.scaled_dot_product_attention"),),
        cases=(
            Case("block size divides the keys", {"seed": 0, "lead": [2, 2], "Lq": 8, "Lk": 8, "D": 8, "block": 4,
                                                 "causal": False}, edge="block_size dividing Lk exactly, Lq = Lk"),
            Case("a shorter last block", {"seed": 1, "lead": [1, 3], "Lq": 5, "Lk": 13, "D": 16, "block": 4,
                                          "causal": False}, edge="Lk not a multiple of block_size"),
            Case("causal, square", {"seed": 2, "lead": [2, 1], "Lq": 9, "Lk": 9, "D": 8, "block": 2, "causal": True},
                 edge="block_size 2 with a causal mask: a block can be fully masked for early queries"),
            Case("causal after a cached prefix", {"seed": 3, "lead": [1, 2], "Lq": 3, "Lk": 10, "D": 8, "block": 3,
                                                  "causal": True}, edge="Lq < Lk: the causal offset Lk - Lq is positive"),
            Case("scores in the hundreds", {"seed": 4, "lead": [2], "Lq": 6, "Lk": 12, "D": 16, "block": 5,
                                            "causal": False, "scale": 12.0},
                 edge="scores in the hundreds: exp overflows float32 without the running maximum"),
            Case("the largest score late in the keys", {"seed": 5, "lead": [1, 1], "Lq": 4, "Lk": 16, "D": 4, "block": 4,
                                                        "causal": True, "scale": 5.0},
                 edge="the row maximum in the last key block: every earlier block is rescaled"),
            Case("every score of a row below -100", {"seed": 6, "lead": [2, 1], "Lq": 5, "Lk": 11, "D": 16, "block": 4,
                                                     "causal": False, "scale": 12.0, "negative": True},
                 edge="all scores of every row very negative: exp(score - 0) underflows to 0"),
        ),
        probe=probe_flash, judge=judge_flash,
        mutants={
            "old accumulator not rescaled when the maximum grows": mutate("acc = acc * correction[..., None] + p",
                                                                          "acc = acc + p",
                hint=Hint("运行最大值变大时，旧的累加器没有按比例缩放。",
                    "When the running maximum grows, the old accumulator is not rescaled to the new maximum.")),
            "exponentials without subtracting the running maximum": mutate({
                "p = torch.exp(s - m_new[..., None])": "p = torch.exp(s)",
                "correction = torch.exp(m - m_new)": "correction = torch.ones_like(m)", LSE: "torch.log(l)"},
                hint=Hint("指数计算没有减去运行最大值，大分数会溢出。",
                    "Exponentials are taken without subtracting the running maximum, so large scores overflow.")),
            "running maximum initialised at 0 instead of -inf": mutate(
                'm = torch.full(q.shape[:-1], float("-inf"), dtype=q.dtype)', "m = torch.zeros(q.shape[:-1], dtype=q.dtype)",
                hint=Hint("运行最大值初始化为 0 而不是 -inf：分数都很负时 exp 全部下溢，得到 0/0。",
                    "The running maximum starts at 0, not -inf: when all scores are very negative, exp underflows to 0/0.")),
            "drops the last, shorter key block": mutate("range(0, lk, block_size)", "range(0, lk - block_size + 1, block_size)",
                hint=Hint("Lk 不是块大小的倍数时，丢掉了最后那个较短的 key 块。",
                    "The last, shorter key block is dropped when Lk is not a multiple of the block size.")),
            "causal mask aligned top-left": mutate({
                "rows = torch.arange(lq)[:, None] + (lk - lq)": "rows = torch.arange(lq)[:, None]",
                "p = torch.exp(s - m_new[..., None])": "p = torch.exp(s - m_new[..., None]).nan_to_num(0.0)",
                "correction = torch.exp(m - m_new)": "correction = torch.exp(m - m_new).nan_to_num(0.0)"},
                hint=Hint("causal mask 按左上角对齐；Lq < Lk 时最后一个查询应对齐最后一个 key。",
                    "The causal mask is aligned top-left; with Lq < Lk the last query must sit at the last key.")),
            "log-sum-exp returned without the maximum (log of the denominator)": mutate(LSE, "torch.log(l)",
                hint=Hint("返回的 log-sum-exp 漏加了运行最大值，只是缩放后分母的 log。",
                    "The returned log-sum-exp leaves out the running maximum; it is only the log of the scaled denominator.")),
            "scores scaled by 1/d instead of 1/sqrt(d)": mutate("scale = 1.0 / math.sqrt(d)", "scale = 1.0 / d",
                hint=Hint("分数除以了 d 而不是 d 的平方根。", "Scores are divided by d instead of by its square root.")),
        },
    ),
    Exercise(
        grade_id="ch12_roofline_test", functions=("matmul_roofline", "decode_attention_roofline"), points=2,
        cases=(
            Case("batch-1 decode GEMV on a GPU", {"kind": "matmul", "args": [1, 4096, 4096, 2, 1e15, 3.35e12]},
                 edge="m = 1 (a matrix-vector product)"),
            Case("prefill-sized GEMM on a GPU", {"kind": "matmul", "args": [2048, 4096, 4096, 2, 1e15, 3.35e12]}),
            Case("exactly at the ridge point", {"kind": "matmul", "args": [300, 300, 300, 2, 1e14, 1e12]},
                 edge="arithmetic intensity exactly at the ridge"),
            Case("batch 64 decode GEMM on a CPU", {"kind": "matmul", "args": [64, 2048, 2048, 4, 2e11, 2e10]}),
            Case("decode attention, multi-head, batch 32", {"kind": "attention",
                                                            "args": [32, 32, 32, 128, 4096, 2, 1e15, 3.35e12]},
                 edge="num_kv_heads = num_heads (multi-head)"),
            Case("decode attention, GQA 8:1, on a CPU", {"kind": "attention",
                                                         "args": [1, 32, 4, 128, 8192, 2, 1e11, 5e10]},
                 edge="num_kv_heads < num_heads (grouped-query)"),
        ),
        probe=probe_roofline, judge=judge_roofline,
        mutants={  # the two functions share their last three lines: count=2 edits both
            "counts m*n*k FLOPs (a multiply-add as one)": mutate("flops = 2 * m * n * k", "flops = m * n * k",
                hint=Hint("把一次乘加算成 1 个 FLOP；乘法和加法各算一次。",
                    "A multiply-add is counted as one FLOP; the multiply and the add count separately.")),
            "matmul bytes leave out writing the output": mutate("(m * k + k * n + m * n)", "(m * k + k * n)",
                hint=Hint("矩阵乘的字节数漏了写回输出矩阵。", "The matmul's bytes leave out writing the output once.")),
            "time is the sum of compute and memory time": mutate(
                "max(flops / peak_flops, moved / bandwidth)", "flops / peak_flops + moved / bandwidth", count=2,
                hint=Hint("时间用了计算时间与访存时间之和；roofline 时间取两者中较大的。",
                    "The time is the sum of compute and memory time; the roofline time is the larger of the two.")),
            "strictly above the ridge counts as compute-bound": mutate("intensity >= peak", "intensity > peak", count=2,
                hint=Hint("正好在 ridge point 上时判成了 memory；按规定此时算 compute。",
                    "Exactly at the ridge point it says memory; the rule counts the ridge itself as compute.")),
            "the KV cache counted with every query head (ignores GQA)": mutate("moved = 2 * batch * num_kv_heads",
                                                                               "moved = 2 * batch * num_heads",
                hint=Hint("KV cache 按查询头数计算了，忽略了 GQA：缓存只有 num_kv_heads 个头。",
                    "The KV cache is counted with every query head, ignoring GQA; it holds only num_kv_heads heads.")),
        },
    ),
]

# ============================================================================ rule table and alternatives

R = Rule
RULES = {
    "ch12_verify_greedy_test": (
        R("accept the **longest prefix** of the draft on which $d_i = g_i$",
          ("later draft tokens agree again after a mismatch", "rejected in the middle", "first draft token wrong",),
          {"accepts every matching draft token, not the matching prefix": "tokens",
           "compares each draft token with the logits at its own position (off by one)": "tokens"}),
        R("the correction at the first mismatch", ("first draft token wrong", "last draft token wrong"),
          {"emits the draft token at the first mismatch": "tokens"}),
        R("the **bonus token** $g_{k+1}$ when the whole draft is accepted",
          ("the whole draft accepted: bonus token",), {"no bonus token when the whole draft is accepted": "tokens"}),
        R("**call the model exactly once**", ("the whole draft accepted: bonus token", "empty draft"),
          {"one target forward pass per draft token": "exactly once"}),
    ),
    "ch12_speculative_accept_test": (
        R("accept the draft token when `u < p[x] / q[x]`",
          ("draft and target quite different", "target forbids some tokens the draft proposes",
           "v = 0 and v exactly on a cumulative value"),
          {"always accepts the draft token": "distribution", "accepts with probability q(x) / p(x)": "distribution",
           "accepts when u > 1 - p(x) / q(x)": "tokens", "accepts when u <= p(x) / q(x)": "tokens"}),
        R("the residual `max(0, p − q)`", ("draft and target quite different", "a peaked target, a flat draft",
                                           "target forbids some tokens the draft proposes",
                                           "draft never proposes some tokens the target likes",),
          {"resamples from p instead of max(0, p - q)": "distribution", "residual max(0, q - p)": "distribution"}),
        R("**normalised** to sum to 1", ("a peaked target, a flat draft", "target forbids some tokens the draft proposes",
                                         "draft never proposes some tokens the target likes",),
          {"residual not normalised before the inverse CDF": "distribution"}),
        R("the smallest token $i$ whose cumulative residual probability $\\sum_{j \\le i} r_j$ **exceeds** `v`",
          ("draft and target quite different", "draft never proposes some tokens the target likes",
           "v = 0 and v exactly on a cumulative value"),
          {"inverse CDF counted from the last token": "tokens",
           "inverse CDF takes the first cumulative value >= v (not > v)": "tokens"}),
    ),
    "ch12_block_manager_test": (
        R("hands out the **lowest-numbered free block**", ("blocks freed out of order are reused lowest first",),
          {"reuses the most recently freed block (a stack), not the lowest-numbered": "block table"}),
        R("it is **all-or-nothing**", ("the pool runs out",),
          {"allocate takes blocks until the pool runs out (not all-or-nothing)": "free blocks"}),
        R("If the sequence's last block is full (its length is a multiple of `block_size`), it takes a new block",
          ("grow one sequence across block boundaries",), {"takes a new block one token early": "block table"}),
        R("**copy on write**", ("parallel samples: fork, then copy on write",),
          {"append writes into a shared block (no copy-on-write)": "copy-on-write"}),
        R("sharing every block", ("parallel samples: fork, then copy on write",),
          {"fork copies the parent's blocks instead of sharing them": "block table"}),
        R("each block's count goes up by one", ("beam search: fork at a block boundary, free the parent",),
          {"fork does not count the child's references": "reference count"}),
        R("**only when its count reaches 0**", ("beam search: fork at a block boundary, free the parent",),
          {"free returns every block to the pool, shared or not": "free blocks"}),
    ),
    "ch12_schedule_step_test": (
        R("needs **one new block when `num_tokens` is a multiple of `block_size`**",
          ("blocks run out: preemption and recompute",), {"a decode never needs a new block": "free_blocks"}),
        R("When the token budget is used up, the remaining running requests simply wait this step",
          ("more running requests than the token budget",), {"decodes ignore the token budget": "decoded"}),
        R("**preempt the last request in `running`**", ("blocks run out: preemption and recompute",),
          {"preempts the earliest-admitted request instead of the latest": "preempted"}),
        R("stop at the **first one that does not fit**", ("a long request at the front of the queue",
                                                          "a small token budget: prefills wait their turn"),
          {"skips a waiting request that does not fit and admits later ones": "admitted"}),
        R("the remaining token budget $\\ge n$", ("a small token budget: prefills wait their turn",
                                                  "more running requests than the token budget",
                                                  "a stream under a tight token budget",),
          {"prefill ignores the token budget": "admitted"}),
        R("**If any request was preempted in this step, admit nothing.**", ("blocks run out: preemption and recompute",),
          {"admits new requests in a step that preempted": "admitted"}),
    ),
    "ch12_quantize_int4_test": (
        R("groups of `group_size` **consecutive columns of each row**",
          ("more rows than groups (groups run along each row)",), {"groups run down the columns (dim 0)": "quantized"}),
        R("raise `ValueError` if `in_features` is not a multiple of `group_size`",
          ("in_features not a multiple of group_size",),
          {"no ValueError when in_features is not a multiple of group_size": "ValueError"}),
        R("the range always contains 0", ("an all-zero group and an all-positive group",),
          {"range from the group's own min and max (0 not included)": "quantized"}),
        R("`scale` $= (w_{\\max} - w_{\\min}) / 15$", ("an outlier column: groups of 32 of 128",),
          {"divides the range into 16 steps instead of 15": "quantized",
           "symmetric: no zero point": "quantized"}),
        R("use **scale = 1**", ("an all-zero group and an all-positive group",),
          {"an all-zero group keeps scale 0": "scales"}),
        R("**round half to even**", ("exact halves: round half to even",), {"rounds half away from zero": "quantized"}),
        R("the float weight $(q - \\text{zero}) \\cdot \\text{scale}$", ("an outlier column: groups of 32 of 128",),
          {"dequantize forgets the zero point": "dequantized"}),
    ),
    "ch12_flash_attention_test": (
        R("**rescaled by\n$e^{m - m'}$**", ("the largest score late in the keys", "a shorter last block"),
          {"old accumulator not rescaled when the maximum grows": "attention output"}),
        R("**`block_size` need not\ndivide `Lk`**", ("a shorter last block",),
          {"drops the last, shorter key block": "attention output"}),
        R("the **bottom-right** alignment", ("causal after a cached prefix",),
          {"causal mask aligned top-left": "attention output"}),
        R("Results must be finite for scores of any magnitude", ("scores in the hundreds", "every score of a row below -100"),
          {"exponentials without subtracting the running maximum": "attention output",
           "running maximum initialised at 0 instead of -inf": "attention output"}),
        R("the log-sum-exp of each query's **scaled, masked** scores", ("causal, square", "block size divides the keys"),
          {"log-sum-exp returned without the maximum (log of the denominator)": "log-sum-exp"}),
        R("scores scaled by\n$1/\\sqrt d$", ("block size divides the keys", "scores in the hundreds",),
          {"scores scaled by 1/d instead of 1/sqrt(d)": "attention output"}),
    ),
    "ch12_roofline_test": (
        R("$F = 2mnk$", ("batch-1 decode GEMV on a GPU", "prefill-sized GEMM on a GPU"),
          {"counts m*n*k FLOPs (a multiply-add as one)": "intensity"}),
        R("**reading both operands and writing the output once**", ("batch 64 decode GEMM on a CPU",
                                                                    "batch-1 decode GEMV on a GPU",
                                                                    "exactly at the ridge point",),
          {"matmul bytes leave out writing the output": "intensity"}),
        R("$\\max(F/\\text{peak},\\ B/\\text{bandwidth})$", ("prefill-sized GEMM on a GPU", "batch-1 decode GEMV on a GPU"),
          {"time is the sum of compute and memory time": "roofline time"}),
        R("at exactly the ridge, say \"compute\"", ("exactly at the ridge point",),
          {"strictly above the ridge counts as compute-bound": "bound"}),
        R("holds `num_kv_heads` heads", ("decode attention, GQA 8:1, on a CPU",),
          {"the KV cache counted with every query head (ignores GQA)": "intensity"}),
    ),
}

ALTERNATIVES = {
    "ch12_verify_greedy_test": {"keyword call to forward, Python loop over positions": """
        def verify_greedy(model, input_ids, draft):
            prompt_len = input_ids.shape[-1]
            full = torch.cat((input_ids, draft.reshape(1, -1).long()), dim=-1)
            logits = model.forward(input_ids=full).logits.detach()
            out = []
            for i in range(len(draft) + 1):
                choice = int(torch.argmax(logits[0, prompt_len - 1 + i]))
                out.append(choice)
                if i == len(draft) or choice != int(draft[i]):
                    break
            return torch.tensor(out)
    """},
    "ch12_speculative_accept_test": {"numpy float64, division and searchsorted": SPECULATIVE_REFERENCE},
    "ch12_block_manager_test": {"a heap of free blocks and a dict of counts": BLOCK_MANAGER_REFERENCE},
    "ch12_schedule_step_test": {"a deque, victims popped from its right end": SCHEDULER_REFERENCE},
    "ch12_quantize_int4_test": {"numpy float64, one group at a time": INT4_REFERENCE},
    "ch12_flash_attention_test": {"one key at a time in float64": """
        def flash_attention(q, k, v, block_size, causal=False):
            qd, kd, vd = q.double(), k.double(), v.double()
            lq, lk = q.shape[-2], k.shape[-2]
            m = torch.full(q.shape[:-1], -math.inf, dtype=torch.float64)
            den = torch.zeros(q.shape[:-1], dtype=torch.float64)
            acc = torch.zeros(*q.shape[:-1], v.shape[-1], dtype=torch.float64)
            last = torch.arange(lq, dtype=torch.float64) + (lk - lq)
            for j in range(lk):
                s = (qd * kd[..., j:j + 1, :]).sum(-1) / math.sqrt(q.shape[-1])
                if causal:
                    s = torch.where(last >= j, s, torch.tensor(-math.inf, dtype=torch.float64))
                new_m = torch.maximum(m, s)
                keep = torch.where(torch.isinf(new_m), torch.zeros_like(m), torch.exp(m - new_m))
                w = torch.where(torch.isinf(s), torch.zeros_like(s), torch.exp(s - new_m))
                den = den * keep + w
                acc = acc * keep[..., None] + w[..., None] * vd[..., j:j + 1, :]
                m = new_m
            return (acc / den[..., None]).float(), (m + den.log()).float()
    """},
    "ch12_roofline_test": {"exact fractions, comparing the two times": ROOFLINE_REFERENCE},
}


# Oracles: the library or trusted reference each exercise is compared with (used by the test suite).
ORACLES = {
    "ch12_verify_greedy_test": oracle_verify_greedy,
    "ch12_speculative_accept_test": oracle_from_source(SPECULATIVE_REFERENCE, "speculative_accept"),
    "ch12_block_manager_test": oracle_from_source(BLOCK_MANAGER_REFERENCE, "BlockManager"),
    "ch12_schedule_step_test": oracle_from_source(SCHEDULER_REFERENCE, "schedule_step"),
    "ch12_quantize_int4_test": oracle_from_source(INT4_REFERENCE, "quantize_int4", "dequantize_int4"),
    "ch12_flash_attention_test": oracle_flash,
    "ch12_roofline_test": oracle_from_source(ROOFLINE_REFERENCE, "matmul_roofline", "decode_attention_roofline"),
}

CHAPTER = Chapter("ch12_inference", "ch12_exercises.ipynb", EXERCISES, rules=RULES, alternatives=ALTERNATIVES, oracles=ORACLES)

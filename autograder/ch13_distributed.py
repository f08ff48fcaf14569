"""Trusted spec of Chapter 13's graded cells (solutions/ch13_distributed/ch13_exercises.ipynb).

The exercises simulate the ranks of a distributed job inside one process (a list with one tensor per
rank), so that grading needs no process group; the reference notebook runs the same algorithms on
real ``torch.distributed`` processes. Probes run inside the sandbox next to the student's code and are
self-contained (imports inside). Oracles run in the trusted test process: the elementwise sum and the
2(N-1)/N ring formula (exercise 1), ``nn.Linear`` with autograd on the full layer (2), the ZeRO paper's
per-rank formulas (3), one big batch's gradient by autograd (4), and trusted reference implementations
of the 1F1B schedule (5) and of activation checkpointing (6).

``RULES`` at the bottom quotes each rule the instructions state, names the hidden cases that break when
the rule is broken and maps each mutant that breaks it to a word its feedback must contain.
"""
from llmprep.grading.spec import Case, Chapter, Exercise, Hint, Rule, allclose, mutate, whole


# ============================================================================ 1 ring all-reduce

def probe_ring(ns, params):
    import torch

    fn = ns["ring_all_reduce"]
    g = torch.Generator().manual_seed(params["seed"])
    dtype = getattr(torch, params["dtype"])
    n, shape = params["ranks"], params["shape"]
    if dtype.is_floating_point:
        tensors = [torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype) for _ in range(n)]
    else:
        tensors = [torch.randint(-10 ** 12, 10 ** 12, shape, generator=g, dtype=dtype) for _ in range(n)]
    before = [t.clone() for t in tensors]
    results, bytes_sent = fn(tensors)
    results = [torch.as_tensor(r) for r in results]
    identical = all(torch.equal(results[0], r) for r in results)
    untouched = all(torch.equal(a, b) for a, b in zip(before, tensors))
    return {"results": torch.stack(results), "bytes_sent": torch.as_tensor([int(b) for b in bytes_sent]),
            "ranks_identical": bool(identical), "inputs_untouched": bool(untouched)}


def oracle_ring():
    import torch

    def ring_all_reduce(tensors):
        """The elementwise sum on every rank; bytes from the ring's chunk schedule (2(N-1)/N of the
        tensor when its size is a multiple of N)."""
        n = len(tensors)
        total = torch.stack(tensors).sum(0)
        sizes = [c.numel() for c in torch.tensor_split(torch.empty(tensors[0].numel()), n)]
        item = tensors[0].element_size()
        sent = [(2 * tensors[0].numel() - sizes[(r + 1) % n] - sizes[(r + 2) % n]) * item if n > 1 else 0
                for r in range(n)]
        if tensors[0].numel() % n == 0:
            assert all(b == 2 * (n - 1) * tensors[0].numel() * item // n for b in sent)
        return [total.clone() for _ in range(n)], sent

    return {"ring_all_reduce": ring_all_reduce}


# ============================================================================ 2 tensor-parallel MLP

def probe_tp_mlp(ns, params):
    import torch

    fn = ns["tp_mlp"]
    g = torch.Generator().manual_seed(params["seed"])
    t, d_in, hidden, d_out, n = params["tokens"], params["d_in"], params["hidden"], params["d_out"], params["ranks"]
    x = torch.randn(t, d_in, generator=g)
    w1 = torch.randn(hidden, d_in, generator=g) / d_in ** 0.5
    b1 = torch.randn(hidden, generator=g) * 0.5
    w2 = torch.randn(d_out, hidden, generator=g) / hidden ** 0.5
    b2 = torch.randn(d_out, generator=g) + 2.0
    grad_out = torch.randn(t, d_out, generator=g)
    try:
        with torch.no_grad():
            res = fn(x, w1, b1, w2, b2, grad_out, n)
    except ValueError:
        return {"raised": True}
    out = {"raised": False, "out": res["out"], "partials": torch.stack([torch.as_tensor(p) for p in res["partials"]])}
    for key in ("grad_x", "grad_w1", "grad_b1", "grad_w2", "grad_b2"):
        out[key] = res[key]
    return out


def oracle_tp_mlp():
    import torch

    def tp_mlp(x, w1, b1, w2, b2, grad_out, world_size):
        """nn.Linear twice with autograd on the full layer; the partial outputs from the definition."""
        hidden = w1.shape[0]
        if hidden % world_size:
            raise ValueError("hidden not divisible")
        k = hidden // world_size
        with torch.enable_grad():
            fc1, fc2 = torch.nn.Linear(x.shape[1], hidden), torch.nn.Linear(hidden, w2.shape[0])
            with torch.no_grad():
                fc1.weight.copy_(w1), fc1.bias.copy_(b1), fc2.weight.copy_(w2), fc2.bias.copy_(b2)
            xg = x.clone().requires_grad_(True)
            y = fc2(torch.relu(fc1(xg)))
            y.backward(grad_out)
        partials = [torch.relu(x @ w1[r * k:(r + 1) * k].T + b1[r * k:(r + 1) * k]) @ w2[:, r * k:(r + 1) * k].T
                    for r in range(world_size)]
        return {"out": y.detach(), "partials": partials, "grad_x": xg.grad, "grad_w1": fc1.weight.grad,
                "grad_b1": fc1.bias.grad, "grad_w2": fc2.weight.grad, "grad_b2": fc2.bias.grad}

    return {"tp_mlp": tp_mlp}


# ============================================================================ 3 ZeRO memory per rank

def probe_zero(ns, params):
    import torch

    fn = ns["zero_memory"]
    kwargs = {k: params[k] for k in ("param_bytes", "grad_bytes", "optimizer_bytes") if k in params}
    rows = []
    try:
        for stage in params["stages"]:
            res = fn(params["num_params"], params["world_size"], stage, **kwargs)
            rows.append([float(res[k]) for k in ("params", "grads", "optimizer", "total", "comm")])
    except ValueError:
        return {"raised": True}
    table = torch.tensor(rows, dtype=torch.float64)
    return {"raised": False, "params": table[:, 0], "grads": table[:, 1], "optimizer": table[:, 2],
            "total": table[:, 3], "comm": table[:, 4]}


def oracle_zero():
    def zero_memory(num_params, world_size, stage, param_bytes=2, grad_bytes=2, optimizer_bytes=12):
        """Rajbhandari et al. 2020, section 5 (memory, with K = optimizer_bytes) and section 7
        (communication: 2 Psi for stages 0-2, 3 Psi for stage 3), with the ring's (N-1)/N factor."""
        if stage not in (0, 1, 2, 3) or world_size < 1:
            raise ValueError("bad stage or world size")
        psi, nd = num_params, world_size
        mem = {0: (param_bytes * psi, grad_bytes * psi, optimizer_bytes * psi),
               1: (param_bytes * psi, grad_bytes * psi, optimizer_bytes * psi / nd),
               2: (param_bytes * psi, grad_bytes * psi / nd, optimizer_bytes * psi / nd),
               3: (param_bytes * psi / nd, grad_bytes * psi / nd, optimizer_bytes * psi / nd)}[stage]
        volume = {0: 2 * grad_bytes, 1: grad_bytes + param_bytes, 2: grad_bytes + param_bytes,
                  3: grad_bytes + 2 * param_bytes}[stage]
        return {"params": mem[0], "grads": mem[1], "optimizer": mem[2], "total": sum(mem),
                "comm": volume * psi * (nd - 1) / nd}

    return {"zero_memory": zero_memory}


# ============================================================================ 4 DP + gradient accumulation

def probe_dp_accum(ns, params):
    import torch

    fn = ns["dp_accumulated_grad"]
    g = torch.Generator().manual_seed(params["seed"])
    c, d = params["classes"], params["dim"]
    weight = torch.randn(c, d, generator=g)
    rank_batches = []
    for shapes in params["ranks"]:
        batches = []
        for b, t, lengths in shapes:
            x = torch.randn(b, t, d, generator=g) * 2
            y = torch.randint(0, c, (b, t), generator=g)          # labels under padding are arbitrary classes
            mask = torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]
            batches.append((x, y, mask))
        rank_batches.append(batches)
    before = [weight.clone()] + [v.clone() for batches in rank_batches for mb in batches for v in mb]
    synced, local = fn(weight, rank_batches)
    after = [weight] + [v for batches in rank_batches for mb in batches for v in mb]
    untouched = all(torch.equal(a, b) for a, b in zip(before, after)) and not weight.requires_grad \
        and weight.grad is None
    return {"synced_grad": torch.as_tensor(synced).detach(),
            "local_grads": torch.stack([torch.as_tensor(t).detach() for t in local]),
            "inputs_untouched": bool(untouched)}


def oracle_dp_accum():
    import torch
    import torch.nn.functional as F

    def dp_accumulated_grad(weight, rank_batches):
        """The gradient of one big batch (every micro-batch of every rank, padded to one length) by
        autograd; each rank's local gradient is N times its share of the global token mean."""
        n = len(rank_batches)
        t_max = max(x.shape[1] for batches in rank_batches for x, _, _ in batches)

        def pad(v, t):
            return F.pad(v, (0, 0, 0, t - v.shape[1])) if v.dim() == 3 else F.pad(v, (0, t - v.shape[1]))

        def token_sum(w, batches):
            xs = torch.cat([pad(x, t_max) for x, _, _ in batches])
            ys = torch.cat([pad(y, t_max) for _, y, _ in batches])
            ms = torch.cat([pad(m, t_max) for _, _, m in batches]).reshape(-1)
            ce = F.cross_entropy((xs @ w.T).reshape(-1, w.shape[0]), ys.reshape(-1), reduction="none")
            return (ce * ms).sum(), ms.sum()

        with torch.enable_grad():
            w = weight.clone().requires_grad_(True)
            everything = [mb for batches in rank_batches for mb in batches]
            loss, total = token_sum(w, everything)
            (big,) = torch.autograd.grad(loss / total, w)
            local = []
            for batches in rank_batches:
                part = token_sum(w, batches)[0] if batches else w.sum() * 0
                local.append(torch.autograd.grad(part * n / total, w)[0])
        return big, local

    return {"dp_accumulated_grad": dp_accumulated_grad}


# ============================================================================ 5 1F1B schedule

def probe_1f1b(ns, params):
    import torch

    fn = ns["one_f_one_b"]
    kwargs = {k: params[k] for k in ("t_forward", "t_backward") if k in params}
    try:
        events, bubble, in_flight = fn(params["stages"], params["microbatches"], **kwargs)
    except ValueError:
        return {"raised": True}
    kinds = {"F": 0, "B": 1}
    table = torch.tensor([[int(t), int(s), int(i), kinds.get(str(k), -1)] for t, s, i, k in events],
                         dtype=torch.int64).reshape(-1, 4)
    # the bubble of the schedule the events describe, measured on them: idle time / (stages x makespan)
    tf, tb = params.get("t_forward", 1), params.get("t_backward", 2)
    spans = [(float(t), float(t) + (tf if str(k) == "F" else tb)) for t, _, _, k in events]
    makespan = max((b for _, b in spans), default=0.0)
    busy = sum(b - a for a, b in spans)
    measured = 1 - busy / (params["stages"] * makespan) if makespan > 0 else float("nan")
    return {"raised": False, "events": table,
            "bubble_matches_events": bool(abs(float(bubble) - measured) <= 1e-9),
            "in_flight": torch.as_tensor([int(v) for v in in_flight])}


def reference_schedule(p, m, t_forward=1, t_backward=2, gpipe=False):
    """Trusted reference: each stage's op order, each op as early as its stage and its dependency allow
    (event-driven: the next op to start is the earliest one that can)."""
    import heapq

    if p < 1 or m < 1:
        raise ValueError("need at least one stage and one micro-batch")
    orders = []
    for s in range(p):
        if gpipe:
            orders.append([("F", i) for i in range(m)] + [("B", i) for i in range(m)])
            continue
        w = min(p - s - 1, m)
        orders.append([("F", i) for i in range(w)] + [op for i in range(m - w) for op in (("F", w + i), ("B", i))]
                      + [("B", i) for i in range(m - w, m)])
    finish, free, pos, events = {}, [0] * p, [0] * p, []
    ready = []

    def offer(s):
        if pos[s] < len(orders[s]):
            kind, i = orders[s][pos[s]]
            dep = ("F", s - 1, i) if kind == "F" and s > 0 else ("B", s + 1, i) if kind == "B" and s < p - 1 else None
            if dep is None or dep in finish:
                heapq.heappush(ready, (max(free[s], finish.get(dep, 0)), s, kind, i))

    for s in range(p):
        offer(s)
    while ready:
        start, s, kind, i = heapq.heappop(ready)
        end = start + (t_forward if kind == "F" else t_backward)
        finish[(kind, s, i)] = free[s] = end
        events.append((start, s, i, kind))
        pos[s] += 1
        offer(s)
        for nb in (s - 1, s + 1):  # a neighbour may have been waiting for this op
            if 0 <= nb < p and not any(r[1] == nb for r in ready):
                offer(nb)
    assert len(events) == 2 * p * m
    makespan = max(free)
    live = [0] * p
    peak = [0] * p
    for _, s, _, kind in sorted(events):
        live[s] += 1 if kind == "F" else -1
        peak[s] = max(peak[s], live[s])
    return sorted(events), 1 - m * (t_forward + t_backward) / makespan, peak


def oracle_1f1b():
    def one_f_one_b(num_stages, num_microbatches, t_forward=1, t_backward=2):
        events, bubble, peak = reference_schedule(num_stages, num_microbatches, t_forward, t_backward)
        assert abs(bubble - (num_stages - 1) / (num_microbatches + num_stages - 1)) < 1e-12
        return events, bubble, peak

    return {"one_f_one_b": one_f_one_b}


# ============================================================================ 6 activation checkpointing

def probe_checkpoint(ns, params):
    import torch

    cost_fn, rule_fn = ns["checkpoint_cost"], ns["sqrt_checkpoints"]
    act, cost = list(params["act"]), list(params["cost"])
    try:
        peak, recompute = cost_fn(act, cost, list(params["starts"]))
    except ValueError:
        return {"raised": True}
    starts = torch.as_tensor([int(s) for s in rule_fn(params["n_rule"])], dtype=torch.int64)
    return {"raised": False, "peak": float(peak), "recompute": float(recompute), "sqrt_starts": starts}


def oracle_checkpoint():
    import math

    def checkpoint_cost(act, cost, starts):
        """A step-by-step replay of memory during the forward and backward passes."""
        n = len(act)
        if any(not 0 <= s < n for s in starts):
            raise ValueError("start out of range")
        b = sorted(set(starts) | {0}) + [n]
        segs = list(zip(b[:-1], b[1:]))
        live, peak = 0.0, 0.0
        kept = []
        for j, (lo, hi) in enumerate(segs):                       # forward
            if j < len(segs) - 1:
                live += act[lo]
                kept.append(act[lo])
            else:
                live += sum(act[lo:hi])
            peak = max(peak, live)
        live -= sum(act[segs[-1][0]:segs[-1][1]])                 # backward of the last segment frees it
        recompute = 0.0
        for j in range(len(segs) - 2, -1, -1):
            lo, hi = segs[j]
            recompute += sum(cost[lo:hi])
            peak = max(peak, live + sum(act[lo + 1:hi]))
            live -= kept[j]
        return peak, recompute

    def sqrt_checkpoints(n):
        k = math.ceil(math.sqrt(n))
        while (k - 1) ** 2 >= n:
            k -= 1
        while k * k < n:
            k += 1
        return list(range(0, n, k))

    return {"checkpoint_cost": checkpoint_cost, "sqrt_checkpoints": sqrt_checkpoints}


# ============================================================================ the spec

# Mutants are edits of the solution's own functions (read from the solution notebook); snippets used twice:
OUT = "out = torch.stack(partials).sum(0) + b2"
BUBBLE = "bubble = 1 - m * (t_forward + t_backward) / makespan"

EXERCISES = [
    Exercise(
        grade_id="ch13_ring_test", functions=("ring_all_reduce",), points=3,
        cases=(
            Case("4 ranks, float32", {"seed": 0, "ranks": 4, "shape": [6, 8], "dtype": "float32"}),
            Case("3 ranks, int64 (exact)", {"seed": 1, "ranks": 3, "shape": [9], "dtype": "int64"},
                 edge="an integer dtype (8-byte elements, exact sums)"),
            Case("2 ranks, float64 matrix", {"seed": 2, "ranks": 2, "shape": [4, 5], "dtype": "float64"},
                 edge="N = 2, the smallest ring that sends anything"),
            Case("4 ranks, 10 elements (uneven chunks)", {"seed": 3, "ranks": 4, "shape": [10], "dtype": "float32"},
                 edge="size not divisible by N: tensor_split's chunks differ in size"),
            Case("8 ranks", {"seed": 4, "ranks": 8, "shape": [2, 3, 8], "dtype": "float32"}),
            Case("5 ranks, 3 elements (empty chunks)", {"seed": 5, "ranks": 5, "shape": [3], "dtype": "float64"},
                 edge="fewer elements than ranks: some chunks are empty"),
            Case("1 rank", {"seed": 6, "ranks": 1, "shape": [7], "dtype": "float32"},
                 edge="N = 1: no messages at all, the result is the input"),
        ),
        probe=probe_ring,
        judge=allclose(rtol=1e-5, atol=1e-5, messages={
            "ranks_identical": ("the ranks' results are not bit-for-bit identical: each chunk must be reduced once "
                                "and then copied to every rank", "")}),
        mutants={
            "no all-gather phase": mutate({
                "bytes_sent[r] += piece.numel() * piece.element_size()\n    for s in range(n - 1):":
                    "bytes_sent[r] += 2 * piece.numel() * piece.element_size()\n    for s in range(0):"},
                hint=Hint("没有 all-gather 阶段：reduce-scatter 之后每个 rank 只持有一块完整的和。",
                    "There is no all-gather phase: after the reduce-scatter each rank holds only one chunk of the full sum.")),
            "bytes counted in elements": mutate("piece.numel() * piece.element_size()", "piece.numel()", count=2,
                hint=Hint("发送量按元素个数计，而不是字节数（还要乘 element_size）。",
                    "The traffic is counted in elements, not bytes (each element has element_size() bytes).")),
            "chunks of ceil(size / N) elements (torch.chunk)": mutate(
                "chunks = [torch.tensor_split(b, n) for b in buffers]",
                "step = -(-buffers[0].numel() // n)\n"
                "    chunks = [[b[i * step:(i + 1) * step] for i in range(n)] for b in buffers]",
                hint=Hint("按 ceil(size/N) 切块（torch.chunk 的方式），块的大小和 tensor_split 的规定不同。",
                    "Chunks of ceil(size / N) elements (as torch.chunk cuts) differ from the stated tensor_split chunks.")),
            "naive all-reduce: every rank sends its whole tensor to every other rank": mutate(
                "for b in buffers], bytes_sent", "for b in buffers], [(n - 1) * t.numel() * t.element_size() for t in tensors]",
                hint=Hint("朴素 all-reduce：每个 rank 把整个张量发给所有其他 rank；环形中只发给下一个 rank，每次一块。",
                    "Naive all-reduce: each rank sends its whole tensor to all others; in a ring, chunks go to one neighbour.")),
            "every rank sums the tensors in its own order": mutate(  # the ring's traffic, then each rank's own sum
                "[b.reshape(shape) for b in buffers]",
                "[sum((tensors[(r + j) % n] for j in range(1, n)), tensors[r].clone()) for r in range(n)]",
                hint=Hint("每个 rank 按自己的顺序求和，浮点舍入不同，结果在各 rank 间不再逐位相同。",
                    "Every rank sums in its own order, so rounding differs and the results are not bit-identical across ranks.")),
            "accumulates into the input tensors": mutate({
                "buffers = [t.detach().reshape(-1).clone() for t in tensors]": "buffers = [t.detach().view(-1) for t in tensors]",
                "return [b.reshape(shape) for b in buffers]": "return [b.reshape(shape).clone() for b in buffers]"},
                hint=Hint("直接在输入张量上累加（view 而非拷贝），修改了输入。",
                    "The sums accumulate into the input tensors (a view, not a copy), so the inputs are modified.")),
        },
        bans=tuple((owner, name, f"torch.distributed.{name}")
                   for owner in ("torch.distributed", "torch.distributed.distributed_c10d")
                   for name in ("all_reduce", "reduce_scatter", "all_gather")),
    ),
    Exercise(
        grade_id="ch13_tp_mlp_test", functions=("tp_mlp",), points=3,
        cases=(
            Case("2 ranks", {"seed": 0, "tokens": 5, "d_in": 6, "hidden": 8, "d_out": 4, "ranks": 2},
                 edge="world_size = 2, the smallest that splits the layer"),
            Case("4 ranks, more tokens", {"seed": 1, "tokens": 12, "d_in": 8, "hidden": 16, "d_out": 6, "ranks": 4}),
            Case("3 ranks, hidden 12", {"seed": 2, "tokens": 7, "d_in": 5, "hidden": 12, "d_out": 3, "ranks": 3}),
            Case("1 rank (no parallelism)", {"seed": 3, "tokens": 4, "d_in": 3, "hidden": 6, "d_out": 2, "ranks": 1},
                 edge="world_size = 1: one shard is the whole layer"),
            Case("hidden 6 on 4 ranks", {"seed": 4, "tokens": 3, "d_in": 4, "hidden": 6, "d_out": 2, "ranks": 4},
                 edge="hidden not divisible by world_size"),
        ),
        probe=probe_tp_mlp, judge=allclose(rtol=1e-4, atol=1e-5),
        mutants={
            "strided shards (rank r holds rows r, r+N, ...)": mutate(
                "rows = slice(r * k, (r + 1) * k)", "rows = torch.arange(r, hidden, world_size)",
                hint=Hint("分片是跨步的（rank r 拿第 r、r+N… 行）；Megatron 的分片是连续的块。",
                    "The shards are strided (rows r, r + N, ...); Megatron gives each rank a contiguous block.")),
            "b2 added on every rank": mutate(OUT, "out = torch.stack([p + b2 for p in partials]).sum(0)",
                hint=Hint("每个 rank 都加了 b2，求和后 b2 被加了 N 次；应在求和之后只加一次。",
                    "b2 is added on every rank, so after the sum it counts N times; it is added once, after the sum.")),
            "b2 never added": mutate(OUT, "out = torch.stack(partials).sum(0)",
                hint=Hint("从没加上 b2。", "b2 is never added to the output.")),
            "grad_x from rank 0 only (the backward all-reduce is missing)": mutate(
                "grad_x = grad_x + grad_pre @ w1_r", "grad_x = grad_x + (grad_pre @ w1_r if r == 0 else 0)",
                hint=Hint("grad_x 只取了 rank 0 的部分，缺少反向的 all-reduce（对各 rank 求和）。",
                    "grad_x comes from rank 0 only; the backward all-reduce that sums the ranks' parts is missing.")),
            "grad_b2 added up over the ranks": mutate('"grad_b2": grad_out.sum(0)', '"grad_b2": world_size * grad_out.sum(0)',
                hint=Hint("grad_b2 在各 rank 间又累加了一遍；b2 是复制的而不是分片的，只算一次。",
                    "grad_b2 is added up over the ranks; b2 is replicated, not sharded, so it counts once.")),
            "ReLU's derivative left out": mutate("grad_pre = grad_h * (pre > 0)", "grad_pre = grad_h",
                hint=Hint("反向时漏掉了 ReLU 的导数（输入 ≤ 0 处梯度为 0）。",
                    "The backward leaves out ReLU's derivative (zero where its input is not positive).")),
            "uneven shards instead of a ValueError": mutate({
                "if hidden % world_size:\n        raise": "if False:\n        raise",
                "rows = slice(r * k, (r + 1) * k)": "rows = torch.tensor_split(torch.arange(hidden), world_size)[r]"},
                hint=Hint("hidden 不能被 world_size 整除时切了不等长的分片，而不是抛 ValueError。",
                    "When hidden is not divisible by world_size it cuts uneven shards instead of raising ValueError.")),
            "autograd instead of the backward by hand": whole("""
                def tp_mlp(x, w1, b1, w2, b2, grad_out, world_size):
                    if w1.shape[0] % world_size:
                        raise ValueError("not divisible")
                    k = w1.shape[0] // world_size
                    with torch.enable_grad():
                        leaves = [v.clone().requires_grad_(True) for v in (x, w1, b1, w2, b2)]
                        xx, ww1, bb1, ww2, bb2 = leaves
                        parts = [torch.relu(xx @ ww1[r * k:(r + 1) * k].T + bb1[r * k:(r + 1) * k]) @ ww2[:, r * k:(r + 1) * k].T
                                 for r in range(world_size)]
                        out = sum(parts) + bb2
                        out.backward(grad_out)
                    return {"out": out.detach(), "partials": [p.detach() for p in parts], "grad_x": xx.grad,
                            "grad_w1": ww1.grad, "grad_b1": bb1.grad, "grad_w2": ww2.grad, "grad_b2": bb2.grad}
            """,
                hint=Hint("用了 autograd 求梯度；这里要求手写反向传播（评分时 autograd 被禁用）。",
                    "It relies on autograd; the exercise asks for the backward by hand and the grader blocks autograd.")),
        },
        bans=(("torch.Tensor", "backward", "Tensor.backward (autograd)"),
              ("torch.autograd", "backward", "torch.autograd.backward"),
              ("torch.autograd", "grad", "torch.autograd.grad")),
    ),
    Exercise(
        grade_id="ch13_zero_test", functions=("zero_memory",), points=2,
        cases=(
            Case("7.5B parameters on 64 GPUs (the paper's example)",
                 {"num_params": 7_500_000_000, "world_size": 64, "stages": [0, 1, 2, 3]}),
            Case("fp32 Adam (4 + 4 + 8 bytes), 8 ranks",
                 {"num_params": 1_000_000_000, "world_size": 8, "stages": [0, 1, 2, 3], "param_bytes": 4,
                  "grad_bytes": 4, "optimizer_bytes": 8}),
            Case("size not divisible by the world size", {"num_params": 1_000_003, "world_size": 6, "stages": [1, 2, 3]},
                 edge="num_params not a multiple of N: shards are not whole numbers"),
            Case("1 GPU", {"num_params": 125_000_000, "world_size": 1, "stages": [0, 3]},
                 edge="N = 1: (N - 1) / N = 0, nothing to communicate, nothing partitioned"),
            Case("70B on 512 GPUs, bf16 master weights", {"num_params": 70_000_000_000, "world_size": 512,
                                                            "stages": [2, 3], "optimizer_bytes": 10}),
            Case("unknown stage 4", {"num_params": 1000, "world_size": 4, "stages": [4]}, edge="stage just above 3"),
            Case("world size 0", {"num_params": 1000, "world_size": 0, "stages": [1]},
                 edge="world_size just below 1"),
            Case("bf16 parameters, fp32 gradients (gradient bytes != parameter bytes)",
                 {"num_params": 3_000_000_000, "world_size": 16, "stages": [0, 1, 2, 3], "param_bytes": 2,
                  "grad_bytes": 4, "optimizer_bytes": 12},
                 edge="unequal byte sizes: communication priced in gradient bytes differs from parameter bytes"),
        ),
        probe=probe_zero, judge=allclose(rtol=1e-9, atol=1e-6),
        mutants={
            "stage 2 partitions the parameters instead of the gradients": mutate({
                "psi * param_bytes / (n if stage >= 3": "psi * param_bytes / (n if stage >= 2",
                "psi * grad_bytes / (n if stage >= 2": "psi * grad_bytes / (n if stage >= 3"},
                hint=Hint("把阶段记错了：stage 2 切分的是梯度，参数到 stage 3 才切分。",
                    "The stages are mixed up: stage 2 partitions the gradients; parameters are partitioned only in stage 3.")),
            "stage 1 partitions the gradients too": mutate("psi * grad_bytes / (n if stage >= 2",
                                                           "psi * grad_bytes / (n if stage >= 1",
                hint=Hint("stage 1 也切分了梯度；它只切分优化器状态。",
                    "Stage 1 partitions the gradients too; it partitions only the optimizer states.")),
            "hard-coded 2 + 2 + 12 bytes": mutate({
                "psi * param_bytes /": "psi * 2 /", "psi * grad_bytes /": "psi * 2 /", "psi * optimizer_bytes /": "psi * 12 /",
                "2 * ring * grad_bytes": "ring * 4", "ring * (grad_bytes + param_bytes)": "ring * 4",
                "ring * (grad_bytes + 2 * param_bytes)": "ring * 6"},
                hint=Hint("字节数写死为 2+2+12，忽略了传入的 param_bytes、grad_bytes、optimizer_bytes。",
                    "The byte sizes are hard-coded as 2 + 2 + 12; the given param, grad and optimizer byte sizes are ignored.")),
            "integer division of the shards": mutate({"param_bytes / (n": "param_bytes // (n",
                                                      "grad_bytes / (n": "grad_bytes // (n",
                                                      "optimizer_bytes / (n": "optimizer_bytes // (n"},
                hint=Hint("分片用了整除，丢掉了余数；应是精确的浮点除法。",
                    "The shards use integer division and drop the remainder; the division must be exact (a float).")),
            "stage 3 communicates as much as plain data parallelism": mutate(
                "comm = ring * (grad_bytes + 2 * param_bytes)", "comm = ring * (grad_bytes + param_bytes)",
                hint=Hint("stage 3 的通信量算得和普通数据并行一样；它要在前向和反向各 gather 一次参数。",
                    "Stage 3's traffic equals plain data parallelism; it gathers the parameters twice (forward, backward).")),
            "communication priced in parameter bytes instead of gradient bytes": mutate({
                "2 * ring * grad_bytes": "2 * ring * param_bytes",
                "ring * (grad_bytes + param_bytes)": "ring * (param_bytes + param_bytes)",
                "ring * (grad_bytes + 2 * param_bytes)": "ring * (param_bytes + 2 * param_bytes)"},
                hint=Hint("梯度通信按参数的字节数计价，而不是梯度的字节数。",
                    "Gradient traffic is priced in parameter bytes instead of gradient bytes.")),
            "communication without the (N - 1) / N factor": mutate("ring = psi * (n - 1) / n", "ring = psi",
                hint=Hint("通信量漏了环形的 (N−1)/N 系数。", "The communication leaves out the ring's factor (N - 1) / N.")),
            "no ValueError for a bad stage or world size": mutate({
                "if stage not in (0, 1, 2, 3):": "if False:", "if world_size < 1:": "if False:",
                "n, psi = world_size, num_params": "n, psi = max(world_size, 1), num_params"},
                hint=Hint("stage 不在 0–3 或 world_size 小于 1 时没有抛 ValueError。",
                    "No ValueError for a stage outside 0..3 or a world_size below 1.")),
        },
    ),
    Exercise(
        grade_id="ch13_dp_accum_test", functions=("dp_accumulated_grad",), points=3,
        cases=(
            Case("2 ranks, unequal micro-batches", {"seed": 0, "classes": 4, "dim": 5,
                                                    "ranks": [[[2, 4, [4, 2]], [3, 6, [6, 1, 3]]],
                                                              [[1, 5, [5]], [4, 3, [3, 3, 2, 1]]]]}),
            Case("3 ranks, different numbers of micro-batches", {"seed": 1, "classes": 3, "dim": 4,
                                                                  "ranks": [[[2, 3, [3, 3]]],
                                                                            [[1, 7, [2]], [2, 2, [2, 1]], [1, 4, [4]]],
                                                                            [[3, 5, [5, 1, 4]], [2, 5, [3, 5]]]]}),
            Case("a micro-batch that is all padding", {"seed": 2, "classes": 5, "dim": 3,
                                                       "ranks": [[[2, 4, [0, 0]], [2, 4, [4, 3]]],
                                                                 [[3, 2, [2, 2, 1]]]]},
                 edge="a micro-batch with no real token (mask all False)"),
            Case("equal micro-batches, no padding", {"seed": 3, "classes": 4, "dim": 6,
                                                     "ranks": [[[2, 3, [3, 3]], [2, 3, [3, 3]]],
                                                               [[2, 3, [3, 3]], [2, 3, [3, 3]]]]},
                 edge="no padding and equal token counts: every averaging order agrees"),
            Case("4 ranks, one micro-batch each", {"seed": 4, "classes": 6, "dim": 4,
                                                   "ranks": [[[1, 8, [8]]], [[2, 3, [1, 3]]], [[3, 2, [2, 2, 2]]],
                                                             [[1, 6, [2]]]]},
                 edge="one micro-batch per rank: no accumulation at all"),
        ),
        probe=probe_dp_accum, judge=allclose(rtol=1e-4, atol=1e-6, messages={
            "inputs_untouched": "your function changed its inputs (a value, or the weight's requires_grad or .grad)"}),
        mutants={
            "each micro-batch's mean, averaged over the accumulation steps": mutate(
                "* n / total", "/ mask.sum().clamp(min=1) / len(batches)",
                hint=Hint("每个 micro-batch 取均值再除以累积步数：只有各 micro-batch 真实 token 数相同时才对。",
                    "Micro-batch means over the step count: right only when all micro-batches hold as many real tokens.")),
            "each rank divides by its own number of tokens": mutate(
                "* n / total", "/ sum(int(m.sum()) for _, _, m in batches)",
                hint=Hint("每个 rank 用自己的 token 数做分母；应除以所有 rank 的真实 token 总数。",
                    "Each rank divides by its own token count instead of the real tokens of all ranks together.")),
            "padding tokens counted in the loss": mutate({"total = sum(int(mask.sum())": "total = sum(mask.numel()",
                                                          "(per_token * mask.reshape(-1)).sum()": "per_token.sum()"},
                hint=Hint("padding token 也计入了损失和分母。",
                    "Padding tokens are counted in the loss and in the token count.")),
            "forgets that DDP divides the sum by the world size": mutate("* n / total", "/ total",
                hint=Hint("忘了 DDP 的 all-reduce 会再除以 world size，同步后的梯度小了 N 倍。",
                    "It forgets that DDP's all-reduce divides by the world size, so the synced gradient is N times too small.")),
            "ranks summed instead of averaged": mutate("torch.stack(local).mean(0)", "torch.stack(local).sum(0)",
                hint=Hint("各 rank 的梯度被求和而不是平均；DDP 的 all-reduce 取的是平均。",
                    "The ranks' gradients are summed instead of averaged; DDP's all-reduce averages them.")),
            "turns on requires_grad of the input weight": mutate(
                "w = weight.detach().clone().requires_grad_(True)", "w = weight.requires_grad_(True)\n        w.grad = None",
                hint=Hint("打开了输入 weight 的 requires_grad，修改了输入；应在拷贝上求梯度。",
                    "It turns on requires_grad of the input weight, modifying the input, instead of using a fresh copy.")),
        },
    ),
    Exercise(
        grade_id="ch13_1f1b_test", functions=("one_f_one_b",), points=3,
        cases=(
            Case("2 stages, 4 micro-batches", {"stages": 2, "microbatches": 4}),
            Case("4 stages, 8 micro-batches", {"stages": 4, "microbatches": 8}),
            Case("4 stages, 2 micro-batches (fewer than stages)", {"stages": 4, "microbatches": 2},
                 edge="m < p - 1: the warm-up min(p - s - 1, m) is capped by m"),
            Case("3 stages, equal forward and backward time", {"stages": 3, "microbatches": 5, "t_forward": 1,
                                                               "t_backward": 1}, edge="t_forward = t_backward"),
            Case("3 stages, forward 2, backward 3", {"stages": 3, "microbatches": 4, "t_forward": 2, "t_backward": 3}),
            Case("1 stage", {"stages": 1, "microbatches": 3}, edge="p = 1: no pipeline, no warm-up, no bubble"),
            Case("no micro-batches", {"stages": 2, "microbatches": 0}, edge="num_microbatches = 0, just below 1"),
        ),
        probe=probe_1f1b, judge=allclose(rtol=1e-6, atol=1e-9, messages={
            "bubble_matches_events": ("your bubble is not the idle fraction of the schedule in your events "
                                      "(idle time / (num_stages x makespan), measured on them)", "")}),
        mutants={
            "GPipe order (all forwards, then all backwards)": mutate("warmup = min(p - s - 1, m)", "warmup = m",
                hint=Hint("用了 GPipe 的顺序（先全部前向再全部反向），不是 1F1B 的交替。",
                    "This is GPipe's order (all forwards, then all backwards), not 1F1B's alternation.")),
            "a warm-up of p - s forwards (one too many)": mutate("warmup = min(p - s - 1, m)", "warmup = min(p - s, m)",
                hint=Hint("warm-up 多做了一个前向（p − s 个而不是 p − s − 1 个）。",
                    "The warm-up runs one forward too many (p - s instead of p - s - 1).")),
            "backward takes as long as forward": mutate('(t_forward if kind == "F" else t_backward)', "t_forward",
                hint=Hint("反向的耗时用了 t_forward，t_backward 被忽略。",
                    "The backward takes t_forward; t_backward is ignored.")),
            "events listed stage by stage": mutate("key=lambda e: (e[0], e[1])", "key=lambda e: (e[1], e[0])",
                hint=Hint("事件按 stage 排列；应先按开始时间排序，再按 stage。",
                    "The events are listed stage by stage; they must be sorted by start time, then by stage.")),
            "bubble as (p - 1) / m": mutate(BUBBLE, "bubble = (p - 1) / m",
                hint=Hint("bubble 直接套了 (p−1)/m 公式，而不是在自己的事件上测量空闲时间。",
                    "The bubble is a textbook formula, not the idle time measured on the returned events.")),
            "bubble measured with the forward time for both passes": mutate(
                BUBBLE, "bubble = 1 - m * 2 * t_forward / makespan",
                hint=Hint("测 bubble 时前向和反向都按 t_forward 计时。",
                    "The bubble is measured with the forward time for both passes.")),
            "in-flight micro-batches counted as the warm-up length": mutate(
                "in_flight.append(peak)", "in_flight.append(min(p - len(in_flight) - 1, m))",
                hint=Hint("in_flight 用 warm-up 长度代替，而不是从调度中数出同时在途的最大 micro-batch 数。",
                    "in_flight is taken as the warm-up length instead of counted from the schedule.")),
            "no ValueError without micro-batches": mutate({"if p < 1 or m < 1:": "if p < 1:",
                                                           BUBBLE: BUBBLE.replace("/ makespan", "/ max(makespan, 1)")},
                hint=Hint("num_microbatches 小于 1 时没有抛 ValueError。", "No ValueError when num_microbatches is below 1.")),
        },
    ),
    Exercise(
        grade_id="ch13_checkpoint_test", functions=("checkpoint_cost", "sqrt_checkpoints"), points=2,
        cases=(
            Case("16 equal layers, 4 segments", {"act": [1] * 16, "cost": [1] * 16, "starts": [0, 4, 8, 12],
                                                 "n_rule": 16}),
            Case("no checkpoints", {"act": [3, 1, 4, 1, 5], "cost": [2, 7, 1, 8, 2], "starts": [0], "n_rule": 10},
                 edge="one segment only (starts = [0]): nothing recomputed; n_rule = 10, not a perfect square"),
            Case("unequal layers, a large early segment", {"act": [8, 6, 6, 1, 1, 2, 9, 1], "cost": [5, 3, 3, 1, 1, 2, 4, 1],
                                                           "starts": [0, 3, 6], "n_rule": 24},
                 edge="the peak is reached in the backward pass of the first segment, not at the end of the forward pass"),
            Case("starts unsorted, repeated, without 0", {"act": [2, 2, 5, 1, 3, 3, 2], "cost": [1, 2, 3, 4, 5, 6, 7],
                                                          "starts": [5, 2, 5], "n_rule": 2},
                 edge="starts unsorted, repeated, 0 missing; n_rule = 2, the smallest n with two segments"),
            Case("memory in MB (floats)", {"act": [0.5, 1.25, 2.0, 0.75, 1.5, 0.25], "cost": [1.5, 0.5, 2.5, 1.0, 1.0, 3.0],
                                           "starts": [0, 2, 4], "n_rule": 50},
                 edge="n_rule = 50, just above the perfect square 49 (ceil(sqrt n) = 8, floor = 7)"),
            Case("a checkpoint at every layer", {"act": [4, 3, 2, 1], "cost": [1, 1, 1, 1], "starts": [0, 1, 2, 3],
                                                 "n_rule": 1}, edge="segments of one layer each"),
            Case("a start past the last layer", {"act": [1, 1, 1], "cost": [1, 1, 1], "starts": [0, 3], "n_rule": 9},
                 edge="start = n, one past the last layer index"),
            Case("a negative start", {"act": [2, 1, 3, 1], "cost": [1, 2, 1, 2], "starts": [2, -1], "n_rule": 4},
                 edge="start = -1, just below the first layer (Python would read it as the last layer)"),
        ),
        probe=probe_checkpoint, judge=allclose(rtol=1e-9, atol=1e-9),
        mutants={
            "the last segment is recomputed too": mutate("recompute = sum(cost[:last_a])",
                                                         "recompute = sum(cost) if len(segments) > 1 else 0",
                hint=Hint("最后一段也被算进了重计算；它不做 checkpoint，保留了全部激活，从不重算。",
                    "The last segment is counted as recomputed; it is not checkpointed, keeps its activations, never reruns.")),
            "peak counted during the backward pass only": mutate("peak = sum(kept) + sum(act[last_a:last_b])",
                                                                 "peak = sum(act) if len(segments) == 1 else 0",
                hint=Hint("峰值只看了反向过程，漏了前向结束时的总量（所有保留输入 + 最后一段的激活）。",
                    "The peak is taken over the backward only; the total at the end of the forward pass is left out.")),
            "later checkpoints kept during the backward pass": mutate("sum(kept[:j + 1])", "sum(kept)",
                hint=Hint("反向重算某段时仍计入了后面各段的 checkpoint，而它们此时已经释放。",
                    "Later segments' checkpoints are still counted while a segment is recomputed; by then they are freed.")),
            "starts used as given (unsorted, repeated, 0 missing)": mutate({
                "bounds = sorted(set(starts) | {0}) + [n]": "bounds = list(starts) + [n]",
                "segments = list(zip(bounds[:-1], bounds[1:]))":
                    "segments = [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if a < b]"},
                hint=Hint("starts 原样使用：没有排序、去重，也没补上总是开始一段的第 0 层。",
                    "starts are used as given: not sorted, not deduplicated, and layer 0 is not added as a start.")),
            "segments of floor(sqrt(n)) layers": mutate("k = math.isqrt(n - 1) + 1 if n > 1 else 1",
                                                        "k = max(1, math.isqrt(n))",
                hint=Hint("每段取了 floor(√n) 层；√n 规则取的是向上取整。",
                    "Segments of floor(sqrt(n)) layers; the rule rounds the square root up.")),
            "a negative start accepted silently": mutate("if any(s < 0 or s >= n for s in starts):",
                                                         "if any(s >= n for s in starts):",
                hint=Hint("负的 start 被悄悄接受；小于 0 的下标也要抛 ValueError。",
                    "A negative start is accepted silently; it must raise ValueError too.")),
            "no ValueError for a start outside the layers": mutate({
                "if any(s < 0 or s >= n for s in starts):": "if False:",
                "sorted(set(starts) | {0})": "sorted(set(s for s in starts if s < n) | {0})"},
                hint=Hint("start 不是合法的层下标（小于 0 或 ≥ n）时没有抛 ValueError。",
                    "A start that is not a layer index (below 0 or at least n) raises no ValueError.")),
        },
    ),
]

# ============================================================================ rule table and alternatives

R = Rule
RULES = {
    "ch13_ring_test": (
        R("the elementwise sum of all inputs", ("4 ranks, float32", "3 ranks, int64 (exact)"),
          {"no all-gather phase": "results"}),
        R("split it into N chunks with `torch.tensor_split(flat, N)`",
          ("4 ranks, 10 elements (uneven chunks)", "5 ranks, 3 elements (empty chunks)"),
          {"chunks of ceil(size / N) elements (torch.chunk)": "bytes_sent"}),
        R("the number of **bytes** rank r sent in total (elements × `element_size()`)",
          ("2 ranks, float64 matrix", "3 ranks, int64 (exact)"), {"bytes counted in elements": "bytes_sent"}),
        R("rank r sends only to rank (r + 1) mod N", ("4 ranks, float32", "8 ranks", "3 ranks, int64 (exact)",
                                                      "4 ranks, 10 elements (uneven chunks)",),
          {"naive all-reduce: every rank sends its whole tensor to every other rank": "bytes_sent"}),
        R("The results are bit-for-bit identical on every rank", ("4 ranks, float32", "8 ranks",
                                                                  "4 ranks, 10 elements (uneven chunks)",
                                                                  "5 ranks, 3 elements (empty chunks)",),
          {"every rank sums the tensors in its own order": "identical"}),
        R("Do not modify the inputs.", ("4 ranks, float32", "2 ranks, float64 matrix", "1 rank"),
          {"accumulates into the input tensors": "in place"}),
    ),
    "ch13_tp_mlp_test": (
        R("(**contiguous blocks**)", ("2 ranks", "4 ranks, more tokens", "3 ranks, hidden 12"),
          {"strided shards (rank r holds rows r, r+N, ...)": "partials"}),
        R("`b2` is added once, after the sum", ("2 ranks", "4 ranks, more tokens"),
          {"b2 added on every rank": "out", "b2 never added": "out"}),
        R("is the sum over the ranks of each rank's partial input gradient", ("2 ranks", "3 ranks, hidden 12"),
          {"grad_x from rank 0 only (the backward all-reduce is missing)": "grad_x"}),
        R("is `grad_out` summed over the tokens, once", ("2 ranks", "4 ranks, more tokens"),
          {"grad_b2 added up over the ranks": "grad_b2"}),
        R("the derivative of ReLU is 1 where its input is > 0, else 0", ("2 ranks", "1 rank (no parallelism)"),
          {"ReLU's derivative left out": "grad_x"}),
        R("blocks autograd: compute the backward by hand", ("2 ranks",),
          {"autograd instead of the backward by hand": "autograd"}),
        R("Raise `ValueError` if `hidden` is not divisible by `world_size`.", ("hidden 6 on 4 ranks",),
          {"uneven shards instead of a ValueError": "ValueError"}),
    ),
    "ch13_zero_test": (
        R("stage 1 partitions the optimizer states", ("7.5B parameters on 64 GPUs (the paper's example)",
                                                      "size not divisible by the world size",
                                                      "bf16 parameters, fp32 gradients (gradient bytes != parameter bytes)",),
          {"stage 1 partitions the gradients too": "grads"}),
        R("stage 2 partitions the gradients as well", ("7.5B parameters on 64 GPUs (the paper's example)",
                                                       "70B on 512 GPUs, bf16 master weights",
                                                       "size not divisible by the world size",
                                                       "bf16 parameters, fp32 gradients (gradient bytes != parameter bytes)",),
          {"stage 2 partitions the parameters instead of the gradients": "params"}),
        R("divided by N exactly (a float: no rounding)", ("size not divisible by the world size",),
          {"integer division of the shards": "params"}),
        R("Use the byte sizes given", ("fp32 Adam (4 + 4 + 8 bytes), 8 ranks", "70B on 512 GPUs, bf16 master weights",
                                       "bf16 parameters, fp32 gradients (gradient bytes != parameter bytes)",),
          {"hard-coded 2 + 2 + 12 bytes": "params"}),
        R("stage 3 gathers the parameters twice (forward and backward)",
          ("7.5B parameters on 64 GPUs (the paper's example)", "size not divisible by the world size",
           "bf16 parameters, fp32 gradients (gradient bytes != parameter bytes)",),
          {"stage 3 communicates as much as plain data parallelism": "comm"}),
        R("counts one reduce-scatter or one all-gather of Ψ elements as Ψ·(N − 1)/N elements",
          ("7.5B parameters on 64 GPUs (the paper's example)", "1 GPU"),
          {"communication without the (N - 1) / N factor": "comm"}),
        R("**one all-reduce of the gradients**, 2·Ψ·(N − 1)/N · `grad_bytes`",
          ("bf16 parameters, fp32 gradients (gradient bytes != parameter bytes)",),
          {"communication priced in parameter bytes instead of gradient bytes": "comm"}),
        R("Raise `ValueError` for a stage other than 0, 1, 2, 3 or a `world_size` below 1.",
          ("unknown stage 4", "world size 0"), {"no ValueError for a bad stage or world size": "ValueError"}),
    ),
    "ch13_dp_accum_test": (
        R("the mean of the token losses over all real tokens of all micro-batches on all ranks",
          ("2 ranks, unequal micro-batches", "3 ranks, different numbers of micro-batches",
           "a micro-batch that is all padding", "4 ranks, one micro-batch each",),
          {"each micro-batch's mean, averaged over the accumulation steps": "synced_grad",
           "each rank divides by its own number of tokens": "synced_grad"}),
        R("padding (mask False) counts for nothing", ("2 ranks, unequal micro-batches", "a micro-batch that is all padding"),
          {"padding tokens counted in the loss": "synced_grad"}),
        R("DDP's all-reduce averages the ranks' gradients", ("2 ranks, unequal micro-batches", "4 ranks, one micro-batch each"),
          {"forgets that DDP divides the sum by the world size": "synced_grad",
           "ranks summed instead of averaged": "synced_grad"}),
        R("Do not modify the inputs", ("2 ranks, unequal micro-batches", "a micro-batch that is all padding",
                                       "equal micro-batches, no padding",),
          {"turns on requires_grad of the input weight": "inputs"}),
    ),
    "ch13_1f1b_test": (
        R("a warm-up of min(p − s − 1, m) forwards",
          ("2 stages, 4 micro-batches", "4 stages, 2 micro-batches (fewer than stages)"),
          {"a warm-up of p - s forwards (one too many)": "events"}),
        R("then alternates one forward, one backward", ("2 stages, 4 micro-batches", "4 stages, 8 micro-batches",
                                                        "4 stages, 2 micro-batches (fewer than stages)",
                                                        "3 stages, equal forward and backward time",),
          {"GPipe order (all forwards, then all backwards)": "events"}),
        R("a backward B(s, i) takes\n`t_backward`", ("2 stages, 4 micro-batches", "3 stages, forward 2, backward 3",
                                                     "4 stages, 2 micro-batches (fewer than stages)", "1 stage",),
          {"backward takes as long as forward": "events"}),
        R("sorted by start time, then\n  by stage", ("2 stages, 4 micro-batches",
                                                     "4 stages, 2 micro-batches (fewer than stages)",
                                                     "3 stages, equal forward and backward time",),
          {"events listed stage by stage": "events"}),
        R("the idle time of all stages divided by `num_stages` × the makespan",
          ("2 stages, 4 micro-batches", "3 stages, equal forward and backward time", "1 stage"),
          {"bubble as (p - 1) / m": "bubble"}),
        R("**measured on your `events`**", ("2 stages, 4 micro-batches", "3 stages, forward 2, backward 3",
                                            "4 stages, 2 micro-batches (fewer than stages)", "1 stage",),
          {"bubble measured with the forward time for both passes": "bubble"}),
        R("the largest number of micro-batches whose forward has run on stage s and whose backward has not",
          ("2 stages, 4 micro-batches", "4 stages, 8 micro-batches", "4 stages, 2 micro-batches (fewer than stages)",
           "3 stages, equal forward and backward time",),
          {"in-flight micro-batches counted as the warm-up length": "in_flight"}),
        R("Raise `ValueError` if `num_stages` or `num_microbatches` is below 1.", ("no micro-batches",),
          {"no ValueError without micro-batches": "ValueError"}),
    ),
    "ch13_checkpoint_test": (
        R("the last segment is not checkpointed", ("16 equal layers, 4 segments", "memory in MB (floats)"),
          {"the last segment is recomputed too": "recompute"}),
        R("the total at the end of the forward pass", ("16 equal layers, 4 segments", "starts unsorted, repeated, without 0",
                                                       "memory in MB (floats)",),
          {"peak counted during the backward pass only": "peak"}),
        R("by then the checkpoints of later segments have been freed", ("unequal layers, a large early segment",),
          {"later checkpoints kept during the backward pass": "peak"}),
        R("`starts` may be unsorted and may repeat, and layer 0 always starts a segment",
          ("starts unsorted, repeated, without 0",),
          {"starts used as given (unsorted, repeated, 0 missing)": "peak"}),
        R("segments of k = ⌈√n⌉ layers", ("no checkpoints", "unequal layers, a large early segment"),
          {"segments of floor(sqrt(n)) layers": "sqrt_starts"}),
        R("Raise\n`ValueError` if a start is not a layer index (below 0 or ≥ n).",
          ("a start past the last layer", "a negative start"),
          {"no ValueError for a start outside the layers": "ValueError", "a negative start accepted silently": "ValueError"}),
    ),
}

ALTERNATIVES = {
    "ch13_ring_test": {"messages built per step from a snapshot, chunk bounds by hand, numpy-free loop": """
        def ring_all_reduce(tensors):
            n = len(tensors)
            size = tensors[0].numel()
            base, extra = divmod(size, n)
            bounds = [0]
            for c in range(n):
                bounds.append(bounds[-1] + base + (1 if c < extra else 0))
            state = [t.flatten().clone() for t in tensors]
            sent = [0] * n
            for phase in ("reduce-scatter", "all-gather"):
                for s in range(n - 1):
                    messages = []
                    for r in range(n):
                        c = (r - s) % n if phase == "reduce-scatter" else (r + 1 - s) % n
                        lo, hi = bounds[c], bounds[c + 1]
                        messages.append(((r + 1) % n, lo, hi, state[r][lo:hi].clone()))
                        sent[r] += (hi - lo) * state[r].element_size()
                    for dst, lo, hi, payload in messages:
                        if phase == "reduce-scatter":
                            state[dst][lo:hi] = state[dst][lo:hi] + payload
                        else:
                            state[dst][lo:hi] = payload
            return tuple(st.view(tensors[0].shape) for st in state), tuple(sent)
    """},
    "ch13_tp_mlp_test": {"all ranks at once with batched matmuls (einsum), keyword-free": """
        def tp_mlp(x, w1, b1, w2, b2, grad_out, world_size):
            n = world_size
            hidden = w1.shape[0]
            if hidden % n != 0:
                raise ValueError("hidden must be divisible by world_size")
            k = hidden // n
            W1 = w1.reshape(n, k, -1)                          # [rank, k, d_in]
            B1 = b1.reshape(n, 1, k)
            W2 = w2.reshape(w2.shape[0], n, k).permute(1, 0, 2)  # [rank, d_out, k]
            pre = torch.einsum("td,rkd->rtk", x, W1) + B1
            h = pre.clamp_min(0)
            partials = torch.einsum("rtk,rok->rto", h, W2)
            out = partials.sum(0) + b2
            g_pre = torch.einsum("to,rok->rtk", grad_out, W2) * (pre > 0).to(x.dtype)
            return {
                "out": out,
                "partials": list(partials.unbind(0)),
                "grad_x": torch.einsum("rtk,rkd->td", g_pre, W1),
                "grad_w1": torch.einsum("rtk,td->rkd", g_pre, x).reshape(hidden, -1),
                "grad_b1": g_pre.sum(1).reshape(hidden),
                "grad_w2": torch.einsum("to,rtk->ork", grad_out, h).reshape(w2.shape[0], hidden),
                "grad_b2": grad_out.sum(dim=0),
            }
    """},
    "ch13_zero_test": {"exact fractions, table of what each stage shards": """
        from fractions import Fraction

        def zero_memory(num_params, world_size, stage, param_bytes=2, grad_bytes=2, optimizer_bytes=12):
            sharded = {0: set(), 1: {"optimizer"}, 2: {"optimizer", "grads"}, 3: {"optimizer", "grads", "params"}}
            if stage not in sharded or world_size < 1:
                raise ValueError(f"bad stage {stage} or world size {world_size}")
            psi, n = Fraction(num_params), Fraction(world_size)
            sizes = {"params": param_bytes, "grads": grad_bytes, "optimizer": optimizer_bytes}
            out = {k: psi * b / (n if k in sharded[stage] else 1) for k, b in sizes.items()}
            out["total"] = sum(out.values())
            per_elem = 2 * grad_bytes if stage == 0 else grad_bytes + param_bytes * (2 if stage == 3 else 1)
            out["comm"] = psi * (n - 1) / n * per_elem
            return out
    """},
    "ch13_dp_accum_test": {"log-softmax by hand in float64, torch.autograd.grad per rank": """
        def dp_accumulated_grad(weight, rank_batches):
            world = len(rank_batches)
            real = sum(m.sum() for batches in rank_batches for _, _, m in batches).double()
            local_grads = []
            for batches in rank_batches:
                w = weight.detach().double().requires_grad_()
                total = torch.zeros((), dtype=torch.float64)
                for x, y, m in batches:
                    logits = x.double() @ w.t()
                    logp = logits - logits.logsumexp(-1, keepdim=True)
                    nll = -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1)
                    total = total + torch.where(m, nll, torch.zeros_like(nll)).sum()
                (g,) = torch.autograd.grad(total * world / real, w)
                local_grads.append(g.float())
            return sum(local_grads) / world, local_grads
    """},
    "ch13_1f1b_test": {"tick-by-tick clock simulation, events as lists": """
        def one_f_one_b(num_stages, num_microbatches, t_forward=1, t_backward=2):
            p, m = num_stages, num_microbatches
            if min(p, m) < 1:
                raise ValueError("num_stages and num_microbatches must be >= 1")
            plans = []
            for s in range(p):
                w = min(p - s - 1, m)
                plan = ["F"] * w
                for _ in range(m - w):
                    plan += ["F", "B"]
                plan += ["B"] * w
                plans.append(plan)
            next_f, next_b, step = [0] * p, [0] * p, [0] * p
            busy_until = [0] * p
            f_done, b_done = {}, {}
            events, clock = [], 0
            while any(step[s] < 2 * m for s in range(p)):
                for s in range(p):
                    if busy_until[s] > clock or step[s] == 2 * m:
                        continue
                    kind = plans[s][step[s]]
                    i = next_f[s] if kind == "F" else next_b[s]
                    if kind == "F":
                        ready = s == 0 or f_done.get((s - 1, i), float("inf")) <= clock
                    else:
                        ready = b_done.get((s + 1, i), float("inf")) <= clock if s < p - 1 else True
                    if not ready:
                        continue
                    dur = t_forward if kind == "F" else t_backward
                    busy_until[s] = clock + dur
                    (f_done if kind == "F" else b_done)[(s, i)] = clock + dur
                    if kind == "F":
                        next_f[s] += 1
                    else:
                        next_b[s] += 1
                    step[s] += 1
                    events.append([clock, s, i, kind])
                clock += 1
            span = max(busy_until)
            idle = p * span - p * m * (t_forward + t_backward)
            held = []
            for plan in plans:
                count, most = 0, 0
                for kind in plan:
                    count += 1 if kind == "F" else -1
                    most = max(most, count)
                held.append(most)
            return sorted(events, key=lambda e: (e[0], e[1])), idle / (p * span), held
    """},
    "ch13_checkpoint_test": {"memory replayed event by event; sqrt by float with a correction": """
        def checkpoint_cost(act, cost, starts):
            n = len(act)
            for s in starts:
                if not 0 <= s < n:
                    raise ValueError(f"start {s} is not a layer index")
            cuts = sorted({0, *starts})
            segments = [(a, b) for a, b in zip(cuts, cuts[1:] + [n])]
            held, trace, recompute = 0.0, [], 0.0
            for a, b in segments[:-1]:
                held += act[a]
                trace.append(held)
            held += sum(act[segments[-1][0]:])
            trace.append(held)
            held -= sum(act[segments[-1][0]:])
            for a, b in reversed(segments[:-1]):
                recompute += sum(cost[a:b])
                trace.append(held + sum(act[a + 1:b]))
                held -= act[a]
            return max(trace), recompute

        def sqrt_checkpoints(n):
            k = int(math.ceil(n ** 0.5))
            if (k - 1) * (k - 1) >= n:
                k -= 1
            return [s for s in range(n) if s % k == 0]
    """},
}


# The oracle each exercise is checked against (used by the test suite, in the trusted process).
ORACLES = {
    "ch13_ring_test": oracle_ring,
    "ch13_tp_mlp_test": oracle_tp_mlp,
    "ch13_zero_test": oracle_zero,
    "ch13_dp_accum_test": oracle_dp_accum,
    "ch13_1f1b_test": oracle_1f1b,
    "ch13_checkpoint_test": oracle_checkpoint,
}

CHAPTER = Chapter("ch13_distributed", "ch13_exercises.ipynb", EXERCISES, rules=RULES, alternatives=ALTERNATIVES, oracles=ORACLES)

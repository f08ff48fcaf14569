"""Trusted spec of Chapter 8's graded cells (solutions/ch08_frontiers/ch08_exercises.ipynb).

Probes are self-contained (they run in the sandbox). Oracles (trusted side): ``torch.quantize_per_channel``,
``F.kl_div`` + ``F.cross_entropy``, ``F.cross_entropy`` on the similarity matrix, ``torch.func.vmap(grad(...))``
per-sample gradients. The cost estimators and FedAvg are closed-form, with no library among the course's dependencies.
"""
from llmprep.grading.spec import Case, Chapter, Exercise, Hint, Rule, allclose, banned, mutate, whole


# ============================================================================ 1 cost estimators

def probe_costs(ns, params):
    flops = ns["training_flops"](params["n_params"], params["n_tokens"])
    mem = ns["training_memory_bytes"](params["n_params"], params["precision"])
    kv = ns["kv_cache_bytes"](params["layers"], params["kv_heads"], params["head_dim"], params["seq_len"],
                              params["batch"], params["bytes_per_elem"])
    out = {"flops": float(flops), "kv_bytes": float(kv)}
    for key in ("weights", "grads", "optimizer", "total"):
        out[f"memory_{key}"] = float(mem[key])
    return out


# ============================================================================ 2 int8 quantization

def probe_quantize(ns, params):
    import torch

    quantize, dequantize = ns["quantize_per_channel_int8"], ns["dequantize_int8"]
    g = torch.Generator().manual_seed(params["seed"])
    rows, cols = params["shape"]
    w = torch.randn(rows, cols, generator=g)
    if "rows" in params:  # exact values: w / scale lands on x.5, where ties round to even
        w = torch.tensor(params["rows"], dtype=torch.float32)
    elif params.get("spread"):
        w = w * torch.logspace(-3, 1, rows)[:, None]
    else:
        w = w * params.get("scale", 1.0)
    for r in params.get("zero_rows", []):
        w[r] = 0.0
    original = w.clone()
    q, scale = quantize(w)
    deq = dequantize(q, scale)
    scale = torch.as_tensor(scale).reshape(-1).to(torch.float32)
    err = (deq.to(torch.float32) - original).abs()
    within = bool((err <= scale[:, None] / 2 * (1 + 1e-5) + 1e-12).all()) if scale.numel() == rows else False
    return {"q": q.to(torch.int64), "q_is_int8": q.dtype == torch.int8, "scale": scale,
            "dequantized": deq.to(torch.float32), "error_within_half_scale": within,
            "input_untouched": bool(torch.equal(w, original))}


def oracle_quantize():
    import warnings

    import torch

    library = torch.quantize_per_channel  # bound now: the probe blocks the attribute while it runs

    def quantize(w):
        amax = w.abs().amax(dim=1)
        scale = torch.where(amax > 0, amax / 127, torch.ones_like(amax))
        with warnings.catch_warnings():  # quantized tensor types are deprecated in recent torch, still exact
            warnings.simplefilter("ignore")
            qt = library(w, scale.double(), torch.zeros(w.shape[0], dtype=torch.long), 0, torch.qint8)
        return qt.int_repr(), scale

    def dequantize(q, scale):
        return q.float() * scale[:, None]

    return {"quantize_per_channel_int8": quantize, "dequantize_int8": dequantize}


# ============================================================================ 3 distillation loss

def probe_distillation(ns, params):
    import torch

    fn = ns["distillation_loss"]
    g = torch.Generator().manual_seed(params["seed"])
    n, c = params["n"], params["c"]
    s = (torch.randn(n, c, generator=g) * params["scale"]).requires_grad_(True)
    t = torch.randn(n, c, generator=g) * params["scale"] * 1.5
    y = torch.randint(0, c, (n,), generator=g)
    loss = fn(s, t, y, T=params["T"], alpha=params["alpha"])
    loss.backward()
    return {"loss": loss.detach().reshape(()), "grad_student": s.grad}


def oracle_distillation():
    import torch.nn.functional as F

    kl, ce, ls, sm = F.kl_div, F.cross_entropy, F.log_softmax, F.softmax

    def distillation_loss(student_logits, teacher_logits, labels, T=2.0, alpha=0.5):
        soft = kl(ls(student_logits / T, dim=-1), sm(teacher_logits / T, dim=-1), reduction="batchmean")
        return alpha * T * T * soft + (1 - alpha) * ce(student_logits, labels)

    return {"distillation_loss": distillation_loss}


# ============================================================================ 4 InfoNCE

def probe_info_nce(ns, params):
    import torch

    fn = ns["info_nce"]
    g = torch.Generator().manual_seed(params["seed"])
    n, d = params["n"], params["d"]
    a = torch.randn(n, d, generator=g) * params["norm"]
    b = a + params["noise"] * torch.randn(n, d, generator=g) * params["norm"]
    b = b * (1 + torch.rand(n, 1, generator=g) * params["norm_jitter"])
    a.requires_grad_(True)
    b.requires_grad_(True)
    loss = fn(a, b, params["temperature"])
    loss.backward()
    grad_b = b.grad if b.grad is not None else torch.zeros_like(b)  # both towers must receive a gradient
    return {"loss": loss.detach().reshape(()), "grad_a": a.grad, "grad_b": grad_b}


def oracle_info_nce():
    import torch
    import torch.nn.functional as F

    ce, normalize = F.cross_entropy, F.normalize

    def info_nce(a, b, temperature=0.07):
        logits = normalize(a, dim=-1) @ normalize(b, dim=-1).T / temperature
        target = torch.arange(a.shape[0])
        return (ce(logits, target) + ce(logits.T, target)) / 2

    return {"info_nce": info_nce}


# ============================================================================ 5 FedAvg

def probe_fedavg(ns, params):
    import torch
    import torch.nn as nn

    fn = ns["fedavg"]
    torch.manual_seed(params["seed"])
    dtype = getattr(torch, params.get("dtype", "float32"))
    clients = []
    for k in range(len(params["sizes"])):
        model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3)).to(dtype)
        model.train()
        with torch.no_grad():
            for _ in range(params["bn_steps"][k]):
                model(torch.randn(8, 4, dtype=dtype) * (k + 1))
        clients.append({key: v.detach().clone() for key, v in model.state_dict().items()})
    snapshot = [{key: v.clone() for key, v in sd.items()} for sd in clients]
    out = fn(clients, list(params["sizes"]))
    result = {"keys": " ".join(out.keys()),
              "inputs_untouched": all(torch.equal(a[key], b[key]) for a, b in zip(clients, snapshot) for key in a)}
    for key, v in out.items():
        result[f"value:{key}"] = v.detach()
        result[f"dtype:{key}"] = str(v.dtype)
    fresh = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3)).to(dtype)
    fresh.load_state_dict(out)
    fresh.eval()
    result["averaged_model_output"] = fresh(torch.linspace(-1, 1, 8, dtype=dtype).reshape(2, 4)).detach()
    return result


# ============================================================================ 6 DP-SGD step

def probe_dp_sgd(ns, params):
    import torch
    import torch.nn as nn

    fn = ns["dp_sgd_step"]
    torch.manual_seed(params["seed"])
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    b = params["batch"]
    x = torch.randn(b, 5) * 2
    y = torch.randint(0, 3, (b,))
    gen = torch.Generator().manual_seed(params["noise_seed"])
    fn(model, nn.CrossEntropyLoss(), x, y, max_norm=params["max_norm"], noise_multiplier=params["sigma"],
       lr=params["lr"], generator=gen)
    return {f"param{i}": p.detach().clone() for i, p in enumerate(model.parameters())}


def oracle_dp_sgd():
    import torch
    from torch.func import functional_call, grad, vmap

    def dp_sgd_step(model, loss_fn, x, y, max_norm, noise_multiplier, lr, generator):
        params = {k: v.detach() for k, v in model.named_parameters()}

        def one(p, xi, yi):
            return loss_fn(functional_call(model, p, (xi[None],)), yi[None])

        per = vmap(grad(one), in_dims=(None, 0, 0))(params, x, y)
        flat = torch.cat([g.reshape(len(x), -1) for g in per.values()], dim=1)
        factor = (max_norm / (flat.norm(dim=1) + 1e-6)).clamp(max=1.0)
        with torch.no_grad():
            for name, p in model.named_parameters():
                g = (per[name] * factor.view(-1, *[1] * p.dim())).sum(0)
                g = g + torch.randn(p.shape, generator=generator) * noise_multiplier * max_norm
                p -= lr * g / len(x)

    return {"dp_sgd_step": dp_sgd_step}


# ============================================================================ the spec

_KV = dict(layers=32, kv_heads=32, head_dim=128, seq_len=4096, batch=1, bytes_per_elem=2)

EXERCISES = [
    Exercise(
        grade_id="ch08_costs_test",
        functions=("training_flops", "training_memory_bytes", "kv_cache_bytes"), points=2,
        cases=(
            Case("7B model, 2T tokens, mixed precision, MHA cache",
                 dict(n_params=7e9, n_tokens=2e12, precision="mixed", **_KV)),
            Case("MiniLM-sized model, fp32, small cache", dict(n_params=22_713_216, n_tokens=1e9, precision="fp32",
                                                               layers=6, kv_heads=12, head_dim=32, seq_len=256,
                                                               batch=64, bytes_per_elem=4)),
            Case("70B model, grouped-query cache, int8", dict(n_params=7e10, n_tokens=1.5e13, precision="mixed",
                                                              layers=80, kv_heads=8, head_dim=128, seq_len=32768,
                                                              batch=4, bytes_per_elem=1),
                 edge="1 byte per element, 8 KV heads (GQA), 1.5e13 tokens"),
            Case("tiny numbers, fp32", dict(n_params=1000, n_tokens=50, precision="fp32", layers=1, kv_heads=1,
                                            head_dim=1, seq_len=1, batch=1, bytes_per_elem=2),
                 edge="every cache dimension 1: only the factor 2 and the bytes remain"),
        ),
        probe=probe_costs, judge=allclose(rtol=1e-9, atol=0.0),
        mutants={
            "forward pass only (2ND)": mutate("return 6 * n_params * n_tokens", "return 2 * n_params * n_tokens",
                hint=Hint("只算了前向（2ND）；训练还包含反向传播，约为前向的两倍。",
                    "Only the forward pass is counted (2ND); training adds the backward pass, about twice the forward.")),
            "KV cache without the factor 2 (only K or only V)": mutate("return 2 * layers", "return layers", hint=Hint(
                "KV cache 漏了系数 2：K 和 V 都要缓存。", "The KV cache is missing the factor 2: both K and V are cached.")),
            "Adam states counted once": mutate('{"fp32": (4, 4, 8), "mixed": (2, 2, 12)}',
                                               '{"fp32": (4, 4, 4), "mixed": (2, 2, 8)}',
                hint=Hint("Adam 的状态只算了一份；它有一阶矩和二阶矩两份状态。",
                    "Adam's state is counted once; it keeps two moments, first and second.")),
            "mixed precision without the fp32 master copy": mutate('"mixed": (2, 2, 12)', '"mixed": (2, 2, 8)',
                hint=Hint("混合精度漏了 fp32 的主权重副本。", "Mixed precision leaves out the fp32 master copy of the weights.")),
        },
    ),
    Exercise(
        grade_id="ch08_quantize_test", functions=("quantize_per_channel_int8", "dequantize_int8"), points=3,
        bans=banned("torch.quantize_per_channel", "torch.fake_quantize_per_channel_affine"),
        cases=(
            Case("random 6x10 weight", dict(seed=0, shape=[6, 10], scale=1.0)),
            Case("rows spanning four orders of magnitude", dict(seed=1, shape=[8, 16], spread=True),
                 edge="row maxima four orders of magnitude apart"),
            Case("an all-zero row", dict(seed=2, shape=[5, 7], scale=0.3, zero_rows=[2]),
                 edge="an all-zero row (scale 0/0)"),
            Case("single column, large values", dict(seed=3, shape=[4, 1], scale=50.0),
                 edge="in_features = 1: every code is +-127"),
            Case("exact .5 ties", dict(seed=4, shape=[2, 6], rows=[[127.0, 2.5, -3.5, 0.5, 1.5, -0.5],
                                                                   [63.5, 1.25, -0.75, 0.25, 2.25, 0.0]]),
                 edge="w / s exactly k + 0.5 (ties to even)"),
        ),
        probe=probe_quantize, judge=allclose(rtol=1e-6, atol=1e-7),
        mutants={
            "one scale for the whole tensor": mutate("amax = w.detach().abs().amax(dim=1).to(torch.float32)",
                                                     "amax = w.detach().abs().max().to(torch.float32).expand(w.shape[0])",
                hint=Hint("整个张量只用一个 scale；per-channel 量化要求每个输出通道（每行）一个。",
                    "One scale for the whole tensor; per-channel quantization uses one per output channel (row).")),
            "truncates instead of rounding": mutate("torch.round(", "torch.trunc(",
                hint=Hint("截断而不是取整。", "Values are truncated instead of rounded.")),
            "divides by 128": mutate("amax / 127", "amax / 128",
                hint=Hint("除以了 128；对称 int8 的最大量化值是 127。",
                    "The scale divides by 128; symmetric int8 uses 127 as the largest level.")),
            "zero row gives NaN (scale 0)": mutate("torch.where(amax > 0, amax / 127, torch.ones_like(amax))",
                                                   "amax / 127", hint=Hint(
                "全零行的 scale 为 0，除以 0 得到 NaN。", "An all-zero row gets scale 0 and dividing by it gives NaN.")),
            "rounds half away from zero": mutate("torch.round(w.detach() / scale[:, None])",
                                                 "torch.sign(w) * torch.floor((w.detach() / scale[:, None]).abs() + 0.5)",
                hint=Hint("取整用了远离零的四舍五入，而规定是 round half to even（torch.round）。",
                    "Rounding is half away from zero; the stated rounding is half to even.")),
            "scales w in place": mutate("w.detach() / scale[:, None]", "w.detach().div_(scale[:, None])",
                hint=Hint("原地对权重做了除法，修改了输入的 w。", "The weight is divided in place, modifying the input w.")),
        },
    ),
    Exercise(
        grade_id="ch08_distillation_test", functions=("distillation_loss",), points=2,
        cases=(
            Case("T=2, alpha=0.5", dict(seed=0, n=8, c=5, scale=2.0, T=2.0, alpha=0.5)),
            Case("T=4, pure distillation (alpha=1)", dict(seed=1, n=6, c=10, scale=3.0, T=4.0, alpha=1.0),
                 edge="alpha = 1: the hard term vanishes"),
            Case("T=1, alpha=0.3", dict(seed=2, n=12, c=4, scale=1.0, T=1.0, alpha=0.3), edge="T = 1: no softening"),
            Case("T=3, pure cross-entropy (alpha=0)", dict(seed=4, n=7, c=6, scale=2.0, T=3.0, alpha=0.0),
                 edge="alpha = 0: only the hard term, with T far from 1"),
            Case("T=8, alpha=0.9, large logits", dict(seed=3, n=5, c=7, scale=10.0, T=8.0, alpha=0.9)),
        ),
        probe=probe_distillation, judge=allclose(rtol=1e-4, atol=1e-6),
        mutants={
            "T squared missing": mutate("alpha * T * T * soft", "alpha * soft",
                hint=Hint("软目标项漏乘了 T²，温度越高，它的梯度就越小。",
                    "The soft term is not multiplied by T squared, so its gradients shrink as the temperature grows.")),
            "KL direction swapped (student as target)": mutate(
                "F.kl_div(log_p_student, p_teacher,",
                "F.kl_div(F.log_softmax(teacher_logits / T, dim=-1), F.softmax(student_logits / T, dim=-1),",
                hint=Hint("KL 的方向反了：把学生分布当成了目标；目标应是教师分布。",
                    "The KL direction is swapped: the student is used as the target instead of the teacher.")),
            "KL averaged over classes too (reduction='mean')": mutate('reduction="batchmean"', 'reduction="mean"',
                hint=Hint("KL 还在类别维上取了平均（reduction='mean'）；应只按 batch 平均。",
                    "The KL is averaged over classes too (reduction mean); it is averaged over the batch only.")),
            "cross-entropy on the softened logits (s / T)": mutate(
                "hard = F.cross_entropy(student_logits, labels)", "hard = F.cross_entropy(student_logits / T, labels)",
                hint=Hint(zh="温度只用于软目标那一项；硬标签的交叉熵用未缩放的学生 logits。",
                          en="The temperature belongs to the soft term only; the hard-label cross-entropy uses the "
                             "unscaled student logits.")),
        },
    ),
    Exercise(
        grade_id="ch08_info_nce_test", functions=("info_nce",), points=2,
        cases=(
            Case("8 pairs, tau=0.07", dict(seed=0, n=8, d=16, norm=1.0, noise=0.3, norm_jitter=0.0, temperature=0.07)),
            Case("unnormalised inputs of varied length",
                 dict(seed=1, n=6, d=12, norm=5.0, noise=0.5, norm_jitter=3.0, temperature=0.1),
                 edge="vectors far from unit length, their norms varying fourfold"),
            Case("tau=1, very noisy pairs",
                 dict(seed=2, n=10, d=8, norm=2.0, noise=2.0, norm_jitter=1.0, temperature=1.0), edge="tau = 1"),
            Case("two pairs", dict(seed=3, n=2, d=4, norm=0.5, noise=0.1, norm_jitter=0.5, temperature=0.5),
                 edge="N = 2: one negative per row"),
        ),
        probe=probe_info_nce, judge=allclose(rtol=1e-4, atol=1e-6),
        mutants={
            "no L2 normalisation": mutate("    a = F.normalize(a, dim=-1)\n    b = F.normalize(b, dim=-1)\n", "",
                hint=Hint("没有做 L2 归一化，相似度不是余弦相似度。",
                    "The embeddings are not L2-normalised, so the similarities are not cosines.")),
            "one direction only (a -> b)": mutate(
                "(F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2",
                "F.cross_entropy(logits, target)",
                hint=Hint("只算了 a→b 一个方向；对称的 InfoNCE 要平均两个方向的损失。",
                    "Only the a-to-b direction is used; the symmetric InfoNCE averages both directions.")),
            "temperature multiplied": mutate("a @ b.T / temperature", "a @ b.T * temperature", hint=Hint(
                "乘以了温度而不是除以温度。", "The similarities are multiplied by the temperature instead of divided by it.")),
            "text tower detached (no gradient to b)": mutate("F.normalize(b, dim=-1)", "F.normalize(b.detach(), dim=-1)",
                hint=Hint("b 被 detach 了，梯度传不到第二个塔（文本塔）。",
                    "b is detached, so no gradient reaches the second (text) tower.")),
        },
    ),
    Exercise(
        grade_id="ch08_fedavg_test", functions=("fedavg",), points=2,
        cases=(
            Case("three clients of unequal size", dict(seed=0, sizes=[10, 30, 60], bn_steps=[1, 3, 2])),
            Case("two clients, one tiny", dict(seed=1, sizes=[1, 99], bn_steps=[5, 1]),
                 edge="sizes 1 and 99; the largest step count on the first client"),
            Case("four equal clients", dict(seed=2, sizes=[25, 25, 25, 25], bn_steps=[2, 2, 4, 1]),
                 edge="equal sizes: weighted and unweighted means agree"),
            Case("one client", dict(seed=3, sizes=[7], bn_steps=[3]), edge="a single client"),
            Case("two clients in float64", dict(seed=4, sizes=[3, 5], bn_steps=[1, 2], dtype="float64"),
                 edge="float64 entries: the average must keep the entries' dtype (every other case is float32)"),
        ),
        probe=probe_fedavg, judge=allclose(rtol=1e-5, atol=1e-6),
        mutants={
            "unweighted mean": mutate("weights = [n / total for n in client_sizes]",
                                      "weights = [1 / len(client_sizes) for n in client_sizes]",
                hint=Hint("用了简单平均；FedAvg 按各客户端的样本数加权。",
                    "A plain mean is used; FedAvg weights each client by its number of examples.")),
            "weights not normalised": mutate("weights = [n / total for n in client_sizes]",
                                             "weights = list(client_sizes)",
                hint=Hint("权重没有归一化（没有除以样本总数），结果被放大了。",
                    "The weights are not normalised by the total size, so the result is scaled up.")),
            "integer buffers averaged as floats": mutate({"if first.is_floating_point():": "if True:",
                                                          "torch.zeros_like(first)":
                                                              "torch.zeros_like(first, dtype=torch.float32)"},
                hint=Hint("整数缓冲（如 num_batches_tracked）也被当作浮点数平均了。",
                    "Integer buffers (e.g. num_batches_tracked) are averaged as floats.")),
            "integer buffers taken from the first client": mutate(
                "torch.stack([sd[key] for sd in client_state_dicts]).amax(dim=0)", "first.clone()",
                hint=Hint("整数缓冲直接取了第一个客户端的值，而不是按规则在各客户端之间合并。",
                    "Integer buffers are copied from the first client instead of combined over the clients as stated.")),
            "averages in float32 (the entry's dtype not kept)": mutate("out[key] = acc\n", "out[key] = acc.float()\n",
                hint=Hint("平均结果变成了 float32，没有保持原条目的 dtype。",
                    "The averages come out as float32 instead of keeping each entry's dtype.")),
            "accumulates into the first client's tensors": mutate({
                "acc = torch.zeros_like(first)": "acc = first.mul_(weights[0])",
                "zip(weights, client_state_dicts)": "zip(weights[1:], client_state_dicts[1:])"},
                hint=Hint("直接累加到第一个客户端的张量上，修改了输入。",
                    "It accumulates into the first client's tensors, modifying the input.")),
        },
    ),
    Exercise(
        grade_id="ch08_dp_sgd_test", functions=("dp_sgd_step",), points=3,
        cases=(
            Case("no noise, clipping active", dict(seed=0, batch=8, max_norm=0.1, sigma=0.0, lr=0.5, noise_seed=0),
                 edge="sigma = 0: the update is exactly the mean of the clipped gradients"),
            Case("no noise, loose clipping", dict(seed=1, batch=6, max_norm=100.0, sigma=0.0, lr=0.3, noise_seed=0),
                 edge="max_norm above every per-sample norm: plain SGD"),
            Case("seeded noise, sigma 1", dict(seed=2, batch=10, max_norm=0.5, sigma=1.0, lr=0.2, noise_seed=7),
                 edge="sigma = 1 with max_norm = 0.5: the noise std is max_norm, not sigma"),
            Case("seeded noise, sigma 0.5, mixed clipping",
                 dict(seed=3, batch=12, max_norm=1.0, sigma=0.5, lr=0.1, noise_seed=11)),
        ),
        probe=probe_dp_sgd, judge=allclose(rtol=1e-4, atol=1e-6),
        mutants={
            "clips the batch gradient instead of each sample": whole("""
                def dp_sgd_step(model, loss_fn, x, y, max_norm, noise_multiplier, lr, generator):
                    model.zero_grad()
                    loss_fn(model(x), y).backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
                    with torch.no_grad():
                        for p in model.parameters():
                            noise = torch.randn(p.shape, generator=generator) * noise_multiplier * max_norm
                            p -= lr * (p.grad + noise / len(x))
                            p.grad = None
            """,
                hint=Hint("裁剪的是整个 batch 的梯度，而不是每个样本的梯度；差分隐私要限制单个样本的影响。",
                    "The batch gradient is clipped instead of each sample's; DP must bound every single example's influence.")),
            "noise not scaled by max_norm": mutate("* noise_multiplier * max_norm", "* noise_multiplier",
                hint=Hint("噪声没有乘 max_norm，和裁剪的范数尺度不匹配。",
                    "The noise is not scaled by max_norm, so it does not match the clipping bound.")),
            "noise added after dividing by the batch size": mutate("lr * (summed + noise) / batch",
                                                                   "lr * (summed / batch + noise)",
                hint=Hint("先除以 batch 大小再加噪声；噪声应加在梯度之和上再一起平均。",
                    "The noise is added after dividing by the batch size; it belongs to the sum before averaging.")),
            "clips each parameter tensor separately": mutate(
                "summed = (g * factor.view(",
                "factor = torch.clamp(max_norm / (g.reshape(batch, -1).norm(dim=1) + 1e-6), max=1.0)\n"
                "            summed = (g * factor.view(",
                hint=Hint("每个参数张量分别裁剪；每个样本应按所有参数拼在一起的总范数裁剪。",
                    "Each parameter tensor is clipped on its own; a sample is clipped by its norm over all parameters.")),
        },
    ),
]

# ============================================================================ rule table and alternatives

R = Rule
RULES = {
    "ch08_costs_test": (
        R("the standard estimate $C \\approx 6ND$", ("7B model, 2T tokens, mixed precision, MHA cache",
                                                     "tiny numbers, fp32"),
          {"forward pass only (2ND)": "flops"}),
        R("the 2 is for K **and** V", ("70B model, grouped-query cache, int8", "tiny numbers, fp32"),
          {"KV cache without the factor 2 (only K or only V)": "kv"}),
        R("optimizer 8 (Adam's `m` and `v` in fp32)", ("MiniLM-sized model, fp32, small cache", "tiny numbers, fp32"),
          {"Adam states counted once": "memory"}),
        R("with an fp32 master copy", ("7B model, 2T tokens, mixed precision, MHA cache",
                                       "70B model, grouped-query cache, int8"),
          {"mixed precision without the fp32 master copy": "memory"}),
    ),
    "ch08_quantize_test": (
        R("give every output row $r$ its own scale", ("rows spanning four orders of magnitude",),
          {"one scale for the whole tensor": "q"}),
        R("Quantize by rounding to the nearest integer", ("random 6x10 weight", "exact .5 ties"),
          {"truncates instead of rounding": "q"}),
        R("(`torch.round`, ties to even)", ("exact .5 ties",), {"rounds half away from zero": "q"}),
        R("$s_r = \\max_j |w_{rj}| / 127$", ("random 6x10 weight", "single column, large values"),
          {"divides by 128": "q"}),
        R("define its scale as `1.0`", ("an all-zero row",), {"zero row gives NaN (scale 0)": "scale"}),
        R("Do not modify\n`w`", ("random 6x10 weight", "an all-zero row"),
          {"scales w in place": "modified its input in place"}),
    ),
    "ch08_distillation_test": (
        R("the $T^2$\nkeeps its weight comparable", ("T=4, pure distillation (alpha=1)",),
          {"T squared missing": "loss"}),
        R("`kl_div` takes the\nstudent's **log**-probabilities first", ("T=2, alpha=0.5", "T=1, alpha=0.3"),
          {"KL direction swapped (student as target)": "loss"}),
        R("summed over classes and averaged over the batch", ("T=2, alpha=0.5", "T=1, alpha=0.3"),
          {"KL averaged over classes too (reduction='mean')": "loss"}),
        R("the usual mean\ncross-entropy on the **unscaled** student logits", ("T=3, pure cross-entropy (alpha=0)",),
          {"cross-entropy on the softened logits (s / T)": "loss"}),
    ),
    "ch08_info_nce_test": (
        R("L2-normalise both sides", ("unnormalised inputs of varied length",), {"no L2 normalisation": "loss"}),
        R("and each\ncolumn likewise (text → image)", ("8 pairs, tau=0.07", "two pairs"),
          {"one direction only (a -> b)": "loss"}),
        R("$L = \\hat a \\hat b^\\top / \\tau$", ("tau=1, very noisy pairs", "8 pairs, tau=0.07", "two pairs"),
          {"temperature multiplied": "loss"}),
        R("returning a\nscalar tensor", ("8 pairs, tau=0.07", "two pairs"),
          {"text tower detached (no gradient to b)": "grad_b"}),
    ),
    "ch08_fedavg_test": (
        R("the size-weighted average above", ("three clients of unequal size", "two clients, one tiny"),
          {"unweighted mean": "value", "weights not normalised": "value"}),
        R("the **maximum** over clients, keeping the integer dtype", ("three clients of unequal size",
                                                                      "four equal clients"),
          {"integer buffers averaged as floats": "num_batches_tracked",
           "integer buffers taken from the first client": "num_batches_tracked"}),
        R("same\n  dtype and shape", ("two clients in float64",),
          {"averages in float32 (the entry's dtype not kept)": "dtype"}),
        R("Do not modify the inputs", ("three clients of unequal size", "two clients, one tiny"),
          {"accumulates into the first client's tensors": "in place"}),
    ),
    "ch08_dp_sgd_test": (
        R("clip each to norm `max_norm` $C$", ("no noise, clipping active",),
          {"clips the batch gradient instead of each sample": "param"}),
        R("the norm over **all** parameters together", ("no noise, clipping active",),
          {"clips each parameter tensor separately": "param"}),
        R("`torch.randn(p.shape, generator=generator) * noise_multiplier * max_norm`", ("seeded noise, sigma 1",),
          {"noise not scaled by max_norm": "param"}),
        R("divide by the batch size $B$", ("seeded noise, sigma 1",),
          {"noise added after dividing by the batch size": "param"}),
    ),
}

ALTERNATIVES = {
    "ch08_costs_test": {"integer arithmetic and a table of bytes": """
        def training_flops(n_params, n_tokens):
            return 2 * n_params * n_tokens * 3

        def training_memory_bytes(n_params, precision):
            per = {"fp32": (4, 4, 8), "mixed": (2, 2, 12)}[precision]
            parts = dict(zip(("weights", "grads", "optimizer"), (b * n_params for b in per)))
            parts["total"] = sum(parts.values())
            return parts

        def kv_cache_bytes(layers, kv_heads, head_dim, seq_len, batch, bytes_per_elem):
            per_token = 2 * kv_heads * head_dim * bytes_per_elem
            return per_token * layers * seq_len * batch
    """},
    "ch08_quantize_test": {"amax with keepdim, torch.where for zero rows": """
        def quantize_per_channel_int8(w):
            amax = w.abs().amax(dim=1, keepdim=True)
            scale = torch.where(amax == 0, torch.ones_like(amax), amax / 127.0)
            q = torch.round(w / scale).clamp(min=-127, max=127).to(torch.int8)
            return q, scale.squeeze(1).to(torch.float32)

        def dequantize_int8(q, scale):
            return q.to(torch.float32) * scale.to(torch.float32).unsqueeze(1)
    """},
    "ch08_distillation_test": {"KL written out with log_softmax on both sides": """
        def distillation_loss(student_logits, teacher_logits, labels, T=2.0, alpha=0.5):
            log_p = F.log_softmax(teacher_logits / T, dim=-1)
            log_q = F.log_softmax(student_logits / T, dim=-1)
            kl = (log_p.exp() * (log_p - log_q)).sum(dim=-1).mean()
            return alpha * T ** 2 * kl + (1 - alpha) * F.cross_entropy(student_logits, labels)
    """},
    "ch08_info_nce_test": {"norms by hand and log_softmax along both axes": """
        def info_nce(a, b, temperature=0.07):
            a_hat = a / a.norm(dim=1, keepdim=True)
            b_hat = b / b.norm(dim=1, keepdim=True)
            logits = a_hat @ b_hat.T / temperature
            diag = torch.arange(len(a))
            rows = -torch.log_softmax(logits, dim=1)[diag, diag].mean()
            cols = -torch.log_softmax(logits, dim=0)[diag, diag].mean()
            return 0.5 * (rows + cols)
    """},
    "ch08_fedavg_test": {"torch.stack with a weight vector": """
        def fedavg(client_state_dicts, client_sizes):
            weights = torch.tensor(client_sizes, dtype=torch.float64)
            weights = weights / weights.sum()
            out = {}
            for key, first in client_state_dicts[0].items():
                stacked = torch.stack([sd[key] for sd in client_state_dicts])
                if first.is_floating_point():
                    shape = (-1,) + (1,) * first.dim()
                    out[key] = (stacked.double() * weights.reshape(shape)).sum(0).to(first.dtype)
                else:
                    out[key] = stacked.amax(0)
            return out
    """},
    "ch08_dp_sgd_test": {"torch.func per-sample gradients": """
        from torch.func import functional_call, grad, vmap

        def dp_sgd_step(model, loss_fn, x, y, max_norm, noise_multiplier, lr, generator):
            names = [n for n, _ in model.named_parameters()]
            params = {n: p.detach() for n, p in model.named_parameters()}

            def one(p, xi, yi):
                return loss_fn(functional_call(model, p, (xi[None],)), yi[None])

            per = vmap(grad(one), in_dims=(None, 0, 0))(params, x, y)
            norms = torch.sqrt(sum(per[n].reshape(len(x), -1).pow(2).sum(1) for n in names))
            factor = torch.clamp(max_norm / (norms + 1e-6), max=1.0)
            with torch.no_grad():
                for n, p in model.named_parameters():
                    total = (per[n] * factor.reshape((-1,) + (1,) * p.dim())).sum(0)
                    noise = torch.randn(p.shape, generator=generator) * noise_multiplier * max_norm
                    p -= lr * (total + noise) / len(x)
    """},
}


ORACLES = {
    "ch08_quantize_test": oracle_quantize,
    "ch08_distillation_test": oracle_distillation,
    "ch08_info_nce_test": oracle_info_nce,
    "ch08_dp_sgd_test": oracle_dp_sgd,
}

CHAPTER = Chapter("ch08_frontiers", "ch08_exercises.ipynb", EXERCISES, rules=RULES, alternatives=ALTERNATIVES, oracles=ORACLES)

"""Trusted spec of Chapter 1's graded cells (solutions/ch01_training/ch01_exercises.ipynb).

Probes run inside the sandbox next to the student's code and are self-contained (imports inside). Oracles run in
the trusted test process: ``torch.log_softmax``, ``F.cross_entropy``, one step on the whole batch (what gradient
accumulation must equal), a reference evaluation loop, transformers' cosine schedule with a floor and
``torch.optim.AdamW``; the test suite proves the solution agrees with them on every case.
"""
import textwrap

from llmprep.grading.spec import Case, Chapter, Exercise, Hint, Rule, allclose, mutate, whole, with_defaults


# ============================================================================ 1 log_softmax

def probe_log_softmax(ns, params):
    import torch

    fn = ns["log_softmax"]
    g = torch.Generator().manual_seed(params["seed"])
    x = torch.randn(*params["shape"], generator=g) * params["scale"]
    out = fn(x.clone(), dim=params["dim"])
    return {"out": out}


def oracle_log_softmax():
    import torch

    library = torch.log_softmax

    return {"log_softmax": lambda x, dim=-1: library(x, dim=dim)}


# ============================================================================ 2 cross_entropy

def probe_cross_entropy(ns, params):
    import torch

    fn = ns["cross_entropy"]
    g = torch.Generator().manual_seed(params["seed"])
    n, c = params["n"], params["c"]
    logits = torch.randn(n, c, generator=g) * params["scale"]
    targets = torch.randint(0, c, (n,), generator=g)
    drop = torch.rand(n, generator=g) < params["ignore_frac"]
    if params.get("keep_one"):  # every row but the first ignored: n = 1
        drop = torch.arange(n) > 0
    targets[drop] = params["ignore_index"]
    out = fn(logits.clone(), targets.clone(), ignore_index=params["ignore_index"],
             label_smoothing=params["eps"])
    return {"loss": torch.as_tensor(out).reshape(())}


def oracle_cross_entropy():
    import torch.nn.functional as F

    ce = F.cross_entropy
    return {"cross_entropy": lambda logits, targets, ignore_index=-100, label_smoothing=0.0:
            ce(logits, targets, ignore_index=ignore_index, label_smoothing=label_smoothing)}


# ============================================================================ 3 accumulated step

def probe_accumulated_step(ns, params):
    import torch
    import torch.nn as nn

    fn = ns["accumulated_step"]
    torch.manual_seed(params["seed"])
    model = nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 4))
    k, size = params["k"], params["size"]
    x = torch.randn(k * size, 6) * 2
    y = torch.randint(0, 4, (k * size,))
    if params.get("stale_grads"):  # leftovers from a previous step must not leak in
        for p in model.parameters():
            p.grad = torch.ones_like(p) * 5.0
    opt = torch.optim.SGD(model.parameters(), lr=params["lr"])
    micro = [(x[i * size:(i + 1) * size], y[i * size:(i + 1) * size]) for i in range(k)]
    loss, norm = fn(model, nn.CrossEntropyLoss(), opt, micro, params["max_norm"])
    out = {"loss": float(loss), "grad_norm": float(norm)}
    for i, p in enumerate(model.parameters()):
        out[f"param{i}"] = p.detach()
    return out


def oracle_accumulated_step():
    import torch

    def big_batch_step(model, loss_fn, optimizer, micro_batches, max_norm=None):
        optimizer.zero_grad(set_to_none=True)
        x = torch.cat([b[0] for b in micro_batches])
        y = torch.cat([b[1] for b in micro_batches])
        loss = loss_fn(model(x), y)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf") if max_norm is None else max_norm)
        optimizer.step()
        return loss.item(), float(norm)

    return {"accumulated_step": big_batch_step}


# ============================================================================ 4 evaluate

def probe_evaluate(ns, params):
    import torch
    import torch.nn as nn

    fn = ns["evaluate"]
    torch.manual_seed(params["seed"])
    model = nn.Sequential(nn.Linear(5, 24), nn.BatchNorm1d(24), nn.ReLU(), nn.Dropout(0.5), nn.Linear(24, 3))
    # Give the batch-norm buffers non-trivial running statistics.
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 5) * 2 + 1)
    model.train(params["start_training"])
    grad_seen = []
    model.register_forward_pre_hook(lambda m, inp: grad_seen.append(torch.is_grad_enabled()))
    batches = [(torch.randn(size, 5) * 2 + 1, torch.randint(0, 3, (size,))) for size in params["sizes"]]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng_before = torch.get_rng_state()
    loss, acc = fn(model, batches, nn.CrossEntropyLoss())
    unchanged = all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    no_grads = all(p.grad is None for p in model.parameters())
    return {"loss": float(loss), "accuracy": float(acc), "training_after": bool(model.training),
            "state_unchanged": bool(unchanged), "grads_untouched": bool(no_grads),
            "rng_unchanged": bool(torch.equal(rng_before, torch.get_rng_state())),
            "grad_enabled_in_forward": bool(any(grad_seen))}


def oracle_evaluate():
    import torch

    def reference(model, batches, loss_fn):
        mode = model.training
        model.eval()
        losses, hits, n = 0.0, 0, 0
        with torch.inference_mode():
            for x, y in batches:
                out = model(x)
                losses += loss_fn(out, y).item() * len(y)
                hits += int((out.argmax(-1) == y).sum())
                n += len(y)
        model.train(mode)
        return losses / n, hits / n

    return {"evaluate": reference}


# ============================================================================ 5 schedule

def probe_warmup_cosine(ns, params):
    fn = ns["warmup_cosine_lr"]
    lrs = [float(fn(s, params["base_lr"], params["warmup"], params["total"], params["min_lr"]))
           for s in range(params["total"] + 1)]
    return {"lrs": lrs}


def oracle_warmup_cosine():
    import torch
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    def via_transformers(step, base_lr, warmup_steps, total_steps, min_lr=0.0):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
        sched = get_cosine_with_min_lr_schedule_with_warmup(opt, warmup_steps, total_steps, min_lr=min_lr)
        return base_lr * sched.lr_lambdas[0](step)

    return {"warmup_cosine_lr": via_transformers}


# ============================================================================ 6 AdamW

def probe_adamw(ns, params):
    import torch

    fn = ns["adamw_update"]
    g = torch.Generator().manual_seed(params["seed"])
    shape = params["shape"]
    p = torch.randn(*shape, generator=g)
    m, v = torch.zeros(*shape), torch.zeros(*shape)
    hp = dict(lr=params["lr"], betas=tuple(params["betas"]), eps=params["eps"], weight_decay=params["wd"])
    untouched = True
    for t in range(1, params["steps"] + 1):
        grad = torch.randn(*shape, generator=g) * params["grad_scale"]
        inputs = (p, grad, m, v)
        snapshot = [x.clone() for x in inputs]
        p, m, v = fn(p, grad, m, v, t, **hp)
        untouched = untouched and all(torch.equal(a, b) for a, b in zip(inputs, snapshot))
    return {"param": p, "exp_avg": m, "exp_avg_sq": v, "inputs_untouched": untouched}


def oracle_adamw():
    import torch

    step_fn = torch.optim.AdamW.step

    class Functional:
        """adamw_update driven by torch.optim.AdamW (state carried between calls)."""

        def __init__(self):
            self.opt = None

        def __call__(self, param, grad, exp_avg, exp_avg_sq, step, lr, betas=(0.9, 0.999), eps=1e-8,
                      weight_decay=0.01):
            if step == 1:
                self.w = torch.nn.Parameter(param.clone())
                self.opt = torch.optim.AdamW([self.w], lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
            self.w.grad = grad.clone()
            step_fn(self.opt)
            state = self.opt.state[self.w]
            return self.w.detach().clone(), state["exp_avg"].clone(), state["exp_avg_sq"].clone()

    return {"adamw_update": Functional()}


# ============================================================================ 7 early stopping

def probe_early_stopping(ns, params):
    import torch
    import torch.nn as nn

    cls = ns["EarlyStopping"]
    model = nn.Linear(3, 2)
    stopper = cls(params["patience"], min_delta=params["min_delta"], mode=params["mode"])
    flags = []
    for epoch, metric in enumerate(params["history"]):
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(float(epoch))  # a training epoch changes the weights in place
        flags.append(bool(stopper.step(metric, model)))
        if flags[-1]:
            break
    stopped_at = len(flags) - 1 if flags[-1] else -1
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(-1.0)
    stopper.restore(model)
    return {"stopped_at": stopped_at, "best_epoch": int(stopper.best_epoch), "best": float(stopper.best),
            "restored_weight": model.weight.detach(), "restored_bias": model.bias.detach()}


# ============================================================================ the spec

# Mutants are edits of the solution's own functions (read from the solution notebook); snippets used twice:
LSE = "return shifted - shifted.exp().sum(dim=dim, keepdim=True).log()"
CLIP = ('    limit = float("inf") if max_norm is None else max_norm\n'
        "    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), limit)\n")
ZERO = "    optimizer.zero_grad(set_to_none=True)\n"

EXERCISES = [
    Exercise(
        grade_id="ch01_log_softmax_test", functions=("log_softmax",), points=2,
        bans=(("torch", "log_softmax", "torch.log_softmax"), ("torch.nn.functional", "log_softmax", "F.log_softmax"),
              ("torch.Tensor", "log_softmax", "Tensor.log_softmax"), ("torch", "logsumexp", "torch.logsumexp"),
              ("torch.Tensor", "logsumexp", "Tensor.logsumexp"), ("torch.special", "log_softmax", "torch.special.log_softmax"),
              ("torch.special", "logsumexp", "torch.special.logsumexp"), ("torch.nn.LogSoftmax", "forward", "nn.LogSoftmax")),
        cases=(
            Case("small logits, last dim", {"seed": 0, "shape": [4, 7], "scale": 1.0, "dim": -1}),
            Case("logits of magnitude 1e4", {"seed": 1, "shape": [5, 6], "scale": 1e4, "dim": -1},
                 edge="|x| ~ 1e4: e^x overflows float32, and the row maxima differ by thousands"),
            Case("3-d input, reduce over dim 1", {"seed": 2, "shape": [2, 5, 3], "scale": 3.0, "dim": 1},
                 edge="a middle dim of a 3-d tensor"),
            Case("very negative logits (-1e4 scale, dim 0)", {"seed": 3, "shape": [6, 2], "scale": -1e4, "dim": 0},
                 edge="dim = 0, logits around -1e4 (every e^x underflows to 0)"),
        ),
        probe=probe_log_softmax, judge=allclose(rtol=1e-5, atol=1e-4),
        mutants={
            "log of softmax (overflows)": mutate(LSE, "return (logits.exp() / logits.exp().sum(dim=dim, keepdim=True)).log()",
                hint=Hint("先 softmax 再取 log：大的 logits 让 exp 溢出，结果变成 NaN。",
                    "The log is taken of a softmax: exp of large logits overflows and the result becomes NaN.")),
            "max subtracted but log-sum-exp forgotten": mutate(LSE, "return shifted",
                hint=Hint("减去了最大值，却忘了再减去 log-sum-exp，结果不是归一化的对数概率。",
                    "The maximum is subtracted but the log-sum-exp is forgotten, so the result is not normalised.")),
            "always reduces the last dim": mutate({"amax(dim=dim": "amax(dim=-1", "sum(dim=dim": "sum(dim=-1"},
                hint=Hint("总是在最后一维上归约，忽略了 dim 参数。",
                    "The last dimension is always reduced; the dim argument is ignored.")),
            "uses the library": mutate(LSE, "return torch.log_softmax(logits, dim=dim)",
                hint=Hint("直接调用了库里的 log_softmax；本练习要求自己实现，评分时它被禁用。",
                    "It calls the library's log_softmax, which this exercise asks you to write (it is blocked when graded).")),
            "subtracts the global maximum, not each row's": mutate(
                "m = logits.amax(dim=dim, keepdim=True).detach()", "m = logits.max().detach()",
                hint=Hint(zh="要减去每一行（沿 dim）自己的最大值；整个张量的最大值会让远低于它的行全部下溢成 0。",
                          en="Subtract each row's own maximum (along dim); one maximum for the whole tensor makes rows "
                             "far below it underflow to 0.")),
        },
    ),
    Exercise(
        grade_id="ch01_cross_entropy_test", functions=("cross_entropy",), points=2,
        bans=(("torch.nn.functional", "cross_entropy", "F.cross_entropy"), ("torch.nn.functional", "nll_loss", "F.nll_loss"),
              ("torch.nn.CrossEntropyLoss", "forward", "nn.CrossEntropyLoss"), ("torch.nn.NLLLoss", "forward", "nn.NLLLoss")),
        cases=with_defaults(
            {"scale": 2.0, "ignore_frac": 0.0, "ignore_index": -100, "eps": 0.0},
            Case("plain, no ignored rows", {"seed": 0, "n": 8, "c": 5}),
            Case("ignored rows", {"seed": 1, "n": 12, "c": 4, "ignore_frac": 0.4}),
            Case("label smoothing 0.1", {"seed": 2, "n": 10, "c": 6, "scale": 3.0, "eps": 0.1}),
            Case("smoothing and ignored rows, custom ignore index",
                 {"seed": 3, "n": 16, "c": 7, "ignore_frac": 0.3, "ignore_index": 3, "eps": 0.2},
                 edge="ignore_index = 3, a valid class id: rows whose target is 3 are dropped"),
            Case("logits of magnitude 1e4", {"seed": 4, "n": 6, "c": 5, "scale": 1e4, "eps": 0.05},
                 edge="|logits| ~ 1e4 with smoothing: -log p of the losing classes in the thousands"),
            Case("every row but one ignored", {"seed": 5, "n": 9, "c": 4, "keep_one": True, "eps": 0.1},
                 edge="n = 1 of N = 9 rows kept"),
            Case("label smoothing 1 (uniform target)", {"seed": 6, "n": 8, "c": 5, "scale": 3.0, "ignore_frac": 0.25,
                                                        "eps": 1.0},
                 edge="epsilon = 1: the whole mass is spread, the target class gets only 1/C"),
        ),
        probe=probe_cross_entropy, judge=allclose(rtol=1e-4, atol=1e-4),
        mutants={
            "ignored rows counted in the mean": mutate("/ keep.sum()", "/ len(targets)",
                hint=Hint("求平均时把被忽略的行也算进了分母；应只除以保留的行数。",
                    "Ignored rows are counted in the mean's denominator; only the kept rows count.")),
            "smoothing spread over the C-1 wrong classes": mutate(
                "smooth = -logp.mean(dim=-1)", "smooth = (-logp.sum(dim=-1) - nll) / (logits.shape[1] - 1)",
                hint=Hint("标签平滑只分给了 C−1 个错误类别；PyTorch 把它均匀分给全部 C 个类别。",
                    "Smoothing is spread over the C - 1 wrong classes; PyTorch spreads it over all C classes.")),
            "smoothing ignored": mutate("per_row = (1.0 - label_smoothing) * nll + label_smoothing * smooth",
                                        "per_row = nll",
                hint=Hint("label_smoothing 参数被忽略了。", "The label_smoothing argument is ignored.")),
            "ignore index hard-coded to -100": mutate("keep = targets != ignore_index", "keep = targets != -100",
                hint=Hint("ignore_index 被写死为 -100，传入的值被忽略。",
                    "The ignore index is hard-coded to -100; the ignore_index argument is ignored.")),
            "uses F.cross_entropy": mutate(
                "return (per_row * keep).sum() / keep.sum()",
                "return F.cross_entropy(logits, targets, ignore_index=ignore_index, label_smoothing=label_smoothing)",
                hint=Hint("直接调用了 F.cross_entropy；本练习要求自己实现，评分时它被禁用。",
                    "It calls F.cross_entropy, which this exercise asks you to write (it is blocked when graded).")),
        },
    ),
    Exercise(
        grade_id="ch01_accumulated_step_test", functions=("accumulated_step",), points=3, credit="rules",
        cases=(
            Case("4 micro-batches, no clipping", {"seed": 0, "k": 4, "size": 5, "lr": 0.5, "max_norm": None}),
            Case("3 micro-batches, clipping active", {"seed": 1, "k": 3, "size": 4, "lr": 0.5, "max_norm": 0.05}),
            Case("stale gradients from a previous step", {"seed": 2, "k": 2, "size": 6, "lr": 0.3,
                                                          "max_norm": None, "stale_grads": True},
                 edge="p.grad already holds 5.0 everywhere before the call"),
            Case("one micro-batch, loose clipping", {"seed": 3, "k": 1, "size": 8, "lr": 0.2, "max_norm": 100.0},
                 edge="k = 1, and max_norm above the norm (clipping changes nothing)"),
            Case("six micro-batches of one example", {"seed": 4, "k": 6, "size": 1, "lr": 0.3, "max_norm": None},
                 edge="micro-batches of size 1 (k = the whole batch)"),
            Case("clipping active on many micro-batches", {"seed": 5, "k": 5, "size": 2, "lr": 0.5, "max_norm": 0.1},
                 edge="max_norm below the accumulated norm, k = 5 micro-batches of 2"),
        ),
        probe=probe_accumulated_step, judge=allclose(rtol=1e-4, atol=1e-5),
        mutants={
            "loss not divided by the number of micro-batches": mutate("(loss / k).backward()", "loss.backward()",
                hint=Hint("每个 micro-batch 的 loss 没有除以 micro-batch 数，累积的梯度大了 k 倍。",
                    "Each micro-batch's loss is not divided by their number, so the accumulated gradient is k times too big.")),
            "clips every micro-batch": mutate(CLIP, textwrap.indent(CLIP, "    "),
                hint=Hint("每个 micro-batch 之后都做了梯度裁剪；应在累积完成后只裁剪一次。",
                    "The gradient is clipped after every micro-batch; clip once, after accumulating them all.")),
            "zero_grad inside the loop (only the last micro-batch counts)": mutate(
                {ZERO: "", "    for x, y in micro_batches:\n": "    for x, y in micro_batches:\n    " + ZERO},
                hint=Hint("zero_grad 放在循环里，每次都清掉之前的梯度，只剩最后一个 micro-batch 的。",
                    "zero_grad inside the loop wipes the earlier gradients, so only the last micro-batch counts.")),
            "never clears old gradients": mutate(ZERO, "",
                hint=Hint("从不清除旧梯度，上一步残留的梯度被加进了这一步。",
                    "Old gradients are never cleared, so the previous step's gradients leak into this one.")),
            "returns the mean of the scaled losses": mutate("total += loss.item()", "total += loss.item() / k",
                hint=Hint("返回的是缩放后 loss 的平均（又除了一次 k），而不是各 micro-batch loss 的平均。",
                    "It returns the mean of the already scaled losses (divided by k twice), not of the micro-batch losses.")),
            "returns the norm after clipping": mutate(
                "    optimizer.step()", "    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), float('inf'))\n"
                                       "    optimizer.step()",
                hint=Hint("返回的是裁剪之后的梯度范数；应返回裁剪前的总范数。",
                    "It returns the gradient norm after clipping; the total norm before clipping is asked for.")),
        },
    ),
    Exercise(
        grade_id="ch01_evaluate_test", functions=("evaluate",), points=3,
        cases=(
            Case("model in train mode, uneven batches", {"seed": 0, "start_training": True, "sizes": [16, 16, 5]}),
            Case("model already in eval mode", {"seed": 1, "start_training": False, "sizes": [8, 3]},
                 edge="the model starts in eval mode"),
            Case("one large batch, train mode", {"seed": 2, "start_training": True, "sizes": [40]}),
            Case("a batch of one example, train mode", {"seed": 3, "start_training": True, "sizes": [7, 1]},
                 edge="a batch of size 1 (batch norm cannot use batch statistics there) beside one of 7"),
        ),
        probe=probe_evaluate, judge=allclose(rtol=1e-5, atol=1e-6),
        mutants={
            "forgets model.eval() (dropout and batch-norm updates on)": mutate("    model.eval()\n", "",
                hint=Hint("忘了调用 model.eval()：dropout 仍在生效，batch-norm 仍在更新统计量。",
                    "model.eval() is forgotten: dropout stays on and batch-norm keeps updating its statistics.")),
            "forgets torch.no_grad()": mutate("with torch.no_grad():", "if True:",
                hint=Hint("忘了 torch.no_grad()，评估时也在构建计算图。",
                    "torch.no_grad() is forgotten, so evaluation builds an autograd graph.")),
            "leaves the model in eval mode": mutate("model.train(was_training)", "pass",
                hint=Hint("评估后把模型留在了 eval 模式；应恢复它原来的训练/评估状态。",
                    "The model is left in eval mode; its previous training mode must be restored.")),
            "always switches back to train mode": mutate(
                "model.train(was_training)", "model.train()",
                hint=Hint(zh="结束时恢复调用前的模式：原本在 eval 模式的模型不能被切回 train。",
                          en="Restore the mode the model had before the call: a model that arrived in eval mode must "
                             "not come back in train mode.")),
            "averages batch means (ignores batch sizes)": mutate({
                "total_loss += loss_fn(out, y).item() * n": "total_loss += loss_fn(out, y).item()",
                "correct += (out.argmax(dim=-1) == y).sum().item()": "correct += (out.argmax(dim=-1) == y).float().mean().item()",
                "count += n": "count += 1"},
                hint=Hint("对各 batch 的均值再取平均，忽略了 batch 大小不同（最后一个 batch 往往更小）。",
                    "Batch means are averaged, ignoring that batches differ in size (the last one is often smaller).")),
        },
    ),
    Exercise(
        grade_id="ch01_warmup_cosine_test", functions=("warmup_cosine_lr",), points=2,
        bans=(("transformers.optimization", "get_cosine_schedule_with_warmup", "transformers' cosine schedule"),
              ("transformers.optimization", "get_cosine_with_min_lr_schedule_with_warmup", "transformers' cosine schedule"),
              ("transformers", "get_cosine_schedule_with_warmup", "transformers' cosine schedule"),
              ("transformers", "get_cosine_with_min_lr_schedule_with_warmup", "transformers' cosine schedule"),
              ("torch.optim.lr_scheduler.LRScheduler", "__init__", "a torch.optim.lr_scheduler scheduler")),
        cases=(
            Case("10 warmup of 100 steps", {"base_lr": 3e-4, "warmup": 10, "total": 100, "min_lr": 0.0}),
            Case("no warmup", {"base_lr": 1e-3, "warmup": 0, "total": 50, "min_lr": 0.0}, edge="warmup_steps = 0"),
            Case("with a floor (min_lr)", {"base_lr": 5e-4, "warmup": 5, "total": 40, "min_lr": 5e-5},
                 edge="min_lr > 0: step = total_steps lands on min_lr"),
            Case("long warmup", {"base_lr": 1.0, "warmup": 30, "total": 37, "min_lr": 0.1},
                 edge="warmup_steps close to total_steps (30 of 37): the cosine spans 7 steps"),
            Case("a single warmup step", {"base_lr": 2e-3, "warmup": 1, "total": 12, "min_lr": 0.0},
                 edge="warmup_steps = 1: only step 0 is warming up"),
        ),
        probe=probe_warmup_cosine, judge=allclose(rtol=1e-6, atol=1e-9),  # float32 arithmetic passes
        mutants={
            "warmup off by one ((step+1)/warmup)": mutate("base_lr * step / warmup_steps",
                                                          "base_lr * (step + 1) / warmup_steps",
                hint=Hint("warmup 差一位：第 0 步的学习率应为 0。",
                    "The warmup is off by one: the learning rate at step 0 should be 0.")),
            "cosine progress over total_steps": mutate(
                "progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)", "progress = step / total_steps",
                hint=Hint("余弦进度按 total_steps 计算，没有扣除 warmup 的步数。",
                    "The cosine progress runs over total_steps instead of the steps after the warmup.")),
            "floor ignored": mutate("return min_lr + (base_lr - min_lr) * 0.5", "return base_lr * 0.5",
                hint=Hint("忽略了最低学习率 min_lr，余弦衰减到 0。", "The floor min_lr is ignored, so the cosine decays to 0.")),
            "warmup starts at base_lr / warmup (step 0 not 0)": mutate("base_lr * step / warmup_steps",
                                                                       "base_lr * max(step, 1) / warmup_steps",
                hint=Hint("warmup 从 base_lr/warmup 开始，第 0 步不是 0。",
                    "The warmup starts at base_lr / warmup_steps; step 0 should give 0.")),
            "divides by zero without warmup": mutate("if step < warmup_steps:", "if step / warmup_steps < 1:",
                hint=Hint("warmup_steps 为 0 时除以 0。", "With warmup_steps = 0 it divides by zero.")),
        },
    ),
    Exercise(
        grade_id="ch01_adamw_test", functions=("adamw_update",), points=3,
        bans=(("torch.optim.AdamW", "step", "torch.optim.AdamW"), ("torch.optim.Adam", "step", "torch.optim.Adam"),
              ("torch.optim.adamw", "adamw", "torch.optim.adamw.adamw")),
        cases=with_defaults(
            {"lr": 1e-2, "betas": [0.9, 0.999], "eps": 1e-8, "grad_scale": 1.0},
            Case("5 steps, default betas", {"seed": 0, "shape": [7], "steps": 5, "wd": 0.01}),
            Case("strong weight decay", {"seed": 1, "shape": [3, 4], "steps": 8, "lr": 5e-2, "betas": [0.9, 0.99],
                                         "wd": 0.5, "grad_scale": 0.1},
                 edge="weight decay 0.5 against gradients of 0.1: the decay dominates the update"),
            Case("tiny gradients (eps matters)", {"seed": 2, "shape": [6], "steps": 4, "lr": 1e-3, "betas": [0.8, 0.95],
                                                  "eps": 1e-3, "wd": 0.0, "grad_scale": 1e-4},
                 edge="gradients of 1e-4 with eps = 1e-3: eps dominates the denominator"),
            Case("a single step", {"seed": 4, "shape": [5], "steps": 1, "wd": 0.05},
                 edge="t = 1 only: 1 - beta^t at its smallest (0.1 and 0.001)"),
            Case("many steps", {"seed": 3, "shape": [2, 3], "steps": 30, "lr": 3e-3, "wd": 0.1, "grad_scale": 2.0}),
        ),
        probe=probe_adamw, judge=allclose(rtol=1e-4, atol=1e-6),
        mutants={
            "Adam with L2 instead of decoupled decay": mutate("    param = param * (1.0 - lr * weight_decay)\n",
                                                              "    grad = grad + weight_decay * param\n",
                hint=Hint("把权重衰减加进了梯度（Adam + L2），而 AdamW 是直接对参数做解耦衰减。",
                    "Weight decay is added to the gradient (Adam with L2); AdamW decays the parameters directly (decoupled).")),
            "no bias correction": mutate({"bias1 = 1.0 - beta1 ** step": "bias1 = 1.0",
                                          "bias2 = 1.0 - beta2 ** step": "bias2 = 1.0"},
                hint=Hint("没有做偏差校正，早期步骤的一、二阶矩偏向 0。",
                    "There is no bias correction, so the early moment estimates are biased towards 0.")),
            "eps inside the square root": mutate("denom = (exp_avg_sq / bias2).sqrt() + eps",
                                                 "denom = (exp_avg_sq / bias2 + eps).sqrt()",
                hint=Hint("eps 放在了平方根里面；PyTorch 把 eps 加在平方根之后。",
                    "eps is inside the square root; PyTorch adds it after the square root.")),
            "weight decay not scaled by the learning rate": mutate("(1.0 - lr * weight_decay)", "(1.0 - weight_decay)",
                hint=Hint("权重衰减没有乘学习率。", "The weight decay is not scaled by the learning rate.")),
            "bias correction with a 0-based t (beta ** (step + 1))": mutate({
                "bias1 = 1.0 - beta1 ** step": "bias1 = 1.0 - beta1 ** (step + 1)",
                "bias2 = 1.0 - beta2 ** step": "bias2 = 1.0 - beta2 ** (step + 1)"},
                hint=Hint(zh="t 从 1 开始计数：第一步的修正是 1 - β^1，修正在第一步最大。",
                          en="t counts from 1: the first step divides by 1 - beta^1, where the correction is largest.")),
            "uses torch.optim.AdamW": whole("""
                def adamw_update(param, grad, exp_avg, exp_avg_sq, step, lr, betas=(0.9, 0.999), eps=1e-8,
                                 weight_decay=0.01):
                    w = torch.nn.Parameter(param.clone())
                    opt = torch.optim.AdamW([w], lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
                    opt.state[w] = {"step": torch.tensor(float(step - 1)), "exp_avg": exp_avg.clone(),
                                    "exp_avg_sq": exp_avg_sq.clone()}
                    w.grad = grad.clone()
                    opt.step()
                    return w.detach(), opt.state[w]["exp_avg"], opt.state[w]["exp_avg_sq"]
            """,
                hint=Hint("直接调用了 torch.optim.AdamW；本练习要求自己实现，评分时它被禁用。",
                    "It calls torch.optim.AdamW, which this exercise asks you to write (it is blocked when graded).")),
            "updates the input tensors in place": mutate({
                "param = param * (1.0 - lr * weight_decay)": "param.mul_(1.0 - lr * weight_decay)",
                "exp_avg = beta1 * exp_avg + (1.0 - beta1) * grad": "exp_avg.mul_(beta1).add_((1.0 - beta1) * grad)",
                "exp_avg_sq = beta2 * exp_avg_sq + (1.0 - beta2) * grad * grad":
                    "exp_avg_sq.mul_(beta2).add_((1.0 - beta2) * grad * grad)",
                "param = param - lr * (exp_avg / bias1) / denom": "param.sub_(lr * (exp_avg / bias1) / denom)"},
                hint=Hint("原地修改了输入张量（param、exp_avg、exp_avg_sq）；应返回新张量。",
                    "The input tensors (param, exp_avg, exp_avg_sq) are updated in place instead of returning new ones.")),
        },
    ),
    Exercise(
        grade_id="ch01_early_stopping_test", functions=("EarlyStopping",), points=3,
        cases=with_defaults(
            {"patience": 2, "min_delta": 0.0, "mode": "min"},
            Case("loss improves then plateaus", {"history": [1.0, 0.8, 0.7, 0.75, 0.72, 0.71, 0.6]}),
            Case("accuracy (mode max)", {"patience": 3, "mode": "max",
                                         "history": [0.5, 0.6, 0.58, 0.65, 0.64, 0.64, 0.63, 0.9]},
                 edge="mode max with min_delta = 0 and a repeated metric"),
            Case("min_delta decides", {"min_delta": 0.05, "history": [1.0, 0.97, 0.96, 0.9, 0.89, 0.88]}),
            Case("patience 1", {"patience": 1, "history": [0.5, 0.4, 0.45, 0.3]},
                 edge="patience = 1: the first bad epoch stops"),
            Case("never stops", {"patience": 3, "history": [5.0, 4.0, 3.0, 2.0]},
                 edge="never stops: the best epoch is the last one, restored after the loop"),
            Case("a gain of exactly min_delta (mode min)", {"min_delta": 0.25, "history": [1.0, 0.75, 0.75, 0.5, 0.5]},
                 edge="metric = best - min_delta exactly (0.75 = 1.0 - 0.25): not an improvement"),
            Case("a gain of exactly min_delta (mode max)", {"min_delta": 0.25, "mode": "max",
                                                            "history": [0.5, 0.75, 0.75, 1.0, 1.0]},
                 edge="metric = best + min_delta exactly (0.75 = 0.5 + 0.25): not an improvement"),
        ),
        probe=probe_early_stopping, judge=allclose(rtol=0, atol=0),
        mutants={
            "keeps a reference to the live weights, not a copy": mutate(
                "{k: v.detach().clone() for k, v in model.state_dict().items()}", "model.state_dict()",
                hint=Hint("保存的是指向当前权重的引用而不是拷贝，之后的训练会改掉“最佳”权重。",
                    "It keeps a reference to the live weights, not a copy, so later training overwrites the best weights.")),
            "patience off by one (stops one epoch late)": mutate("return self.bad_epochs >= self.patience",
                                                                 "return self.bad_epochs > self.patience",
                hint=Hint("patience 差一位，晚了一个 epoch 才停止。", "Patience is off by one: it stops one epoch late.")),
            "min_delta ignored": mutate({"metric < self.best - self.min_delta": "metric < self.best",
                                         "metric > self.best + self.min_delta": "metric > self.best"},
                hint=Hint("忽略了 min_delta：微小的改进也被算作进步。",
                    "min_delta is ignored, so a tiny change counts as an improvement.")),
            "mode ignored (always minimises)": mutate('elif self.mode == "min":', "elif True:",
                hint=Hint("忽略了 mode，总是按越小越好判断（mode=max 时方向反了）。",
                    "mode is ignored and it always minimises, so with mode max it goes the wrong way.")),
            "a gain of exactly min_delta counts (<= and >=)": mutate({
                "metric < self.best - self.min_delta": "metric <= self.best - self.min_delta",
                "metric > self.best + self.min_delta": "metric >= self.best + self.min_delta"},
                hint=Hint(zh="改进的比较是严格的：恰好好了 min_delta 不算改进。",
                          en="The comparison is strict: a gain of exactly min_delta is not an improvement.")),
        },
    ),
]

# ============================================================================ rule table and alternatives

R = Rule
RULES = {
    "ch01_log_softmax_test": (
        R(r"\log \mathrm{softmax}(x)_i = x_i - \log\sum_j e^{x_j}",
          ("small logits, last dim", "3-d input, reduce over dim 1"),
          {"max subtracted but log-sum-exp forgotten": "out"}),
        R("Subtract the row maximum $m$ first", ("logits of magnitude 1e4", "very negative logits (-1e4 scale, dim 0)"),
          {"log of softmax (overflows)": "NaN", "subtracts the global maximum, not each row's": "out"}),
        R("reducing over `dim`", ("3-d input, reduce over dim 1", "very negative logits (-1e4 scale, dim 0)"),
          {"always reduces the last dim": "out"}),
        R("Do not call `torch.log_softmax`", ("small logits, last dim", "logits of magnitude 1e4"),
          {"uses the library": "calls"}),
    ),
    "ch01_cross_entropy_test": (
        R("ignored rows count neither in the sum nor in $n$", ("ignored rows", "every row but one ignored"),
          {"ignored rows counted in the mean": "loss"}),
        R("whose target is not `ignore_index`", ("smoothing and ignored rows, custom ignore index",),
          {"ignore index hard-coded to -100": "loss"}),
        R(r"the smoothing mass $\varepsilon$ is spread over **all** $C$ classes",
          ("label smoothing 0.1", "label smoothing 1 (uniform target)", "logits of magnitude 1e4"),
          {"smoothing spread over the C-1 wrong classes": "loss", "smoothing ignored": "loss"}),
        R("not `F.cross_entropy` or `F.nll_loss`", ("plain, no ignored rows", "every row but one ignored"),
          {"uses F.cross_entropy": "calls"}),
    ),
    "ch01_accumulated_step_test": (
        R("clears any gradient left from before", ("stale gradients from a previous step",),
          {"never clears old gradients": "grad_norm"}),
        R("scales it by `1/k` and back-propagates", ("4 micro-batches, no clipping", "six micro-batches of one example"),
          {"loss not divided by the number of micro-batches": "grad_norm",
           "zero_grad inside the loop (only the last micro-batch counts)": "grad_norm"}),
        R("Clipping must happen **once**, on the accumulated gradient", ("3 micro-batches, clipping active",
                                                                          "clipping active on many micro-batches"),
          {"clips every micro-batch": "grad_norm"}),
        R("the mean of the **unscaled** micro-batch losses", ("4 micro-batches, no clipping",
                                                               "six micro-batches of one example"),
          {"returns the mean of the scaled losses": "loss"}),
        R("gradient norm **before** clipping", ("3 micro-batches, clipping active",
                                                 "clipping active on many micro-batches"),
          {"returns the norm after clipping": "grad_norm"}),
    ),
    "ch01_evaluate_test": (
        R("`model.eval()` switches layers to inference behaviour", ("model in train mode, uneven batches",
                                                                     "a batch of one example, train mode"),
          {"forgets model.eval() (dropout and batch-norm updates on)": "loss"}),
        R("`torch.no_grad()` stops autograd from recording the graph", ("model already in eval mode",
                                                                          "a batch of one example, train mode"),
          {"forgets torch.no_grad()": "autograd"}),
        R("the model must be in the same mode as before", ("model in train mode, uneven batches",
                                                           "model already in eval mode"),
          {"leaves the model in eval mode": "mode", "always switches back to train mode": "mode"}),
        R("weight each batch's mean loss by its size", ("model in train mode, uneven batches",
                                                        "a batch of one example, train mode"),
          {"averages batch means (ignores batch sizes)": "loss"}),
    ),
    "ch01_warmup_cosine_test": (
        R("so step 0 has learning rate 0", ("10 warmup of 100 steps", "a single warmup step"),
          {"warmup starts at base_lr / warmup (step 0 not 0)": "lrs", "warmup off by one ((step+1)/warmup)": "lrs"}),
        R(r"$p = (\text{step} - \text{warmup\_steps}) / (\text{total\_steps} - \text{warmup\_steps})$",
          ("10 warmup of 100 steps", "long warmup"), {"cosine progress over total_steps": "lrs"}),
        R(r"\text{min\_lr} + (\text{base\_lr} - \text{min\_lr})", ("with a floor (min_lr)", "long warmup"),
          {"floor ignored": "lrs"}),
        R("`warmup_steps` may be 0", ("no warmup",), {"divides by zero without warmup": "ZeroDivisionError"}),
    ),
    "ch01_adamw_test": (
        R(r"it shrinks the weights directly by $\eta\lambda\theta$", ("strong weight decay",),
          {"Adam with L2 instead of decoupled decay": "param",
           "weight decay not scaled by the learning rate": "param"}),
        R(r"dividing by $1-\beta^t$ removes that bias", ("5 steps, default betas", "a single step"),
          {"no bias correction": "param", "bias correction with a 0-based t (beta ** (step + 1))": "param"}),
        R(r"{\sqrt{v/(1-\beta_2^t)} + \epsilon}", ("tiny gradients (eps matters)",),
          {"eps inside the square root": "param"}),
        R("do not modify the inputs in place", ("5 steps, default betas", "a single step"),
          {"updates the input tensors in place": "modified its inputs in place"}),
        R("Do not use `torch.optim`", ("5 steps, default betas", "a single step"), {"uses torch.optim.AdamW": "calls"}),
    ),
    "ch01_early_stopping_test": (
        R("The copy must be a real copy", ("loss improves then plateaus", "never stops"),
          {"keeps a reference to the live weights, not a copy": "restored_weight"}),
        R("Return `True` when the count of consecutive bad epochs has reached `patience`",
          ("patience 1", "never stops"), {"patience off by one (stops one epoch late)": "stopped_at"}),
        R("`metric < best - min_delta`", ("min_delta decides", "a gain of exactly min_delta (mode min)"),
          {"min_delta ignored": "stopped_at", "a gain of exactly min_delta counts (<= and >=)": "stopped_at"}),
        R("`metric > best + min_delta` (mode `\"max\"`)", ("accuracy (mode max)", "a gain of exactly min_delta (mode max)"),
          {"mode ignored (always minimises)": "stopped_at"}),
    ),
}

ALTERNATIVES = {
    "ch01_log_softmax_test": {"float64 inside, logits minus log-sum-exp": """
        def log_softmax(logits, dim=-1):
            x = logits.double()
            m = x.max(dim=dim, keepdim=True).values
            lse = m + torch.log(torch.sum(torch.exp(x - m), dim=dim, keepdim=True))
            return (x - lse).to(logits.dtype)
    """},
    "ch01_cross_entropy_test": {"a Python loop over rows": """
        def cross_entropy(logits, targets, ignore_index=-100, label_smoothing=0.0):
            total, n = logits.new_zeros(()), 0
            for row, t in zip(logits, targets.tolist()):
                if t == ignore_index:
                    continue
                logp = row - row.max() - (row - row.max()).exp().sum().log()
                total = total - (1 - label_smoothing) * logp[t] - label_smoothing * logp.sum() / row.numel()
                n += 1
            return total / n
    """},
    "ch01_accumulated_step_test": {"set_to_none=False, limit passed as a huge float": """
        def accumulated_step(model, loss_fn, optimizer, micro_batches, max_norm=None):
            for p in model.parameters():
                if p.grad is not None:
                    p.grad.zero_()
            losses = []
            for x, y in micro_batches:
                loss = loss_fn(model(x), y)
                loss.div(len(micro_batches)).backward()
                losses.append(loss.detach())
            norm = torch.nn.utils.clip_grad_norm_(list(model.parameters()), 1e30 if max_norm is None else max_norm)
            optimizer.step()
            return torch.stack(losses).mean().item(), norm.item()
    """},
    "ch01_evaluate_test": {"inference_mode, tensors accumulated": """
        def evaluate(model, batches, loss_fn):
            mode = model.training
            model.train(False)
            losses, hits, sizes = [], [], []
            with torch.inference_mode():
                for x, y in batches:
                    out = model(x)
                    losses.append(loss_fn(out, y) * len(y))
                    hits.append((out.argmax(1) == y).sum())
                    sizes.append(len(y))
            model.train(mode)
            return float(sum(losses) / sum(sizes)), float(sum(hits)) / sum(sizes)
    """},
    "ch01_warmup_cosine_test": {"float32 torch arithmetic": """
        def warmup_cosine_lr(step, base_lr, warmup_steps, total_steps, min_lr=0.0):
            s = torch.tensor(float(step))
            if step < warmup_steps:
                return (torch.tensor(base_lr) * s / warmup_steps).item()
            p = (s - warmup_steps) / max(1, total_steps - warmup_steps)
            return (min_lr + (base_lr - min_lr) * 0.5 * (1 + torch.cos(torch.pi * p))).item()
    """},
    "ch01_adamw_test": {"torch's own formulation (lerp, addcdiv, step size)": """
        def adamw_update(param, grad, exp_avg, exp_avg_sq, step, lr, betas=(0.9, 0.999), eps=1e-8,
                         weight_decay=0.01):
            b1, b2 = betas
            m = exp_avg.lerp(grad, 1 - b1)
            v = exp_avg_sq.mul(b2).addcmul(grad, grad, value=1 - b2)
            denom = v.sqrt() / math.sqrt(1 - b2 ** step) + eps
            p = param.mul(1 - lr * weight_decay).addcdiv(m, denom, value=-lr / (1 - b1 ** step))
            return p, m, v
    """},
    "ch01_early_stopping_test": {"deepcopy of the state and a sign trick": """
        import copy

        class EarlyStopping:
            def __init__(self, patience, min_delta=0.0, mode="min"):
                self.patience, self.min_delta = patience, min_delta
                self.sign = 1.0 if mode == "min" else -1.0
                self.best, self.best_epoch, self.history, self.saved = None, -1, [], None

            def step(self, metric, model):
                self.history.append(metric)
                if self.best is None or self.sign * (self.best - metric) > self.min_delta:
                    self.best, self.best_epoch = metric, len(self.history) - 1
                    self.saved = copy.deepcopy(model.state_dict())
                return len(self.history) - 1 - self.best_epoch >= self.patience

            def restore(self, model):
                model.load_state_dict(self.saved)
    """},
}


# Library implementations the exercises imitate (used by the test suite, in the trusted process).
ORACLES = {"ch01_log_softmax_test": oracle_log_softmax, "ch01_cross_entropy_test": oracle_cross_entropy,
           "ch01_accumulated_step_test": oracle_accumulated_step, "ch01_evaluate_test": oracle_evaluate,
           "ch01_warmup_cosine_test": oracle_warmup_cosine, "ch01_adamw_test": oracle_adamw}

CHAPTER = Chapter("ch01_training", "ch01_exercises.ipynb", EXERCISES, rules=RULES, alternatives=ALTERNATIVES,
                  oracles=ORACLES)

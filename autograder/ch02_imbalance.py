"""Trusted spec of Chapter 2's graded cells (solutions/ch02_imbalance/ch02_exercises.ipynb).

Probes run inside the sandbox next to the student's code and are self-contained (imports inside). Oracles run in
the trusted test process: scikit-learn's class and sample weights, F1 and precision-recall curve, torchvision's
sigmoid focal loss (as documented) and cross-entropy; the test suite proves the solution agrees with them.
"""
from llmprep.grading.spec import Case, Chapter, Exercise, Hint, Rule, allclose, mutate, with_defaults


# ============================================================================ 1 class weights

def probe_class_weights(ns, params):
    import torch

    fn = ns["class_weights"]
    counts = torch.tensor(params["counts"], dtype=torch.int64)
    kwargs = {"beta": params["beta"]} if "beta" in params else {}
    try:
        out = fn(counts.clone(), params["scheme"], **kwargs)
    except ValueError:
        return {"raised": True}
    w = torch.as_tensor(out, dtype=torch.float64).reshape(-1)
    return {"raised": False, "weights": w}


def oracle_class_weights():
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    def reference(counts, scheme, beta=0.999):
        counts = np.asarray(counts, dtype=np.int64)
        k = len(counts)
        if scheme == "inverse":
            y = np.repeat(np.arange(k), counts)
            return compute_class_weight("balanced", classes=np.arange(k), y=y)  # raises ValueError on a 0 count
        if scheme == "effective":
            if (counts <= 0).any():
                raise ValueError("every class needs at least one example")
            w = (1.0 - beta) / (1.0 - beta ** counts.astype(np.float64))
            return w * k / w.sum()
        raise ValueError(f"unknown scheme {scheme!r}")

    return {"class_weights": reference}


# ============================================================================ 2 sampler weights

def probe_sampler_weights(ns, params):
    import torch

    fn = ns["sampler_weights"]
    labels = torch.tensor(params["labels"], dtype=torch.int64)
    w = torch.as_tensor(fn(labels.clone())).detach().to(torch.float64).reshape(-1)
    shape_ok = w.shape == labels.shape
    if not shape_ok:
        return {"one_weight_per_example": False}
    classes = torch.unique(labels)
    freq = torch.stack([w[labels == c].sum() for c in classes]) / w.sum()  # exact expected class frequency
    return {"one_weight_per_example": True, "non_negative": bool((w >= 0).all()),
            "expected_class_frequency": freq}


def oracle_sampler_weights():
    import numpy as np
    from sklearn.utils.class_weight import compute_sample_weight

    return {"sampler_weights": lambda labels: np.asarray(compute_sample_weight("balanced", np.asarray(labels)))}


# ============================================================================ 3 sigmoid focal loss

def probe_sigmoid_focal(ns, params):
    import torch

    fn = ns["sigmoid_focal_loss"]
    g = torch.Generator().manual_seed(params["seed"])
    shape = params["shape"]
    logits = (torch.randn(*shape, generator=g) * params["scale"]).requires_grad_(True)
    targets = (torch.rand(*shape, generator=g) < params["pos_frac"]).float()
    out = fn(logits, targets.clone(), alpha=params["alpha"], gamma=params["gamma"], reduction=params["reduction"])
    out = torch.as_tensor(out)
    result = {"loss": out.detach()}
    if params.get("grad"):
        (grad,) = torch.autograd.grad(out.sum(), logits)
        result["grad"] = grad
    return result


def oracle_sigmoid_focal():
    import torch
    import torch.nn.functional as F

    bce = F.binary_cross_entropy_with_logits

    def reference(inputs, targets, alpha=0.25, gamma=2.0, reduction="mean"):
        """torchvision.ops.sigmoid_focal_loss, as documented (torchvision is not installable here)."""
        if gamma == 0 and alpha < 0:  # the focal loss reduces to binary cross-entropy
            return bce(inputs, targets, reduction=reduction)
        p = torch.sigmoid(inputs)
        p_t = p * targets + (1 - p) * (1 - targets)
        loss = bce(inputs, targets, reduction="none") * ((1 - p_t) ** gamma)
        if alpha >= 0:
            loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
        if reduction in ("mean", "sum"):
            return loss.mean() if reduction == "mean" else loss.sum()
        return loss

    return {"sigmoid_focal_loss": reference}


# ============================================================================ 4 softmax focal loss

def probe_softmax_focal(ns, params):
    import torch

    fn = ns["softmax_focal_loss"]
    g = torch.Generator().manual_seed(params["seed"])
    n, c = params["n"], params["c"]
    logits = (torch.randn(n, c, generator=g) * params["scale"]).requires_grad_(True)
    targets = torch.randint(0, c, (n,), generator=g)
    out = torch.as_tensor(fn(logits, targets.clone(), gamma=params["gamma"])).reshape(())
    (grad,) = torch.autograd.grad(out, logits)
    return {"loss": out.detach(), "grad": grad}


def oracle_softmax_focal():
    import torch
    import torch.nn.functional as F

    ce = F.cross_entropy

    def reference(logits, targets, gamma=2.0):
        if gamma == 0:
            return ce(logits, targets)
        nll = ce(logits, targets, reduction="none")
        return ((1 - torch.exp(-nll)) ** gamma * nll).mean()

    return {"softmax_focal_loss": reference}


# ============================================================================ 5 macro-F1

def probe_macro_f1(ns, params):
    import torch

    fn = ns["macro_f1"]
    conf = torch.tensor(params["confusion"], dtype=torch.int64)
    out = fn(conf.clone())
    return {"macro_f1": torch.as_tensor(out, dtype=torch.float64).reshape(())}


def oracle_macro_f1():
    import numpy as np
    from sklearn.metrics import f1_score

    def reference(confusion):
        c = np.asarray(confusion)
        true, pred = np.indices(c.shape)  # one example per count in each cell: y_true = row, y_pred = column
        y_true, y_pred = np.repeat(true.ravel(), c.ravel()), np.repeat(pred.ravel(), c.ravel())
        return f1_score(y_true, y_pred, labels=np.arange(len(c)), average="macro", zero_division=0)

    return {"macro_f1": reference}


# ============================================================================ 6 logit-adjusted loss

def probe_logit_adjusted(ns, params):
    import torch

    fn = ns["logit_adjusted_loss"]
    g = torch.Generator().manual_seed(params["seed"])
    n = params["n"]
    counts = torch.tensor(params["counts"], dtype=torch.float64)
    c = len(counts)
    priors = (counts / counts.sum()).float()
    logits = (torch.randn(n, c, generator=g) * params["scale"]).requires_grad_(True)
    targets = torch.multinomial(priors, n, replacement=True, generator=g)
    before = priors.clone()
    out = torch.as_tensor(fn(logits, targets.clone(), priors, tau=params["tau"])).reshape(())
    (grad,) = torch.autograd.grad(out, logits)
    return {"loss": out.detach(), "grad": grad, "priors_untouched": bool(torch.equal(before, priors))}


def oracle_logit_adjusted():
    import torch
    import torch.nn.functional as F

    ce = F.cross_entropy
    return {"logit_adjusted_loss": lambda logits, targets, class_priors, tau=1.0:
            ce(logits + tau * torch.log(class_priors), targets)}


# ============================================================================ 7 best threshold

def probe_best_threshold(ns, params):
    import torch

    fn = ns["best_f1_threshold"]
    if "seed" in params:
        g = torch.Generator().manual_seed(params["seed"])
        n = params["n"]
        labels = (torch.rand(n, generator=g) < params["pos_frac"]).long()
        # scores rounded to a coarse grid so that many examples share a score
        scores = ((torch.randn(n, generator=g) + params["shift"] * labels) * params["grid"]).round() / params["grid"]
        scores = scores.double()
    else:
        scores = torch.tensor(params["scores"], dtype=torch.float64)
        labels = torch.tensor(params["labels"], dtype=torch.int64)
    try:
        t, f1 = fn(scores.clone(), labels.clone())
    except ValueError:
        return {"raised": True}
    return {"raised": False, "threshold": float(t), "f1": float(f1)}


def oracle_best_threshold():
    import numpy as np
    from sklearn.metrics import precision_recall_curve

    def reference(scores, labels):
        labels = np.asarray(labels)
        if labels.min() == labels.max():
            raise ValueError("need both classes")
        precision, recall, thresholds = precision_recall_curve(labels, np.asarray(scores))
        p, r = precision[:-1], recall[:-1]  # the last point (recall 0) has no threshold
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
        best = f1.max()
        i = int(np.flatnonzero(f1 >= best - 1e-12)[0])  # thresholds increase: the first is the smallest
        return float(thresholds[i]), float(f1[i])

    return {"best_f1_threshold": reference}


# ============================================================================ the spec

# Mutants are edits of the solution's own functions (read from the solution notebook); a snippet used thrice:
F1_MEAN = "return float(f1.mean())"
# a correct loop over the distinct scores: the alternative, and the base of the strict-threshold mutant
BRUTE_FORCE = """
        def best_f1_threshold(scores, labels):
            y = labels.tolist()
            if len(set(y)) < 2:
                raise ValueError("both classes needed")
            best_t, best_f1 = None, -1.0
            for t in sorted(set(scores.tolist())):
                pred = [s >= t for s in scores.tolist()]
                tp = sum(p and l == 1 for p, l in zip(pred, y))
                fp = sum(p and l == 0 for p, l in zip(pred, y))
                fn = sum((not p) and l == 1 for p, l in zip(pred, y))
                f1 = 2 * tp / (2 * tp + fp + fn)
                if f1 > best_f1:
                    best_t, best_f1 = t, f1
            return best_t, best_f1
    """

EXERCISES = [
    Exercise(
        grade_id="ch02_class_weights_test", functions=("class_weights",), points=2,
        cases=(
            Case("inverse, binary 95/5", {"counts": [950, 50], "scheme": "inverse"}),
            Case("inverse, long tail of 5 classes", {"counts": [500, 200, 60, 20, 5], "scheme": "inverse"}),
            Case("effective, beta 0.999", {"counts": [500, 200, 60, 20, 5], "scheme": "effective", "beta": 0.999}),
            Case("effective, beta 0 (uniform)", {"counts": [90, 9, 1], "scheme": "effective", "beta": 0.0}),
            Case("effective, beta 0.9999, large counts", {"counts": [5000, 1200, 300, 40], "scheme": "effective",
                                                          "beta": 0.9999}),
            Case("effective, default beta", {"counts": [3000, 30, 3], "scheme": "effective"}),
            Case("effective, beta 1 - 1e-7, counts 1 to 1e6", {"counts": [1, 2, 5, 1000000], "scheme": "effective",
                                                               "beta": 0.9999999},
                 edge="beta just below 1 and a class of 1e6: float32 gets its weight (about 2.5e-6) 1% wrong"),
            Case("a class with no examples (inverse)", {"counts": [100, 0, 10], "scheme": "inverse"}, edge="a count of 0"),
            Case("a class with no examples (effective)", {"counts": [100, 10, 0], "scheme": "effective",
                                                          "beta": 0.99}, edge="a count of 0"),
            Case("unknown scheme", {"counts": [10, 5], "scheme": "sqrt"}, edge="a scheme outside the two named"),
            Case("a single class (inverse)", {"counts": [7], "scheme": "inverse"}, edge="K = 1: the weight is 1"),
            Case("a single class (effective)", {"counts": [40], "scheme": "effective", "beta": 0.9},
                 edge="K = 1: the normalised weight is 1"),
            Case("inverse, a class of one example", {"counts": [1, 999], "scheme": "inverse"},
                 edge="n_c = 1 beside a class of 999"),
        ),
        probe=probe_class_weights, judge=allclose(rtol=1e-4, atol=1e-12),  # relative: the weight of 1e6 examples is ~1e-6
        mutants={
            "inverse frequency not normalised (1/n_c)": mutate("return n.sum() / (k * n)", "return 1.0 / n",
                hint=Hint("逆频率权重只用了 1/n_c，没有乘 N/K，每个类别的总权重不再是 N/K。",
                    "Inverse-frequency weights are plain 1/n_c, missing the factor N/K that gives each class total weight N/K.")),
            "effective number used as the weight (not its inverse)": mutate("w = (1.0 - beta) / (1.0 - beta ** n)",
                                                                            "w = (1.0 - beta ** n) / (1.0 - beta)",
                hint=Hint("直接把 effective number 当权重，应取它的倒数：大类的权重反而变大了。",
                    "The effective number itself is used as the weight instead of its inverse, so big classes weigh more.")),
            "effective weights not normalised to sum to K": mutate("return w * k / w.sum()", "return w",
                hint=Hint("effective 权重没有归一化到总和为 K。",
                    "The effective-number weights are not normalised to sum to K.")),
            "a zero count gives inf instead of ValueError": mutate(" or bool((n <= 0).any())", "",
                hint=Hint("某类计数为 0 时得到 inf 权重，而不是抛 ValueError。",
                    "A class with count 0 gets an inf weight instead of raising ValueError.")),
            "unknown scheme falls back to inverse": mutate('if scheme == "inverse":', 'if scheme != "effective":',
                hint=Hint("未知的 scheme 被当成 inverse，而不是抛 ValueError。",
                    "An unknown scheme falls back to inverse instead of raising ValueError.")),
            "computes in float32": mutate("dtype=torch.float64", "dtype=torch.float32",
                hint=Hint("用 float32 计算；题目要求用 float64，结果差在舍入误差上。",
                    "It computes in float32; the instructions ask for float64, and the results differ by rounding.")),
        },
    ),
    Exercise(
        grade_id="ch02_sampler_weights_test", functions=("sampler_weights",), points=2,
        cases=(
            Case("binary 95/5", {"labels": [0] * 95 + [1] * 5}),
            Case("long tail, shuffled", {"labels": [3, 0, 0, 1, 0, 2, 0, 1, 0, 0, 1, 0, 0, 2, 0, 0, 0, 1, 0, 0]}),
            Case("non-contiguous label values", {"labels": [7, 2, 2, 2, 9, 2, 2, 7, 2, 2, 2, 2]},
                 edge="label values 2, 7, 9: not 0..K-1"),
            Case("a class with a single example", {"labels": [0] * 40 + [1] * 9 + [2]},
                 edge="a class of one example beside one of 40"),
            Case("one class only", {"labels": [4, 4, 4, 4]}, edge="K = 1, label value 4"),
        ),
        probe=probe_sampler_weights, judge=allclose(rtol=1e-5, atol=1e-7),
        mutants={
            "one weight per class, not per example": mutate("counts[inverse]", "counts",
                hint=Hint("每个类别返回一个权重，而不是每个样本一个。",
                    "It returns one weight per class instead of one per example.")),
            "weights proportional to the class count": mutate("return 1.0 / counts[inverse]", "return counts[inverse]",
                hint=Hint("权重与类别数量成正比，大类被采得更多，方向反了。",
                    "Weights grow with the class count, so big classes are sampled even more: the wrong direction.")),
            "square-root sampling (1/sqrt(n_c))": mutate("counts[inverse].to(torch.float64)",
                                                         "counts[inverse].to(torch.float64).sqrt()",
                hint=Hint("用了平方根采样（1/√n_c），不是完全的逆频率。",
                    "This is square-root sampling (1 / sqrt(n_c)), not full inverse frequency.")),
            "assumes labels are 0..K-1": mutate(
                "_, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)",
                "inverse, counts = labels, torch.stack([(labels == c).sum() for c in range(len(torch.unique(labels)))])",
                hint=Hint("假设标签是 0..K−1；标签可以是任意的、不连续的类别 id。",
                    "It assumes labels are 0..K-1; labels may be any, non-contiguous class ids.")),
        },
    ),
    Exercise(
        grade_id="ch02_sigmoid_focal_test", functions=("sigmoid_focal_loss",), points=3,
        cases=with_defaults(
            {"scale": 2.0, "pos_frac": 0.3, "alpha": 0.25, "gamma": 2.0, "reduction": "none"},
            Case("defaults (alpha 0.25, gamma 2), mean", {"seed": 0, "shape": [64], "pos_frac": 0.1,
                                                          "reduction": "mean", "grad": True}),
            Case("gamma 0, alpha -1 (plain BCE), no reduction", {"seed": 1, "shape": [8, 5], "scale": 3.0,
                                                                  "alpha": -1.0, "gamma": 0.0, "grad": True}),
            Case("alpha 0.75, gamma 0.5, sum", {"seed": 2, "shape": [10, 3], "scale": 1.5, "pos_frac": 0.5,
                                                "alpha": 0.75, "gamma": 0.5, "reduction": "sum", "grad": True}),
            Case("alpha -1 (no class weighting), gamma 2", {"seed": 3, "shape": [32], "pos_frac": 0.2, "alpha": -1.0,
                                                            "reduction": "mean", "grad": True}),
            Case("alpha 0 (negatives only), gamma 1, none", {"seed": 5, "shape": [12], "pos_frac": 0.5, "alpha": 0.0,
                                                             "gamma": 1.0}, edge="alpha exactly 0 (weighting on)"),
            Case("alpha -0.5 (no class weighting), gamma 2", {"seed": 6, "shape": [3, 7], "alpha": -0.5},
                 edge="a negative alpha other than -1"),
            Case("logits of magnitude 100", {"seed": 4, "shape": [4, 6], "scale": 100.0},
                 edge="sigmoid saturates to 0 or 1 in float32"),
        ),
        probe=probe_sigmoid_focal, judge=allclose(rtol=1e-4, atol=1e-6),
        mutants={
            "alpha applied to the wrong class": mutate("alpha_t = alpha * targets + (1 - alpha) * (1 - targets)",
                                                       "alpha_t = alpha * (1 - targets) + (1 - alpha) * targets",
                hint=Hint("alpha 加到了错误的类别上：alpha 给正类，1−alpha 给负类。",
                    "alpha weights the wrong class: alpha goes to positives, 1 - alpha to negatives.")),
            "gamma on the wrong term (p_t ** gamma)": mutate("ce * (1 - p_t) ** gamma", "ce * p_t ** gamma",
                hint=Hint("调制因子用了 p_t^γ，加重的是容易样本而不是困难样本。",
                    "The modulating factor uses p_t, which up-weights the easy examples instead of the hard ones.")),
            "alpha missing": mutate("        loss = alpha_t * loss\n", "",
                hint=Hint("漏了 alpha_t 的类别加权。", "The class weighting alpha_t is missing.")),
            "log of the sigmoid (not stable)": mutate(
                'F.binary_cross_entropy_with_logits(logits, targets, reduction="none")',
                "-(targets * torch.log(p) + (1 - targets) * torch.log(1 - p))",
                hint=Hint("手写 log(sigmoid)，对大的 logits 不稳定（log 0 = −inf）。",
                    "The cross-entropy is written as log of a sigmoid, which breaks for large logits (log 0).")),
            "alpha = 0 treated as no weighting (alpha > 0)": mutate("if alpha >= 0:", "if alpha > 0:",
                hint=Hint("alpha = 0 被当成不加权；只有负的 alpha 才表示不加权。",
                    "alpha = 0 is treated as no weighting; only a negative alpha means no weighting.")),
            "only alpha == -1 means no weighting": mutate("if alpha >= 0:", "if alpha != -1:",
                hint=Hint("只有 alpha == −1 才不加权；任何负的 alpha 都应表示不加权。",
                    "Only alpha = -1 means no weighting here; any negative alpha should.")),
            "reduction ignored (always the mean)": mutate('if reduction == "mean":', "if True:",
                hint=Hint("忽略了 reduction 参数，总是取平均。",
                    "The reduction argument is ignored; it always returns the mean.")),
        },
    ),
    Exercise(
        grade_id="ch02_softmax_focal_test", functions=("softmax_focal_loss",), points=2,
        cases=(
            Case("gamma 0 is cross-entropy", {"seed": 0, "n": 16, "c": 5, "scale": 2.0, "gamma": 0.0},
                 edge="gamma = 0: exactly cross-entropy"),
            Case("gamma 2", {"seed": 1, "n": 32, "c": 4, "scale": 2.0, "gamma": 2.0}),
            Case("gamma 5, confident logits", {"seed": 2, "n": 12, "c": 3, "scale": 4.0, "gamma": 5.0}),
            Case("logits of magnitude 1e3", {"seed": 3, "n": 8, "c": 6, "scale": 1e3, "gamma": 1.0},
                 edge="|logits| ~ 1e3: softmax underflows to 0 in float32, log p in the thousands"),
            Case("one example, gamma 0.5", {"seed": 4, "n": 1, "c": 7, "scale": 1.0, "gamma": 0.5},
                 edge="N = 1, a fractional gamma"),
        ),
        probe=probe_softmax_focal, judge=allclose(rtol=1e-4, atol=1e-6),
        mutants={
            "(1 - p) replaced by p": mutate("(1 - p) ** gamma", "p ** gamma",
                hint=Hint("调制因子用了 p^γ 而不是 (1−p)^γ，放大的是容易样本。",
                    "The modulating factor uses p instead of 1 - p, so it up-weights the easy examples.")),
            "log of softmax (overflows)": mutate("F.log_softmax(logits, dim=-1)", "torch.softmax(logits, dim=-1).log()",
                hint=Hint("先 softmax 再取 log：logits 很大时概率会下溢或溢出。",
                    "The log is taken of a softmax, which underflows or overflows for large logits.")),
            "modulating factor detached": mutate("p = logp.exp()", "p = logp.exp().detach()",
                hint=Hint("调制因子被 detach 了，梯度没有流经 (1−p)^γ，梯度因此与参考实现不同。",
                    "The modulating factor is detached, so no gradient flows through it, unlike the reference.")),
            "sum instead of mean": mutate("* logp).mean()", "* logp).sum()",
                hint=Hint("对样本求和而不是取平均。", "The loss is summed over examples instead of averaged.")),
            "log of a clamped softmax (finite but wrong)": mutate(
                "F.log_softmax(logits, dim=-1)", "torch.softmax(logits, dim=-1).clamp_min(1e-12).log()",
                hint=Hint(zh="把概率截断在 1e-12 只是让结果有限，log p 仍然错（本应是上千的负数）；用 log_softmax。",
                          en="Clamping the probability only makes the result finite; log p is still wrong (it should be "
                             "in the negative thousands). Use log_softmax.")),
        },
    ),
    Exercise(
        grade_id="ch02_macro_f1_test", functions=("macro_f1",), points=2,
        cases=(
            Case("binary, rare positives", {"confusion": [[930, 20], [30, 20]]}),
            Case("3 classes", {"confusion": [[50, 3, 7], [10, 12, 3], [2, 1, 4]]}),
            Case("a class with no support and no predictions", {"confusion": [[8, 0, 2], [0, 0, 0], [1, 0, 5]]},
                 edge="a class whose row and column are both 0: F1 = 0/0 = 0"),
            Case("a class predicted but never true", {"confusion": [[5, 4, 1], [0, 0, 0], [0, 3, 7]]},
                 edge="a row sum of 0 with a non-zero column (recall 0/0)"),
            Case("a class never predicted", {"confusion": [[40, 0], [10, 0]]},
                 edge="a column sum of 0 with a non-zero row (precision 0/0)"),
            Case("perfect 4-class", {"confusion": [[3, 0, 0, 0], [0, 9, 0, 0], [0, 0, 1, 0], [0, 0, 0, 27]]},
                 edge="a diagonal matrix: F1 = 1 for every class"),
        ),
        probe=probe_macro_f1, judge=allclose(rtol=1e-6, atol=1e-9),
        mutants={
            "micro average (accuracy)": mutate(F1_MEAN, "return float(tp.sum() / c.sum())",
                hint=Hint("算的是 micro 平均（单标签时就是准确率），不是各类 F1 的等权平均。",
                    "This is the micro average (accuracy for single-label data), not the equal-weight mean of per-class F1.")),
            "weighted by support": mutate(F1_MEAN, "return float((f1 * c.sum(dim=1)).sum() / c.sum())",
                hint=Hint("按各类样本数加权平均；macro-F1 每个类别权重相同。",
                    "The average is weighted by support; macro-F1 gives every class the same weight.")),
            "precision and recall both from column sums": mutate("denom = c.sum(dim=0) + c.sum(dim=1)",
                                                                  "denom = 2 * c.sum(dim=0)",
                hint=Hint("precision 和 recall 都用了列和；recall 应使用行和（真实类别）。",
                    "Precision and recall both use column sums; recall uses the row sum (the true class).")),
            "empty classes left out of the average": mutate(F1_MEAN, "return float(f1[denom > 0].mean())",
                hint=Hint("既无真实样本也无预测的类别被排除在平均之外；它的 F1 记为 0，仍要计入。",
                    "Classes with no examples and no predictions are left out; their F1 is 0 and still counts in the mean.")),
        },
    ),
    Exercise(
        grade_id="ch02_logit_adjusted_test", functions=("logit_adjusted_loss",), points=2,
        cases=(
            Case("long tail, tau 1", {"seed": 0, "n": 32, "counts": [500, 120, 30, 8, 2], "scale": 2.0, "tau": 1.0}),
            Case("tau 0 is cross-entropy", {"seed": 1, "n": 16, "counts": [90, 10], "scale": 2.0, "tau": 0.0},
                 edge="tau = 0"),
            Case("uniform priors", {"seed": 2, "n": 20, "counts": [5, 5, 5, 5], "scale": 3.0, "tau": 1.0},
                 edge="uniform priors: the shift is the same for every class"),
            Case("tau 2, a tiny prior", {"seed": 3, "n": 24, "counts": [100000, 3000, 10], "scale": 1.0, "tau": 2.0},
                 edge="a prior of about 1e-4 with tau = 2 (a shift of about -18)"),
            Case("tau 0.5", {"seed": 4, "n": 10, "counts": [60, 30, 10], "scale": 2.0, "tau": 0.5}),
        ),
        probe=probe_logit_adjusted, judge=allclose(rtol=1e-4, atol=1e-6),
        mutants={
            "prior subtracted instead of added": mutate("entropy(logits + tau", "entropy(logits - tau",
                hint=Hint("先验被减去而不是加上；训练时的 logit adjustment 是加上 τ·log π。",
                    "The prior is subtracted instead of added; training-time logit adjustment adds it.")),
            "log missing (adds the prior itself)": mutate("tau * torch.log(class_priors)", "tau * class_priors",
                hint=Hint("加的是先验本身而不是它的对数。", "The prior itself is added instead of its logarithm.")),
            "tau inside the log": mutate("tau * torch.log(class_priors)", "torch.log(tau * class_priors + 1e-30)",
                hint=Hint("τ 放进了 log 里面，应该乘在 log 外面。", "tau is put inside the log instead of scaling it.")),
            "takes the log of the priors in place": mutate("torch.log(class_priors)", "class_priors.log_()",
                hint=Hint("原地对 class_priors 取了 log，修改了输入。",
                    "The log of the priors is taken in place, modifying class_priors.")),
        },
    ),
    Exercise(
        grade_id="ch02_best_threshold_test", functions=("best_f1_threshold",), points=3,
        cases=(
            Case("tie between two thresholds", {"scores": [0.1, 0.2, 0.3, 0.4], "labels": [1, 0, 0, 1]},
                 edge="two thresholds with exactly equal F1"),
            Case("tied scores", {"scores": [0.9, 0.5, 0.5, 0.5, 0.5, 0.1], "labels": [1, 1, 1, 0, 0, 0]},
                 edge="four examples (two of each class) share the best score 0.5"),
            Case("best is to predict everything positive", {"scores": [0.3, 0.1, 0.2], "labels": [1, 1, 0]},
                 edge="the best threshold is the smallest score"),
            Case("imbalanced, many shared scores", {"seed": 0, "n": 400, "pos_frac": 0.05, "shift": 1.5, "grid": 4.0}),
            Case("balanced, fine grid", {"seed": 1, "n": 300, "pos_frac": 0.5, "shift": 1.0, "grid": 20.0}),
            Case("all labels negative", {"scores": [0.2, 0.4, 0.1], "labels": [0, 0, 0]}, edge="only class 0"),
            Case("all labels positive", {"scores": [0.2, 0.4, 0.1], "labels": [1, 1, 1]}, edge="only class 1"),
        ),
        probe=probe_best_threshold, judge=allclose(rtol=1e-6, atol=1e-9),
        mutants={
            "strict > instead of >=": mutate("pred = [s >= t", "pred = [s > t", base=BRUTE_FORCE,
                hint=Hint("用了严格的 >；规则是 score ≥ t 时判为正类。",
                    "It predicts positive for score > t; the rule is score >= t.")),
            "ties broken by the largest threshold": mutate("[f1[cand] == best][-1]", "[f1[cand] == best][0]",
                hint=Hint("F1 相同时选了最大的阈值；规则要求最小的。",
                    "Among thresholds with the same F1 it returns the largest; the rule asks for the smallest.")),
            "cuts between tied scores (one example at a time)": mutate({
                "torch.argsort(scores, descending=True)": "torch.argsort(scores, descending=True, stable=True)",
                "cand = torch.nonzero(last).squeeze(1)": "cand = torch.arange(len(s))"},
                hint=Hint("在相同分数之间切分（逐个样本）；同分样本必须落在阈值的同一侧。",
                    "It cuts between tied scores one example at a time; examples sharing a score fall on the same side.")),
            "no check for a single class": mutate(" or int(labels.min()) == int(labels.max())", "",
                hint=Hint("labels 只有一个类别时没有抛 ValueError。", "No ValueError when labels contain only one class.")),
        },
    ),
]

# ============================================================================ rule table and alternatives

R = Rule
RULES = {
    "ch02_class_weights_test": (
        R(r"$w_c = \dfrac{N}{K\,n_c}$", ("inverse, binary 95/5", "inverse, long tail of 5 classes",
                                         "a single class (inverse)", "inverse, a class of one example"),
          {"inverse frequency not normalised (1/n_c)": "weights"}),
        R(r"The weight is $1/E_c", ("effective, beta 0.999", "effective, beta 1 - 1e-7, counts 1 to 1e6"),
          {"effective number used as the weight (not its inverse)": "weights"}),
        R("normalised so that the weights sum to $K$",
          ("effective, beta 0.999", "effective, default beta", "a single class (effective)",
           "effective, beta 1 - 1e-7, counts 1 to 1e6"),
          {"effective weights not normalised to sum to K": "weights"}),
        R("(compute in float64)", ("effective, beta 1 - 1e-7, counts 1 to 1e6",), {"computes in float32": "weights"}),
        R("Raise `ValueError` if any count is 0",
          ("a class with no examples (inverse)", "a class with no examples (effective)"),
          {"a zero count gives inf instead of ValueError": "ValueError"}),
        R("or if `scheme` is unknown", ("unknown scheme",), {"unknown scheme falls back to inverse": "ValueError"}),
    ),
    "ch02_sampler_weights_test": (
        R("the weights are **per example**", ("binary 95/5", "one class only"),
          {"one weight per class, not per example": "one weight per example"}),
        R("every class **present in `labels`** is drawn with probability exactly $1/K$",
          ("long tail, shuffled", "a class with a single example"),
          {"weights proportional to the class count": "expected_class_frequency",
           "square-root sampling (1/sqrt(n_c))": "expected_class_frequency"}),
        R("not necessarily $0..K-1$", ("non-contiguous label values",),
          {"assumes labels are 0..K-1": "non-contiguous"}),
    ),
    "ch02_sigmoid_focal_test": (
        R(r"\alpha_t = \alpha\,t + (1-\alpha)(1-t)", ("defaults (alpha 0.25, gamma 2), mean",
                                                      "alpha 0 (negatives only), gamma 1, none"),
          {"alpha applied to the wrong class": "loss", "alpha missing": "loss"}),
        R(r"$(1-p_t)^\gamma$ down-weights the many **easy** examples", ("defaults (alpha 0.25, gamma 2), mean",
                                                                        "logits of magnitude 100"),
          {"gamma on the wrong term (p_t ** gamma)": "loss"}),
        R("never `log(sigmoid(x))`", ("logits of magnitude 100",), {"log of the sigmoid (not stable)": "loss"}),
        R("apply $\\alpha_t$ only when `alpha >= 0`", ("alpha 0 (negatives only), gamma 1, none",),
          {"alpha = 0 treated as no weighting (alpha > 0)": "loss"}),
        R("a negative `alpha`, e.g. `-1`, means no class weighting", ("alpha -0.5 (no class weighting), gamma 2",),
          {"only alpha == -1 means no weighting": "loss"}),
        R('`reduction` is `"none"`', ("gamma 0, alpha -1 (plain BCE), no reduction", "alpha 0.75, gamma 0.5, sum",
                                      "alpha -0.5 (no class weighting), gamma 2"),
          {"reduction ignored (always the mean)": "loss"}),
    ),
    "ch02_softmax_focal_test": (
        R(r"-\,(1-p_{i,y_i})^{\gamma}\,\log p_{i,y_i}", ("gamma 2", "one example, gamma 0.5"),
          {"(1 - p) replaced by p": "loss"}),
        R("logits of magnitude $10^3$ must give finite values", ("logits of magnitude 1e3",),
          {"log of softmax (overflows)": "infinities", "log of a clamped softmax (finite but wrong)": "loss"}),
        R("do not detach it", ("gamma 2", "one example, gamma 0.5"), {"modulating factor detached": "grad"}),
        R("returning the scalar mean", ("gamma 2", "gamma 0 is cross-entropy"), {"sum instead of mean": "loss"}),
    ),
    "ch02_macro_f1_test": (
        R("Macro-F1 averages the per-class F1 with equal weight per class", ("3 classes", "a class never predicted"),
          {"micro average (accuracy)": "macro_f1", "weighted by support": "macro_f1"}),
        R(r"recall $R_c = C_{cc} / \sum_j C_{cj}$ (row sum)", ("3 classes", "a class predicted but never true"),
          {"precision and recall both from column sums": "macro_f1"}),
        R("**and still counts in the average**", ("a class with no support and no predictions",),
          {"empty classes left out of the average": "macro_f1"}),
    ),
    "ch02_logit_adjusted_test": (
        R(r"\mathrm{CE}\big(x + \tau \log \pi,\; y\big)", ("long tail, tau 1", "tau 2, a tiny prior"),
          {"prior subtracted instead of added": "loss", "log missing (adds the prior itself)": "loss",
           "tau inside the log": "loss"}),
        R("do not modify `class_priors` in place", ("long tail, tau 1", "tau 2, a tiny prior"),
          {"takes the log of the priors in place": "modified class_priors in place"}),
    ),
    "ch02_best_threshold_test": (
        R("predicting positive when **`score >= t`**", ("tie between two thresholds", "tied scores"),
          {"strict > instead of >=": "threshold"}),
        R("so all examples sharing a score fall on the same side", ("tied scores", "imbalanced, many shared scores"),
          {"cuts between tied scores (one example at a time)": "f1"}),
        R("return the **smallest** one", ("tie between two thresholds",), {"ties broken by the largest threshold": "threshold"}),
        R("Raise `ValueError` when `labels` contains only one class", ("all labels negative", "all labels positive"),
          {"no check for a single class": "ValueError"}),
    ),
}

ALTERNATIVES = {
    "ch02_class_weights_test": {"numpy float64, effective weights via expm1": """
        import numpy as np

        def class_weights(counts, scheme, beta=0.999):
            n = np.asarray(counts, dtype=np.float64)
            if (n == 0).any():
                raise ValueError("a class has no examples")
            if scheme == "inverse":
                w = n.sum() / (len(n) * n)
            elif scheme == "effective":
                w = 1.0 / (1.0 - beta ** n) if beta == 0 else np.log(beta) / np.expm1(n * np.log(beta))
                w = w / w.sum() * len(n)
            else:
                raise ValueError(scheme)
            return torch.from_numpy(w)
    """},
    "ch02_sampler_weights_test": {"a Python dict of counts, float32": """
        from collections import Counter

        def sampler_weights(labels):
            counts = Counter(labels.tolist())
            return torch.tensor([1.0 / counts[y] for y in labels.tolist()], dtype=torch.float32) * 7.0
    """},
    "ch02_sigmoid_focal_test": {"logsigmoid formulation": """
        def sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0, reduction="mean"):
            log_p_t = torch.where(targets > 0.5, F.logsigmoid(logits), F.logsigmoid(-logits))
            loss = -((1 - log_p_t.exp()) ** gamma) * log_p_t
            if alpha >= 0:
                loss = torch.where(targets > 0.5, alpha * loss, (1 - alpha) * loss)
            if reduction == "none":
                return loss
            return loss.sum() if reduction == "sum" else loss.mean()
    """},
    "ch02_softmax_focal_test": {"from F.cross_entropy per row": """
        def softmax_focal_loss(logits, targets, gamma=2.0):
            ce = F.cross_entropy(logits, targets, reduction="none")
            return torch.mean(ce * (-torch.expm1(-ce)) ** gamma)
    """},
    "ch02_macro_f1_test": {"per-class loop with precision and recall": """
        def macro_f1(confusion):
            c = confusion.tolist()
            k, scores = len(c), []
            for i in range(k):
                tp = c[i][i]
                pred = sum(c[j][i] for j in range(k))
                true = sum(c[i])
                p = tp / pred if pred else 0.0
                r = tp / true if true else 0.0
                scores.append(2 * p * r / (p + r) if p + r else 0.0)
            return sum(scores) / k
    """},
    "ch02_logit_adjusted_test": {"log-softmax and gather by hand": """
        def logit_adjusted_loss(logits, targets, class_priors, tau=1.0):
            z = logits + tau * class_priors.log()
            logp = z - torch.logsumexp(z, dim=1, keepdim=True)
            return -logp[torch.arange(len(targets)), targets].mean()
    """},
    "ch02_best_threshold_test": {"brute force over distinct scores": BRUTE_FORCE},
}


# Library implementations the exercises imitate (used by the test suite, in the trusted process).
ORACLES = {"ch02_class_weights_test": oracle_class_weights, "ch02_sampler_weights_test": oracle_sampler_weights,
           "ch02_sigmoid_focal_test": oracle_sigmoid_focal, "ch02_softmax_focal_test": oracle_softmax_focal,
           "ch02_macro_f1_test": oracle_macro_f1, "ch02_logit_adjusted_test": oracle_logit_adjusted,
           "ch02_best_threshold_test": oracle_best_threshold}

CHAPTER = Chapter("ch02_imbalance", "ch02_exercises.ipynb", EXERCISES, rules=RULES, alternatives=ALTERNATIVES, oracles=ORACLES)

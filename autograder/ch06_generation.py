"""Trusted spec of Chapter 6's graded cells (solutions/ch06_generation/ch06_exercises.ipynb).

Probes are self-contained (they run in the sandbox); their models are tiny seeded ``GPT2LMHeadModel``s. Oracles
(trusted side) are ``transformers``' logits processors, ``model.generate`` and its causal-LM loss; where the probe
blocks a library entry point while the student's function runs, the oracle binds the real one before the probe runs.
"""
from llmprep.grading.spec import Case, Chapter, Exercise, Hint, Rule, allclose, mutate, whole


# ============================================================================ 1 top-k

def probe_top_k(ns, params):
    import torch

    fn = ns["top_k_filter"]
    g = torch.Generator().manual_seed(params["seed"])
    b, v = params["shape"]
    if params.get("ties"):
        logits = torch.randint(0, params["ties"], (b, v), generator=g).float()
    else:
        logits = torch.randn(b, v, generator=g) * params["scale"]
    x = logits.clone()
    out = fn(x, params["k"], min_tokens_to_keep=params["min_keep"])
    return {"filtered": out, "input_untouched": bool(torch.equal(x, logits))}


def oracle_top_k():
    from transformers import TopKLogitsWarper

    call = TopKLogitsWarper.__call__  # bound now: the probe blocks the attribute while it runs
    return {"top_k_filter": lambda logits, k, min_tokens_to_keep=1: call(
        TopKLogitsWarper(top_k=k, min_tokens_to_keep=min_tokens_to_keep), None, logits.clone())}


# ============================================================================ 2 top-p

def probe_top_p(ns, params):
    import math

    import torch

    fn = ns["top_p_filter"]
    if "probs" in params:  # exact dyadic probabilities: the cumulative sums hit the threshold exactly
        logits = torch.log(torch.tensor(params["probs"], dtype=torch.float64)).float()
        logits = logits + params.get("shift", 0.0)
    else:
        g = torch.Generator().manual_seed(params["seed"])
        logits = torch.randn(*params["shape"], generator=g) * params["scale"]
        for row, col in params.get("masked", []):
            logits[row, col] = -math.inf
    x = logits.clone()
    out = fn(x, params["p"], min_tokens_to_keep=params["min_keep"])
    return {"filtered": out, "input_untouched": bool(torch.equal(x, logits))}


def oracle_top_p():
    from transformers import TopPLogitsWarper

    call = TopPLogitsWarper.__call__
    return {"top_p_filter": lambda logits, p, min_tokens_to_keep=1: call(
        TopPLogitsWarper(top_p=p, min_tokens_to_keep=min_tokens_to_keep), None, logits.clone())}


# ============================================================================ 3 repetition penalty

def probe_repetition_penalty(ns, params):
    import torch

    fn = ns["apply_repetition_penalty"]
    g = torch.Generator().manual_seed(params["seed"])
    b, v, t = params["batch"], params["vocab"], params["length"]
    logits = torch.randn(b, v, generator=g) * params["scale"] + params.get("offset", 0.0)
    # few distinct ids, so tokens repeat inside a row
    ids = torch.randint(0, params.get("distinct", v), (b, t), generator=g)
    x, i = logits.clone(), ids.clone()
    out = fn(x, i, params["penalty"])
    return {"penalised": out, "inputs_untouched": bool(torch.equal(i, ids) and torch.equal(x, logits))}


def oracle_repetition_penalty():
    from transformers import RepetitionPenaltyLogitsProcessor

    call = RepetitionPenaltyLogitsProcessor.__call__
    return {"apply_repetition_penalty": lambda logits, input_ids, penalty: call(
        RepetitionPenaltyLogitsProcessor(penalty=penalty), input_ids, logits.clone())}


# ============================================================================ 4 temperature

def probe_temperature(ns, params):
    import torch

    fn = ns["apply_temperature"]
    g = torch.Generator().manual_seed(params["seed"])
    logits = torch.randn(*params["shape"], generator=g) * params["scale"]
    x = logits.clone()
    try:
        out, raised = fn(x, params["t"]), False
    except ValueError:
        out, raised = torch.zeros(0), True
    return {"raised_value_error": raised, "scaled": out, "input_untouched": bool(torch.equal(x, logits))}


def oracle_temperature():
    from transformers import TemperatureLogitsWarper

    # raises ValueError for t <= 0
    return {"apply_temperature": lambda logits, t: TemperatureLogitsWarper(t)(None, logits.clone())}


# ============================================================================ 5 sampling

def probe_sample_next(ns, params):
    import math

    import torch

    fn = ns["sample_next"]
    rows = torch.tensor(params["rows"], dtype=torch.float64) * params.get("scale", 1.0)
    for row, col in params.get("banned", []):  # JSON has no -inf: banned tokens are listed
        rows[row, col] = -math.inf
    n = params["n"]
    logits = rows.repeat_interleave(n, dim=0).float()  # every row repeated n times: one call, n draws per row
    probs = torch.softmax(rows, dim=-1)
    out = fn(logits.clone(), torch.Generator().manual_seed(params["seed"]))
    out = torch.as_tensor(out)
    shape_ok = tuple(out.shape) == (logits.shape[0],) and out.dtype == torch.long
    if not shape_ok:
        return {"shape_ok": False, "allowed_only": False, "frequencies_match": False, "reproducible": False}
    allowed = bool((probs[torch.arange(len(rows)).repeat_interleave(n), out] > 0).all())
    freq_ok = True
    for r in range(len(rows)):
        counts = torch.bincount(out[r * n:(r + 1) * n], minlength=rows.shape[1]).double() / n
        freq_ok = freq_ok and bool(((counts - probs[r]).abs() < params["tol"]).all())
    # the same generator seed must give the same draws, whatever the global RNG is doing
    torch.manual_seed(params["seed"] + 1)
    again_a = torch.as_tensor(fn(logits.clone(), torch.Generator().manual_seed(params["seed"] + 7)))
    torch.manual_seed(params["seed"] + 2)
    again_b = torch.as_tensor(fn(logits.clone(), torch.Generator().manual_seed(params["seed"] + 7)))
    return {"shape_ok": True, "allowed_only": allowed, "frequencies_match": freq_ok,
            "reproducible": bool(torch.equal(again_a, again_b))}


def oracle_sample_next():
    import torch

    def sample_next(logits, generator):
        # what generate(do_sample=True) does after the logits processors
        return torch.multinomial(torch.softmax(logits, dim=-1), num_samples=1, generator=generator).squeeze(1)

    return {"sample_next": sample_next}


# ============================================================================ 6 greedy with a KV cache

def probe_greedy_cache(ns, params):
    from llmprep.grading.probing import tiny_gpt2
    import torch

    fn = ns["greedy_generate_with_cache"]
    model = tiny_gpt2(params["vocab"], params["seed"])
    g = torch.Generator().manual_seed(params["seed"])
    ids = torch.randint(0, params["vocab"], (params["batch"], params["prompt"]), generator=g)
    calls = []
    original = model.forward

    def recording(*args, **kwargs):
        x = kwargs.get("input_ids", args[0] if args else None)
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        calls.append((int(x.shape[1]) if x is not None else -1, cache is not None, torch.is_grad_enabled()))
        return original(*args, **kwargs)

    model.forward = recording
    out = fn(model, ids.clone(), params["new"])
    lengths = [c[0] for c in calls]
    return {"tokens": torch.as_tensor(out),
            "prompt_once": bool(lengths[:1] == [params["prompt"]]),
            "one_token_per_step": bool(all(n == 1 for n in lengths[1:])),
            "cache_used_after_prompt": bool(all(c[1] for c in calls[1:])),
            "no_grad": bool(not any(c[2] for c in calls))}


def oracle_greedy_cache():
    from transformers import GenerationMixin

    generate = GenerationMixin.generate  # the probe blocks model.generate while the student's code runs

    def greedy_generate_with_cache(model, input_ids, max_new_tokens):
        import torch

        return generate(model, input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=max_new_tokens,
                        do_sample=False, num_beams=1, eos_token_id=None, pad_token_id=0)

    return {"greedy_generate_with_cache": greedy_generate_with_cache}


# ============================================================================ 7 beam search

def probe_beam_search(ns, params):
    from llmprep.grading.probing import tiny_gpt2
    import torch

    fn = ns["beam_search"]
    model = tiny_gpt2(params["vocab"], params["seed"])
    g = torch.Generator().manual_seed(params["seed"])
    ids = torch.randint(0, params["vocab"], (1, params["prompt"]), generator=g)
    out = fn(model, ids.clone(), params["beams"], params["new"])
    return {"tokens": torch.as_tensor(out)}


def oracle_beam_search():
    from transformers import GenerationMixin

    generate = GenerationMixin.generate

    def beam_search(model, input_ids, num_beams, max_new_tokens):
        import torch

        return generate(model, input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=max_new_tokens,
                        do_sample=False, num_beams=num_beams, num_return_sequences=1, length_penalty=1.0,
                        early_stopping=False, eos_token_id=None, pad_token_id=0)

    return {"beam_search": beam_search}


# ============================================================================ 8 perplexity

def probe_perplexity(ns, params):
    from llmprep.grading.probing import tiny_gpt2
    import torch

    fn = ns["perplexity"]
    vocab = params["vocab"]
    model = tiny_gpt2(vocab, params["seed"], init=params["init"])
    g = torch.Generator().manual_seed(params["seed"])
    ids = torch.randint(0, vocab, (len(params["lengths"]), params["T"]), generator=g)
    labels = ids.clone()
    for row, n in enumerate(params["lengths"]):  # right padding: positions >= n are ignored
        labels[row, n:] = params["ignore_index"]
    with torch.no_grad():
        logits = model(ids).logits
    x, y = logits.clone(), labels.clone()
    out = fn(x, y, ignore_index=params["ignore_index"])
    return {"ppl": torch.as_tensor(out, dtype=torch.float64).reshape(()),
            "zero_d_tensor": bool(torch.is_tensor(out) and out.ndim == 0),
            "inputs_untouched": bool(torch.equal(x, logits) and torch.equal(y, labels))}


def oracle_perplexity():
    import torch
    from transformers.loss.loss_utils import ForCausalLMLoss  # what model(input_ids, labels=labels).loss uses

    def perplexity(logits, labels, ignore_index=-100):
        loss = ForCausalLMLoss(logits, labels, vocab_size=logits.shape[-1], ignore_index=ignore_index)
        return torch.exp(loss.double())

    return {"perplexity": perplexity}


# ============================================================================ the spec

EXERCISES = [
    Exercise(
        grade_id="ch06_top_k_test", functions=("top_k_filter",), points=2,
        bans=(("transformers.generation.logits_process.TopKLogitsWarper", "__call__", "TopKLogitsWarper"),),
        cases=(
            Case("random logits, k=5", dict(seed=0, shape=[3, 20], scale=2.0, k=5, min_keep=1)),
            Case("ties at the k-th value", dict(seed=1, shape=[4, 16], ties=4, k=3, min_keep=1),
                 edge="several logits equal to the k-th largest"),
            Case("k larger than the vocabulary", dict(seed=2, shape=[2, 6], scale=1.0, k=10, min_keep=1), edge="k > V"),
            Case("min_tokens_to_keep above k", dict(seed=3, shape=[3, 12], scale=3.0, k=2, min_keep=5),
                 edge="min_tokens_to_keep > k"),
            Case("k=1 on large logits", dict(seed=4, shape=[5, 30], scale=100.0, k=1, min_keep=1), edge="k = 1"),
        ),
        probe=probe_top_k, judge=allclose(rtol=0, atol=0),
        mutants={
            "ties at the k-th value dropped (scatter of topk indices)": mutate({
                "threshold = torch.topk(logits, k, dim=-1).values[..., -1:]":
                    "keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, torch.topk(logits, k).indices, True)",
                "logits < threshold": "~keep"},
                hint=Hint("与第 k 大的值并列的 token 被丢掉了；所有不小于该值的 token 都应保留。",
                    "Tokens tied with the k-th largest value are dropped; every token at least that large is kept.")),
            "min_tokens_to_keep ignored by top-k": mutate("max(int(k), int(min_tokens_to_keep))", "int(k)",
                hint=Hint("top-k 忽略了 min_tokens_to_keep；k 比它小时至少要保留这么多。",
                    "Top-k ignores min_tokens_to_keep; when k is smaller, at least that many tokens stay.")),
            "crashes when k exceeds the vocabulary": mutate("k = min(max(int(k), int(min_tokens_to_keep)), logits.shape[-1])",
                                                            "k = max(int(k), int(min_tokens_to_keep))",
                hint=Hint("k 超过词表大小时崩溃；此时应保留全部 token。",
                    "It crashes when k exceeds the vocabulary size; then every token is kept.")),
            "filters in place (changes the caller's logits)": mutate(
                "return torch.where(logits < threshold, torch.full_like(logits, -math.inf), logits)",
                "logits[logits < threshold] = -math.inf\n    return logits",
                hint=Hint("原地过滤，修改了调用者的 logits；应返回新张量。",
                    "It filters in place, changing the caller's logits instead of returning a new tensor.")),
        },
    ),
    Exercise(
        grade_id="ch06_top_p_test", functions=("top_p_filter",), points=3,
        bans=(("transformers.generation.logits_process.TopPLogitsWarper", "__call__", "TopPLogitsWarper"),),
        cases=(
            Case("random logits, p=0.9", dict(seed=0, shape=[4, 25], scale=2.0, p=0.9, min_keep=1)),
            Case("cumulative mass hits p exactly",
                 dict(probs=[[0.5, 0.25, 0.125, 0.125], [0.125, 0.5, 0.125, 0.25]], p=0.75, min_keep=1),
                 edge="the mass below the nucleus is exactly 1 - p (dyadic probabilities)"),
            Case("exact boundary, shifted logits",
                 dict(probs=[[0.0625, 0.25, 0.5, 0.0625, 0.125]], shift=3.0, p=0.5, min_keep=1),
                 edge="an exact boundary with two tied least likely tokens, logits shifted by 3"),
            Case("min_tokens_to_keep=3, small p", dict(seed=1, shape=[3, 15], scale=4.0, p=0.2, min_keep=3),
                 edge="min_tokens_to_keep = 3 above the nucleus size"),
            Case("already masked tokens, p=0.6",
                 dict(seed=2, shape=[2, 10], scale=1.5, p=0.6, min_keep=1, masked=[[0, 1], [0, 4], [1, 7]]),
                 edge="-inf logits in the input (probability 0)"),
            Case("peaked logits, p=0.95", dict(seed=3, shape=[3, 40], scale=6.0, p=0.95, min_keep=1),
                 edge="a peaked row: the nucleus is one or two tokens of 40"),
            Case("p = 0, min_tokens_to_keep=2", dict(seed=4, shape=[3, 12], scale=2.0, p=0.0, min_keep=2),
                 edge="p = 0, the lower end of the range: only the m most likely tokens survive"),
            Case("p = 1, one token already masked",
                 dict(seed=5, shape=[2, 10], scale=1.0, p=1.0, min_keep=1, masked=[[0, 8]]),
                 edge="p = 1, the upper end of the range: nothing is removed, a -inf logit stays -inf"),
        ),
        probe=probe_top_p, judge=allclose(rtol=0, atol=0),
        mutants={
            "strict comparison at the boundary (keeps one token too many)": mutate("cumulative <= (1.0 - p)",
                                                                                   "cumulative < (1.0 - p)",
                hint=Hint("边界比较用了严格不等号：累积和恰好等于 1−p 的 token 本应移除，却被保留。",
                    "The boundary test is strict, so a token whose cumulative sum is exactly 1 - p is kept, not removed.")),
            "drops the token that crosses p": mutate({"descending=False": "descending=True",
                                                      "cumulative <= (1.0 - p)": "cumulative > p",
                                                      "[..., -min_tokens_to_keep:]": "[..., :min_tokens_to_keep]"},
                hint=Hint("丢掉了让累积概率达到 p 的那个 token；它属于 nucleus，应保留。",
                    "The token at which the running total reaches p is dropped; it belongs to the nucleus and is kept.")),
            "p = 0 switches the filter off (as top_k = 0 does)": mutate(
                "ascending, order = torch.sort(logits, dim=-1, descending=False)",
                "if p == 0:\n        return logits.clone()\n    ascending, order = torch.sort(logits, dim=-1, descending=False)",
                hint=Hint("p = 0 不是关闭过滤（top_k = 0 才是）：按同一规则，只剩最可能的 m 个 token。",
                    "Unlike top_k = 0, p = 0 does not switch the filter off: the same rule leaves only the m most "
                    "likely tokens.")),
            "min_tokens_to_keep ignored by top-p": mutate("[..., -min_tokens_to_keep:]", "[..., -1:]",
                hint=Hint("top-p 忽略了 min_tokens_to_keep，只保护了最可能的一个 token。",
                    "Top-p ignores min_tokens_to_keep and protects only the single most likely token.")),
            "filters in place": mutate("logits.masked_fill(drop,", "logits.masked_fill_(drop,",
                hint=Hint("原地修改了 logits（masked_fill_），改动了调用者的张量。",
                    "The logits are filled in place, changing the caller's tensor.")),
            "ascending sort with the descending rule (keeps the least likely tokens)": mutate({
                "cumulative <= (1.0 - p)": "(cumulative - torch.softmax(ascending, dim=-1)) >= p",
                "[..., -min_tokens_to_keep:]": "[..., :min_tokens_to_keep]"},
                hint=Hint("升序排序却套用了降序的规则，保留下来的是最不可能的 token。",
                    "An ascending sort with the descending rule keeps the least likely tokens.")),
        },
    ),
    Exercise(
        grade_id="ch06_repetition_penalty_test", functions=("apply_repetition_penalty",), points=2,
        bans=(("transformers.generation.logits_process.RepetitionPenaltyLogitsProcessor", "__call__",
               "RepetitionPenaltyLogitsProcessor"),),
        cases=(
            Case("penalty 1.3, mixed signs", dict(seed=0, batch=2, vocab=12, length=6, scale=2.0, penalty=1.3)),
            Case("tokens repeated many times",
                 dict(seed=1, batch=3, vocab=20, length=15, distinct=4, scale=1.0, penalty=2.0),
                 edge="4 distinct ids over 15 positions: every id repeated"),
            Case("all logits negative", dict(seed=2, batch=2, vocab=10, length=5, scale=0.5, offset=-3.0, penalty=1.5),
                 edge="every logit below 0"),
            Case("penalty below 1 (encourages repeats)",
                 dict(seed=3, batch=2, vocab=9, length=7, distinct=5, scale=2.0, penalty=0.7), edge="penalty < 1"),
        ),
        probe=probe_repetition_penalty, judge=allclose(rtol=1e-6, atol=1e-6),
        mutants={
            "always divides (negative logits get more likely)": mutate(
                "torch.where(logits > 0, logits / penalty, logits * penalty)", "logits / penalty",
                hint=Hint("总是除以 penalty：负的 logit 除以后反而变大，token 更可能被选中。",
                    "It always divides by the penalty, which raises negative logits and makes those tokens more likely.")),
            "penalises every occurrence again": whole("""
                def apply_repetition_penalty(logits, input_ids, penalty):
                    out = logits.clone()
                    for b in range(input_ids.shape[0]):
                        for t in input_ids[b].tolist():
                            s = out[b, t]
                            out[b, t] = s * penalty if s < 0 else s / penalty
                    return out
            """,
                hint=Hint("每出现一次就惩罚一次；出现多次的 token 也只应惩罚一次。",
                    "Each occurrence is penalised again; a token that occurs several times is penalised once.")),
            "penalises the whole vocabulary": mutate("return torch.where(seen, penalised, logits)", "return penalised",
                hint=Hint("对整个词表都施加了惩罚；只有在 input_ids 中出现过的 token 才受罚。",
                    "The whole vocabulary is penalised; only tokens that occur in input_ids should be.")),
            "ids seen in any row penalised in every row": mutate(
                "seen = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, input_ids, True)",
                "seen = torch.zeros_like(logits[0], dtype=torch.bool).scatter(0, input_ids.reshape(-1), True)"
                ".expand_as(logits)",
                hint=Hint(zh="每一行只惩罚它自己的 input_ids 里出现过的 token，不要把整个 batch 的 token 混在一起。",
                          en="Each row penalises only the tokens of its own input_ids, not those of the whole batch.")),
            "penalises the logits in place": mutate("return torch.where(seen, penalised, logits)",
                                                    "return logits.copy_(torch.where(seen, penalised, logits))",
                hint=Hint("原地修改了 logits；应返回新张量。", "The logits are penalised in place instead of in a new tensor.")),
        },
    ),
    Exercise(
        grade_id="ch06_temperature_test", functions=("apply_temperature",), points=1,
        cases=(
            Case("t=0.5", dict(seed=0, shape=[3, 10], scale=2.0, t=0.5)),
            Case("t=2.0", dict(seed=1, shape=[2, 7], scale=1.0, t=2.0)),
            Case("t=1 changes nothing", dict(seed=2, shape=[4, 5], scale=3.0, t=1.0), edge="t = 1"),
            Case("t=0 is an error", dict(seed=3, shape=[2, 4], scale=1.0, t=0.0), edge="t = 0 exactly"),
            Case("a tiny temperature", dict(seed=5, shape=[3, 8], scale=2.0, t=0.01),
                 edge="t = 0.01: logits scaled to the hundreds (near greedy), just above the error region"),
            Case("negative t is an error", dict(seed=4, shape=[2, 6], scale=1.0, t=-0.5),
                 edge="t < 0: the other side of t <= 0 (dividing would reverse the ranking)"),
        ),
        probe=probe_temperature, judge=allclose(rtol=1e-6, atol=1e-6),
        mutants={
            "temperature applied after softmax": mutate("return logits / t", "return torch.softmax(logits, dim=-1) / t",
                hint=Hint("温度作用在 softmax 之后（除概率）；它应作用在 logits 上。",
                    "The temperature is applied after the softmax, to probabilities; it scales the logits.")),
            "multiplies by the temperature": mutate("return logits / t", "return logits * t",
                hint=Hint("乘以了温度而不是除以温度，高温反而让分布更尖锐。",
                    "The logits are multiplied by the temperature, so a high temperature sharpens instead of flattens.")),
            "no check for t <= 0": mutate({"if not t > 0:": "if False:", "logits / t": "logits / max(t, 1e-6)"},
                hint=Hint("没有检查 t ≤ 0，非正的温度应报错。",
                    "There is no check for t <= 0; a temperature that is not positive must raise an error.")),
            "only t == 0 rejected (a negative t flips the ranking)": mutate("if not t > 0:", "if t == 0:",
                hint=Hint("只拒绝了 t == 0；负的温度会把排序整个颠倒，也应报错。",
                    "Only t = 0 is rejected; a negative temperature flips the ranking and must be refused too.")),
            "divides in place": mutate("return logits / t", "return logits.div_(t)",
                hint=Hint("原地做除法，修改了调用者的 logits。", "The division is done in place, changing the caller's logits.")),
        },
    ),
    Exercise(
        grade_id="ch06_sample_next_test", functions=("sample_next",), points=2,
        cases=(
            Case("banned tokens never drawn",
                 dict(rows=[[1.0, 0.0, 0.5, -1.0, 0.0, 2.0]], banned=[[0, 1], [0, 4]], n=20000, seed=0, tol=0.02),
                 edge="-inf logits (probability exactly 0)"),
            Case("two different rows in one batch",
                 dict(rows=[[2.0, 0.0, -1.0, 1.0], [-1.0, 1.0, 3.0, 0.5]], n=20000, seed=1, tol=0.02)),
            Case("logits of magnitude 1000",
                 dict(rows=[[1.0, 0.999, 0.995, -1.0]], scale=1000.0, n=20000, seed=2, tol=0.02),
                 edge="logits of 1e3: exp overflows float32"),
            Case("nearly flat distribution",
                 dict(rows=[[0.1, 0.0, -0.1, 0.05, 0.02, -0.05, 0.0, 0.08]], n=30000, seed=3, tol=0.02)),
        ),
        probe=probe_sample_next, judge=allclose(rtol=0, atol=0, messages={
            "shape_ok": "the result must be an int64 tensor of shape (batch,)",
            "allowed_only": "a token whose logit is -inf was drawn",
            "frequencies_match": "the frequencies of your draws do not match softmax(logits)",
            "reproducible": "the same seeded generator did not reproduce your draws (use only `generator`)"}),
        mutants={
            "argmax instead of sampling": mutate(
                "return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)",
                "return logits.argmax(dim=-1)",
                hint=Hint("直接取 argmax，没有按概率采样。", "It takes the argmax instead of sampling from the probabilities.")),
            "softmax over the batch dimension": mutate("torch.softmax(logits.float(), dim=-1)",
                                                       "torch.softmax(logits.float(), dim=0)",
                hint=Hint("softmax 做在 batch 维上，而不是词表维上。",
                    "The softmax runs over the batch dimension instead of the vocabulary.")),
            "ignores the generator (global RNG)": mutate(", generator=generator", "",
                hint=Hint("忽略了传入的 generator，用了全局随机数，结果不可复现。",
                    "The generator is ignored and the global RNG is used, so results are not reproducible.")),
            "exp without subtracting the max (overflows)": mutate("torch.softmax(logits.float(), dim=-1)",
                                                                  "logits.exp() / logits.exp().sum(-1, keepdim=True)",
                hint=Hint("直接对 logits 取 exp 而没减最大值，大 logits 溢出。",
                    "exp of the logits without subtracting the max overflows for large logits.")),
        },
    ),
    Exercise(
        grade_id="ch06_greedy_cache_test", functions=("greedy_generate_with_cache",), points=3,
        bans=(("transformers.generation.utils.GenerationMixin", "generate", "model.generate"),),
        cases=(
            Case("batch of 2, 8 new tokens", dict(seed=0, vocab=300, batch=2, prompt=5, new=8)),
            Case("one prompt token, 12 new", dict(seed=1, vocab=200, batch=1, prompt=1, new=12),
                 edge="a prompt of one token (the prefill is itself of length 1)"),
            Case("one new token", dict(seed=2, vocab=150, batch=3, prompt=4, new=1),
                 edge="max_new_tokens = 1: the prefill alone decides"),
            Case("longer prompt", dict(seed=3, vocab=400, batch=1, prompt=20, new=6)),
        ),
        probe=probe_greedy_cache, judge=allclose(rtol=0, atol=0, messages={
            "prompt_once": "the first model call must take the whole prompt",
            "one_token_per_step": "after the prompt, each model call must take input_ids of length 1",
            "cache_used_after_prompt": "the calls after the prompt must pass the cache returned by the previous call",
            "no_grad": "autograd was recording during generation (use torch.no_grad())"}),
        mutants={
            "feeds the new token but drops the cache": mutate("model(input_ids=next_token, cache=outputs.cache, use_cache=True)",
                                                              "model(input_ids=next_token)",
                hint=Hint("只把新 token 输入模型却丢掉了 cache，模型看不到之前的上下文。",
                    "Only the new token is fed and the cache is dropped, so the model loses the earlier context.")),
            "recomputes the whole prefix every step (no cache)": mutate(
                "model(input_ids=next_token, cache=outputs.cache, use_cache=True)", "model(input_ids=tokens)",
                hint=Hint("每一步都重新计算整个前缀，没有使用 KV cache。",
                    "The whole prefix is recomputed at every step; the KV cache is never used.")),
            "one token too few": mutate("for step in range(max_new_tokens):", "for step in range(max_new_tokens - 1):",
                hint=Hint("少生成了一个 token。", "It generates one token too few.")),
            "no torch.no_grad()": mutate("with torch.no_grad():", "if True:",
                hint=Hint("生成时没有用 torch.no_grad()，白白构建计算图。",
                    "Generation runs without torch.no_grad(), building an autograd graph for nothing.")),
            "appends the prompt's own last token first": whole("""
                def greedy_generate_with_cache(model, input_ids, max_new_tokens):
                    seq, step_input, cache = input_ids, input_ids, None
                    with torch.no_grad():
                        for _ in range(max_new_tokens):
                            seq = torch.cat([seq, step_input[:, -1:]], dim=1)
                            out = model(input_ids=step_input, cache=cache, use_cache=True)
                            cache = out.cache
                            step_input = out.logits[:, -1].argmax(-1, keepdim=True)
                    return seq
            """,
                hint=Hint("先把 prompt 的最后一个 token 又追加了一次，生成的序列整体错了一位。",
                    "The prompt's own last token is appended first, so the generated tokens are shifted by one.")),
        },
    ),
    Exercise(
        grade_id="ch06_beam_search_test", functions=("beam_search",), points=3,
        bans=(("transformers.generation.utils.GenerationMixin", "generate", "model.generate"),),
        cases=(
            Case("3 beams, 7 new tokens", dict(seed=1, vocab=300, prompt=4, beams=3, new=7)),
            Case("2 beams", dict(seed=2, vocab=300, prompt=4, beams=2, new=7),
                 edge="num_beams = 2, the narrowest search that differs from greedy"),
            Case("4 beams, short prompt", dict(seed=3, vocab=300, prompt=4, beams=4, new=7)),
            Case("1 beam is greedy", dict(seed=4, vocab=200, prompt=3, beams=1, new=6), edge="num_beams = 1"),
            Case("5 beams, one new token", dict(seed=5, vocab=250, prompt=6, beams=5, new=1),
                 edge="max_new_tokens = 1: only the first expansion"),
        ),
        probe=probe_beam_search, judge=allclose(rtol=0, atol=0),
        mutants={
            "greedy (ignores num_beams)": mutate({"first.topk(num_beams)": "first.topk(1)",
                                                  "expand(num_beams, -1)": "expand(1, -1)",
                                                  "candidates.topk(num_beams)": "candidates.topk(1)"},
                hint=Hint("忽略了 num_beams，实际上是 greedy 解码。", "num_beams is ignored, so this is greedy decoding.")),
            "beams start as identical copies (duplicates never removed)": mutate({
                "first = model(input_ids=input_ids).logits[0, -1].float().log_softmax(dim=-1)\n": "",
                "scores, tokens = first.topk(num_beams)": "scores = torch.zeros(num_beams)",
                "beams = torch.cat([input_ids.expand(num_beams, -1), tokens[:, None]], dim=1)":
                    "beams = input_ids.expand(num_beams, -1)",
                "range(max_new_tokens - 1)": "range(max_new_tokens)"},
                hint=Hint("各 beam 从同一 prompt 的相同副本开始，重复的候选从未被去掉，所有 beam 都一样。",
                    "The beams start as identical copies of the prompt, so duplicates survive and every beam is the same.")),
            "ranks by the last token's log-prob only": mutate("(scores[:, None] + logp).reshape(-1)", "logp.reshape(-1)",
                hint=Hint("只按最后一个 token 的对数概率排序，而不是整个序列累计的对数概率。",
                    "Candidates are ranked by the last token's log-prob only, not the sequence's total.")),
            "each beam keeps only its own best continuation": mutate({
                "candidates = (scores[:, None] + logp).reshape(-1)": "best, token = logp.max(-1)",
                "scores, flat = candidates.topk(num_beams)": "scores = scores + best",
                "parent, token = flat // vocab, flat % vocab": "parent = torch.arange(num_beams)"},
                hint=Hint("每个 beam 只保留自己的最佳续写；应从所有 beam × 词表的候选中选出最好的几个。",
                    "Each beam keeps only its own best continuation instead of the best of all beam-by-vocab candidates.")),
        },
    ),
    Exercise(
        grade_id="ch06_perplexity_test", functions=("perplexity",), points=2,
        cases=(
            Case("no padding", dict(seed=0, vocab=100, T=12, lengths=[12, 12], init=0.02, ignore_index=-100)),
            Case("right padding of different lengths",
                 dict(seed=1, vocab=120, T=16, lengths=[16, 5, 9], init=0.3, ignore_index=-100)),
            Case("custom ignore_index", dict(seed=2, vocab=80, T=10, lengths=[4, 10], init=0.3, ignore_index=-1),
                 edge="ignore_index = -1, not the default -100"),
            Case("two positions per row", dict(seed=4, vocab=60, T=2, lengths=[2, 2, 2], init=0.4, ignore_index=-100),
                 edge="T = 2: one scored target per row"),
            Case("a row with a single real token",
                 dict(seed=5, vocab=90, T=9, lengths=[1, 9, 6], init=0.4, ignore_index=-100),
                 edge="a row of one real token: none of its targets is scored"),
            Case("peaked model (large weights)",
                 dict(seed=3, vocab=150, T=20, lengths=[20, 13, 3, 17], init=0.5, ignore_index=-100)),
        ),
        probe=probe_perplexity, judge=allclose(rtol=1e-4, atol=1e-6, messages={
            "zero_d_tensor": "perplexity must return a 0-d tensor (not a Python float or a 1-element tensor)"}),
        mutants={
            "no shift (each position scores its own token)": mutate({"logits[:, :-1, :]": "logits",
                                                                     "labels[:, 1:]": "labels"},
                hint=Hint("没有移位：位置 t 的 logits 应给 t+1 的标签打分。",
                    "There is no shift: position t's logits score the label at t + 1.")),
            "padding counted in the mean": mutate({"ignore_index=ignore_index)":
                                                   "ignore_index=ignore_index, reduction=\"sum\")",
                                                   "torch.exp(nll)": "torch.exp(nll / target.numel())"},
                hint=Hint("padding 被算进了平均的分母。", "Padding positions are counted in the mean's denominator.")),
            "mean of per-sequence perplexities": mutate({
                "F.cross_entropy(pred.reshape(-1, pred.shape[-1]), target.reshape(-1), ignore_index=ignore_index)":
                    "[F.cross_entropy(pred[i], target[i], ignore_index=ignore_index) for i in range(len(target))]",
                "torch.exp(nll)": "torch.stack(nll).exp().mean()"},
                hint=Hint("对每条序列的困惑度取平均；应先在所有 token 上平均 NLL 再取 exp。",
                    "It averages per-sequence perplexities instead of exponentiating the token-level mean NLL.")),
            "base 2 instead of e": mutate("torch.exp(nll)", "2 ** nll",
                hint=Hint("用了以 2 为底的幂，而交叉熵是自然对数，应以 e 为底。",
                    "It uses base 2, but the cross-entropy is in nats, so the base is e.")),
            "ignore index hard-coded to -100": mutate("ignore_index=ignore_index)", "ignore_index=-100)",
                hint=Hint("ignore_index 被写死为 -100，传入的值被忽略。",
                    "The ignore index is hard-coded to -100; the ignore_index argument is ignored.")),
            "returns a Python float": mutate("torch.exp(nll)", "torch.exp(nll).item()",
                hint=Hint("返回的是 Python float；要求返回 0 维张量。", "It returns a Python float; a 0-d tensor is asked for.")),
        },
    ),
]

# ============================================================================ rule table and alternatives

R = Rule
RULES = {
    "ch06_top_k_test": (
        R("every token tied with the $k$-th value is **kept**", ("ties at the k-th value",),
          {"ties at the k-th value dropped (scatter of topk indices)": "filtered"}),
        R(r"the effective $k$ is $\min(\max(k, m), V)$", ("min_tokens_to_keep above k", "k larger than the vocabulary"),
          {"min_tokens_to_keep ignored by top-k": "filtered", "crashes when k exceeds the vocabulary": "k larger"}),
        R("returning a new tensor of the same shape", ("random logits, k=5", "k=1 on large logits"),
          {"filters in place (changes the caller's logits)": "modified its input in place"}),
    ),
    "ch06_top_p_test": (
        R("remove a token iff its cumulative sum satisfies $c \\le 1 - p$",
          ("cumulative mass hits p exactly", "p = 1, one token already masked", "p = 0, min_tokens_to_keep=2"),
          {"strict comparison at the boundary (keeps one token too many)": "filtered",
           "p = 0 switches the filter off (as top_k = 0 does)": "filtered"}),
        R("so the token that makes the running total reach $p$ is **kept**",
          ("random logits, p=0.9", "peaked logits, p=0.95"), {"drops the token that crosses p": "filtered"}),
        R("the $m$ most likely tokens are never removed", ("min_tokens_to_keep=3, small p", "p = 0, min_tokens_to_keep=2"),
          {"min_tokens_to_keep ignored by top-p": "filtered"}),
        R("sort the probabilities in **ascending** order", ("random logits, p=0.9", "exact boundary, shifted logits"),
          {"ascending sort with the descending rule (keeps the least likely tokens)": "filtered"}),
        R("returning a new tensor", ("random logits, p=0.9", "already masked tokens, p=0.6"),
          {"filters in place": "modified its input in place"}),
    ),
    "ch06_repetition_penalty_test": (
        R(r"$s \cdot \text{penalty}$ if $s \le 0$", ("penalty 1.3, mixed signs", "all logits negative"),
          {"always divides (negative logits get more likely)": "penalised"}),
        R("A token that occurs five times is penalised **once**", ("tokens repeated many times",),
          {"penalises every occurrence again": "penalised"}),
        R("Tokens not in `input_ids` are unchanged", ("penalty 1.3, mixed signs", "penalty below 1 (encourages repeats)"),
          {"penalises the whole vocabulary": "penalised", "ids seen in any row penalised in every row": "penalised"}),
        R("return a new tensor", ("penalty 1.3, mixed signs", "tokens repeated many times"),
          {"penalises the logits in place": "modified its inputs in place"}),
    ),
    "ch06_temperature_test": (
        R("return `logits / t`", ("t=0.5", "t=2.0", "t=1 changes nothing", "a tiny temperature"),
          {"temperature applied after softmax": "scaled", "multiplies by the temperature": "scaled"}),
        R("raise `ValueError` if `t <= 0`", ("t=0 is an error",), {"no check for t <= 0": "ValueError"}),
        R("raise `ValueError` if `t <= 0`", ("negative t is an error",),
          {"only t == 0 rejected (a negative t flips the ranking)": "ValueError"}),
        R("`transformers.TemperatureLogitsWarper(t)`", ("t=0.5", "a tiny temperature"),
          {"divides in place": "modified its input in place"}),
    ),
    "ch06_sample_next_test": (
        R(r"row $i$ drawn from $\mathrm{softmax}(\text{logits}_i)$", ("two different rows in one batch",
                                                                         "banned tokens never drawn"),
          {"argmax instead of sampling": "frequencies", "softmax over the batch dimension": "probability"}),
        R("using **only** `generator` for randomness", ("nearly flat distribution", "banned tokens never drawn"),
          {"ignores the generator (global RNG)": "generator"}),
        R("as large as\n$10^3$", ("logits of magnitude 1000",),
          {"exp without subtracting the max (overflows)": "logits of magnitude 1000"}),
    ),
    "ch06_greedy_cache_test": (
        R("equal token for token to", ("batch of 2, 8 new tokens", "one new token"),
          {"one token too few": "tokens", "appends the prompt's own last token first": "tokens"}),
        R("then once per further token with `input_ids` of length 1", ("batch of 2, 8 new tokens",
                                                                        "one prompt token, 12 new"),
          {"recomputes the whole prefix every step (no cache)": "length 1"}),
        R("and the cache returned by\nthe previous call", ("batch of 2, 8 new tokens", "one prompt token, 12 new"),
          {"feeds the new token but drops the cache": "tokens"}),
        R("Use `torch.no_grad()`", ("one prompt token, 12 new", "one new token"),
          {"no torch.no_grad()": "torch.no_grad"}),
    ),
    "ch06_beam_search_test": (
        R("the best `num_beams` of all\n`num_beams × vocab` candidates survive", ("3 beams, 7 new tokens", "2 beams"),
          {"each beam keeps only its own best continuation": "tokens", "greedy (ignores num_beams)": "tokens"}),
        R("never\n  `num_beams` identical copies of it", ("4 beams, short prompt", "1 beam is greedy",
                                                          "5 beams, one new token"),
          {"beams start as identical copies (duplicates never removed)": "tokens"}),
        R("scores are summed", ("3 beams, 7 new tokens", "2 beams"), {"ranks by the last token's log-prob only": "tokens"}),
    ),
    "ch06_perplexity_test": (
        R("position $t$'s logits score `labels[:, t+1]`", ("no padding", "two positions per row"),
          {"no shift (each position scores its own token)": "ppl"}),
        R("average over all non-ignored targets of the whole batch", ("right padding of different lengths",
                                                                      "a row with a single real token"),
          {"padding counted in the mean": "ppl", "mean of per-sequence perplexities": "ppl"}),
        R("`ignore_index`", ("custom ignore_index",), {"ignore index hard-coded to -100": "custom ignore_index"}),
        R("Perplexity is $\\exp$ of the mean", ("no padding", "two positions per row"), {"base 2 instead of e": "ppl"}),
        R("return a 0-d tensor", ("no padding", "two positions per row"), {"returns a Python float": "0-d tensor"}),
    ),
}

ALTERNATIVES = {
    "ch06_top_k_test": {"kthvalue threshold and torch.where": """
        def top_k_filter(logits, k, min_tokens_to_keep=1):
            v = logits.shape[-1]
            k = min(max(k, min_tokens_to_keep), v)
            kth = torch.kthvalue(logits, v - k + 1, dim=-1, keepdim=True).values
            return torch.where(logits < kth, torch.full_like(logits, float("-inf")), logits)
    """},
    "ch06_top_p_test": {"descending sort, mass strictly before each token": """
        def top_p_filter(logits, p, min_tokens_to_keep=1):
            probs, order = torch.sort(torch.softmax(logits, dim=-1), dim=-1, descending=True, stable=True)
            before = probs.cumsum(dim=-1) - probs
            keep_sorted = before < p
            keep_sorted[..., :min_tokens_to_keep] = True
            keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
            return torch.where(keep, logits, torch.full_like(logits, -math.inf))
    """},
    "ch06_repetition_penalty_test": {"a loop over rows and distinct ids": """
        def apply_repetition_penalty(logits, input_ids, penalty):
            out = logits.clone()
            for row, ids in enumerate(input_ids.tolist()):
                for tok in set(ids):
                    s = out[row, tok]
                    out[row, tok] = s / penalty if s > 0 else s * penalty
            return out
    """},
    "ch06_temperature_test": {"multiplication by 1/t in float64": """
        def apply_temperature(logits, t):
            if not t > 0:
                raise ValueError(f"temperature must be > 0, got {t}")
            return (logits.double() * (1.0 / t)).to(logits.dtype)
    """},
    "ch06_sample_next_test": {"Gumbel-max with the given generator": """
        def sample_next(logits, generator):
            u = torch.rand(logits.shape, generator=generator).clamp(min=1e-20)
            return torch.argmax(logits.float() - torch.log(-torch.log(u)), dim=-1)
    """},
    "ch06_greedy_cache_test": {"positional input_ids, last call skipped with a break": """
        def greedy_generate_with_cache(model, input_ids, max_new_tokens):
            pieces = [input_ids]
            with torch.no_grad():
                out = model(input_ids, use_cache=True)
                for i in range(max_new_tokens):
                    pieces.append(out.logits[:, -1:].argmax(dim=-1))
                    if i == max_new_tokens - 1:
                        break
                    out = model(pieces[-1], cache=out.cache, use_cache=True)
            return torch.cat(pieces, dim=1)
    """},
    "ch06_beam_search_test": {"Python lists of (score, tokens), each beam's top candidates": """
        def beam_search(model, input_ids, num_beams, max_new_tokens):
            beams = [(0.0, input_ids[0].tolist())]
            with torch.no_grad():
                for _ in range(max_new_tokens):
                    batch = torch.tensor([seq for _, seq in beams])
                    logp = torch.log_softmax(model(batch).logits[:, -1].float(), dim=-1)
                    candidates = []
                    for (score, seq), row in zip(beams, logp):
                        top = torch.topk(row, num_beams)
                        for lp, tok in zip(top.values.tolist(), top.indices.tolist()):
                            candidates.append((score + lp, seq + [tok]))
                    beams = sorted(candidates, key=lambda c: -c[0])[:num_beams]
            return torch.tensor([beams[0][1]])
    """},
    "ch06_perplexity_test": {"log_softmax, gather and a mask": """
        def perplexity(logits, labels, ignore_index=-100):
            logp = torch.log_softmax(logits[:, :-1].double(), dim=-1)
            target = labels[:, 1:]
            keep = target != ignore_index
            picked = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            return torch.exp(-(picked * keep).sum() / keep.sum()).float()
    """},
}


# Library implementations the exercises imitate (used by the test suite, in the trusted process).
ORACLES = {
    "ch06_top_k_test": oracle_top_k,
    "ch06_top_p_test": oracle_top_p,
    "ch06_repetition_penalty_test": oracle_repetition_penalty,
    "ch06_temperature_test": oracle_temperature,
    "ch06_sample_next_test": oracle_sample_next,
    "ch06_greedy_cache_test": oracle_greedy_cache,
    "ch06_beam_search_test": oracle_beam_search,
    "ch06_perplexity_test": oracle_perplexity,
}

CHAPTER = Chapter("ch06_generation", "ch06_exercises.ipynb", EXERCISES, rules=RULES, alternatives=ALTERNATIVES, oracles=ORACLES)

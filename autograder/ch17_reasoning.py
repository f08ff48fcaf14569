"""Trusted spec of Chapter 17's graded cells (solutions/ch17_reasoning/ch17_exercises.ipynb).

Probes run inside the sandbox next to the student's code and are self-contained (imports inside). Oracles run in the
trusted test process: trusted references for answer extraction and voting (1), best-of-n and the weighted vote (2),
dynamic sampling (5) and PRM aggregation (6); exact enumeration of every k-subset for pass@k and maj@k (3); TRL 1.16's
``GRPOTrainer._compute_loss`` on the same tensors for the GRPO / DAPO / Dr. GRPO losses and TRL's group statistics
for the advantages (4); ``transformers`` generation with the reference budget-forcing processor (7).

``RULES`` at the bottom quotes each rule the instructions state, names the hidden cases that break when the rule is
broken and maps each mutant that breaks it to a word its feedback must contain.
"""
from llmprep.grading.spec import Case, Chapter, Exercise, Hint, Rule, allclose, banned, mutate

# ============================================================================ 1 extraction + majority vote


def probe_vote(ns, params):
    def as_answer(x):
        return "None" if x is None else str(int(x))

    out = {}
    if "texts" in params:
        out["extracted"] = [as_answer(ns["extract_answer"](t)) for t in params["texts"]]
    if "votes" in params:
        out["vote"] = as_answer(ns["majority_vote"](list(params["votes"])))
    return out


judge_vote = allclose(messages={"vote": "the vote returned the wrong answer"})


def oracle_vote():
    import re

    def extract_answer(text):
        """Scan every number with its span; pick by position."""
        spans = [(m.start(), m.group()) for m in re.finditer(r"-?[0-9]+(?:,[0-9]+)*", text)]
        cut = text.rfind("Answer:")
        if cut >= 0:
            spans = [s for s in spans if s[0] >= cut + len("Answer:")][:1]
        if not spans:
            return None
        return int(spans[-1][1].replace(",", ""))

    def majority_vote(answers):
        real = [a for a in answers if a is not None]
        if not real:
            return None
        return max(real, key=lambda a: (real.count(a), -real.index(a)))

    return {"extract_answer": extract_answer, "majority_vote": majority_vote}


# ============================================================================ 2 best-of-n, weighted vote

def probe_best(ns, params):
    fn = ns["weighted_vote" if params["fn"] == "weighted" else "best_of_n"]
    try:
        got = fn(list(params["answers"]), list(params["weights"]))
    except ValueError:
        return {"raised": True}
    return {"raised": False, "choice": "None" if got is None else str(int(got))}


judge_best = allclose(messages={"choice": "the chosen answer is wrong"})


def oracle_best():
    def weighted_vote(answers, weights):
        if len(answers) != len(weights) or min(weights, default=0) < 0:
            raise ValueError("bad weights")
        order = [a for i, a in enumerate(answers) if a is not None and a not in answers[:i]]
        totals = [sum(w for b, w in zip(answers, weights) if b == a) for a in order]
        return order[totals.index(max(totals))] if order else None

    def best_of_n(answers, scores):
        if len(answers) != len(scores):
            raise ValueError("bad scores")
        idx = [i for i, a in enumerate(answers) if a is not None]
        return answers[max(idx, key=lambda i: (scores[i], -i))] if idx else None

    return {"weighted_vote": weighted_vote, "best_of_n": best_of_n}


# ============================================================================ 3 pass@k, maj@k

def probe_estimators(ns, params):
    try:
        if params["fn"] == "pass":
            value = ns["pass_at_k"](params["n"], params["c"], params["k"])
        else:
            value = ns["maj_at_k"](list(params["answers"]), params["correct"], params["k"])
    except ValueError:
        return {"raised": True}
    return {"raised": False, "estimate": float(value)}


judge_estimators = allclose(rtol=1e-9, atol=1e-12, messages={
    "estimate": "the estimate differs from the average over all k-subsets"})


def oracle_estimators():
    import itertools
    import math

    def pass_at_k(n, c, k):
        """Average over every k-subset of n labelled samples (c correct) of 'some sample is correct'."""
        if not (0 <= c <= n and 1 <= k <= n):
            raise ValueError("bad n, c, k")
        flags = [True] * c + [False] * (n - c)
        subsets = list(itertools.combinations(flags, k))
        return sum(any(s) for s in subsets) / len(subsets)

    def maj_at_k(answers, correct, k):
        if not 1 <= k <= len(answers):
            raise ValueError("bad k")
        total = 0.0
        subsets = list(itertools.combinations(answers, k))
        for s in subsets:
            real = [a for a in s if a is not None]
            if not real:
                continue
            top = max(real.count(a) for a in real)
            winners = {a for a in real if real.count(a) == top}
            total += (correct in winners) / len(winners)
        return total / math.comb(len(answers), k)

    return {"pass_at_k": pass_at_k, "maj_at_k": maj_at_k}


# ============================================================================ 4 GRPO / DAPO / Dr. GRPO loss

def probe_grpo(ns, params):
    import torch

    g = torch.Generator().manual_seed(params["seed"])
    b, t = len(params["lengths"]), params["T"]
    rewards = torch.tensor(params["rewards"], dtype=torch.float32)
    adv = ns["grpo_advantages"](rewards.clone(), params["G"], scale=params["scale"])
    logps = -torch.rand(b, t, generator=g) * 2
    old = logps + torch.randn(b, t, generator=g) * params["drift"]
    mask = (torch.arange(t)[None, :] < torch.tensor(params["lengths"])[:, None]).long()
    advantages = torch.randn(b, generator=g) * params.get("adv_scale", 1.0)
    if "adv_sign" in params:
        advantages = advantages.abs() * params["adv_sign"]
    x = logps.clone().requires_grad_()
    try:
        loss = ns["grpo_loss"](x, old, advantages, mask, params["loss_type"], params["eps_low"], params["eps_high"],
                               params.get("mcl"))
    except ValueError:
        return {"raised": True, "advantages": torch.as_tensor(adv).detach()}
    loss.backward()
    grad = x.grad if x.grad is not None else torch.zeros_like(x)
    return {"raised": False, "advantages": torch.as_tensor(adv).detach(), "loss": loss.detach(), "grad_logps": grad}


judge_grpo = allclose(rtol=1e-5, atol=1e-6, messages={
    "advantages": "the advantages differ from the group-normalised rewards",
    "loss": "the loss value differs from the expected reduction",
    "grad_logps": "the gradient of the loss with respect to logps is wrong (is the loss detached?)"})


def oracle_grpo():
    import types
    from collections import defaultdict

    import torch
    from trl import GRPOTrainer
    from trl.trainer.utils import nanstd

    def grpo_advantages(rewards, group_size, scale=True):
        """TRL 1.16's group statistics (``scale_rewards='group'`` or ``'none'``)."""
        if rewards.numel() % group_size:
            raise ValueError("rewards do not split into groups")
        grouped = rewards.view(-1, group_size)
        mean = torch.nanmean(grouped, dim=1).repeat_interleave(group_size)
        std = nanstd(grouped, dim=1).repeat_interleave(group_size)
        adv = rewards - mean
        return adv / (std + 1e-4) if scale else adv

    class _OneProcess:
        num_processes = 1
        sync_gradients = True

        def gather(self, x):
            return x

        gather_for_metrics = gather

        def reduce(self, x, reduction="sum"):
            return x

    def grpo_loss(logps, old_logps, advantages, mask, loss_type="grpo", eps_low=0.2, eps_high=0.2,
                  max_completion_length=None):
        """TRL 1.16's ``GRPOTrainer._compute_loss`` (β = 0, one process, no accumulation) on these tensors."""
        if loss_type not in ("grpo", "dapo", "dr_grpo"):
            raise ValueError(f"unknown loss_type {loss_type!r}")
        b, t = logps.shape
        fmask = mask.float()
        trainer = types.SimpleNamespace(
            _get_per_token_logps_and_entropies=lambda *a, **k: (logps, torch.zeros_like(logps), None),
            aux_loss_enabled=False, top_entropy_quantile=1.0, off_policy_mask_threshold=None,
            importance_sampling_level="token", beta=0.0, loss_type=loss_type, epsilon_low=eps_low,
            epsilon_high=eps_high, args=types.SimpleNamespace(delta=None, use_bias_correction_kl=False,
                                                              steps_per_generation=1),
            use_vllm=False, vllm_importance_sampling_correction=False, model=types.SimpleNamespace(training=False),
            max_completion_length=max_completion_length or t, current_gradient_accumulation_steps=1,
            accelerator=_OneProcess(), _entropy_bonus_enabled=False,
            _metrics={"train": defaultdict(list), "eval": defaultdict(list)})
        inputs = {"prompt_ids": torch.zeros(b, 1, dtype=torch.long), "prompt_mask": torch.ones(b, 1, dtype=torch.long),
                  "completion_ids": torch.zeros(b, t, dtype=torch.long), "completion_mask": fmask,
                  "advantages": advantages, "old_per_token_logps": old_logps, "num_items_in_batch": fmask.sum()}
        return GRPOTrainer._compute_loss(trainer, None, inputs)

    return {"grpo_advantages": grpo_advantages, "grpo_loss": grpo_loss}


def _grpo(seed, loss_type="grpo", lengths=(5, 3, 5, 1), T=5, rewards=(1, 0, 0, 1), G=2, scale=True, drift=0.3,
          eps_low=0.2, eps_high=0.2, **extra):
    return dict(seed=seed, loss_type=loss_type, lengths=list(lengths), T=T, rewards=list(rewards), G=G, scale=scale,
                drift=drift, eps_low=eps_low, eps_high=eps_high, **extra)


# ============================================================================ 5 dynamic sampling

def probe_dynamic(ns, params):
    try:
        kept, drawn = ns["dynamic_sampling"]([list(g) for g in params["groups"]], params["batch_size"])
    except ValueError:
        return {"raised": True}
    return {"raised": False, "kept": [int(i) for i in kept] or [-1], "drawn": int(drawn)}


judge_dynamic = allclose(messages={"kept": "the groups kept are wrong", "drawn": "drawn (groups sampled) is wrong"})


def oracle_dynamic():
    def dynamic_sampling(group_rewards, batch_size):
        if batch_size < 1:
            raise ValueError("batch_size < 1")
        informative = [i for i, g in enumerate(group_rewards) if len(set(g)) > 1]
        kept = informative[:batch_size]
        drawn = kept[-1] + 1 if len(kept) == batch_size else len(group_rewards)
        return kept, drawn

    return {"dynamic_sampling": dynamic_sampling}


# ============================================================================ 6 PRM aggregation

def probe_prm(ns, params):
    try:
        if params["fn"] == "score":
            return {"raised": False, "score": float(ns["prm_score"](list(params["steps"]), params["how"]))}
        best, scores = ns["prm_best_of_n"]([list(s) for s in params["solutions"]], params["how"])
    except ValueError:
        return {"raised": True}
    return {"raised": False, "best": int(best), "scores": [float(s) for s in scores]}


judge_prm = allclose(rtol=1e-9, atol=1e-12, messages={"score": "the aggregated score is wrong",
                                                       "best": "the best candidate's index is wrong"})


def oracle_prm():
    from functools import reduce

    def prm_score(step_scores, how="min"):
        if not step_scores or how not in ("min", "prod", "last"):
            raise ValueError("bad input")
        return float({"min": lambda s: sorted(s)[0], "prod": lambda s: reduce(lambda a, b: a * b, s, 1.0),
                      "last": lambda s: s[len(s) - 1]}[how](step_scores))

    def prm_best_of_n(solutions, how="min"):
        if not solutions:
            raise ValueError("no solutions")
        scores = [prm_score(s, how) for s in solutions]
        top = max(scores)
        return next(i for i, s in enumerate(scores) if s == top), scores

    return {"prm_score": prm_score, "prm_best_of_n": prm_best_of_n}


# ============================================================================ 7 budget forcing

def probe_forcing(ns, params):
    import torch

    cls = ns["BudgetForcing"]
    try:
        proc = cls(params["prompt_len"], params["delim"], params["max_think"], params.get("min_think", 0),
                   params.get("eos"))
    except ValueError:
        return {"raised": True}
    if params["kind"] == "unit":
        g = torch.Generator().manual_seed(params["seed"])
        ids = torch.tensor(params["ids"])
        scores = torch.randn(ids.shape[0], params["V"], generator=g)
        before = scores.clone()
        out = proc(ids, scores)
        return {"raised": False, "scores": torch.as_tensor(out).detach(),
                "input_untouched": bool(torch.equal(scores, before))}
    from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessorList

    torch.manual_seed(params["seed"])
    model = LlamaForCausalLM(LlamaConfig(vocab_size=params["V"], hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                         max_position_embeddings=64)).eval()
    prompt = torch.tensor(params["ids"])
    with torch.no_grad():
        out = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                             max_new_tokens=params["new"], logits_processor=LogitsProcessorList([proc]),
                             pad_token_id=0, eos_token_id=params.get("eos"))
    return {"raised": False, "tokens": out[:, prompt.shape[1]:]}


judge_forcing = allclose(rtol=0, atol=0, messages={
    "scores": "the processed scores differ (which tokens are allowed, forced or suppressed)",
    "tokens": "the generated tokens differ from generation with the reference processor"})


def oracle_forcing():
    import torch

    class BudgetForcing:
        """The reference processor, written with masks built by torch.where."""

        def __init__(self, prompt_len, delim_id, max_think, min_think=0, eos_id=None):
            if min_think < 0 or min_think > max_think:
                raise ValueError("need 0 <= min_think <= max_think")
            self.p, self.d, self.hi, self.lo, self.e = prompt_len, delim_id, max_think, min_think, eos_id

        def __call__(self, input_ids, scores):
            t = input_ids.shape[1] - self.p
            open_ = ~(input_ids[:, self.p:] == self.d).any(1, keepdim=True)
            vocab = torch.arange(scores.shape[1])[None, :]
            banned = (vocab == self.d) | ((vocab == self.e) if self.e is not None else torch.zeros_like(vocab, dtype=bool))
            out = torch.where(open_ & banned & (t < self.lo), torch.tensor(-float("inf")), scores)
            forced = torch.where(vocab == self.d, torch.tensor(0.0), torch.tensor(-float("inf")))
            return torch.where(open_ & (t >= self.hi), forced, out)

    return {"BudgetForcing": BudgetForcing}


# ============================================================================ the exercises

def _h(zh, en):
    return Hint(zh=zh, en=en)


EXERCISES = [
    Exercise(
        grade_id="ch17_vote_test", functions=("extract_answer", "majority_vote"), points=2,
        cases=(
            Case("chains of thought with a marker", {"texts": ["12 + 30 is 42. Answer: 42", "Answer: 7 apples, 3 left",
                                                              "so 5 + 6 = 11\nAnswer: 11."]}),
            Case("two markers: the last counts", {"texts": ["Answer: 5. Wait, recheck. Answer: 8 (not 9)",
                                                            "x Answer: 1 y Answer: 2 z Answer: 3"]},
                 edge="the marker written more than once"),
            Case("no marker: the conclusion", {"texts": ["3 and 4 make 7", "first 10, then 20, so 30 in all"]},
                 edge="several integers and no marker"),
            Case("negative and separated numbers", {"texts": ["Answer: -17", "we owe 1,234,567 in total",
                                                              "Answer: -2,048"]},
                 edge="a minus sign and thousands separators"),
            Case("nothing to extract", {"texts": ["I do not know", "7 then Answer: unknown", ""]},
                 edge="no integer (after the marker)"),
            Case("plain majority", {"votes": [3, 5, 5, 2, 5, 3]}),
            Case("a tie: first seen wins", {"votes": [9, 4, 4, 9, 1]}, edge="a tie between two answers"),
            Case("Nones outnumber every answer", {"votes": [None, 6, None, None, 2, 6]},
                 edge="None more frequent than any answer"),
            Case("no answer at all", {"votes": [None, None, None]}, edge="no sample has an answer"),
        ),
        probe=probe_vote, judge=judge_vote,
        mutants={
            "first marker instead of the last": mutate('text.rfind("Answer:")', 'text.find("Answer:")', hint=_h(
                "模型可能写了两次 Answer:，最后一次才是它的结论。",
                "A model may write the marker twice; its final conclusion follows the last one.")),
            "first integer when there is no marker": mutate("numbers[-1]", "numbers[0]", hint=_h(
                "没有标记时，开头的数字往往是题目里的数，结论在最后。",
                "Without a marker the first numbers restate the question; the conclusion comes last.")),
            "minus sign dropped": mutate(r'r"-?\d+(?:,\d+)*"', r'r"\d+(?:,\d+)*"', count=2, hint=_h(
                "负号是数字的一部分，丢掉它会把 -17 变成 17。",
                "The minus sign is part of the number; dropping it turns a debt into a gain.")),
            "commas split the number": mutate(r'r"-?\d+(?:,\d+)*"', r'r"-?\d+"', count=2, hint=_h(
                "千位分隔符不是数字之间的分隔，1,234 是一个数。",
                "A thousands separator does not end a number; keep the digits together.")),
            "zero instead of None": mutate("None if chosen is None", "0 if chosen is None", hint=_h(
                "没有答案就是没有答案，返回 0 会被当成一票。",
                "A missing answer must stay missing; a zero would be counted as a real vote.")),
            "None counted as a vote": mutate("if a is not None:", "if True:", hint=_h(
                "没抽出答案的样本不是一个候选答案，不能参与投票。",
                "Samples that gave no answer are not a candidate; they must not vote.")),
            "tie goes to the last seen": mutate("next(a for a in counts if counts[a] == best)",
                                                "[a for a in counts if counts[a] == best][-1]", hint=_h(
                "平票时按规定取最先出现的答案，而不是最后一个。",
                "The stated tie rule prefers the earliest answer, not the latest one.")),
        },
    ),
    Exercise(
        grade_id="ch17_best_of_n_test", functions=("weighted_vote", "best_of_n"), points=2,
        cases=(
            Case("weighted: weight beats count", {"fn": "weighted", "answers": [5, 5, 3, 5],
                                                  "weights": [0.125, 0.125, 0.75, 0.25]},
                 edge="the most frequent answer has less total weight"),
            Case("weighted: with Nones", {"fn": "weighted", "answers": [None, 2, None, 4, 2],
                                          "weights": [1.0, 0.25, 1.0, 0.375, 0.25]}),
            Case("weighted: exact tie", {"fn": "weighted", "answers": [8, 1, 1, 8],
                                         "weights": [0.25, 0.5, 0.0, 0.25]}, edge="two totals exactly equal"),
            Case("weighted: negative weight", {"fn": "weighted", "answers": [1, 2], "weights": [0.5, -0.25]},
                 edge="a negative weight"),
            Case("weighted: lengths differ", {"fn": "weighted", "answers": [1, 2, 3], "weights": [0.5, 0.5]},
                 edge="one weight missing"),
            Case("best: plain", {"fn": "best", "answers": [3, 4, 5], "weights": [-2.0, -0.5, -1.0]}),
            Case("best: top score has no answer", {"fn": "best", "answers": [3, None, 5],
                                                   "weights": [-2.0, -0.1, -1.0]},
                 edge="the highest score belongs to a sample without an answer"),
            Case("best: tied scores", {"fn": "best", "answers": [6, 7, 8], "weights": [-1.5, -0.5, -0.5]},
                 edge="two samples share the top score"),
            Case("best: no answers", {"fn": "best", "answers": [None, None], "weights": [0.0, 1.0]},
                 edge="no sample has an answer"),
        ),
        probe=probe_best, judge=judge_best,
        mutants={
            "counts instead of summed weights": mutate("totals.get(a, 0.0) + float(w)", "totals.get(a, 0.0) + 1.0",
                                                       hint=_h("加权投票要把每个答案的权重加起来，而不是数票数。",
                                                               "A weighted vote adds up the weights behind each "
                                                               "answer instead of counting samples.")),
            "None sample can win best-of-n": mutate("if a is not None and (best is None or s > best[1]):",
                                                    "if best is None or s > best[1]:", hint=_h(
                "分数最高的样本如果没有答案，应该跳过它，看下一个。",
                "A top-scored sample without an answer has nothing to return; skip it.")),
            "tie goes to the later sample": mutate("s > best[1]", "s >= best[1]", hint=_h(
                "分数相同时保留先出现的样本，不要被后来的替换。",
                "On equal scores keep the earlier sample instead of replacing it.")),
            "negative weight accepted": mutate("if any(w < 0 for w in weights):", "if False:", hint=_h(
                "负的权重没有意义，按说明应该报 ValueError。",
                "A negative weight makes no sense here, and the instructions ask for an error.")),
        },
    ),
    Exercise(
        grade_id="ch17_estimators_test", functions=("pass_at_k", "maj_at_k"), points=3,
        cases=(
            Case("pass@1", {"fn": "pass", "n": 10, "c": 3, "k": 1}),
            Case("pass@k, k = n", {"fn": "pass", "n": 6, "c": 1, "k": 6}, edge="k equal to n"),
            Case("pass@k, n - c < k", {"fn": "pass", "n": 8, "c": 5, "k": 4}, edge="every subset holds a correct one"),
            Case("pass@k, middle k", {"fn": "pass", "n": 12, "c": 2, "k": 5}),
            Case("pass@k, k > n", {"fn": "pass", "n": 4, "c": 1, "k": 5}, edge="k above n"),
            Case("pass@k, k = 0", {"fn": "pass", "n": 5, "c": 2, "k": 0}, edge="k below 1"),
            Case("pass@k, c > n", {"fn": "pass", "n": 4, "c": 5, "k": 2}, edge="c above n"),
            Case("maj@1", {"fn": "maj", "answers": [1, 2, 1, 3, None, 1], "correct": 1, "k": 1},
                 edge="k = 1: one sample"),
            Case("maj@3 with ties", {"fn": "maj", "answers": [4, 5, 6, 4, 5, 7], "correct": 4, "k": 3},
                 edge="subsets whose top answers tie"),
            Case("maj@2 with many Nones", {"fn": "maj", "answers": [None, None, None, 2, 2, 9], "correct": 2, "k": 2},
                 edge="subsets where None is the most frequent"),
            Case("maj@k, k = n", {"fn": "maj", "answers": [3, 3, 8, 8, 8, None, 3, 3], "correct": 3, "k": 8},
                 edge="k equal to n"),
            Case("maj@5 of 9", {"fn": "maj", "answers": [1, 2, 2, 3, 1, 2, 4, 1, 2], "correct": 1, "k": 5}),
            Case("maj@k, k = 0", {"fn": "maj", "answers": [1, 2], "correct": 1, "k": 0}, edge="k below 1"),
        ),
        probe=probe_estimators, judge=judge_estimators,
        mutants={
            "plug-in pass@k, 1 - (1 - c/n)^k": mutate("1.0 - math.comb(n - c, k) / math.comb(n, k)",
                                                      "1.0 - (1 - c / n) ** k", hint=_h(
                "用 p̂ 代入 1-(1-p)^k 是有偏的（放回抽样），要对不放回的子集求平均。",
                "Plugging the sample rate into the with-replacement formula is biased; average over subsets.")),
            "k below 1 not rejected": mutate("if not (0 <= c <= n and 1 <= k <= n):", "if not (0 <= c <= n and k <= n):",
                                             hint=_h("k = 0 个样本不能估计任何东西，应该报错。",
                                                     "A budget of zero samples estimates nothing; the instructions "
                                                     "ask for an error.")),
            "ties counted as wins": mutate("total += ways / len(winners)", "total += ways", hint=_h(
                "平票时正确答案只有一部分机会胜出，要按并列个数平分。",
                "A tie is won only by a coin flip, so the correct answer earns a share.")),
            "None votes": mutate("if v is not None and d > 0", "if d > 0", hint=_h(
                "None 表示没有答案，不能作为一个候选参与多数投票。",
                "A missing answer is not a candidate and must not win or block a vote.")),
            "vote of all n instead of k": mutate("if sum(drawn) != k:", "if sum(drawn) != len(answers):", hint=_h(
                "maj@k 是 k 个样本的投票，不能用全部 n 个样本的投票代替。",
                "The budget is k samples; the vote over all n samples answers another question.")),
        },
        bans=banned("llmprep.reasoning.pass_at_k", "llmprep.reasoning.maj_at_k"),
    ),
    Exercise(
        grade_id="ch17_grpo_loss_test", functions=("grpo_advantages", "grpo_loss"), points=3,
        cases=(
            Case("GRPO, ragged lengths", _grpo(0, "grpo", rewards=(1, 0, 0, 1))),
            Case("GRPO, one-token answer", _grpo(1, "grpo", lengths=(1, 5, 2, 5), rewards=(0, 1, 1, 1)),
                 edge="sequences of very different lengths"),
            Case("DAPO, padded batch", _grpo(2, "dapo", lengths=(5, 1, 2, 3)), edge="most of the batch is padding"),
            Case("DAPO, clip-higher", _grpo(3, "dapo", lengths=(5, 5, 5, 5), drift=1.0, eps_low=0.2, eps_high=0.28,
                                           adv_sign=1.0), edge="ratios above 1 + eps_low with positive advantages"),
            Case("Dr. GRPO, constant normaliser", _grpo(4, "dr_grpo", lengths=(4, 2, 3, 1), mcl=8, scale=False),
                 edge="max_completion_length larger than T"),
            Case("Dr. GRPO, default length", _grpo(5, "dr_grpo", lengths=(5, 1, 5, 3), scale=False,
                                                   rewards=(0, 1, 1, 1, 0, 0, 0, 1), G=4)),
            Case("groups of two", _grpo(6, "grpo", rewards=(1, 0, 1, 1, 0, 1), G=2, lengths=(2, 4, 3, 1)),
                 edge="group size 2: n - 1 = 1"),
            Case("groups of four, all equal one", _grpo(7, "dapo", rewards=(1, 1, 1, 1, 0, 0, 1, 0), G=4,
                                                        lengths=(3, 3, 2, 5)), edge="a group with zero spread"),
            Case("unknown loss type", _grpo(8, "ppo"), edge="a loss_type not in the list"),
        ),
        probe=probe_grpo, judge=judge_grpo,
        mutants={
            "population std (n)": mutate("groups.std(1, keepdim=True)", "groups.std(1, keepdim=True, correction=0)",
                                         hint=_h("GRPO 的组内标准差用无偏估计（除以 n−1），和 TRL 一致。",
                                                 "The group spread is the unbiased estimate dividing by n - 1, "
                                                 "as TRL computes it.")),
            "std division ignores scale": mutate("if scale:", "if True:", hint=_h(
                "Dr. GRPO 去掉了除以标准差这一步，只减组均值。",
                "Dr. GRPO removes the division by the spread and only centres the rewards.")),
            "GRPO averaged over all tokens": mutate(
                "return ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1.0)).mean()",
                "return (per_token * mask).sum() / mask.sum()", hint=_h(
                    "原版 GRPO 先对每条序列求平均，再对序列求平均，所以长答案的 token 权重更小。",
                    "Plain GRPO averages inside each sequence first, so long answers weigh less per token.")),
            "DAPO divides by padding too": mutate("(per_token * mask).sum() / mask.sum().clamp(min=1.0)",
                                                  "(per_token * mask).sum() / mask.numel()", hint=_h(
                "token 级平均的分母是真实 token 数，padding 不算。",
                "The token-level mean divides by the real tokens only, never by padding.")),
            "Dr. GRPO divides by the real token count": mutate(
                "(per_token * mask).sum() / (per_token.shape[0] * length)",
                "(per_token * mask).sum() / mask.sum()", hint=_h(
                    "Dr. GRPO 的分母是常数（序列数 × 最大长度），与回答长度无关。",
                    "Dr. GRPO divides by a constant that does not depend on how long the answers are.")),
            "symmetric clipping": mutate("1 + eps_high", "1 + eps_low", hint=_h(
                "clip-higher 的上界用 eps_high，下界用 eps_low，两者不同。",
                "Clip-higher uses its own upper epsilon; the two bounds are not symmetric.")),
            "unknown loss type accepted": mutate('raise ValueError(f"unknown loss_type {loss_type!r}")',
                                                 "return per_token.mean()", hint=_h(
                "不认识的 loss_type 应该报错，而不是悄悄给一个默认值。",
                "An unknown loss type should fail loudly instead of silently picking a reduction.")),
        },
        bans=banned("llmprep.reasoning.group_advantages", "llmprep.reasoning.grpo_loss"),
    ),
    Exercise(
        grade_id="ch17_dynamic_sampling_test", functions=("dynamic_sampling",), points=2,
        cases=(
            Case("mixed stream", {"groups": [[0, 1, 0], [0, 0, 0], [1, 1, 0], [0, 1, 1], [1, 0, 0]],
                                  "batch_size": 2}),
            Case("all-right groups", {"groups": [[1, 1, 1, 1], [1, 0, 1, 1], [1, 1, 1, 1], [0, 1, 1, 1]],
                                      "batch_size": 2}, edge="groups that are all correct"),
            Case("filled exactly at the end", {"groups": [[1, 0], [0, 1], [1, 0]], "batch_size": 2},
                 edge="the batch fills before the last group"),
            Case("dropped before kept", {"groups": [[0, 0], [0, 0], [1, 1], [0, 1]], "batch_size": 1},
                 edge="three dropped groups before the first kept"),
            Case("stream runs out", {"groups": [[0, 0, 0], [0, 1, 0], [1, 1, 1]], "batch_size": 3},
                 edge="fewer informative groups than batch_size"),
            Case("float rewards", {"groups": [[0.5, 0.5], [0.25, 0.75], [0.0, 0.0]], "batch_size": 1}),
        ),
        probe=probe_dynamic, judge=judge_dynamic,
        mutants={
            "only all-wrong groups dropped": mutate("if max(rewards) > min(rewards):", "if max(rewards) > 0:",
                                                    hint=_h("全对的组和全错的组一样，组内优势全为 0，也要丢掉。",
                                                            "A group that is all correct has zero advantage too, "
                                                            "just like one that is all wrong.")),
            "one group too many": mutate("if len(kept) == batch_size:", "if len(kept) > batch_size:", hint=_h(
                "凑够 batch_size 个组就停，不要多采一组。",
                "Stop sampling once the batch is full; one more group is wasted compute.")),
            "drawn counts kept groups only": mutate("drawn = i + 1", "drawn = len(kept) + 1", hint=_h(
                "被丢弃的组也花了采样的算力，drawn 要把它们算进去。",
                "Dropped groups were still sampled and cost compute, so they count as drawn.")),
            "short batch raises": mutate("return kept, drawn",
                                         "if len(kept) < batch_size:\n        raise ValueError('short')\n"
                                         "    return kept, drawn", hint=_h(
                                             "流用完了就返回已经保留的组，这是一个较短的 batch，不是错误。",
                                             "When the stream is exhausted, return the short batch instead "
                                             "of failing.")),
        },
    ),
    Exercise(
        grade_id="ch17_prm_test", functions=("prm_score", "prm_best_of_n"), points=2,
        cases=(
            Case("min of a chain", {"fn": "score", "steps": [0.9, 0.35, 0.8], "how": "min"},
                 edge="one weak step in the middle"),
            Case("product of a chain", {"fn": "score", "steps": [0.9, 0.5, 0.8, 0.99], "how": "prod"}),
            Case("last step", {"fn": "score", "steps": [0.2, 0.9, 0.6], "how": "last"},
                 edge="the last step differs from the first"),
            Case("one step", {"fn": "score", "steps": [0.7], "how": "prod"}, edge="a single step"),
            Case("empty solution", {"fn": "score", "steps": [], "how": "min"}, edge="no steps"),
            Case("unknown aggregation", {"fn": "score", "steps": [0.5], "how": "mean"}, edge="an unknown how"),
            Case("best by min", {"fn": "best", "solutions": [[0.9, 0.1], [0.6, 0.7, 0.65], [0.95, 0.5]],
                                 "how": "min"}),
            Case("best by product, lengths differ", {"fn": "best", "solutions": [[0.9, 0.9, 0.9], [0.8], [0.85, 0.95]],
                                                     "how": "prod"}, edge="solutions of different lengths"),
            Case("best, tie", {"fn": "best", "solutions": [[0.5, 0.9], [0.7, 0.5], [0.5]], "how": "min"},
                 edge="three candidates tie"),
            Case("best by last", {"fn": "best", "solutions": [[0.1, 0.9], [0.99, 0.3]], "how": "last"},
                 edge="the first steps disagree with the last"),
        ),
        probe=probe_prm, judge=judge_prm,
        mutants={
            "mean instead of min": mutate("return float(min(step_scores))",
                                          "return float(sum(step_scores) / len(step_scores))", hint=_h(
                                              "平均分会被其他好步骤掩盖掉一个错误步骤；最弱的一步决定整条链。",
                                              "An average hides one wrong step behind good ones; the weakest "
                                              "step decides.")),
            "geometric mean instead of product": mutate("return float(math.prod(step_scores))",
                                                        "return float(math.prod(step_scores) ** "
                                                        "(1 / len(step_scores)))", hint=_h(
                "乘积表示每一步都对的概率，不要按步数开方归一化。",
                "The product is the chance that every step is right; do not normalise it by length.")),
            "first step instead of last": mutate("return float(step_scores[-1])", "return float(step_scores[0])",
                                                 hint=_h("'last' 取最后一步的分数，它评价的是走到结论的整条路。",
                                                         "The last option reads the final step, which judges the "
                                                         "path up to the conclusion.")),
            "tie goes to the last": mutate("key=lambda i: (scores[i], -i)", "key=lambda i: (scores[i], i)", hint=_h(
                "分数相同按规定取第一个候选。", "Equal scores must keep the first candidate, as stated.")),
            "empty solution scores zero": mutate('raise ValueError("a solution needs at least one step")',
                                                 "return 0.0", hint=_h(
                "没有步骤的解不能打分，应该报 ValueError。",
                "A solution without steps has nothing to score, so raise an error instead.")),
        },
    ),
    Exercise(
        grade_id="ch17_budget_forcing_test", functions=("BudgetForcing",), points=3,
        cases=(
            Case("forced at the budget", {"kind": "unit", "seed": 0, "V": 10, "prompt_len": 2, "delim": 4,
                                          "max_think": 3, "ids": [[7, 8, 1, 2, 3], [7, 8, 5, 5, 6]]},
                 edge="exactly max_think tokens generated"),
            Case("closed row left alone", {"kind": "unit", "seed": 1, "V": 10, "prompt_len": 2, "delim": 4,
                                           "max_think": 3, "ids": [[7, 8, 4, 2, 3, 9], [7, 8, 5, 5, 6, 1]]},
                 edge="one row already wrote the delimiter"),
            Case("under the minimum, end token given", {"kind": "unit", "seed": 2, "V": 10, "prompt_len": 1,
                                                        "delim": 4, "max_think": 8, "min_think": 4, "eos": 2,
                                                        "ids": [[1, 3, 5], [1, 6, 6]]},
                 edge="fewer than min_think tokens, eos_id set"),
            Case("under the minimum, one row closed", {"kind": "unit", "seed": 3, "V": 10, "prompt_len": 1,
                                                       "delim": 4, "max_think": 8, "min_think": 4,
                                                       "ids": [[1, 4, 5], [1, 6, 6]]},
                 edge="a closed row under the minimum"),
            Case("between the bounds", {"kind": "unit", "seed": 4, "V": 10, "prompt_len": 2, "delim": 4,
                                        "max_think": 6, "min_think": 1, "eos": 0, "ids": [[7, 8, 1, 2, 3]]}),
            Case("generate, budget 3", {"kind": "gen", "seed": 5, "V": 16, "prompt_len": 4, "delim": 9,
                                        "max_think": 3, "new": 7, "ids": [[1, 2, 3, 4], [4, 3, 2, 1]]}),
            Case("generate, budget 0", {"kind": "gen", "seed": 6, "V": 16, "prompt_len": 3, "delim": 11,
                                        "max_think": 0, "new": 4, "ids": [[5, 6, 7], [8, 9, 10]]},
                 edge="max_think = 0: the delimiter first"),
            Case("generate, floor and cap", {"kind": "gen", "seed": 7, "V": 16, "prompt_len": 3, "delim": 5,
                                             "max_think": 5, "min_think": 3, "eos": 2, "new": 9,
                                             "ids": [[1, 5, 2], [3, 3, 3]]}),
            Case("min above max", {"kind": "unit", "seed": 0, "V": 10, "prompt_len": 1, "delim": 4, "max_think": 2,
                                   "min_think": 3, "ids": [[1, 2]]}, edge="min_think > max_think"),
        ),
        probe=probe_forcing, judge=judge_forcing,
        mutants={
            "closed rows forced again": mutate("open_rows = ~(generated == self.delim_id).any(1)",
                                               "open_rows = torch.ones(len(generated), dtype=torch.bool)", hint=_h(
                                                   "已经写出分隔符的行在写答案，不能再强制或屏蔽它。",
                                                   "A row past its delimiter is writing the answer; leave it "
                                                   "untouched.")),
            "end token allowed early": mutate("for token in (self.delim_id, self.eos_id):",
                                              "for token in (self.delim_id,):", hint=_h(
                                                  "最少思考长度之前，结束符也不能选，否则模型直接停下。",
                                                  "Before the minimum, ending the generation must be blocked too, "
                                                  "or the model just stops.")),
            "forced one token late": mutate("if steps >= self.max_think:", "if steps > self.max_think:", hint=_h(
                "生成了 max_think 个 token 之后，下一个就必须是分隔符。",
                "After max_think reasoning tokens the very next token must be the delimiter.")),
            "min above max accepted": mutate("if not 0 <= min_think <= max_think:", "if min_think < 0:", hint=_h(
                "最少长度大于最多长度是矛盾的设置，应该报错。",
                "A floor above the cap is contradictory, so the constructor should refuse it.")),
            "scores changed in place": mutate("scores = scores.clone()", "scores = scores", hint=_h(
                "generate 传进来的 scores 可能被别的处理器共用，返回新张量。",
                "Other processors may share the incoming tensor, so build and return a new one.")),
        },
        bans=banned("llmprep.reasoning.BudgetForcing"),
    ),
]

R = Rule
RULES = {
    "ch17_vote_test": (
        R("if the text contains `Answer:`, the answer is the first integer after its last occurrence",
          ("two markers: the last counts", "chains of thought with a marker"),
          {"first marker instead of the last": "extracted"}),
        R("otherwise it is the last integer in the text", ("no marker: the conclusion",),
          {"first integer when there is no marker": "extracted"}),
        R("a minus sign directly before the digits belongs to the number", ("negative and separated numbers",),
          {"minus sign dropped": "extracted"}),
        R("commas inside a number are dropped", ("negative and separated numbers",),
          {"commas split the number": "extracted"}),
        R("return None when there is no such integer", ("nothing to extract",), {"zero instead of None": "extracted"}),
        R("`None` (no answer) is never a vote", ("Nones outnumber every answer",), {"None counted as a vote": "vote"}),
        R("a tie goes to the tied answer that appears first in the list", ("a tie: first seen wins",),
          {"tie goes to the last seen": "vote"}),
    ),
    "ch17_best_of_n_test": (
        R("each distinct answer scores the sum of its samples' weights", ("weighted: weight beats count",),
          {"counts instead of summed weights": "answer"}),
        R("samples without an answer (`None`) are skipped by both functions", ("best: top score has no answer",),
          {"None sample can win best-of-n": "answer"}),
        R("ties go to the answer (or the sample) that comes first", ("best: tied scores",),
          {"tie goes to the later sample": "answer"}),
        R("Raise `ValueError` if the lengths differ or a weight is negative", ("weighted: negative weight",),
          {"negative weight accepted": "ValueError"}),
    ),
    "ch17_estimators_test": (
        R("pass@k = 1 − C(n − c, k) / C(n, k)", ("pass@k, k = n", "pass@k, middle k"),
          {"plug-in pass@k, 1 - (1 - c/n)^k": "estimate"}),
        R("Raise `ValueError` unless 0 ≤ c ≤ n and 1 ≤ k ≤ n", ("pass@k, k = 0", "pass@k, k > n"),
          {"k below 1 not rejected": "ValueError"}),
        R("the expectation over all C(n, k) subsets of k of the n answers", ("maj@1", "maj@5 of 9"),
          {"vote of all n instead of k": "estimate"}),
        R("`None` is never a vote; a subset with no answer at all counts 0", ("maj@2 with many Nones",),
          {"None votes": "estimate"}),
        R("a tie among the most frequent answers counts 1 / (number of tied answers) if the correct one is among them",
          ("maj@3 with ties",), {"ties counted as wins": "estimate"}),
    ),
    "ch17_grpo_loss_test": (
        R("divided by the group's standard deviation (unbiased, n − 1) plus 1e-4", ("groups of two",),
          {"population std (n)": "advantages"}),
        R("`scale=False` (Dr. GRPO) only subtracts the group mean", ("Dr. GRPO, constant normaliser",),
          {"std division ignores scale": "advantages"}),
        R("`\"grpo\"`: each sequence's masked token mean, then the mean over sequences",
          ("GRPO, one-token answer", "GRPO, ragged lengths"), {"GRPO averaged over all tokens": "loss"}),
        R("`\"dapo\"`: the sum over all unmasked tokens divided by their number", ("DAPO, padded batch",),
          {"DAPO divides by padding too": "loss"}),
        R("`\"dr_grpo\"`: the sum divided by (number of sequences × `max_completion_length`)",
          ("Dr. GRPO, constant normaliser", "Dr. GRPO, default length"),
          {"Dr. GRPO divides by the real token count": "loss"}),
        R("clipped to [1 − eps_low, 1 + eps_high]", ("DAPO, clip-higher",), {"symmetric clipping": "loss"}),
        R("Raise `ValueError` for an unknown `loss_type`", ("unknown loss type",),
          {"unknown loss type accepted": "ValueError"}),
    ),
    "ch17_dynamic_sampling_test": (
        R("A group whose rewards are all equal (all right or all wrong) carries no signal and is dropped",
          ("all-right groups", "mixed stream"), {"only all-wrong groups dropped": "kept"}),
        R("Stop drawing as soon as `batch_size` groups are kept", ("filled exactly at the end",),
          {"one group too many": "kept"}),
        R("`drawn` counts every group looked at, kept or dropped", ("dropped before kept",),
          {"drawn counts kept groups only": "drawn"}),
        R("if the stream runs out, return the groups kept so far", ("stream runs out",),
          {"short batch raises": "ValueError"}),
    ),
    "ch17_prm_test": (
        R("`\"min\"`: the smallest step score", ("min of a chain",), {"mean instead of min": "score"}),
        R("`\"prod\"`: the product of the step scores", ("best by product, lengths differ", "product of a chain"),
          {"geometric mean instead of product": "score"}),
        R("`\"last\"`: the score of the final step", ("last step", "best by last"),
          {"first step instead of last": "score"}),
        R("ties go to the first candidate", ("best, tie",), {"tie goes to the last": "best"}),
        R("Raise `ValueError` for an empty solution or an unknown `how`", ("empty solution",),
          {"empty solution scores zero": "ValueError"}),
    ),
    "ch17_budget_forcing_test": (
        R("a row that has already produced the delimiter is left alone", ("closed row left alone",
                                                                            "under the minimum, one row closed"),
          {"closed rows forced again": "scores"}),
        R("before `min_think` tokens have been generated, the delimiter and the end token cannot be chosen",
          ("under the minimum, end token given",), {"end token allowed early": "scores"}),
        R("once `max_think` tokens have been generated without the delimiter, the delimiter is forced",
          ("forced at the budget", "generate, budget 0"), {"forced one token late": "scores"}),
        R("Raise `ValueError` unless 0 ≤ `min_think` ≤ `max_think`", ("min above max",),
          {"min above max accepted": "ValueError"}),
        R("do not change the input in place", ("forced at the budget",), {"scores changed in place": "in place"}),
    ),
}

ALTERNATIVES = {
    "ch17_vote_test": {"rpartition and list counting": r'''
        def extract_answer(text):
            _, sep, tail = text.rpartition("Answer:")
            pool = tail if sep else text
            found = [m.group().replace(",", "") for m in re.finditer(r"-?[0-9]+(,[0-9]+)*", pool)]
            if not found:
                return None
            return int(found[0] if sep else found[-1])

        def majority_vote(answers):
            real = [a for a in answers if a is not None]
            if not real:
                return None
            return max(real, key=lambda a: (real.count(a), -real.index(a)))
    '''},
    "ch17_best_of_n_test": {"numpy arrays and argmax (first maximum)": """
        import numpy as np

        def weighted_vote(answers, weights):
            w = np.asarray(weights, dtype=float)
            if len(answers) != len(w) or (w < 0).any():
                raise ValueError("bad weights")
            order = list(dict.fromkeys(a for a in answers if a is not None))
            if not order:
                return None
            totals = np.array([w[[b == a for b in answers]].sum() for a in order])
            return order[int(np.argmax(totals))]

        def best_of_n(answers, scores):
            if len(answers) != len(scores):
                raise ValueError("bad scores")
            s = np.array([x if a is not None else -np.inf for a, x in zip(answers, scores)], dtype=float)
            if all(a is None for a in answers):
                return None
            return answers[int(np.argmax(s))]
    """},
    "ch17_estimators_test": {"product form of pass@k, subsets enumerated for maj@k": """
        import itertools

        def pass_at_k(n, c, k):
            if c < 0 or c > n or k < 1 or k > n:
                raise ValueError("bad n, c, k")
            if n - c < k:
                return 1.0
            miss = 1.0
            for j in range(n - c + 1, n + 1):
                miss *= 1.0 - k / j
            return 1.0 - miss

        def maj_at_k(answers, correct, k):
            if k < 1 or k > len(answers):
                raise ValueError("bad k")
            won = 0.0
            count = 0
            for subset in itertools.combinations(range(len(answers)), k):
                count += 1
                votes = {}
                for i in subset:
                    if answers[i] is not None:
                        votes[answers[i]] = votes.get(answers[i], 0) + 1
                if votes:
                    top = max(votes.values())
                    tied = [a for a, v in votes.items() if v == top]
                    won += (correct in tied) / len(tied)
            return won / count
    """},
    "ch17_grpo_loss_test": {"torch.where clipping and explicit normalisers": """
        def grpo_advantages(rewards, group_size, scale=True):
            if len(rewards) % group_size != 0:
                raise ValueError("bad group size")
            out = []
            for g in rewards.split(group_size):
                centred = g - g.mean()
                out.append(centred / (torch.sqrt(((g - g.mean()) ** 2).sum() / (len(g) - 1)) + 1e-4)
                           if scale else centred)
            return torch.cat(out)

        def grpo_loss(logps, old_logps, advantages, mask, loss_type="grpo", eps_low=0.2, eps_high=0.2,
                      max_completion_length=None):
            if loss_type not in {"grpo", "dapo", "dr_grpo"}:
                raise ValueError("unknown loss type")
            r = (logps - old_logps).exp()
            A = advantages[:, None].expand_as(r)
            clipped = torch.where(r > 1 + eps_high, torch.full_like(r, 1 + eps_high),
                                  torch.where(r < 1 - eps_low, torch.full_like(r, 1 - eps_low), r))
            per_token = -torch.minimum(r * A, clipped * A) * mask.float()
            if loss_type == "grpo":
                lengths = mask.float().sum(1).clamp(min=1.0)
                return (per_token.sum(1) / lengths).sum() / len(lengths)
            if loss_type == "dapo":
                return per_token.sum() / max(float(mask.sum()), 1.0)
            return per_token.sum() / (logps.shape[0] * (max_completion_length or logps.shape[1]))
    """},
    "ch17_dynamic_sampling_test": {"an iterator and a while loop": """
        def dynamic_sampling(group_rewards, batch_size):
            if batch_size < 1:
                raise ValueError("batch_size < 1")
            stream = iter(group_rewards)
            kept, drawn = [], 0
            while len(kept) < batch_size:
                group = next(stream, None)
                if group is None:
                    break
                if len(set(group)) > 1:
                    kept.append(drawn)
                drawn += 1
            return kept, drawn
    """},
    "ch17_prm_test": {"logs for the product, sorted for the minimum": """
        def prm_score(step_scores, how="min"):
            steps = list(step_scores)
            if not steps:
                raise ValueError("empty")
            if how == "min":
                return sorted(steps)[0]
            if how == "prod":
                if any(s == 0 for s in steps):
                    return 0.0
                return float(math.exp(sum(math.log(s) for s in steps)))
            if how == "last":
                return steps[len(steps) - 1]
            raise ValueError("unknown how")

        def prm_best_of_n(solutions, how="min"):
            if len(solutions) == 0:
                raise ValueError("empty")
            scores = [prm_score(s, how) for s in solutions]
            best = 0
            for i, s in enumerate(scores):
                if s > scores[best]:
                    best = i
            return best, scores
    """},
    "ch17_budget_forcing_test": {"masks from torch.where, no in-place writes": """
        class BudgetForcing:
            def __init__(self, prompt_len, delim_id, max_think, min_think=0, eos_id=None):
                if min_think < 0 or min_think > max_think:
                    raise ValueError("bad budget")
                self.p, self.d, self.hi, self.lo, self.e = prompt_len, delim_id, max_think, min_think, eos_id

            def __call__(self, input_ids, scores):
                t = input_ids.shape[1] - self.p
                still_thinking = ~(input_ids[:, self.p:] == self.d).any(1, keepdim=True)
                vocab = torch.arange(scores.shape[1])[None, :]
                stop = vocab == self.d
                if self.e is not None:
                    stop = stop | (vocab == self.e)
                neg = torch.full_like(scores, -math.inf)
                out = torch.where(still_thinking & stop & (t < self.lo), neg, scores)
                only_delim = torch.where(vocab == self.d, torch.zeros_like(scores), neg)
                return torch.where(still_thinking & (t >= self.hi), only_delim, out)
    """},
}

ORACLES = {
    "ch17_vote_test": oracle_vote,
    "ch17_best_of_n_test": oracle_best,
    "ch17_estimators_test": oracle_estimators,
    "ch17_grpo_loss_test": oracle_grpo,
    "ch17_dynamic_sampling_test": oracle_dynamic,
    "ch17_prm_test": oracle_prm,
    "ch17_budget_forcing_test": oracle_forcing,
}

CHAPTER = Chapter("ch17_reasoning", "ch17_exercises.ipynb", EXERCISES, rules=RULES, alternatives=ALTERNATIVES,
                  oracles=ORACLES)

"""Chapter 17: every exercise's solution (read from the solution notebook) agrees with its oracle on fresh random
inputs beyond the hidden cases (trusted references, exact subset enumeration, TRL 1.16's GRPOTrainer loss, transformers
generation with the reference processor), and llmprep.reasoning's estimators and processor agree with them (fast, no
sandbox)."""
import itertools
import math
import random
import re

import pytest
import torch

from llmprep import reasoning
from llmprep.grading.spec import solution_source
from llmprep.grading.trusted import spec_module

CHAPTER, NOTEBOOK = "ch17_reasoning", "ch17_exercises.ipynb"


def solution(*names):
    ns = {"math": math, "re": re, "torch": torch, "itertools": itertools}
    exec(compile(solution_source(CHAPTER, NOTEBOOK, names), "<solution>", "exec"), ns)  # noqa: S102 - trusted source
    return ns


def oracle(name):
    return getattr(spec_module(CHAPTER), name)()


def _raises(fn, *args):
    try:
        return False, fn(*args)
    except ValueError:
        return True, None


def test_extraction_and_vote_equal_the_reference():
    ns, ref = solution("extract_answer", "majority_vote"), oracle("oracle_vote")
    rng = random.Random(0)
    words = ["so", "Answer:", "the sum is", "=", "wait,", "\n", "carry", "x"]
    for _ in range(400):
        parts = [rng.choice(words) if rng.random() < 0.6 else
                 rng.choice(["", "-"]) + str(rng.randint(0, 3000)) + rng.choice(["", ",000", ",5"]) for _ in range(6)]
        text = " ".join(parts)
        assert ns["extract_answer"](text) == ref["extract_answer"](text), text
        votes = [rng.choice([None, 1, 2, 3, -4]) for _ in range(rng.randint(0, 9))]
        assert ns["majority_vote"](votes) == ref["majority_vote"](votes), votes


def test_weighted_vote_and_best_of_n_equal_the_reference():
    ns, ref = solution("weighted_vote", "best_of_n"), oracle("oracle_best")
    rng = random.Random(1)
    for _ in range(400):
        n = rng.randint(0, 7)
        answers = [rng.choice([None, 10, 20, 30]) for _ in range(n)]
        weights = [rng.choice([0.0, 0.25, 0.5, 1.0, -0.25 if rng.random() < 0.05 else 0.75]) for _ in range(n)]
        if rng.random() < 0.05:
            weights.append(0.5)
        for name in ("weighted_vote", "best_of_n"):
            mine, theirs = _raises(ns[name], answers, weights), _raises(ref[name], answers, weights)
            assert mine == theirs, (name, answers, weights)


@pytest.mark.parametrize("seed", range(3))
def test_pass_and_maj_at_k_equal_subset_enumeration(seed):
    ns, ref = solution("pass_at_k", "maj_at_k"), oracle("oracle_estimators")
    rng = random.Random(seed)
    for _ in range(30):
        n = rng.randint(1, 9)
        answers = [rng.choice([None, 1, 2, 3, 4]) for _ in range(n)]
        k, c = rng.randint(1, n), rng.randint(0, n)
        for fn, lib in ((ns["pass_at_k"], reasoning.pass_at_k), (ref["pass_at_k"], ref["pass_at_k"])):
            assert math.isclose(fn(n, c, k), lib(n, c, k), abs_tol=1e-12)
        want = ref["maj_at_k"](answers, 1, k)
        assert math.isclose(ns["maj_at_k"](answers, 1, k), want, abs_tol=1e-12), (answers, k)
        assert math.isclose(reasoning.maj_at_k(answers, 1, k), want, abs_tol=1e-12), (answers, k)


def test_best_of_k_equals_subset_enumeration():
    rng = random.Random(3)
    for _ in range(60):
        n = rng.randint(1, 8)
        scores = [rng.choice([-1.0, -0.5, -0.25, 0.0]) for _ in range(n)]
        correct = [rng.random() < 0.4 for _ in range(n)]
        k = rng.randint(1, n)
        total = 0.0
        subsets = list(itertools.combinations(range(n), k))
        for s in subsets:
            top = max(scores[i] for i in s)
            tied = [i for i in s if scores[i] == top]
            total += sum(correct[i] for i in tied) / len(tied)
        assert math.isclose(reasoning.best_of_k(scores, correct, k), total / len(subsets), abs_tol=1e-12)


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
def test_grpo_loss_equals_trl(loss_type):
    ns, ref = solution("grpo_advantages", "grpo_loss"), oracle("oracle_grpo")
    g = torch.Generator().manual_seed(len(loss_type))
    for trial in range(5):
        b, t, group = 6, int(torch.randint(2, 9, (1,), generator=g)), 3
        rewards = torch.randint(0, 2, (b,), generator=g).float()
        for scale in (True, False):
            torch.testing.assert_close(ns["grpo_advantages"](rewards, group, scale=scale),
                                       ref["grpo_advantages"](rewards, group, scale=scale))
        logps = -torch.rand(b, t, generator=g) * 3
        old = logps + torch.randn(b, t, generator=g) * 0.5
        mask = (torch.arange(t)[None] < torch.randint(1, t + 1, (b, 1), generator=g)).long()
        adv = torch.randn(b, generator=g)
        eps_low, eps_high = 0.2, [0.2, 0.28][trial % 2]
        mcl = None if trial % 2 else t + 3
        x, y = logps.clone().requires_grad_(), logps.clone().requires_grad_()
        mine = ns["grpo_loss"](x, old, adv, mask, loss_type, eps_low, eps_high, mcl)
        theirs = ref["grpo_loss"](y, old, adv, mask, loss_type, eps_low, eps_high, mcl)
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)
        mine.backward()
        theirs.backward()
        torch.testing.assert_close(x.grad, y.grad, rtol=1e-5, atol=1e-6)


def test_dynamic_sampling_and_prm_equal_the_reference():
    ns = solution("dynamic_sampling", "prm_score", "prm_best_of_n")
    dyn, prm = oracle("oracle_dynamic"), oracle("oracle_prm")
    rng = random.Random(4)
    for _ in range(300):
        groups = [[rng.randint(0, 1) for _ in range(3)] for _ in range(rng.randint(0, 8))]
        bs = rng.randint(0, 4)
        assert _raises(ns["dynamic_sampling"], groups, bs) == _raises(dyn["dynamic_sampling"], groups, bs), (groups, bs)
        sols = [[rng.choice([0.25, 0.5, 0.75, 1.0]) for _ in range(rng.randint(0, 3))] for _ in range(rng.randint(0, 4))]
        how = rng.choice(["min", "prod", "last", "mean"])
        assert _raises(ns["prm_best_of_n"], sols, how) == _raises(prm["prm_best_of_n"], sols, how), (sols, how)


def test_budget_forcing_equals_the_reference_processor_token_for_token():
    from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessorList

    mine, theirs = solution("BudgetForcing")["BudgetForcing"], oracle("oracle_forcing")["BudgetForcing"]
    g = torch.Generator().manual_seed(5)
    for _ in range(50):   # direct calls
        b, plen, extra, v = 3, 2, int(torch.randint(0, 6, (1,), generator=g)), 12
        ids = torch.randint(0, v, (b, plen + extra), generator=g)
        hi = int(torch.randint(0, 6, (1,), generator=g))
        lo = int(torch.randint(0, hi + 1, (1,), generator=g))
        scores = torch.randn(b, v, generator=g)
        args = (plen, 4, hi, lo, 1)
        want = theirs(*args)(ids, scores)
        assert torch.equal(mine(*args)(ids, scores), want)
        assert torch.equal(reasoning.BudgetForcing(*args)(ids, scores), want)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=24, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2,
                                         max_position_embeddings=64)).eval()
    prompt = torch.randint(3, 24, (4, 5), generator=g)
    outs = {}
    for name, cls in (("mine", mine), ("theirs", theirs)):
        for cap in (0, 2, 5):
            outs[name, cap] = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                             max_new_tokens=cap + 3, pad_token_id=0, eos_token_id=None,
                                             logits_processor=LogitsProcessorList([cls(5, 7, cap, min(cap, 1))]))
    for cap in (0, 2, 5):
        assert torch.equal(outs["mine", cap], outs["theirs", cap])
        assert (outs["mine", cap][:, 5:5 + cap + 1] == 7).any(1).all(), "the delimiter by max_think + 1 tokens"
    # one generate with a budget per row gives each row what its own budget alone gives (greedy)
    rows = torch.cat([prompt] * 3)
    caps = [c for c in (0, 2, 5) for _ in range(len(prompt))]
    joint = model.generate(rows, attention_mask=torch.ones_like(rows), do_sample=False, max_new_tokens=8,
                           pad_token_id=0, eos_token_id=None,
                           logits_processor=LogitsProcessorList([reasoning.BudgetForcing(5, 7, caps)]))
    for i, cap in enumerate((0, 2, 5)):
        alone = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=8,
                               pad_token_id=0, eos_token_id=None,
                               logits_processor=LogitsProcessorList([theirs(5, 7, cap)]))
        assert torch.equal(joint[i * 4:(i + 1) * 4], alone)


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
def test_library_grpo_loss_equals_trl(loss_type):
    """llmprep.reasoning's loss (section 2.5 trains with it) against TRL 1.16's GRPOTrainer loss on the same tensors."""
    ref = oracle("oracle_grpo")
    g = torch.Generator().manual_seed(10 + len(loss_type))
    for trial in range(6):
        b, t, group = 8, int(torch.randint(1, 9, (1,), generator=g)), [2, 4][trial % 2]
        rewards = torch.randint(0, 2, (b,), generator=g).float()
        for scale in (True, False):
            torch.testing.assert_close(reasoning.group_advantages(rewards, group, scale=scale),
                                       ref["grpo_advantages"](rewards, group, scale=scale))
        logps = -torch.rand(b, t, generator=g) * 3
        old = logps + torch.randn(b, t, generator=g) * 0.5
        mask = (torch.arange(t)[None] < torch.randint(0, t + 1, (b, 1), generator=g)).long()
        adv = ref["grpo_advantages"](rewards, group)
        eps_low, eps_high = 0.2, [0.2, 0.28, 0.4][trial % 3]
        mcl = None if trial % 2 else t + 2
        x, y = logps.clone().requires_grad_(), logps.clone().requires_grad_()
        mine = reasoning.grpo_loss(x, old, adv, mask, loss_type, eps_low, eps_high, mcl)
        theirs = ref["grpo_loss"](y, old, adv, mask, loss_type, eps_low, eps_high, mcl)
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)
        mine.backward()
        theirs.backward()
        torch.testing.assert_close(x.grad, y.grad, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="loss_type"):
        reasoning.grpo_loss(logps, old, adv, mask, "ppo")
    with pytest.raises(ValueError, match="groups of 3"):
        reasoning.group_advantages(rewards, 3)


def test_grpo_reductions_differ_where_they_should():
    """Equal lengths: GRPO's sequence mean equals DAPO's token mean; ragged lengths: they differ. Clip-higher changes
    the loss only through tokens with a positive advantage and a ratio above 1 + eps_low."""
    logps = torch.zeros(2, 4)
    adv = torch.tensor([1.0, -1.0])
    full = torch.ones(2, 4, dtype=torch.long)
    old = torch.full((2, 4), -0.1)
    same = [reasoning.grpo_loss(logps, old, adv, full, kind) for kind in ("grpo", "dapo")]
    torch.testing.assert_close(same[0], same[1])
    ragged = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0]])
    assert not torch.isclose(reasoning.grpo_loss(logps, old, adv, ragged, "grpo"),
                             reasoning.grpo_loss(logps, old, adv, ragged, "dapo"))
    for o, moves in ((torch.full((2, 4), -0.1), False), (torch.full((2, 4), -0.22), True)):   # ratio 1.105, 1.246
        sym, high = (reasoning.grpo_loss(logps, o, adv, full, "dapo", 0.2, e) for e in (0.2, 0.28))
        assert torch.isclose(sym, high) != moves
    neg = torch.tensor([-1.0, -1.0])   # a negative advantage is never clipped from above
    torch.testing.assert_close(reasoning.grpo_loss(logps, torch.full((2, 4), -0.22), neg, full, "dapo", 0.2, 0.2),
                               reasoning.grpo_loss(logps, torch.full((2, 4), -0.22), neg, full, "dapo", 0.2, 0.28))


def test_completion_logps_equal_a_full_forward_with_gradients():
    """Prefilling each prompt once for its group gives the log-probs and the gradients of one forward pass per row."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from llmprep.assets import load_smollm2_tokenizer

    tok = load_smollm2_tokenizer()
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                         max_position_embeddings=128)).float()
    prompts = ["What is 12 + 34?", "Hi", "A longer prompt about 7 + 8 and more words"]
    g = torch.Generator().manual_seed(1)
    comp = torch.randint(5, 1000, (3, 2, 4), generator=g)
    comp[0, 1, 2:] = tok.eos_token_id
    shared = reasoning.completion_logps(model, tok, prompts, comp, temperature=0.8)
    shared.sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    rows = []
    for i, p in enumerate(prompts):
        ids = tok(p, add_special_tokens=False).input_ids
        for j in range(2):
            full = torch.tensor([ids + comp[i, j].tolist()])
            logits = model(input_ids=full).logits[0, len(ids) - 1:-1] / 0.8
            rows.append(torch.log_softmax(logits, -1).gather(-1, comp[i, j][:, None]).squeeze(-1))
    plain = torch.stack(rows)
    torch.testing.assert_close(shared, plain, rtol=1e-4, atol=1e-5)
    plain.sum().backward()
    for a, b in zip(grads, (p.grad for p in model.parameters())):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
    mask = reasoning.completion_mask(comp, tok.eos_token_id)
    assert mask[0, 1].tolist() == [1, 1, 1, 0] and mask[1, 0].tolist() == [1, 1, 1, 1]
    # the sampler's per-token log-probs (the behaviour policy GRPO's ratios divide by) are the teacher-forced ones
    with torch.no_grad():
        s = reasoning.sample_n(model, tok, prompts, n=3, max_new_tokens=5, temperature=0.7, seed=2,
                               stop_id=int(comp[0, 0, 0]))
        forced = reasoning.completion_logps(model, tok, prompts, s.tokens, temperature=0.7)
    m = reasoning.completion_mask(s.tokens, int(comp[0, 0, 0])).view(9, -1)
    assert m.sum(1).tolist() == s.lengths.view(-1).tolist()
    torch.testing.assert_close(s.token_logps.view(9, -1), forced * m, rtol=1e-4, atol=1e-5)

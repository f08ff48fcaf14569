"""Issue 35, items 1 and 2: hints computed on the trusted side, and verdicts in 中文 and English.

* every mutant of ch01 and ch02, submitted as a learner would (a fresh sandbox run), behaves like itself and
  receives its own hint; no alternative-correct fixture receives one (all chapters: benchmarks/hint_coverage.py);
* through `llmprep check`: a known mistake gets level 1 (its rule) and level 2 (its hint), a failure like no
  known mistake gets the honest fallback naming a rule, a passing exercise gets nothing, no hidden data leaks;
* `--lang zh` / ``LLMPREP_LANG=zh`` print Chinese, the JSON keeps English ``message`` beside ``message_zh``;
  the instructor's CSV keeps its English columns and carries no verdict text.
"""
import csv
import json
import os
import re
import subprocess
import sys
from dataclasses import replace

import pytest

from llmprep import i18n
from llmprep.grading import hint_coverage, hints
from llmprep.grading.engine import load_spec
from llmprep.grading.spec import Hint, compare_arrays
from notebooks import edited_solution, grade_cell

CH01 = "ch01_training"
CJK = re.compile(r"[\u4e00-\u9fff]")
WARMUP, LOG_SOFTMAX = "ch01_warmup_cosine_test", "ch01_log_softmax_test"
NOVEL = "def log_softmax(logits, dim=-1):\n    return logits * 2\n"  # wrong like no mutant of the spec


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("LLMPREP_LANG", "LC_ALL", "LC_MESSAGES", "LANG")}
    return {**env, "LANG": "C.UTF-8", **extra}


# --------------------------------------------------------------------------- every mutant gets its own hint

@pytest.mark.sandbox
@pytest.mark.parametrize("chapter", [CH01, "ch02_imbalance"])
def test_every_mutant_gets_its_own_hint_and_no_alternative_one(reference, chapter):
    reference(chapter)
    rows, alternatives = hint_coverage.coverage(chapter)
    assert len(rows) == sum(len(ex.mutants) for ex in load_spec(chapter).exercises)
    missed = [(r.grade_id, r.mutant, r.shown) for r in rows if not r.own]
    assert not missed, f"mutants without their own hint: {missed}"
    assert alternatives and not any(alternatives.values()), alternatives


# --------------------------------------------------------------------------- through `llmprep check`

@pytest.fixture(scope="module")
def wrong_notebook(tmp_path_factory):
    """ch01's solution with one known mistake (a warmup-cosine mutant) and one novel mistake (log_softmax)."""
    ex = load_spec(CH01).exercise(WARMUP)
    mutant = "cosine progress over total_steps"

    def edit(nb):
        grade_cell(nb, "ch01_warmup_cosine").source = "import math\n" + ex.mutant_source(mutant)
        grade_cell(nb, "ch01_log_softmax").source = NOVEL

    return edited_solution(tmp_path_factory.mktemp("hints"), edit), mutant


@pytest.fixture(scope="module")
def checked(wrong_notebook):
    path, _ = wrong_notebook
    proc = subprocess.run([sys.executable, "-m", "llmprep", "check", "--json", str(path)], capture_output=True,
                          text=True, timeout=600, env=_env())
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, {c["grade_id"]: c for c in json.loads(proc.stdout)["cells"]}


@pytest.mark.sandbox
def test_a_known_mistake_gets_its_rule_and_its_hint(reference, wrong_notebook, checked):
    reference(CH01)
    _, cells = checked
    _, mutant = wrong_notebook
    ex = load_spec(CH01).exercise(WARMUP)
    hint = cells[WARMUP]["hint"]
    assert cells[WARMUP]["points"] == 0
    assert [m["mutant"] for m in hint["matched"]] == [mutant]
    assert hint["rules"] == [r.quote for r in ex.rules if mutant in r.mutants]
    lines = i18n.hint_lines(hint, "en")
    assert any(line.startswith("Hint, level 1") and hint["rules"][0] in line for line in lines)
    written = ex.mutants[mutant].hint
    words = written.en if written is not None else mutant   # its written hint, else its name stands in
    assert any(line.startswith("Hint, level 2") and words in line for line in lines)


@pytest.mark.sandbox
def test_a_failure_like_no_known_mistake_says_so_and_names_a_rule(checked):
    _, cells = checked
    hint = cells[LOG_SOFTMAX]["hint"]
    quotes = [r.quote for r in load_spec(CH01).exercise(LOG_SOFTMAX).rules]
    assert hint["matched"] == [] and hint["rules"] and set(hint["rules"]) <= set(quotes)
    assert "Do not call `torch.log_softmax`" not in hint["rules"]  # it raises nothing: not the ban's rule
    lines = i18n.hint_lines(hint, "en")
    assert "matches none of the mistakes the course knows" in lines[-1]
    assert "常见错误都不一致" in i18n.hint_lines(hint, "zh")[-1]


@pytest.mark.sandbox
def test_passing_exercises_get_no_hint_and_nothing_hidden_leaks(checked):
    text, cells = checked
    passed = [c for c in cells.values() if c["points"] == c["max_points"]]
    assert passed and all(c["hint"] is None for c in passed)
    assert all(CJK.search(c["message_zh"]) for c in cells.values())
    assert all(not CJK.search(c["message"]) for c in cells.values())  # the English verdict stays English
    spec = load_spec(CH01)
    assert "seed" not in text and "ignore_frac" not in text
    for ex in spec.exercises:
        assert ex.probe.__name__ not in text
    assert "(step + 1)" not in text and "total_steps - warmup_steps" not in text  # no mutant or solution code


@pytest.mark.sandbox
def test_check_speaks_chinese_from_the_setting_and_the_flag_wins(wrong_notebook, checked, monkeypatch, capsys):
    """The plain output of `llmprep check` (in-process, on the verdicts the fixture's run produced)."""
    from llmprep import cli
    from llmprep.grading import engine
    from llmprep.grading.judge import CellVerdict, NotebookResult

    path, _ = wrong_notebook
    text, cells = checked
    data = json.loads(text)
    result = NotebookResult(data["notebook"], data["chapter"], data["score"], data["max_score"],
                            [CellVerdict(**c) for c in cells.values()], data["notes"])
    monkeypatch.setattr(engine, "check_notebook", lambda *a, **k: result)
    for name in ("LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.setenv("LLMPREP_LANG", "zh")
    assert cli.main(["check", str(path)]) == 0
    zh = capsys.readouterr().out
    assert "未过" in zh and "提示 第 2 级" in zh and "提示 第 1 级" in zh and "分" in zh.splitlines()[0]
    assert "FAIL" not in zh and "Hint" not in zh
    assert cli.main(["check", str(path), "--lang", "en"]) == 0
    en = capsys.readouterr().out
    assert "FAIL" in en and "Hint, level 2" in en and not CJK.search(en)


def test_lang_flag_rejects_an_unknown_language_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "llmprep", "check", str(tmp_path / "x.ipynb"), "--lang", "fr"],
                          capture_output=True, text=True, timeout=120, env=_env())
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "invalid choice" in proc.stderr


def test_bad_input_is_refused_in_the_chosen_language(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "llmprep", "check", str(tmp_path / "missing.ipynb"), "--lang", "zh"],
                          capture_output=True, text=True, timeout=120, env=_env())
    assert proc.returncode == 2 and "不存在" in proc.stderr and proc.stderr.count("\n") == 1


# --------------------------------------------------------------------------- hint texts, languages, CSV

def test_hint_texts_and_the_marked_english_fallback():
    ex = load_spec(CH01).exercise(WARMUP)
    first, second = list(ex.mutants)[:2]
    written = replace(ex, mutants={**ex.mutants, first: replace(ex.mutants[first], hint=Hint(
        zh="把 warmup 的步数差了一步：第 0 步的学习率应为 0。", en="The warmup is one step off: step 0 must have rate 0.")),
        second: replace(ex.mutants[second], hint=None)})                   # a mutant with no written hint yet
    mine, fallback = hints.mistake_of(written, first), hints.mistake_of(written, second)
    assert (mine.en, mine.zh_fallback) == ("The warmup is one step off: step 0 must have rate 0.", False)
    assert fallback.en == fallback.zh == second and fallback.zh_fallback
    diag = hints.Diagnosis([mine, fallback], ["a rule"]).to_json()
    zh = i18n.hint_lines(diag, "zh")
    assert "第 0 步的学习率应为 0" in zh[1] and zh[2].endswith("（暂无中文提示）")
    assert i18n.hint_lines(diag, "en")[2] == f"Hint, level 2 (it behaves like a known mistake): {second}"
    # a test can count the mutants still without a Chinese hint
    unwritten = [n for n in written.mutants if hints.mistake_of(written, n).zh_fallback]
    assert unwritten == [second]


def test_outcomes_are_alike_by_tolerance_and_error_kind():
    import numpy as np

    ex = load_spec(CH01).exercise(LOG_SOFTMAX)
    a = ("ok", {"out": np.array([1.0, 2.0], dtype=np.float32)})
    assert hints.same_outcome(ex, 0, a, ("ok", {"out": np.array([1.0, 2.0 + 1e-7])}))
    assert not hints.same_outcome(ex, 0, a, ("ok", {"out": np.array([1.0, 2.5])}))
    assert not hints.same_outcome(ex, 0, a, ("error", "ValueError: x"))
    banned = "RuntimeError: calls torch.log_softmax, which this exercise asks you to write yourself"
    assert hints.same_outcome(ex, 0, ("error", banned), ("error", banned + " (more)"))
    assert not hints.same_outcome(ex, 0, ("error", banned), ("error", "RuntimeError: something else"))
    assert hints.error_kind("timed out after 60 s") == "timeout"


def test_default_language_from_the_setting_then_the_locale():
    assert i18n.default_lang({"LLMPREP_LANG": "zh", "LANG": "en_US.UTF-8"}) == "zh"
    assert i18n.default_lang({"LLMPREP_LANG": "xx", "LANG": "zh_CN.UTF-8"}) == "zh"
    assert i18n.default_lang({"LC_ALL": "en_GB.UTF-8", "LANG": "zh_TW.UTF-8"}) == "en"
    assert i18n.default_lang({}) == "en"
    with pytest.raises(ValueError, match="unknown language 'fr'"):
        i18n.check_lang("fr")


def test_catalogue_is_complete_in_both_languages():
    for key, entry in i18n.MESSAGES.items():
        assert set(entry) == set(i18n.LANGS), key
        assert set(re.findall(r"{(\w+)}", entry["en"])) == set(re.findall(r"{(\w+)}", entry["zh"])), key
        if key not in ("untranslated", "hint_mistake_zh_missing"):
            assert CJK.search(entry["zh"]) and not CJK.search(entry["en"]), key


def test_the_shared_judges_sentences_are_translated():
    import numpy as np

    reasons = [compare_arrays("loss", np.array(2.0), np.array(1.0), 1e-5, 1e-6),
               compare_arrays("out", np.ones(4), np.zeros(4), 1e-5, 1e-6),
               compare_arrays("out", np.ones(3), np.zeros(4), 1e-5, 1e-6),
               compare_arrays("ids", np.array([1, 2]), np.array([1, 3]), 0, 0),
               compare_arrays("out", np.array([np.nan]), np.array([1.0]), 1e-5, 1e-6),
               compare_arrays("rng_unchanged", np.array(False), np.array(True), 0, 0),
               compare_arrays("raised", np.array(False), np.array(True), 0, 0)]
    for reason in reasons:
        zh, known = i18n.reason_zh(reason)
        assert known and CJK.search(zh), reason
    assert i18n.reason_in("a sentence a spec wrote itself", "zh").endswith("（英文原文）")


def test_magic_takes_a_language_and_renders_the_hint():
    from llmprep.jupyter import parse_line, render

    assert parse_line("--lang zh my.ipynb") == ("zh", "my.ipynb")
    assert parse_line("--lang=en") == ("en", "")
    with pytest.raises(ValueError, match="unknown language"):
        parse_line("--lang fr")
    with pytest.raises(ValueError, match="unknown option"):
        parse_line("--verbose")
    hint = hints.Diagnosis([hints.Mistake("m", "the mask is applied after the softmax", "掩码加在了 softmax 之后")],
                           ["Apply the mask <before> the softmax"]).to_json()
    result = {"notebook": "n.ipynb", "chapter": CH01, "score": 0, "max_score": 2, "notes": [], "sandbox": "bwrap",
              "cells": [{"grade_id": "x_test", "points": 0, "max_points": 2, "message": "failed 1 of 1 cases",
                         "message_zh": "1 个测试用例中有 1 个未通过", "hint": hint}]}
    text, page = render(result, lang="zh")
    assert "未过" in text and "掩码加在了 softmax 之后" in text and "0 / 2 分" in text
    assert "&lt;before&gt;" in page and "<before>" not in page
    text_en, _ = render(result, lang="en")
    assert "FAIL" in text_en and "the mask is applied after the softmax" in text_en


def test_the_instructors_csv_stays_language_neutral(tmp_path):
    from llmprep.grading import batch
    from llmprep.grading.engine import Submission
    from llmprep.grading.judge import CellVerdict, NotebookResult

    verdict = CellVerdict("x_test", 0.0, 2.0, "failed 1 of 1 cases", "1 个测试用例中有 1 个未通过",
                          hints.Diagnosis([hints.Mistake("m", "en words", "中文")], ["rule"]).to_json())
    sub = Submission(tmp_path / "n.ipynb")
    sub.result, sub.recorded = NotebookResult("n.ipynb", CH01, 0.0, 2.0, [verdict]), True
    out = batch._write_csv(tmp_path, CH01, [batch._row("alice", sub, "", "")])
    text = out.read_text()
    assert next(csv.reader(text.splitlines())) == ["student", "status", "score", "max_score", "late_penalty",
                                                   "final_score"]
    assert not CJK.search(text) and "rule" not in text and "en words" not in text


def test_the_magic_speaks_the_language_asked_for(tmp_path, monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell

    from llmprep import jupyter

    nb = tmp_path / "mine.ipynb"
    nb.write_text("{}")
    result = {"notebook": "mine.ipynb", "chapter": CH01, "score": 0, "max_score": 2, "notes": [], "sandbox": "bwrap",
              "cells": [{"grade_id": "x_test", "points": 0, "max_points": 2, "message": "failed 1 of 1 cases",
                         "message_zh": "1 个测试用例中有 1 个未通过",
                         "hint": hints.Diagnosis([], ["a rule"]).to_json()}]}
    monkeypatch.setattr(jupyter, "run_check", lambda path: (0, result, ""))
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj, raw=False: shown.append(obj))
    monkeypatch.delenv("LLMPREP_LANG", raising=False)
    monkeypatch.setenv("LANG", "C.UTF-8")
    ip = InteractiveShell.instance()
    try:
        jupyter.load_ipython_extension(ip)
        ip.run_line_magic("llmprep_check", f"--lang zh {nb}")
        ip.run_line_magic("llmprep_check", str(nb))
        monkeypatch.setenv("LLMPREP_LANG", "zh")
        ip.run_line_magic("llmprep_check", str(nb))
    finally:
        InteractiveShell.clear_instance()
    zh, en, env = (s["text/plain"] for s in shown)
    assert "未过" in zh and "常见错误都不一致" in zh and "第 1 级" in zh
    assert "FAIL" in en and "matches none of the mistakes" in en and not CJK.search(en.split("\n", 1)[1])
    assert env.splitlines()[:-1] == zh.splitlines()[:-1]  # (the last line: seconds since the save)

"""Issue 35 items 3-6: the coach as a learner uses it. Cards from the course (both languages, every interview
question, the specs' known mistakes); drill scheduling against the fsrs library's own scheduler; the Anki deck
opened as Anki stores it; drill and mock sessions driven by scripted input; progress recorded by a real
`llmprep check`; bad input (an unknown chapter, an empty deck, a corrupt progress file) is one line and loses
nothing stored."""
from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
import time
import zipfile
from datetime import datetime, timedelta, timezone

import pytest

from llmprep.cli import main
from llmprep.coach import CoachError
from llmprep.coach.cards import CJK, build_deck, cjk_share, in_language, title_in_language

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def db(tmp_path, monkeypatch):
    path = tmp_path / "progress.sqlite"
    monkeypatch.setenv("LLMPREP_PROGRESS", str(path))
    return path


def run_cli(argv, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    old = sys.stdin, sys.stdout, sys.stderr
    sys.stdin, sys.stdout, sys.stderr = io.StringIO(stdin), out, err
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    finally:
        sys.stdin, sys.stdout, sys.stderr = old
    return code, out.getvalue(), err.getvalue()


# --------------------------------------------------------------------------- cards

def test_every_interview_question_is_a_card_in_both_languages(root):
    from llmprep.book import parse_questions
    from llmprep.course import chapter_prefix, chapters

    expected = sum(len(parse_questions(ch, root / "solutions" / ch / f"{chapter_prefix(ch)}_reference.ipynb"))
                   for ch in chapters(root))
    en = build_deck(lang="en", kinds=("questions",))
    zh = build_deck(lang="zh", kinds=("questions",))
    assert len(en) == len(zh) == expected >= 80
    assert [c.key for c in en] == [c.key for c in zh], "a card's key does not depend on the language"
    assert all(c.short for c in en), "every question has a 30-second answer"
    assert not [c.front for c in en if cjk_share(c.front) >= 0.1], "English fronts (a quoted Chinese term aside)"
    assert all(CJK.search(c.front) and CJK.search(c.short) for c in zh)
    english_short = [c.short for c in en if CJK.search(c.short)]
    assert len(english_short) <= len(en) // 10, english_short[:3]


def test_language_split_keeps_code_and_mixed_lines():
    text = ("**中文.** 注意力除以根号 d。\n\n**English.** Divide by sqrt(d).\n\n```python\nx = q @ k.T\n```\n\n"
            "*Why?* Variance. / 方差。")
    assert in_language(text, "zh") == "**中文.** 注意力除以根号 d。\n\n```python\nx = q @ k.T\n```\n\n*Why?* Variance. / 方差。"
    assert in_language(text, "en").startswith("**English.** Divide by sqrt(d).\n\n```python")
    assert title_in_language("序列/上下文并行怎么切？/ How are sequence/context split?", "en") == \
        "How are sequence/context split?"
    assert title_in_language("序列/上下文并行怎么切？/ How are sequence/context split?", "zh") == "序列/上下文并行怎么切？"
    with pytest.raises(CoachError, match="unknown language 'fr'"):
        in_language(text, "fr")


def test_mistake_cards_show_the_wrong_code_and_answer_with_the_diff():
    from llmprep.grading.trusted import load_spec

    cards = build_deck(["ch01"], "en", ("mistakes",))
    spec = load_spec("ch01_training")
    assert len(cards) >= 0.8 * sum(len(ex.mutants) for ex in spec.exercises)
    for card in cards:
        _, grade_id, name = card.key.split("/", 2)
        mutant = spec.exercise(grade_id).mutants[name]
        assert card.code and all(line in mutant.source for line in card.code.splitlines() if line.strip())
        changed = [d for d in card.diff.splitlines()[2:] if d[:1] in "+-"]
        added = [d[1:] for d in changed if d.startswith("+")]
        assert changed and all(a in card.code for a in added), "the wrong lines are on the front"
        assert card.back == (mutant.hint.en if mutant.hint else name)


# --------------------------------------------------------------------------- scheduling by fsrs

def test_review_chain_matches_the_fsrs_scheduler():
    from fsrs import Card, Rating, Scheduler

    from llmprep.coach.drill import review

    ratings = [3, 3, 1, 2, 3, 4, 4]
    lib, state, at = Card(due=T0), None, T0
    lib_sched = Scheduler(enable_fuzzing=False)
    intervals = []
    for rating in ratings:
        state, due, _ = review(state, rating, at)
        lib, _ = lib_sched.review_card(lib, Rating(rating), review_datetime=at)
        assert due == lib.due.isoformat()
        mine = Card.from_json(state)
        assert (mine.state, mine.step, mine.stability, mine.difficulty) == \
            (lib.state, lib.step, lib.stability, lib.difficulty)
        intervals.append(lib.due - at)
        at = lib.due  # reviewed when due
    assert intervals[2] < timedelta(hours=1) < intervals[1], "Again sends a learnt card back to minutes"
    assert intervals[-1] > intervals[-2] > intervals[-3] >= timedelta(days=1), "Good, Easy, Easy: the interval grows"


def test_drill_session_stores_what_the_library_schedules(db):
    from fsrs import Card, Rating, Scheduler

    from llmprep.coach.progress import Progress

    code, out, err = run_cli(["drill", "--chapter", "ch09", "--kinds", "questions", "--limit", "3", "--lang", "en"],
                             "\n3\nmy answer\n1\n\nx\n4\n")
    assert code == 0, err
    assert out.count("rate it:") == 4 and "please type 1, 2, 3 or 4" in out
    assert "reviewed 3 of 3 card(s): Again 1, Good 1, Easy 1" in out
    with Progress(db) as p:
        reviews = p.reviews()
        states = p.card_states()
    assert [r["rating"] for r in reviews] == [3, 1, 4] and {r["mode"] for r in reviews} == {"drill"}
    assert [r["card_key"] for r in reviews] == ["ch09_transformer/q1", "ch09_transformer/q2", "ch09_transformer/q3"]
    for r in reviews:
        at = datetime.fromisoformat(r["at"])
        lib, _ = Scheduler(enable_fuzzing=False).review_card(Card(due=at), Rating(r["rating"]), review_datetime=at)
        stored = Card.from_json(states[r["card_key"]][0])
        assert stored.due == lib.due and states[r["card_key"]][1] == lib.due.isoformat()

    # the next session deals only what is due (nothing yet) and new cards
    code, out, _ = run_cli(["drill", "--chapter", "ch09", "--kinds", "questions", "--limit", "2", "--lang", "zh"], "q\n")
    assert code == 0 and "[1/2]" in out and "ch09_transformer" in out and "Q4." in out and "Q1." not in out
    assert CJK.search(out.split("[1/2]")[1])


def test_mock_session_is_timed_summarised_and_stored(db):
    from llmprep.coach.progress import Progress

    code, out, err = run_cli(["mock", "--chapter", "ch01", "-n", "2", "--seconds", "60", "--seed", "7", "--lang", "en"],
                             "\n2\n\nEasy\n")
    assert code == 0, err
    assert "mock interview: 2 question(s), 60 s each" in out
    assert "summary: 2 of 2 question(s) answered" in out and "mean rating 3.0 of 4; 0 over time" in out
    assert "to review again: ch01_training/q" in out
    with Progress(db) as p:
        reviews = p.reviews()
        sessions = p.conn.execute("SELECT questions, seconds_per_question FROM mock_sessions").fetchall()
    assert [r["rating"] for r in reviews] == [2, 4] and {r["mode"] for r in reviews} == {"mock"}
    assert sessions == [(2, 60.0)]
    assert all(r["seconds"] is not None and not r["over_time"] for r in reviews)


def test_mock_timer_runs_out_on_a_terminal(tmp_path, root):
    """On a terminal the time limit holds: nothing typed for 1 s, the answer comes, the review says over time."""
    import pty

    master, slave = pty.openpty()
    env = {**os.environ, "LLMPREP_PROGRESS": str(tmp_path / "p.sqlite")}
    proc = subprocess.Popen([sys.executable, "-m", "llmprep", "mock", "--chapter", "ch02", "-n", "1", "--seconds", "1",
                             "--lang", "en"], stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            cwd=root, text=True)
    os.close(slave)
    try:
        deadline = time.monotonic() + 60
        seen = ""
        while "rate it:" not in seen and time.monotonic() < deadline:  # the prompt comes only after the timer
            line = proc.stdout.readline()
            if not line:
                break
            seen += line
            if "time is up" in seen:
                break
        os.write(master, b"3\n")
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(master)
    assert proc.returncode == 0, err
    assert "time is up (limit 1 s)" in seen + out
    assert "over time" in out and "Good" in out


# --------------------------------------------------------------------------- Anki

def test_anki_export_is_a_real_deck(db, tmp_path):
    deck = tmp_path / "llmprep.apkg"
    code, out, err = run_cli(["drill", "--chapter", "ch02", "ch09", "--export", "anki", str(deck), "--lang", "zh"])
    assert code == 0, err
    cards = build_deck(["ch02", "ch09"], "zh")
    assert f"an Anki deck of {len(cards)} card(s)" in out
    with zipfile.ZipFile(deck) as z:
        assert "collection.anki2" in z.namelist()
        z.extract("collection.anki2", tmp_path)
    con = sqlite3.connect(tmp_path / "collection.anki2")
    try:
        assert con.execute("SELECT COUNT(*) FROM notes").fetchone()[0] == len(cards)
        assert con.execute("SELECT COUNT(*) FROM cards").fetchone()[0] == len(cards)
        fields = [f.split("\x1f") for (f,) in con.execute("SELECT flds FROM notes")]
    finally:
        con.close()
    assert {f[0] for f in fields} == {c.key for c in cards}
    question = next(f for f in fields if f[0] == "ch09_transformer/q1")
    assert CJK.search(question[1]) and question[2] and "<p>" in question[3]
    assert not db.exists(), "an export records nothing"


# --------------------------------------------------------------------------- bad input, nothing lost

def test_unknown_chapter_kind_and_empty_deck_are_one_line(db, monkeypatch, root):
    ch02_stub = root / "course" / "ch02_imbalance" / "ch02_exercises.ipynb"
    run_cli(["mock", "--chapter", "ch02", "-n", "1"], "\n3\n")
    before = db.read_bytes()
    for argv, says in ((["drill", "--chapter", "ch99"], "unknown chapter 'ch99'"),
                       (["mock", "--chapter", "nope"], "unknown chapter 'nope'"),
                       (["progress", "--chapter", "ch99"], "unknown chapter 'ch99'"),
                       (["drill", "--kinds", "flashcards"], "unknown card kind 'flashcards'"),
                       (["drill", "--export", "csv", "x.csv"], "unknown export format 'csv'"),
                       (["drill", "--export", "anki", "deck.zip"], "a .apkg file"),
                       (["mock", "--seconds", "0"], "must be positive"),
                       (["mock", "--exercise", "no/such.ipynb"], "no/such.ipynb does not exist"),
                       (["mock", "--exercise", str(ch02_stub), "--exercise-id", "ch02_nope"],
                        "unknown exercise 'ch02_nope' in ch02_imbalance; its exercises are: ch02_class_weights_test"),
                       (["mock", "--exercise-id", "ch02_class_weights_test"], "needs --exercise NOTEBOOK")):
        code, out, err = run_cli(argv)
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and says in err, (argv, err)
    monkeypatch.setattr("llmprep.coach.cards.question_cards", lambda *a, **k: [])
    code, _, err = run_cli(["drill", "--chapter", "ch02", "--kinds", "questions"])
    assert code == 2 and err.startswith("error: no card in ch02_imbalance") and err.count("\n") == 1
    assert db.read_bytes() == before


@pytest.mark.parametrize("content", [b"this is not a database, it is a learner's note\n" * 40, "foreign sqlite"])
def test_corrupt_progress_file_is_reported_and_kept(db, content):
    from llmprep.coach.progress import record_check_quietly

    if content == "foreign sqlite":
        con = sqlite3.connect(db)
        con.execute("CREATE TABLE notes (x)")
        con.commit()
        con.close()
    else:
        db.write_bytes(content)
    before = db.read_bytes()
    for argv, stdin in ((["progress"], ""), (["drill", "--chapter", "ch02"], "\n3\n"), (["mock", "-n", "1"], "\n3\n")):
        code, out, err = run_cli(argv, stdin)
        assert code == 2 and err.count("\n") == 1, (argv, err)
        assert err.startswith(f"error: {db} is not a readable llmprep progress file") and "kept as it is" in err
    err = io.StringIO()
    old, sys.stderr = sys.stderr, err
    try:
        record_check_quietly({"chapter": "ch02_imbalance", "score": 1, "max_score": 2, "cells": []})
    finally:
        sys.stderr = old
    assert err.getvalue().startswith("warning: progress not recorded: ") and err.getvalue().count("\n") == 1
    assert db.read_bytes() == before, "the file is never replaced"


def test_progress_table_plot_and_magic(db, tmp_path):
    from llmprep.coach.progress import Progress
    from llmprep.jupyter import llmprep_progress

    code, out, _ = run_cli(["progress"])
    assert code == 0 and "no progress recorded yet" in out and not db.exists()
    with Progress(db) as p:
        p.record_check({"chapter": "ch02_imbalance", "notebook": "a.ipynb", "score": 3, "max_score": 16,
                        "cells": [{"grade_id": "g1", "points": 2, "max_points": 2},
                                  {"grade_id": "g2", "points": 1, "max_points": 14}]}, at=T0)
        p.record_check({"chapter": "ch02_imbalance", "notebook": "a.ipynb", "score": 2, "max_score": 16,
                        "cells": [{"grade_id": "g1", "points": 0, "max_points": 2},
                                  {"grade_id": "g2", "points": 2, "max_points": 14}]}, at=T0 + timedelta(hours=1))
    code, out, _ = run_cli(["progress", "--chapter", "ch02", "--plot", str(tmp_path / "p.png")])
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("ch02_imbalance"))
    assert row.split()[1:4] == ["4/16", "1/2", "2"], row  # best per exercise: 2 + 2; g1 solved; two checks
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    detail = out.split("ch02_imbalance exercise")[1].splitlines()
    assert detail[2].split()[:3] == ["g1", "2/2", "2"] and detail[3].split()[:4] == ["g2", "2/14", "2", "-"], detail
    text = llmprep_progress("ch02")
    assert "ch02_imbalance" in text and "4/16" in text


@pytest.mark.sandbox
def test_a_real_self_check_is_recorded(db, root):
    from llmprep.coach.progress import Progress

    notebook = root / "solutions" / "ch02_imbalance" / "ch02_exercises.ipynb"
    proc = subprocess.run([sys.executable, "-m", "llmprep", "check", str(notebook), "--json"], capture_output=True,
                          text=True, cwd=root, env={**os.environ, "LLMPREP_PROGRESS": str(db)}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    import json

    result = json.loads(proc.stdout)
    with Progress(db) as p:
        (check,) = p.checks()
        results = p.conn.execute("SELECT grade_id, points, max_points FROM exercise_results").fetchall()
        (row,) = p.chapter_rows(["ch02_imbalance"], {})
    assert (check["chapter"], check["score"], check["max_score"]) == ("ch02_imbalance", result["score"],
                                                                      result["max_score"])
    assert results == [(c["grade_id"], c["points"], c["max_points"]) for c in result["cells"]]
    assert row.attempts == 1 and row.solved == len(result["cells"]) and row.first_solved == check["at"]


@pytest.mark.slow
def test_similarity_hint_ranks_a_right_answer_above_a_wrong_one():
    """The MiniLM hint on a real card: a right typed answer is closer to the model answer than to other questions'
    answers, a wrong one is not (loads the encoder: about 5 s of CPU)."""
    from llmprep.coach.drill import Similarity

    cards = build_deck(["ch09"], "en", ("questions",))
    card, others = cards[0], [c.short for c in cards[1:]]
    sim = Similarity()
    right, anchor = sim("Dividing by the square root of d_k keeps the variance of the scores near one, so the softmax "
                        "does not saturate and its gradients do not vanish", card.short, others)
    wrong, _ = sim("We split the batch across GPUs and all-reduce the gradients", card.short, others)
    assert right > anchor + 0.2 and right > wrong + 0.2, (right, anchor, wrong)


@pytest.mark.sandbox
def test_mock_ends_with_a_graded_exercise(db, root, tmp_path):
    """`llmprep mock --exercise`: after the questions, one exercise of the learner's notebook (the first not yet
    solved), timed, then checked by the trusted engine; the check is recorded like any self-check."""
    import shutil

    from llmprep.coach.progress import Progress

    notebook = tmp_path / "mine.ipynb"
    shutil.copyfile(root / "course" / "ch02_imbalance" / "ch02_exercises.ipynb", notebook)
    with Progress(db) as p:  # the first exercise is solved already: the session picks the second
        p.record_check({"chapter": "ch02_imbalance", "notebook": "x.ipynb", "score": 2, "max_score": 16,
                        "cells": [{"grade_id": "ch02_class_weights_test", "points": 2, "max_points": 2}]})
    code, out, err = run_cli(["mock", "--chapter", "ch02", "-n", "1", "--lang", "en", "--exercise", str(notebook),
                              "--exercise-minutes", "5"], "\n3\n\n")
    assert code == 0, err
    assert "coding: exercise ch02_sampler_weights_test of ch02_imbalance" in out and "Time: 5 min." in out
    assert "FAIL  ch02_sampler_weights_test  0/2  not implemented yet" in out
    assert "coding ch02_imbalance/ch02_sampler_weights_test: 0/2 points in 0 s" in out
    with Progress(db) as p:
        checks = p.checks()
    assert len(checks) == 2 and checks[-1]["notebook"] == "mine.ipynb" and checks[-1]["score"] == 0

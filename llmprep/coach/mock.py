"""``llmprep mock``: a timed mock interview in the terminal.

N interview questions drawn at random from the chosen chapters. For each: the question and a timer (default
120 s; on a terminal the seconds left are shown); the learner answers aloud and presses Enter, or the time runs
out; then the 30-second version, the full answer and the follow-ups, and a self-rating 1-4. Every rating is
stored in the progress file (as a review of that card: its spaced-repetition schedule moves too), with the
seconds taken and whether the time ran out; a summary ends the session.
"""
from __future__ import annotations

import random
import select
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from llmprep.coach import CoachError
from llmprep.coach.cards import Card
from llmprep.coach.drill import ask_rating, review, scheduler, show_back, show_front
from llmprep.coach.progress import RATINGS, Progress, now

DEFAULT_SECONDS = 120.0
DEFAULT_QUESTIONS = 5


def timed_line(inp: TextIO, out: TextIO, seconds: float, tty: bool) -> tuple[str | None, float, bool]:
    """Wait for one line or for ``seconds``: (the line or None at the end of input, seconds taken, timed out).
    The limit is kept on a terminal; other input (a pipe, a script: its lines may already sit in Python's
    buffer, where select cannot see them) is read without a limit, its seconds still measured."""
    start = time.monotonic()
    fd = inp.fileno() if hasattr(inp, "isatty") and inp.isatty() else None
    if fd is None:
        line = inp.readline()
        return (line.rstrip("\n") if line else None), time.monotonic() - start, False
    while True:
        left = seconds - (time.monotonic() - start)
        if left <= 0:
            if tty:
                out.write("\r" + " " * 40 + "\r")
            return "", seconds, True
        if tty:
            out.write(f"\r  time left: {left:4.0f} s  (Enter when you are done) ")
            out.flush()
        ready, _, _ = select.select([fd], [], [], min(1.0, left))
        if ready:
            line = inp.readline()
            if tty:
                out.write("\r" + " " * 60 + "\r")
            return (line.rstrip("\n") if line else None), time.monotonic() - start, False


@dataclass
class Coding:
    """One graded exercise of the session: the learner's notebook, the exercise, its time limit."""
    notebook: Path
    chapter: str
    grade_id: str
    functions: tuple[str, ...]
    seconds: float


def plan_coding(notebook: Path, grade_id: str | None, minutes: float, path: Path | None = None) -> Coding:
    """Check the input before the session starts: a readable notebook of the course, and the exercise (given,
    else the first one of its chapter not yet solved in the progress file, else the first)."""
    from llmprep.grading.notebook import match_chapter, read_notebook
    from llmprep.grading.trusted import GradingError, load_spec

    if minutes <= 0:
        raise CoachError(f"the time for the exercise must be positive (got {minutes:g} min)")
    try:
        chapter = match_chapter(read_notebook(notebook), notebook.name)
    except GradingError as exc:
        raise CoachError(str(exc)) from None
    exercises = load_spec(chapter).exercises
    ids = [ex.grade_id for ex in exercises]
    if grade_id is None:
        with Progress(path) as progress:
            solved = {g for (g,) in progress.conn.execute(
                "SELECT r.grade_id FROM exercise_results r JOIN checks c ON c.id = r.check_id WHERE c.chapter = ? "
                "GROUP BY r.grade_id HAVING MAX(r.points >= r.max_points) = 1", (chapter,))}
        grade_id = next((g for g in ids if g not in solved), ids[0])
    if grade_id not in ids:
        raise CoachError(f"unknown exercise '{grade_id}' in {chapter}; its exercises are: {', '.join(ids)}")
    ex = exercises[ids.index(grade_id)]
    return Coding(notebook, chapter, grade_id, tuple(ex.functions), minutes * 60)


def coding_round(coding: Coding, inp: TextIO, out: TextIO, tty: bool, progress: Progress) -> dict:
    """The exercise, timed; then the trusted engine grades the saved notebook (as `llmprep check`), and the
    check is recorded like any self-check."""
    from llmprep.grading.engine import GradingError, check_notebook

    out.write(f"\ncoding: exercise {coding.grade_id} of {coding.chapter}: write {', '.join(coding.functions)} in "
              f"{coding.notebook} (its instructions are in the notebook), save it, then press Enter. "
              f"Time: {coding.seconds / 60:g} min.\n")
    line, took, timed_out = timed_line(inp, out, coding.seconds, tty)
    over = timed_out or took > coding.seconds
    out.write(f"{'time is up' if timed_out else f'{took:.0f} s'}: the trusted engine checks the notebook as saved...\n")
    out.flush()
    try:
        result = check_notebook(coding.notebook).to_json()
    except GradingError as exc:
        out.write(f"the grader itself failed: {exc}\n")
        return {"key": f"{coding.chapter}/{coding.grade_id}", "front": f"coding: {coding.grade_id}", "seconds": took,
                "over_time": over, "points": None, "max_points": None}
    progress.record_check(result)
    cell = next((c for c in result["cells"] if c["grade_id"] == coding.grade_id), None)
    points, max_points = (cell["points"], cell["max_points"]) if cell else (0.0, 0.0)
    out.write(f"  {'PASS' if cell and points == max_points else 'FAIL'}  {coding.grade_id}  {points:g}/{max_points:g}  "
              f"{cell['message'] if cell else 'the exercise was not found in the notebook'}\n")
    return {"key": f"{coding.chapter}/{coding.grade_id}", "front": f"coding: {coding.grade_id}", "seconds": took,
            "over_time": over, "points": points, "max_points": max_points}


def draw(cards: list[Card], n: int, seed: int | None = None) -> list[Card]:
    questions = [c for c in cards if c.kind == "question"]
    if not questions:
        raise CoachError("no interview question in the chosen chapters")
    return random.Random(seed).sample(questions, min(n, len(questions)))


def run_mock(cards: list[Card], chapters: list[str], lang: str, n: int = DEFAULT_QUESTIONS,
             seconds: float = DEFAULT_SECONDS, seed: int | None = None, inp: TextIO | None = None,
             out: TextIO | None = None, path: Path | None = None, coding: Coding | None = None) -> list[dict]:
    """The session; returns one dict per question answered (key, seconds, over_time, rating), and the
    coding exercise's (points, max_points instead of a rating) when ``coding`` is given."""
    inp, out = inp or sys.stdin, out or sys.stdout
    if seconds <= 0:
        raise CoachError(f"the time per question must be positive (got {seconds:g})")
    chosen = draw(cards, n, seed)
    tty = hasattr(out, "isatty") and out.isatty()
    done: list[dict] = []
    with Progress(path) as progress:
        session = progress.start_mock(chapters, len(chosen), seconds)
        out.write(f"mock interview: {len(chosen)} question(s), {seconds:g} s each. Answer aloud as in an "
                  "interview, press Enter when you are done.\n")
        sched = scheduler()
        for i, card in enumerate(chosen, 1):
            show_front(card, i, len(chosen), out)
            line, took, timed_out = timed_line(inp, out, seconds, tty)
            if line is None:
                break
            over = timed_out or took > seconds
            out.write(f"\n{'time is up' if timed_out else f'{took:.0f} s'} (limit {seconds:g} s)"
                      + (": in an interview, say the 30-second version first\n" if over else "\n"))
            show_back(card, lang, out)
            rating = ask_rating(inp, out)
            if rating is None:
                break
            at = now()
            state, due, log = review(progress.card_state(card.key), rating, at, sched=sched)
            progress.record_review(card.key, card.chapter, card.kind, rating, "mock", state, due, log,
                                   seconds=took, over_time=over, session_id=session, at=at)
            done.append({"key": card.key, "front": card.front, "seconds": took, "over_time": over, "rating": rating})
        else:
            if coding is not None:
                done.append(coding_round(coding, inp, out, tty, progress))
        out.write("\n" + summary(done, len(chosen), seconds) + "\n")
    return done


def summary(done: list[dict], asked: int, seconds: float) -> str:
    coded = [d for d in done if "rating" not in d]
    done = [d for d in done if "rating" in d]
    if not done:
        return "summary: no question answered; nothing recorded"
    lines = [f"summary: {len(done)} of {asked} question(s) answered, limit {seconds:g} s each"]
    for d in coded:
        score = "not graded" if d["points"] is None else f"{d['points']:g}/{d['max_points']:g} points"
        lines.append(f"  coding {d['key']}: {score} in {d['seconds']:.0f} s{' (over time)' if d['over_time'] else ''}")
    for d in done:
        lines.append(f"  {RATINGS[d['rating']]:<5}  {d['seconds']:5.0f} s{' (over time)' if d['over_time'] else '':<12}  "
                     f"{d['key']}  {d['front'][:70]}")
    mean = sum(d["rating"] for d in done) / len(done)
    over = sum(1 for d in done if d["over_time"])
    weak = [d["key"] for d in done if d["rating"] <= 2]
    lines.append(f"  mean rating {mean:.1f} of 4; {over} over time; "
                 f"mean {sum(d['seconds'] for d in done) / len(done):.0f} s per answer")
    if weak:
        lines.append(f"  to review again: {', '.join(weak)} (`llmprep drill` deals them when due)")
    return "\n".join(lines)

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


def draw(cards: list[Card], n: int, seed: int | None = None) -> list[Card]:
    questions = [c for c in cards if c.kind == "question"]
    if not questions:
        raise CoachError("no interview question in the chosen chapters")
    return random.Random(seed).sample(questions, min(n, len(questions)))


def run_mock(cards: list[Card], chapters: list[str], lang: str, n: int = DEFAULT_QUESTIONS,
             seconds: float = DEFAULT_SECONDS, seed: int | None = None, inp: TextIO | None = None,
             out: TextIO | None = None, path: Path | None = None) -> list[dict]:
    """The session; returns one dict per question answered (key, seconds, over_time, rating)."""
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
        out.write("\n" + summary(done, len(chosen), seconds) + "\n")
    return done


def summary(done: list[dict], asked: int, seconds: float) -> str:
    if not done:
        return "summary: no question answered; nothing recorded"
    lines = [f"summary: {len(done)} of {asked} question(s) answered, limit {seconds:g} s each"]
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

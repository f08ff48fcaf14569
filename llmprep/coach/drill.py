"""``llmprep drill``: spaced repetition in the terminal, scheduled by the ``fsrs`` library, and Anki export.

A session deals the cards that are due (the most overdue first), then cards never seen (in course order), up to
``--limit``. For each: the question (and, for a mistake card, the wrong code), an optional typed answer, the
reveal, and the learner's own rating Again / Hard / Good / Easy (1-4), which ``fsrs.Scheduler.review_card``
turns into the card's next due date; both are stored in the progress file at once, so stopping (``q``, Ctrl+D)
loses nothing. With ``--similarity`` a typed English answer is compared with the model answer by the offline
MiniLM sentence encoder: a cosine shown as a hint for the rating, never a grade.
"""
from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TextIO

from llmprep.coach import CoachError
from llmprep.coach.cards import Card
from llmprep.coach.progress import RATINGS, Progress, now

RATING_PROMPT = "rate it: 1 Again, 2 Hard, 3 Good, 4 Easy (q: stop) > "


# --------------------------------------------------------------------------- scheduling (the fsrs library)

def scheduler():
    """The library's scheduler with its default parameters (FSRS-6, desired retention 0.9), without the
    random "fuzz" of long intervals, so a due date can be reproduced from the stored review history."""
    from importlib.metadata import version

    from fsrs import Scheduler

    if not version("fsrs").startswith("6."):  # the Scheduler / Card / review_card API of fsrs 6 (pinned 6.3.2)
        raise CoachError(f"llmprep's drill needs fsrs 6.x (pinned: fsrs==6.3.2), this environment has "
                         f"{version('fsrs')}: run `make setup`")
    return Scheduler(enable_fuzzing=False)


def review(state: str | None, rating: int, at: datetime | None = None, sched=None) -> tuple[str, str, str]:
    """One rating of a card whose stored FSRS state is ``state`` (JSON; None: a new card):
    (new state JSON, its due time ISO, the library's review log JSON)."""
    from fsrs import Card as FsrsCard, Rating

    at = at or now()
    card = FsrsCard.from_json(state) if state else FsrsCard(due=at)
    card, log = (sched or scheduler()).review_card(card, Rating(rating), review_datetime=at)
    return card.to_json(), card.due.isoformat(), log.to_json()


def pick(cards: list[Card], states: dict[str, tuple[str, str]], limit: int, at: datetime | None = None) -> list[Card]:
    """The session's cards: due ones first (most overdue first), then new ones in course order."""
    at_iso = (at or now()).isoformat()
    due = sorted((c for c in cards if c.key in states and states[c.key][1] <= at_iso), key=lambda c: states[c.key][1])
    new = [c for c in cards if c.key not in states]
    return (due + new)[:limit]


# --------------------------------------------------------------------------- the terminal session

def ask(inp: TextIO, out: TextIO, prompt: str) -> str | None:
    """One line of input (None at the end of input)."""
    out.write(prompt)
    out.flush()
    line = inp.readline()
    if not line:
        out.write("\n")
        return None
    return line.rstrip("\n")


def ask_rating(inp: TextIO, out: TextIO) -> int | None:
    """1-4, or None when the learner stops (``q`` or the end of input)."""
    while True:
        answer = ask(inp, out, RATING_PROMPT)
        if answer is None or answer.strip().lower() in ("q", "quit", "exit"):
            return None
        text = answer.strip().lower()
        names = {v.lower(): k for k, v in RATINGS.items()}
        if text in names:
            return names[text]
        if text.isdigit() and int(text) in RATINGS:
            return int(text)
        out.write("  please type 1, 2, 3 or 4 (or q to stop)\n")


def show_front(card: Card, index: int, total: int, out: TextIO) -> None:
    out.write(f"\n[{index}/{total}] {card.chapter} · {card.kind}\n{card.front}\n")
    if card.code:
        out.write("\n" + "\n".join("    " + line for line in card.code.splitlines()) + "\n")


def show_back(card: Card, lang: str, out: TextIO) -> None:
    if card.kind == "mistake":
        out.write(f"\n{'the mistake' if lang == 'en' else '错误'}: {card.back}\n\n{card.diff}\n")
        return
    if card.short:
        out.write(f"\n{'30-second answer' if lang == 'en' else '30 秒版'}:\n{card.short}\n")
    out.write(f"\n{'full answer' if lang == 'en' else '完整回答'}:\n{card.back}\n")
    if card.followups:
        out.write(f"\n{'follow-ups' if lang == 'en' else '追问'}:\n{card.followups}\n")


class Similarity:
    """Cosine between a typed answer and the model answer, by the offline all-MiniLM-L6-v2 (English)."""

    def __init__(self):
        from transformers import AutoModel, AutoTokenizer

        from llmprep.assets import minilm_dir

        folder = minilm_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.encoder = AutoModel.from_pretrained(folder).eval()

    def __call__(self, typed: str, model_answer: str, others: list[str] = ()) -> tuple[float, float | None]:
        """(cosine to the model answer, median cosine to ``others``: other questions' answers, an anchor for
        what an unrelated answer scores; None without others)."""
        import numpy as np

        from llmprep.models import sentence_embeddings

        emb = sentence_embeddings([typed, model_answer, *others], self.encoder, self.tokenizer, max_length=256)
        cos = (emb[1:] @ emb[0]).numpy()
        return float(cos[0]), (float(np.median(cos[1:])) if len(others) else None)


def run_drill(cards: list[Card], lang: str, limit: int, inp: TextIO | None = None, out: TextIO | None = None,
              similarity: bool = False, path: Path | None = None) -> dict:
    """The terminal session; returns {"rated": n, "ratings": {1: n, ...}, "left": cards not reached}."""
    inp, out = inp or sys.stdin, out or sys.stdout
    sim = None
    with Progress(path) as progress:
        chosen = pick(cards, progress.card_states(), limit)
        if not chosen:
            dues = [d for k, (_, d) in progress.card_states().items() if k in {c.key for c in cards}]
            out.write(f"nothing is due in these {len(cards)} card(s); the next one is due "
                      f"{min(dues)[:16].replace('T', ' ')} UTC\n" if dues else "no card to review\n")
            return {"rated": 0, "ratings": {}, "left": 0}
        out.write(f"{len(chosen)} card(s) to review ({sum(1 for c in chosen if progress.card_state(c.key) is None)} "
                  f"new); answer in your head or type it, then press Enter to see the answer\n")
        if similarity and lang == "zh":
            out.write("(the similarity hint uses an English sentence encoder: shown for --lang en only)\n")
        sched = scheduler()
        ratings: dict[int, int] = {}
        for i, card in enumerate(chosen, 1):
            show_front(card, i, len(chosen), out)
            start = time.monotonic()
            typed = ask(inp, out, "your answer (optional, Enter to reveal) > ")
            if typed is None:
                break
            seconds = time.monotonic() - start
            show_back(card, lang, out)
            score = None
            if similarity and lang == "en" and typed.strip():
                if sim is None:
                    out.write("(loading the MiniLM sentence encoder...)\n")
                    sim = Similarity()
                others = [c.short for c in cards if c.kind == "question" and c.short and c.key != card.key][:30]
                score, anchor = sim(typed, card.short or card.back, others)
                out.write(f"\nsimilarity of your answer to the 30-second answer: {score:.2f}"
                          + (f" (to the other questions' answers: median {anchor:.2f})" if anchor is not None else "")
                          + "; MiniLM cosine, a hint for your own rating, not a grade\n")
            rating = ask_rating(inp, out)
            if rating is None:
                break
            at = now()
            state, due, log = review(progress.card_state(card.key), rating, at, sched=sched)
            progress.record_review(card.key, card.chapter, card.kind, rating, "drill", state, due, log,
                                   seconds=seconds, similarity=score, at=at)
            ratings[rating] = ratings.get(rating, 0) + 1
            out.write(f"  {RATINGS[rating]}: next review {due[:16].replace('T', ' ')} UTC\n")
        rated = sum(ratings.values())
        out.write(f"\nreviewed {rated} of {len(chosen)} card(s): "
                  + (", ".join(f"{RATINGS[k]} {v}" for k, v in sorted(ratings.items())) or "none rated")
                  + f"; saved in {progress.path}\n")
        return {"rated": rated, "ratings": ratings, "left": len(chosen) - rated}


# --------------------------------------------------------------------------- Anki export (genanki)

MODEL_ID = 1607392319  # fixed ids: a re-export updates the learner's notes in Anki instead of duplicating them
DECK_ID = 2059400110


def _html(markdown: str) -> str:
    """Markdown as HTML for an Anki field; $math$ as MathJax's \\( \\), which Anki renders."""
    import re

    from markdown_it import MarkdownIt

    text = re.sub(r"\$\$(.+?)\$\$", lambda m: "\\[" + m.group(1) + "\\]", markdown, flags=re.S)
    text = re.sub(r"(?<![\\$])\$([^$\n]+?)\$", lambda m: "\\(" + m.group(1) + "\\)", text)
    return MarkdownIt("commonmark").render(text)


def _pre(code: str) -> str:
    import html

    return f"<pre><code>{html.escape(code)}</code></pre>"


def export_anki(cards: list[Card], path: Path, lang: str) -> int:
    """Write an Anki package (``.apkg``) of ``cards`` with genanki; returns the number of notes."""
    import genanki

    if path.suffix != ".apkg":
        raise CoachError(f"an Anki package is a .apkg file, not '{path.name}'")
    if not path.parent.is_dir():
        raise CoachError(f"{path.parent} does not exist")
    model = genanki.Model(
        MODEL_ID, "llmprep interview card",
        fields=[{"name": "Key"}, {"name": "Front"}, {"name": "Short"}, {"name": "Back"}],
        templates=[{"name": "Card 1", "qfmt": "{{Front}}",
                    "afmt": "{{FrontSide}}<hr id=answer>{{#Short}}<div class=short>{{Short}}</div><hr>{{/Short}}"
                            "{{Back}}"}],
        css=".card { font-family: -apple-system, 'Segoe UI', 'Noto Sans CJK SC', 'PingFang SC', sans-serif; "
            "font-size: 18px; text-align: left; } .short { border-left: 3px solid #4a8; padding-left: .6em; } "
            "pre { font-size: 14px; }",
        sort_field_index=1)
    deck = genanki.Deck(DECK_ID + (1 if lang == "zh" else 0), f"llmprep::{'面试题' if lang == 'zh' else 'interview'}")
    for card in cards:
        if card.kind == "mistake":
            front, short = _html(card.front) + _pre(card.code), ""
            back = _html(card.back) + _pre(card.diff)
        else:
            front, short = _html(card.front), _html(card.short) if card.short else ""
            back = _html(card.back) + (_html(card.followups) if card.followups else "")
        deck.add_note(genanki.Note(model=model, fields=[card.key, front, short, back],
                                   guid=genanki.guid_for(card.key, lang),
                                   tags=[card.chapter, card.kind]))
    genanki.Package(deck).write_to_file(str(path))
    return len(cards)

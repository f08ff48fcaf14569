"""The learner's progress: one SQLite file in the workspace (``work/progress.sqlite``, or
``$LLMPREP_WORKSPACE/progress.sqlite``; ``$LLMPREP_PROGRESS`` names another file). Nothing is sent anywhere.

Tables: ``checks`` (one row per self-check: when, chapter, notebook, score / max) and ``exercise_results``
(its verdict per exercise); ``cards`` (the FSRS state of every card reviewed) and ``reviews`` (every rating,
in a drill or a mock interview, with the seconds taken); ``mock_sessions``. A file that is not a readable
progress record is reported in one line and kept as it is, never replaced.
"""
from __future__ import annotations

import json
import os
import sqlite3
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from llmprep.coach import CoachError

PATH_ENV = "LLMPREP_PROGRESS"
APPLICATION_ID = 0x4C4C4D50  # "LLMP": marks the file as llmprep's
SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS checks (
    id INTEGER PRIMARY KEY, at TEXT NOT NULL, chapter TEXT NOT NULL, notebook TEXT NOT NULL,
    score REAL NOT NULL, max_score REAL NOT NULL);
CREATE TABLE IF NOT EXISTS exercise_results (
    check_id INTEGER NOT NULL REFERENCES checks(id), grade_id TEXT NOT NULL,
    points REAL NOT NULL, max_points REAL NOT NULL);
CREATE TABLE IF NOT EXISTS cards (
    card_key TEXT PRIMARY KEY, chapter TEXT NOT NULL, kind TEXT NOT NULL, fsrs TEXT NOT NULL, due TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS mock_sessions (
    id INTEGER PRIMARY KEY, at TEXT NOT NULL, chapters TEXT NOT NULL, questions INTEGER NOT NULL,
    seconds_per_question REAL NOT NULL);
CREATE TABLE IF NOT EXISTS reviews (
    id INTEGER PRIMARY KEY, card_key TEXT NOT NULL, chapter TEXT NOT NULL, kind TEXT NOT NULL, at TEXT NOT NULL,
    rating INTEGER NOT NULL, mode TEXT NOT NULL, seconds REAL, over_time INTEGER NOT NULL DEFAULT 0,
    similarity REAL, session_id INTEGER REFERENCES mock_sessions(id), log TEXT);
CREATE INDEX IF NOT EXISTS reviews_card ON reviews(card_key);
CREATE INDEX IF NOT EXISTS results_check ON exercise_results(check_id);
"""
RATINGS = {1: "Again", 2: "Hard", 3: "Good", 4: "Easy"}


def now() -> datetime:
    return datetime.now(timezone.utc)


def switched_off() -> bool:
    return os.environ.get(PATH_ENV, "").strip().lower() in ("off", "0", "none")


def progress_path(root: Path | None = None) -> Path:
    chosen = os.environ.get(PATH_ENV)
    if chosen and switched_off():
        raise CoachError(f"progress is switched off ({PATH_ENV}={chosen}): unset it, or name a file there")
    if chosen:
        return Path(chosen).expanduser().resolve()
    from llmprep.course import workspace

    return workspace(root) / "progress.sqlite"


class Progress:
    """The progress file, opened (``with Progress() as p: ...``); CoachError when it is not usable."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path is not None else progress_path()
        self.conn: sqlite3.Connection | None = None

    def _refuse(self, why: str):
        raise CoachError(f"{self.path} is not a readable llmprep progress file ({why}); it is kept as it is: "
                         f"move it away (or set {PATH_ENV} to another file) to start a new record")

    def __enter__(self) -> "Progress":
        if self.path.exists() and not self.path.is_file():
            self._refuse("not a regular file")
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = sqlite3.connect(str(self.path), timeout=30)
            if not fresh:
                if self.conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                    self._refuse("SQLite's integrity check failed")
                app = self.conn.execute("PRAGMA application_id").fetchone()[0]
                if app != APPLICATION_ID:
                    self._refuse("a SQLite file written by something else")
                version = self.conn.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    self._refuse(f"written by a newer llmprep, schema {version}")
            with self.conn:
                self.conn.executescript(SCHEMA)
                self.conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            if self.conn is not None:
                self.conn.close()
                self.conn = None
            self._refuse(str(exc))
        except CoachError:
            self.conn.close()
            self.conn = None
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    # ------------------------------------------------------------------ writing

    def record_check(self, result: dict, at: datetime | None = None) -> int:
        """One self-check (``llmprep check --json``'s object); returns its id."""
        at = (at or now()).isoformat()
        with self.conn:
            cur = self.conn.execute(
                "INSERT INTO checks (at, chapter, notebook, score, max_score) VALUES (?, ?, ?, ?, ?)",
                (at, str(result["chapter"]), str(result.get("notebook", "")), float(result.get("score", 0)),
                 float(result.get("max_score", 0))))
            self.conn.executemany(
                "INSERT INTO exercise_results (check_id, grade_id, points, max_points) VALUES (?, ?, ?, ?)",
                [(cur.lastrowid, str(c["grade_id"]), float(c.get("points", 0)), float(c.get("max_points", 0)))
                 for c in result.get("cells", [])])
        return cur.lastrowid

    def card_state(self, key: str) -> str | None:
        row = self.conn.execute("SELECT fsrs FROM cards WHERE card_key = ?", (key,)).fetchone()
        return row[0] if row else None

    def card_states(self) -> dict[str, tuple[str, str]]:
        """{card key: (FSRS card JSON, due ISO time)} of every card reviewed."""
        return {k: (s, d) for k, s, d in self.conn.execute("SELECT card_key, fsrs, due FROM cards")}

    def record_review(self, key: str, chapter: str, kind: str, rating: int, mode: str, fsrs_card: str | None,
                      due: str | None, log: str | None = None, seconds: float | None = None,
                      over_time: bool = False, similarity: float | None = None, session_id: int | None = None,
                      at: datetime | None = None) -> None:
        """One rating, and the card's new FSRS state (a mock interview records the rating and keeps the
        card's schedule: ``fsrs_card`` None)."""
        if rating not in RATINGS:
            raise CoachError(f"a rating is 1-4 ({', '.join(f'{k} {v}' for k, v in RATINGS.items())}), not {rating}")
        with self.conn:
            self.conn.execute(
                "INSERT INTO reviews (card_key, chapter, kind, at, rating, mode, seconds, over_time, similarity, "
                "session_id, log) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, chapter, kind, (at or now()).isoformat(), rating, mode, seconds, int(over_time), similarity,
                 session_id, log))
            if fsrs_card is not None:
                self.conn.execute("INSERT INTO cards (card_key, chapter, kind, fsrs, due) VALUES (?, ?, ?, ?, ?) "
                                  "ON CONFLICT(card_key) DO UPDATE SET fsrs = excluded.fsrs, due = excluded.due",
                                  (key, chapter, kind, fsrs_card, due))

    def start_mock(self, chapters: list[str], questions: int, seconds: float) -> int:
        with self.conn:
            cur = self.conn.execute("INSERT INTO mock_sessions (at, chapters, questions, seconds_per_question) "
                                    "VALUES (?, ?, ?, ?)", (now().isoformat(), ",".join(chapters), questions, seconds))
        return cur.lastrowid

    # ------------------------------------------------------------------ reading

    def reviews(self, key: str | None = None) -> list[dict]:
        sql = "SELECT card_key, at, rating, mode, seconds, over_time, similarity FROM reviews"
        rows = self.conn.execute(sql + (" WHERE card_key = ?" if key else "") + " ORDER BY id", (key,) if key else ())
        names = ("card_key", "at", "rating", "mode", "seconds", "over_time", "similarity")
        return [dict(zip(names, r)) for r in rows]

    def checks(self) -> list[dict]:
        rows = self.conn.execute("SELECT id, at, chapter, notebook, score, max_score FROM checks ORDER BY id")
        return [dict(zip(("id", "at", "chapter", "notebook", "score", "max_score"), r)) for r in rows]

    def chapter_rows(self, chapters: list[str], questions: dict[str, int], at: datetime | None = None) -> list["ChapterRow"]:
        """One row per chapter: exercises (best score, attempts, first solved) and interview cards."""
        at_iso = (at or now()).isoformat()
        rows = []
        for ch in chapters:
            attempts, last = self.conn.execute("SELECT COUNT(*), MAX(at) FROM checks WHERE chapter = ?", (ch,)).fetchone()
            best = self.conn.execute(
                "SELECT r.grade_id, MAX(r.points), MAX(r.max_points), "
                "MIN(CASE WHEN r.points >= r.max_points THEN c.at END) "
                "FROM exercise_results r JOIN checks c ON c.id = r.check_id WHERE c.chapter = ? GROUP BY r.grade_id",
                (ch,)).fetchall()
            solved_times = [t for _, _, _, t in best if t]
            reviewed = self.conn.execute("SELECT COUNT(DISTINCT card_key) FROM reviews WHERE chapter = ? AND kind = "
                                         "'question'", (ch,)).fetchone()[0]
            due = self.conn.execute("SELECT COUNT(*) FROM cards WHERE chapter = ? AND due <= ?", (ch, at_iso)).fetchone()[0]
            last_ratings = [r for (r,) in self.conn.execute(
                "SELECT rating FROM reviews r WHERE chapter = ? AND id = (SELECT MAX(id) FROM reviews WHERE "
                "card_key = r.card_key)", (ch,))]
            rows.append(ChapterRow(
                chapter=ch, attempts=attempts, last_check=last,
                best=sum(p for _, p, _, _ in best), max_points=sum(m for _, _, m, _ in best),
                solved=len(solved_times), exercises=len(best),
                first_solved=min(solved_times) if solved_times else None,
                questions=questions.get(ch, 0), reviewed=reviewed, due=due,
                known=sum(1 for r in last_ratings if r >= 3), rated=len(last_ratings)))
        return rows


    def exercise_rows(self, chapter: str) -> list[tuple[str, float, float, int, str | None, str]]:
        """Per exercise of ``chapter`` checked at least once: (grade_id, best points, max points, checks, first
        solved, last check), in the order first seen."""
        return self.conn.execute(
            "SELECT r.grade_id, MAX(r.points), MAX(r.max_points), COUNT(*), "
            "MIN(CASE WHEN r.points >= r.max_points THEN c.at END), MAX(c.at) "
            "FROM exercise_results r JOIN checks c ON c.id = r.check_id WHERE c.chapter = ? "
            "GROUP BY r.grade_id ORDER BY MIN(r.rowid)", (chapter,)).fetchall()


@dataclass
class ChapterRow:
    chapter: str
    attempts: int
    last_check: str | None
    best: float
    max_points: float
    solved: int
    exercises: int
    first_solved: str | None
    questions: int
    reviewed: int
    due: int
    known: int   # cards (questions and mistakes) whose latest rating was Good or Easy
    rated: int   # cards rated at least once


def record_check_quietly(result: dict) -> None:
    """The self-check's one call: record a graded result; a problem with the progress file is one line on
    stderr and never changes the check's outcome. ``LLMPREP_PROGRESS=off`` records nothing."""
    if switched_off():
        return
    if not isinstance(result, dict) or not result.get("chapter"):
        return
    try:
        with Progress() as progress:
            progress.record_check(result)
    except (CoachError, OSError, sqlite3.Error) as exc:
        print(f"warning: progress not recorded: {exc}", file=sys.stderr)


def _short_time(iso: str | None) -> str:
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")


def text_table(head: tuple[str, ...], body: list[tuple[str, ...]]) -> str:
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths]), *(line(b) for b in body)])


def progress_table(rows: list[ChapterRow]) -> str:
    """The per-chapter table ``llmprep progress`` prints."""
    head = ("chapter", "best score", "solved", "checks", "first solved", "last check", "questions reviewed",
            "cards known", "due now")
    return text_table(head, [(r.chapter, f"{r.best:g}/{r.max_points:g}" if r.attempts else "-",
                              f"{r.solved}/{r.exercises}" if r.attempts else "-", str(r.attempts),
                              _short_time(r.first_solved), _short_time(r.last_check), f"{r.reviewed}/{r.questions}",
                              f"{r.known}/{r.rated}", str(r.due)) for r in rows])


def exercise_table(chapter: str, rows) -> str:
    """Per exercise of one chapter: best points, checks, first solved, last check."""
    return text_table((f"{chapter} exercise", "best", "checks", "first solved", "last check"),
                      [(g, f"{best:g}/{top:g}", str(n), _short_time(first), _short_time(last))
                       for g, best, top, n, first, last in rows])


def progress_plot(rows: list[ChapterRow], path: Path) -> Path:
    """Two bars per chapter: the share of exercise points earned (best check) and of interview questions
    reviewed. Written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(rows))
    points = [r.best / r.max_points if r.max_points else 0 for r in rows]
    asked = [r.reviewed / r.questions if r.questions else 0 for r in rows]
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(rows)), 3.2))
    ax.bar(x - 0.2, points, 0.4, label="exercise points (best check)")
    ax.bar(x + 0.2, asked, 0.4, label="interview questions reviewed")
    ax.set_xticks(x, [r.chapter.split("_")[0] for r in rows])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def question_counts(chapters: list[str]) -> dict[str, int]:
    from llmprep.book import parse_questions
    from llmprep.paths import chapter_prefix, format_path

    return {ch: len(parse_questions(ch, format_path("solutions", ch) / f"{chapter_prefix(ch)}_reference.ipynb"))
            for ch in chapters}


def show_progress(chapter_names: list[str] | None = None, plot: Path | None = None) -> str:
    """The text of ``llmprep progress`` (and ``%llmprep_progress``); CoachError for bad input."""
    from llmprep.course import UsageError, resolve_chapters

    try:
        chapters = resolve_chapters(chapter_names)
    except UsageError as exc:
        raise CoachError(str(exc)) from None
    path = progress_path()
    if not path.exists():
        return (f"no progress recorded yet ({path} does not exist): `llmprep check NOTEBOOK` (or %llmprep_check), "
                "`llmprep drill` and `llmprep mock` record it")
    with Progress(path) as progress:
        rows = progress.chapter_rows(chapters, question_counts(chapters))
        total = len(progress.reviews())
        detail = [exercise_table(ch, progress.exercise_rows(ch)) for ch in (chapters if chapter_names else [])
                  if progress.exercise_rows(ch)]
    text = [f"progress in {path} (kept on this machine only)", "", progress_table(rows), "",
            *[part + "\n" for part in detail],
            f"{sum(r.attempts for r in rows)} self-check(s), {total} card review(s) in all"]
    if plot is not None:
        text.append(f"plot written to {progress_plot(rows, plot)}")
    return "\n".join(text)


def dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False)

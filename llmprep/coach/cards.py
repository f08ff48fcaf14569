"""Flash cards from the course itself.

* **question cards**: every interview question of every chapter (the reference notebooks' cells tagged
  ``interview``, parsed by :func:`llmprep.book.parse_questions`, the parser the website uses): the question,
  then its 30-second version, then the full answer and the follow-ups, in one language (``zh`` or ``en``);
* **mistake cards**: every known-wrong variant (``Mutant``) of the trusted specs whose diff against the code it
  edits is short: "what is wrong with this code?" shows the wrong code around the edit; the answer is the diff
  and the misconception (the mutant's ``hint`` in the chosen language, else its name, which is English).

A card's ``key`` does not depend on the language: switching ``--lang`` keeps the review history.
"""
from __future__ import annotations

import difflib
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

from llmprep.coach import CoachError

LANGS = ("zh", "en")
KINDS = ("questions", "mistakes")
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\u3000-\u303f\uff00-\uffef]")
LATIN = re.compile(r"[A-Za-z]")
# a line that starts a new language segment inside a block ("**30-second version.**", "**English.**", ...)
MARKER = re.compile(r"^\s*\*\*\s*(?:30|English|Model answer|Answer|中文|参考|答)")
MAX_DIFF_LINES = 24  # a mistake card shows a short diff; longer rewrites are not a "spot the bug" card


@dataclass(frozen=True)
class Card:
    key: str            # "ch01_training/q3" or "ch01_training/log_softmax/<mutant name>"; language-free
    chapter: str
    kind: str           # "question" or "mistake"
    front: str          # what is asked
    short: str          # the 30-second answer ("" for a mistake card)
    back: str           # the full answer (a mistake card: the misconception)
    followups: str = ""
    code: str = ""      # a mistake card: the wrong code around the edit
    diff: str = ""      # a mistake card: unified diff, the code it edits -> the wrong code


def cjk_share(text: str) -> float:
    """Chinese characters among the letters of ``text`` (0 for none)."""
    cjk, latin = len(CJK.findall(text)), len(LATIN.findall(text))
    return cjk / (cjk + latin) if cjk + latin else 0.0


def _segments(text: str) -> list[tuple[str, bool]]:
    """(segment, is_code): blank-line separated blocks, a block cut again at each line that opens a
    language (``**English.**``, ``**30 秒版**``); a fenced code block stays whole."""
    out: list[tuple[str, bool]] = []
    current: list[str] = []
    fence = False

    def flush(code: bool = False):
        if current:
            out.append(("\n".join(current), code))
            current.clear()

    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            if not fence:
                flush()
                fence = True
                current.append(line)
                continue
            current.append(line)
            fence = False
            flush(code=True)
            continue
        if fence:
            current.append(line)
        elif not line.strip():
            flush()
        elif MARKER.match(line):
            flush()
            current.append(line)
        else:
            current.append(line)
    flush(code=fence)
    return out


def in_language(text: str, lang: str) -> str:
    """The parts of a bilingual text written in ``lang``: segments mostly Chinese are ``zh``, segments without
    Chinese ``en``; code and mixed segments (an English question followed by its Chinese gloss) are kept in
    both. Falls back to the whole text when nothing is left."""
    if lang not in LANGS:
        raise CoachError(f"unknown language '{lang}'; the languages are: {', '.join(LANGS)}")
    kept = []
    for segment, code in _segments(text):
        share = cjk_share(segment)
        zh = share >= 0.25
        en = share < 0.02
        if code or not (zh or en) or (lang == "zh" and zh) or (lang == "en" and en):
            kept.append(segment)
    return "\n\n".join(kept).strip() or text.strip()


def title_in_language(title: str, lang: str) -> str:
    """``"中文？/ English?"`` -> one side: split at the first ``/`` after which (almost) no Chinese is left
    (an English title may quote a Chinese term)."""
    for m in re.finditer(r"/", title):
        left, right = title[:m.start()].strip(), title[m.end():].strip()
        if left and right and CJK.search(left) and cjk_share(right) < 0.1:
            return left if lang == "zh" else right
    return title.strip()


def _strip_marker(text: str) -> str:
    """``**30-second version.** Short.`` -> ``Short.`` (the card says which part it shows)."""
    return re.sub(r"^\s*\*\*[^*\n]{1,40}\*\*\s*[:：.]?\s*", "", text, count=1).strip()


def question_cards(chapters: list[str], lang: str, root: Path | None = None) -> list[Card]:
    from llmprep.book import parse_questions
    from llmprep.paths import chapter_prefix, format_path

    cards = []
    for ch in chapters:
        path = format_path("solutions", ch, root) / f"{chapter_prefix(ch)}_reference.ipynb"
        if not path.is_file():
            path = format_path("course", ch, root) / f"{chapter_prefix(ch)}_reference.ipynb"
        for q in parse_questions(ch, path):
            cards.append(Card(key=f"{ch}/q{q.number}", chapter=ch, kind="question",
                              front=f"Q{q.number}. {title_in_language(q.title, lang)}",
                              short=_strip_marker(in_language(q.short, lang)) if q.short else "",
                              back=in_language(q.answer, lang), followups=q.followups))
    return cards


def _mutant_base(chapter, exercise, mutant) -> str:
    from llmprep.grading.spec import solution_source

    if mutant.base is not None:
        return textwrap.dedent(mutant.base)
    if exercise.base is not None:
        return textwrap.dedent(exercise.base)
    return solution_source(chapter.name, chapter.notebook, exercise.functions)


def mistake_card(chapter, exercise, name: str, mutant, lang: str) -> Card | None:
    """The "what is wrong with this code?" card of one mutant, or None when its diff is too long to be one."""
    base = _mutant_base(chapter, exercise, mutant)
    wrong = textwrap.dedent(mutant.source)
    diff = list(difflib.unified_diff(base.splitlines(), wrong.splitlines(), "correct", "wrong", n=3, lineterm=""))
    changed = [d for d in diff[2:] if d[:1] in "+-" and not d.startswith(("+++", "---"))]
    if not changed or len(diff) - 2 > MAX_DIFF_LINES:
        return None
    shown = [d[1:] for d in diff[2:] if not d.startswith(("@@", "-"))]  # the wrong code: context and new lines
    hint = getattr(mutant, "hint", None)
    said = (hint.zh if lang == "zh" else hint.en) if hint else name
    front = (f"What is wrong with this code? ({exercise.grade_id}: {', '.join(exercise.functions)})" if lang == "en"
             else f"这段代码错在哪里？（{exercise.grade_id}：{', '.join(exercise.functions)}）")
    return Card(key=f"{chapter.name}/{exercise.grade_id}/{name}", chapter=chapter.name, kind="mistake",
                front=front, short="", back=said, code="\n".join(shown), diff="\n".join(diff))


def mistake_cards(chapters: list[str], lang: str) -> list[Card]:
    from llmprep.grading.trusted import all_chapters, load_spec

    graded = set(all_chapters())
    cards = []
    for ch in chapters:
        if ch not in graded:
            continue
        spec = load_spec(ch)
        for ex in spec.exercises:
            for name, mutant in ex.mutants.items():
                card = mistake_card(spec, ex, name, mutant, lang)
                if card is not None:
                    cards.append(card)
    return cards


def build_deck(chapter_names: list[str] | None = None, lang: str = "en", kinds: tuple[str, ...] = KINDS,
               root: Path | None = None) -> list[Card]:
    """Every card of the chosen chapters (all when empty) and kinds, in course order. CoachError for an unknown
    chapter, language or kind, and for a filter that leaves no card."""
    from llmprep.course import UsageError, resolve_chapters

    if lang not in LANGS:
        raise CoachError(f"unknown language '{lang}'; the languages are: {', '.join(LANGS)}")
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise CoachError(f"unknown card kind '{','.join(unknown)}'; the kinds are: {', '.join(KINDS)}")
    try:
        chapters = resolve_chapters(chapter_names, root)
    except UsageError as exc:
        raise CoachError(str(exc)) from None
    cards = []
    if "questions" in kinds:
        cards += question_cards(chapters, lang, root)
    if "mistakes" in kinds:
        cards += mistake_cards(chapters, lang)
    if not cards:
        raise CoachError(f"no card in {', '.join(chapters)} of the kinds {', '.join(kinds)}: choose other chapters "
                         "or kinds")
    return cards

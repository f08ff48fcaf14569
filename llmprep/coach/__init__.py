"""The coach: practice material built from the course and a local record of the learner's progress.

* :mod:`llmprep.coach.cards` — flash cards from every chapter's interview questions (question, 30-second
  answer, full answer, in 中文 or English) and from the specs' known mistakes ("what is wrong with this code?");
* :mod:`llmprep.coach.progress` — one SQLite file in the learner's workspace: every self-check, every review;
* :mod:`llmprep.coach.drill` — spaced-repetition sessions scheduled by the ``fsrs`` library, Anki export;
* :mod:`llmprep.coach.mock` — timed mock interviews in the terminal.

Nothing here sends anything anywhere.
"""


class CoachError(ValueError):
    """Bad input or an unusable progress file: reported as one ``error: ...`` line, nothing lost."""

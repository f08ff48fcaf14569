"""Trusted grading: specs in ``autograder/``, submissions run in a sandbox, verdicts judged here."""

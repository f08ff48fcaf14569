"""llmprep: an interview-prep course for LLM engineering with trusted grading.

Importing the package applies the course's environment defaults (offline hub
access, quiet tokenizers); see :mod:`llmprep.runtime`.
"""
from llmprep.runtime import apply_env_defaults

apply_env_defaults()

__version__ = "0.1.0"

"""Kept so that ``from llmprep.report import record`` in older notebooks still works: the results
protocol is :mod:`llmprep.results`."""
from llmprep.results import record

__all__ = ["record"]

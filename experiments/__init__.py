"""Experiments: the course studies, the ``bdl`` command, and writing results atomically."""

from .registry import STUDIES, run_study

__all__ = ["STUDIES", "run_study"]

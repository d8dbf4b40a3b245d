"""Experiments: the course studies, the ``bdl`` command, and writing results atomically."""

if __name__ != "bayesdl.experiments":  # e.g. `import experiments` with the repository root on sys.path
    raise ImportError(
        f"this folder is the package bayesdl.experiments: import it as `bayesdl.experiments`, not `{__name__}` "
        "(one file must never be importable under two names)"
    )

from .registry import STUDIES, run_study

__all__ = ["STUDIES", "run_study"]

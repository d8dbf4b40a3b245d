"""Experiments: the course studies, the ``bdl`` command, and writing results atomically.

Importing this package is cheap (no torch): :data:`STUDIES` is the catalogue, and
:func:`run_study` imports what a study needs when it is called.
"""

if __name__ != "bayesdl.experiments":  # e.g. `import experiments` with the repository root on sys.path
    raise ImportError(
        f"this folder is the package bayesdl.experiments: import it as `bayesdl.experiments`, "
        f"not `{__name__}` (one file must never be importable under two names)"
    )

from .catalogue import STUDIES

__all__ = ["STUDIES", "run_study"]


def run_study(name, out, **options):
    """Run study ``name`` into folder ``out``; see :func:`bayesdl.experiments.registry.run_study`."""
    from .registry import run_study as run

    return run(name, out, **options)

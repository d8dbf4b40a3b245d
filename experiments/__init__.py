"""Experiments: the course studies, the ``bdl`` command, and writing results atomically.

Importing this package is cheap (no torch): :data:`STUDIES` is the catalogue, and
:func:`run_study` imports what a study needs when it is called.

Every study has one shape (DESIGN):

- :mod:`.methods` -- a method as a study uses it, a :class:`~.methods.MethodSpec` (row name,
  registered method, options, label); how methods compose is the registry's declaration;
- :mod:`.lab` -- the one :class:`~.lab.Lab`: the posterior of a spec for a seed (composed around
  the MAP or from members as declared), with the training cost behind it; a study subclasses it
  with its data and how it trains one plain posterior;
- :mod:`.options` and :mod:`.catalogue` -- each study's options declared once (types, defaults,
  quick preset, help), parsed from ``--set`` and listed by ``bdl list``;
- :mod:`.studies` -- one module per study (a package when studies share a lab, as the MNIST
  ones do), computing, figures and report in separate functions.

Where things go: a new study is a catalogue entry and a module of :mod:`.studies`; a new method
is a file in :mod:`bayesdl.inference` with ``register_method``, plus one spec line in each study
that compares it; a new metric or statistic is a function in :mod:`bayesdl.evaluation`; a loop
acting on predictions (active learning) lives here and takes a spec.
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

"""bayesdl: Bayesian deep learning on Pyro and PyTorch.

The library is four subpackages, one per step of the pipeline (the repository's top-level
folders ``models/``, ``inference/``, ``evaluation/``, ``experiments/``, installed under this
package; the README's "A short tour of the Python API" shows them at work):

- :mod:`bayesdl.models`      priors, likelihoods, networks, Bayesian linear regression, ``BNN``;
- :mod:`bayesdl.inference`   guides, ``fit`` (SVI), Laplace, NUTS, and the ``Posterior``;
- :mod:`bayesdl.evaluation`  uncertainty, calibration, failure and OOD metrics, diagnostics, plots;
- :mod:`bayesdl.experiments` the course studies and the ``bdl`` command.

This package holds what they share: the version, the boundary checks (:mod:`bayesdl.checks`),
progress reporting (:mod:`bayesdl.progress`), atomic writes and process settings.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bayesdl")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = ["__version__"]

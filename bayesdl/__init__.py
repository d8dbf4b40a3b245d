"""bayesdl: Bayesian deep learning on Pyro and PyTorch.

The library lives in four top-level packages, one per step of the pipeline
(see ``DESIGN`` in the README):

- :mod:`bayesdl.models`      priors, likelihoods, networks, Bayesian linear regression, ``BNN``;
- :mod:`bayesdl.inference`   guides, ``fit`` (SVI), Laplace, NUTS, and the ``Posterior``;
- :mod:`bayesdl.evaluation`  uncertainty, calibration, failure and OOD metrics, diagnostics, plots;
- :mod:`bayesdl.experiments` the course studies and the ``bdl`` command.

This package holds what they share: the version and the boundary checks.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bayesdl")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = ["__version__"]

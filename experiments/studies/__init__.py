"""The course studies; importing this package registers them with ``bdl``."""

from . import mnist_guides, regression  # noqa: F401

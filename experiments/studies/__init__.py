"""The course studies; importing this package registers them with ``bdl``."""

from . import mnist, mnist_guides, regression, week2  # noqa: F401

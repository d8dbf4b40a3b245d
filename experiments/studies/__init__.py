"""The course studies; importing this package registers them with ``bdl``."""

from . import regression  # noqa: F401

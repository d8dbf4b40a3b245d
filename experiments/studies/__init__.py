"""The course studies; importing this package registers them with ``bdl``."""

from . import mnist, mnist_guides, regression, week2  # noqa: F401

#: The order in which ``bdl list`` shows the studies: the course's.
COURSE_ORDER = ("regression", "logistic-2d", "two-moons", "mnist-guides", "mnist-dropout", "calibration",
                "failure", "ood")

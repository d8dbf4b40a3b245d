"""The data generator and priors of the week-1 study."""

SIGMA = 0.2  # noise of the data generator
BETA = 1.0 / (2.0 * SIGMA**2)  # = 12.5, the course's noise precision
ALPHA_LINEAR = 2.0
ALPHA_GAUSSIAN = 0.05

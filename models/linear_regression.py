"""Bayesian linear regression with a conjugate Gaussian prior (Bishop, PRML ch. 3.3-3.5).

Model, for a basis ``phi`` with ``D`` features::

    w ~ N(0, alpha^-1 I_D)               (alpha = 0: a flat, improper prior)
    t_n | w ~ N(phi(x_n)^T w, beta^-1)

Posterior (PRML 3.53-3.54)::

    S_N^-1 = alpha I + beta Phi^T Phi,     m_N = beta S_N Phi^T t

Predictive (PRML 3.58-3.59)::

    p(t | x, D) = N(m_N^T phi(x), 1/beta + phi(x)^T S_N phi(x))

Log evidence (PRML 3.86), with ``A = S_N^-1`` and
``E(m_N) = beta/2 ||t - Phi m_N||^2 + alpha/2 m_N^T m_N``::

    ln p(t | alpha, beta) = D/2 ln alpha + N/2 ln beta - E(m_N) - 1/2 ln|A| - N/2 ln(2 pi)

Evidence maximisation re-estimates both precisions by the fixed point of PRML 3.91-3.95,
with ``lambda_i`` the eigenvalues of ``beta Phi^T Phi``::

    gamma = sum_i lambda_i / (alpha + lambda_i)
    alpha <- gamma / m_N^T m_N,     1/beta <- sum_n (t_n - m_N^T phi_n)^2 / (N - gamma)

All computations are in float64 through the eigendecomposition of ``Phi^T Phi``.
"""

from __future__ import annotations

import math

import torch

from bayesdl.checks import as_tensor, check_finite, check_int, check_positive, check_same_length

from .bases import as_inputs

__all__ = ["BayesianLinearRegression"]


def _as_targets(y, n: int) -> torch.Tensor:
    y = as_tensor(y, "y", dtype=torch.float64)
    if y.dim() == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.dim() != 1:
        raise ValueError(f"y must have shape [N] or [N, 1], got shape {tuple(y.shape)}")
    check_same_length(torch.empty(n), y, ("x", "y"))
    return check_finite(y, "y")


class BayesianLinearRegression:
    """Conjugate Bayesian linear regression on a basis; scikit-learn style.

    Parameters
    ----------
    basis:
        Callable mapping ``x`` ``[N]`` to ``Phi`` ``[N, D]``, e.g. :class:`PolynomialBasis`.
    alpha:
        Prior precision of the weights (>= 0; 0 is a flat prior, which needs at least
        ``D`` linearly independent features among the training points).
    beta:
        Noise precision (> 0).

    Attributes set by :meth:`fit`: ``posterior_mean_`` ``[D]``, ``posterior_covariance_``
    ``[D, D]``, and ``alpha_``, ``beta_``, the precisions in use (equal to ``alpha`` and
    ``beta`` unless :meth:`maximize_evidence` re-estimated them).

    Example::

        >>> from models import PolynomialBasis
        >>> blr = BayesianLinearRegression(PolynomialBasis(1), alpha=2.0, beta=25.0)
        >>> mean, var = blr.fit([0.0, 0.5, 1.0], [0.1, 0.4, 0.9]).predict([0.5, 3.0])
        >>> bool(var[1] > var[0])          # more uncertain away from the data
        True
    """

    def __init__(self, basis, alpha: float = 1.0, beta: float = 1.0):
        if not callable(basis):
            raise TypeError(f"basis must be callable (x -> Phi), got {type(basis).__name__}")
        self.basis = basis
        self.alpha = check_positive(alpha, "alpha", allow_zero=True)
        self.beta = check_positive(beta, "beta")

    # ------------------------------------------------------------------ fitting
    def _design(self, x) -> torch.Tensor:
        phi = self.basis(as_inputs(x))
        phi = as_tensor(phi, "basis(x)", dtype=torch.float64)
        if phi.dim() != 2:
            raise ValueError(f"basis(x) must return [N, D], got shape {tuple(phi.shape)}")
        return phi

    def _posterior(self, alpha: float, beta: float):
        """Posterior mean and covariance for given precisions, from the eigenbasis."""
        if math.isinf(alpha):  # the prior pins w at 0
            d = self._eigenvalues.numel()
            zeros = torch.zeros(d, dtype=torch.float64)
            return zeros, torch.zeros(d, d, dtype=torch.float64), torch.full((d,), math.inf)
        curvature = self._eigenvalues * beta + alpha  # eigenvalues of A = S_N^-1
        top = float(curvature.max())
        if float(curvature.min()) <= top * curvature.numel() * torch.finfo(torch.float64).eps:
            n, d = self._phi.shape
            raise ValueError(
                f"the posterior precision alpha*I + beta*Phi^T Phi is singular (alpha={alpha:g}, "
                f"N={n} points, D={d} features): with a flat prior (alpha=0) the features of the "
                "training points must span all D directions; use alpha > 0, fewer features or "
                "more distinct points"
            )
        covariance = (self._eigenvectors / curvature) @ self._eigenvectors.T
        mean = beta * covariance @ (self._phi.T @ self._targets)
        return mean, covariance, curvature

    def fit(self, x, y) -> BayesianLinearRegression:
        """Compute the posterior over the weights from inputs ``x`` ``[N]`` and targets ``y``."""
        x = as_inputs(x)
        self._targets = _as_targets(y, x.shape[0])
        self._phi = self._design(x)
        self._eigenvalues, self._eigenvectors = torch.linalg.eigh(self._phi.T @ self._phi)
        self._eigenvalues = self._eigenvalues.clamp_min(0.0)
        self.alpha_, self.beta_ = self.alpha, self.beta
        self._refresh()
        return self

    def _refresh(self) -> None:
        mean, covariance, curvature = self._posterior(self.alpha_, self.beta_)
        self.posterior_mean_ = mean
        self.posterior_covariance_ = covariance
        self._log_det_precision = float(torch.log(curvature).sum())

    def maximize_evidence(self, x, y, max_iter: int = 500, tol: float = 1e-10):
        """Fit, then re-estimate ``alpha_`` and ``beta_`` by the PRML 3.91-3.95 fixed point.

        Starts from the constructor's ``alpha`` (if 0, from 1) and ``beta``; stops when both
        change by less than ``tol`` (relative) or after ``max_iter`` sweeps. Sets
        ``n_iter_`` and ``gamma_`` (the effective number of parameters). Returns self.

        When the features explain nothing the data could not explain by noise alone, the
        evidence increases without bound as ``alpha`` grows: the optimum is on the boundary
        ``alpha = inf``, a posterior that is a point mass at ``w = 0``. This is detected
        (``alpha`` beyond ``1e8`` times the largest eigenvalue of ``beta Phi^T Phi``) and
        returned as ``alpha_ = inf`` with ``beta_ = N / sum t_n^2`` and ``gamma_ = 0``.
        """
        max_iter = check_int(max_iter, "max_iter", minimum=1)
        self.fit(x, y)
        n = self._phi.shape[0]
        alpha, beta = (self.alpha if self.alpha > 0 else 1.0), self.beta
        gamma = 0.0
        for iteration in range(1, max_iter + 1):  # noqa: B007 (read after the loop)
            lam = self._eigenvalues * beta
            if alpha > 1e8 * (float(lam.max()) + 1.0):
                alpha, beta, gamma = math.inf, n / float((self._targets**2).sum()), 0.0
                break
            mean, _, _ = self._posterior(alpha, beta)
            gamma = float((lam / (alpha + lam)).sum())
            squared_norm = float(mean @ mean)
            residual = float(((self._targets - self._phi @ mean) ** 2).sum())
            if n - gamma <= 1e-12 * n or residual == 0.0:
                raise ValueError(
                    "evidence maximisation diverged: the model interpolates the training data "
                    "(beta -> infinity); use fewer features or more data"
                )
            new_alpha = gamma / squared_norm if squared_norm > 0 else math.inf
            new_beta = (n - gamma) / residual
            converged = abs(new_alpha - alpha) <= tol * alpha and abs(new_beta - beta) <= tol * beta
            alpha, beta = new_alpha, new_beta
            if converged:
                break
        self.alpha_, self.beta_ = alpha, beta
        self.n_iter_ = iteration
        self.gamma_ = gamma
        self._refresh()
        return self

    # ---------------------------------------------------------------- prediction
    def _check_fitted(self) -> None:
        if not hasattr(self, "posterior_mean_"):
            raise RuntimeError("this model is not fitted yet; call fit(x, y) first")

    def predict(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        """Predictive mean and variance at ``x``, each ``[M]`` (PRML 3.58-3.59).

        The variance includes the noise ``1/beta``; the epistemic part alone is
        ``variance - 1/beta_``.
        """
        self._check_fitted()
        phi = self._design(x)
        mean = phi @ self.posterior_mean_
        variance = 1.0 / self.beta_ + ((phi @ self.posterior_covariance_) * phi).sum(-1)
        return mean, variance

    def log_evidence(self) -> float:
        """``ln p(t | alpha_, beta_)`` of the training targets (PRML 3.86), in nats."""
        self._check_fitted()
        if self.alpha_ == 0:
            raise ValueError(
                "the evidence is undefined for a flat prior (alpha=0): the prior is improper; "
                "use alpha > 0"
            )
        n, d = self._phi.shape
        if math.isinf(self.alpha_):  # limit alpha -> inf: t ~ N(0, I / beta)
            return (0.5 * n * math.log(self.beta_) - 0.5 * self.beta_ * float((self._targets**2).sum())
                    - 0.5 * n * math.log(2 * math.pi))
        m = self.posterior_mean_
        energy = 0.5 * self.beta_ * float(((self._targets - self._phi @ m) ** 2).sum()) \
            + 0.5 * self.alpha_ * float(m @ m)
        return (0.5 * d * math.log(self.alpha_) + 0.5 * n * math.log(self.beta_) - energy
                - 0.5 * self._log_det_precision - 0.5 * n * math.log(2 * math.pi))

    # ---------------------------------------------------------------- Pyro model
    def model(self, x, y=None):
        """The same model as a Pyro program: ``w ~ N(0, alpha^-1 I)``, ``y ~ N(Phi w, beta^-1)``.

        Uses the current precisions (``alpha_``/``beta_`` once fitted). With ``alpha = 0``
        the prior on ``w`` is an improper flat density. Sites: ``"w"`` ``[D]`` and ``"obs"``
        ``[N]`` in the plate ``"data"``. Fit it with :func:`bayesdl.inference.fit` (SVI) or
        :func:`bayesdl.inference.nuts`.
        """
        import pyro
        import pyro.distributions as dist
        from torch.distributions import constraints

        phi = self._design(x)
        alpha = getattr(self, "alpha_", self.alpha)
        beta = getattr(self, "beta_", self.beta)
        d = phi.shape[1]
        if alpha > 0:
            prior = dist.Normal(torch.zeros(d, dtype=phi.dtype), alpha**-0.5).to_event(1)
        else:
            prior = dist.ImproperUniform(constraints.real, (), (d,))
        w = pyro.sample("w", prior)
        if y is not None:
            y = _as_targets(y, phi.shape[0])
        # w is [..., D], with a batch shape aligned to the plates (e.g. [particles, 1] under
        # vectorised particles), so broadcast it against Phi [N, D] rather than matmul.
        with pyro.plate("data", phi.shape[0]):
            return pyro.sample("obs", dist.Normal((phi * w).sum(-1), beta**-0.5), obs=y)

    def __repr__(self) -> str:
        return f"BayesianLinearRegression({self.basis!r}, alpha={self.alpha:g}, beta={self.beta:g})"

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

__all__ = ["BayesianLinearRegression", "NormalInverseGammaRegression"]


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

        >>> from bayesdl.models import PolynomialBasis
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


class NormalInverseGammaRegression:
    """Bayesian linear regression with the noise learned: a Normal-inverse-Gamma prior.

    Model (Murphy 2007, "Conjugate Bayesian analysis of the Gaussian distribution", sec. 7;
    the ``LinFullPost`` agent of Riquelme et al. 2018), for a design ``X`` ``[N, D]``::

        sigma^2 ~ InvGamma(a_0, b_0),   w | sigma^2 ~ N(mu_0, sigma^2 Lambda_0^-1),
        y_n | w, sigma^2 ~ N(x_n^T w, sigma^2)

    with ``mu_0 = 0`` and ``Lambda_0 = lambda_prior I``. Posterior (conjugate)::

        Lambda_n = Lambda_0 + X^T X,        mu_n = Lambda_n^-1 (Lambda_0 mu_0 + X^T y),
        a_n = a_0 + N / 2,
        b_n = b_0 + (y^T y + mu_0^T Lambda_0 mu_0 - mu_n^T Lambda_n mu_n) / 2

    Predictive at ``x``: a Student-t with ``2 a_n`` degrees of freedom, location ``x^T mu_n`` and
    scale ``sqrt(b_n / a_n (1 + x^T Lambda_n^-1 x))``. Thompson sampling draws
    ``sigma^2 ~ InvGamma(a_n, b_n)`` then ``w ~ N(mu_n, sigma^2 Lambda_n^-1)`` (:meth:`sample`).

    Parameters
    ----------
    basis:
        ``None`` (default): ``x`` ``[N, D]`` is the design itself; else a callable mapping ``x``
        to ``Phi`` ``[N, D]`` (e.g. :class:`PolynomialBasis`).
    lambda_prior:
        Prior precision scale ``Lambda_0 = lambda_prior I`` (> 0; the showdown: 0.25).
    a0, b0:
        Shape and scale of the inverse-Gamma prior on the noise variance (> 0; the showdown: 6, 6).

    Attributes set by :meth:`fit`: ``mu_`` ``[D]``, ``precision_`` (``Lambda_n``) ``[D, D]``,
    ``covariance_`` (``Lambda_n^-1``) ``[D, D]``, ``a_`` and ``b_`` (floats), ``n_samples_``.
    All in float64. With no data (``fit`` of zero rows) the posterior is the prior.

    Example::

        >>> import torch
        >>> x = torch.randn(200, 2, dtype=torch.float64)
        >>> w = torch.tensor([1.0, -2.0], dtype=torch.float64)
        >>> y = x @ w + 0.1 * torch.randn(200, dtype=torch.float64)
        >>> nig = NormalInverseGammaRegression(lambda_prior=1.0, a0=1.0, b0=1.0).fit(x, y)
        >>> [round(v, 1) for v in nig.mu_.tolist()]
        [1.0, -2.0]
    """

    def __init__(self, basis=None, lambda_prior: float = 0.25, a0: float = 6.0, b0: float = 6.0):
        if basis is not None and not callable(basis):
            raise TypeError(f"basis must be None or callable (x -> Phi), got {type(basis).__name__}")
        self.basis = basis
        self.lambda_prior = check_positive(lambda_prior, "lambda_prior")
        self.a0 = check_positive(a0, "a0")
        self.b0 = check_positive(b0, "b0")

    def _design(self, x, dimension: int | None = None) -> torch.Tensor:
        if self.basis is not None:
            phi = as_tensor(self.basis(as_inputs(x)), "basis(x)", dtype=torch.float64)
        else:
            phi = as_tensor(x, "x", dtype=torch.float64)
        if phi.dim() != 2:
            raise ValueError(f"the design must have shape [N, D] (x itself when basis=None), got shape "
                             f"{tuple(phi.shape)}; for one example pass x[None]")
        if dimension is not None and phi.shape[1] != dimension:
            raise ValueError(f"x has {phi.shape[1]} features but the model was fitted with {dimension}")
        return check_finite(phi, "x")

    def fit(self, x, y) -> NormalInverseGammaRegression:
        """The posterior ``(mu_n, Lambda_n, a_n, b_n)`` from a design ``x`` ``[N, D]`` (or inputs of
        the basis) and targets ``y`` ``[N]``; ``N = 0`` rows give the prior. Returns self."""
        phi, y = self._checked(x, y, None)
        d = phi.shape[1]
        self._xtx = torch.zeros(d, d, dtype=torch.float64)
        self._xty = torch.zeros(d, dtype=torch.float64)
        self._yty, self.n_samples_ = 0.0, 0
        return self._update(phi, y)

    def partial_fit(self, x, y) -> NormalInverseGammaRegression:
        """Add the rows ``x`` ``[M, D]``, ``y`` ``[M]`` to the data of the last :meth:`fit` (or
        ``partial_fit``) and update the posterior: it depends on the data only through
        ``X^T X``, ``X^T y``, ``y^T y`` and ``N``, so this equals a :meth:`fit` on all rows. Returns self."""
        if not hasattr(self, "_xtx"):
            return self.fit(x, y)
        phi, y = self._checked(x, y, self._xtx.shape[0])
        return self._update(phi, y)

    def _checked(self, x, y, dimension):
        phi = self._design(x, dimension)
        y = as_tensor(y, "y", dtype=torch.float64).reshape(-1)
        if y.shape[0] != phi.shape[0]:
            raise ValueError(f"x has {phi.shape[0]} rows but y has {y.shape[0]} targets")
        return phi, check_finite(y, "y")

    def _update(self, phi: torch.Tensor, y: torch.Tensor) -> NormalInverseGammaRegression:
        self._xtx = self._xtx + phi.T @ phi
        self._xty = self._xty + phi.T @ y
        self._yty += float(y @ y)
        self.n_samples_ += phi.shape[0]
        d = self._xtx.shape[0]
        precision = self.lambda_prior * torch.eye(d, dtype=torch.float64) + self._xtx
        chol = torch.linalg.cholesky(precision)
        mu = torch.cholesky_solve(self._xty[:, None], chol)[:, 0]
        self.precision_, self.covariance_, self.mu_ = precision, torch.cholesky_inverse(chol), mu
        self.a_ = self.a0 + 0.5 * self.n_samples_
        # mu_0 = 0: b_n = b_0 + (y^T y - mu_n^T Lambda_n mu_n) / 2, never below b_0 in exact arithmetic
        self.b_ = self.b0 + 0.5 * max(self._yty - float(mu @ precision @ mu), 0.0)
        self._chol_covariance = torch.linalg.cholesky(self.covariance_)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "mu_"):
            raise RuntimeError("this model is not fitted yet; call fit(x, y) first (fit(x[:0], y[:0]) "
                               "gives the prior)")

    def sample(self, num_samples: int = 1, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Joint posterior draws ``(w [S, D], sigma2 [S])``: ``sigma2 ~ InvGamma(a_n, b_n)`` (as
        ``b_n / Gamma(a_n, 1)``), then ``w ~ N(mu_n, sigma2 Lambda_n^-1)``. ``generator``: a CPU
        ``torch.Generator`` for reproducible draws."""
        self._check_fitted()
        num_samples = check_int(num_samples, "num_samples", minimum=1)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        gamma = torch._standard_gamma(torch.full((num_samples,), self.a_, dtype=torch.float64), generator)
        sigma2 = self.b_ / gamma
        z = torch.randn(num_samples, self.mu_.numel(), dtype=torch.float64, generator=generator)
        w = self.mu_ + sigma2.sqrt()[:, None] * (z @ self._chol_covariance.T)
        return w, sigma2

    def predictive(self, x) -> torch.distributions.StudentT:
        """The posterior predictive ``p(y | x, D)`` at ``x`` ``[M, D]``: a Student-t of ``2 a_n``
        degrees of freedom, location ``x^T mu_n``, scale ``sqrt(b_n / a_n (1 + x^T Lambda_n^-1 x))``,
        batch shape ``[M]``."""
        self._check_fitted()
        phi = self._design(x, self.mu_.numel())
        loc = phi @ self.mu_
        scale = (self.b_ / self.a_ * (1.0 + ((phi @ self.covariance_) * phi).sum(-1))).sqrt()
        return torch.distributions.StudentT(torch.tensor(2.0 * self.a_, dtype=torch.float64), loc, scale)

    def predict(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        """Predictive mean ``x^T mu_n`` and variance ``b_n / (a_n - 1) (1 + x^T Lambda_n^-1 x)``
        (the Student-t's, finite for ``a_n > 1``), each ``[M]``."""
        t = self.predictive(x)
        if self.a_ <= 1:
            raise ValueError(f"the predictive variance is infinite for a_n = {self.a_:g} <= 1; use a0 > 1")
        return t.loc, t.variance

    def __repr__(self) -> str:
        return (f"NormalInverseGammaRegression(basis={self.basis!r}, lambda_prior={self.lambda_prior:g}, "
                f"a0={self.a0:g}, b0={self.b0:g})")

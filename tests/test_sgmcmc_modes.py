"""The samplers on plain potentials (closed-form stationary laws) and the ``sgmcmc-modes`` study."""

from __future__ import annotations

import json

import pytest
import torch

from bayesdl.experiments.cli import main
from bayesdl.experiments.studies.sgmcmc_modes import mixture_gradient, mixture_means, modes_visited
from bayesdl.inference.sgmcmc import sample_potential


def test_mixture_gradient_is_autograds_of_the_log_mixture():
    theta = torch.randn(7, 2, dtype=torch.float64) * 3
    means = mixture_means()
    sigma = 0.3
    t = theta.clone().requires_grad_(True)
    log_p = torch.logsumexp(-((t[:, None] - means) ** 2).sum(-1) / (2 * sigma**2), dim=1)
    (expected,) = torch.autograd.grad(-log_p.sum(), t)
    torch.testing.assert_close(mixture_gradient(sigma)(theta), expected)
    assert modes_visited(means[[0, 3, 3]] + 0.01, sigma) == [0, 3]


def test_sgld_on_a_gaussian_has_the_closed_form_bias_of_its_euler_step():
    """For U = x^2 / (2 s^2) SGLD (exact gradients) is the AR(1) chain x' = (1 - eta / s^2) x +
    sqrt(2 eta) xi, whose stationary variance is s^2 / (1 - eta / (2 s^2)): at eta = s^2 / 2,
    4/3 of the target's -- the step's bias, which no accept step removes."""
    torch.manual_seed(0)
    s2, eta, chains = 2.0, 1.0, 4000
    draws, evaluations = sample_potential(lambda x: x / s2, torch.zeros(chains, 1), steps=400, lr=eta,
                                          burn_in=100, thin=50)
    assert draws.shape == (chains, 6, 1) and evaluations == 400
    variance = draws.var()
    expected = s2 / (1 - eta / (2 * s2))
    error = expected * (2 / draws.numel()) ** 0.5  # sd of a sample variance of ~independent normals
    assert abs(variance - expected) < 4 * error, (variance, expected)
    assert abs(variance - s2) > 10 * error  # the bias is there, and large
    # SGHMC at a small step samples the target itself
    hmc, _ = sample_potential(lambda x: x / s2, torch.zeros(chains, 1), steps=600, lr=0.01, sampler="sghmc",
                              friction=0.2, burn_in=300, thin=100)
    assert abs(hmc.var() - s2) < 0.05 * s2


def test_sample_potential_refuses_bad_input():
    with pytest.raises(ValueError, match=r"initial must be a float tensor \[chains, D\]"):
        sample_potential(lambda x: x, torch.zeros(3), steps=10, lr=0.1)
    with pytest.raises(ValueError, match="lr must be > 0"):
        sample_potential(lambda x: x, torch.zeros(3, 1), steps=10, lr=0.0)
    with pytest.raises(ValueError, match="burn_in=10 steps is not below"):
        sample_potential(lambda x: x, torch.zeros(3, 1), steps=10, lr=0.1, burn_in=10)


@pytest.mark.slow
def test_modes_quick_run_and_its_resumed_seeds(tmp_path):
    out, cache = tmp_path / "modes", tmp_path / "cache"
    args = ["run", "sgmcmc-modes", "--quick", "--out", str(out), "--cache-dir", str(cache), "--no-progress",
            "--set", "seeds=2", "--set", "steps=2000"]
    assert main(args) == 0
    r = json.loads((out / "metrics.json").read_text())["results"]
    for sampler in ("sgld", "csgld"):
        assert r[sampler]["gradient_evaluations"] == 2000 and len(r[sampler]["modes_per_seed"]) == 2
    assert r["csgld"]["mean_modes"] > r["sgld"]["mean_modes"]
    assert (out / "modes.png").stat().st_size > 0 and "Cyclical SGLD visits" in (out / "report.md").read_text()
    pieces = sorted((cache / "sgmcmc_modes").glob("*.json"))
    assert len(pieces) == 2
    pieces[0].write_text(pieces[0].read_text().replace('"modes"', '"modes" ', 1).replace("[", "[99, ", 1))
    assert main(args) == 0  # the edited piece fails its digest and is computed again; the result stands
    assert json.loads((out / "metrics.json").read_text())["results"] == r

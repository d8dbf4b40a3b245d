"""Central intervals of a regression predictive: RegressionPrediction.quantile/interval, the
interval whose coverage interval_coverage reports, and plot_predictive_interval."""

import numpy as np
import pytest
import torch
from scipy import stats

from bayesdl.evaluation import (
    RegressionPrediction,
    interval_coverage,
    mixture_quantiles,
    plot_predictive_interval,
    regression_metrics,
)


def _mixture(n=400, samples=7, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    mean = (torch.randn(samples, n, generator=g) * 1.5 + torch.linspace(-2, 2, n)).to(dtype)
    noise = (0.2 + torch.rand(samples, n, generator=g)).to(dtype)
    y = (torch.randn(n, generator=g) * 2 + torch.linspace(-2, 2, n)).to(dtype)
    return RegressionPrediction(mean, noise), y


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_interval_covers_what_interval_coverage_reports(dtype):
    prediction, y = _mixture(dtype=dtype)
    levels = (0.1, 0.5, 0.9, 0.95, 0.99)
    coverage = interval_coverage(prediction, y, levels)
    for level in levels:
        lower, upper = prediction.interval(level)
        assert lower.shape == upper.shape == y.shape and lower.dtype == torch.float64
        assert bool((lower < upper).all())
        inside = ((lower <= y.double()) & (y.double() <= upper)).double().mean()
        assert float(inside) == coverage[level]
        # the bounds are the quantiles: F(lower) = (1 - level) / 2, F(upper) = (1 + level) / 2
        assert torch.allclose(prediction.cdf(lower.to(dtype)).double(), torch.full_like(lower, (1 - level) / 2),
                              atol=1e-5)
        assert torch.allclose(prediction.cdf(upper.to(dtype)).double(), torch.full_like(upper, (1 + level) / 2),
                              atol=1e-5)


def test_coverage_is_unchanged_bit_for_bit():
    prediction, y = _mixture()
    pit = torch.special.ndtr((y - prediction.mean) / prediction.noise).mean(0)  # the former definition
    assert torch.equal(prediction.cdf(y), pit)
    expected = {level: float(((pit - 0.5).abs() <= level / 2).double().mean()) for level in (0.5, 0.9, 0.95)}
    assert interval_coverage(prediction, y) == expected
    metrics = regression_metrics(prediction, y)
    assert [metrics[f"coverage_{k}"] for k in (50, 90, 95)] == list(expected.values())


def test_one_sample_is_the_gaussian_interval_of_scipy():
    mean, noise = torch.tensor([[0.0, 1.5, -3.0]]), torch.tensor([[1.0, 0.3, 2.5]])
    prediction = RegressionPrediction(mean, noise)
    for level in (0.5, 0.95):
        lower, upper = prediction.interval(level)
        low, high = stats.norm.interval(level, loc=mean[0].double().numpy(), scale=noise[0].double().numpy())
        np.testing.assert_allclose(lower.numpy(), low, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(upper.numpy(), high, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(prediction.quantile(0.9).numpy(),
                               stats.norm.ppf(0.9, loc=mean[0].numpy(), scale=noise[0].numpy()), rtol=1e-6)


def test_a_bimodal_mixture_is_not_mean_plus_minus_two_sd():
    prediction = RegressionPrediction(torch.tensor([[-3.0], [3.0]]), torch.tensor([[0.5], [0.5]]))
    _, upper = prediction.interval(0.5)
    sd = float(prediction.variance.sqrt())
    assert float(upper) > 0.6745 * sd * 1.2  # far wider than the Gaussian 50% interval of the moments
    assert float(prediction.cdf(upper.float())) == pytest.approx(0.75, abs=1e-6)


def test_quantile_agrees_with_conformals_mixture_quantiles():
    prediction, _ = _mixture(n=50)
    levels = [0.025, 0.5, 0.975]
    assert torch.equal(prediction.quantile(levels), mixture_quantiles(prediction, levels))


def test_quantile_shapes_and_bad_levels():
    prediction, _ = _mixture(n=5)
    assert prediction.quantile(0.5).shape == (5,)
    assert prediction.quantile([0.1, 0.9]).shape == (2, 5)
    scalar = RegressionPrediction(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 1.0]))  # [S]: one target
    assert scalar.interval(0.9)[0].shape == ()
    for bad in (0.0, 1.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"\(0, 1\)"):
            prediction.interval(bad)
    with pytest.raises(TypeError):
        prediction.interval("0.95")
    with pytest.raises(ValueError, match="empty"):
        prediction.quantile([])


def test_the_plot_runs_and_labels_its_axes():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(30, 1, generator=g) * 4
    prediction = RegressionPrediction(torch.sin(x[:, 0]) + 0.1 * torch.randn(5, 30, generator=g),
                                      torch.full((5, 30), 0.2))
    fig = plot_predictive_interval(x, prediction, y=torch.sin(x[:, 0]), levels=(0.5, 0.95), ylabel="target")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "x" and ax.get_ylabel() == "target"
    labels = ax.get_legend_handles_labels()[1]
    assert labels == ["95% interval", "50% interval", "predictive mean", "data"]
    mean_line = ax.get_lines()[0]
    assert np.all(np.diff(mean_line.get_xdata()) >= 0)  # sorted by x
    fig.canvas.draw()  # renders (Agg)
    with pytest.raises(ValueError, match="one input"):
        plot_predictive_interval(torch.rand(30, 2), prediction)
    with pytest.raises(TypeError, match="RegressionPrediction"):
        plot_predictive_interval(x, torch.zeros(5, 30))

"""The 2-D map of a classifier's predictive: grid_inputs and plot_probability_map."""

import numpy as np
import pytest
import torch

from bayesdl.evaluation import grid_inputs, mutual_information, plot_probability_map
from bayesdl.inference import approximate
from bayesdl.models import BNN, MLP


def test_the_grid_covers_the_extent_row_by_row():
    grid = grid_inputs((-1.0, 3.0, 0.0, 2.0), resolution=5)
    assert grid.shape == (25, 2)
    assert grid[:5, 1].eq(0).all() and torch.allclose(grid[:5, 0], torch.linspace(-1, 3, 5))
    assert grid[::5, 0].eq(-1).all() and torch.allclose(grid[::5, 1], torch.linspace(0, 2, 5))


@pytest.mark.parametrize("quantity", ["probability", "entropy", "mutual_information"])
def test_the_map_draws_the_quantity_of_a_posteriors_prediction(quantity):
    torch.manual_seed(0)
    x = torch.randn(40, 2)
    y = (x[:, 0] > 0).long()
    posterior = approximate("dropout", BNN(MLP(2, 16, 2, dropout=0.3)), (x, y), epochs=5, batch_size=40,
                            progress=False)
    grid = grid_inputs(3.0, resolution=12)
    prediction = posterior.predict(grid, num_samples=8)
    fig = plot_probability_map(grid, prediction, x, y, quantity=quantity, title=quantity)
    ax = fig.axes[0]
    assert ax.get_title() == quantity and len(fig.axes) == 2  # the map and its colour bar
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["class 0", "class 1"]
    levels = ax.collections[0].levels  # the ContourSet of contourf
    if quantity == "probability":
        assert np.allclose(levels[[0, -1]], [0, 1])  # a fixed 0-1 scale, comparable across panels
    if quantity == "mutual_information":
        assert np.isclose(levels[-1], float(mutual_information(prediction.probs).max()))


def test_bad_inputs_are_refused_with_what_to_pass():
    grid = grid_inputs(1.0, resolution=4)
    probs = torch.full((16, 2), 0.5)
    with pytest.raises(ValueError, match="quantity must be one of"):
        plot_probability_map(grid, probs, quantity="variance")
    with pytest.raises(ValueError, match=r"grid must be the \[R\^2, 2\] inputs"):
        plot_probability_map(grid[:15], probs[:15])
    with pytest.raises(ValueError, match="N = len\\(grid\\) = 16"):
        plot_probability_map(grid, probs[:10])
    with pytest.raises(ValueError, match="needs posterior samples"):
        plot_probability_map(grid, probs, quantity="mutual_information")
    with pytest.raises(ValueError, match="class_index must name one of the 2 classes"):
        plot_probability_map(grid, probs, class_index=2)
    with pytest.raises(ValueError, match="resolution must be an integer >= 2"):
        grid_inputs(1.0, resolution=1)
    with pytest.raises(ValueError, match="min below its max"):
        grid_inputs((1.0, 0.0, 0.0, 1.0))

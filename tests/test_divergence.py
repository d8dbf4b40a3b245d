"""When training diverges: the error keeps the last state whose loss and gradients were finite,
and bad data found during training names its epoch and batch."""

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from toy_data import blobs

from bayesdl.inference import DropoutGuide, MAPGuide, MeanFieldGuide, NonFiniteLossError, fit
from bayesdl.models import BNN, MLP


def _model():
    torch.manual_seed(0)
    return BNN(MLP(2, 16, 3, dropout=0.2), prior_scale=1.0)


@pytest.mark.parametrize("guide_cls, lr", [(MAPGuide, 1e30), (MAPGuide, 1e18), (MeanFieldGuide, 1e30),
                                           (DropoutGuide, 1e30), (DropoutGuide, 1e18)])
def test_a_diverged_fit_keeps_the_last_finite_state(guide_cls, lr):
    x, y = blobs(64)
    model = _model()
    with pytest.raises(NonFiniteLossError, match="NaN/Inf at epoch") as info:
        fit(model, guide_cls(model), (x, y), epochs=20, lr=lr, batch_size=16, seed=0, progress=False)
    posterior = info.value.posterior
    for name, value in posterior.point_estimate().items():
        assert torch.isfinite(value).all(), name
    probs = posterior.predict(x, num_samples=4).probs
    assert torch.isfinite(probs).all()
    # the loss at the kept parameters is finite: the state really is that of a finite step
    assert all(torch.isfinite(torch.tensor(posterior.history.elbo)))


def test_the_kept_state_is_the_one_before_the_step_that_broke_it():
    """With the whole data in one batch, the state kept is the one whose (finite) loss was last
    recorded: the MAP network's log-likelihood there is that number."""
    x, y = blobs(16)
    model = _model()
    with pytest.raises(NonFiniteLossError) as info:
        fit(model, MAPGuide(model), (x, y), epochs=50, lr=1e18, batch_size=16, seed=0, progress=False)
    posterior = info.value.posterior
    bnn = posterior.bnn
    log_lik = float(bnn.likelihood.log_prob(bnn.network(x, posterior.point_estimate()), y).sum())
    assert log_lik == pytest.approx(posterior.history.log_likelihood[-1], rel=1e-5)


def test_non_finite_inputs_mid_training_name_the_epoch_and_batch():
    x, y = blobs(64)
    x = x.clone()
    x[40, 0] = float("inf")  # batch 3 of 16
    model = _model()
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=False)
    with pytest.raises(ValueError, match=r"epoch 1, batch 3: x contains 1 non-finite"):
        fit(model, MAPGuide(model), loader, epochs=2, progress=False)


def test_bad_labels_mid_training_name_the_epoch_and_batch():
    x, y = blobs(64)
    y = y.clone()
    y[20] = 3  # batch 2 of 16
    model = _model()
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=False)
    with pytest.raises(ValueError, match=r"epoch 1, batch 2: y \(labels\) must lie in \[0, 3\)"):
        fit(model, MeanFieldGuide(model), loader, epochs=1, progress=False)

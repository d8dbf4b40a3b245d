"""ConfidNet's training loop on a synthetic frozen "classifier" whose true-class probability is
a known function of its features."""

import pytest
import torch
from torch.utils.data import TensorDataset

from bayesdl.evaluation import aupr_error
from bayesdl.inference import train_confidnet

QUIET = {"progress": False}


def _problem(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return x, torch.zeros(n, dtype=torch.long)  # the true class is 0; TCP = sigmoid(3 x_0)


def _classifier(calls):
    def stochastic_passes(x, count):
        calls.append(count * len(x))
        features = x + 0.1 * torch.randn(count, *x.shape)  # a "dropout" perturbation of the features
        logits = torch.stack([3 * features[..., 0], torch.zeros(count, len(x))], -1)
        return logits, features
    return stochastic_passes


@pytest.mark.slow
def test_confidnet_learns_the_true_class_probability_from_a_bank_drawn_once():
    calls = []
    x, y = _problem(1500, 0)
    x_val, _ = _problem(400, 1)
    val_correct = x_val[:, 0] > 0
    head, history = train_confidnet(_classifier(calls), TensorDataset(x, y), x_val, val_correct, **QUIET,
                                    epochs=15, lr=1e-3, passes=3, seed=0)
    assert sum(calls) == 3 * 1500  # three passes over the training set, whatever the epochs
    assert len(history["val_aupr_error"]) == len(history["train_mse"]) == 15
    assert history["val_aupr_error"][history["best_epoch"] - 1] == max(history["val_aupr_error"])
    with torch.no_grad():
        confidence = head(x_val)
    assert aupr_error(confidence, val_correct) > 0.95  # errors ranked first; chance is ~0.5
    assert history["train_mse"][-1] < history["train_mse"][0]


def test_confidnet_rejects_a_bank_of_no_passes():
    x, y = _problem(10, 0)
    with pytest.raises(ValueError, match="passes"):
        train_confidnet(_classifier([]), TensorDataset(x, y), x, x[:, 0] > 0, **QUIET, epochs=1, passes=0)


def test_an_interrupted_confidnet_resumes_to_the_head_of_an_uninterrupted_run(tmp_path):
    x, y = _problem(300, 0)
    x_val, _ = _problem(100, 1)
    val_correct = x_val[:, 0] > 0
    data = TensorDataset(x, y)
    whole, whole_history = train_confidnet(_classifier([]), data, x_val, val_correct, **QUIET, epochs=6, lr=1e-3,
                                           passes=2, seed=0)
    path = tmp_path / "confidnet.pt"
    # killed after epoch 4: its last checkpoint is that of epoch 4 (saved every 2 epochs)
    train_confidnet(_classifier([]), data, x_val, val_correct, **QUIET, epochs=4, lr=1e-3, passes=2, seed=0,
                    checkpoint=path, save_every=2)
    calls = []
    resumed, history = train_confidnet(_classifier(calls), data, x_val, val_correct, **QUIET, epochs=6, lr=1e-3,
                                       passes=2, seed=0, checkpoint=path, save_every=2)
    assert sum(calls) == 2 * 300  # the passes are drawn again (the same ones: same seed)
    assert history["val_aupr_error"] == whole_history["val_aupr_error"]
    assert history["train_mse"] == pytest.approx(whole_history["train_mse"], rel=1e-6)
    assert history["best_epoch"] == whole_history["best_epoch"]
    assert torch.equal(resumed(x_val), whole(x_val))
    calls.clear()
    again, _ = train_confidnet(_classifier(calls), data, x_val, val_correct, **QUIET, epochs=6, lr=1e-3, passes=2,
                               seed=0, checkpoint=path)
    assert calls == []  # finished: loaded, nothing drawn or trained
    assert torch.equal(again(x_val), whole(x_val))


def test_fit_confidnet_scores_a_posteriors_inputs_from_its_features():
    """The user's entry point: a MC-dropout posterior and its data in, a confidence per input out."""
    from bayesdl.inference import approximate, fit_confidnet
    from bayesdl.models import BNN, MLP

    torch.manual_seed(0)
    x = torch.randn(300, 2)
    y = (x[:, 0] + 0.3 * torch.randn(300) > 0).long()  # noisy labels: errors near the boundary
    posterior = approximate("dropout", BNN(MLP(2, 32, 2, dropout=0.3)), (x, y), epochs=20, batch_size=100,
                            lr=0.01, progress=False)
    confidnet = fit_confidnet(posterior, TensorDataset(x[:200], y[:200]), (x[200:], y[200:]), epochs=30,
                              lr=1e-3, passes=3, hidden=(32,), progress=False)
    confidence = confidnet.confidence(x)
    assert confidence.shape == (300,) and ((confidence > 0) & (confidence < 1)).all()
    assert len(confidnet.history["val_aupr_error"]) == 30 and 1 <= confidnet.history["best_epoch"] <= 30
    far, near = confidence[x[:, 0].abs() > 1.5], confidence[x[:, 0].abs() < 0.1]
    assert far.mean() > near.mean()  # more confident far from the decision boundary


def test_fit_confidnet_refuses_what_it_cannot_use():
    from bayesdl.inference import approximate, fit_confidnet
    from bayesdl.models import BNN, MLP

    x = torch.randn(20, 2)
    regression = approximate("dropout", BNN(MLP(2, 8, 1, dropout=0.2), likelihood="gaussian"), (x, x[:, 0]),
                             epochs=1, progress=False)
    with pytest.raises(ValueError, match="likelihood must be categorical"):
        fit_confidnet(regression, (x, x[:, 0]), (x, x[:, 0]), epochs=1)
    classifier = approximate("dropout", BNN(MLP(2, 8, 2, dropout=0.2)), (x, (x[:, 0] > 0).long()), epochs=1,
                             progress=False)
    with pytest.raises(TypeError, match=r"train must be a TensorDataset\(x, y\)"):
        fit_confidnet(classifier, x, (x, (x[:, 0] > 0).long()), epochs=1)


@pytest.mark.parametrize("net", ["mlp", "lenet-all"])
def test_each_passes_features_are_the_ones_its_outputs_came_from(net):
    """The TCP target and the features of a ConfidNet example come from the same stochastic pass,
    whether the passes run one by one or share a deterministic prefix (a repeated batch)."""
    from bayesdl.inference import approximate
    from bayesdl.inference.confidnet import _stochastic_passes
    from bayesdl.models import BNN, MLP, LeNet

    torch.manual_seed(0)
    model = BNN(MLP(2, 16, 3, dropout=0.5) if net == "mlp" else LeNet(dropout="all"))
    x = torch.randn(6, 2) if net == "mlp" else torch.randn(6, 1, 28, 28)
    posterior = approximate("dropout", model, (x, torch.zeros(6, dtype=torch.long)), epochs=0, progress=False)
    outputs, features = _stochastic_passes(posterior)(x, 4)
    assert outputs.shape[:2] == features.shape[:2] == (4, 6)
    name, _ = model.last_linear()
    weights = posterior.point_estimate()
    again = features @ weights[f"{name}.weight"].T + weights[f"{name}.bias"]
    assert torch.allclose(again, outputs, atol=1e-5)
    assert outputs.std(0).max() > 0  # four different mask draws

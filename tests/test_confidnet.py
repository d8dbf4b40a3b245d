"""ConfidNet's training loop on a synthetic frozen "classifier" whose true-class probability is
a known function of its features."""

from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import TensorDataset

from bayesdl.evaluation import aupr_error
from bayesdl.experiments.training import train_confidnet

CTX = SimpleNamespace(device=torch.device("cpu"), progress=False)


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
    head, history = train_confidnet(_classifier(calls), TensorDataset(x, y), x_val, val_correct, CTX,
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
        train_confidnet(_classifier([]), TensorDataset(x, y), x, x[:, 0] > 0, CTX, epochs=1, passes=0)


def test_an_interrupted_confidnet_resumes_to_the_head_of_an_uninterrupted_run(tmp_path):
    x, y = _problem(300, 0)
    x_val, _ = _problem(100, 1)
    val_correct = x_val[:, 0] > 0
    data = TensorDataset(x, y)
    whole, whole_history = train_confidnet(_classifier([]), data, x_val, val_correct, CTX, epochs=6, lr=1e-3,
                                           passes=2, seed=0)
    path = tmp_path / "confidnet.pt"
    # killed after epoch 4: its last checkpoint is that of epoch 4 (saved every 2 epochs)
    train_confidnet(_classifier([]), data, x_val, val_correct, CTX, epochs=4, lr=1e-3, passes=2, seed=0,
                    checkpoint=path, save_every=2)
    calls = []
    resumed, history = train_confidnet(_classifier(calls), data, x_val, val_correct, CTX, epochs=6, lr=1e-3,
                                       passes=2, seed=0, checkpoint=path, save_every=2)
    assert sum(calls) == 2 * 300  # the passes are drawn again (the same ones: same seed)
    assert history["val_aupr_error"] == whole_history["val_aupr_error"]
    assert history["train_mse"] == pytest.approx(whole_history["train_mse"], rel=1e-6)
    assert history["best_epoch"] == whole_history["best_epoch"]
    assert torch.equal(resumed(x_val), whole(x_val))
    calls.clear()
    again, _ = train_confidnet(_classifier(calls), data, x_val, val_correct, CTX, epochs=6, lr=1e-3, passes=2,
                               seed=0, checkpoint=path)
    assert calls == []  # finished: loaded, nothing drawn or trained
    assert torch.equal(again(x_val), whole(x_val))

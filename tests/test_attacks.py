"""Adversarial attacks on posterior predictives (bayesdl.inference.attacks) and the differentiable
predictive they take their gradient through (Posterior.predictive_log_probs).

Checked against independent computations: the Adversarial Robustness Toolbox's FGSM and PGD (and
torchattacks', where installed) on the same MAP network
(the same images to float tolerance), a hand-written mixture for an ensemble, finite differences
for the probit Laplace predictive, Monte Carlo for MC dropout's shared-prefix passes."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from bayesdl.inference import (
    METHODS,
    DropoutGuide,
    Ensemble,
    MAPGuide,
    MeanFieldGuide,
    Posterior,
    approximate,
    attacks,
    fgsm,
    pgd,
    random_perturbation,
)
from bayesdl.models import BNN
from bayesdl.models.networks import MLP, Dropout, LeNet

ROOT = Path(__file__).resolve().parents[1]
MEAN, STD = 0.1307, 0.3081


def _lenet(seed: int = 0) -> BNN:
    torch.manual_seed(seed)
    return BNN(LeNet(dropout="all"), prior_scale=1.0)


@pytest.fixture(scope="module")
def images():
    generator = torch.Generator().manual_seed(1)
    return torch.rand(6, 1, 28, 28, generator=generator), torch.randint(0, 10, (6,), generator=generator)


@pytest.fixture(scope="module")
def map_posterior():
    model = _lenet()
    return Posterior(model, MAPGuide(model))


class _Pixels(nn.Module):
    """The MAP network on pixels, normalised inside: what torchattacks attacks."""

    def __init__(self, posterior):
        super().__init__()
        self.posterior = posterior

    def forward(self, pixels):
        return self.posterior.point_outputs((pixels - MEAN) / STD)


def test_fgsm_on_the_map_gives_torchattacks_images(map_posterior, images):
    torchattacks = pytest.importorskip("torchattacks")
    x, y = images
    expected = torchattacks.FGSM(_Pixels(map_posterior), eps=0.1)(x, y)
    ours = fgsm(map_posterior, x, y, 0.1, normalization=(MEAN, STD))
    assert torch.allclose(ours, expected, atol=1e-6)
    assert float((ours - x).abs().max()) == pytest.approx(0.1, abs=1e-6) and 0 <= ours.min() <= ours.max() <= 1


@pytest.mark.parametrize("random_start", [False, True])
def test_pgd_on_the_map_gives_torchattacks_images(map_posterior, images, random_start):
    torchattacks = pytest.importorskip("torchattacks")
    x, y = images
    attack = torchattacks.PGD(_Pixels(map_posterior), eps=0.1, alpha=0.02, steps=4, random_start=random_start)
    torch.manual_seed(7)  # the random start: both draw it from the global generator, all of x at once
    expected = attack(x, y)
    torch.manual_seed(7)
    ours = pgd(map_posterior, x, y, 0.1, steps=4, step_size=0.02, random_start=random_start,
               normalization=(MEAN, STD), batch_size=4)  # batches do not change the images
    assert torch.allclose(ours, expected, atol=1e-6)


def _art_classifier(posterior):
    art = pytest.importorskip("art.estimators.classification")
    return art.PyTorchClassifier(_Pixels(posterior), loss=nn.CrossEntropyLoss(), input_shape=(1, 28, 28),
                                 nb_classes=10, clip_values=(0.0, 1.0))


def test_fgsm_on_the_map_gives_the_adversarial_robustness_toolbox_images(map_posterior, images):
    """The Adversarial Robustness Toolbox (in the test extra; torchattacks pins an old requests
    that conflicts with the docs tools, so its checks above run only where it is installed)."""
    evasion = pytest.importorskip("art.attacks.evasion")
    x, y = images
    attack = evasion.FastGradientMethod(_art_classifier(map_posterior), eps=0.1)
    expected = torch.from_numpy(attack.generate(x.numpy(), y.numpy()))
    ours = fgsm(map_posterior, x, y, 0.1, normalization=(MEAN, STD))
    assert torch.allclose(ours, expected, atol=1e-6)


def test_pgd_without_random_start_gives_the_adversarial_robustness_toolbox_images(map_posterior, images):
    evasion = pytest.importorskip("art.attacks.evasion")
    x, y = images
    attack = evasion.ProjectedGradientDescent(_art_classifier(map_posterior), norm="inf", eps=0.1, eps_step=0.02,
                                              max_iter=4, num_random_init=0, batch_size=6, verbose=False)
    expected = torch.from_numpy(attack.generate(x.numpy(), y.numpy()))
    ours = pgd(map_posterior, x, y, 0.1, steps=4, step_size=0.02, random_start=False, normalization=(MEAN, STD))
    assert torch.allclose(ours, expected, atol=1e-6)


def _nll(posterior, pixels, y, samples=1):
    with torch.no_grad():
        log_probs = posterior.predictive_log_probs((pixels - MEAN) / STD, samples)
    return float(-log_probs.gather(1, y[:, None]).sum())


def test_pgd_stays_in_the_ball_and_the_range_and_raises_the_loss(map_posterior, images):
    x, y = images
    adversarial = pgd(map_posterior, x, y, 0.05, steps=5, normalization=(MEAN, STD),
                      generator=torch.Generator().manual_seed(0))
    assert float((adversarial - x).abs().max()) <= 0.05 + 1e-6
    assert 0 <= float(adversarial.min()) and float(adversarial.max()) <= 1
    assert _nll(map_posterior, adversarial, y) > _nll(map_posterior, x, y)
    assert torch.equal(pgd(map_posterior, x, y, 0.0), x) and torch.equal(fgsm(map_posterior, x, y, 0), x)


def test_the_ensemble_gradient_is_that_of_the_mixture(images):
    members = [Posterior(m, MAPGuide(m)) for m in (_lenet(0), _lenet(1))]
    ensemble = Posterior(members[0].model, Ensemble(members))
    x, y = images
    ours = attacks.attack_loss_gradient(ensemble, x, y, num_samples=2, normalization=(MEAN, STD))
    pixels = x.clone().requires_grad_(True)
    probs = torch.stack([torch.softmax(m.point_outputs((pixels - MEAN) / STD), -1) for m in members]).mean(0)
    (expected,) = torch.autograd.grad(-probs.gather(1, y[:, None]).log().sum(), pixels)
    assert torch.allclose(ours, expected, rtol=1e-4, atol=1e-7)


def test_the_probit_laplace_gradient_matches_finite_differences():
    torch.manual_seed(0)
    x, y = torch.rand(5, 4, dtype=torch.float64), torch.randint(0, 3, (5,))
    model = BNN(MLP(4, 8, 3), prior_scale=1.0).double()
    base = Posterior(model, MAPGuide(model))
    laplace = approximate("laplace", model, (x, y), map_posterior=base, subset="last_layer", structure="kron")
    grad = attacks.attack_loss_gradient(laplace, x, y, link_approx="probit")

    def loss(inputs):
        with torch.no_grad():
            return float(-laplace.predictive_log_probs(inputs, link_approx="probit").gather(1, y[:, None]).sum())

    h, numeric = 1e-6, torch.zeros_like(x)
    for index in range(x.numel()):
        step = torch.zeros(x.numel(), dtype=x.dtype)
        step[index] = h
        step = step.view_as(x)
        numeric.view(-1)[index] = (loss(x + step) - loss(x - step)) / (2 * h)
    assert torch.allclose(grad, numeric, rtol=1e-5, atol=1e-7)


def test_the_log_predictive_is_the_log_of_predictive_probs(map_posterior, images):
    x = (images[0] - MEAN) / STD
    with torch.no_grad():
        assert torch.allclose(map_posterior.predictive_log_probs(x).exp(), map_posterior.predictive_probs(x),
                              atol=1e-6)
        model = map_posterior.model
        mean_field = Posterior(model, MeanFieldGuide(model, init_scale=0.05))
        torch.manual_seed(3)
        ours = mean_field.predictive_log_probs(x, 7).exp()
        torch.manual_seed(3)  # the same draws, in the same order
        assert torch.allclose(ours, mean_field.predictive_probs(x, num_samples=7), atol=1e-6)
    xs, ys = torch.rand(6, 4), torch.randint(0, 3, (6,))
    small = BNN(MLP(4, 8, 3), prior_scale=1.0)
    laplace = approximate("laplace", small, (xs, ys), map_posterior=Posterior(small, MAPGuide(small)),
                          subset="last_layer", structure="kron")
    with torch.no_grad():
        assert torch.allclose(laplace.predictive_log_probs(xs, link_approx="probit").exp(),
                              laplace.predictive_probs(xs, link_approx="probit"), atol=1e-6)
        torch.manual_seed(0)
        ours = laplace.predictive_log_probs(xs, 5).exp()
        torch.manual_seed(0)
        assert torch.allclose(ours, laplace.predictive_probs(xs, num_samples=5), atol=1e-6)


def test_the_log_predictive_stays_finite_where_a_probability_underflows(map_posterior, images):
    x = (images[0] - MEAN) / STD * 1e4  # logits in the thousands: softmax probabilities of exactly 0
    log_probs = map_posterior.predictive_log_probs(x).detach()
    assert torch.isfinite(log_probs).all() and float(log_probs.max()) <= 0
    assert torch.allclose(log_probs, torch.log_softmax(map_posterior.point_outputs(x).detach(), -1))


def test_mc_dropout_shares_its_deterministic_prefix_and_keeps_its_predictive():
    torch.manual_seed(0)
    model = BNN(MLP(4, 16, 3, dropout=0.5), prior_scale=1.0)
    with torch.no_grad():
        for parameter in model.net.parameters():
            parameter.mul_(2)
    guide = DropoutGuide(model)
    posterior = Posterior(model, guide)
    x = torch.rand(3, 4)
    with torch.no_grad():
        shared = posterior.predictive_log_probs(x, 5000).exp()
        passes = posterior.predictive_probs(x, num_samples=5000)
    assert guide.__dict__["_shared_prefix"] is model.net.body[2]  # the first active slot
    assert torch.allclose(shared, passes, atol=0.015)  # Monte Carlo: sd of a probability <= 0.5 / sqrt(5000)
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(posterior.predictive_log_probs(x, 8)[:, 0].sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


class _Skip(nn.Module):
    """A network that reads its input again after the dropout slot: repeating there is wrong."""

    def __init__(self):
        super().__init__()
        self.hidden, self.drop, self.out = nn.Linear(4, 8), Dropout(0.5), nn.Linear(8, 3)

    def forward(self, x):
        return self.out(self.drop(torch.relu(self.hidden(x)))) + x[:, :3]


def test_a_network_that_cannot_share_its_prefix_runs_full_passes():
    torch.manual_seed(0)
    model = BNN(_Skip(), prior_scale=1.0)
    posterior = Posterior(model, DropoutGuide(model))
    x = torch.rand(4, 4)
    with torch.no_grad():
        torch.manual_seed(1)
        ours = posterior.predictive_log_probs(x, 6).exp()
        torch.manual_seed(1)
        assert torch.allclose(ours, posterior.predictive_probs(x, num_samples=6), atol=1e-6)


def test_random_perturbations_have_the_radius_and_stay_in_range(images):
    x, _ = images
    uniform = random_perturbation(x, 0.2, generator=torch.Generator().manual_seed(0))
    signs = random_perturbation(x, 0.2, kind="sign", generator=torch.Generator().manual_seed(0))
    assert float((uniform - x).abs().max()) <= 0.2 + 1e-6 and 0 <= uniform.min() and uniform.max() <= 1
    inside = (x > 0.2) & (x < 0.8)
    assert torch.allclose((signs - x).abs()[inside], torch.tensor(0.2), atol=1e-6)


@pytest.mark.parametrize("call, error, message", [
    (lambda p, x, y: fgsm(p, x, y, -0.1), ValueError, r"epsilon must be a finite number >= 0"),
    (lambda p, x, y: fgsm(p, x, y, math.nan), ValueError, r"epsilon must be a finite number >= 0"),
    (lambda p, x, y: pgd(p, x, y, math.inf), ValueError, r"epsilon must be a finite number >= 0"),
    (lambda p, x, y: fgsm(p, x, y, "0.1"), TypeError, r"epsilon must be a number"),
    (lambda p, x, y: pgd(p, x, y, 0.1, steps=0), ValueError, r"steps must be"),
    (lambda p, x, y: pgd(p, x, y, 0.1, step_size=-1), ValueError, r"step_size"),
    (lambda p, x, y: fgsm(p, (x - MEAN) / STD, y, 0.1), ValueError, r"x must lie in the data range"),
    (lambda p, x, y: fgsm(p, x, y + 10, 0.1), ValueError, r"y \(labels\) must lie in \[0, 10\)"),
    (lambda p, x, y: fgsm(p, x, y[:3], 0.1), ValueError, r"y \(labels\) has 3 entries"),
    (lambda p, x, y: fgsm(p, x, y, 0.1, bounds=(1, 0)), ValueError, r"low < high"),
    (lambda p, x, y: fgsm(p, x, y, 0.1, normalization=(MEAN, 0.0)), ValueError, r"std must be > 0"),
    (lambda p, x, y: fgsm(p, x, y, 0.1, normalization=MEAN), TypeError, r"normalization must be a pair"),
    (lambda p, x, y: fgsm(p.model, x, y, 0.1), TypeError, r"posterior must be a bayesdl Posterior"),
    (lambda p, x, y: fgsm(p, x, y, 0.1, num_samples=0), ValueError, r"num_samples"),
    (lambda p, x, y: random_perturbation(x, 0.1, kind="gauss"), ValueError, r"kind must be"),
    (lambda p, x, y: random_perturbation(x * 3, 0.1), ValueError, r"x must lie in the data range"),
])
def test_bad_input_is_refused_at_the_boundary(map_posterior, images, call, error, message):
    with pytest.raises(error, match=message):
        call(map_posterior, *images)


def test_the_speed_benchmark_runs_at_a_tiny_size(tmp_path):
    spec = importlib.util.spec_from_file_location("adversarial_speed", ROOT / "benchmarks" / "adversarial_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "speed.json"
    summary = module.main(["--images", "6", "--samples", "3", "--steps", "2", "--rounds", "1", "--json", str(out)])
    assert summary["ratio_bayesdl_to_plain"] > 0 and out.stat().st_size > 0
    assert set(summary["seconds"]) == {"bayesdl", "plain"}


#: the options that fit each registered method in a second on six points (any new method: one line)
_FIT = {"map": {"epochs": 2}, "mean_field": {"epochs": 2}, "dropout": {"epochs": 2},
        "laplace": {"epochs": 2, "subset": "last_layer", "structure": "kron"},
        "nuts": {"num_samples": 10, "warmup_steps": 10, "num_chains": 1},
        "swag": {"epochs": 2, "swag_epochs": 2, "collect_every": 1, "rank": 2},
        "ensemble": {"members": 2, "member_options": {"epochs": 2}}, "deep_ensemble": {"members": 2, "epochs": 2},
        "multiswag": {"members": 2, "epochs": 2, "swag_epochs": 2, "collect_every": 1, "rank": 2},
        "csgmcmc": {"epochs": 20, "cycles": 2, "samples_per_cycle": 2, "num_chains": 1}}
#: small settings for a method registered after these tests: those of its options it takes
_CHEAP = {"epochs": 2, "num_samples": 10, "warmup_steps": 10, "num_chains": 1, "members": 2}


@pytest.mark.parametrize("method", list(METHODS))
def test_every_registered_method_is_attacked_through_its_own_predictive(method):
    torch.manual_seed(0)
    x, y = torch.rand(6, 4), torch.randint(0, 3, (6,))
    model = BNN(MLP(4, 8, 3, dropout=0.2), prior_scale=1.0)
    info = METHODS[method]
    options = _FIT.get(method) or {k: v for k, v in _CHEAP.items() if k in info.options}
    options = {"progress": False, **options} if "progress" in info.options else options
    try:
        posterior = approximate(method, model, (x, y), **options)
    except Exception as err:  # a method registered later, which these generic options cannot fit
        if method in _FIT:
            raise
        pytest.skip(f"{method} does not fit with the generic options {options}: {err}")
    grad = attacks.attack_loss_gradient(posterior, x, y, num_samples=4)
    assert grad.shape == x.shape and torch.isfinite(grad).all() and grad.abs().sum() > 0
    adversarial = pgd(posterior, x, y, 0.1, steps=2, num_samples=4)
    assert float((adversarial - x).abs().max()) <= 0.1 + 1e-6


def test_the_differentiable_predictive_refuses_what_it_cannot_compute(map_posterior, images):
    regression = BNN(MLP(4, 8, 1), prior_scale=1.0, likelihood="gaussian")
    with pytest.raises(ValueError, match="for classification models"):
        Posterior(regression, MAPGuide(regression)).predictive_log_probs(torch.rand(3, 4))
    with pytest.raises(ValueError, match="link_approx='probit' is not available"):
        map_posterior.predictive_log_probs(images[0], link_approx="probit")
    with pytest.raises(ValueError, match="num_samples"):
        map_posterior.predictive_log_probs(images[0], num_samples=0)

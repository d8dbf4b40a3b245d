"""Week 2: Bayesian neural networks on 2-D data -- logistic regression and an MLP on two moons.

Reproduces the course's second practical session: MAP, Laplace and variational inference for
Bayesian logistic regression on a linearly separable set (the report's questions 1.2-1.3),
and mean-field VI against MC dropout for an MLP on two moons (question 2.1) -- with NUTS as
the exact reference that every approximation is measured against, and ArviZ diagnostics.

Every method returns a :class:`bayesdl.inference.Posterior`; the maps and metrics are computed the
same way for all of them.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from bayesdl.inference import exponential_decay
from bayesdl.models import BNN, MLP

from ..data import linear_blobs, two_moons
from ..io import markdown_table
from ..methods import MethodSpec, labels_of
from ..registry import RunContext, StudyResult
from ._toy2d import Grid, Toy2DLab, curves_figure, diagnostics, evaluate_methods, uncertainty_figure


def _svi(n: int, steps: int, lr: float, ctx, **options) -> dict:
    """Options of full-batch SVI (one step = one epoch), with an exponentially decaying learning rate."""
    return {"epochs": steps, "lr": lr, "batch_size": n, "shuffle": False, "seed": ctx.seed,
            "scheduler": exponential_decay(lr, lr / 20, steps), "progress": ctx.progress, **options}


def _nuts(ctx, quick_draws: int = 50, quick_depth: int = 5) -> MethodSpec:
    # Quick mode: chains too short to be trusted (the report says so); they mainly exercise the pipeline.
    options = {"num_samples": quick_draws if ctx.quick else 600, "warmup_steps": quick_draws if ctx.quick else 600,
               "num_chains": 2 if ctx.quick else 4, "seed": ctx.seed,
               "max_tree_depth": quick_depth if ctx.quick else 8, "progress": ctx.progress}
    return MethodSpec("nuts", options=options)


def _sgmcmc(n: int, ctx, lr: float, friction: float, epochs: int, cyclical: dict | None = None) -> MethodSpec:
    """SGHMC on minibatches of a quarter of the data (4 chains; quick: 2 chains of 100 epochs), or
    the cyclical schedule (cSGHMC, Zhang et al. 2020) with ``cyclical``'s options."""
    batch = max(n // 4, 1)
    options = {"lr": lr, "friction": friction, "batch_size": batch, "epochs": 100 if ctx.quick else epochs,
               "num_chains": 2 if ctx.quick else 4, "seed": ctx.seed, "progress": ctx.progress, "thin": 1}
    if cyclical is None:
        return MethodSpec("sghmc", options=options)
    quick = {"cycles": 2, "samples_per_cycle": 5, "exploration": 0.5}
    return MethodSpec("csgmcmc", options={**options, **(quick if ctx.quick else cyclical)}, label="cSGHMC")


def _map_and_laplace(n: int, steps: int, lr: float, ctx) -> tuple[MethodSpec, MethodSpec]:
    """The MAP (full-batch SVI with MAPGuide) and the full-GGN Laplace approximation around it."""
    return (MethodSpec("map", options=_svi(n, steps, lr, ctx)),
            MethodSpec("laplace", options={"subset": "all", "structure": "full"}, label="Laplace (full GGN)"))


def _table(results: dict, labels: dict) -> str:
    rows = []
    for name, r in results.items():
        rows.append([labels[name], 100 * r["accuracy"], r["nll"], 100 * r["ece"], r["mean_confidence_far"],
                     r.get("tv_to_nuts", float("nan")), r.get("tv_to_nuts_far", float("nan"))])
    return markdown_table(["method", "accuracy (%)", "NLL", "ECE (%)", "mean confidence far from data",
                           "TV to NUTS (grid)", "TV to NUTS (far)"], rows)


def _run(ctx: RunContext, title: str, x, y, x_test, y_test, make_model, methods: list[MethodSpec],
         extent: float, far_distance: float, conclusions) -> StudyResult:
    torch.manual_seed(ctx.seed)
    model = make_model()
    labels = labels_of(methods)
    grid = Grid.around(x, extent=extent, resolution=40 if ctx.quick else 90, far_distance=far_distance)
    samples = 30 if ctx.quick else 200
    lab = Toy2DLab(ctx, model, x, y, methods)
    posteriors, grid_probs, results = evaluate_methods(lab, methods, x_test, y_test, grid, samples)
    fig = uncertainty_figure(methods, posteriors, grid_probs, grid, x, y, title, far_distance)
    maps = ctx.figure(fig, "uncertainty_maps.png")
    curves = ctx.figure(curves_figure(posteriors, labels), "training_curves.png")
    extra, diag_text = diagnostics(ctx, posteriors, labels, x, y, samples)
    for method, values in extra.items():
        results[method].update(values)
    report = f"""# {title}

{len(x)} training points, {len(x_test)} test points; maps over [-{extent:g}, {extent:g}]^2, "far from
the data" = more than {far_distance:g} from every training point. Sampled methods use
{samples} posterior samples per input; NUTS is the reference.

![]({maps})

{_table(results, labels)}

{conclusions(results, labels)}

![]({curves})

## Diagnostics

{diag_text}

Each method's posterior, posterior predictive and log-likelihood are saved as ArviZ
InferenceData (`inference_<method>.nc`); `bdl diagnose <this folder>` shows them again.
"""
    config = {"n_train": len(x), "n_test": len(x_test), "grid_extent": extent, "far_distance": far_distance,
              "posterior_samples": samples, "methods": list(labels)}
    return StudyResult(config=config, results=results, report=report)


# ---------------------------------------------------------------- logistic regression
def run_logistic(ctx: RunContext) -> StudyResult:
    n = 40 if ctx.quick else 100
    x, y = linear_blobs(n, seed=ctx.seed)
    x_test, y_test = linear_blobs(400, seed=ctx.seed + 1000)
    steps = 300 if ctx.quick else 2000

    def make_model():
        return BNN(nn.Linear(2, 1), prior_scale=1.0, likelihood="bernoulli")

    map_method, laplace_method = _map_and_laplace(n, steps, 0.05, ctx)
    methods = [map_method, laplace_method,
               MethodSpec("mean_field", options=_svi(n, steps, 0.05, ctx, init_scale=0.1)),
               _sgmcmc(n, ctx, lr=0.01, friction=0.3, epochs=1000),
               _nuts(ctx, quick_draws=100, quick_depth=6)]  # 3 weights: a usable reference costs little

    def conclusions(r, labels):
        lines = [
            f"- MAP: mean confidence {r['map']['mean_confidence_far']:.3f} far from the data; Laplace "
            f"{r['laplace']['mean_confidence_far']:.3f}, mean-field VI {r['mean_field']['mean_confidence_far']:.3f}, "
            f"NUTS {r['nuts']['mean_confidence_far']:.3f}.",
        ]
        bayes = [r[m]["mean_confidence_far"] for m in ("laplace", "mean_field", "nuts")]
        if all(v < r["map"]["mean_confidence_far"] for v in bayes):
            lines.append("- As the course report concludes, the MAP prediction stays confident away from the "
                         "data (it depends only on the distance to the separating line), while Laplace, VI "
                         "and NUTS grow uncertain there.")
        else:
            lines.append("- Unlike the course report, not every Bayesian method is less confident than MAP "
                         "far from the data here; see the table.")
        closest = min(("laplace", "mean_field"), key=lambda m: r[m]["tv_to_nuts"])
        lines.append(f"- Closest to NUTS over the grid: {labels[closest]} (TV {r[closest]['tv_to_nuts']:.4f}).")
        lines.append(f"- SGHMC (minibatches of {max(n // 4, 1)}, chains judged by ArviZ below): TV to NUTS "
                     f"{r['sghmc']['tv_to_nuts']:.4f}, against mean-field VI's {r['mean_field']['tv_to_nuts']:.4f}.")
        return "\n".join(lines)

    return _run(ctx, "Bayesian logistic regression on 2-D data", x, y, x_test, y_test,
                make_model, methods, extent=12.0, far_distance=5.0, conclusions=conclusions)


# ---------------------------------------------------------------- two moons
def run_two_moons(ctx: RunContext) -> StudyResult:
    n = 60 if ctx.quick else 200
    x, y = two_moons(n, noise=0.15, seed=ctx.seed)
    x_test, y_test = two_moons(500, noise=0.15, seed=ctx.seed + 1000)
    steps = 200 if ctx.quick else 3000
    hidden, p = 16, 0.2

    def make_model():
        return BNN(MLP(2, hidden, 2, dropout=p), prior_scale=1.0, likelihood="categorical")

    map_method, laplace_method = _map_and_laplace(n, steps, 0.02, ctx)
    methods = [map_method,
               MethodSpec("mean_field", options=_svi(n, steps, 0.02, ctx, init_scale=0.05)),
               MethodSpec("mc_dropout", "dropout", _svi(n, steps, 0.02, ctx, p=p), label=f"MC dropout (p = {p})"),
               laplace_method,
               _sgmcmc(n, ctx, lr=0.01, friction=0.1, epochs=1500),
               _sgmcmc(n, ctx, lr=0.05, friction=0.1, epochs=1500,
                       cyclical={"cycles": 6, "exploration": 0.5, "samples_per_cycle": 50, "thin": 4}),
               _nuts(ctx)]

    return _run(ctx, f"An MLP (2-{hidden}-2) on two moons", x, y, x_test, y_test, make_model,
                methods, extent=6.0, far_distance=2.0, conclusions=_moons_conclusions)


def _moons_conclusions(r, labels) -> str:
    far = {m: r[m]["mean_confidence_far"] for m in r}
    lines = ["- Mean confidence far from the data: "
             + ", ".join(f"{labels[m]} {v:.3f}" for m, v in far.items()) + "."]
    if far["map"] >= max(v for m, v in far.items() if m != "map") - 1e-9:
        lines.append("- MAP is the most confident far from the data, as the course expects of a ReLU network.")
    else:
        lines.append("- MAP is not the most confident method far from the data here; see the table.")
    closest = min((m for m in r if m != "nuts"), key=lambda m: r[m].get("tv_to_nuts", math.inf))
    lines.append(f"- Closest to NUTS over the grid: {labels[closest]} (TV {r[closest]['tv_to_nuts']:.4f}).")
    sampled = ", ".join(f"{labels[m]} {r[m]['tv_to_nuts']:.4f}" for m in ("sghmc", "csgmcmc", "mean_field"))
    best = min(r["sghmc"]["tv_to_nuts"], r["csgmcmc"]["tv_to_nuts"])
    lines.append(f"- SG-MCMC against NUTS (mean TV over the grid): {sampled}; SG-MCMC is "
                 + ("at or below" if best <= r["mean_field"]["tv_to_nuts"] else "above")
                 + " mean-field VI's TV.")
    error = {m: r[m]["mc_error_10_samples"] for m in r if "mc_error_10_samples" in r[m]}
    rough = {m: r[m]["roughness_10_samples"] for m in r if "roughness_10_samples" in r[m]}
    lines.append("- A 10-sample predictive map: roughness (mean change of p between neighbouring grid "
                 "points) " + ", ".join(f"{labels[m]} {v:.4f}" for m, v in rough.items()) + "; Monte-Carlo error "
                 "(mean TV between two independent estimates) "
                 + ", ".join(f"{labels[m]} {v:.4f}" for m, v in error.items())
                 + ".")
    if rough["mc_dropout"] > rough["mean_field"]:
        lines.append("- The MC dropout map is visibly noisier (rougher) than the mean-field one for few "
                     "samples, as the course report observes: every input draws its own masks, while a "
                     "mean-field weight draw is shared by the whole grid. Its Monte-Carlo error is "
                     + ("larger too." if error["mc_dropout"] > error["mean_field"] else
                        "not larger, though: the mean-field map is smooth but just as uncertain an estimate.")
                     + " More passes remove both.")
    else:
        lines.append("- Unlike the course report, the MC dropout map is not rougher than the mean-field one "
                     "for few samples in this run.")
    return "\n".join(lines)

"""SGLD against cyclical SGLD on a 2-D mixture of 25 Gaussians: how many modes each visits.

The cyclical schedule's selling point (Zhang, Li, Zhang, Chen & Wilson 2020, "Cyclical stochastic
gradient MCMC for Bayesian deep learning", their multimodal toy): with the same number of
gradient evaluations, SGLD at a small constant step stays in the few modes near its start, while
the large steps at the start of every cosine cycle carry cSGLD to new modes, which the small steps
at the end of the cycle then sample. The target is

    p(theta) = 1/25 sum_k N(theta; mu_k, sigma^2 I),   mu_k on the grid {-4, -2, 0, 2, 4}^2,

sampled through :func:`bayesdl.inference.sgmcmc.sample_potential` (the updates and schedules of
the registered ``sgld`` and ``csgmcmc`` methods) on stochastic gradients: the exact gradient
plus ``N(0, gradient_noise^2)`` per component. A mode counts as visited when a kept draw lies
within ``3 sigma`` of its centre. Every seed is saved as it finishes and skipped on a rerun.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import sys
from pathlib import Path

import numpy as np
import torch

from bayesdl.evaluation.plotting import new_figure
from bayesdl.inference.sgmcmc import sample_potential

from ..io import markdown_table, read_verified_json, write_verified_json
from ..registry import RunContext, StudyResult

__all__ = ["run", "mixture_means", "mixture_gradient", "modes_visited"]

SAMPLERS = ("sgld", "csgld")
LABELS = {"sgld": "SGLD", "csgld": "cyclical SGLD"}


def mixture_means() -> torch.Tensor:
    """The 25 centres ``[25, 2]``: the grid ``{-4, -2, 0, 2, 4}^2``."""
    axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0], dtype=torch.float64)
    return torch.cartesian_prod(axis, axis)


def mixture_gradient(sigma: float, noise: float = 0.0):
    """``theta [C, 2] -> grad U(theta) [C, 2]`` for ``U = -ln sum_k N(theta; mu_k, sigma^2 I)``:
    ``sum_k w_k(theta) (theta - mu_k) / sigma^2`` with the responsibilities ``w = softmax_k(-|theta
    - mu_k|^2 / (2 sigma^2))``, plus ``N(0, noise^2)`` per component (a stochastic gradient)."""
    means = mixture_means()

    def gradient(theta: torch.Tensor) -> torch.Tensor:
        diff = theta[:, None, :] - means[None]
        weights = torch.softmax(-(diff * diff).sum(-1) / (2 * sigma**2), dim=-1)
        exact = (weights[..., None] * diff).sum(1) / sigma**2
        return exact + noise * torch.randn_like(exact) if noise else exact

    return gradient


def modes_visited(draws: torch.Tensor, sigma: float) -> list[int]:
    """The indices of the centres with at least one of ``draws`` ``[..., 2]`` within ``3 sigma``."""
    distance = torch.cdist(draws.reshape(-1, 2), mixture_means())
    nearest = distance.min(1)
    return sorted(set(nearest.indices[nearest.values < 3 * sigma].tolist()))


def _sample(options, sampler: str, seed: int) -> tuple[torch.Tensor, int]:
    """One chain of ``options.steps`` gradient evaluations from near the origin, kept every ``thin``:
    SGLD after no burn-in; cyclical SGLD in the second half of every cycle (where the step has
    fallen below half its initial value; less when the exploration phase reaches into it)."""
    torch.manual_seed(seed)
    start = 0.1 * torch.randn(1, 2, dtype=torch.float64)
    gradient = mixture_gradient(options.sigma, options.gradient_noise)
    if sampler == "sgld":
        return sample_potential(gradient, start, steps=options.steps, lr=options.lr_sgld, thin=options.thin)
    per_cycle = options.steps // options.cycles
    sampling = min(per_cycle - math.ceil(options.exploration * per_cycle), per_cycle // 2)
    return sample_potential(gradient, start, steps=options.steps, lr=options.lr_cyclical, thin=options.thin,
                            cycles=options.cycles, exploration=options.exploration,
                            samples_per_cycle=max(sampling // options.thin, 1))


PIECE_FORMAT = "bayesdl-sgmcmc-modes-seed-1"


def _piece_path(ctx: RunContext, seed: int) -> Path:
    """Where one seed's result is kept between runs: the cache folder (``--cache-dir``, default
    ``<out>/../.cache``), under a digest of the options, so other options never reuse it."""
    cache = ctx.cache_dir or Path(ctx.folder.final).parent / ".cache"
    key = hashlib.sha256(repr(sorted(dataclasses.asdict(ctx.options).items())).encode()).hexdigest()[:16]
    return cache / "sgmcmc_modes" / f"{key}_seed{seed}.json"


def _seed_result(ctx: RunContext, seed: int) -> dict:
    """Both samplers for one seed, read back (verified) if an earlier run finished that seed."""
    path = _piece_path(ctx, seed)
    try:
        return read_verified_json(path, PIECE_FORMAT)
    except FileNotFoundError:
        pass
    except ValueError as err:  # damaged or edited: computed again
        print(f"{err}; computing seed {seed} again", file=sys.stderr)
    result = {}
    for sampler in SAMPLERS:
        draws, evaluations = _sample(ctx.options, sampler, seed)
        result[sampler] = {"modes": modes_visited(draws, ctx.options.sigma), "evaluations": evaluations,
                           "draws": draws[0].tolist()}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_verified_json(path, result, PIECE_FORMAT)
    return read_verified_json(path, PIECE_FORMAT)


def _figure(seed_results: dict, sigma: float):
    """Kept draws of the first seed over the mixture density, one panel per sampler, and the
    number of modes visited per seed."""
    fig, axes = new_figure(ncols=3, size=(4.0, 3.8))
    axis = np.linspace(-6, 6, 200)
    xx, yy = np.meshgrid(axis, axis)
    points = np.stack([xx.ravel(), yy.ravel()], 1)
    means = mixture_means().numpy()
    sq = ((points[:, None, :] - means[None]) ** 2).sum(-1)
    density = np.exp(-sq / (2 * sigma**2)).mean(1).reshape(xx.shape)
    first = seed_results[min(seed_results)]
    for ax, sampler in zip(axes[0, :2], SAMPLERS):
        ax.contourf(xx, yy, density, levels=12, cmap="Greys")
        draws = np.array(first[sampler]["draws"])
        ax.scatter(draws[:, 0], draws[:, 1], s=3, color="tab:red", alpha=0.5, label="kept draws")
        count = len(first[sampler]["modes"])
        ax.set_title(f"{LABELS[sampler]}: {count} of 25 modes (seed {min(seed_results)})", fontsize="small")
        ax.set_xlabel(r"$\theta_1$")
        ax.set_ylabel(r"$\theta_2$")
        ax.set_aspect("equal")
        ax.legend(loc="upper right", fontsize="x-small")
    seeds = sorted(seed_results)
    width = 0.38
    for i, sampler in enumerate(SAMPLERS):
        counts = [len(seed_results[s][sampler]["modes"]) for s in seeds]
        axes[0, 2].bar(np.arange(len(seeds)) + (i - 0.5) * width, counts, width, label=LABELS[sampler])
    axes[0, 2].set_xticks(np.arange(len(seeds)), [f"seed {s}" for s in seeds])
    axes[0, 2].set_ylabel("modes visited (of 25)")
    axes[0, 2].set_ylim(0, 26)
    axes[0, 2].set_title("modes visited at equal gradient evaluations", fontsize="small")
    axes[0, 2].legend(fontsize="x-small")
    fig.suptitle("A mixture of 25 Gaussians: SGLD vs cyclical SGLD (Zhang et al. 2020)")
    return fig


def _report(options, results: dict, figure: str, seeds: list[int]) -> str:
    rows = [[f"seed {s}", *(len(results["per_seed"][s][k]["modes"]) for k in SAMPLERS)] for s in seeds]
    rows.append(["mean", results["sgld"]["mean_modes"], results["csgld"]["mean_modes"]])
    ratio = results["csgld"]["mean_modes"] / max(results["sgld"]["mean_modes"], 1e-12)
    verdict = "meets" if ratio >= 2 else "misses"
    return f"""# SGLD vs cyclical SGLD on a mixture of 25 Gaussians

Target: 25 equal Gaussians of standard deviation {options.sigma:g} centred on {{-4, -2, 0, 2, 4}}^2;
stochastic gradients (exact plus N(0, {options.gradient_noise:g}^2) noise per component). Each sampler runs
one chain of {options.steps:,} gradient evaluations from near the origin, keeping every {options.thin}-th
iterate: SGLD at the constant step {options.lr_sgld:g}; cyclical SGLD over {options.cycles} cosine cycles from
the step {options.lr_cyclical:g} (noise-free for the first {options.exploration:g} of each cycle), keeping the
second half of every cycle, where its step has fallen below {options.lr_cyclical / 2:g}. A mode is visited when a kept draw lies within 3 sigma of its centre.

{markdown_table(["run", "SGLD: modes visited", "cyclical SGLD: modes visited"], rows)}

Cyclical SGLD visits {ratio:.2f} times as many modes as SGLD on the mean of {len(seeds)} seeds: it {verdict}
the target of at least twice as many (Zhang et al. 2020's claim for this toy).

![]({figure})
"""


def run(ctx: RunContext) -> StudyResult:
    options = ctx.options
    seeds = [ctx.seed + k for k in range(options.seeds)]
    per_seed = {s: _seed_result(ctx, s) for s in seeds}
    results = {"per_seed": {s: {k: {"modes": v["modes"], "evaluations": v["evaluations"]}
                                for k, v in per_seed[s].items()} for s in seeds}}
    for sampler in SAMPLERS:
        counts = [len(per_seed[s][sampler]["modes"]) for s in seeds]
        results[sampler] = {"mean_modes": float(np.mean(counts)), "modes_per_seed": counts,
                            "gradient_evaluations": per_seed[seeds[0]][sampler]["evaluations"]}
    figure = ctx.figure(_figure(per_seed, options.sigma), "modes.png")
    config = {"steps": options.steps, "seeds": seeds, "sigma": options.sigma, "cycles": options.cycles}
    return StudyResult(config=config, results=results, report=_report(options, results, figure, seeds))

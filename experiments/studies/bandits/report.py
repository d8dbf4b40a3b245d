"""Tables, figures and the report of the bandits study."""

from __future__ import annotations

import numpy as np

from bayesdl.evaluation.plotting import new_figure

from ...io import markdown_table
from ...registry import StudyResult

#: the showdown's reference run of its public code, mushroom, 2,000 contexts: cumulative regret, by
#: the showdown's own algorithm names (a row of the study names the one it is set beside)
SHOWDOWN_MUSHROOM = {"LinFullPost": 870, "NeuralLinear": 1125, "Dropout": 1805, "BBB": 2730, "Uniform": 10165}
#: Wen et al. 2020, Table 3 (the showdown's protocol, 30 trials): regret relative to uniform = 100
WEN_TABLE_3 = {("mushroom", "Dropout"): "15.05 +- 8.23", ("mushroom", "LinFullPost"): "97.42 +- 4.52",
               ("wheel", "Dropout"): "73.86 +- 22.48", ("wheel", "LinFullPost"): "42.94 +- 12.68"}


def _summary(records, key, name) -> dict | None:
    runs = {seed: r for (k, n, seed), r in records.items() if k == key and n == name}
    if not runs:
        return None
    total = np.array([sum(r.regret) for r in runs.values()])
    uniform = {seed: sum(r.regret) for (k, n, seed), r in records.items() if k == key and n == "uniform"}
    relative = np.array([100 * sum(r.regret) / uniform[s] for s, r in runs.items() if uniform.get(s)])
    se = float(total.std(ddof=1) / np.sqrt(len(total))) if len(total) > 1 else None
    return {"regret_mean": float(total.mean()), "regret_se": se, "seeds": sorted(runs),
            "regret_per_seed": total.tolist(),
            "relative_mean": float(relative.mean()) if len(relative) else None,
            "relative_se": float(relative.std(ddof=1) / np.sqrt(len(relative))) if len(relative) > 1 else None,
            "train_seconds": float(sum(r.train_seconds for r in runs.values())),
            "decide_seconds": float(sum(r.decide_seconds for r in runs.values())),
            "curve": np.mean([np.cumsum(r.regret) for r in runs.values()], 0).tolist(),
            "curve_se": (np.std([np.cumsum(r.regret) for r in runs.values()], 0, ddof=1)
                         / np.sqrt(len(runs))).tolist() if len(runs) > 1 else None}


def _fmt(mean, se, digits=0):
    if mean is None:
        return "-"
    return f"{mean:,.{digits}f}" + ("" if se is None else f" +- {se:,.{digits}f}")


def _curves_figure(ctx, results, labels, key):
    fig, axes = new_figure(size=(7, 4.5))
    ax = axes[0, 0]
    for name, r in results[key].items():
        curve = np.asarray(r["curve"])
        steps = np.arange(1, len(curve) + 1)
        ax.plot(steps, curve, label=labels[name])
        if r["curve_se"] is not None:
            se = np.asarray(r["curve_se"])
            ax.fill_between(steps, curve - se, curve + se, alpha=0.2)
    ax.set_xlabel("step (context)")
    ax.set_ylabel("cumulative regret")
    ax.set_yscale("symlog", linthresh=10)
    ax.set_title(f"{key}: cumulative regret, mean +- SE over seeds")
    ax.legend(fontsize=8)
    return ctx.figure(fig, f"cumulative_regret_{key}.png")


def _wheel_figure(ctx, results, labels, wheel_keys):
    fig, axes = new_figure(size=(7, 4.5))
    ax = axes[0, 0]
    deltas = [float(k.split("-", 1)[1]) for k in wheel_keys]
    for name in results[wheel_keys[0]]:
        values = [results[k][name]["relative_mean"] if name in results[k] else np.nan for k in wheel_keys]
        ax.plot(deltas, values, marker="o", label=labels[name])
    ax.axhline(100, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("delta (larger: the rewarding region is rarer)")
    ax.set_ylabel("cumulative regret, uniform = 100")
    ax.set_yscale("log")
    ax.set_title("wheel bandit: regret relative to uniform")
    ax.legend(fontsize=8)
    return ctx.figure(fig, "wheel_relative_regret.png")


def _table(results, labels, references, key) -> str:
    rows = []
    for name, r in results[key].items():
        reference = SHOWDOWN_MUSHROOM.get(references.get(name), "-") if key == "mushroom" else "-"
        wen = WEN_TABLE_3.get((key.split("-")[0], references.get(name)), "-")
        rows.append([labels[name], _fmt(r["regret_mean"], r["regret_se"]),
                     _fmt(r["relative_mean"], r["relative_se"], 1), reference, wen, len(r["seeds"]),
                     f"{r['train_seconds']:.0f}"])
    return markdown_table(["agent", "cumulative regret", "uniform = 100", "showdown (2,000 contexts)",
                           "Wen et al. Table 3", "seeds", "train s"], rows)


def report(ctx, o, records, labels, references, dqn=None) -> StudyResult:
    """The tables (``references``: row -> the showdown's algorithm it is set beside), figures, report;
    ``dqn``: the dropout Q-network's ``(results, figure, table)``, if it ran."""
    keys = sorted({k for k, _, _ in records})
    results = {key: {name: s for name in labels if (s := _summary(records, key, name))} for key in keys}
    figures = [_curves_figure(ctx, results, labels, key) for key in keys if key == "mushroom"]
    wheel_keys = sorted((k for k in keys if k.startswith("wheel")), key=lambda k: float(k.split("-", 1)[1]))
    if wheel_keys:
        figures.append(_wheel_figure(ctx, results, labels, wheel_keys))
        figures.append(_curves_figure(ctx, results, labels, wheel_keys[-1]))
    tables = "\n\n".join(f"### {key}\n\n{_table(results, labels, references, key)}" for key in keys)
    text = _report_text(o, tables, figures)
    config = {"options": {k: getattr(o, k) for k in o.names()}}
    metrics = {key: {n: {k: v for k, v in r.items() if not k.startswith("curve")} for n, r in rs.items()}
               for key, rs in results.items()}
    if dqn is not None:
        metrics["dqn"] = dqn[0]
        text += _dqn_text(o, dqn[2], dqn[1])
    return StudyResult(config, metrics, text)


def _dqn_text(o, table, figure) -> str:
    return f"""
## The dropout Q-network (CartPole-v1)

DQN with an MC-dropout Q-network (4-64-64-2, dropout {o.q_dropout}), {o.dqn_steps:,} environment steps
per run, one minibatch update of 64 per step after {o.warmup} warm-up steps of uniform actions, target
network every {o.target_every} updates; Thompson sampling holds one dropout mask per episode,
epsilon-greedy decays epsilon from 1 to 0.05 over {o.decay:,} steps. The environment's solved threshold
is 475; "batches to 100" is when the moving mean of 10 returns first reaches 100.

{table}

![{figure}]({figure})
"""


def _report_text(o, tables, figures) -> str:
    images = "\n".join(f"![{f}]({f})" for f in figures)
    return f"""# Thompson sampling with Bayesian networks: the showdown's bandits

Cumulative pseudo-regret (the sum over steps of the best arm's expected reward minus the pulled
arm's) against the optimal policy, mean +- standard error over seeds; "uniform = 100" is each
seed's regret divided by the uniform agent's on the same contexts (Wen et al. 2020's unit).
Mushroom: {o.contexts:,} contexts per seed; wheel: {o.wheel_contexts:,} contexts per seed.

Hyper-parameters: one hidden layer of {o.hidden} ReLU units, a fit from scratch every
{o.retrain_every} steps of {o.train_steps} minibatch steps of {o.batch_size} (Adam, lr {o.lr}),
{o.initial_pulls} initial pulls per arm; MC dropout p = 0.2 (keep 0.8); a Gaussian prior of scale
{o.prior_scale} on every weight; a learned noise scale; LinFullPost and NeuralLinear lambda =
{o.lambda_prior}, a0 = {o.a0}, b0 = {o.b0}; epsilon-greedy epsilon = {o.epsilon} on the MAP network.
The showdown's reference (its public code) used the same schedule but kept training one network
(warm start, RMSProp); ours refits from scratch at every refit. The showdown's "BBB" row is set
beside our mean-field VI.

{tables}

{images}
"""

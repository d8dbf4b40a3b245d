"""The bandit problems of Riquelme et al. 2018 ("Deep Bayesian Bandits Showdown", sec. 4 and app. A).

- **Mushroom** (Blundell et al. 2015): the UCI agaricus-lepiota file; each context is a mushroom
  (the 22 categorical attributes one-hot encoded over the values present in the file, 117
  columns), two arms: eat (+5 if edible; if poisonous -35 with probability 1/2, else +5) or pass
  (0). Expected rewards: eat = 5 (edible) or -15 (poisonous), pass = 0.
- **Wheel** (the showdown's synthetic problem): ``d = 2`` contexts uniform on the unit disc,
  ``k = 5`` arms. Arm 0 pays ``N(1.2, 0.01^2)``; arms 1-4 pay ``N(1.0, 0.01^2)`` inside the disc of
  radius ``delta``, and outside it the arm of the context's quadrant pays ``N(50, 0.01^2)`` (the
  others ``N(1.0, 0.01^2)``). The larger ``delta``, the rarer the rewarding region.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bayesdl.checks import check_int, check_probability

from .bandits import BanditProblem

__all__ = ["mushroom_bandit", "wheel_bandit", "read_mushrooms", "MUSHROOM_VALUES"]

#: the attribute values of agaricus-lepiota.names (UCI), in the file's column order; "?" = missing
MUSHROOM_VALUES = (
    "bcxfks", "fgys", "nbcgrpuewy", "tf", "alcyfmnps", "adfn", "cwd", "bn", "knbhgropuewy", "et",
    "bcuezr?", "fyks", "fyks", "nbcgopewy", "nbcgopewy", "pu", "nowy", "not", "ceflnpsz", "knbhrouwy",
    "acnsvy", "glmpuwd",
)
MUSHROOM_FILE = Path("mushroom") / "agaricus-lepiota.data"
EAT_SAFE, EAT_POISON_BAD, EAT_POISON_GOOD, PASS, POISON_BAD_PROB = 5.0, -35.0, 5.0, 0.0, 0.5


def read_mushrooms(data_root) -> tuple[np.ndarray, np.ndarray]:
    """``(edible [8124] bool, features [8124, 117] float32 one-hot)`` from the data root's
    ``mushroom/agaricus-lepiota.data``; a ``ValueError`` naming the line for any unexpected value."""
    if data_root is None:
        raise ValueError("the mushroom bandit needs the data root (--data-root or BAYESDL_DATA), which "
                         f"holds {MUSHROOM_FILE}")
    path = Path(data_root) / MUSHROOM_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the data root must hold the UCI file {MUSHROOM_FILE}")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.strip().split(",")
        if len(fields) != 23:
            raise ValueError(f"{path}:{number}: expected 23 comma-separated fields, got {len(fields)}")
        if fields[0] not in ("e", "p"):
            raise ValueError(f"{path}:{number}: the class must be 'e' or 'p', got {fields[0]!r}")
        for column, (value, allowed) in enumerate(zip(fields[1:], MUSHROOM_VALUES), 1):
            if len(value) != 1 or value not in allowed:
                raise ValueError(f"{path}:{number}: attribute {column} must be one of {list(allowed)}, "
                                 f"got {value!r}")
        rows.append(fields)
    table = np.array(rows)
    edible = table[:, 0] == "e"
    columns = [table[:, j:j + 1] == np.unique(table[:, j])[None, :] for j in range(1, 23)]
    return edible, np.concatenate(columns, axis=1).astype(np.float32)


def mushroom_bandit(data_root, num_contexts: int = 2000, seed: int = 0) -> BanditProblem:
    """``num_contexts`` mushrooms drawn without replacement by ``seed``, with their rewards (module
    notes); arm 0 = eat, arm 1 = pass."""
    edible, features = read_mushrooms(data_root)
    num_contexts = check_int(num_contexts, "num_contexts", minimum=1)
    if num_contexts > len(edible):
        raise ValueError(f"num_contexts must be at most the {len(edible)} mushrooms, got {num_contexts}")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(edible), num_contexts, replace=False)
    safe = edible[pick]
    bad = rng.random(num_contexts) < POISON_BAD_PROB
    eat = np.where(safe, EAT_SAFE, np.where(bad, EAT_POISON_BAD, EAT_POISON_GOOD))
    poison_mean = POISON_BAD_PROB * EAT_POISON_BAD + (1 - POISON_BAD_PROB) * EAT_POISON_GOOD
    eat_mean = np.where(safe, EAT_SAFE, poison_mean)
    rewards = np.stack([eat, np.full(num_contexts, PASS)], 1)
    expected = np.stack([eat_mean, np.full(num_contexts, PASS)], 1)
    return BanditProblem(torch.from_numpy(features[pick]), torch.from_numpy(rewards),
                         torch.from_numpy(expected), name="mushroom")


WHEEL_MEANS, WHEEL_STD, WHEEL_LARGE, WHEEL_LARGE_STD = (1.2, 1.0, 1.0, 1.0, 1.0), 0.01, 50.0, 0.01


def wheel_bandit(delta: float, num_contexts: int = 2000, seed: int = 0) -> BanditProblem:
    """The wheel bandit (module notes) with exploration parameter ``delta`` in (0, 1)."""
    delta = check_probability(delta, "delta")
    if not 0 < delta < 1:
        raise ValueError(f"delta must lie in (0, 1), got {delta}")
    num_contexts = check_int(num_contexts, "num_contexts", minimum=1)
    rng = np.random.default_rng(seed)
    radius = np.sqrt(rng.random(num_contexts))  # uniform on the disc
    angle = rng.random(num_contexts) * 2 * np.pi
    x = np.stack([radius * np.cos(angle), radius * np.sin(angle)], 1)
    expected = np.tile(np.array(WHEEL_MEANS), (num_contexts, 1))
    std = np.full((num_contexts, 5), WHEEL_STD)
    quadrant = np.where(x[:, 0] > 0, np.where(x[:, 1] > 0, 1, 2), np.where(x[:, 1] > 0, 3, 4))
    outside = np.flatnonzero(radius > delta)
    expected[outside, quadrant[outside]] = WHEEL_LARGE
    std[outside, quadrant[outside]] = WHEEL_LARGE_STD
    rewards = expected + std * rng.standard_normal((num_contexts, 5))
    return BanditProblem(torch.from_numpy(x.astype(np.float32)), torch.from_numpy(rewards),
                         torch.from_numpy(expected), name=f"wheel-{delta:g}")

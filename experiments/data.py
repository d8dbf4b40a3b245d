"""Datasets: the MNIST family through torchvision, and 2-D toy sets.

Images are loaded once as tensors ``[N, 1, 28, 28]`` and normalised with the MNIST training
statistics, the input space of every network trained here (out-of-distribution sets are
normalised the same way, as they would be in deployment). The root is a torchvision
dataset root (``<root>/MNIST/raw/...``); nothing is downloaded unless ``download=True``.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

__all__ = ["MNIST_MEAN", "MNIST_STD", "load_images", "mnist_splits", "two_moons", "linear_blobs"]

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081

_CLASSES = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "kmnist": "KMNIST"}


def _missing(name: str, root: Path, split: str) -> FileNotFoundError:
    folder = root / _CLASSES[name] / "raw"
    return FileNotFoundError(
        f"{_CLASSES[name]} ({split} split) was not found under {folder}. Put the uncompressed IDX "
        f"files there (e.g. t10k-images-idx3-ubyte), point --data-root / BAYESDL_DATA at the folder "
        f"that holds {_CLASSES[name]}/, or, when online, pass --download to fetch it with torchvision"
    )


_IDX_ITEM_SIZE = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}


def check_idx_file(path: Path, ndim: int) -> None:
    """Raise ``ValueError`` unless ``path`` is a complete IDX file of ``ndim`` dimensions.

    IDX (LeCun's MNIST format): two zero bytes, a type code, the number of dimensions, each
    dimension as a big-endian int32, then the data -- so its exact size is known from its
    header, and a truncated download or copy is caught here, not deep inside torchvision.
    """
    size = path.stat().st_size
    with open(path, "rb") as handle:
        header = handle.read(4 + 4 * ndim)
    fix = "delete it and copy or --download it again"
    if len(header) < 4 + 4 * ndim or header[:2] != b"\0\0" or header[2] not in _IDX_ITEM_SIZE \
            or header[3] != ndim:
        raise ValueError(f"{path} is not an IDX file of {ndim} dimension(s) (bad header); {fix}")
    dims = [int.from_bytes(header[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = 4 + 4 * ndim + math.prod(dims) * _IDX_ITEM_SIZE[header[2]]
    if size != expected:
        state = "truncated" if size < expected else "longer than its header says"
        raise ValueError(f"{path} is {state}: {size} bytes, its header {dims} needs {expected}; {fix}")


def _raw(name: str, root: Path, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from bayesdl._environment import check_torchvision

    check_torchvision()  # a torch/torchvision mismatch named here, not as "torchvision::nms does not exist"
    from torchvision import datasets
    from torchvision.datasets.mnist import read_image_file, read_label_file

    cls = getattr(datasets, _CLASSES[name])
    split = "train" if train else "test"
    prefix = "train" if train else "t10k"
    raw = root / _CLASSES[name] / "raw"
    for file, ndim in ((f"{prefix}-images-idx3-ubyte", 3), (f"{prefix}-labels-idx1-ubyte", 1)):
        if (raw / file).is_file():
            check_idx_file(raw / file, ndim)
    try:
        ds = cls(str(root), train=train, download=download)
        return ds.data, ds.targets
    except RuntimeError:
        # torchvision needs all four files even for one split; an OOD set needs only its test split.
        images, labels = raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"
        if images.is_file() and labels.is_file():
            return read_image_file(str(images)), read_label_file(str(labels))
        raise _missing(name, root, split) from None


def load_images(name: str, root, train: bool = False, download: bool = False,
                limit: int | None = None) -> TensorDataset:
    """``TensorDataset(x [N, 1, 28, 28] float, y [N] int64)`` of ``mnist``, ``fashion_mnist`` or ``kmnist``.

    ``limit`` keeps the first ``limit`` examples (quick runs).
    """
    if name not in _CLASSES:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(_CLASSES)}")
    if root is None:
        raise ValueError("no data root: pass --data-root DIR or set BAYESDL_DATA")
    root = Path(root)
    images, labels = _raw(name, root, train, download)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    x = ((images.float() / 255.0 - MNIST_MEAN) / MNIST_STD).unsqueeze(1)
    return TensorDataset(x, labels.long())


def mnist_splits(root, seed: int = 0, val_size: int = 5000, train_limit: int | None = None,
                 test_limit: int | None = None, download: bool = False) -> dict[str, TensorDataset]:
    """MNIST ``train`` / ``val`` (carved from the training set by ``seed``) / ``test``."""
    full = load_images("mnist", root, train=True, download=download)
    x, y = full.tensors
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = order[:val_size], order[val_size:]
    if train_limit is not None:
        train_idx = train_idx[:train_limit]
    return {
        "train": TensorDataset(x[train_idx], y[train_idx]),
        "val": TensorDataset(x[val_idx], y[val_idx]),
        "test": load_images("mnist", root, train=False, download=download, limit=test_limit),
    }


def two_moons(n: int = 200, noise: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The two-moons set (scikit-learn's ``make_moons``), standardised: ``x [n, 2]``, ``y [n]``."""
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=n, noise=noise, random_state=seed)
    x = (x - x.mean(0)) / x.std(0)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.long)


def linear_blobs(n: int = 100, seed: int = 0, separation: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two Gaussian blobs separable by a line through the origin: ``x [n, 2]``, ``y [n]``."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    direction = torch.tensor([1.0, 1.0]) / math.sqrt(2)
    centers = (2 * y[:, None] - 1) * direction * separation / 2
    x = centers + 0.6 * torch.randn(n, 2, generator=g)
    return x, y.long()

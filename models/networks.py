"""Plain torch networks: MLP, the Caffe LeNet of the Bayesian-CNN paper, the CNN of deep
Bayesian active learning, Corbiere et al.'s MNIST classifier, and the dropout layer.

These are ordinary ``nn.Module`` s: train them with plain PyTorch, or lift them into a
Pyro model with :class:`bayesdl.models.BNN`. Their :class:`Dropout` modules are the *slots* where a
:class:`bayesdl.inference.DropoutGuide` draws its Bernoulli masks.

**Trunk and head.** A network whose ``forward(x)`` is ``head(trunk(x))`` may expose those two
methods. When no active dropout slot runs inside ``trunk``, MC prediction with the dropout
guide computes the trunk once per batch and draws only the head ``T`` times (see
:meth:`bayesdl.inference.DropoutGuide.predictive_outputs`). :class:`LeNet` (placement "last"),
:class:`DBALCNN` and :class:`SmallConvNet` have them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from bayesdl.checks import check_int, check_probability
from bayesdl.random import rand_like

__all__ = ["Dropout", "MLP", "LeNet", "DBALCNN", "SmallConvNet", "ConfidNetHead", "dropout_modules"]


class _InvertedDropout(torch.autograd.Function):
    """``x * z / (1 - p)`` with ``z ~ Bernoulli(1 - p)`` drawn per element.

    The mask comes from one uniform draw compared with ``p``: on CPUs this is several times
    faster than ``torch.bernoulli`` (which ``F.dropout`` uses), and the gradient reuses the
    saved mask instead of recomputing anything.
    """

    @staticmethod
    def forward(ctx, x, p):
        mask = rand_like(x).ge_(p).mul_(1.0 / (1.0 - p))
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return grad * mask, None


class Dropout(nn.Dropout):
    """Inverted dropout, a drop-in for ``nn.Dropout`` with a faster mask sampler.

    In training mode each element is kept with probability ``1 - p`` and scaled by
    ``1 / (1 - p)``; in eval mode it is the identity. Same semantics as ``nn.Dropout``
    (``inplace`` is ignored).

    Example::

        >>> import torch
        >>> from bayesdl.models import Dropout
        >>> drop = Dropout(0.5)                       # a module starts in training mode
        >>> _ = torch.manual_seed(0)
        >>> drop(torch.ones(1, 8))                    # kept entries are scaled by 1 / (1 - p)
        tensor([[0., 2., 0., 0., 0., 2., 0., 2.]])
        >>> drop.eval()(torch.ones(1, 3))             # eval mode: the identity
        tensor([[1., 1., 1.]])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.p == 1.0:
            return torch.zeros_like(x)
        return _InvertedDropout.apply(x, self.p)


def dropout_modules(net: nn.Module) -> list[nn.Module]:
    """All dropout modules of ``net`` (``nn.Dropout`` and its subclasses, and torch's other dropout
    layers with a rate ``p``: ``nn.Dropout1d/2d/3d``, ``nn.AlphaDropout``), in definition order.

    Example::

        >>> import torch.nn as nn
        >>> from bayesdl.models import MLP, dropout_modules
        >>> dropout_modules(MLP(2, [4, 4], 1, dropout=0.2))      # one slot after each hidden layer
        [Dropout(p=0.2, inplace=False), Dropout(p=0.2, inplace=False)]
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Dropout2d(0.1), nn.Flatten(), nn.Linear(2704, 2))
        >>> dropout_modules(net)                                   # torch's own dropout layers count too
        [Dropout2d(p=0.1, inplace=False)]
    """
    return [m for m in net.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]


class MLP(nn.Module):
    """Fully connected network ``in -> hidden... -> out`` with ReLU and dropout slots.

    Parameters
    ----------
    in_features, out_features:
        Input and output sizes.
    hidden:
        Width of the hidden layer, or a sequence of widths (empty: a linear model).
    dropout:
        Dropout rate after every hidden activation (0 keeps the slots inactive; a
        :class:`bayesdl.inference.DropoutGuide` given its own rate ``p`` can still use them).

    Example::

        >>> import torch
        >>> from bayesdl.models import MLP
        >>> net = MLP(3, [8, 8], 2, dropout=0.1)       # 3 -> 8 -> 8 -> 2
        >>> x = torch.zeros(5, 3)
        >>> net(x).shape, net.features(x).shape        # logits, and the last hidden layer
        (torch.Size([5, 2]), torch.Size([5, 8]))
        >>> net.last_layer
        Linear(in_features=8, out_features=2, bias=True)
    """

    def __init__(self, in_features: int, hidden: int | Sequence[int], out_features: int,
                 dropout: float = 0.0, activation: str = "relu"):
        super().__init__()
        in_features = check_int(in_features, "in_features", minimum=1)
        out_features = check_int(out_features, "out_features", minimum=1)
        widths = [hidden] if isinstance(hidden, int) else list(hidden)
        widths = [check_int(w, "hidden", minimum=1) for w in widths]
        dropout = check_probability(dropout, "dropout")
        activations = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU}
        if activation not in activations:
            raise ValueError(f"activation must be one of {sorted(activations)}, got {activation!r}")
        layers: list[nn.Module] = []
        previous = in_features
        for width in widths:
            layers += [nn.Linear(previous, width), activations[activation](), Dropout(dropout)]
            previous = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(previous, out_features)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Activations feeding the last layer, ``[N, hidden[-1]]``."""
        return self.body(x)

    @property
    def last_layer(self) -> nn.Linear:
        return self.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class LeNet(nn.Module):
    """The Caffe LeNet of Gal & Ghahramani (2015), "Bayesian CNNs with Bernoulli approximate VI".

    conv 20@5x5 -> max-pool 2 -> ReLU -> conv 50@5x5 -> max-pool 2 -> ReLU -> fc 500 -> ReLU
    -> fc ``num_classes``, for 28x28 inputs.

    ``dropout`` places the dropout slots:

    - ``"last"``: before the last fully-connected layer only (the course's setting);
    - ``"all"``: after every conv block and after fc 500 (the paper's "lenet-all");
    - ``None``: no dropout slots.

    ``p`` is their rate. (ReLU after max-pooling equals max-pooling after ReLU, and is 4x
    cheaper.)

    Example::

        >>> import torch
        >>> from bayesdl.models import LeNet
        >>> net = LeNet(dropout="last", p=0.5).eval()
        >>> images = torch.zeros(2, 1, 28, 28)
        >>> net(images).shape, net.trunk(images).shape
        (torch.Size([2, 10]), torch.Size([2, 500]))
        >>> torch.equal(net.head(net.trunk(images)), net(images))
        True
    """

    PLACEMENTS = ("last", "all", None)

    def __init__(self, dropout: str | None = "last", p: float = 0.5, in_channels: int = 1,
                 num_classes: int = 10):
        super().__init__()
        if dropout not in self.PLACEMENTS:
            raise ValueError(f"dropout must be 'last', 'all' or None, got {dropout!r}")
        p = check_probability(p, "p")
        self.placement = dropout
        self.conv1 = nn.Conv2d(check_int(in_channels, "in_channels", minimum=1), 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc1 = nn.Linear(50 * 4 * 4, 500)
        self.fc2 = nn.Linear(500, check_int(num_classes, "num_classes", minimum=2))
        self.drop_conv1 = Dropout(p) if dropout == "all" else nn.Identity()
        self.drop_conv2 = Dropout(p) if dropout == "all" else nn.Identity()
        self.drop_fc1 = Dropout(p) if dropout in ("last", "all") else nn.Identity()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (after fc 500 and its ReLU, before dropout), ``[N, 500]``."""
        if x.dim() != 4 or x.shape[-2:] != (28, 28):
            raise ValueError(f"LeNet expects images of shape [N, C, 28, 28], got {tuple(x.shape)}")
        h = self.drop_conv1(F.relu(F.max_pool2d(self.conv1(x), 2)))
        h = self.drop_conv2(F.relu(F.max_pool2d(self.conv2(h), 2)))
        return F.relu(self.fc1(h.flatten(1)))

    @property
    def last_layer(self) -> nn.Linear:
        return self.fc2

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Everything before the last dropout slot: :meth:`features` (stochastic for "all")."""
        return self.features(x)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """The last dropout slot and the output layer: ``forward(x) = head(trunk(x))``."""
        return self.fc2(self.drop_fc1(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


class _ConvPoolNet(nn.Module):
    """conv ``c1``@kxk -> ReLU -> conv ``c2``@kxk -> ReLU -> max-pool 2 -> dropout p_conv -> fc 128
    -> ReLU -> dropout p_fc -> fc num_classes, for 28x28 images: the shape of the small MNIST
    CNNs of Keras's ``mnist_cnn`` example, which both :class:`DBALCNN` and :class:`SmallConvNet`
    are.

    Both convolutions run before the first dropout slot, so ``trunk`` (the convolutions and the
    pooling) is deterministic and ``head`` holds every stochastic part: MC dropout computes the
    trunk once and only the head ``T`` times. (ReLU after max-pooling equals max-pooling after
    ReLU, and is 4x cheaper.)
    """

    kernel: int
    channels: tuple[int, int]

    def __init__(self, p_conv: float = 0.25, p_fc: float = 0.5, in_channels: int = 1,
                 num_classes: int = 10):
        super().__init__()
        c1, c2 = self.channels
        self.conv1 = nn.Conv2d(check_int(in_channels, "in_channels", minimum=1), c1, self.kernel)
        self.conv2 = nn.Conv2d(c1, c2, self.kernel)
        self.drop_conv = Dropout(check_probability(p_conv, "p_conv"))
        self.fc1 = nn.Linear(c2 * self._pooled ** 2, 128)
        self.drop_fc = Dropout(check_probability(p_fc, "p_fc"))
        self.fc2 = nn.Linear(128, check_int(num_classes, "num_classes", minimum=2))

    @property
    def _pooled(self) -> int:
        """Side of the pooled feature maps."""
        return (28 - 2 * (self.kernel - 1)) // 2

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """The deterministic convolutions: ``[N, C, 28, 28]`` -> pooled feature maps."""
        if x.dim() != 4 or x.shape[-2:] != (28, 28):
            raise ValueError(f"{type(self).__name__} expects images of shape [N, C, 28, 28], "
                             f"got {tuple(x.shape)}")
        return F.relu(F.max_pool2d(self.conv2(F.relu(self.conv1(x))), 2))

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Dropout, fc 128, dropout, the output layer: pooled feature maps -> logits ``[N, classes]``."""
        return self.fc2(self.drop_fc(F.relu(self.fc1(self.drop_conv(h).flatten(1)))))

    @property
    def last_layer(self) -> nn.Linear:
        return self.fc2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


class DBALCNN(_ConvPoolNet):
    """The CNN of deep Bayesian active learning (Gal, Islam & Ghahramani 2017, sec. 5.1; the
    Keras ``mnist_cnn`` example their code builds on), for 28x28 images::

        conv 32@4x4 -> ReLU -> conv 32@4x4 -> ReLU -> max-pool 2 -> dropout p_conv
        -> fc 128 -> ReLU -> dropout p_fc -> fc num_classes

    Its ``trunk`` (pooled maps ``[N, 32, 11, 11]``) is deterministic; see :class:`_ConvPoolNet`.

    Example::

        >>> import torch
        >>> from bayesdl.models import DBALCNN
        >>> net = DBALCNN().eval()
        >>> images = torch.zeros(2, 1, 28, 28)
        >>> net(images).shape, net.trunk(images).shape
        (torch.Size([2, 10]), torch.Size([2, 32, 11, 11]))
    """

    kernel, channels = 4, (32, 32)


class SmallConvNet(_ConvPoolNet):
    """The MNIST classifier of Corbiere et al. (2019, "Addressing failure prediction by learning
    model confidence"; ``SmallConvNetMNIST`` in their code), for 28x28 images::

        conv 32@3x3 -> ReLU -> conv 64@3x3 -> ReLU -> max-pool 2 -> dropout p_conv
        -> fc 128 -> ReLU -> dropout p_fc -> fc num_classes

    Its ``trunk`` (pooled maps ``[N, 64, 12, 12]``) is deterministic; see :class:`_ConvPoolNet`.

    Example::

        >>> import torch
        >>> from bayesdl.models import SmallConvNet
        >>> net = SmallConvNet(num_classes=3).eval()
        >>> images = torch.zeros(2, 1, 28, 28)
        >>> net(images).shape, net.trunk(images).shape
        (torch.Size([2, 3]), torch.Size([2, 64, 12, 12]))
    """

    kernel, channels = 3, (32, 64)


class ConfidNetHead(nn.Module):
    """ConfidNet's confidence head (Corbiere et al. 2019): features -> TCP estimate in (0, 1).

    A small MLP on the frozen classifier's penultimate features, trained with an MSE loss
    against the true-class probability. ``hidden`` gives the widths (the paper's MNIST
    head uses 400-400-400-400).

    Example::

        >>> import torch
        >>> from bayesdl.models import ConfidNetHead
        >>> head = ConfidNetHead(500, hidden=(16,))      # reads LeNet's 500 penultimate features
        >>> confidence = head(torch.zeros(3, 500))
        >>> confidence.shape, bool(((confidence > 0) & (confidence < 1)).all())
        (torch.Size([3]), True)
    """

    def __init__(self, in_features: int, hidden: Sequence[int] = (400, 400, 400, 400)):
        super().__init__()
        layers: list[nn.Module] = []
        previous = check_int(in_features, "in_features", minimum=1)
        for width in hidden:
            layers += [nn.Linear(previous, check_int(width, "hidden", minimum=1)), nn.ReLU()]
            previous = width
        layers.append(nn.Linear(previous, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Confidence in (0, 1), shape ``[N]``."""
        return torch.sigmoid(self.net(features)).squeeze(-1)

"""Kronecker factors of the GGN for every dense and convolutional layer of a network (KFAC).

For a layer with inputs ``a`` (augmented with a 1 for the bias) and pre-activation outputs ``s``,
the GGN block of its weights ``W [out, in(+1)]`` (row-major, output-major) is approximated by
(Martens & Grosse 2015; for convolutions Grosse & Martens 2016, "KFC", in the "expand" form of
Eschenhagen et al. 2023 that laplace-torch and curvlinops use)::

    H_l ~= G_l (x) A_l,     A_l = 1/(N T) sum_{n,t} a_nt a_nt^T,     G_l = sum_{n,t} sum_c g_ntc g_ntc^T

where ``t`` runs over the ``T`` positions sharing the weights (the output pixels of a
convolution, whose inputs are the unfolded patches; ``T = 1`` for a dense layer on vectors) and
``g_ntc = (ds_nt / df_n)^T v_nc`` are the output gradients of the columns ``v_nc`` of a square
root of the output Hessian ``Lambda_n = sum_c v_nc v_nc^T`` (``hessian="ggn"``, the exact
"type-2" Fisher), or of one label sampled from the model (``hessian="mc"``, the Monte Carlo
Fisher: ``v_n = grad_f -ln p(y~_n | f_n)``, ``y~_n ~ p(y | f_n)``).

With the eigendecompositions ``A = Q_A diag(a) Q_A^T`` and ``G = Q_G diag(g) Q_G^T`` the posterior
precision of a layer, ``G (x) A + delta I``, has eigenvectors ``Q_G (x) Q_A`` and eigenvalues
``g_i a_j + delta`` (laplace-torch's ``KronDecomposed``), which give its log-determinant, its
inverse applied to a vector, draws, and ``J Sigma J^T`` without forming ``Sigma``.

EK-FAC (George et al. 2018, "Fast approximate natural gradient descent in a Kronecker-factored
eigenbasis"; the curvature kronfluence uses for influence) keeps the eigenbasis ``Q_G (x) Q_A`` and
replaces the eigenvalues ``g_i a_j`` by the curvature's own diagonal in that basis,

    s_ij = sum_n sum_c [Q_G^T J_nc Q_A]_ij^2,     J_nc = sum_t g_ntc a_nt^T,

``J_nc`` the gradient of the layer's weights for column ``c`` of example ``n`` (a second pass
over the data, :meth:`LayerFactors.correct`). Within a layer this is the projection of the exact
GGN block onto the matrices diagonal in the Kronecker eigenbasis, so it is never further from it
(in the Frobenius norm) than KFAC, and equals KFAC where KFAC is already exact.

This module holds the layer bookkeeping and the factor algebra; the Laplace classes over them are
:class:`bayesdl.inference.laplace.KronLaplace` and :class:`~bayesdl.inference.laplace.EKFACLaplace`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from bayesdl.models.bnn import BNN, Site

__all__ = ["KronLayer", "kron_layers", "layer_pass", "output_gradients", "LayerFactors"]


@dataclass
class KronLayer:
    """A dense or 2-D convolutional layer whose weight (and bias) are latent sites of a BNN."""

    name: str
    module: nn.Module
    weight: Site
    bias: Site | None

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    @property
    def width(self) -> int:
        """Columns of the weight matrix: inputs per output (``C_in kh kw`` for a conv), +1 for a bias."""
        return self.weight.shape[1:].numel() + int(self.bias is not None)

    @property
    def numel(self) -> int:
        return self.out_features * self.width

    def index(self, device) -> torch.Tensor:
        """Flat positions ``[out * width]`` of the layer's weights in the subset order: the weight
        matrix ``[out, in]`` with the bias as its last column, row-major."""
        w = self.weight
        index = torch.arange(w.offset, w.offset + w.numel, device=device).view(self.out_features, -1)
        if self.bias is not None:
            b = self.bias
            index = torch.cat([index, torch.arange(b.offset, b.offset + b.numel, device=device)[:, None]], 1)
        return index.reshape(-1)

    def inputs(self, captured: torch.Tensor) -> torch.Tensor:
        """The layer's augmented inputs ``a`` ``[N, T, width]`` from its module input: unfolded
        patches for a convolution (the order of ``weight.reshape(out, -1)``), the trailing
        dimension for a dense layer (any middle dimensions are positions sharing the weights)."""
        x = captured.detach()
        if isinstance(self.module, nn.Conv2d):
            m = self.module
            x = F.unfold(x, m.kernel_size, dilation=m.dilation, padding=m.padding, stride=m.stride)
            x = x.transpose(1, 2)  # [N, T, C_in kh kw]
        else:
            x = x.reshape(x.shape[0], -1, x.shape[-1])
        if self.bias is not None:
            x = torch.cat([x, x.new_ones(*x.shape[:-1], 1)], dim=-1)
        return x

    def gradients(self, grad: torch.Tensor) -> torch.Tensor:
        """Output gradients ``[B, N, T, out]`` from batched gradients of the module output
        ``[B, N, out, H, W]`` (convolution) or ``[B, N, ..., out]`` (dense)."""
        if isinstance(self.module, nn.Conv2d):
            return grad.flatten(3).transpose(2, 3)
        return grad.reshape(grad.shape[0], grad.shape[1], -1, grad.shape[-1])


def _check_conv(name: str, module: nn.Conv2d) -> None:
    if module.groups != 1 or isinstance(module.padding, str) or module.padding_mode != "zeros":
        raise ValueError(
            f"layer {name!r}: KFAC over all layers supports Conv2d with groups=1, numeric padding and "
            f"padding_mode='zeros' (got groups={module.groups}, padding={module.padding!r}, "
            f"padding_mode={module.padding_mode!r}); make it deterministic (BNN(..., deterministic=["
            f"{name!r}])) or use subset='last_layer'")


def kron_layers(model: BNN) -> list[KronLayer]:
    """The layers KFAC covers: every ``nn.Linear`` and ``nn.Conv2d`` with a latent weight, in the
    order of the model's sites. A latent site of any other module is a ``ValueError`` (KFAC has no
    factors for it): mark it deterministic, or use another structure."""
    sites = {s.name: s for s in model.sites}
    layers, covered = [], set()
    for name, module in model.net.named_modules():
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            continue
        prefix = f"{name}." if name else ""
        weight, bias = sites.get(prefix + "weight"), sites.get(prefix + "bias")
        if weight is None:
            if bias is not None:
                raise ValueError(f"layer {name!r} has a latent bias but a deterministic weight; KFAC needs "
                                 "both latent or the weight latent and the bias deterministic")
            continue
        if isinstance(module, nn.Conv2d):
            _check_conv(name, module)
        layers.append(KronLayer(name, module, weight, bias))
        covered.update(s.name for s in (weight, bias) if s is not None)
    others = [s.name for s in model.sites if s.name not in covered]
    if others:
        raise ValueError(
            f"KFAC over all layers covers nn.Linear and nn.Conv2d weights; the latent sites {others} belong "
            "to other modules: make them deterministic (BNN(net, deterministic=[...])), or use "
            "structure='diag' or subset='last_layer'")
    if not layers:
        raise ValueError("the network has no latent nn.Linear or nn.Conv2d layer for KFAC")
    layers.sort(key=lambda layer: layer.weight.offset)
    return layers


def layer_pass(model: BNN, weights: torch.Tensor, x: torch.Tensor, layers: list[KronLayer]):
    """The network at ``weights`` with a graph to every layer's output: ``(outputs [N, K],
    {layer name: (module input, module output)})``."""
    captured: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = [layer.module.register_forward_hook(
        lambda module, inputs, output, name=layer.name: captured.__setitem__(name, (inputs[0], output)))
        for layer in layers]
    try:
        with torch.enable_grad():
            out = model.network(x, weights.detach().requires_grad_(True))
    finally:
        for hook in hooks:
            hook.remove()
    return (out if out.dim() == 2 else out.reshape(out.shape[0], -1)), captured


def output_gradients(out: torch.Tensor, captured, layers: list[KronLayer], vectors: torch.Tensor,
                     retain_graph: bool = False) -> list[torch.Tensor]:
    """``[B, N, T, out]`` per layer: the gradients ``(ds_l / df)^T v_b`` of the layer outputs for
    each of the ``B`` output vectors ``vectors [B, N, K]`` (one backward pass each, through the
    same graph: on a CPU about 1.6x faster than one ``is_grads_batched`` pass)."""
    targets = [captured[layer.name][1] for layer in layers]
    vectors = vectors.to(out.dtype)
    per_vector = [torch.autograd.grad(out, targets, grad_outputs=v,
                                      retain_graph=retain_graph or b + 1 < len(vectors))
                  for b, v in enumerate(vectors)]
    return [layer.gradients(torch.stack(grads)) for layer, grads in zip(layers, zip(*per_vector))]


def hessian_square_root(lam: torch.Tensor) -> torch.Tensor:
    """Columns ``v_c`` with ``Lambda_n = sum_c v_nc v_nc^T`` from output Hessians ``[N, K, K]``
    (symmetric PSD), as ``[K, N, K]`` (column first), through ``Lambda = U diag(l) U^T``."""
    values, vectors = torch.linalg.eigh(lam)
    return (vectors * values.clamp_min(0).sqrt()[:, None, :]).permute(2, 0, 1)


class LayerFactors:
    """Running sums of one layer's factors, and their eigendecomposition once finalised."""

    def __init__(self, layer: KronLayer, device):
        self.layer = layer
        self.a = torch.zeros(layer.width, layer.width, dtype=torch.float64, device=device)
        self.g = torch.zeros(layer.out_features, layer.out_features, dtype=torch.float64, device=device)
        self.positions = 0  # sum over examples of T

    def add(self, a: torch.Tensor, g: torch.Tensor) -> None:
        """Add inputs ``a [N, T, width]`` and output gradients ``g [B, N, T, out]``."""
        a2 = a.reshape(-1, a.shape[-1])
        self.a += (a2.T @ a2).double()
        g2 = g.reshape(-1, g.shape[-1])
        self.g += (g2.T @ g2).double()
        self.positions += a.shape[0] * a.shape[1]

    def finalize(self, clamp) -> None:
        """``A /= N T``; eigendecompose both factors (negative rounding clamped by ``clamp``)."""
        self.a /= max(self.positions, 1)
        a, self.qa = torch.linalg.eigh(0.5 * (self.a + self.a.T))
        g, self.qg = torch.linalg.eigh(0.5 * (self.g + self.g.T))
        self.eig = clamp(g, "KFAC output factor")[:, None] * clamp(a, "KFAC input factor")[None, :]

    #: elements of one chunk of per-example gradients ``[B, n, out, width]`` in :meth:`correct`
    chunk_elements = 2**22

    def correct(self, a: torch.Tensor, g: torch.Tensor) -> None:
        """Add to the EK-FAC eigenvalues (after :meth:`finalize`): inputs ``a [N, T, width]`` and
        output gradients ``g [B, N, T, out]`` of the same examples, the squared per-example
        gradients ``Q_G^T J_nb Q_A`` summed over examples ``n`` and columns ``b``."""
        if not hasattr(self, "corrected"):
            self.corrected = torch.zeros_like(self.eig)
        aa, ga = self._rotated(a, g)
        if a.shape[1] == 1:  # a dense layer on vectors: J_nb = g_nb a_n^T, so the square factorises
            self.corrected += (ga[:, :, 0] ** 2).sum(0).T @ (aa[:, 0] ** 2)
            return
        for j in self._rotated_gradients(aa, ga):
            self.corrected += (j**2).sum((0, 1))

    def _rotated(self, a: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs ``[N, T, width]`` and output gradients ``[B, N, T, out]`` in the eigenbases."""
        return a.double() @ self.qa, g.double() @ self.qg

    def _rotated_gradients(self, aa: torch.Tensor, ga: torch.Tensor):
        """``Q_G^T J_nb Q_A`` ``[B, n, out, width]`` over chunks of the examples ``n``."""
        per = max(1, self.chunk_elements // (ga.shape[0] * self.eig.numel()))
        for start in range(0, aa.shape[0], per):
            yield torch.einsum("bnto,nti->bnoi", ga[:, start:start + per], aa[start:start + per])

    def inverse_quadratic(self, a: torch.Tensor, g: torch.Tensor, delta: float) -> torch.Tensor:
        """``vec(J_n)^T (H_l + delta I)^-1 vec(J_n)`` ``[N]``, summed over the ``B`` columns, for the
        per-example gradients ``J_nb = sum_t g_nbt a_nt^T`` of inputs ``a [N, T, width]`` and output
        gradients ``g [B, N, T, out]``, in the eigenbasis without forming the ``[P_l]`` vectors
        (a dense layer: ``J_n`` has rank one, so ``O(out^2 + width^2)`` per example instead of
        ``O(out width (out + width))`` for :meth:`solve` of the flat gradient)."""
        w = 1.0 / (self.eig + delta)  # [out, width]
        aa, ga = self._rotated(a, g)
        if a.shape[1] == 1:
            return torch.einsum("bno,oi,ni->n", ga[:, :, 0] ** 2, w, aa[:, 0] ** 2)
        return torch.cat([(j**2 * w).sum((0, 2, 3)) for j in self._rotated_gradients(aa, ga)])

    def finalize_correction(self) -> None:
        """Use the corrected eigenvalues from now on (EK-FAC)."""
        self.eig = self.corrected

    def kron(self) -> torch.Tensor:
        """The dense block ``[P_l, P_l]`` (for checks on small layers): ``G (x) A``, or after
        :meth:`finalize_correction` ``Q diag(s) Q^T`` with ``Q = Q_G (x) Q_A``."""
        if hasattr(self, "corrected") and self.eig is self.corrected:
            q = torch.kron(self.qg, self.qa)
            return (q * self.eig.reshape(-1)) @ q.T
        return torch.kron(self.g, self.a)

    def solve(self, v: torch.Tensor, delta: float) -> torch.Tensor:
        """``(G (x) A + delta I)^-1 v`` for ``v [M, out, width]``."""
        return self.qg @ ((self.qg.T @ v @ self.qa) / (self.eig + delta)) @ self.qa.T

    def output_covariance(self, a: torch.Tensor, g: torch.Tensor, delta: float) -> torch.Tensor:
        """``J_l Sigma_l J_l^T`` ``[N, K, K]`` from inputs ``a [N, T, width]`` and the output
        gradients of the unit vectors ``g [K, N, T, out]``: the Jacobian of output ``k`` in the
        layer's weights is ``sum_t g_ktn a_nt^T``; in the eigenbasis it is divided by ``eig + delta``."""
        w = 1.0 / (self.eig + delta)  # [out, width]
        ga = g.double() @ self.qg  # [K, N, T, out]
        aa = a.double() @ self.qa  # [N, T, width]
        if a.shape[1] == 1:  # dense: (sum_pi ga_kp ga_lp aa_i^2 w_pi)
            s = (aa[:, 0] ** 2) @ w.T  # [N, out]
            return torch.einsum("knp,lnp,np->nkl", ga[:, :, 0], ga[:, :, 0], s)
        m = torch.einsum("kntp,nti->nkpi", ga, aa)
        return torch.einsum("nkpi,nlpi->nkl", m * w, m)

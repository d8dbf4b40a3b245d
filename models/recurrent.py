"""Recurrent text networks with the dropout of Gal & Ghahramani (2016), "A theoretically grounded
application of dropout in recurrent neural networks" (NeurIPS).

:class:`RecurrentRegressor` is a plain ``nn.Module`` -- word embedding, LSTM or GRU layers, a dense
head -- that takes a batch of token ids ``[N, L]`` (left-padded with ``0``) and returns ``[N,
out_features]`` from the last hidden state. Lift it into a Pyro model with
:class:`bayesdl.models.BNN`; every method of the registry then works on it
(``approximate("dropout" | "mean_field" | "map", BNN(net, ...), data)``).

**Variational dropout** (``variant="variational"``, the paper's). For each sequence ``b`` one
Bernoulli mask per slot, *the same at every time step*::

    e_bt = W_E[w_bt] * z^E_b[w_bt] / (1 - p_E)         word types dropped (a row of W_E per sequence)
    x_bt = e_bt * z^x_b / (1 - p_x)                     inputs      -> W_ih diag(z^x_b)
    gates = W_ih x_bt + W_hh (h_b,t-1 * z^h_b / (1 - p_h)) + b     recurrent state -> W_hh diag(z^h_b)
    out_b = W_o (h_bL * z^o_b / (1 - p_o)) + b_o                    outputs     -> W_o diag(z^o_b)

which is exactly the dropout guide's ``q(W) = M diag(z) / (1 - p)`` with one weight draw per
sequence, so :class:`bayesdl.inference.DropoutGuide` trains it as variational inference with its
usual prior term ``||M||^2 / (2 s^2 (1 - p))`` on every masked weight -- embedding and recurrent
weights included. Each masked layer says which slot masks which of its weights, and along which
axis, through :meth:`masked_weights` (the hook the guide reads).

**Naive dropout** (``variant="naive"``, the baseline of the paper, Zaremba et al. 2014): a new
mask at every time step and element on the inputs, a mask on the outputs, none on the recurrent
state and no word-type dropout.

Padding: id ``0`` is the padding token and ids ``1 .. vocab_size - 1`` are words. Sequences are
padded on the left; the state stays at zero through the padding, so a padded sequence gives
exactly the output of the unpadded one. Every row must hold at least one word.

MC prediction: masks are drawn per sequence, so ``T`` passes over ``N`` sequences are one pass over
the ``T x N`` repeated sequences; :meth:`RecurrentRegressor.mc_batch_copies` tells the dropout
guide how many copies to run at once (``max_rows`` rows per pass).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from bayesdl.checks import check_int, check_probability

from .networks import Dropout

__all__ = ["RecurrentRegressor", "RecurrentLayer", "WordEmbedding", "TiedDropout", "WordDropout",
           "VARIANTS", "CELLS", "check_tokens"]

VARIANTS = ("variational", "naive")
#: cell -> number of gates (the rows of ``weight_ih`` are ``gates * hidden_size``, in torch's order:
#: LSTM ``i, f, g, o``, GRU ``r, z, n``)
CELLS = {"lstm": 4, "gru": 3}
#: the largest input projection (rows x steps x gates x bytes) computed in one product without a gradient
PROJECTION_BYTES = 64 * 2**20


class TiedDropout(Dropout):
    """A dropout slot whose mask is drawn once per sequence and reused at every time step.

    ``mask(x)`` for ``x`` ``[B, ..., F]`` returns the inverted-dropout mask ``z / (1 - p)`` of shape
    ``[B, F]`` (``z ~ Bernoulli(1 - p)``), or ``None`` when the slot is off (eval mode or ``p = 0``).
    Calling the module is the same (so forward hooks see each draw).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor | None:
        if not self.training or self.p == 0.0:
            return None
        shape = (x.shape[0], x.shape[-1])
        if self.p == 1.0:
            return x.new_zeros(shape)
        return torch.rand(shape, dtype=x.dtype, device=x.device).ge_(self.p).mul_(1.0 / (1.0 - self.p))

    mask = forward


class WordDropout(Dropout):
    """Embedding dropout of Gal & Ghahramani (2016, sec. 4): a word type is dropped *for a whole
    sequence*, wherever it occurs in it (a row of the embedding matrix dropped per sequence).

    Called with token ids ``[B, L]``, it returns the mask ``z_b[w_bt] / (1 - p)`` ``[B, L, 1]`` (one
    Bernoulli draw per distinct (sequence, word) pair), or ``None`` when the slot is off.
    """

    def forward(self, tokens: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor | None:
        if not self.training or self.p == 0.0:
            return None
        rows = torch.arange(tokens.shape[0], device=tokens.device)[:, None]
        keys = rows * (int(tokens.max()) + 1) + tokens
        unique, inverse = torch.unique(keys, return_inverse=True)
        keep = torch.rand(unique.shape[0], dtype=dtype, device=tokens.device).ge_(self.p)
        return (keep[inverse] * (1.0 / (1.0 - self.p)))[..., None]


class WordEmbedding(nn.Module):
    """A word embedding ``weight`` ``[V, E]`` with its word-type dropout slot (:class:`WordDropout`)."""

    def __init__(self, vocab_size: int, embedding_dim: int, p: float):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(vocab_size, embedding_dim) * (1.0 / math.sqrt(embedding_dim)))
        self.drop = WordDropout(p)

    def masked_weights(self) -> dict[str, tuple[nn.Module, int]]:
        """``{weight attribute: (dropout slot, axis of the weight its mask indexes)}``: the slot drops
        rows (word types) of ``weight``."""
        return {"weight": (self.drop, 0)}

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` ids -> ``[B, L, E]`` vectors, word types dropped per sequence when the slot is on."""
        mask = self.drop(tokens, self.weight.dtype)
        embedded = F.embedding(tokens, self.weight)
        return embedded if mask is None else embedded * mask


class RecurrentLayer(nn.Module):
    """One LSTM or GRU layer written with the cell's weights (torch's ``nn.LSTMCell`` / ``nn.GRUCell``
    parameterisation: ``weight_ih [G H, I]``, ``weight_hh [G H, H]``, ``bias_ih``, ``bias_hh``), so that
    dropout masks can act on the recurrent state fed back.

    Variational: :class:`TiedDropout` slots ``drop_input`` (on ``x_t``) and ``drop_hidden`` (on
    ``h_t-1`` where it enters ``W_hh``), one mask per sequence for all steps. Naive: ``drop_input`` is
    a plain :class:`~bayesdl.models.Dropout` on the whole input sequence (a new mask per step and
    element) and there is no ``drop_hidden``.
    """

    def __init__(self, input_size: int, hidden_size: int, cell: str, variant: str, p_input: float,
                 p_hidden: float):
        super().__init__()
        self.cell, self.variant, self.hidden_size = cell, variant, hidden_size
        rows = CELLS[cell] * hidden_size
        bound = 1.0 / math.sqrt(hidden_size)  # torch's initialisation of its recurrent cells
        for name, shape in (("weight_ih", (rows, input_size)), ("weight_hh", (rows, hidden_size)),
                            ("bias_ih", (rows,)), ("bias_hh", (rows,))):
            self.register_parameter(name, nn.Parameter(torch.empty(shape).uniform_(-bound, bound)))
        if variant == "variational":
            self.drop_input, self.drop_hidden = TiedDropout(p_input), TiedDropout(p_hidden)
        else:
            self.drop_input, self.drop_hidden = Dropout(p_input), None

    def masked_weights(self) -> dict[str, tuple[nn.Module, int]]:
        """``{weight attribute: (dropout slot, axis its mask indexes)}``: ``drop_input`` masks the
        columns of ``weight_ih``, ``drop_hidden`` those of ``weight_hh`` (the hook
        :class:`bayesdl.inference.DropoutGuide` reads to give these weights their prior term)."""
        declared = {"weight_ih": (self.drop_input, 1)}
        if self.drop_hidden is not None:
            declared["weight_hh"] = (self.drop_hidden, 1)
        return declared

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None, start: int = 0,
                keep_sequence: bool = False) -> torch.Tensor:
        """``x`` ``[B, L, I]`` -> the last hidden state ``[B, H]`` (or all of them ``[B, L, H]`` with
        ``keep_sequence``). ``valid`` ``[B, L, 1]`` (float, 1 at words, 0 at the left padding, or
        ``None``: no padding) holds the state at zero through the padding; steps before ``start``
        are padding in every row and are skipped."""
        if self.drop_hidden is None:  # naive: a fresh mask at every step and element
            x = self.drop_input(x)
            hidden_mask = None
        else:
            input_mask = self.drop_input(x)
            if input_mask is not None:
                x = x * input_mask[:, None, :]
            hidden_mask = None
        steps = x.shape[1]
        h = x.new_zeros(x.shape[0], self.hidden_size)
        if self.drop_hidden is not None:
            hidden_mask = self.drop_hidden(h)
        c = h if self.cell == "lstm" else None
        # The input projection of all steps is one product (unbind, not indexing: the gradient of one
        # unbind is one stack, that of L indexings L full-size adds); without a gradient and above
        # PROJECTION_BYTES (a prediction of many rows) it is made per step, so memory stays O(rows x H).
        size = x.shape[0] * (steps - start) * self.weight_ih.shape[0] * x.element_size()
        whole = torch.is_grad_enabled() or size <= PROJECTION_BYTES
        lstm = self.cell == "lstm"
        # an LSTM adds both biases to the gates: once, into the input projection
        bias_x = self.bias_ih + self.bias_hh if lstm else self.bias_ih
        projected = F.linear(x[:, start:], self.weight_ih, bias_x).unbind(1) if whole else None
        weight_hh_t = self.weight_hh.t()
        outputs = []
        for t in range(start, steps):
            gx = projected[t - start] if projected is not None else F.linear(x[:, t], self.weight_ih, bias_x)
            fed = h if hidden_mask is None else h * hidden_mask
            if lstm:  # gates = gx + W_hh fed, one fused product
                h, c = self._lstm(torch.addmm(gx, fed, weight_hh_t), c)
            else:
                h = self._gru(gx, torch.addmm(self.bias_hh, fed, weight_hh_t), h)
            if valid is not None and t < valid.shape[1] and valid.shape[1] > 0:
                v = valid[:, t]
                h = h * v
                c = c * v if c is not None else None
            if keep_sequence:
                outputs.append(h)
        if keep_sequence:
            pad = [x.new_zeros(x.shape[0], self.hidden_size)] * start
            return torch.stack(pad + outputs, dim=1)
        return h

    def _lstm(self, gates, c):
        """One LSTM update from the gates ``W_ih x + b_ih + W_hh h + b_hh`` (order i, f, g, o)."""
        i, f, _, o = torch.sigmoid(gates).chunk(4, 1)  # one sigmoid over the gates (g's is unused)
        g = torch.tanh(gates[:, 2 * self.hidden_size:3 * self.hidden_size])
        c = torch.addcmul(f * c, i, g)
        return o * torch.tanh(c), c

    def _gru(self, gx, gh, h):
        """One GRU update from ``gx = W_ih x + b_ih`` and ``gh = W_hh h + b_hh`` (order r, z, n)."""
        xr, xz, xn = gx.chunk(3, 1)
        hr, hz, hn = gh.chunk(3, 1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return n + z * (h - n)


def check_tokens(x, vocab_size: int, name: str = "x", *, allow_empty: bool = False) -> torch.Tensor:
    """Token ids as a ``[N, L]`` long tensor, checked: integers (an integer tensor, or a floating one
    holding whole numbers, as :class:`~bayesdl.models.BNN` hands them on), rank 2, ``L >= 1``, every id
    in ``[0, vocab_size)`` and (unless ``allow_empty``) at least one word (id > 0) in every row.
    ``TypeError``/``ValueError`` naming the problem otherwise."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a tensor of token ids [N, L], got {type(x).__name__}")
    if x.dtype == torch.bool or x.is_complex():
        raise TypeError(f"{name} must hold integer token ids, got dtype {x.dtype}; pass a LongTensor")
    if x.dim() != 2:
        raise ValueError(f"{name} must be a batch of token sequences [N, L] (ids, left-padded with 0), got "
                         f"shape {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}): pass at least one sequence of at least "
                         "one token")
    if x.is_floating_point():
        if not bool(torch.isfinite(x).all()) or bool((x != x.round()).any()):
            raise TypeError(f"{name} must hold integer token ids, got dtype {x.dtype} with values that are "
                            "not whole numbers; pass a LongTensor of ids")
        x = x.long()
    low, high = int(x.min()), int(x.max())
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise ValueError(f"{name} holds token id {bad}, outside the vocabulary [0, {vocab_size}) of the "
                         f"network (0 is padding); map unknown words to an id below {vocab_size}")
    empty = None if allow_empty else (x == 0).all(dim=1)
    if empty is not None and bool(empty.any()):
        row = int(empty.nonzero()[0])
        raise ValueError(f"{name} row {row} is an empty sequence (all padding, id 0): every sequence needs "
                         "at least one word")
    return x


class RecurrentRegressor(nn.Module):
    """Word embedding -> ``num_layers`` LSTM/GRU layers -> dropout -> dense head, from the last state.

    Parameters
    ----------
    vocab_size:
        Number of token ids, padding (id 0) included.
    embedding_dim, hidden_size, num_layers, out_features:
        Sizes (the paper's sentiment network: 128, 128, 1 layer, 1 output).
    cell:
        ``"lstm"`` or ``"gru"`` (torch's cell equations and gate order).
    variant:
        ``"variational"`` (tied masks, recurrent dropout, word-type dropout) or ``"naive"``
        (per-step masks on the inputs, none on the recurrent state); see the module notes.
    p_embedding, p_input, p_hidden, p_output:
        Dropout rates of the slots (the paper's sentiment run: 0.25 each). A slot with rate 0 is
        inactive unless a :class:`~bayesdl.inference.DropoutGuide` is given its own ``p``.
    max_rows:
        Rows (copies x sequences) one batched MC-dropout pass may hold (see :meth:`mc_batch_copies`);
        ``None`` (default): 32,768 on a GPU, and on a CPU one copy at a time -- there, measured, a
        pass over ``k`` copies is slower than ``k`` passes (the per-step tensors leave the cache).

    ``forward(x)``: token ids ``[N, L]`` -> ``[N, out_features]``.

    Example::

        >>> import torch
        >>> from bayesdl.models import RecurrentRegressor
        >>> net = RecurrentRegressor(vocab_size=20, embedding_dim=8, hidden_size=8).eval()
        >>> tokens = torch.tensor([[0, 0, 3, 5], [2, 7, 1, 4]])     # left-padded with 0
        >>> net(tokens).shape
        torch.Size([2, 1])
        >>> torch.allclose(net(tokens[:1]), net(torch.tensor([[3, 5]])))   # padding changes nothing
        True
    """

    def __init__(self, vocab_size: int, embedding_dim: int = 128, hidden_size: int = 128,
                 out_features: int = 1, *, num_layers: int = 1, cell: str = "lstm",
                 variant: str = "variational",
                 p_embedding: float = 0.25, p_input: float = 0.25, p_hidden: float = 0.25,
                 p_output: float = 0.25, max_rows: int | None = None):
        super().__init__()
        self.vocab_size = check_int(vocab_size, "vocab_size", minimum=2)
        embedding_dim = check_int(embedding_dim, "embedding_dim", minimum=1)
        hidden_size = check_int(hidden_size, "hidden_size", minimum=1)
        num_layers = check_int(num_layers, "num_layers", minimum=1)
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        given = {"p_embedding": p_embedding, "p_input": p_input, "p_hidden": p_hidden, "p_output": p_output}
        rates = {name: check_probability(value, name) for name, value in given.items()}
        self.variant, self.cell = variant, cell
        self.max_rows = None if max_rows is None else check_int(max_rows, "max_rows", minimum=1)
        # naive dropout drops no word types: its embedding slot is off
        self.embedding = WordEmbedding(self.vocab_size, embedding_dim,
                                       rates["p_embedding"] if variant == "variational" else 0.0)
        self.layers = nn.ModuleList(
            RecurrentLayer(embedding_dim if k == 0 else hidden_size, hidden_size, cell, variant,
                           rates["p_input"], rates["p_hidden"]) for k in range(num_layers))
        self.drop_output = Dropout(rates["p_output"])
        self.head = nn.Linear(hidden_size, check_int(out_features, "out_features", minimum=1))

    @property
    def last_layer(self) -> nn.Linear:
        return self.head

    def validate_inputs(self, x) -> torch.Tensor:
        """The checks of :func:`check_tokens` at the boundary (``BNN.check_inputs`` calls it first)."""
        return check_tokens(x, self.vocab_size)

    def mc_batch_copies(self, x: torch.Tensor, num_samples: int) -> int:
        """How many of ``num_samples`` MC-dropout passes over ``x`` ``[N, L]`` to run as one batch of
        repeated sequences: ``max_rows // N`` (at least 1, at most ``num_samples``; see ``max_rows``
        for the default). Valid because every mask is drawn per row (sequence)."""
        rows = self.max_rows
        if rows is None:
            rows = 32_768 if x.device.type == "cuda" else x.shape[0]
        return max(1, min(num_samples, rows // max(1, x.shape[0])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Token ids ``[N, L]`` (left-padded with 0) -> outputs ``[N, out_features]``. An all-padding
        row (refused by :meth:`validate_inputs`, the boundary) gives the output of the zero state."""
        tokens = check_tokens(x, self.vocab_size, allow_empty=True)
        present = tokens != 0
        # the first word of each row (left padding); L for a row of padding only
        first = torch.where(present.any(dim=1), present.float().argmax(dim=1), present.shape[1])
        start, last_pad = int(first.min()), int(first.max())
        valid = present[:, :last_pad, None].to(self.head.weight.dtype) if last_pad > 0 else None
        h = self.embedding(tokens)
        # steps before `start` are padding in every row: the state stays zero there, in every layer
        for k, layer in enumerate(self.layers):
            h = layer(h, valid, start, keep_sequence=k < len(self.layers) - 1)
        return self.head(self.drop_output(h))

"""Speed of the variational LSTM (bayesdl) against plain PyTorch doing the same work, in one run.

Every row trains the same network -- embedding, one LSTM layer, dropout, a dense output, from
the last state -- on the same random token sequences (batch 128, Adam, a Gaussian likelihood
with a learned noise scale and an L2 prior term), and is reported as the median of interleaved
rounds and as a ratio to the plain ``nn.LSTMCell`` loop:

- ``plain_cell``   plain PyTorch: an ``nn.LSTMCell`` loop with the variational RNN's tied masks (one
  mask per sequence on the inputs, the recurrent state, the output; word types dropped per
  sequence) -- the same work as bayesdl's variational row, the floor;
- ``plain_fused``  plain PyTorch ``nn.LSTM`` (cuDNN/oneDNN fused), input and output dropout only, no
  recurrent dropout -- what the recurrent masks cost;
- ``variational``  ``approximate("dropout", BNN(RecurrentRegressor(...)))`` through ``fit``;
- prediction: ``Posterior.predict`` with ``T`` MC passes (run as batches of repeated sequences)
  against ``T`` plain ``nn.LSTMCell`` loops over the test sequences.

Targets (issue 30): variational epoch <= 1.2x plain_cell; MC prediction of T = 50 <= 0.8x 50 plain loops.

    python benchmarks/rnn_speed.py [--train 2048] [--length 200] [--hidden 32] [--samples 50] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from bayesdl.inference import approximate
from bayesdl.models import BNN, Gaussian, NormalPrior, RecurrentRegressor

P = 0.25


class PlainCellLSTM(nn.Module):
    """Plain PyTorch: embedding -> ``nn.LSTMCell`` loop with tied masks -> dropout -> dense."""

    def __init__(self, vocab: int, embedding: int, hidden: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embedding)
        self.cell = nn.LSTMCell(embedding, hidden)
        self.head = nn.Linear(hidden, 1)

    def forward(self, tokens):
        b = tokens.shape[0]
        keys = torch.arange(b, device=tokens.device)[:, None] * int(tokens.max() + 1) + tokens
        unique, inverse = torch.unique(keys, return_inverse=True)
        word = (torch.rand(unique.shape[0], device=tokens.device) >= P).float()[inverse] / (1 - P)
        e = self.embedding(tokens) * word[..., None]
        z_x = (torch.rand(b, e.shape[-1], device=tokens.device) >= P).float() / (1 - P)
        z_h = (torch.rand(b, self.cell.hidden_size, device=tokens.device) >= P).float() / (1 - P)
        e = e * z_x[:, None]
        h = e.new_zeros(b, self.cell.hidden_size)
        c = torch.zeros_like(h)
        for e_t in e.unbind(1):  # one stack in the backward pass (e[:, t] would add L full-size tensors)
            h, c = self.cell(e_t, (h * z_h, c))
        return self.head(F.dropout(h, P, self.training))


class PlainFusedLSTM(nn.Module):
    """Plain PyTorch ``nn.LSTM``: dropout on the embedded inputs and the output, none recurrent."""

    def __init__(self, vocab: int, embedding: int, hidden: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embedding)
        self.lstm = nn.LSTM(embedding, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, tokens):
        _, (h, _) = self.lstm(F.dropout(self.embedding(tokens), P, self.training))
        return self.head(F.dropout(h[-1], P, self.training))


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain_epoch(net, x, y, device) -> float:
    """One epoch of plain training: Gaussian NLL with a learned log-noise, L2 on the weights."""
    log_noise = torch.zeros((), device=device, requires_grad=True)
    opt = torch.optim.Adam([*net.parameters(), log_noise], lr=1e-3)
    net.train()
    _sync(device)
    start = time.perf_counter()
    for idx in torch.randperm(len(x), device=device).split(128):
        out = net(x[idx]).squeeze(-1)
        nll = (0.5 * ((y[idx] - out) / log_noise.exp()) ** 2 + log_noise).sum() * (len(x) / len(idx))
        prior = sum((w * w).sum() for w in net.parameters()) * 0.5
        opt.zero_grad(set_to_none=True)
        (nll + prior).backward()
        opt.step()
    _sync(device)
    return time.perf_counter() - start


def bayesdl_epoch(x, y, vocab, args, device):
    torch.manual_seed(0)
    net = RecurrentRegressor(vocab, args.hidden, args.hidden, p_embedding=P, p_input=P, p_hidden=P,
                             p_output=P)
    model = BNN(net, prior=NormalPrior(1.0), likelihood=Gaussian())
    _sync(device)
    start = time.perf_counter()
    posterior = approximate("dropout", model, (x, y), epochs=1, batch_size=128, progress=False, seed=0,
                            device=str(device))
    _sync(device)
    return time.perf_counter() - start, posterior


def plain_predict(net, x, samples, device) -> float:
    net.train()  # MC dropout: the masks on
    _sync(device)
    start = time.perf_counter()
    with torch.no_grad():
        for _ in range(samples):
            torch.cat([net(chunk) for chunk in x.split(512)])
    _sync(device)
    return time.perf_counter() - start


def bayesdl_predict(posterior, x, samples, device) -> float:
    _sync(device)
    start = time.perf_counter()
    posterior.predict(x, num_samples=samples, batch_size=512)
    _sync(device)
    return time.perf_counter() - start


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=int, default=2048, help="training sequences per epoch")
    parser.add_argument("--predict", type=int, default=512, help="test sequences to predict")
    parser.add_argument("--length", type=int, default=200, help="tokens per sequence")
    parser.add_argument("--vocab", type=int, default=20002)
    parser.add_argument("--hidden", type=int, default=32, help="embedding and LSTM size")
    parser.add_argument("--samples", type=int, default=50, help="MC passes in prediction")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(1, args.vocab, (args.train, args.length), generator=g).to(device)
    y = torch.randn(args.train, generator=g).to(device)
    x_test = torch.randint(1, args.vocab, (args.predict, args.length), generator=g).to(device)
    rows = ("plain_cell", "plain_fused", "variational", "predict_plain", "predict_bayesdl")
    times = {key: [] for key in rows}
    for _ in range(args.rounds):
        torch.manual_seed(0)
        cell = PlainCellLSTM(args.vocab, args.hidden, args.hidden).to(device)
        times["plain_cell"].append(plain_epoch(cell, x, y, device))
        torch.manual_seed(0)
        fused = PlainFusedLSTM(args.vocab, args.hidden, args.hidden).to(device)
        times["plain_fused"].append(plain_epoch(fused, x, y, device))
        seconds, posterior = bayesdl_epoch(x, y, args.vocab, args, device)
        times["variational"].append(seconds)
        times["predict_plain"].append(plain_predict(cell, x_test, args.samples, device))
        times["predict_bayesdl"].append(bayesdl_predict(posterior, x_test, args.samples, device))
    median = {k: statistics.median(v) for k, v in times.items()}
    ratios = {"variational / plain_cell": median["variational"] / median["plain_cell"],
              "plain_fused / plain_cell": median["plain_fused"] / median["plain_cell"],
              f"predict T={args.samples}: bayesdl / plain loops":
                  median["predict_bayesdl"] / median["predict_plain"]}
    result = {"config": vars(args), "median_seconds": median, "ratios": ratios}
    print(f"{'row':<28}{'median s':>10}")
    for key, value in median.items():
        print(f"{key:<28}{value:>10.3f}")
    for key, value in ratios.items():
        print(f"{key:<44}{value:>8.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()

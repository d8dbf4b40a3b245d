"""The recurrent networks of bayesdl.models.recurrent with the dropout of Gal & Ghahramani (2016b):
tied masks, the naive variant, the dropout guide's prior term, and the predictive against an
independent loop over torch's own LSTMCell / GRUCell."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from bayesdl.inference import DropoutGuide, approximate
from bayesdl.models import BNN, Gaussian, NormalPrior, RecurrentRegressor

V, E, H = 12, 5, 4


def _tokens(rows=3, length=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(1, V, (rows, length), generator=g)
    x[0, :3] = 0  # left padding
    if rows > 2:
        x[2, :1] = 0
    return x


def _capture(modules):
    """Forward hooks recording ``(module, input, output)`` of every call."""
    calls = []
    hooks = [m.register_forward_hook(lambda m, i, o: calls.append((m, i, o))) for m in modules]
    return calls, hooks


def _model(cell="lstm", variant="variational", p=0.5, seed=0):
    torch.manual_seed(seed)
    net = RecurrentRegressor(V, E, H, cell=cell, variant=variant, p_embedding=p, p_input=p, p_hidden=p,
                             p_output=p)
    return BNN(net, prior=NormalPrior(0.7), likelihood=Gaussian(scale=0.5))


def _hand_loop(weights, tokens, word_mask, input_mask, hidden_mask, cell):
    """Independent: torch's own LSTMCell/GRUCell over each sequence without its padding, masks
    applied as the paper writes them (input and recurrent-state masks the same at every step)."""
    torch_cell = (nn.LSTMCell if cell == "lstm" else nn.GRUCell)(E, H)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(torch_cell, name).copy_(weights[f"layers.0.{name}"])
    states = []
    for b in range(tokens.shape[0]):
        h = torch.zeros(1, H)
        c = torch.zeros(1, H)
        for t in range(tokens.shape[1]):
            if tokens[b, t] == 0:
                continue
            e = weights["embedding.weight"][tokens[b, t]] * word_mask(b, t)
            x_t = (e * input_mask(b, t))[None]
            fed = h * hidden_mask(b)
            if cell == "lstm":
                # LSTMCell applies W_hh to its h argument; the cell state is not masked
                h_new, c = torch_cell(x_t, (fed, c))
            else:
                # GRU: W_hh sees the masked state, the interpolation the state itself
                gh = fed @ torch_cell.weight_hh.T + torch_cell.bias_hh
                gx = x_t @ torch_cell.weight_ih.T + torch_cell.bias_ih
                r = torch.sigmoid(gx[:, :H] + gh[:, :H])
                z = torch.sigmoid(gx[:, H:2 * H] + gh[:, H:2 * H])
                n = torch.tanh(gx[:, 2 * H:] + r * gh[:, 2 * H:])
                h_new = (1 - z) * n + z * h
            h = h_new
        states.append(h[0])
    return torch.stack(states)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_variational_predictive_matches_a_hand_written_loop_with_the_same_masks(cell):
    model = _model(cell)
    guide = DropoutGuide(model, p=None)
    x = _tokens()
    net = model.net
    assert net.mc_batch_copies(x, 50) == 1  # on a CPU, passes one at a time by default (measured faster)
    net.max_rows = 4096
    assert net.mc_batch_copies(x, 50) == 50 and net.mc_batch_copies(torch.ones(1000, 5), 50) == 4
    layer = net.layers[0]
    slots = [net.embedding.drop, layer.drop_input, layer.drop_hidden, net.drop_output]
    guide.setup(x)
    calls, hooks = _capture(slots)
    torch.manual_seed(1)
    with torch.no_grad():
        out = guide.predictive_outputs(x, 3)  # three passes, run as one batch of repeated rows
    for hook in hooks:
        hook.remove()
    assert out.shape == (3, 3, 1)
    by_slot = {m: (i, o) for m, i, o in calls}
    assert [m for m, _, _ in calls].count(layer.drop_hidden) == 1  # one recurrent mask per pass, not per step
    word = by_slot[net.embedding.drop][1]  # [3N, L, 1]
    z_in, z_h = by_slot[layer.drop_input][1], by_slot[layer.drop_hidden][1]  # [3N, E], [3N, H]
    (out_in,), out_out = by_slot[net.drop_output]
    weights = {k: v.detach() for k, v in model.unflatten(guide.weights.detach()).items()}
    rows = x.repeat(3, 1)
    states = _hand_loop(weights, rows, lambda b, t: word[b, t, 0], lambda b, t: z_in[b], lambda b: z_h[b], cell)
    torch.testing.assert_close(out_in, states, rtol=1e-5, atol=1e-6)
    expected = out_out @ weights["head.weight"].T + weights["head.bias"]
    torch.testing.assert_close(out.reshape(9, 1), expected, rtol=1e-5, atol=1e-6)
    # output mask: inverted dropout of the last state, and different passes have different masks
    ratio = out_out / out_in
    assert set(torch.unique(ratio.round(decimals=4)).tolist()) <= {0.0, 2.0}
    assert not torch.equal(z_h[:3], z_h[3:6])


def test_the_gru_without_masks_is_torchs_gru_cell():
    model = _model("gru", p=0.0)
    x = _tokens()
    weights = {k: v.detach() for k, v in model.unflatten(model.initial_values()).items()}
    cell = nn.GRUCell(E, H)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(weights[f"layers.0.{name}"])
        states = []
        for b in range(3):
            h = torch.zeros(1, H)
            for t in range(x.shape[1]):
                if x[b, t]:
                    h = cell(weights["embedding.weight"][x[b, t]][None], h)
            states.append(h[0])
        expected = torch.stack(states) @ weights["head.weight"].T + weights["head.bias"]
        torch.testing.assert_close(model.network(x, model.initial_values()), expected, rtol=1e-5, atol=1e-6)


def test_tied_masks_are_the_same_at_every_step_and_differ_between_sequences():
    model = _model()
    guide = DropoutGuide(model, p=None)
    x = torch.randint(1, V, (64, 9))
    x[:, 4] = x[:, 1]  # a word type twice in every sequence
    layer, net = model.net.layers[0], model.net
    guide.setup(x)
    calls, hooks = _capture([layer.drop_input, layer.drop_hidden, net.embedding.drop])
    with torch.no_grad():
        guide.network_output(x)
    for hook in hooks:
        hook.remove()
    modules = [m for m, _, _ in calls]
    # one draw of each tied slot for the whole sequence (not one per step)
    assert modules.count(layer.drop_input) == modules.count(layer.drop_hidden) == 1
    masks = {m: o for m, _, o in calls}
    z_in = masks[layer.drop_input]
    assert z_in.shape == (64, E) and len({tuple(row.tolist()) for row in z_in}) > 15  # of 32 possible masks
    word = masks[net.embedding.drop][..., 0]  # [64, 9]
    # a word type is dropped for the whole sequence: its two occurrences share one mask value ...
    assert torch.equal(word[:, 1], word[:, 4])
    # ... and different sequences draw their own
    assert 0 < int((word[:, 1] == 0).sum()) < 64


def test_the_naive_variant_draws_a_new_mask_at_every_step_and_none_on_the_state():
    model = _model(variant="naive")
    layer, net = model.net.layers[0], model.net
    assert layer.drop_hidden is None and net.embedding.drop.p == 0.0
    guide = DropoutGuide(model, p=None)
    x = torch.randint(1, V, (8, 10))
    guide.setup(x)
    calls, hooks = _capture([layer.drop_input])
    with torch.no_grad():
        guide.network_output(x)
    hooks[0].remove()
    (_, (inputs,), masked), = calls
    mask = masked / inputs  # [8, 10, E], elementwise 0 or 1 / (1 - p)
    assert set(torch.unique(mask.round(decimals=4)).tolist()) <= {0.0, 2.0}
    per_step = [tuple(mask[0, t].tolist()) for t in range(10)]
    assert len(set(per_step)) > 5  # not tied across time steps


def test_the_prior_term_is_the_dropout_guides_with_the_recurrent_weights_included():
    p, scale = 0.5, 0.7
    for variant, masked in (("variational", {"embedding.weight", "layers.0.weight_ih", "layers.0.weight_hh",
                                            "head.weight"}),
                            ("naive", {"layers.0.weight_ih", "head.weight"})):
        model = _model(variant=variant, p=p)
        guide = DropoutGuide(model, p=None)
        guide.setup(_tokens())
        assert {s for s, r in guide.site_rates.items() if r > 0} == masked
        # independent: ||M||^2 / (2 s^2 (1 - p)) on the masked weights, ||M||^2 / (2 s^2) on the rest,
        # plus the normaliser of the Gaussian prior
        expected = 0.0
        for name, value in model.unflatten(guide.weights.detach()).items():
            factor = 1.0 / (1.0 - p) if name in masked else 1.0
            expected += factor * float((value.double() ** 2).sum()) / (2 * scale**2)
            expected += value.numel() * 0.5 * math.log(2 * math.pi * scale**2)
        assert float(guide.kl().detach()) == pytest.approx(expected, rel=1e-5)


def test_weight_draws_drop_whole_embedding_rows_and_columns_of_the_recurrent_weights():
    model = _model()
    guide = DropoutGuide(model, p=None)
    guide.setup(_tokens())
    draws = guide.sample_parameters(200)
    point = model.unflatten(guide.weights.detach())
    emb = draws["embedding.weight"] / point["embedding.weight"]  # [S, V, E]: 0 or 2 per row
    assert torch.allclose(emb, emb[..., :1].expand_as(emb))
    hh = draws["layers.0.weight_hh"] / point["layers.0.weight_hh"]  # [S, 4H, H]: 0 or 2 per column
    assert torch.allclose(hh, hh[:, :1].expand_as(hh))
    # E ||W||^2 = ||M||^2 / (1 - p), the prior term's expectation (Monte Carlo, 200 draws)
    ratio = float((draws["layers.0.weight_hh"] ** 2).sum((1, 2)).mean() / (point["layers.0.weight_hh"] ** 2).sum())
    assert ratio == pytest.approx(2.0, rel=0.1)


def test_padding_on_the_left_changes_nothing():
    model = _model(p=0.0)
    w = model.initial_values()
    x = torch.randint(1, V, (2, 5))
    padded = torch.cat([torch.zeros(2, 4, dtype=torch.long), x], dim=1)
    torch.testing.assert_close(model.network(x, w), model.network(padded, w))


@pytest.mark.parametrize("method", ["dropout", "mean_field", "map"])
def test_every_method_trains_through_the_registry(method):
    torch.manual_seed(0)
    x = torch.randint(1, V, (40, 6))
    y = (x == 3).float().sum(1) - 0.5
    model = _model(p=0.25 if method == "dropout" else 0.0)
    model.likelihood = Gaussian()
    posterior = approximate(method, model, (x, y), epochs=2, batch_size=16, progress=False, seed=0)
    prediction = posterior.predict(x, num_samples=4)
    assert prediction.mean.shape == (4, 40)
    assert bool(torch.isfinite(prediction.mean).all())
    if method == "dropout":
        assert float(prediction.epistemic.mean()) > 0


def test_bad_token_batches_are_refused_at_the_boundary():
    model = _model()
    posterior = approximate("map", _model(p=0.0), (_tokens(), torch.zeros(3)), epochs=1, progress=False)
    cases = [
        (torch.rand(3, 4), TypeError, "integer token ids"),
        (torch.ones(3, 4, dtype=torch.bool), TypeError, "integer token ids"),
        (torch.ones(3, 4, 2, dtype=torch.long), ValueError, r"\[N, L\]"),
        (torch.ones(4, dtype=torch.long), ValueError, r"\[N, L\]"),
        (torch.ones(3, 0, dtype=torch.long), ValueError, "empty"),
        (torch.tensor([[1, 2], [0, 0]]), ValueError, "row 1 is an empty sequence"),
        (torch.tensor([[1, V]]), ValueError, f"token id {V}, outside the vocabulary"),
        (torch.tensor([[1, -1]]), ValueError, "token id -1"),
        ("the movie", TypeError, None),
    ]
    for bad, error, match in cases:
        with pytest.raises(error, match=match):
            posterior.predict(bad, num_samples=2)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.net(torch.tensor([[1, 99]]))
    with pytest.raises(ValueError, match="variant"):
        RecurrentRegressor(V, variant="zoneout")
    with pytest.raises(ValueError, match="cell"):
        RecurrentRegressor(V, cell="rnn")

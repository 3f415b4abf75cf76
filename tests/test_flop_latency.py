"""FLOP's timing helpers: the exported structure at given ranks, CSR layers, the timers."""
import pytest
import torch
from torch import nn

from replicate import ConfigError, models
from replicate.methods import flop_latency as L
from replicate.methods.flop_gates import export_model, factorize, factorized_layers


def test_with_ranks_matches_an_exported_model_in_structure_and_size():
    torch.manual_seed(0)
    dense = models.build("char-sru-d32", (), 20)
    fact = factorize(dense, inplace=False)
    ranks = {}
    with torch.no_grad():
        for i, (name, layer) in enumerate(factorized_layers(fact).items()):
            layer.keep[: 3 + i] = 0          # close a few components per layer
            ranks[name] = layer.kept_rank()
    exported = export_model(fact)
    built = L.with_ranks(dense, ranks, torch.Generator().manual_seed(1))
    shapes = {k: v.shape for k, v in built.state_dict().items()}
    assert shapes == {k: v.shape for k, v in exported.state_dict().items()}
    x = torch.randint(0, 20, (2, 7))
    assert built(x)[0].shape == dense(x)[0].shape


def test_the_timing_helpers_take_the_paper_layout_with_low_rank_pairs():
    torch.manual_seed(0)
    dense = models.build("char-sru-d24-l3-p6", (), 20)       # the paper's projected SRU, small
    fact = factorize(dense, inplace=False)
    ranks = {}
    with torch.no_grad():
        for name, layer in factorized_layers(fact).items():
            layer.keep[:2] = 0
            ranks[name] = layer.kept_rank()
    assert 0 < ranks["rnn.1.w"] <= 4                         # of the pair's inner width 6
    built = L.with_ranks(dense, ranks, torch.Generator().manual_seed(1))
    assert {k: v.shape for k, v in built.state_dict().items()} == {k: v.shape for k, v in export_model(fact).state_dict().items()}
    assert L.matrix_weights(dense.rnn[1].w) == (24 + 72) * 6 and L.matrix_weights(dense.out) == 24 * 20
    csr = L.csr_copy(dense, 0.5, list(ranks))
    assert L.csr_nonzero(csr, list(ranks)) == pytest.approx(0.5 * sum(L.matrix_weights(dense.get_submodule(n)) for n in ranks), rel=0.02)
    x = torch.randint(0, 20, (2, 5))
    assert csr(x)[0].shape == built(x)[0].shape == (2, 5, 20)


def test_with_ranks_rejects_unknown_layers_and_bad_ranks():
    dense = models.build("char-sru-d32", (), 20)
    with pytest.raises(ConfigError, match="not an nn.Linear"):
        L.with_ranks(dense, {"embed": 3})
    with pytest.raises(ConfigError, match="integer in"):
        L.with_ranks(dense, {"out": 99})


def test_csr_linear_computes_the_magnitude_pruned_layer():
    torch.manual_seed(0)
    lin = nn.Linear(16, 8)
    csr = L.CSRLinear(lin, 0.75)
    assert csr.nonzero() == 32
    w = lin.weight.detach()
    kept = w * (w.abs() >= w.abs().flatten().sort().values[-32])
    x = torch.randn(3, 5, 16)
    torch.testing.assert_close(csr(x), x @ kept.t() + lin.bias.detach())
    with pytest.raises(ConfigError):
        L.CSRLinear(lin, 1.0)


def test_round_robin_times_every_call_and_step_calls_train():
    model = models.build("char-sru-d32", (), 20)
    x, y = torch.randint(0, 20, (2, 6)), torch.randint(0, 20, (2, 6))
    calls = L.step_calls(model, x, y)
    before = [p.clone() for p in model.parameters()]
    times = L.round_robin(calls, repeats=2, warmup=1)
    assert set(times) == {"dense", "dense factorized", "FLOP"} and all(t > 0 for t in times.values())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))   # copies train, not the model
    with pytest.raises(ConfigError):
        L.round_robin(calls, repeats=0)

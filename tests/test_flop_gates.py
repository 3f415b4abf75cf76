"""FLOP's building blocks (replicate/methods/flop_gates.py): hard-concrete gates against their closed
forms, SVD factorization and export against the dense and masked layers, and the signs of the Lagrangian game."""
import math

import pytest
import torch
from torch import nn

from replicate.errors import ConfigError
from replicate.methods.flop_gates import (BETA, FactorizedLinear, HardConcrete, LagrangianBudget, expected_sparsity,
                                          export_model, factorize, factorized_layers, flop_parameters, hard_sparsity,
                                          matrix_sizes)

torch.set_num_threads(1)


def _f(t):
    """A tensor's value as a float (detached: the values here carry gradients)."""
    return float(t.detach())


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("beta", [BETA, 1.0])
def test_closed_form_probabilities_match_monte_carlo(beta):
    gates = HardConcrete(6, beta=beta)
    with torch.no_grad():
        gates.log_alpha.copy_(torch.tensor([-4.0, -1.5, 0.0, 0.7, 2.0, 5.0]))
        z = gates.sample((100_000,), generator=_gen(1))
    assert torch.allclose((z > 0).double().mean(0), gates.prob_nonzero().detach().double(), atol=5e-3)
    assert torch.allclose((z == 1).double().mean(0), gates.prob_one().detach().double(), atol=5e-3)
    assert math.isclose(_f(gates.expected_l0()), float((z > 0).double().mean(0).sum()), abs_tol=2e-2)


def test_samples_lie_in_the_unit_interval_and_hit_both_ends():
    gates = HardConcrete(4)
    with torch.no_grad():
        gates.log_alpha.zero_()
    z = gates.sample((20_000,), generator=_gen(2))
    assert z.min() >= 0 and z.max() <= 1
    assert 0.1 < (z == 0).double().mean() < 0.25 and 0.1 < (z == 1).double().mean() < 0.25   # both ~0.168 at beta 2/3
    inside = (z > 0) & (z < 1)
    assert inside.double().mean() > 0.5


def test_sample_is_reparameterised():
    gates = HardConcrete(5)
    gates.sample((64,), generator=_gen(3)).sum().backward()
    assert gates.log_alpha.grad is not None and (gates.log_alpha.grad > 0).all()


def test_initialisation_follows_the_drop_rate():
    gates = HardConcrete(20_000, init_drop=0.05, init_std=0.01)
    assert math.isclose(_f(gates.log_alpha.mean()), math.log(19), abs_tol=1e-3)
    assert math.isclose(_f(gates.log_alpha.std()), 0.01, rel_tol=0.05)
    assert _f(HardConcrete(8, init_std=0.0).log_alpha.abs().max()) == 0.0


def test_batch_shared_and_per_example_sampling_shapes():
    shared, per_example = HardConcrete(3, sampling="batch"), HardConcrete(3, sampling="example")
    assert shared.sample().shape == (3,) and shared.sample(4).shape == (4, 3) and shared.sample((2, 5)).shape == (2, 5, 3)
    assert shared((8, 7)).shape == (3,)
    assert per_example((8, 7)).shape == (8, 7, 3)
    assert per_example.eval()((8, 7)).shape == (3,)          # evaluation is deterministic and shared
    torch.manual_seed(4)
    layer = FactorizedLinear(6, 4, rank=3, sampling="example")
    x = torch.randn(6).expand(8, 5, 6)                         # identical inputs: differences come from the gates
    y = layer(x)
    assert y.shape == (8, 5, 4) and not torch.allclose(y[0, 0], y[1, 1])
    shared_layer = FactorizedLinear(6, 4, rank=3, sampling="batch")
    y = shared_layer(x)
    assert torch.allclose(y, y[0, 0].expand_as(y))


def test_evaluation_rules():
    gates = HardConcrete(6)
    with torch.no_grad():
        gates.log_alpha.copy_(torch.tensor([-6.0, -5.0, -4.0, 3.0, 4.0, 5.0]))
    gates.eval()
    flop = gates.eval_mask()
    n_zero = round(6 - _f(gates.expected_l0()))
    assert n_zero == 3 and (flop[:3] == 0).all()
    assert torch.allclose(flop[3:], torch.sigmoid(0.8 * gates.log_alpha[3:].detach() / gates.beta))
    assert ((flop[3:] > 0) & (flop[3:] < 1)).all()             # soft, not binary
    gates.eval_rule = "louizos_clamp"
    assert gates.eval_mask().tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    assert torch.equal(gates(), gates.eval_mask())


def test_svd_initialisation_reproduces_the_dense_layer():
    torch.manual_seed(0)
    for d_in, d_out in [(12, 7), (7, 12), (16, 16)]:
        dense = nn.Linear(d_in, d_out)
        layer = FactorizedLinear.from_linear(dense, init="svd", eval_rule="louizos_clamp")
        assert layer.rank == min(d_in, d_out)
        x = torch.randn(32, d_in)
        assert torch.allclose(F_linear_all_open(layer, x), dense(x), atol=1e-5)
        assert torch.allclose(layer.p @ layer.q, dense.weight, atol=1e-5)
    random = FactorizedLinear.from_linear(dense, init="random")
    assert random.rank == 8 and torch.equal(random.bias, dense.bias)   # 16 * 16 / 32
    assert not torch.allclose(random.p @ random.q, dense.weight, atol=1e-2)


def F_linear_all_open(layer, x):
    with torch.no_grad():
        return nn.functional.linear(nn.functional.linear(x, layer.q), layer.p, layer.bias)


def _half_closed(d_in=10, d_out=6, rule="flop_topk"):
    torch.manual_seed(1)
    layer = FactorizedLinear.from_linear(nn.Linear(d_in, d_out), eval_rule=rule)
    with torch.no_grad():
        la = torch.full((layer.rank,), 4.0)
        la[::2] = -8.0                                         # every other component closed
        layer.gates.log_alpha.copy_(la + 0.1 * torch.randn(layer.rank))
    return layer.eval()


@pytest.mark.parametrize("rule", ["flop_topk", "louizos_clamp"])
@pytest.mark.parametrize("merged", [False, True])
def test_export_gives_the_masked_layers_outputs_with_fewer_parameters(rule, merged):
    layer = _half_closed(rule=rule)
    x = torch.randn(20, 10)
    small = layer.export(merged=merged)
    assert torch.allclose(small(x), layer(x), atol=1e-5)
    assert layer.kept_rank() == 3
    weights = sum(m.weight.numel() for m in small.modules() if isinstance(m, nn.Linear))
    if merged:
        assert weights == layer.dense_parameters()
    else:
        assert weights == layer.kept_parameters() == 16 * 3 < layer.factorized_parameters() == 16 * 6
        assert small.q.weight.shape == (3, 10) and small.p.weight.shape == (6, 3)


def test_export_of_a_fully_closed_layer_keeps_only_the_bias():
    layer = _half_closed(rule="louizos_clamp")
    with torch.no_grad():
        layer.gates.log_alpha.fill_(-10.0)
    small = layer.export()
    x = torch.randn(3, 10)
    assert small.q.weight.shape == (0, 10) and torch.allclose(small(x), layer.bias.expand(3, 6))


def test_parameter_counts():
    layer = FactorizedLinear.from_linear(nn.Linear(10, 6))
    assert (layer.dense_parameters(), layer.factorized_parameters()) == (60, 96)
    with torch.no_grad():
        layer.gates.log_alpha.fill_(BETA * math.log(0.1 / 1.1))   # P(z != 0) = 1/2
    assert math.isclose(_f(layer.expected_parameters()), 16 * 3, rel_tol=1e-6)


def _mlp():
    torch.manual_seed(2)
    return nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4), nn.MultiheadAttention(4, 1))


def test_factorize_replaces_plain_linears_and_keeps_outputs():
    model = _mlp()
    copy = factorize(model, inplace=False, eval_rule="louizos_clamp", init_drop=1e-6)   # log_alpha ~ 13.8: all open
    assert not factorized_layers(model)
    assert sorted(factorized_layers(copy)) == ["0", "2"]                # out_proj (an nn.Linear subclass) left alone
    x = torch.randn(5, 8)
    copy.eval()
    assert torch.allclose(copy[:3](x), model[:3](x), atol=1e-5)
    only = factorize(_mlp(), which=["2"])
    assert list(factorized_layers(only)) == ["2"]
    picked = factorize(_mlp(), which=lambda name, m: m.out_features == 4, init="random")
    assert sorted(factorized_layers(picked)) == ["2", "3.out_proj"]
    groups = flop_parameters(picked)
    assert len(groups["gates"]) == 2 and all(p.dim() == 1 for p in groups["gates"])
    assert len(groups["gates"]) + len(groups["model"]) == len(list(picked.parameters()))


def test_sparsity_is_reported_against_both_totals():
    model = factorize(nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8)), eval_rule="louizos_clamp")
    for layer in factorized_layers(model).values():
        with torch.no_grad():
            layer.gates.log_alpha.fill_(BETA * math.log(0.1 / 1.1))   # half the components expected
    # factorized size 2 * 16 * 8 = 256, dense size 2 * 64 = 128, expected kept 128
    assert math.isclose(_f(expected_sparsity(model, "factorized")), 0.5, abs_tol=1e-6)
    assert math.isclose(_f(expected_sparsity(model, "dense")), 0.0, abs_tol=1e-6)
    for layer in factorized_layers(model).values():
        with torch.no_grad():
            layer.gates.log_alpha.fill_(10.0)
    assert hard_sparsity(model, "factorized") == 0.0 and hard_sparsity(model, "dense") == -1.0   # the parameter trap
    smaller = export_model(model)
    assert not factorized_layers(smaller) and sum(p.numel() for p in smaller.parameters()) == 256 + 16


def test_matrix_sizes_agree_with_the_gated_layers_totals():
    """The accounting helper (shapes only) gives the sizes the gated layers use once factorized."""
    class Pair(nn.Module):
        low_rank = True

        def __init__(self):
            super().__init__()
            self.q, self.p = nn.Linear(12, 3, bias=False), nn.Linear(3, 7, bias=False)

    model = nn.Sequential(nn.Linear(8, 12), Pair(), nn.Linear(7, 5))
    sizes = matrix_sizes(model)
    assert [r["matrix"] for r in sizes] == ["0", "1", "2"] and [r["low_rank"] for r in sizes] == [False, True, False]
    assert [(r["dense"], r["factorized"], r["full_rank"]) for r in sizes] == [(96, 160, 8), (57, 57, 3), (35, 60, 5)]
    assert [r["matrix"] for r in matrix_sizes(model, ["2", "0"])] == ["2", "0"]
    layers = factorized_layers(factorize(model))
    assert [(m.dense_parameters(), m.factorized_parameters()) for m in layers.values()] == [
        (r["dense"], r["factorized"]) for r in sizes]


def test_target_warmup_schedule():
    budget = LagrangianBudget(0.6, warmup_steps=100)
    assert [budget.target_at(k) for k in (0, 50, 100, 400)] == [0.0, 0.3, 0.6, 0.6]
    assert LagrangianBudget(0.6).target_at(0) == 0.6


def _one_layer_model():
    torch.manual_seed(3)
    return factorize(nn.Sequential(nn.Linear(8, 8)), init="random")


@pytest.mark.parametrize("target,direction", [(0.9, +1), (0.05, -1)])
def test_lagrangian_ascends_on_multipliers_and_model_descends_on_the_violation(target, direction):
    model = _one_layer_model()
    budget = LagrangianBudget(target, total="factorized")
    s_hat = _f(expected_sparsity(model, "factorized"))
    gap = s_hat - target
    assert (gap < 0) == (direction > 0)                           # 0.9: s_hat below target; 0.05: above
    ascent = budget.optimizer(lr=0.1)
    penalties = []
    for _ in range(3):
        ascent.zero_grad()
        pen = budget.penalty(model, step=0)
        penalties.append(_f(pen))
        pen.backward()
        assert math.isclose(_f(budget.lambda1.grad), gap, rel_tol=1e-5)
        assert math.isclose(_f(budget.lambda2.grad), gap * gap, rel_tol=1e-5)
        ascent.step()
    penalties.append(_f(budget.penalty(model, step=0)))
    assert penalties[0] == 0.0 and all(b > a for a, b in zip(penalties, penalties[1:]))   # ascent raises the penalty
    assert _f(budget.lambda2) > 0 and math.copysign(1, _f(budget.lambda1)) == math.copysign(1, gap)
    log_alpha = flop_parameters(model)["gates"][0]
    log_alpha.grad = None
    budget.penalty(model, step=0).backward()
    # descent: below target it closes gates (log_alpha down, sparsity up); above target it reopens them
    assert (torch.sign(log_alpha.grad) == direction).all()
    torch.optim.SGD([log_alpha], lr=1.0).step()
    moved = _f(expected_sparsity(model, "factorized")) - s_hat
    assert moved * direction > 0


def test_multiplier_gradient_comes_only_from_the_penalty():
    budget = LagrangianBudget(0.5)
    s_hat = torch.tensor(0.2, requires_grad=True)
    with torch.no_grad():
        budget.lambda1.fill_(-2.0)
        budget.lambda2.fill_(3.0)
    budget(s_hat, step=0).backward()
    assert math.isclose(_f(s_hat.grad), -2.0 + 2 * 3.0 * (0.2 - 0.5), rel_tol=1e-6)


def test_without_the_quadratic_term_only_lambda1_acts():
    budget = LagrangianBudget(0.5, quadratic=False)
    s_hat = torch.tensor(0.2, requires_grad=True)
    with torch.no_grad():
        budget.lambda1.fill_(-2.0)
        budget.lambda2.fill_(3.0)
    pen = budget(s_hat, step=0)
    assert math.isclose(_f(pen), -2.0 * (0.2 - 0.5), rel_tol=1e-6)
    pen.backward()
    assert math.isclose(_f(s_hat.grad), -2.0, rel_tol=1e-6) and budget.lambda2.grad is None
    with pytest.raises(ConfigError, match="quadratic must be True"):
        LagrangianBudget(0.5, quadratic="no")


@pytest.mark.parametrize("make,message", [
    (lambda: HardConcrete(4, stretch=(0.0, 1.1)), r"l < 0 and r > 1"),
    (lambda: HardConcrete(4, stretch=(-0.1, 1.0)), r"l < 0 and r > 1"),
    (lambda: HardConcrete(4, stretch=0.1), r"pair \(l, r\)"),
    (lambda: HardConcrete(4, beta=0.0), r"beta .* > 0"),
    (lambda: HardConcrete(4, beta=-1), r"beta .* > 0"),
    (lambda: HardConcrete(0), r"n >= 1"),
    (lambda: HardConcrete(4, init_drop=1.0), r"init_drop must be in \(0, 1\)"),
    (lambda: HardConcrete(4, init_std=-0.1), r"init_std .* >= 0"),
    (lambda: HardConcrete(4, eval_rule="median"), r"valid: flop_topk, louizos_clamp"),
    (lambda: HardConcrete(4, sampling="token"), r"valid: batch, example"),
    (lambda: FactorizedLinear(4, 4, rank=0), r"rank must be an integer >= 1"),
    (lambda: FactorizedLinear.from_linear(nn.Linear(4, 3), init="zeros"), r"valid: svd, random"),
    (lambda: FactorizedLinear.from_linear(nn.Linear(4, 3), rank=4), r"\[1, min\(d_in, d_out\) = 3\]"),
    (lambda: FactorizedLinear.from_linear(nn.ReLU()), r"needs an nn.Linear"),
    (lambda: LagrangianBudget(1.0), r"\[0, 1\)"),
    (lambda: LagrangianBudget(-0.1), r"\[0, 1\)"),
    (lambda: LagrangianBudget(0.5, warmup_steps=-1), r"warmup_steps must be an integer >= 0"),
    (lambda: LagrangianBudget(0.5, total="model"), r"valid: dense, factorized"),
    (lambda: LagrangianBudget(0.5).optimizer(lr=-1e-3), r"lr must be .* > 0"),
    (lambda: factorize(nn.Sequential(nn.Linear(2, 2)), which=["1"]), r"unknown nn.Linear layer\(s\) '1'; valid: 0"),
    (lambda: factorize(nn.Sequential(nn.ReLU())), r"selected no nn.Linear"),
    (lambda: factorize(nn.Sequential(nn.Linear(2, 2)), init="eye"), r"valid: svd, random"),
    (lambda: expected_sparsity(nn.Sequential(nn.Linear(2, 2))), r"no gated \(factorized or column-gated\) layer"),
    (lambda: expected_sparsity(factorize(nn.Sequential(nn.Linear(2, 2))), "all"), r"valid: dense, factorized"),
])
def test_bad_arguments_raise_one_line_config_errors(make, message):
    with pytest.raises(ConfigError, match=message) as err:
        make()
    assert "\n" not in str(err.value)


def test_module_imports_nothing_heavier_than_torch():
    import ast
    from pathlib import Path

    import replicate.methods.flop_gates as flop_gates
    tree = ast.parse(Path(flop_gates.__file__).read_text())
    imported = {(n.module if isinstance(n, ast.ImportFrom) else a.name).split(".")[0] if not getattr(n, "level", 0)
                else "." * n.level + (n.module or "")
                for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    assert imported <= {"__future__", "copy", "math", "warnings", "collections", "torch", "..errors"}, imported


# -- the unfactorized L0 baseline: gates on input columns ------------------------------------------------

@pytest.mark.parametrize("rule", ["flop_topk", "louizos_clamp"])
def test_column_gates_export_to_a_selection_and_a_narrower_layer(rule):
    from replicate.methods.flop_gates import ColumnGatedLinear

    torch.manual_seed(0)
    dense = nn.Linear(10, 6)
    layer = ColumnGatedLinear(dense, eval_rule=rule)
    with torch.no_grad():
        layer.gates.log_alpha.copy_(torch.tensor([5.0, -5.0] * 5))    # every other column open
    layer.eval()
    x = torch.randn(20, 10)
    small = layer.export()
    assert torch.allclose(small(x), layer(x), atol=1e-5)
    assert layer.kept_rank() == 5 and small.linear.weight.shape == (6, 5)
    assert layer.kept_parameters() == 6 * 5 and layer.dense_parameters() == layer.factorized_parameters() == 60
    assert math.isclose(_f(layer.expected_parameters()), 6 * _f(layer.gates.expected_l0()), rel_tol=1e-6)


def test_factorize_with_column_structure_gates_every_linear_without_factorizing():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    gated = factorize(m, structure="columns", inplace=False)
    layers = factorized_layers(gated)
    assert list(layers) == ["0", "2"] and all(type(v).__name__ == "ColumnGatedLinear" for v in layers.values())
    x = torch.randn(5, 8)
    with torch.no_grad():
        for v in layers.values():
            v.gates.log_alpha.fill_(10.0)                              # all open: the dense model's outputs
    assert torch.allclose(gated.eval()(x), m(x), atol=1e-5)
    assert 0.0 <= hard_sparsity(gated) < 1e-9
    out = export_model(gated)
    assert torch.allclose(out(x), m(x), atol=1e-5)
    with pytest.raises(ConfigError, match="unknown gate structure 'rows'"):
        factorize(m, structure="rows")


# -- adaptive clusters: one gate per dimension of each cluster's width (the official WikiText-103 scheme) ----

def _word_model(seed=0):
    from replicate.models.language import WordSRU
    torch.manual_seed(seed)
    return WordSRU(50, d=16, layers=2, cutoffs=(10, 30)).eval()


def _n(model):
    return sum(p.numel() for p in model.parameters())


def test_cluster_gates_replace_the_tables_and_tail_projections_and_count_both_sides():
    from replicate.methods.flop_gates import WidthGated
    dense = _word_model()
    model = factorize(dense, clusters=True, inplace=False)
    units = {n: m for n, m in factorized_layers(model).items() if isinstance(m, WidthGated)}
    assert list(units) == ["embed.embeds.0", "embed.embeds.1", "embed.embeds.2", "out.tail.0.0", "out.tail.1.0"]
    # embedding cluster i: |V_i| table rows + the projection's 16 outputs per dimension; tail i: 16 inputs + |V_i|
    assert [u.dense_parameters() for u in units.values()] == [16 * (10 + 16), 4 * (20 + 16), 1 * (20 + 16),
                                                              4 * (16 + 20), 1 * (16 + 20)]
    assert [u.partner for u in units.values()] == ["embed.projs.0", "embed.projs.1", "embed.projs.2",
                                                   "out.tail.0.1", "out.tail.1.1"]
    # the partners are not factorized; the SRU layers and the softmax head are
    others = [n for n, m in factorized_layers(model).items() if not isinstance(m, WidthGated)]
    assert "out.head" in others and all(not n.startswith(("embed.", "out.tail")) for n in others)
    with torch.no_grad():   # every gate open: the dense model's outputs
        for m in units.values():
            m.gates.log_alpha.fill_(10.0)
        for m in factorized_layers(model).values():
            m.gates.log_alpha.fill_(10.0)
    x = torch.randint(0, 50, (2, 7), generator=_gen(1))
    with torch.no_grad():
        assert torch.allclose(model(x)[0], dense(x)[0], atol=1e-4)


@pytest.mark.parametrize("rule", ["flop_topk", "louizos_clamp"])
def test_cluster_gated_model_exports_and_reloads_to_the_masked_model(rule):
    from replicate.methods.flop import restore_exported
    dense = _word_model()
    model = factorize(dense, clusters=True, inplace=False, eval_rule=rule)
    g = _gen(2)
    with torch.no_grad():
        for m in factorized_layers(model).values():
            m.gates.log_alpha.copy_(torch.randn(m.gates.log_alpha.shape, generator=g) * 3)
        model.embed.embeds[2].gates.log_alpha.fill_(-10.0)      # one cluster loses its whole width
    model.eval()
    x = torch.randint(0, 50, (3, 9), generator=_gen(3))
    with torch.no_grad():
        masked = model(x)[0]
        layers = factorized_layers(model)
        kept = sum(m.kept_parameters() for m in layers.values())
        gated = sum(m.dense_parameters() for m in layers.values())
        small = export_model(model)
        assert torch.allclose(small(x)[0], masked, atol=1e-4)
        assert _n(small) == _n(dense) - gated + kept
        assert small.embed.embeds[2].weight.shape == (20, 0) and small.embed.projs[2].weight.shape == (16, 0)
        again = restore_exported(_word_model(seed=5), small.state_dict()).eval()
        assert torch.allclose(again(x)[0], masked, atol=1e-4)


def test_cluster_gates_need_adaptive_clusters():
    with pytest.raises(ConfigError, match="adaptive embedding or an adaptive softmax"):
        factorize(nn.Sequential(nn.Linear(4, 4)), clusters=True)


# -- a softmax tied to the embedding (the official WikiText-103 model): one set of tables, projections and gates --

def _tied_model(seed=0):
    from replicate.models.language import WordSRU
    torch.manual_seed(seed)
    return WordSRU(50, d=16, layers=2, cutoffs=(10, 30), tie=True, scale=True).eval()


def test_a_tied_softmax_is_a_distribution_that_owns_only_biases():
    m = _tied_model()
    x, y = torch.randint(0, 50, (3, 8), generator=_gen(4)), torch.randint(0, 50, (3, 8), generator=_gen(5))
    with torch.no_grad():
        lp = m(x)[0]
        assert torch.allclose(lp.exp().sum(-1), torch.ones(3, 8), atol=1e-5)
        picked = m.target_log_prob(x, y)[0]
        assert torch.allclose(picked, lp.reshape(-1, 50).gather(1, y.reshape(-1, 1))[:, 0], atol=1e-6)
    assert [n for n, _ in m.out.named_parameters()] == ["biases.0", "biases.1", "biases.2"]
    # table 0 holds cluster 0's 10 words and the 2 tail clusters' tokens; the tables are counted once
    assert m.embed.embeds[0].weight.shape == (12, 16)
    untied = sum(p.numel() for p in _word_model().embed.parameters())
    assert sum(p.numel() for p in m.embed.parameters()) == untied + 2 * 16
    # the loss reaches each table from both sides: a table row no input looks up still gets a gradient
    m.train()
    m.target_log_prob(torch.zeros(2, 4, dtype=torch.long), torch.full((2, 4), 40))[0].sum().backward()
    assert m.embed.embeds[2].weight.grad.abs().sum() > 0 and m.embed.embeds[0].weight.grad[10:].abs().sum() > 0


def test_tied_cluster_gates_are_shared_by_the_embedding_and_the_softmax_and_export_to_the_masked_model():
    from replicate.methods.flop import restore_exported
    from replicate.methods.flop_gates import WidthGated
    dense = _tied_model()
    model = factorize(dense, clusters=True, inplace=False)
    units = {n: m for n, m in factorized_layers(model).items() if isinstance(m, WidthGated)}
    assert list(units) == ["embed.embeds.0", "embed.embeds.1", "embed.embeds.2"]      # no softmax units of its own
    # cluster 0's table counts its 10 words and the 2 cluster tokens, + the projection's 16 outputs per dimension
    assert [u.dense_parameters() for u in units.values()] == [16 * (12 + 16), 4 * (20 + 16), 1 * (20 + 16)]
    g = _gen(6)
    x = torch.randint(0, 50, (3, 9), generator=_gen(7))
    with torch.no_grad():
        for m in factorized_layers(model).values():
            m.gates.log_alpha.copy_(torch.randn(m.gates.log_alpha.shape, generator=g) * 3)
        model.embed.embeds[2].gates.log_alpha.fill_(-10.0)      # the rarest cluster loses its whole width
        model.eval()
        masked = model(x)[0]
        # one gate acts on both sides: zeroing the closed columns of the plain tied model gives the same outputs
        plain = _tied_model()
        plain.load_state_dict({k: v for k, v in dense.state_dict().items()})
        for i, u in enumerate(units.values()):
            plain.embed.embeds[i].weight.mul_(u.gates.eval_mask())
        plain.rnn = model.rnn
        assert torch.allclose(plain(x)[0], masked, atol=1e-5)
        layers = factorized_layers(model)
        gated = sum(m.dense_parameters() for m in layers.values())
        kept = sum(m.kept_parameters() for m in layers.values())
        small = export_model(model)
        assert torch.allclose(small(x)[0], masked, atol=1e-4)
        assert small.embed.embeds[2].weight.shape == (20, 0) and small.embed.projs[2].weight.shape == (16, 0)
        assert _n(small) == _n(dense) - gated + kept
        again = restore_exported(_tied_model(seed=5), small.state_dict()).eval()
        assert torch.allclose(again(x)[0], masked, atol=1e-4)


def test_a_tied_model_is_pruned_with_cluster_gates_only():
    with pytest.raises(ConfigError, match="tied to its embedding.*clusters=True"):
        factorize(_tied_model(), clusters=False)

"""Quantization primitives and the closed-form margins of adaptive quantization."""
import math

import pytest
import torch

from replicate.studies import per_combo
from replicate.methods import adaptive_quant as aq, quantization as q


def test_margins_meet_the_linear_budget_with_equality_and_respect_the_radius():
    g = torch.randn(5000, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 1e-3
    for radius in (math.inf, 2 ** -6, 2 ** -10):
        tau = aq.margins(g, budget=1e-4, radius=radius)
        assert (tau > 0).all() and (tau <= radius * (1 + 1e-12)).all()
        assert float((g.abs() * tau).sum()) == pytest.approx(1e-4, rel=1e-9)
    # without a radius every weight gets an equal share of the budget: tau_i |g_i| = C / n
    tau = aq.margins(g, budget=1e-4)
    assert torch.allclose(tau * g.abs(), torch.full_like(tau, 1e-4 / 5000), rtol=1e-9)


def test_margins_are_optimal_for_the_size_bound():
    # any feasible perturbation that keeps the budget does not lower -sum log2 tau
    g = torch.rand(50, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) + 0.1
    tau = aq.margins(g, budget=1.0, radius=0.05)
    phi = -torch.log2(tau).sum()
    for seed in range(20):
        d = torch.randn(50, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) * 1e-3
        alt = (tau * (1 + d)).clamp(max=0.05)
        alt = alt * min(1.0, 1.0 / float((g * alt).sum()))   # back inside the budget
        assert -torch.log2(alt).sum() >= phi - 1e-9


def test_a_generous_budget_gives_every_weight_the_radius():
    g = torch.tensor([1e-6, 2e-6, 0.0], dtype=torch.float64)
    assert torch.equal(aq.margins(g, budget=1.0, radius=0.25), torch.full((3,), 0.25, dtype=torch.float64))
    with pytest.raises(ValueError, match="finite trust radius"):
        aq.margins(g, budget=1.0)
    with pytest.raises(ValueError, match="budget"):
        aq.margins(g, budget=0.0, radius=1.0)


def test_quantizing_with_the_margins_never_exceeds_them_and_prunes_below_them():
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(20000, generator=gen, dtype=torch.float64) * 0.3
    tau = torch.pow(10.0, -torch.rand(20000, generator=gen, dtype=torch.float64) * 6)
    wq, bits = aq.quantize(w, tau)
    assert ((w - wq).abs() <= tau).all()
    assert torch.equal(wq == 0, w.abs() <= tau)
    assert (bits[wq == 0] == 0).all()
    n = aq.precision(tau)
    assert torch.equal(wq[wq != 0], q.fixed_point(w, n)[wq != 0])
    assert (torch.pow(2.0, -(n + 1)) <= tau).all()
    # pow2 rounding makes the size bound tight: tau = 2^-k exactly
    t2 = aq.margins(torch.rand(100, dtype=torch.float64) + 0.1, budget=0.5, radius=1.0, tau_rounding="pow2")
    assert torch.equal(torch.log2(t2), torch.round(torch.log2(t2)))


def test_size_accounting_of_a_hand_built_layer():
    wq = torch.tensor([0.0, 0.5, -0.75, 2.25, 0.0, -3.0])
    frac = torch.tensor([0.0, 1.0, 2.0, 2.0, 5.0, 0.0])
    # by hand: pruned 0; 0.5 = sign + 0 int + 1 frac = 2; -0.75: 1 + 0 + 2 = 3; 2.25: 1 + 2 + 2 = 5; pruned 0; -3: 1 + 2 + 0 = 3
    assert q.fixed_point_bits(wq, frac).tolist() == [0, 2, 3, 5, 0, 3]
    assert q.compression(6, 13) == pytest.approx(32 * 6 / 13)


def test_weight_sharing_uses_at_most_2_to_the_b_values_per_layer_and_keeps_zeros():
    w = torch.randn(300, 100, generator=torch.Generator().manual_seed(3))
    w[w.abs() < 0.5] = 0
    for b in (1, 2, 3, 5):
        shared, cents, idx = q.share_weights(w, b)
        vals = torch.unique(shared[shared != 0])
        assert len(vals) <= 2 ** b and len(cents) <= 2 ** b
        assert torch.equal(shared == 0, w == 0)
        # every weight went to its nearest centroid
        assert torch.equal((w[w != 0][:, None] - cents[None]).abs().argmin(1), idx)


def test_uniform_quantization_levels_and_the_binary_case():
    w = torch.linspace(-1, 1, 1001)
    for k in (2, 3, 4, 8):
        assert len(torch.unique(q.uniform_quantize(w, k))) <= 2 ** k - 1
        assert (q.uniform_quantize(w, k) - w).abs().max() <= 1 / (2 ** (k - 1) - 1) / 2 + 1e-6
    b = q.uniform_quantize(w, 1)
    assert set(torch.unique(b.abs()).tolist()) <= {0.0, float(w.abs().mean())}
    with pytest.raises(ValueError, match="bits"):
        q.uniform_quantize(w, 0)


def test_huffman_code_length_matches_a_hand_count():
    # frequencies 5, 2, 1, 1: code lengths 1, 2, 3, 3 -> 5 + 4 + 3 + 3 = 15 bits
    assert q.huffman_bits(["a"] * 5 + ["b"] * 2 + ["c", "d"]) == 15
    assert q.huffman_bits([7, 7, 7]) == 3


def test_relative_index_bits_count_padding_for_long_gaps():
    m = torch.zeros(40, dtype=torch.bool)
    m[[0, 3, 39]] = True
    # 3-bit relative indices (max gap 7): gaps 0, 2, 35 -> 35 // 8 = 4 padding entries: 7 entries x 3 bits
    assert q.sparse_index_bits(m, index_bits=3) == 21


def test_adaptive_quantization_run_stays_within_its_loss_bound_and_only_shrinks():
    import replicate
    from replicate.config import ConfigError, RunConfig
    parent = RunConfig(method="dense", model="lenet300-100", dataset="mnist5k", train_size=500, test_size=200, epochs=3)
    for lin in ("initial", "current"):
        cfg = RunConfig(method="adaptive_quant", model="lenet300-100", dataset="mnist5k", train_size=500, test_size=200,
                        parent=parent, args={"delta": 0.05, "linearize": lin, "max_iters": 6, "grad_samples": 300})
        rec = replicate.run(cfg)
        a = rec["metrics"]["aq"]
        assert rec["status"] == "ok" and a["final_loss"] <= a["bound"] + 1e-9
        acc = [e for e in a["iterations"] if e["accepted"]]
        sizes = [e["payload_bits"] for e in acc]
        assert sizes == sorted(sizes, reverse=True) and (not acc or sizes[-1] == a["size"]["payload_bits"])
        assert a["size"]["payload_bits"] < 32 * a["size"]["weights"]
        assert sum(sum(l["bits_histogram"].values()) for l in a["layers"].values()) == a["size"]["weights"]
    with pytest.raises(ConfigError, match="linearize"):
        RunConfig(method="adaptive_quant", parent=parent, args={"linearize": "w1"}).validate()
    with pytest.raises(ConfigError, match="parent"):
        RunConfig(method="adaptive_quant").validate()


def test_uniform_and_deep_compression_runs_produce_what_they_count():
    import replicate
    from replicate import runner
    from replicate.config import RunConfig
    from replicate.methods import magnitude
    small = dict(model="lenet300-100", dataset="mnist5k", train_size=500, test_size=200)
    dense = RunConfig(method="dense", epochs=2, **small)
    for bits, epochs in ((1, 1), (3, 0)):
        cfg = RunConfig(method="uniform_quant", epochs=epochs, parent=dense, args={"bits": bits}, **small)
        rec = replicate.run(cfg)
        net, _ = runner.load_model(cfg)
        for w in q.prunable(net).values():
            assert len(torch.unique(w[w != 0])) <= max(2 ** bits - 1, 2)
        assert rec["metrics"]["quant"]["compression_payload"] == pytest.approx(32 / (bits + 32 * 3 / 266200))
    pruned = magnitude.oneshot(dense, 8, epochs=1)
    cfg = RunConfig(method="deep_compression", epochs=1, parent=pruned, args={"fc_bits": 2}, **small)
    rec = replicate.run(cfg)
    net, _ = runner.load_model(cfg)
    pnet, _ = runner.load_model(pruned)
    for (n, w), pw in zip(q.prunable(net).items(), q.prunable(pnet).values()):
        assert len(torch.unique(w[w != 0])) <= 4
        assert bool(((w == 0) | (pw != 0)).all())   # pruned weights stay pruned
    s = rec["metrics"]["quant"]
    assert s["compression_payload"] > s["compression_before_huffman"] > 8


def test_binaryconnect_keeps_its_shadow_weights_and_its_binarized_child_matches_it():
    import replicate
    from replicate import runner
    from replicate.studies import aq as aq_study
    from replicate.config import ConfigError, RunConfig
    small = dict(model="lenet300-100", dataset="mnist5k", train_size=500, test_size=200)
    cfg = RunConfig(method="uniform_quant", epochs=1, args={"bits": 1, "latent": True}, **small)
    rec = replicate.run(cfg)
    shadow, _ = runner.load_model(cfg)
    assert all(len(torch.unique(w)) > 2 for w in q.prunable(shadow).values())   # float shadow weights, not binary
    child = replicate.run(aq_study.binarized(cfg))
    net, _ = runner.load_model(aq_study.binarized(cfg))
    assert all(len(torch.unique(w[w != 0])) <= 2 for w in q.prunable(net).values())
    assert child["metrics"]["test_error"] == pytest.approx(rec["metrics"]["quantized_test_error"])
    with pytest.raises(ConfigError, match="latent"):
        RunConfig(method="uniform_quant", epochs=0, args={"bits": 1, "latent": True}, **small).validate()


def test_adaptive_quantization_of_a_binary_layer_reports_its_distinct_values():
    import replicate
    from replicate import runner
    from replicate.studies import aq as aq_study
    from replicate.config import RunConfig
    small = dict(model="lenet300-100", dataset="mnist5k", train_size=500, test_size=200)
    bnn = RunConfig(method="uniform_quant", epochs=1, args={"bits": 1, "latent": True}, **small)
    cfg = aq_study.aq(aq_study.binarized(bnn), 0.05, max_iters=4, grad_samples=300)
    rec = replicate.run(cfg)
    net, _ = runner.load_model(cfg)
    for (name, w), layer in zip(q.prunable(net).items(), rec["metrics"]["aq"]["layers"].values()):
        hist = {int(b): c for b, c in layer["bits_histogram"].items()}
        assert layer["distinct_nonzero"] == len(torch.unique(w[w != 0]))
        assert (hist.get(0, 0) == 0) == (layer["pruned"] == 0)


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_the_aq_study_plans_are_valid_configurations(profile):
    from replicate.studies import aq as S
    p = S.plan(profile)
    for d in p["datasets"]:
        for m in S.MODELS:
            g, a, b = S.grid(m, d, 0, profile), S.ablations(m, d, 0, profile), S.bnn_study(m, d, 0, profile)
            # notebook 06 reuses the grid's BinaryConnect run and its binarized network; nothing else is shared
            assert b[("shadow", None)] == g[("bnn", None)] and b[("binary", None)] == g[("binarized", None)]
            runs = list(g.values()) + list(a.values()) + [c for k, c in b.items() if k[0] not in ("shadow", "binary")]
            assert len({c.key for c in runs}) == len(runs)
            for c in runs:
                c.validate()
                assert c.val_size == per_combo(p["val_size"], m, d) and c.profile == profile
                assert c.train_size == per_combo(p["train_size"], m, d) and c.val_size < (c.train_size or 10 ** 9)


def test_plan_settings_per_model_and_dataset():
    from replicate.studies import aq as S
    table = {"fashion_mnist": 5000, ("lenet5-caffe", "fashion_mnist"): 1000}
    assert per_combo(table, "lenet5-caffe", "fashion_mnist") == 1000
    assert per_combo(table, "lenet300-100", "fashion_mnist") == 5000
    assert per_combo(table, "lenet300-100", "mnist5k") is None and per_combo(7, "x", "y") == 7
    b = S.base("lenet5-caffe", "fashion_mnist", 1, "cpu")
    assert (b.train_size, b.val_size) == (10000, 1000)
    assert S.grid("lenet5-caffe", "fashion_mnist", 1, "cpu")[("aq", 0.01)].train_size == 10000   # children inherit it

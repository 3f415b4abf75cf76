import math

import pytest
import torch

import replicate
from replicate import metrics
from replicate.config import RunConfig
from replicate.methods import magnitude


def weights(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"a": torch.randn(30, 20, generator=g), "b": 3 * torch.randn(10, 30, generator=g)}


@pytest.mark.parametrize("scope", ["std", "global", "layer"])
@pytest.mark.parametrize("compression", [2, 4, 12, 64])
def test_pruning_step_keeps_exactly_the_requested_count(scope, compression):
    w = weights()
    alive = {n: torch.ones_like(t, dtype=torch.bool) for n, t in w.items()}
    total = sum(t.numel() for t in w.values())
    keep = round(total / compression)
    masks = magnitude.magnitude_masks(w, alive, keep, scope)
    kept = sum(int(m.sum()) for m in masks.values())
    if scope == "layer":  # per-layer rounding
        assert abs(kept - keep) <= len(w)
        for n, t in w.items():
            assert abs(int(masks[n].sum()) - round(t.numel() * keep / total)) <= 1
    else:
        assert kept == keep


def test_std_scope_is_hans_threshold_rule():
    """Every kept weight has |w| >= q*sigma_layer and every pruned one < q*sigma_layer, one q for all layers."""
    w = weights(1)
    alive = {n: torch.ones_like(t, dtype=torch.bool) for n, t in w.items()}
    masks = magnitude.magnitude_masks(w, alive, 150, "std")
    q = magnitude.quality_parameter(w, masks)
    for n, t in w.items():
        score = t.abs() / t.std()
        assert torch.all(score[masks[n]] >= q - 1e-6)
        assert torch.all(score[~masks[n]] < q + 1e-6)


def test_global_scope_uses_one_magnitude_threshold():
    w = weights(2)
    alive = {n: torch.ones_like(t, dtype=torch.bool) for n, t in w.items()}
    masks = magnitude.magnitude_masks(w, alive, 100, "global")
    kept_min = min(float(t[masks[n]].abs().min()) for n, t in w.items())
    pruned_max = max(float(t[~masks[n]].abs().max()) for n, t in w.items())
    assert kept_min >= pruned_max


def test_pruned_weights_are_never_revived():
    w = weights(3)
    alive = {n: torch.rand_like(t) > 0.5 for n, t in w.items()}
    masks = magnitude.magnitude_masks(w, alive, 200, "std")
    for n in w:
        assert not torch.any(masks[n] & ~alive[n])


def test_gradual_schedule_is_cubic():
    cb = magnitude.GradualPruning(final_remaining=0.1, start=0.0, end=1.0, every=10, scope="layer")
    cb.t0, cb.t1 = 0, 100
    assert cb.sparsity_at(0) == 0
    assert math.isclose(cb.sparsity_at(50), 0.9 * (1 - 0.5 ** 3))
    assert math.isclose(cb.sparsity_at(100), 0.9) and math.isclose(cb.sparsity_at(500), 0.9)


SMALL = dict(model="lenet300-100", dataset="mnist5k", train_size=1000, test_size=300, epochs=4, lr=0.05)


def test_iterative_chain_reaches_each_compression_and_stays_accurate():
    dense = RunConfig(**SMALL)
    d = replicate.run(dense)["metrics"]
    assert d["test_acc"] > 0.75
    chain = magnitude.iterative_chain(dense, [2, 4, 8], epochs=2, lr=0.01)
    recs = [replicate.run(c)["metrics"] for c in chain]
    for c, m in zip([2, 4, 8], recs):
        assert abs(m["compression"] - c) / c < 1e-3
    # Sparsity rises along the chain and accuracy stays close to the dense model's.
    assert recs[0]["nonzero"] > recs[1]["nonzero"] > recs[2]["nonzero"]
    assert recs[-1]["test_acc"] > d["test_acc"] - 0.05


def test_oneshot_and_gradual_reach_the_target_and_keep_zeros():
    dense = RunConfig(**SMALL)
    one = magnitude.oneshot(dense, 10, epochs=2, lr=0.01)
    model, rec = replicate.load_model(one)
    assert abs(rec["metrics"]["compression"] - 10) < 0.01
    assert metrics.summarize(model, (1, 28, 28))["nonzero"] == rec["metrics"]["nonzero"]
    grad = dense.replace(method="magnitude", parent=dense, lr=0.01,
                         args={"schedule": "gradual", "sparsity": 0.9, "prune_every": 5})
    g = replicate.run(grad)["metrics"]
    assert abs(g["remaining"] - 0.1) < 0.002
    assert g["test_acc"] > 0.6


def test_per_layer_chain_reaches_hans_layer_ratios():
    dense = RunConfig(**SMALL)
    final = {"fc1": 0.08, "fc2": 0.09, "fc3": 0.26}
    chain = magnitude.per_layer_chain(dense, final, [2, 4, 12], epochs=1, lr=0.01)
    # geometric interpolation: every layer keeps fewer weights at each level, Han's ratios at the last
    for a, b in zip(chain, chain[1:]):
        assert all(b.args["layer_remaining"][n] < a.args["layer_remaining"][n] for n in final)
    assert chain[-1].args["layer_remaining"] == final
    recs = [replicate.run(c) for c in chain]
    last = recs[-1]["metrics"]
    for n, f in final.items():
        assert abs(last["layers"][n]["remaining"] - f) < 1e-3
    assert recs[0]["metrics"]["nonzero"] > recs[1]["metrics"]["nonzero"] > last["nonzero"]
    model, _ = replicate.load_model(chain[-1])
    assert metrics.summarize(model, (1, 28, 28))["nonzero"] == last["nonzero"]   # zeros stay zero


@pytest.mark.parametrize("args, message", [
    ({"layer_remaining": {"fc1": 0.1}}, "every prunable layer"),
    ({"layer_remaining": {"fc1": 0.1, "fc2": 0.1, "fc3": 0.1}, "compression": 4.0}, "exactly one of"),
    ({"layer_remaining": {"fc1": 1.5, "fc2": 0.1, "fc3": 0.1}}, "fractions in (0, 1]"),
    ({"layer_remaining": {"fc1": 0.1, "fc2": 0.1, "fc3": 0.1}, "schedule": "gradual"}, "not gradual"),
])
def test_per_layer_arguments_are_checked(args, message):
    dense = RunConfig(**SMALL)
    with pytest.raises(replicate.ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        replicate.run(dense.replace(method="magnitude", parent=dense, args=args))

import pytest
import torch
from torch import nn

import replicate
from replicate import data, train
from replicate.config import ConfigError, RunConfig
from replicate.methods import sensitivity as sens


def tiny_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def finite_difference_s(net, x, t, outputs="logits", h=1e-4):
    """|d y_t / d w| per weight, by central differences, averaged over the samples."""
    out = []
    for w in (net[0].weight, net[2].weight):
        s = torch.zeros_like(w)
        for idx in torch.cartesian_prod(*[torch.arange(n) for n in w.shape]):
            i = tuple(idx.tolist())
            vals = []
            for sign in (1, -1):
                with torch.no_grad():
                    w[i] += sign * h
                    y = net(x)
                    y = y.softmax(-1) if outputs == "softmax" else y
                    vals.append(y.gather(1, t.view(-1, 1)).squeeze(1))
                    w[i] -= sign * h
            s[i] = ((vals[0] - vals[1]) / (2 * h)).abs().mean()
        out.append(s)
    return out


@pytest.mark.parametrize("outputs", ["logits", "softmax"])
def test_specific_sensitivity_matches_finite_differences(outputs):
    net = tiny_net().double()
    x = torch.randn(1, 3, dtype=torch.float64)
    t = torch.tensor([1])
    ws = [net[0].weight, net[2].weight]
    fd = finite_difference_s(net, x, t, outputs)
    for reduction in ("batch_mean", "per_sample"):
        s = sens.sensitivity(net, ws, x, t, outputs=outputs, reduction=reduction)
        for a, b in zip(s, fd):
            assert torch.allclose(a, b, atol=1e-7)


def test_per_sample_is_the_mean_of_absolute_values_and_the_batch_forms_are_not():
    net = tiny_net(1).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    t = torch.tensor([0, 1, 1, 0, 1])
    ws = [net[0].weight, net[2].weight]
    fd = finite_difference_s(net, x, t)
    per = sens.sensitivity(net, ws, x, t, reduction="per_sample")
    mean = sens.sensitivity(net, ws, x, t, reduction="batch_mean")
    total = sens.sensitivity(net, ws, x, t, reduction="batch_sum")
    for p, m, s, f in zip(per, mean, total, fd):
        assert torch.allclose(p, f, atol=1e-7)
        assert torch.allclose(s, 5 * m)
        assert (m <= p + 1e-12).all()   # |mean of gradients| <= mean of |gradients|


def test_unspecific_averages_every_output_and_bounds_the_lower_bound():
    net = tiny_net(2).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    t = torch.tensor([0, 1, 0, 1])
    ws = [net[0].weight, net[2].weight]
    uns = sens.sensitivity(net, ws, x, t, coefficients="unspecific", reduction="per_sample")
    per_k = [sens.sensitivity(net, ws, x, torch.full_like(t, k), reduction="per_sample") for k in (0, 1)]
    low = sens.sensitivity(net, ws, x, t, coefficients="lower_bound", reduction="per_sample")
    for i in range(2):
        assert torch.allclose(uns[i], (per_k[0][i] + per_k[1][i]) / 2)
        assert (low[i] <= 2 * uns[i] + 1e-12).all()


def test_reusing_the_training_graph_gives_the_same_sensitivity():
    net = tiny_net(3)
    x, t = torch.randn(6, 3), torch.tensor([0, 1, 0, 1, 1, 0])
    ws = [net[0].weight, net[2].weight]
    logits = net(x)
    nn.functional.cross_entropy(logits, t).backward(retain_graph=True)
    reused = sens.sensitivity(net, ws, x, t, logits=logits)
    fresh = sens.sensitivity(net, ws, x, t)
    for a, b in zip(reused, fresh):
        assert torch.allclose(a, b)


def test_insensitivity_forms():
    s = torch.tensor([0.0, 0.5, 1.0, 3.0])
    assert torch.equal(sens.insensitivity(s.clone(), "bounded"), torch.tensor([1.0, 0.5, 0.0, 0.0]))
    assert torch.equal(sens.insensitivity(s.clone(), "unbounded"), torch.tensor([1.0, 0.5, 0.0, -2.0]))
    assert sens.insensitivity(None) is None


def _digits():
    return data.subset(data.load("mnist5k"), 320, 50, seed=0)


def test_constant_insensitivity_is_exactly_weight_decay():
    ds = _digits()
    lam, lr = 1e-3, 0.05
    a, b = tiny_mlp(), tiny_mlp()
    cb = sens.SensitivityStep(lam, 0.0, coefficients="none")
    train.fit(a, ds, epochs=2, lr=lr, momentum=0.0, seed=3, callbacks=[cb], progress=False)
    # torch's SGD weight decay adds wd * w to the gradient, then scales by lr: wd = lam / lr.
    # Biases are not regularized by the method, so decay only the weights in the control.
    wts = [m.weight for m in b if isinstance(m, nn.Linear)]
    rest = [p for p in b.parameters() if all(p is not w for w in wts)]
    opt = torch.optim.SGD([{"params": wts, "weight_decay": lam / lr}, {"params": rest}], lr=lr)
    train.fit(b, ds, epochs=2, seed=3, optimizer_obj=opt, progress=False)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def tiny_mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))


def test_threshold_prunes_exactly_the_small_weights_and_they_stay_zero():
    ds = _digits()
    net = tiny_mlp()
    before = {}

    class Spy(train.Callback):
        def on_epoch_end(self, state):
            before.setdefault("after", []).append(net[1].weight.detach().clone())

    cb = sens.SensitivityStep(0.0, 0.02)
    hist = train.fit(net, ds, epochs=3, lr=0.05, seed=0, callbacks=[cb, Spy()], progress=False)
    first = before["after"][0]
    # after epoch 1: exactly the weights below T are zero (the optimizer step already moved
    # the weights, so compare with the pruned tensor itself, not with earlier values)
    assert (first[first != 0].abs() >= 0.02).all() and (first == 0).any()
    assert abs(hist[0]["remaining"]["1"] - float((first != 0).float().mean())) < 1e-12
    # ... and the mask keeps them at zero through two more epochs of training
    for later in before["after"][1:]:
        assert (later[first == 0] == 0).all()
    assert hist[-1]["remaining"]["model"] <= hist[0]["remaining"]["model"]


def test_method_runs_and_sensitivity_is_logged():
    cfg = RunConfig(method="sensitivity", model="lenet300-100", dataset="mnist5k", train_size=300, test_size=100,
                    epochs=2, lr=0.05, args={"lam": 1e-2, "threshold": 0.02})
    rec = replicate.run(cfg)
    m = rec["metrics"]
    assert m["remaining"] < 1.0
    assert abs(m["remaining"] - m["final_remaining"]["model"]) < 1e-9
    assert 0 <= m["sensitivity_last_epoch"]["model"]["frac_ge_1"] <= 1
    assert [h["epoch"] for h in rec["history"]] == [1, 2]


def test_bad_sensitivity_arguments():
    base = RunConfig(method="sensitivity", dataset="mnist5k")
    with pytest.raises(ConfigError, match="unknown coefficients 'all'; valid: specific, unspecific"):
        base.replace(args={"coefficients": "all"}).validate()
    with pytest.raises(ConfigError, match="lam must be a finite number >= 0"):
        base.replace(args={"lam": -1}).validate()
    with pytest.raises(ConfigError, match="unknown reduction"):
        base.replace(args={"reduction": "max"}).validate()


def test_phase2_configs_name_the_method_the_control_and_threshold_only():
    parent = RunConfig(method="dense", model="lenet300-100", dataset="mnist5k", epochs=2)
    s = sens.phase2(parent, 5e-4, kind="sensitivity")
    w = sens.phase2(parent, 5e-4, kind="weight decay", optimizer="adam", lr=1e-3)
    t = sens.phase2(parent, 5e-4, kind="threshold only")
    assert s.args["reduction"] == "batch_sum" and s.args["lam"] == 5e-4 and s.momentum == 0.0 and s.parent == parent
    assert w.args["coefficients"] == "none" and w.optimizer == "adam" and w.lr == 1e-3
    assert t.args["lam"] == 0.0 and t.args["threshold_scale"] == "layer_std"
    assert len({s.key, w.key, t.key}) == 3
    for c in (s, w, t):
        c.validate()
    with pytest.raises(ConfigError, match="kind"):
        sens.phase2(parent, 5e-4, kind="l1")


def test_study_plan_shares_runs_between_notebooks_and_names_its_subsets():
    from replicate.studies import sensitivity as study
    # LeNet-300-100's Fashion-MNIST second phase is notebook 02's plain-SGD run (same key, one run)
    for kind in ("sensitivity", "weight decay"):
        mine = study.phase2("lenet300-100", "fashion_mnist", 1, "cpu", 1e-4, 0.5, kind)
        dense = RunConfig(method="dense", model="lenet300-100", dataset="fashion_mnist", seed=1, profile="cpu",
                          epochs=20, lr=0.01)
        nb02 = sens.phase2(dense, 1e-4, 0.5, kind, epochs=10, optimizer="sgd", lr=0.01, momentum=0.0)
        assert mine.key == nb02.key
    # LeNet-5-Caffe on Fashion-MNIST trains on its own subset; every run of the study inherits it
    d = study.dense("lenet5-caffe", "fashion_mnist", 0, "cpu")
    assert d.train_size == 10000 and study.dense("lenet5-caffe", "mnist5k", 0, "cpu").train_size is None
    chain = study.iterative("lenet5-caffe", "fashion_mnist", 0, "cpu")
    assert [c.args["compression"] for c in chain] == [2.0, 4.0, 8.0, 16.0]
    assert chain[0].parent.key == d.key and chain[-1].parent.key == chain[-2].key
    assert all(c.train_size == 10000 for c in chain)
    assert study.oneshot("lenet5-caffe", "fashion_mnist", 0, "cpu", 16).parent.key == d.key
    assert study.data_label("lenet5-caffe", "fashion_mnist", "cpu") == "fashion_mnist (10,000-image training subset)"
    assert study.data_label("lenet300-100", "fashion_mnist", "cpu") == "fashion_mnist"
    with pytest.raises(ConfigError, match="no dense_epochs planned for vgg16-cifar on fashion_mnist"):
        study.dense("vgg16-cifar", "fashion_mnist", 0, "cpu")
    with pytest.raises(ConfigError, match="unknown profile"):
        study.plan("gpu")

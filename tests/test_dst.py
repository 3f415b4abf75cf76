import math

import pytest
import torch
from torch import nn

import replicate
from replicate import metrics
from replicate.config import ConfigError, RunConfig
from replicate.methods import dst


def paper_H(x: float) -> float:
    """Eq. 3 of the paper, written out."""
    a = abs(x)
    if a <= 0.4:
        return 2 - 4 * a
    if a <= 1:
        return 0.4
    return 0.0


def test_long_tailed_estimator_matches_eq3():
    xs = torch.linspace(-1.5, 1.5, 301, dtype=torch.float64)
    got = dst.estimator_grad(xs, "long_tailed")
    want = torch.tensor([paper_H(float(x)) for x in xs], dtype=torch.float64)
    assert torch.allclose(got, want)
    assert torch.allclose(dst.estimator_grad(xs, "ste"), (xs.abs() <= 1).double())
    tri = torch.tensor([2 - 4 * abs(float(x)) if abs(float(x)) <= 0.4 else 0.0 for x in xs], dtype=torch.float64)
    assert torch.allclose(dst.estimator_grad(xs, "triangle"), tri)


def test_step_backward_uses_the_estimator():
    x = torch.tensor([-0.9, -0.2, 0.0, 0.3, 0.7, 1.2], requires_grad=True)
    y = dst.binary_step(x)
    assert y.tolist() == [0, 0, 0, 1, 1, 1]  # strict '>' as in the official code
    assert dst.binary_step(x.detach(), at_zero=1).tolist() == [0, 0, 1, 1, 1, 1]
    y.sum().backward()
    assert torch.allclose(x.grad, torch.tensor([paper_H(v) for v in x.tolist()]))


@pytest.mark.parametrize("granularity", ["neuron", "layer", "weight"])
@pytest.mark.parametrize("estimator", ["long_tailed", "ste", "triangle"])
def test_fused_masked_weight_has_the_reference_gradients(granularity, estimator):
    torch.manual_seed(0)
    layer = dst.MaskedLinear(7, 5, granularity=granularity, estimator=estimator, reset="off").double()
    with torch.no_grad():
        layer.weight.mul_(3)
        layer.threshold.uniform_(-0.2, 0.6)
    g = torch.randn(5, 7, dtype=torch.float64)
    (layer.masked_weight() * g).sum().backward()
    w = layer.weight.detach().clone().requires_grad_(True)
    t = layer.threshold.detach().clone().requires_grad_(True)
    t_b = t if granularity == "weight" else t.view(-1, 1)  # (5, 1) per neuron, (1, 1) per layer
    ref = w * dst.binary_step(w.abs() - t_b, estimator)
    (ref * g).sum().backward()
    assert torch.allclose(layer.weight.grad, w.grad)
    assert torch.allclose(layer.threshold.grad, t.grad)


def test_the_compiled_estimator_has_the_same_values():
    xs = torch.linspace(-1.5, 1.5, 3001)
    for kind in dst.ESTIMATORS:
        assert torch.equal(dst._estimator_where(xs, kind), dst.estimator_grad(xs, kind))


@pytest.mark.parametrize("estimator,granularity,at_zero", [("long_tailed", "neuron", 0), ("ste", "weight", 1),
                                                          ("triangle", "layer", 0)])
def test_the_compiled_kernel_gives_the_eager_values_and_gradients(estimator, granularity, at_zero):
    torch.manual_seed(0)
    layers = {k: dst.MaskedLinear(40, 30, granularity=granularity, estimator=estimator, reset="off",
                                  step_at_zero=at_zero, kernel=k) for k in dst.KERNELS}
    eager, compiled = layers["eager"], layers["compiled"]
    with torch.no_grad():
        eager.weight.normal_(0, 0.5)
        eager.threshold.uniform_(-0.1, 0.4)
        eager.threshold.view(-1)[0] = eager.weight.abs().view(-1)[0]      # one weight exactly at its threshold
        compiled.load_state_dict(eager.state_dict())
    g = torch.randn(30, 40)
    for layer in layers.values():
        (layer.masked_weight() * g).sum().backward()
    assert compiled.kernel_used() == "compiled" and eager.kernel_used() == "eager"
    assert torch.equal(compiled.last_mask, eager.last_mask) and compiled.kept() == eager.kept()
    assert torch.equal(compiled.masked_weight(), eager.masked_weight())
    assert torch.allclose(compiled.weight.grad, eager.weight.grad, rtol=1e-6, atol=1e-7)
    assert torch.allclose(compiled.threshold.grad, eager.threshold.grad, rtol=1e-5, atol=1e-6)  # sums in another order


def test_a_compiled_model_computes_all_masked_weights_in_one_node_with_the_eager_results():
    from replicate import models
    torch.manual_seed(0)
    base = models.build("lenet300-100", (1, 28, 28), 10)
    eager = dst.to_masked(base, kernel="eager")
    compiled = dst.to_masked(models.build("lenet300-100", (1, 28, 28), 10), kernel="compiled")
    compiled.load_state_dict(eager.state_dict())
    with torch.no_grad():
        for model in (eager, compiled):
            layers = list(dst.masked_layers(model).values())
            layers[0].threshold.fill_(0.03)
            layers[1].threshold.fill_(1.0)                 # keeps no weight: the reset rule fires
    x = torch.randn(8, 1, 28, 28)
    outs = {}
    for name, model in (("eager", eager), ("compiled", compiled)):
        y = model(x)
        y.square().sum().backward()
        outs[name] = y
    assert torch.allclose(outs["compiled"], outs["eager"], atol=1e-6)
    le, lc = dst.masked_layers(eager), dst.masked_layers(compiled)
    for n in le:
        assert lc[n].resets == le[n].resets and lc[n].kept() == le[n].kept() and lc[n]._stash is None
        assert torch.equal(lc[n].last_mask, le[n].last_mask)
        assert torch.allclose(lc[n].weight.grad, le[n].weight.grad, rtol=1e-5, atol=1e-7)
        assert torch.allclose(lc[n].threshold.grad, le[n].threshold.grad, rtol=1e-4, atol=1e-6)
    assert [m.resets for m in lc.values()] == [0, 1, 0]


def test_the_kernel_setting_and_the_fallback_when_compiling_fails(monkeypatch):
    assert dst.kernel_for("smoke") == "eager"                     # conftest sets REPLICATE_DST_KERNEL=eager
    monkeypatch.setenv(dst.KERNEL_ENV, "auto")
    assert dst.kernel_for("smoke") == "eager" and dst.kernel_for("cpu") == dst.kernel_for("paper") == "compiled"
    monkeypatch.setenv(dst.KERNEL_ENV, "fast")
    with pytest.raises(ConfigError, match="valid: eager, compiled, auto"):
        dst.kernel_for("cpu")

    def broken(kind, at_zero):
        raise RuntimeError("no C++ compiler")
    monkeypatch.setattr(dst, "_kernels", broken)
    monkeypatch.setattr(dst, "_COMPILE_FAILED", [])
    torch.manual_seed(0)
    layer = dst.MaskedLinear(6, 4, kernel="compiled")
    with pytest.warns(UserWarning, match="RuntimeError: no C.. compiler.*eager kernel"):
        w = layer.masked_weight()
    assert torch.equal(w, layer.weight) and layer.kernel_used() == "eager"   # zero thresholds: the dense weights


def test_zero_thresholds_give_the_dense_layer():
    torch.manual_seed(1)
    lin, conv = nn.Linear(20, 8), nn.Conv2d(3, 4, 3)
    ml = dst.to_masked(nn.Sequential(lin, nn.ReLU(), nn.Flatten()))
    x = torch.randn(5, 20)
    assert torch.equal(ml(x), torch.relu(lin(x)))
    mc = dst.to_masked(nn.Sequential(conv))
    xi = torch.randn(2, 3, 9, 9)
    assert torch.equal(mc(xi), conv(xi))


def test_threshold_shapes_per_granularity():
    conv = dst.MaskedConv2d(3, 4, 3, granularity="neuron")
    assert conv.threshold.shape == (4,)
    assert dst.MaskedConv2d(3, 4, 3, granularity="layer").threshold.shape == (1,)
    assert dst.MaskedLinear(6, 2, granularity="weight").threshold.shape == (2, 6)
    with pytest.raises(ConfigError, match="valid: neuron, layer, weight"):
        dst.MaskedLinear(6, 2, granularity="filter")


def test_remaining_counts_masked_weights_only():
    model = dst.to_masked(nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 4)), reset="off")
    with torch.no_grad():
        model[0].weight.copy_(torch.arange(1, 101, dtype=torch.float32).view(10, 10) / 100)
        model[0].threshold.fill_(0.7)  # keeps |w| > 0.7: 30 of 100
        model[2].weight.fill_(0.5)
        model[2].bias.zero_()           # biases are never counted
    model(torch.zeros(1, 10))
    r = dst.remaining(model)
    assert r["0"] == 0.30 and r["2"] == 1.0
    assert r["model"] == (30 + 40) / 140
    plain = dst.to_plain(model)
    s = metrics.summarize(plain, (10,))
    assert s["nonzero"] == 70 and s["weights"] == 140


def test_reset_fires_exactly_at_one_percent():
    def layer_keeping(k, reset="train_and_eval"):
        lay = dst.MaskedLinear(100, 10, granularity="layer", reset=reset)
        with torch.no_grad():
            lay.weight.copy_(torch.arange(1, 1001, dtype=torch.float32).view(10, 100))
            lay.threshold.fill_(1000 - k + 0.5)  # keeps exactly k of 1,000 weights
        return lay

    at = layer_keeping(10)            # 1 %: fires, back to dense
    at(torch.zeros(1, 100))
    assert at.resets == 1 and at.threshold.item() == 0 and bool(at.last_mask.all())
    above = layer_keeping(11)         # 1.1 %: does not fire
    above(torch.zeros(1, 100))
    assert above.resets == 0 and int(above.last_mask.sum()) == 11
    off = layer_keeping(5, reset="off")
    off(torch.zeros(1, 100))
    assert off.resets == 0 and int(off.last_mask.sum()) == 5
    train_only = layer_keeping(5, reset="train").eval()
    train_only(torch.zeros(1, 100))
    assert train_only.resets == 0
    train_only.train()(torch.zeros(1, 100))
    assert train_only.resets == 1


@pytest.mark.parametrize("kind", dst.REGULARIZERS)
def test_every_regularizer_pushes_thresholds_up(kind):
    model = dst.to_masked(nn.Sequential(nn.Linear(4, 3)))
    pen = dst.penalty_fn(model, kind, 1.0)()
    assert math.isfinite(float(pen.detach()))
    pen.backward()
    assert torch.all(model[0].threshold.grad < 0)  # gradient descent raises t


def test_bad_dst_arguments():
    for args, msg in [({"alpha": -1}, "alpha must be a finite number >= 0"),
                      ({"estimator": "sigmoid"}, "valid: long_tailed, ste, triangle"),
                      ({"regularizer": "l1"}, "valid: exp, linear, inverse, neglog, softplus, exp_layer_mean"),
                      ({"reset": "sometimes"}, "valid: train_and_eval, train, off")]:
        with pytest.raises(ConfigError, match=msg.replace("(", r"\(")):
            RunConfig(method="dst", dataset="mnist5k", args=args).validate()


def test_dst_sparsifies_and_stays_accurate_on_real_digits():
    dense = RunConfig(model="lenet300-100", dataset="mnist5k", train_size=1000, test_size=300, epochs=8, lr=0.05)
    rec = replicate.run(dense.replace(method="dst", args={"alpha": 2e-3}))
    m = rec["metrics"]
    rem = [h["remaining"]["model"] for h in rec["history"]]
    assert rem[0] < 1.0 and rem[-1] < rem[0]       # sparsity rises
    acc_dense = replicate.run(dense)["metrics"]["test_acc"]
    assert acc_dense > 0.8
    assert m["test_acc"] > acc_dense - 0.05         # and accuracy stays close to dense
    assert abs(m["remaining"] - m["final_remaining"]["model"]) < 1e-9  # exported model = masked model
    assert m["compression"] > 1.5


@pytest.mark.parametrize("kernel", dst.KERNELS)
def test_sparsity_log_counts_mask_zero_to_one_transitions(kernel):
    from types import SimpleNamespace
    torch.manual_seed(0)
    net = torch.nn.Sequential(dst.MaskedLinear(6, 4, reset="off", kernel=kernel))
    layer = net[0]
    state = SimpleNamespace(model=net, epoch=0, step=0)
    log = dst.SparsityLog()
    log.on_train_begin(state)
    masks = []
    for t in (0.3, 0.1, 0.2, 0.0):             # thresholds move down, up, down
        with torch.no_grad():
            layer.threshold.fill_(t)
        layer.masked_weight()
        masks.append(layer.last_mask.bool())      # a copy: the compiled kernel reuses its mask buffers
        layer.eval()
        layer.mask()                               # evaluation forwards between steps change no count
        layer.train()
        log.after_step(state)
        state.step += 1
    assert layer.kernel_used() == kernel
    want = sum(int((b & ~a).sum()) for a, b in zip(masks, masks[1:]))
    assert want > 0 and log.revived == want
    assert [r["step"] for r in log.steps] == [0, 1, 2, 3]
    assert log.steps[-1]["0"] == 1.0


def test_l0_density_penalty_is_the_kept_fraction_with_the_estimators_gradient():
    torch.manual_seed(0)
    layer = dst.MaskedLinear(20, 5)
    with torch.no_grad():
        layer.threshold.fill_(0.1)
    model = torch.nn.Sequential(layer)
    pen = dst.penalty_fn(model, "l0_density", 2.0)()
    q = layer.weight.abs() - 0.1
    assert abs(float(pen.detach()) - 2.0 * float((q > 0).float().mean())) < 1e-6
    pen.backward()
    h = dst.estimator_grad(q.detach(), "long_tailed")
    # d/dt_i = -alpha * sum_j H(Q_ij) / n ; d/dW = alpha * H(Q) * sign(W) / n
    assert torch.allclose(layer.threshold.grad, -2.0 * h.sum(1) / q.numel(), atol=1e-6)
    assert torch.allclose(layer.weight.grad, 2.0 * h * layer.weight.detach().sign() / q.numel(), atol=1e-6)
    # the push raises thresholds (gradient descent on t increases it): sparsity grows
    assert (layer.threshold.grad <= 0).all() and (layer.threshold.grad < 0).any()


def test_the_allocator_is_tuned_once_and_can_be_left_alone(monkeypatch):
    from replicate import train
    monkeypatch.setattr(train, "_ALLOCATOR_TUNED", [])
    monkeypatch.setenv("REPLICATE_MALLOC_TUNE", "0")
    assert train.tune_allocator() is False and train._ALLOCATOR_TUNED == [False]
    monkeypatch.setattr(train, "_ALLOCATOR_TUNED", [])
    monkeypatch.delenv("REPLICATE_MALLOC_TUNE")
    first = train.tune_allocator()
    assert isinstance(first, bool) and train.tune_allocator() is first and len(train._ALLOCATOR_TUNED) == 1


def test_the_compiled_kernel_counts_the_same_revived_weights_as_the_eager_one_through_training():
    """Whole fits of a masked LeNet-300-100 with each kernel, a reset firing on the way: the same revived-weight
    count, resets and remaining ratios (the compiled forward counts them in its kernel, the eager log by dot
    products)."""
    from replicate import data, models, train
    torch.manual_seed(0)
    x, y = torch.randn(256, 1, 28, 28), torch.randint(0, 10, (256,))
    ds = data.Dataset("synthetic", x, y, x[:64], y[:64], 10, "seeded random")
    out = {}
    for kernel in dst.KERNELS:
        torch.manual_seed(1)
        model = dst.to_masked(models.build("lenet300-100", (1, 28, 28), 10), kernel=kernel)
        with torch.no_grad():
            layers = list(dst.masked_layers(model).values())
            layers[0].threshold.fill_(0.02)
            layers[2].threshold.fill_(5.0)                   # keeps nothing: the reset rule fires at the first step
        log = dst.SparsityLog()
        hist = train.fit(model, ds, epochs=2, batch_size=32, lr=0.05, momentum=0.9, callbacks=[log],
                         penalty=dst.penalty_fn(model, "exp", 1e-3), progress=False)
        out[kernel] = (log.revived, [m.resets for m in layers], [h["remaining"] for h in hist])
        assert {m.kernel_used() for m in layers} == {kernel}
    assert out["compiled"][0] == out["eager"][0] > 0
    assert out["compiled"][1] == out["eager"][1] == [0, 0, 1]
    for a, b in zip(out["compiled"][2], out["eager"][2]):
        assert a == pytest.approx(b, abs=1e-3)


@pytest.mark.parametrize("granularity", dst.GRANULARITIES)
def test_the_one_node_exp_penalty_equals_the_formulas_autograd_chain_bit_for_bit(granularity):
    from replicate import models
    torch.manual_seed(0)
    model = dst.to_masked(models.build("lenet300-100", (1, 28, 28), 10), granularity=granularity)
    ts = [m.threshold for m in dst.masked_layers(model).values()]
    with torch.no_grad():
        for t in ts:
            t.normal_(0, 0.3)
    fused = dst.penalty_fn(model, "exp", 5e-4)()
    chain = 5e-4 * sum(torch.exp(-t).sum() for t in ts)
    assert fused.item() == chain.item()
    for a, b in zip(torch.autograd.grad(fused * 1.7, ts), torch.autograd.grad(chain * 1.7, ts)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("granularity", dst.GRANULARITIES)
def test_the_exp_penalty_computed_in_the_compiled_node_trains_bit_for_bit_like_its_own_node(granularity):
    """A compiled model computes the exp penalty inside its masked-weight node (one node fewer per step): whole
    fits with it and with the penalty's own node (_ExpPenalty) end with identical weights, thresholds, resets
    and revived counts; the resets here fire often (a large alpha), so the fallback after a reset is taken."""
    from replicate import data, models, train
    torch.manual_seed(0)
    x, y = torch.randn(192, 1, 28, 28), torch.randint(0, 10, (192,))
    ds = data.Dataset("synthetic", x, y, x[:32], y[:32], 10, "seeded random")
    out, used = {}, {}
    for fused in (True, False):
        torch.manual_seed(1)
        model = dst.to_masked(models.build("lenet300-100", (1, 28, 28), 10), kernel="compiled",
                              granularity=granularity)
        layers = list(dst.masked_layers(model).values())
        with torch.no_grad():
            layers[0].threshold.fill_(0.02)
            layers[2].threshold.fill_(5.0)
        own = dst.penalty_fn(model, "exp", 0.1)
        kinds = []

        def penalty():
            p = own() if fused else dst._ExpPenalty.apply(0.1, *[m.threshold for m in layers])
            kinds.append(type(p.grad_fn).__name__)
            return p
        log = dst.SparsityLog()
        train.fit(model, ds, epochs=2, batch_size=32, lr=0.05, momentum=0.9, callbacks=[log], penalty=penalty,
                  progress=False)
        out[fused] = (model.state_dict(), [m.resets for m in layers], log.revived)
        used[fused] = set(kinds)
    assert out[True][1] == out[False][1] and sum(out[True][1]) > 0 and out[True][2] == out[False][2]
    assert all(torch.equal(out[True][0][k], v) for k, v in out[False][0].items())
    assert used[True] == {"_CompiledMaskedWeightsBackward", "_ExpPenaltyBackward"}   # fused, and after resets
    assert used[False] == {"_ExpPenaltyBackward"}


def test_the_fused_penalty_is_used_once_per_forward_and_not_in_evaluation():
    from replicate import models
    torch.manual_seed(0)
    model = dst.to_masked(models.build("lenet300-100", (1, 28, 28), 10), kernel="compiled")
    pen = dst.penalty_fn(model, "exp", 5e-4)
    x = torch.randn(4, 1, 28, 28)
    model(x)
    first, second = pen(), pen()
    assert type(first.grad_fn).__name__ == "_CompiledMaskedWeightsBackward"
    assert type(second.grad_fn).__name__ == "_ExpPenaltyBackward" and first.item() == second.item()
    model.eval()
    model(x)
    assert type(pen().grad_fn).__name__ == "_ExpPenaltyBackward"

"""The DRL pruning method (replicate.methods.drl_prune), its agents (replicate.rl.agents) and its
baselines (methods.fbs, methods.channel_prune): rewards by hand, the agents learning a budget on a
toy, runs end to end through the runner, the static export, FPGM's criterion on a hand-built layer,
a diverging run recorded as failed, and one-line errors."""
import math

import pytest
import torch

import replicate
from replicate import models, runner
from replicate.config import ConfigError, RunConfig
from replicate.methods import channel_prune as CP
from replicate.methods import drl_gates as G
from replicate.methods import drl_prune as D
from replicate.methods import fbs as FBS
from replicate.models import drl_nets
from replicate.rl.agents import LayerAgent

DENSE = RunConfig(model="m-fashionnet-s", dataset="mnist5k", train_size=500, test_size=200, epochs=1,
                  optimizer="adam", lr=1e-3, batch_size=128, profile="smoke")
TINY_DRL = {"iterations": 1, "agent_batches": 2, "cnn_batches": 2}


def _drl(**args):
    return DENSE.replace(method="drl_prune", parent=DENSE, epochs=0, args={**TINY_DRL, **args})


# --- backbones in the registry -------------------------------------------------------------------

@pytest.mark.parametrize("name, shape", [("m-fashionnet", (1, 28, 28)), ("m-fashionnet-s", (1, 28, 28)),
                                         ("m-cifarnet", (3, 32, 32)), ("m-cifarnet", (1, 28, 28))])
def test_backbones_are_registered_for_the_image_shapes(name, shape):
    net = models.build(name, shape, 10)
    assert net.blocks[0].conv.in_channels == shape[0]
    assert net(torch.zeros(2, *shape)).shape == (2, 10)


def test_registered_backbones_have_the_counted_sizes():
    assert G.network_macs(models.build("m-cifarnet", (3, 32, 32), 10), (32, 32))["dense"] == 174_301_824
    assert G.network_macs(models.build("m-fashionnet", (1, 28, 28), 10), (28, 28))["dense"] == 29_128_448
    assert G.network_macs(models.build("m-fashionnet-s", (1, 28, 28), 10), (28, 28))["dense"] == 7_338_880


def test_backbones_refuse_inputs_that_are_not_images():
    with pytest.raises(ConfigError, match=r"m-fashionnet takes images of shape \(channels, height, width\)"):
        models.build("m-fashionnet", (784,), 10)


# --- rewards and agents --------------------------------------------------------------------------

def test_consumption_is_the_ratio_macs_of_each_row():
    net = drl_nets.ConvChain((4, 6, 8), (1, 2, 1), (1, 1, 0), in_channels=2, num_classes=3)
    u = D.layer_units(net, (8, 8))
    ratios = torch.tensor([[0.5, 0.5, 0.25], [1.0, 0.3, 0.7], [1.0, 1.0, 1.0]])
    got = D.consumption(ratios, u["macs"], u["c_in"], u["c_out"])
    full = G.ratio_macs(net, [1.0] * 3, (8, 8))
    want = [G.ratio_macs(net, r.tolist(), (8, 8)) / full for r in ratios]
    assert torch.allclose(got, torch.tensor(want, dtype=torch.float64))
    # parameters: 9 weights per (input, output) pair in every layer
    p = D.consumption(ratios[:1], u["params"], u["c_in"], u["c_out"])
    assert float(p) == pytest.approx((9 * 2 * 2 + 9 * 2 * 3 + 9 * 3 * 2) / (9 * (2 * 4 + 4 * 6 + 6 * 8)))


def test_budget_reward_is_the_codes_penalty_with_a_cap():
    used = torch.tensor([0.5, 0.53, 0.4, 0.9], dtype=torch.float64)
    got = D.budget_reward(used, 0.5, 0.1)
    assert got[0] == 0.0                                                     # at budget: nothing
    assert float(got[1]) == pytest.approx(-1.2 * (math.e - 1))               # 0.03 over: -1.2 (e - 1)
    assert float(got[2]) == pytest.approx(0.1 * 0.1)                         # 0.1 under: bonus 0.1 x 0.1
    assert float(got[3]) == pytest.approx(-1.2 * (math.exp(D.MAX_EXPONENT) - 1))   # capped
    assert float(D.budget_reward(torch.tensor([0.4]), 0.5, 0.0)) == 0.0      # static agent: no bonus


def test_loss_scale_is_a_cumulative_mean_then_an_ema():
    s = D.LossScale()
    assert [s.update(v) for v in (2.0, 4.0, 6.0)] == [2.0, 3.0, 4.0]
    for _ in range(D.LOSS_WARMUP - 3):
        s.update(4.0)
    assert s.value == pytest.approx(4.0)
    assert s.update(14.0) == pytest.approx(D.LOSS_EMA * 4.0 + (1 - D.LOSS_EMA) * 14.0)


@pytest.mark.parametrize("encoder_input", ["in", "in+out"])
def test_agent_overhead_is_a_small_fraction_of_each_backbone(encoder_input):
    for name, shape in (("m-fashionnet-s", (1, 28, 28)), ("m-fashionnet", (1, 28, 28)), ("m-cifarnet", (3, 32, 32))):
        net = D.build(models.build(name, shape, 10), {**D.ARGS["drl_prune"], "encoder_input": encoder_input})
        assert net.runtime.inference_macs() == G.agent_macs(net.gated, hidden=32, encoder_input=encoder_input)
        dense = G.network_macs(net.gated, shape[1:])["dense"]
        assert net.runtime.inference_macs() / dense < 0.01
        # parameters: on M-FashionNet-S 10 % ("in") and 20 % ("in+out"), under the paper's 1.31x - 1.11x
        assert net.runtime.inference_params() / G.param_counts(models.build(name, shape, 10))["backbone"] < 0.21


def test_agent_evaluate_reproduces_the_steps():
    torch.manual_seed(0)
    agent = LayerAgent([3, 5], hidden=8)
    obs = torch.randn(4, 2, 5)
    obs[:, 0, 3:] = 0
    cond = torch.full((4,), 0.5)
    h, mus, stds, vals = agent.initial(4), [], [], []
    for t in range(2):
        mu, log_std, v, h = agent.step(t, obs[:, t], h, cond)
        mus.append(mu)
        stds.append(log_std)
        vals.append(v)
    mu, log_std = torch.stack(mus, 1), torch.stack(stds, 1)
    logp, ent, values, means = agent.evaluate(obs, mu, cond)
    assert torch.allclose(means, mu) and torch.allclose(values, torch.stack(vals, 1))
    # at its own mean, a Gaussian's log density is -log(std) - log(2 pi) / 2
    assert torch.allclose(logp, -log_std - 0.5 * math.log(2 * math.pi))
    assert torch.allclose(mu, torch.full_like(mu, 0.5), atol=0.3)     # the first policy's mean is near the condition
    assert torch.all(ent < 0) and log_std.mean().item() == pytest.approx(-4.0, abs=0.5)   # std ~ e^-4


def _toy(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(512, 1, 8, 8, generator=g)
    y = (x.mean((1, 2, 3)) > 0).long() + 2 * (x[:, 0, 0, 0] > 0).long()
    return x, y, g


def test_agents_bring_an_over_budget_policy_within_the_budget():
    torch.manual_seed(0)
    chain = drl_nets.ConvChain((8, 8, 16), (1, 2, 1), in_channels=1, num_classes=4)
    a = {**D.ARGS["drl_prune"], "rr": 1.0, "budget": 0.5, "agent_lr": 3e-3}
    model = D.build(chain, a).eval()
    with torch.no_grad():                      # start far over budget: mean ratio 0.8 instead of 0.5
        model.runtime.actor.mean.bias.fill_(0.3)
    trainer = D.Trainer(model, a, (8, 8), seed=0)
    x, y, g = _toy()
    full = G.ratio_macs(model.gated, [1.0] * 3, (8, 8))

    def measured():
        return G.measure(model.gated, model, x, (8, 8))["macs_conv"] / full

    assert measured() > trainer.target["runtime"] + 0.2
    for _ in range(40):
        idx = torch.randint(0, 512, (64,), generator=g)
        trainer.update("runtime", trainer.rollout(x[idx], y[idx])["runtime"])
    assert measured() <= trainer.target["runtime"] + 0.03


# --- the method through the runner -----------------------------------------------------------------

# Rr = 0.5 also takes every non-default path: the code's encoder input, budget use from the masks,
# an evaluation per iteration and a fine-tuning epoch after the last iteration.
OTHER_PATHS = {"encoder_input": "in+out", "consumption": "masks", "eval_every": 1, "finetune_epochs": 1,
               "pretrain_batches": 1}


@pytest.mark.parametrize("rr", [1.0, 0.5, 0.0])
def test_drl_prune_runs_end_to_end_and_records_its_accounting(rr):
    args = {"rr": rr, **(OTHER_PATHS if rr == 0.5 else {})}
    rec = replicate.run(_drl(**args))
    assert rec["status"] == "ok"
    m = rec["metrics"]
    assert len(m["kept_ratio"]) == 6 and m["drl"]["budget"] == 0.5 and m["drl"]["rr"] == rr
    assert m["macs_dense"] == 7_338_880 and 0 < m["macs_mean"] < m["macs_dense"]
    assert m["macs_speedup"] == pytest.approx(m["macs_dense"] / m["macs_mean"])
    assert m["params_stored"] == m["params_backbone"] + m["params_overhead"]
    assert (m["drl"]["params_agent"] > 0) == (rr > 0)
    assert (m["drl"]["macs_agent"] > 0) == (rr > 0)
    assert len(rec["history"]) == (2 if rr == 0.5 else 1) and len(m["drl"]["curve"]) == 1
    if rr == 0:      # the deployed model is the static export
        assert m["static_export_test_acc"] == m["test_acc"]
        assert m["static_export_params"] == m["params_stored"]
    if rr == 1:
        assert "static_export_test_acc" not in m
    model, again = runner.load_model(_drl(**args))      # from the weight cache
    data = runner.load_data(_drl(**args))
    assert isinstance(model, D.DRLNet) and model.rr == rr
    assert model.encoder_input == args.get("encoder_input", "in")
    assert replicate.tasks.for_data(data).evaluate(model, data.x_test, data.y_test)["acc"] == m["test_acc"]


@pytest.mark.parametrize("rr", [1.0, 0.5, 0.0])
def test_the_uniform_policy_keeps_the_budget_everywhere_and_has_no_agent(rr):
    rec = replicate.run(_drl(rr=rr, policy="uniform"))
    assert rec["status"] == "ok"
    m = rec["metrics"]
    assert m["drl"]["params_agent"] == 0 and m["drl"]["macs_agent"] == 0
    assert m["drl"]["static_ratios"] == [0.5] * 6                     # never moved by an agent
    curve = m["drl"]["curve"][0]
    assert not any(k.startswith(("runtime", "static_")) and k != "static_ratios" for k in curve)   # no agent phase
    model, _ = runner.load_model(_drl(rr=rr, policy="uniform"))
    assert model.uniform and isinstance(model, D.DRLNet)
    data = runner.load_data(_drl(rr=rr, policy="uniform"))
    assert replicate.tasks.for_data(data).evaluate(model, data.x_test, data.y_test)["acc"] == m["test_acc"]
    if rr == 1:      # runtime only at d: every layer keeps d of its channels for every input, the uniform budget
        assert m["kept_ratio"] == [0.5] * 6
        assert m["drl"]["achieved_macs_fraction"] == pytest.approx(m["drl"]["budget_macs_fraction"])


def test_rr0_export_gives_the_masked_models_outputs():
    torch.manual_seed(0)
    net = D.build(drl_nets.build_backbone("m-fashionnet-s"), {**D.ARGS["drl_prune"], "rr": 0.0})
    with torch.no_grad():
        for layer in net.gated.layers:
            layer.gate.weight.normal_(0, 0.3)
            layer.static.uniform_(0.5, 1.5)
            layer.bn.running_var.uniform_(0.5, 1.5)
        net.static_ratios.copy_(torch.tensor([0.5, 0.75, 0.4, 0.6, 0.3, 0.9]))
    net.sync_ratios()
    net.eval()
    x = torch.randn(6, 1, 28, 28)
    with torch.no_grad():
        small = G.export_static(net.gated).eval()
        assert torch.allclose(small(x), net(x), atol=1e-5)
    assert [layer.conv.out_channels for layer in small.layers] == [8, 12, 13, 20, 20, 58]


def test_a_diverging_run_is_recorded_as_failed_not_dropped():
    cfg = _drl(rr=1.0).replace(lr=1e30)      # one Adam step moves every weight by ~1e30: the next loss overflows
    with pytest.warns(UserWarning, match="diverged"):
        rec = replicate.run(cfg)
    assert rec["status"] == "failed" and rec["failed_epoch"] == 1 and "nan" in rec["error"]
    assert replicate.run(cfg)["status"] == "failed"          # stored: asked again, not re-run


@pytest.mark.parametrize("args, model, match", [
    ({"budget": 0.0}, "m-fashionnet-s", r"budget must be a number in \(0, 1\]"),
    ({"budget": 1.5}, "m-fashionnet-s", r"budget must be a number in \(0, 1\]"),
    ({"rr": 1.5}, "m-fashionnet-s", r"Rr must be a number in \[0, 1\]"),
    ({"rr": -0.1}, "m-fashionnet-s", r"Rr must be a number in \[0, 1\]"),
    ({"encoder_input": "out"}, "m-fashionnet-s", "valid: in, in\\+out"),
    ({"iterations": 0}, "m-fashionnet-s", "iterations must be an integer >= 1"),
    ({"agent_lr": 0.0}, "m-fashionnet-s", "agent_lr must be positive"),
    ({"policy": "random"}, "m-fashionnet-s", "unknown policy 'random'; valid: agents, uniform"),
    ({}, "lenet5-caffe", "valid: m-cifarnet, m-fashionnet, m-fashionnet-s"),
])
def test_bad_arguments_give_one_line_errors(args, model, match):
    parent = DENSE.replace(model=model)
    with pytest.raises(ConfigError, match=match) as err:
        parent.replace(method="drl_prune", parent=parent, args=args).validate()
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("method", ["fbs", "fpgm", "l1_channel"])
def test_baselines_reject_budgets_outside_the_unit_interval(method):
    with pytest.raises(ConfigError, match=r"budget must be a number in \(0, 1\]"):
        DENSE.replace(method=method, parent=DENSE, args={"budget": 1.2}).validate()


# --- baselines ------------------------------------------------------------------------------------

def test_fpgm_removes_the_filter_nearest_the_geometric_median():
    # Five 2-D filters (1x1 kernels on 2 input channels): the corners of a unit square (one pulled
    # out to break ties) and its centre. Sums of distances: centre 0.707 x 3 + |(0.5,0.5)-(1.2,1.1)|
    # = 2.54, every corner more, so FPGM prunes the centre. L1 prunes the origin filter (norm 0).
    w = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.2, 1.1], [0.5, 0.5]])
    scores = CP.geometric_median_scores(w[:, :, None, None])
    by_hand = [sum(math.dist(a, b) for b in w.tolist()) for a in w.tolist()]
    assert torch.allclose(scores, torch.tensor(by_hand, dtype=torch.float64))
    assert float(scores[4]) == pytest.approx(3 * math.sqrt(0.5) + math.dist((0.5, 0.5), (1.2, 1.1)))
    chain = drl_nets.ConvChain((5,), (1,), (0,), in_channels=2, num_classes=2)
    chain.blocks[0].conv = torch.nn.Conv2d(2, 5, 1, bias=False)
    with torch.no_grad():
        chain.blocks[0].conv.weight.copy_(w[:, :, None, None])
    assert CP.kept_filters(chain, 0.8, "fpgm")[0].tolist() == [0, 1, 2, 3]       # ceil(0.8 x 5) = 4 kept
    assert CP.kept_filters(chain, 0.8, "l1_channel")[0].tolist() == [1, 2, 3, 4]


def test_zeroed_channels_slice_away_without_changing_outputs():
    torch.manual_seed(0)
    chain = drl_nets.build_backbone("m-fashionnet-s")
    with torch.no_grad():
        for b in chain.blocks:
            b.bn.weight.uniform_(0.5, 1.5)
            b.bn.bias.uniform_(-0.2, 0.2)
            b.bn.running_var.uniform_(0.5, 1.5)
    chain.eval()
    keep = CP.kept_filters(chain, 0.5, "fpgm")
    CP.zero_channels(chain, keep)
    narrow = drl_nets.narrow_chain(chain, keep).eval()
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(narrow(x), chain(x), atol=1e-5)
    assert [b.conv.out_channels for b in narrow.blocks] == [8, 8, 16, 16, 32, 32]


def test_fbs_keeps_the_winners_of_each_input_and_starts_as_its_parent():
    torch.manual_seed(0)
    parent = drl_nets.build_backbone("m-fashionnet-s")
    with torch.no_grad():
        for b in parent.blocks:
            b.bn.weight.uniform_(0.5, 1.5)
            b.bn.bias.uniform_(-0.2, 0.2)
    parent.eval()
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(FBS.to_fbs(parent, 1.0).eval()(x), parent(x), atol=1e-5)   # BN folded into the gate
        net = FBS.to_fbs(parent, 0.3).eval()
        for layer in net.layers:
            layer.gate.weight.normal_(0, 0.5)
        net(x)
    for layer in net.layers:
        c = layer.conv.out_channels
        assert layer.last_keep.sum(1).tolist() == [math.ceil(0.3 * c - 1e-6)] * 4
        winners = layer.last_saliency.topk(math.ceil(0.3 * c - 1e-6), 1).indices
        assert torch.all(layer.last_keep.gather(1, winners) == 1)
    penalty = FBS.l1_penalty(net, 0.01)()
    assert float(penalty) == pytest.approx(0.01 * sum(float(layer.last_saliency.sum(1).mean()) for layer in net.layers))


def test_baselines_run_end_to_end_on_the_same_parent():
    recs = {m: replicate.run(DENSE.replace(method=m, parent=DENSE, args={"budget": 0.5}))
            for m in ("fbs", "fpgm", "l1_channel")}
    assert all(r["status"] == "ok" for r in recs.values())
    uniform = 1 / G.uniform_budget(drl_nets.build_backbone("m-fashionnet-s"), 0.5, (28, 28))
    for r in recs.values():          # every layer keeps ceil(C / 2): the uniform budget's speed-up (FC aside)
        assert r["metrics"]["kept_ratio"] == [0.5] * 6
        assert r["metrics"]["macs_speedup"] == pytest.approx(uniform, rel=0.01)
    p = {m: r["metrics"]["params_ratio"] for m, r in recs.items()}
    assert p["fpgm"] == p["l1_channel"] < 0.3 < 1 < p["fbs"] < 1.2     # static nets shrink, FBS adds its gates
    model, _ = runner.load_model(DENSE.replace(method="fpgm", parent=DENSE, args={"budget": 0.5}))
    assert [b.conv.out_channels for b in model.blocks] == recs["fpgm"]["metrics"]["widths"]


def test_measure_averages_the_per_input_counts_of_a_hand_built_net():
    # The hand-built net of test_drl_gates: per-input backbone MACs 3723 and 5496, gates 44 and 40,
    # kept outputs (2/4, 3/6, 5/8) and (4/4, 1/6, 8/8).
    torch.manual_seed(0)
    net = G.to_gated(drl_nets.ConvChain((4, 6, 8), (1, 2, 1), (1, 1, 0), in_channels=2, num_classes=3)).eval()
    actions = [torch.tensor([0.5, 1.0]), torch.tensor([0.5, 1 / 6]), torch.tensor([0.625, 1.0])]
    m = G.measure(net, lambda xb: net(xb, policy=lambda t, layer, x: (actions[t], None)), torch.randn(2, 2, 8, 8),
                  (8, 8), batch_size=2)
    assert m["macs_backbone"] == (3723 + 5496) / 2 and m["macs_gates"] == 42 and m["macs_dense"] == 9816
    assert [k["mean"] for k in m["kept"]] == [0.75, (0.5 + 1 / 6) / 2, (5 / 8 + 1) / 2]
    out = G.channel_metrics(m, 900, 100, 1000)
    assert out["macs_speedup"] == 9816 / 4609.5 and out["params_ratio"] == 1.0 and out["params_backbone_ratio"] == 0.9
    assert out["macs_speedup_with_overhead"] == 9816 / (4609.5 + 42)

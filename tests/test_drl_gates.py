"""DRL channel gates (replicate.methods.drl_gates): the trade-off pruner, MAC and parameter
accounting by hand, physical export, errors, and the analytic M-CifarNet numbers (FBS / DRL papers' MAC and parameter counts)."""
import pytest
import torch

from replicate.errors import ConfigError
from replicate.methods import drl_gates as G
from replicate.models import drl_nets


def _randomise(net, seed=0):
    """Random gate weights, static importances and BN statistics, so no ranking is a tie."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in net.layers:
            if layer.gate is not None:
                layer.gate.weight.copy_(torch.randn(layer.gate.weight.shape, generator=g) * 0.3)
                layer.gate.bias.copy_(torch.rand(layer.gate.bias.shape, generator=g) + 0.5)
            layer.static.copy_(torch.rand(layer.static.shape, generator=g) + 0.5)
            layer.beta.copy_(torch.randn(layer.beta.shape, generator=g) * 0.1)
            layer.bn.running_mean.copy_(torch.randn(layer.bn.running_mean.shape, generator=g) * 0.1)
            layer.bn.running_var.copy_(torch.rand(layer.bn.running_var.shape, generator=g) + 0.5)
    return net


def _small_gated(seed=0, **options):
    torch.manual_seed(seed)
    return _randomise(G.to_gated(drl_nets.build_backbone("m-fashionnet-s"), **options), seed).eval()


def _reference_forward(net, x, keep_of):
    """The gated forward written out, with the keep mask of each layer given by keep_of(layer, u_r, u_s)."""
    for layer, drop in zip(net.layers, net.drops):
        u_r = layer.runtime_importance(x)
        u_s = layer.static_importance()[None].expand_as(u_r)
        keep = keep_of(layer, u_r, u_s).float()
        z = layer.bn(layer.conv(x))
        x = drop(((z * (u_r * u_s)[:, :, None, None] + layer.beta[None, :, None, None]) * keep[:, :, None, None]).relu())
    return net.fc(x.mean((2, 3)))


def _topk_keep(scores, k):
    keep = torch.zeros_like(scores, dtype=torch.bool)
    return keep.scatter(1, scores.topk(k, dim=1).indices, True)


def test_fresh_gated_net_computes_its_backbone():
    torch.manual_seed(0)
    backbone = drl_nets.build_backbone("m-fashionnet-s").eval()
    with torch.no_grad():
        for b in backbone.blocks:
            b.bn.weight.uniform_(0.5, 1.5)
            b.bn.bias.uniform_(-0.2, 0.2)
    x = torch.randn(3, 1, 28, 28)
    gated = G.to_gated(backbone).eval()
    assert torch.allclose(gated(x), backbone(x), atol=1e-5)


@pytest.mark.parametrize("static_floor", [True, False])
def test_tradeoff_pruner_is_runtime_only_at_rr1_and_static_only_at_rr0(static_floor):
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    a_r = torch.tensor([0.3, 0.5, 0.8, 1.0])      # one runtime preserve ratio per input
    net = _small_gated(static_floor=static_floor)
    net.set_ratios(static=0.6)

    net.set_rr(1.0)
    out = net(x, policy=lambda t, layer, inp: (a_r, None))
    want = _reference_forward(net, x, lambda layer, u_r, u_s: torch.stack(
        [_topk_keep(u_r[i:i + 1], int(torch.ceil(a_r[i] * u_r.shape[1] - 1e-6)))[0] for i in range(4)]))
    assert torch.allclose(out, want, atol=1e-6)
    assert [layer.last_keep.sum(1).tolist() for layer in net.layers][0] == [5, 8, 13, 16]   # ceil(a_r * 16)

    net.set_rr(0.0)
    out = net(x, policy=lambda t, layer, inp: (a_r, None))
    want = _reference_forward(net, x, lambda layer, u_r, u_s: _topk_keep(u_s, int(torch.ceil(torch.tensor(0.6) * u_s.shape[1] - 1e-6))))
    assert torch.allclose(out, want, atol=1e-6)
    for layer in net.layers:   # one static mask shared by every input
        assert torch.equal(layer.last_keep, layer.last_keep[:1].expand_as(layer.last_keep))


def test_tradeoff_mask_by_hand_at_half_rate():
    # Six channels; M_r prunes {0, 1, 2, 3}, M_s prunes {2, 3, 4, 5}.
    u_r = torch.tensor([[0.1, 0.2, 0.05, 0.3, 0.9, 0.8]])
    u_s = torch.tensor([[0.9, 0.8, 0.1, 0.2, 0.3, 0.4]])
    m_r = torch.tensor([[True, True, True, True, False, False]])
    m_s = torch.tensor([[False, False, True, True, True, True]])
    # M_o = {2, 3}; M_r - M_o = {0, 1}: floor(0.5 * 2) = 1 smallest-u_r -> {0};
    # M_s - M_o = {4, 5}: floor(0.5 * 2) = 1 smallest-u_s -> {4}. M = {0, 2, 3, 4}.
    m = G.tradeoff_mask(m_r, m_s, u_r, u_s, 0.5)
    assert m[0].nonzero()[:, 0].tolist() == [0, 2, 3, 4]
    # Rr = 0.75: floor(0.75 * 2) = 1 from M_r - M_o -> {0}; floor(0.25 * 2) = 0 from M_s - M_o. M = {0, 2, 3}.
    assert G.tradeoff_mask(m_r, m_s, u_r, u_s, 0.75)[0].nonzero()[:, 0].tolist() == [0, 2, 3]
    assert torch.equal(G.tradeoff_mask(m_r, m_s, u_r, u_s, 1.0), m_r)
    assert torch.equal(G.tradeoff_mask(m_r, m_s, u_r, u_s, 0.0), m_s)


def test_static_floor_prunes_never_selectable_channels():
    # C = 6, a_s = 1/3 keeps the top 2 of u_s, so M_s = the 4 smallest u_s = channels {0, 1, 2, 3}.
    # The runtime keeps the top 5 of u_r: M_r = {3}, so M_o = {3}; M_s - M_o = {0, 1, 2};
    # Eq. 5 at Rr = 0.5 prunes floor(1.5) = 1 of them (channel 0): M = {0, 3}, and channel 1,
    # second-smallest by u_s, stays. The floor deletes floor(0.5 * 4) = 2 smallest by u_s: {0, 1}.
    conv, bn = torch.nn.Conv2d(1, 6, 1, bias=False), torch.nn.BatchNorm2d(6)
    layer = G.GatedConv(conv, bn, rr=0.5, static_ratio=1 / 3)
    u_s = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    u_r = torch.tensor([[0.5, 0.6, 0.7, 0.1, 0.8, 0.9]])
    assert layer.prune_mask(u_r, u_s, a_r=5 / 6)[0].nonzero()[:, 0].tolist() == [0, 1, 3]
    layer.static_floor = False
    assert layer.prune_mask(u_r, u_s, a_r=5 / 6)[0].nonzero()[:, 0].tolist() == [0, 3]


@pytest.mark.parametrize("static_floor", [True, False])
def test_tied_importances_use_one_order_for_largest_and_smallest(static_floor):
    # A fresh gated layer: every u_r and u_s equal. Lower index counts as larger, so with C = 16,
    # a_r = 0.9 (keep 15: M_r = {15}), a_s = 0.5 (keep 8: M_s = {8..15}), Rr = 0.5:
    # M_o = {15}; M_s - M_o = {8..14}, floor(0.5 * 7) = 3 smallest = {12, 13, 14}; M = {12..15},
    # and the floor (the 4 smallest by u_s) is {12..15} too: it adds nothing.
    layer = G.GatedConv(torch.nn.Conv2d(1, 16, 1, bias=False), torch.nn.BatchNorm2d(16), rr=0.5,
                        static_ratio=0.5, static_floor=static_floor)
    m = layer.prune_mask(torch.ones(1, 16), torch.ones(16), a_r=0.9)
    assert m[0].nonzero()[:, 0].tolist() == [12, 13, 14, 15]


def test_sign_rules():
    layer = G.GatedConv(torch.nn.Conv2d(1, 2, 1, bias=False), torch.nn.BatchNorm2d(2), sign_rule="code")
    u_r, u_s = torch.tensor([[-2.0, -2.0]]), torch.tensor([[-3.0, 3.0]])
    assert layer.unified_importance(u_r, u_s).tolist() == [[-6.0, -6.0]]
    layer.sign_rule = "paper"
    assert layer.unified_importance(u_r, u_s).tolist() == [[6.0, -6.0]]


def _hand_net():
    """2 -> 4 (3x3, pad 1) -> 6 (3x3, stride 2, pad 1) -> 8 (3x3, pad 0), FC 8 -> 3, on 8x8 inputs."""
    torch.manual_seed(0)
    return drl_nets.ConvChain((4, 6, 8), (1, 2, 1), (1, 1, 0), in_channels=2, num_classes=3)


def test_mac_accounting_of_a_hand_built_net():
    net = _hand_net()
    # Full width: conv0 9*2*4*(8*8) = 4608; conv1 out 4x4: 9*4*6*16 = 3456; conv2 out 2x2: 9*6*8*4 = 1728;
    # FC 8*3 = 24. Total 9816.
    full = G.network_macs(net, (8, 8))
    assert [float(m) for m in full["per_layer"]] == [4608, 3456, 1728]
    assert float(full["backbone"]) == full["dense"] == 9816

    # Per-input masks through a real forward, actions chosen for these counts:
    #   input 0 keeps 2/4, 3/6, 5/8: conv0 9*2*2*64 = 2304, conv1 9*2*3*16 = 864, conv2 9*3*5*4 = 540, FC 5*3 = 15 -> 3723
    #   input 1 keeps 4/4, 1/6, 8/8: conv0 4608,            conv1 9*4*1*16 = 576, conv2 9*1*8*4 = 288, FC 8*3 = 24 -> 5496
    # runtime gates read the kept inputs and score all outputs:
    #   input 0: 2*4 + 2*6 + 3*8 = 44;  input 1: 2*4 + 4*6 + 1*8 = 40
    gated = _randomise(G.to_gated(net)).eval()
    actions = [torch.tensor([0.5, 1.0]), torch.tensor([0.5, 1 / 6]), torch.tensor([0.625, 1.0])]
    gated(torch.randn(2, 2, 8, 8), policy=lambda t, layer, x: (actions[t], None))
    got = G.network_macs(gated, (8, 8))
    assert [layer.last_keep.sum(1).tolist() for layer in gated.layers] == [[2, 4], [3, 1], [5, 8]]
    assert got["backbone"].tolist() == [3723, 5496]
    assert got["gates"].tolist() == [44, 40]
    assert got["dense"] == 9816
    # one layer on its own, with shared (1-D) masks
    assert float(G.conv_macs(torch.ones(4), torch.tensor([1, 0, 1, 0, 0, 0]), net.blocks[1].conv, (8, 8))) == 9 * 4 * 2 * 16


def test_ratio_consumption_paper_rule_and_the_codes_bug():
    net = _hand_net()
    # ratios 0.5, 0.5, 0.25; paper rule sum_l K_l (r_{l-1} C_{l-1}) (r_l C_l), r_0 = 1:
    #   conv0 9*64*(1*2)*(0.5*4) = 2304; conv1 9*16*(0.5*4)*(0.5*6) = 864; conv2 9*4*(0.5*6)*(0.25*8) = 216 -> 3384
    assert G.ratio_macs(net, [0.5, 0.5, 0.25], (8, 8)) == 3384
    # code rule, both counts scaled by the previous ratio:
    #   conv0 9*64*2*4 = 4608 (dense); conv1 9*16*2*3 = 864; conv2 9*4*3*4 = 432 -> 5904
    assert G.ratio_macs(net, [0.5, 0.5, 0.25], (8, 8), rule="code") == 5904
    assert G.uniform_budget(net, 1.0, (8, 8)) == 1.0


@pytest.mark.parametrize("options", [{}, {"runtime_gate": False}, {"sign_rule": "code"}])
def test_export_static_gives_the_same_outputs_with_fewer_parameters(options):
    net = _small_gated(**options)
    net.set_rr(0.0)
    net.set_ratios(static=[0.5, 0.75, 0.5, 0.6, 0.3, 0.8])
    x = torch.randn(5, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        masked = net(x)
        small = G.export_static(net)
        out = small(x)
    assert torch.allclose(out, masked, atol=1e-5)
    assert [layer.conv.out_channels for layer in small.layers] == [8, 12, 16, 20, 20, 52]   # ceil(d * C)
    n_small = sum(p.numel() for p in small.parameters())
    assert n_small < sum(p.numel() for p in net.parameters())
    assert n_small == G.param_counts(net)["total"] == G.param_counts(small)["total"]
    assert small.layers[0].conv.weight.shape[1] == 1 and small.fc.in_features == 52


def test_export_refuses_a_runtime_pruned_net():
    with pytest.raises(ConfigError, match="Rr = 0"):
        G.export_static(_small_gated())


@pytest.mark.parametrize("call", [
    lambda: G.check_ratio("budget", 0.0),
    lambda: G.check_ratio("budget", 1.5),
    lambda: G.uniform_budget(_hand_net(), -0.1, (8, 8)),
    lambda: G.to_gated(_hand_net(), static_ratio=0),
    lambda: G.to_gated(_hand_net()).set_ratios(runtime=[1.0, 2.0, 0.5]),
    lambda: G.check_rr(1.5),
    lambda: G.to_gated(_hand_net(), rr=-0.1),
    lambda: G.to_gated(_hand_net(), runtime_gate=False, rr=0.5),
    lambda: G.to_gated(_hand_net(), sign_rule="fbs"),
    lambda: G.ratio_macs(_hand_net(), [1, 1, 1], (8, 8), rule="legacy"),
])
def test_bad_arguments_raise_one_line_config_errors(call):
    with pytest.raises(ConfigError) as e:
        call()
    assert "\n" not in str(e.value)


def test_unknown_backbone_names_the_valid_ones():
    with pytest.raises(ConfigError, match="m-cifarnet, m-fashionnet, m-fashionnet-s, resnet18"):
        drl_nets.build_backbone("resnet50")


def test_m_fashionnet_sizes_match_the_planned_sizes():
    # the cpu protocol's sizes: 29.1 M MACs, ~288 k params; -S: 7.3 M MACs, ~73 k params (both counting BN affine)
    for name, macs, params in (("m-fashionnet", 29.1e6, 288e3), ("m-fashionnet-s", 7.3e6, 73e3)):
        net = drl_nets.build_backbone(name)
        assert round(G.network_macs(net, (28, 28))["dense"], -5) == macs
        assert round(G.param_counts(net)["backbone"], -3) == params


def test_m_cifarnet_accounting_reproduces_the_published_analytic_numbers():
    net = drl_nets.build_backbone("m-cifarnet")
    dense = G.network_macs(net, (32, 32))["dense"]
    assert dense == 174_301_824 and round(dense / 1e6, 1) == 174.3          # "174.3 M MACs"
    # uniform d = 0.5 from actual per-input masks (runtime only, every conv keeps half its outputs)
    gated = G.to_gated(net).eval()
    with torch.no_grad():
        gated(torch.randn(2, 3, 32, 32), policy=lambda t, layer, x: (0.5, None))
    speedup = dense / float(G.network_macs(gated, (32, 32))["backbone"].mean())
    assert round(speedup, 2) == 3.96                                           # "3.96x"
    # d = 0.7 by the budget rule (channel counts scaled by d, not rounded), as the budget is defined
    assert round(1 / G.uniform_budget(net, 0.7, (32, 32)), 2) == 2.03         # "2.03x"
    assert round(1 / G.uniform_budget(net, 0.5, (32, 32)), 2) == 3.96
    # with whole channels (ceil(0.7 C): 45, 90, 135) the measured reduction is 2.02x
    with torch.no_grad():
        gated(torch.randn(2, 3, 32, 32), policy=lambda t, layer, x: (0.7, None))
    assert round(dense / float(G.network_macs(gated, (32, 32))["backbone"].mean()), 2) == 2.02
    # parameters: 1.294 M is conv + FC (BN's 2,176 affine parameters are not in it; with them 1.296 M)
    p = G.param_counts(net)
    assert p["conv"] + p["fc"] == 1_293_898 and round((p["conv"] + p["fc"]) / 1e6, 3) == 1.294
    assert round(p["backbone"] / 1e6, 3) == 1.296
    # FBS gates: one Linear(C_in, C_out) with bias per conv = 144,640 parameters -> 1.112x
    gates = G.param_counts(gated)["gate"]
    assert gates == 144_640 and round((p["conv"] + p["fc"] + gates) / (p["conv"] + p["fc"]), 3) == 1.112
    # runtime agent, hidden 128: encoders on C_in + C_out -> 0.30 % of the MACs; on C_in alone 0.22 %
    assert round(100 * G.agent_macs(net) / dense, 2) == 0.30
    assert round(100 * G.agent_macs(net, encoder_input="in") / dense, 2) == 0.22

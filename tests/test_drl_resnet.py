"""The DRL paper's ImageNet backbone, ResNet-18 (drl_nets.ResNetBackbone), under the DRL and FBS
gates (drl_gates.GatedResNet): MACs and parameters against counts made independently of the
accounting code (forward hooks, torchvision's own parameters), the gated net at ratio 1 computing
its backbone, MACs under masks counted by hand from the block structure, the static export, the
agents' consumption against ratio_macs, one DRL rollout, and errors."""
import math

import pytest
import torch
from torch import nn

from replicate.errors import ConfigError
from replicate.methods import drl_gates as G
from replicate.methods import drl_prune as D
from replicate.methods import fbs as FBS
from replicate.models import build, drl_nets

SMALL = (64, 64)        # the tests' image size: every stage keeps at least 2 x 2 pixels


def _resnet(classes=10, seed=0):
    torch.manual_seed(seed)
    net = drl_nets.build_backbone("resnet18", num_classes=classes).eval()
    with torch.no_grad():          # non-trivial BN statistics and affines
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net


def _hooked_macs(net, shape):
    """Dense conv MACs by forward hooks: output pixels x C_in x k_h x k_w per output channel."""
    total = []

    def hook(module, inp, out):
        total.append(out[0].numel() * module.in_channels * module.kernel_size[0] * module.kernel_size[1])

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        net(torch.rand(1, *shape))
    for h in handles:
        h.remove()
    return sum(total)


def test_resnet18_dense_accounting_matches_hooks_and_torchvision():
    net = build("resnet18", (3, 224, 224), 1000).eval()
    m = G.network_macs(net, (224, 224))
    assert m["dense"] == _hooked_macs(net, (3, 224, 224)) + 512 * 1000
    assert G.param_counts(net)["backbone"] == sum(p.numel() for p in net.parameters())
    assert len(G.convs_of(net)) == 16 and G.uniform_budget(net, 1.0, (224, 224)) == 1.0


def test_fresh_gated_resnet_computes_its_backbone():
    net = _resnet()
    x = torch.rand(2, 3, *SMALL)
    for gated in (G.to_gated(net).eval(), FBS.to_fbs(net, 1.0).eval()):
        with torch.no_grad():
            assert torch.allclose(gated(x), net(x), atol=1e-4)
        assert len(gated.layers) == 16 and [layer.relu for layer in gated.layers[:2]] == [True, False]


def test_masked_macs_counted_by_hand_from_the_blocks():
    net = _resnet()
    gated = G.to_gated(net).eval()
    d = 0.5
    with torch.no_grad():
        gated(torch.rand(3, 3, *SMALL), policy=lambda t, layer, x: (d, None))
    got = G.network_macs(gated, SMALL)
    # by hand: the stem and shortcuts dense; a block's first conv reads the full stream and computes
    # ceil(d C) channels, its second reads those and computes ceil(d C)
    h = w = SMALL[0] // 2
    want = 7 * 7 * 3 * 64 * h * w
    h, w = h // 2, w // 2
    for blk in net.blocks:
        c_in, c, s = blk.conv1.in_channels, blk.conv1.out_channels, blk.conv1.stride[0]
        ho, wo = (h - 1) // s + 1, (w - 1) // s + 1
        k = math.ceil(d * c)
        want += 9 * ho * wo * (c_in * k + k * k)
        if blk.downsample is not None:
            want += ho * wo * c_in * c
        h, w = ho, wo
    assert torch.equal(got["conv"], torch.full((3,), float(want), dtype=torch.float64))
    assert got["dense"] == _hooked_macs(net, (3, *SMALL)) + 512 * 10
    # the gates read each gated conv's kept input and score all its outputs
    assert float(got["gates"][0]) == sum((c.in_channels if t % 2 == 0 else math.ceil(d * c.in_channels))
                                         * c.out_channels for t, c in enumerate(G.convs_of(net)))


def test_budget_consumption_of_the_agents_is_ratio_macs():
    net = _resnet()
    a = {**D.ARGS["drl_prune"], "rr": 0.5, "budget": 0.7}
    model = D.build(net, a)
    trainer = D.Trainer(model, a, SMALL, seed=0)
    g = torch.Generator().manual_seed(1)
    ratios = torch.rand(4, 16, generator=g) * 0.9 + 0.1
    full = G.ratio_macs(model.gated, [1.0] * 16, SMALL)
    want = torch.tensor([G.ratio_macs(model.gated, r.tolist(), SMALL) / full for r in ratios], dtype=torch.float64)
    assert torch.allclose(trainer.consumption("runtime", ratios), want, rtol=1e-12)
    # (the target is computed from float32 ratios, as in the chain)
    assert trainer.target["runtime"] == pytest.approx(G.uniform_budget(model.gated, 0.7, SMALL), rel=1e-6)
    assert 0.49 < trainer.target["runtime"] < 0.7        # stem and shortcuts stay dense


def test_one_drl_rollout_and_update_on_resnet18():
    net = _resnet()
    a = {**D.ARGS["drl_prune"], "rr": 0.5, "budget": 0.7, "hidden": 16}
    model = D.build(net, a)
    trainer = D.Trainer(model, a, SMALL, seed=0)
    x, y = torch.rand(4, 3, *SMALL), torch.randint(0, 10, (4,))
    roll = trainer.rollout(x, y)
    assert roll["finite"] and 0 < roll["runtime_used"] <= 1 and 0 < roll["static_used"] <= 1
    for kind in ("runtime", "static"):
        stats = trainer.update(kind, roll[kind])
        assert all(math.isfinite(v) for v in stats.values())
    with torch.no_grad():
        assert model(x).shape == (4, 10)


def test_export_static_resnet_same_outputs_fewer_parameters():
    net = _resnet()
    gated = G.to_gated(net, rr=0.0).eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for layer in gated.layers:
            layer.static.copy_(torch.rand(layer.static.shape, generator=g) + 0.5)
            layer.beta.copy_(torch.randn(layer.beta.shape, generator=g) * 0.1)
    ratios = (torch.rand(16, generator=g) * 0.8 + 0.2).tolist()
    gated.set_ratios(static=ratios)
    x = torch.rand(3, 3, *SMALL)
    with torch.no_grad():
        masked = gated(x)
        small = G.export_static(gated)
        out = small(x)
    assert torch.allclose(out, masked, atol=1e-4)
    want = [math.ceil(r * c.out_channels - 1e-6) for r, c in zip(ratios, G.convs_of(net))]
    assert [layer.conv.out_channels for layer in small.layers] == want
    assert small.layers[1].conv.in_channels == want[0] and small.layers[2].conv.in_channels == 64
    stored = sum(p.numel() for p in small.parameters())
    assert stored == G.param_counts(gated)["total"] == G.param_counts(small)["total"]
    assert stored < sum(p.numel() for p in gated.parameters())


def test_fbs_resnet_gate_parameters():
    net = _resnet()
    fbs = FBS.to_fbs(net, 0.7)
    gates = sum(c.in_channels * c.out_channels + c.out_channels for c in G.convs_of(net))
    assert G.param_counts(fbs)["gate"] == gates


def test_resnet_errors_are_one_line():
    net = _resnet()
    for call, match in ((lambda: G.ratio_macs(net, [1.0] * 16, SMALL, rule="code"), "chain"),
                        (lambda: G.ratio_macs(net, [1.0] * 8, SMALL), "16 conv layers"),
                        (lambda: drl_nets.for_input("resnet18", (3, 16, 16)), "at least 32x32"),
                        (lambda: drl_nets.for_input("resnet18", (1, 64, 64)), "RGB")):
        with pytest.raises(ConfigError, match=match) as e:
            call()
        assert "\n" not in str(e.value)


@pytest.mark.parametrize("criterion", ["fpgm", "l1_channel"])
def test_static_pruning_of_resnet_slices_to_the_same_outputs(criterion):
    from replicate.methods import channel_prune as CP
    net = _resnet()
    keep = CP.kept_filters(net, 0.7, criterion)
    assert [len(k) for k in keep] == [math.ceil(0.7 * c.out_channels - 1e-6) for c in G.convs_of(net)]
    CP.zero_channels(net, keep)
    narrow = drl_nets.narrow_resnet(net, keep).eval()
    x = torch.rand(2, 3, *SMALL)
    with torch.no_grad():
        assert torch.allclose(narrow(x), net(x), atol=1e-4)
    assert [c.out_channels for c in G.convs_of(narrow)] == [len(k) for k in keep]
    assert G.param_counts(narrow)["backbone"] == sum(p.numel() for p in narrow.parameters())
    # the sliced network's MACs: each block's convs at their kept widths, the stem and shortcuts dense
    m = CP.static_metrics(narrow, net, SMALL)
    gated = G.to_gated(net, rr=0.0).eval()
    gated.set_ratios(static=0.7)
    with torch.no_grad():
        for layer, k in zip(gated.layers, keep):     # the static importances rank the kept filters first
            layer.static.zero_()
            layer.static[k] = 1.0
        gated(x)
    assert m["macs_mean"] == float(G.network_macs(gated, SMALL)["backbone"][0])
    again = CP.ChannelPrune(criterion).load_weights(drl_nets.build_backbone("resnet18", num_classes=10),
                                                    narrow.state_dict()).eval()
    with torch.no_grad():
        assert torch.allclose(again(x), narrow(x), atol=1e-6)

import pytest
import torch

from replicate.config import ConfigError
from replicate.methods import drl_gates as G
from replicate.methods import drl_latency as L
from replicate.models.drl_nets import build_backbone


def _trained_like(net):
    """Give a gated net non-trivial gates, importances and BN statistics, so that slicing is tested on
    masks that differ per input."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in net.layers:
            layer.gate.weight.normal_(0, 0.5, generator=g)
            layer.static.uniform_(0.5, 1.5, generator=g)
            layer.beta.normal_(0, 0.1, generator=g)
            layer.bn.running_mean.normal_(0, 0.1, generator=g)
            layer.bn.running_var.uniform_(0.5, 2.0, generator=g)
    return net


@pytest.mark.parametrize("d", [0.3, 0.5, 1.0])
def test_sliced_forward_equals_the_masked_net(d):
    torch.manual_seed(1)
    net = _trained_like(G.to_gated(build_backbone("m-fashionnet-s"), rr=1.0)).eval()
    net.set_ratios(runtime=d)
    x = torch.randn(4, 1, 28, 28)
    full = net(x)
    for i in range(4):
        torch.testing.assert_close(L.sliced_forward(net, x[i:i + 1]), full[i:i + 1], rtol=1e-4, atol=1e-5)


def test_sliced_forward_refuses_batches_and_static_nets():
    net = G.to_gated(build_backbone("m-fashionnet-s"), rr=1.0).eval()
    with pytest.raises(ConfigError, match="batch 1 only"):
        L.sliced_forward(net, torch.randn(2, 1, 28, 28))
    net.set_rr(0.5)
    with pytest.raises(ConfigError, match="runtime-only"):
        L.sliced_forward(net, torch.randn(1, 1, 28, 28))


def test_deleted_width_matches_the_gates_count():
    net = G.to_gated(build_backbone("m-fashionnet-s"), rr=0.5)
    net.set_ratios(static=0.5)
    assert [L.deleted_width(layer.conv.out_channels, 0.5, 0.5) for layer in net.layers] == G.deleted_counts(net)


def test_variants_build_and_time():
    v = L.build_variants("m-fashionnet-s", 0.5, hidden=16)
    assert tuple(v) == L.VARIANTS
    x = torch.randn(1, 1, 28, 28)
    out = {name: (m(x) if how == "batch" else L.sliced_forward(m, x)) for name, (m, how) in v.items()}
    assert all(o.shape == (1, 10) for o in out.values())
    ms = L.time_forwards(v, x, repeats=2, warmup=1)
    assert set(ms) == set(L.VARIANTS) and all(t > 0 for t in ms.values())
    with pytest.raises(ConfigError):
        L.time_forwards(v, x, repeats=0)

import pytest
import torch

from replicate import models
from replicate.config import ConfigError


def count(m):
    return sum(p.numel() for p in m.parameters())


def test_lenet300_100_has_the_published_size():
    m = models.build("lenet300-100")
    assert count(m) == 266_610  # 266,200 weights + 410 biases (Han et al. 2015: 267K)
    assert m(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_lenet5_caffe_has_the_published_size():
    m = models.build("lenet5-caffe")
    assert count(m) == 431_080  # 430,500 weights + 580 biases
    assert [tuple(p.shape) for n, p in m.named_parameters() if n.endswith("weight")] == [
        (20, 1, 5, 5), (50, 20, 5, 5), (500, 800), (10, 500)]
    assert m(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_unknown_model_names_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown model 'vgg99'; valid: lenet300-100, lenet5-caffe, vgg16-cifar, wrn-16-8, vgg-small"):
        models.build("vgg99")


def test_cifar_networks_have_the_sizes_of_the_official_code():
    vgg = models.build("vgg16-cifar", (3, 32, 32), 10)
    assert count(vgg) == 14_987_722  # the official DST code's VGG: about 14.98 M
    convs = [m for m in vgg.modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in vgg.modules() if isinstance(m, torch.nn.Linear)]
    assert len(convs) == 13 and len(linears) == 2
    # one DST threshold per output channel / neuron: 4,746 in the official VGG
    assert sum(m.weight.shape[0] for m in convs + linears) == 4_746
    wrn = models.build("wrn-16-8", (3, 32, 32), 10)
    assert count(wrn) == 10_961_370  # WRN-16-8: about 10.95 M
    assert vgg(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert wrn(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_vgg_small_proxy_runs_on_grey_images():
    m = models.build("vgg-small", (1, 28, 28), 10)
    assert count(m) == 43_558
    assert m(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_crop_flip_returns_shifted_or_mirrored_crops_of_the_padded_image():
    from replicate.train import crop_flip
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6) + 1
    out = crop_flip(x, torch.Generator().manual_seed(0), pad=2)
    again = crop_flip(x, torch.Generator().manual_seed(0), pad=2)
    assert out.shape == x.shape and torch.equal(out, again)
    xp = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        crops = [xp[i, :, a:a + 6, b:b + 6] for a in range(5) for b in range(5)]
        assert any(torch.equal(out[i], c) or torch.equal(out[i], c.flip(-1)) for c in crops)


def test_row_gru_matches_torch_gru_and_counts_every_step():
    from torch import nn
    from replicate import metrics, models
    m = models.build("gru-rows")
    ref = nn.GRU(28, 128, batch_first=True)
    with torch.no_grad():
        for a, b in ((ref.weight_ih_l0, m.ih.weight), (ref.bias_ih_l0, m.ih.bias),
                     (ref.weight_hh_l0, m.hh.weight), (ref.bias_hh_l0, m.hh.bias)):
            a.copy_(b)
    x = torch.rand(5, 1, 28, 28)
    _, h = ref(x.squeeze(1))
    assert torch.allclose(m.fc(h[0]), m(x), atol=1e-6)
    macs = metrics.macs_per_layer(m, (1, 28, 28))
    assert macs == {"ih": 28 * 28 * 384, "hh": 28 * 128 * 384, "fc": 128 * 10}
    assert set(metrics.prunable(m)) == {"ih", "hh", "fc"}

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
    with pytest.raises(ConfigError, match="unknown model 'vgg99'; valid: lenet300-100, lenet5-caffe"):
        models.build("vgg99")

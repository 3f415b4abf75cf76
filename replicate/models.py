"""The networks the papers use, exactly as published.

LeNet-300-100 and LeNet-5-Caffe follow Han et al. 2015 (and the DST and
SparseVD papers): LeNet-300-100 is 784-300-100-10 with ReLU, 266,610
parameters; LeNet-5-Caffe is Caffe's LeNet: conv 20 (5x5) -> max-pool ->
conv 50 (5x5) -> max-pool -> fc 800-500 -> ReLU -> fc 10, with no
non-linearity after the convolutions (as in Caffe's lenet_train_test
prototxt), 431,080 parameters.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import check_choice


class LeNet300100(nn.Module):
    def __init__(self, in_features: int = 784, num_classes: int = 10):
        super().__init__()
        self.fc1 = nn.Linear(in_features, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)

    def forward(self, x):
        x = x.flatten(1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


class LeNet5Caffe(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        side = ((image_size - 4) // 2 - 4) // 2  # 4 for 28x28 inputs
        self.fc1 = nn.Linear(50 * side * side, 500)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x):
        x = nn.functional.max_pool2d(self.conv1(x), 2)
        x = nn.functional.max_pool2d(self.conv2(x), 2)
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


def _lenet300(shape, classes):
    c, h, w = shape
    return LeNet300100(c * h * w, classes)


def _lenet5(shape, classes):
    c, h, w = shape
    return LeNet5Caffe(c, classes, h)


# name -> builder(input_shape (C, H, W), num_classes)
MODELS = {
    "lenet300-100": _lenet300,
    "lenet5-caffe": _lenet5,
}


def build(name: str, input_shape=(1, 28, 28), num_classes: int = 10) -> nn.Module:
    check_choice("model", name, tuple(MODELS))
    return MODELS[name](tuple(input_shape), num_classes)

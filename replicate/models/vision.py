"""Image classifiers: the networks the papers use, exactly as published.

LeNet-300-100 and LeNet-5-Caffe follow Han et al. 2015 (and the DST and
SparseVD papers): LeNet-300-100 is 784-300-100-10 with ReLU, 266,610
parameters; LeNet-5-Caffe is Caffe's LeNet: conv 20 (5x5) -> max-pool ->
conv 50 (5x5) -> max-pool -> fc 800-500 -> ReLU -> fc 10, with no
non-linearity after the convolutions (as in Caffe's lenet_train_test
prototxt), 431,080 parameters.

The CIFAR networks follow DST's official code: VGG-16 is the "network
slimming" variant (13 conv3x3 + BN + ReLU with max-pooling after each block,
average pooling to 1x1, then 512 -> 512 (BN, ReLU) -> classes), 14.99 M
parameters for CIFAR-10; its init is the code's dense-VGG init (conv weights
N(0, sqrt(2 / (k*k*c_out))), linear N(0, 0.01), BN gamma 0.5, beta 0), used
for dense and DST runs alike. WRN-16-8 is Zagoruyko & Komodakis' wide ResNet
(pre-activation basic blocks, 1x1 convolution shortcuts, no dropout),
10.96 M parameters. `vgg-small` is a labelled CPU proxy with the same
structure as the VGG (three blocks of two conv3x3 + BN + ReLU, 12/24/48
channels, 43,558 parameters) for 28x28 grey images.

`vgg16` is torchvision's ImageNet VGG-16 (configuration D of Simonyan &
Zisserman: 13 conv3x3 + ReLU, 3 fully connected layers with dropout,
138,357,544 parameters for 1,000 classes) for 224x224 RGB images in [0, 1];
it subtracts the ImageNet mean and divides by the standard deviation itself
(torchvision's published weights expect normalised inputs). The network sits
under `.net`, so torchvision's state dicts load into `model.net`.
"""
from __future__ import annotations

import torch
from torch import nn


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


VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
VGG_SMALL_CFG = (12, 12, "M", 24, 24, "M", 48, 48, "M")


class VGG(nn.Module):
    def __init__(self, cfg, in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        layers, c = [], in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(c, c), nn.BatchNorm1d(c), nn.ReLU(inplace=True),
                                        nn.Linear(c, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, (2.0 / n) ** 0.5)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.constant_(m.weight, 0.5)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(x.flatten(1))


class _WideBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c_in), nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(c_out), nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = (nn.Conv2d(c_in, c_out, 1, stride, bias=False)
                         if (c_in != c_out or stride != 1) else None)

    def forward(self, x):
        o = torch.relu(self.bn1(x))
        y = self.conv1(o)
        y = self.conv2(torch.relu(self.bn2(y)))
        return y + (self.shortcut(o) if self.shortcut is not None else x)


class WideResNet(nn.Module):
    def __init__(self, depth: int = 16, widen: int = 8, in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n + 4, got {depth}")
        n, widths = (depth - 4) // 6, (16, 16 * widen, 32 * widen, 64 * widen)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        blocks, c = [], widths[0]
        for g, stride in zip(widths[1:], (1, 2, 2)):
            for i in range(n):
                blocks.append(_WideBlock(c, g, stride if i == 0 else 1))
                c = g
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = torch.relu(self.bn(self.blocks(self.conv1(x))))
        return self.fc(nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))


class RowGRU(nn.Module):
    """A GRU that reads an image one row per time step (28 steps of 28 pixels for
    MNIST-like data) and classifies from its last hidden state.

    The gates are written out with two Linear layers, `ih` (input to hidden) and
    `hh` (hidden to hidden), holding the same parameters as torch's nn.GRU
    (gate order reset, update, new). Pruning, masking, sensitivity and the size
    metrics therefore treat the two recurrent matrices like any other layer."""

    def __init__(self, row_size: int = 28, hidden: int = 128, num_classes: int = 10):
        super().__init__()
        self.hidden = hidden
        self.ih = nn.Linear(row_size, 3 * hidden)
        self.hh = nn.Linear(hidden, 3 * hidden)
        self.fc = nn.Linear(hidden, num_classes)
        bound = hidden ** -0.5   # nn.GRU's initialisation for the recurrent parameters
        for p in (*self.ih.parameters(), *self.hh.parameters()):
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x):
        rows = x.flatten(1, 2) if x.dim() == 4 else x        # (B, C*H, W): one row per step
        gi = self.ih(rows)                                    # all steps' input terms at once
        h = rows.new_zeros(rows.shape[0], self.hidden)
        for t in range(rows.shape[1]):
            i_r, i_z, i_n = gi[:, t].chunk(3, 1)
            h_r, h_z, h_n = self.hh(h).chunk(3, 1)
            r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
            h = (1 - z) * torch.tanh(i_n + r * h_n) + z * h
        return self.fc(h)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageNetNormalised(nn.Module):
    """A torchvision ImageNet network `net` that normalises its [0, 1] input with the ImageNet mean
    and std itself; the statistics are not persistent, so the state dict stays torchvision's, under "net."."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x):
        return self.net((x - self.mean) / self.std)


class ImageNetVGG16(ImageNetNormalised):
    def __init__(self, classes: int = 1000):
        import torchvision

        super().__init__(torchvision.models.vgg16(weights=None, num_classes=classes))


def build_vgg16_imagenet(shape, classes):
    if tuple(shape[:1]) != (3,):
        raise ValueError(f"vgg16 takes RGB images (3, H, W), got input shape {tuple(shape)}")
    return ImageNetVGG16(classes)


def build_lenet300(shape, classes):
    c, h, w = shape
    return LeNet300100(c * h * w, classes)


def build_lenet5(shape, classes):
    c, h, w = shape
    return LeNet5Caffe(c, classes, h)

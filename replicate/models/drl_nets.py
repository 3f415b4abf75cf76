"""Plain conv-BN-ReLU backbones of the DRL channel-pruning paper (papers/drl_pruning.md §2, §5).

A `ConvChain` is a straight chain of conv3x3-BN-ReLU blocks (no bias, no
pooling between them, optional Dropout2d after some), global average pooling
and one Linear classifier: the shape the DRL and FBS gates wrap layer by layer
(replicate.methods.drl_gates), and simple enough that MACs can be counted by hand.

  m-cifarnet     M-CifarNet as in the official DRL code's `CifarNet` (FBS/Mayo's
                 CifarNet): 3->64 (pad 0, 32->30), 64->64, 64->128 (s2, ->15),
                 128->128, Dropout2d, 128->128, 128->192 (s2, ->8), 192->192,
                 Dropout2d, 192->192; average pool; FC 192->10. For 32x32 RGB:
                 174,301,824 MACs (conv 174,299,904 + FC 1,920); 1,293,898
                 conv + FC parameters, plus 2,176 BN affine parameters.
  m-fashionnet   our CPU analogue for 28x28 grey images: 6 blocks, widths
                 32-32-64-64-128-128, strides 1,1,2,1,2,1 (28->28->28->14->14->7->7),
                 FC 128->10: 29,128,448 MACs, 288,170 parameters with BN (287,274 without).
  m-fashionnet-s the same at half width (16-16-32-32-64-64): 7,338,880 MACs, 72,666
                 parameters with BN (72,218 without).

The registry (replicate.models.MODELS) builds them through `for_input`, which takes the
image shape: the first conv reads its channels (CIFAR-10 3 x 32 x 32, Fashion-MNIST
1 x 28 x 28); the MAC counts above are for those sizes. `narrow_chain` makes a physically
narrower copy that keeps chosen channels of each block (the static baselines' export).

The paper's ImageNet backbone (its Table 3) is not a chain:

  resnet18       torchvision's ResNet-18 (a 7x7 stem, max pool, four stages of two
                 BasicBlocks, widths 64-128-256-512, 1x1 downsampling shortcuts,
                 average pool, FC 512->1000), normalising its input with the ImageNet
                 mean and std itself (the suite's images are in [0, 1]); its state dict
                 is torchvision's under "net.", so the published weights load into it.
                 For 3 x 224 x 224: 1,813,561,344 conv MACs + 512,000 FC; 11,689,512
                 parameters. `ResNetBackbone` is the class; the DRL and FBS gates wrap
                 the two 3x3 convs of every block (replicate.methods.drl_gates.GatedResNet).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..errors import ConfigError, check_choice
from .vision import ImageNetNormalised


class ConvBlock(nn.Module):
    """conv (no bias) -> BN -> ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, padding: int = 1, kernel: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x):
        return self.bn(self.conv(x)).relu()


class ConvChain(nn.Module):
    """`blocks[i]` is followed by `drops[i]` (Dropout2d or Identity); then GAP and `fc`."""

    def __init__(self, widths, strides, paddings=None, in_channels: int = 3, num_classes: int = 10,
                 dropout_after=(), dropout: float = 0.5):
        super().__init__()
        paddings = paddings or (1,) * len(widths)
        blocks, c = [], in_channels
        for w, s, p in zip(widths, strides, paddings):
            blocks.append(ConvBlock(c, w, s, p))
            c = w
        self.blocks = nn.ModuleList(blocks)
        self.drops = nn.ModuleList(nn.Dropout2d(dropout) if i in dropout_after else nn.Identity()
                                   for i in range(len(blocks)))
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        for block, drop in zip(self.blocks, self.drops):
            x = drop(block(x))
        return self.fc(x.mean((2, 3)))


def m_cifarnet(in_channels: int = 3, num_classes: int = 10) -> ConvChain:
    return ConvChain((64, 64, 128, 128, 128, 192, 192, 192), (1, 1, 2, 1, 1, 2, 1, 1),
                     (0, 1, 1, 1, 1, 1, 1, 1), in_channels, num_classes, dropout_after=(3, 6))


def m_fashionnet(in_channels: int = 1, num_classes: int = 10, width: int = 32) -> ConvChain:
    w = width
    return ConvChain((w, w, 2 * w, 2 * w, 4 * w, 4 * w), (1, 1, 2, 1, 2, 1), None, in_channels, num_classes)


class ResNetBackbone(ImageNetNormalised):
    """torchvision's ResNet-18 behind the ImageNet normalisation (module docstring)."""

    def __init__(self, num_classes: int = 1000):
        import torchvision

        super().__init__(torchvision.models.resnet18(weights=None, num_classes=num_classes))

    @property
    def blocks(self) -> list:
        """The BasicBlocks in execution order."""
        return [b for stage in (self.net.layer1, self.net.layer2, self.net.layer3, self.net.layer4) for b in stage]

    @property
    def fc(self) -> nn.Linear:
        return self.net.fc

    def slots(self) -> list:
        """(conv, BN) of the two 3x3 convs of every block, in execution order: the widths pruning may change."""
        return [pair for b in self.blocks for pair in ((b.conv1, b.bn1), (b.conv2, b.bn2))]


class NarrowBlock(nn.Module):
    """A BasicBlock whose two 3x3 convs keep chosen channels: conv1 computes the kept inner channels, conv2
    reads them and computes its kept output channels, which are added into the full-width residual stream
    at their places (`out_index`); then ReLU, as torchvision's block."""

    def __init__(self, block, keep1: torch.Tensor, keep2: torch.Tensor):
        super().__init__()
        self.conv1, self.bn1 = _narrow_conv(block.conv1, block.bn1, keep1, None)
        self.conv2, self.bn2 = _narrow_conv(block.conv2, block.bn2, keep2, keep1)
        self.downsample = copy.deepcopy(block.downsample)
        self.register_buffer("out_index", keep2.clone())

    def forward(self, x):
        y = self.bn2(self.conv2(self.bn1(self.conv1(x)).relu()))
        s = x if self.downsample is None else self.downsample(x)
        return s.index_add(1, self.out_index, y).relu()


@torch.no_grad()
def _narrow_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d, out_idx, in_idx):
    w = conv.weight[out_idx] if in_idx is None else conv.weight[out_idx][:, in_idx]
    new = nn.Conv2d(w.shape[1], w.shape[0], conv.kernel_size, conv.stride, conv.padding, bias=False).to(w.device)
    new.weight.copy_(w)
    nb = nn.BatchNorm2d(len(out_idx), eps=bn.eps, momentum=bn.momentum).to(w.device).train(bn.training)
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(nb, name).copy_(getattr(bn, name)[out_idx])
    nb.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new, nb


def narrow_resnet(net: ResNetBackbone, keep) -> ResNetBackbone:
    """A physically narrower copy of a ResNet keeping channels keep[l] (index tensors) of each slot (`slots`):
    every block becomes a NarrowBlock. Outputs equal the full network's whenever the dropped channels were
    zero after their BN (filter and BN affine zeroed); the stem, shortcuts and classifier are unchanged."""
    blocks = net.blocks
    if len(keep) != 2 * len(blocks):
        raise ConfigError(f"{len(keep)} channel sets for {2 * len(blocks)} convs (2 per block)")
    out = copy.deepcopy(net)
    i = 0
    for stage in (out.net.layer1, out.net.layer2, out.net.layer3, out.net.layer4):
        for j in range(len(stage)):
            k1, k2 = (torch.as_tensor(k, dtype=torch.long) for k in keep[i:i + 2])
            stage[j] = NarrowBlock(stage[j], k1, k2)
            i += 2
    return out


BACKBONES = {
    "m-cifarnet": m_cifarnet,
    "m-fashionnet": m_fashionnet,
    "m-fashionnet-s": lambda in_channels=1, num_classes=10: m_fashionnet(in_channels, num_classes, width=16),
}
RESIDUAL = {"resnet18": ResNetBackbone}       # the residual backbones (RGB only; default 1000 classes)
ALL_BACKBONES = (*BACKBONES, *RESIDUAL)
RESNET_MIN_SIDE = 32          # five stride-2 steps: a 32 x 32 image leaves one pixel for the last stage


def build_backbone(name: str, in_channels: int | None = None, num_classes: int | None = None):
    """A backbone by name (`ALL_BACKBONES`); `in_channels` defaults to 3 for CIFAR, 1 for Fashion-MNIST,
    `num_classes` to 10 (1000 for resnet18, ImageNet's)."""
    check_choice("DRL backbone", name, ALL_BACKBONES)
    if name in RESIDUAL:
        if in_channels not in (None, 3):
            raise ConfigError(f"{name} takes RGB images (3 channels), got {in_channels}")
        return RESIDUAL[name](1000 if num_classes is None else num_classes)
    num_classes = 10 if num_classes is None else num_classes
    if in_channels is None:
        return BACKBONES[name](num_classes=num_classes)
    return BACKBONES[name](in_channels, num_classes)


def for_input(name: str, input_shape, num_classes: int = 10):
    """A backbone for images of shape (C, H, W); C becomes the first conv's input channels."""
    shape = tuple(input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"{name} takes images of shape (channels, height, width), got input shape {shape}")
    if name in RESIDUAL:
        if min(shape[1:]) < RESNET_MIN_SIDE:
            raise ConfigError(f"{name} needs images of at least {RESNET_MIN_SIDE}x{RESNET_MIN_SIDE}, "
                              f"got {shape[1]}x{shape[2]}")
        return build_backbone(name, shape[0], num_classes)
    net = build_backbone(name, shape[0], num_classes)
    hw = shape[1:]
    for block in net.blocks:      # every conv must still have an output pixel
        conv = block.conv
        hw = tuple((n + 2 * p - k) // s + 1 for n, p, k, s in zip(hw, conv.padding, conv.kernel_size, conv.stride))
        if min(hw) < 1:
            raise ConfigError(f"{name} needs larger images than {shape[1]}x{shape[2]}")
    return net


@torch.no_grad()
def narrow_chain(chain: ConvChain, keep) -> ConvChain:
    """A physically narrower copy of `chain` keeping output channels keep[l] (index tensors) of block l:
    the conv's filters, the BN's statistics and affine, the next conv's input channels and the
    classifier's inputs. Outputs equal the full chain's whenever the dropped channels were zero
    after their block (filter and BN affine zeroed)."""
    if len(keep) != len(chain.blocks):
        raise ConfigError(f"{len(keep)} channel sets for {len(chain.blocks)} blocks")
    out = copy.deepcopy(chain)
    prev = None
    for block, idx in zip(out.blocks, keep):
        idx = torch.as_tensor(idx, dtype=torch.long)
        block.conv, block.bn = _narrow_conv(block.conv, block.bn, idx, prev)
        prev = idx
    fc = out.fc
    out.fc = nn.Linear(len(prev), fc.out_features).to(fc.weight.device)
    out.fc.weight.copy_(fc.weight[:, prev])
    out.fc.bias.copy_(fc.bias)
    return out

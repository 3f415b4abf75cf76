"""Channel gates, the trade-off pruner and MAC / parameter accounting of the DRL
static + runtime channel-pruning paper (Chen, Chen & Pan, NeurIPS 2020; papers/drl_pruning.md §2).

The library building blocks only: the agents, rewards and the alternating
training of Algorithm 1 build on these. Notation of [ICLR §3]; masks M mark
*pruned* channels (1 = pruned), actions are *preserve* ratios.

A `GatedConv` wraps one conv + BN of a backbone (replicate.models.drl_nets):

  runtime importance  u_r = f(GAP(F_in)), f one Linear(C_in, C_out), no activation
                      (§3.1.1); as in the official code (FBS's construction) the BN
                      loses its affine: gamma becomes f's bias, beta the per-channel
                      `beta`. f's weights start at 0 (`gate_init_std`), so a fresh
                      gated net computes exactly its backbone (the code leaves torch's init).
  static importance   u_s = h(v), v learnable per channel, h identity or a small MLP
                      shared by all layers (`static_map`; u_s = h(v)).
  runtime mask M_r    prune all but the top ceil(a_r * C) of u_r, per input
  static mask M_s     prune all but the top ceil(a_s * C) of u_s
                      (actions clamped to [min_ratio, 1], at least one channel kept)
  trade-off pruner    Eqs. 1-5 with rate Rr: M_o = M_s & M_r; from M_r - M_o prune the
                      floor(Rr * |M_r - M_o|) smallest-u_r channels, from M_s - M_o the
                      floor((1 - Rr) * |M_s - M_o|) smallest-u_s; M = M_o + both.
                      Rr = 1 gives M = M_r, Rr = 0 gives M = M_s.
  output              F_out = ReLU((BN(conv(x)) * u + beta) * (1 - M)), u = u_r * u_s
                      (Eqs. 2, 6: kept channels scaled by the unified importance, masks
                      detached, so u_r and u_s learn through the scaling; beta as the code).

Options where the paper and the code part ways (the paper's choice first):
  sign_rule       "paper": u = u_r * u_s | "code": the official code forces the product
                  negative where u_r and u_s are both negative.
  static_floor    True: the floor((1 - Rr) * |M_s|) smallest-u_s channels are always pruned
                  (ICLR §3.4: never-selectable channels are deleted at inference, so we enforce
                  it; Eq. 5 alone does not guarantee it for 0 < Rr < 1) | False.
                  No effect at Rr = 1 (nothing deleted) or Rr = 0 (M = M_s already).
  consumption rule of `ratio_macs`, the budget consumption the agents are rewarded on:
                  "paper": sum_l K_l * (r_{l-1} C_{l-1}) * (r_l C_l), r_0 = 1 |
                  "code": the released code's bug, both channel counts scaled by the *previous*
                  layer's ratio and rounded (the first conv counts dense, the last ratio never counts).
Not an option: the code keeps floor(a*C) + 1 channels when a*C is a whole number (its
`sign(a*C - j)` counts j = a*C); we keep ceil(a*C), the paper's "ceil(d C)".

A `GatedNet` gates every block of a chain (ConvChain). A `GatedResNet` gates the two 3x3
convs of every BasicBlock of ResNet-18 (the paper's ImageNet backbone), leaving the stem, the
1x1 shortcuts, the classifier and so the residual stream at full width (class docstring);
`sites` describes either network as its convs in execution order, each with the gated layer
("slot") whose mask its input and output channels follow, and every counter below walks it.

Accounting: `conv_macs` counts kept inputs x kept outputs per input sample, so a pruned
channel saves work in its own layer and in the next; `network_macs` sums a chain and
returns gate overhead apart; `agent_macs` is the runtime agent's cost; `param_counts`
what must be stored once never-selectable channels are deleted; `export_static` builds
the physically narrower network. `measure` averages the accounting over a test set from the
masks each input really got, and `channel_metrics` turns it into the metrics every
channel-pruning record shares (DRL, FBS, FPGM, uniform L1).
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from ..errors import ConfigError, check_choice
from ..models.drl_nets import ConvChain, ResNetBackbone

MIN_RATIO = 0.1            # actions are clamped to [MIN_RATIO, 1] (the code's alpha)
SIGN_RULES = ("paper", "code")
CONSUMPTION_RULES = ("paper", "code")
_EPS = 1e-9                # guards ceil / floor of ratio * count against float error (0.3 * 10 = 3.0000000000000004)


def check_ratio(what: str, value) -> float:
    """A budget or preserve ratio: a number in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ConfigError(f"{what} must be a number in (0, 1], got {value!r}")
    return float(value)


def check_rr(value) -> float:
    """The trade-off rate Rr: a number in [0, 1] (1 runtime only, 0 static only)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError(f"Rr must be a number in [0, 1] (1 = runtime only, 0 = static only), got {value!r}")
    return float(value)


# --- masks --------------------------------------------------------------------------------------

def keep_count(ratio, channels: int, batch: int, min_ratio: float = MIN_RATIO, device=None) -> torch.Tensor:
    """ceil(clamp(ratio, min_ratio, 1) * C), at least 1, as a (batch,) long tensor; `ratio` a
    number or a tensor of one ratio per input (actions come straight from the agent's Gaussian)."""
    r = torch.as_tensor(ratio).detach().to(device=device, dtype=torch.float64).reshape(-1)
    r = r.clamp(min_ratio, 1.0).expand(batch)
    return torch.ceil(r * channels - 1e-6).long().clamp_(1, channels)


def _ranks(scores: torch.Tensor, descending: bool) -> torch.Tensor:
    """Per row, each entry's position in the sorted order (0 = first). One total order serves
    both directions (among equal scores the lower index counts as larger), so "the k smallest"
    is always the complement of "the C - k largest", even when every importance is tied (at init)."""
    order = scores.argsort(dim=-1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(scores.shape[-1], device=scores.device).expand_as(order))
    return ranks if descending else scores.shape[-1] - 1 - ranks


def top_mask(scores: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Prune mask (True = pruned) keeping the k[b] largest scores of each row b."""
    return _ranks(scores, descending=True) >= k[:, None]


def _smallest_within(scores, within, count) -> torch.Tensor:
    """The count[b] smallest scores of row b among the entries where `within` is True."""
    s = scores.masked_fill(~within, math.inf)
    return (_ranks(s, descending=False) < count[:, None]) & within


@torch.no_grad()
def tradeoff_mask(m_r: torch.Tensor, m_s: torch.Tensor, u_r: torch.Tensor, u_s: torch.Tensor, rr: float) -> torch.Tensor:
    """Eqs. 1-5: the unified prune mask M from the runtime and static prune masks (B, C)."""
    m_o = m_r & m_s                                   # pruned by both: always pruned
    only_r, only_s = m_r & ~m_o, m_s & ~m_o
    c_r = torch.floor(rr * only_r.sum(-1) + _EPS).long()
    c_s = torch.floor((1.0 - rr) * only_s.sum(-1) + _EPS).long()
    return m_o | _smallest_within(u_r, only_r, c_r) | _smallest_within(u_s, only_s, c_s)


# --- the gated layer ------------------------------------------------------------------------------

class GatedConv(nn.Module):
    """One conv + BN of a backbone with DRL's runtime and static channel gates (module docstring)."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d, *, runtime_gate: bool = True, rr: float | None = None,
                 runtime_ratio: float = 1.0, static_ratio: float = 1.0, static_map: nn.Module | None = None,
                 sign_rule: str = "paper", static_floor: bool = True, min_ratio: float = MIN_RATIO,
                 gate_init_std: float = 0.0, relu: bool = True):
        super().__init__()
        self.relu = relu          # False: the second conv of a residual block (ReLU after the addition)
        self.out_index = None     # after export_static of a residual block: where its kept channels go
        check_choice("sign_rule", sign_rule, SIGN_RULES)
        if conv.groups != 1:
            raise ConfigError(f"channel gates need an ungrouped convolution, got groups={conv.groups}")
        c_in, c = conv.in_channels, conv.out_channels
        gamma = bn.weight.detach().clone() if bn.affine else torch.ones(c)
        beta = bn.bias.detach().clone() if bn.affine else torch.zeros(c)
        self.conv = conv
        self.bn = nn.BatchNorm2d(c, eps=bn.eps, momentum=bn.momentum, affine=False,
                                 track_running_stats=bn.track_running_stats).to(conv.weight.device).train(bn.training)
        if bn.track_running_stats:
            self.bn.load_state_dict({k: v for k, v in bn.state_dict().items() if k not in ("weight", "bias")})
        self.beta = nn.Parameter(beta)
        if runtime_gate:          # u_r = f(GAP(x)); f's bias carries the pretrained BN scale
            self.gate = nn.Linear(c_in, c).to(conv.weight.device)
            with torch.no_grad():
                nn.init.normal_(self.gate.weight, 0.0, gate_init_std)   # std 0: all zeros
                self.gate.bias.copy_(gamma)
            self.gamma = None
        else:                     # static-only layer: a learnable BN scale takes u_r's place
            self.gate = None
            self.gamma = nn.Parameter(gamma)
        # v: ones with h = identity (u_s = 1 at the start); zeros into an MLP whose last bias is 1 (the code)
        self.static = nn.Parameter(torch.ones(c) if static_map is None else torch.zeros(c))
        self.static_map = static_map
        self.sign_rule, self.static_floor, self.min_ratio = sign_rule, static_floor, min_ratio
        self.set_rr((1.0 if runtime_gate else 0.0) if rr is None else rr)   # default: all the layer can do
        self.runtime_ratio = check_ratio("runtime preserve ratio", runtime_ratio)
        self.static_ratio = check_ratio("static preserve ratio", static_ratio)
        self.last_keep = None     # (B, C) float, 1 = kept, from the last forward

    def set_rr(self, rr) -> None:
        rr = check_rr(rr)
        if self.gate is None and rr != 0:
            raise ConfigError(f"a layer without a runtime gate is static only: Rr must be 0, got {rr!r}")
        self.rr = rr

    def static_importance(self) -> torch.Tensor:
        """u_s = h(v), shape (C,)."""
        v = self.static
        return v if self.static_map is None else self.static_map(v[:, None])[:, 0]

    def runtime_importance(self, x: torch.Tensor) -> torch.Tensor:
        """u_r = f(GAP(x)), shape (B, C); the learnable BN scale where there is no runtime gate."""
        if self.gate is None:
            return self.gamma.expand(x.shape[0], -1)
        return self.gate(x.mean((2, 3)))

    @torch.no_grad()
    def prune_mask(self, u_r, u_s, a_r=None, a_s=None) -> torch.Tensor:
        """The unified prune mask M (B, C), True = pruned."""
        b, c = u_r.shape
        u_s = u_s.expand(b, c)
        k_s = keep_count(self.static_ratio if a_s is None else a_s, c, b, self.min_ratio, u_r.device)
        m_s = top_mask(u_s, k_s)
        if self.rr == 0:
            return m_s
        k_r = keep_count(self.runtime_ratio if a_r is None else a_r, c, b, self.min_ratio, u_r.device)
        m = tradeoff_mask(top_mask(u_r, k_r), m_s, u_r, u_s, self.rr)
        if self.static_floor and self.rr < 1:     # never-selectable channels: always pruned
            deleted = torch.floor((1.0 - self.rr) * (c - k_s) + _EPS).long()
            m |= _ranks(u_s, descending=False) < deleted[:, None]
        return m

    def unified_importance(self, u_r, u_s) -> torch.Tensor:
        u = u_r * u_s
        if self.sign_rule == "code":    # both negative: keep the product negative
            both = ((u_r < 0) & (u_s < 0)).to(u.dtype)
            u = u * (1 - 2 * both)
        return u

    def forward(self, x, a_r=None, a_s=None):
        """`a_r`, `a_s`: preserve ratios (a number or one per input); None uses the stored ratios."""
        u_r = self.runtime_importance(x)
        u_s = self.static_importance()
        keep = (~self.prune_mask(u_r.detach(), u_s.detach(), a_r, a_s)).to(x.dtype)
        self.last_keep = keep
        z = self.bn(self.conv(x))
        u = self.unified_importance(u_r, u_s[None, :])
        y = (z * u[:, :, None, None] + self.beta[None, :, None, None]) * keep[:, :, None, None]
        return y.relu() if self.relu else y


class GatedNet(nn.Module):
    """A ConvChain backbone with every block gated; `policy(t, layer, x) -> (a_r, a_s)` (either
    may be None) is asked for the actions of layer t given its input x, as the agents are."""

    def __init__(self, backbone: ConvChain, layer_class: type | None = None, **layer_options):
        super().__init__()
        self.static_map = layer_options.get("static_map")    # h, one module shared by every layer
        layer_class = layer_class or GatedConv                # a subclass changes the gating (FBS: methods/fbs.py)
        self.layers = nn.ModuleList(layer_class(b.conv, b.bn, **layer_options) for b in backbone.blocks)
        self.drops, self.fc = backbone.drops, backbone.fc

    def set_rr(self, rr) -> None:
        for layer in self.layers:
            layer.set_rr(rr)

    def set_ratios(self, runtime=None, static=None) -> None:
        """Stored preserve ratios: a number for every layer or a sequence, one per layer."""
        for name, value in (("runtime_ratio", runtime), ("static_ratio", static)):
            if value is None:
                continue
            values = [value] * len(self.layers) if isinstance(value, (int, float)) else list(value)
            if len(values) != len(self.layers):
                raise ConfigError(f"{name}: {len(values)} values for {len(self.layers)} layers")
            for layer, v in zip(self.layers, values):
                setattr(layer, name, check_ratio(name.replace("_", " "), v))

    def forward(self, x, policy=None):
        for t, (layer, drop) in enumerate(zip(self.layers, self.drops)):
            a_r, a_s = policy(t, layer, x) if policy is not None else (None, None)
            x = drop(layer(x, a_r, a_s))
        return self.fc(x.mean((2, 3)))


class GatedResNet(nn.Module):
    """A ResNet backbone (drl_nets.ResNetBackbone) with the two 3x3 convs of every BasicBlock gated,
    in execution order (`layers[2b]`, `layers[2b + 1]` for block b): the block's first conv
    (input: the residual stream, full width; output: the block's inner channels, then ReLU)
    and its second (input: the inner channels; output: its pruned channels are zero before the
    addition, so the block adds nothing to them and the shortcut carries them unchanged; ReLU
    after the addition). The stem, the 1x1 downsampling shortcuts and the classifier are not
    gated: the residual stream stays full width, as gating it per input would make every block
    of a stage skip the same channels. `policy` as GatedNet's."""

    def __init__(self, backbone, layer_class: type | None = None, **layer_options):
        super().__init__()
        self.static_map = layer_options.get("static_map")
        layer_class = layer_class or GatedConv
        net = backbone.net
        self.register_buffer("mean", backbone.mean.clone(), persistent=False)
        self.register_buffer("std", backbone.std.clone(), persistent=False)
        self.stem_conv, self.stem_bn, self.pool = net.conv1, net.bn1, net.maxpool
        layers, shortcuts = [], []
        for block in backbone.blocks:
            layers.append(layer_class(block.conv1, block.bn1, relu=True, **layer_options))
            layers.append(layer_class(block.conv2, block.bn2, relu=False, **layer_options))
            shortcuts.append(block.downsample if block.downsample is not None else nn.Identity())
        self.layers, self.shortcuts, self.fc = nn.ModuleList(layers), nn.ModuleList(shortcuts), net.fc

    set_rr = GatedNet.set_rr
    set_ratios = GatedNet.set_ratios

    def forward(self, x, policy=None):
        x = (x - self.mean) / self.std
        x = self.pool(self.stem_bn(self.stem_conv(x)).relu())
        for b, shortcut in enumerate(self.shortcuts):
            y = x
            for t in (2 * b, 2 * b + 1):
                layer = self.layers[t]
                a_r, a_s = policy(t, layer, y) if policy is not None else (None, None)
                y = layer(y, a_r, a_s)
            idx, s = self.layers[2 * b + 1].out_index, shortcut(x)
            x = (s + y if idx is None else s.index_add(1, idx, y)).relu()
        return self.fc(x.mean((2, 3)))

    def sites(self, input_hw) -> tuple:
        return resnet_sites(self.stem_conv, self.stem_bn, self.pool, [(m.conv, m.bn) for m in self.layers],
                            list(self.shortcuts), input_hw)


def resnet_sites(stem_conv, stem_bn, pool, slots, shortcuts, input_hw) -> tuple:
    """A ResNet's convs in execution order, as `sites` describes them; `slots` the (conv, BN) of
    the two 3x3 convs of every block, `shortcuts` each block's downsampling (a 1x1 conv + BN
    Sequential) or anything else for an identity."""
    hw = conv_output_hw(stem_conv, input_hw)
    out = [(stem_conv, stem_bn, tuple(input_hw), INPUT, None)]
    hw = conv_output_hw(pool, hw)
    for b, shortcut in enumerate(shortcuts):
        (conv1, bn1), (conv2, bn2) = slots[2 * b], slots[2 * b + 1]
        out.append((conv1, bn1, hw, None, 2 * b))
        inner = conv_output_hw(conv1, hw)
        out.append((conv2, bn2, inner, 2 * b, 2 * b + 1))
        if isinstance(shortcut, nn.Sequential):
            out.append((shortcut[0], shortcut[1], hw, None, None))
        hw = conv_output_hw(conv2, inner)
    return out, None


def _is_resnet(model) -> bool:
    return isinstance(model, (GatedResNet, ResNetBackbone))


INPUT = -1        # a site's input slot when it reads the image


def sites(model, input_hw) -> tuple:
    """The network's convs in execution order as (conv, bn, input_hw, in_slot, out_slot), and the
    slot the classifier reads. A slot indexes the gated convs (`convs_of`, a GatedNet's or
    GatedResNet's `layers`, one mask each): out_slot is the conv's own (None: not gated, all
    output channels), in_slot the one whose output channels are this conv's input (None: a full
    width input, INPUT: the image). A chain: conv l reads slot l - 1; a ResNet: `resnet_sites`."""
    if isinstance(model, GatedResNet):
        return model.sites(input_hw)
    if isinstance(model, ResNetBackbone):
        net = model.net
        return resnet_sites(net.conv1, net.bn1, net.maxpool, model.slots(),
                            [blk.downsample for blk in model.blocks], input_hw)
    out, hw = [], tuple(input_hw)
    layers = model.layers if isinstance(model, GatedNet) else model.blocks if isinstance(model, ConvChain) else None
    for slot, conv in enumerate(convs_of(model)):
        bn = layers[slot].bn if layers is not None else None
        out.append((conv, bn, hw, INPUT if slot == 0 else slot - 1, slot))
        hw = conv_output_hw(conv, hw)
    return out, len(out) - 1


def to_gated(backbone, **layer_options):
    """A gated copy of the backbone (the backbone itself is left untouched): a GatedNet for a
    ConvChain, a GatedResNet for a ResNet."""
    if isinstance(backbone, ResNetBackbone):
        return GatedResNet(copy.deepcopy(backbone), **layer_options)
    return GatedNet(copy.deepcopy(backbone), **layer_options)


# --- accounting -----------------------------------------------------------------------------------

def convs_of(model) -> list:
    """The gated (or gateable) conv layers, one per slot: of a GatedNet or GatedResNet, a ConvChain,
    a ResNet (the two 3x3 convs of every block), or a list of convs / GatedConvs."""
    if isinstance(model, (GatedNet, GatedResNet)):
        return [layer.conv for layer in model.layers]
    if isinstance(model, ConvChain):
        return [b.conv for b in model.blocks]
    if isinstance(model, ResNetBackbone):
        return [conv for conv, _ in model.slots()]
    return [m.conv if isinstance(m, GatedConv) else m for m in model]


def _pair(v) -> tuple:
    return (v, v) if isinstance(v, int) else tuple(v)


def conv_output_hw(conv, hw) -> tuple:
    """Output size of a Conv2d (or a MaxPool2d) on an input of size hw."""
    return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1
                 for n, p, d, k, s in zip(hw, _pair(conv.padding), _pair(conv.dilation), _pair(conv.kernel_size),
                                          _pair(conv.stride)))


def _kept(mask, full: int) -> torch.Tensor:
    if mask is None:
        return torch.tensor(float(full), dtype=torch.float64)
    return torch.as_tensor(mask).to(torch.float64).sum(-1)


def conv_macs(in_mask, out_mask, layer, input_hw) -> torch.Tensor:
    """Multiply-accumulates of one conv per input sample: kept input channels x kept output
    channels x k_h x k_w x H_out x W_out. Masks are keep masks (1 = computed), (B, C) for one
    per input (the result is (B,)), (C,) for one shared, or None for all channels."""
    conv = layer.conv if isinstance(layer, GatedConv) else layer
    if conv.groups != 1:
        raise ConfigError(f"channel accounting needs an ungrouped convolution, got groups={conv.groups}")
    h, w = conv_output_hw(conv, input_hw)
    unit = conv.kernel_size[0] * conv.kernel_size[1] * h * w
    return _kept(in_mask, conv.in_channels) * _kept(out_mask, conv.out_channels) * unit


def network_macs(model, input_hw, masks=None, input_mask=None) -> dict:
    """MACs of a network per input sample, from per-slot keep masks (default: a gated net's masks
    of its last forward; all channels for a plain backbone), each conv counted from the masks of
    its input and output channels (`sites`). The backbone count is the convs plus the classifier
    (which reads only the kept channels of its slot); `gates` (the runtime gates f, which read the
    kept inputs and score every output channel) is kept apart, as is `dense`, the full-width
    backbone. `input_mask` marks kept image channels. Tensors are per sample; see `agent_macs`
    for the agent."""
    site_list, fc_slot = sites(model, input_hw)
    gated = isinstance(model, (GatedNet, GatedResNet))
    if masks is None:
        masks = [layer.last_keep for layer in model.layers] if gated else [None] * len(convs_of(model))

    def mask(slot):
        return input_mask if slot == INPUT else None if slot is None else masks[slot]

    per_layer, gates, dense = [], torch.tensor(0.0, dtype=torch.float64), 0.0
    for conv, _, hw, i, o in site_list:
        per_layer.append(conv_macs(mask(i), mask(o), conv, hw))
        dense += float(conv_macs(None, None, conv, hw))
        if gated and o is not None and model.layers[o].gate is not None:
            gates = gates + _kept(mask(i), conv.in_channels) * conv.out_channels
    conv_total = sum(per_layer)
    fc = getattr(model, "fc", None)
    fc_macs = (_kept(mask(fc_slot), fc.in_features) * fc.out_features if fc is not None
               else torch.tensor(0.0, dtype=torch.float64))
    dense += fc.in_features * fc.out_features if fc is not None else 0
    return {"per_layer": per_layer, "conv": conv_total, "fc": fc_macs, "backbone": conv_total + fc_macs,
            "gates": gates, "dense": dense}


def ratio_macs(model, ratios, input_hw, rule: str = "paper") -> float:
    """Conv MACs of the network when gated slot l keeps a fraction ratios[l] of its output channels
    (image channels and ungated convs' channels unscaled): the budget consumption the agents are
    rewarded on (no rounding, unless `rule` = "code", the released code's version for a chain;
    module docstring)."""
    check_choice("consumption rule", rule, CONSUMPTION_RULES)
    convs = convs_of(model)
    if len(ratios) != len(convs):
        raise ConfigError(f"{len(ratios)} ratios for {len(convs)} conv layers")
    if rule == "code" and _is_resnet(model):
        raise ConfigError("the 'code' consumption rule is the released code's, defined for a chain of convs; "
                          "use rule='paper' for a ResNet")
    total = 0.0
    for conv, _, hw, i, o in sites(model, input_hw)[0]:
        h, w = conv_output_hw(conv, hw)
        unit = conv.kernel_size[0] * conv.kernel_size[1] * h * w
        r_in = 1.0 if i is None or i == INPUT else float(ratios[i])
        if rule == "paper":
            total += unit * (r_in * conv.in_channels) * ((1.0 if o is None else float(ratios[o])) * conv.out_channels)
        else:
            total += unit * round(r_in * conv.in_channels) * round(r_in * conv.out_channels)
    return total


def uniform_budget(model, d: float, input_hw) -> float:
    """B_com-bar: the fraction of dense conv MACs left when every conv keeps a fraction d of its outputs."""
    d = check_ratio("budget", d)
    n = len(convs_of(model))
    return ratio_macs(model, [d] * n, input_hw) / ratio_macs(model, [1.0] * n, input_hw)


def agent_macs(model, hidden: int = 128, encoder_input: str = "in+out") -> int:
    """The runtime agent's MACs per input sample at inference (a = mu): per layer, the
    layer-dependent encoder FC (C_in, or C_in + C_out as in the code, -> hidden), one step of
    the shared RNN (input: encoder output + the budget scalar) and the mean head (hidden -> 1)."""
    check_choice("encoder_input", encoder_input, ("in", "in+out"))
    total = 0
    for conv in convs_of(model):
        enc_in = conv.in_channels + (conv.out_channels if encoder_input == "in+out" else 0)
        total += enc_in * hidden + (hidden + 1) * hidden + hidden * hidden + hidden
    return total


@torch.no_grad()
def measure(net: GatedNet, forward, x: torch.Tensor, input_hw, batch_size: int = 500) -> dict:
    """Per-input accounting averaged over the images `x`, from the masks each input really got:
    `forward(xb)` must run `net` (through a policy, a wrapper...) on a chunk. Returns the mean (and
    std) of backbone MACs (convs + classifier), conv MACs and runtime-gate MACs per input, the
    dense backbone's MACs, and per layer the kept fraction of output channels (mean, std, min, max
    over the inputs)."""
    backbone, conv, gates, kept = [], [], [], []
    for i in range(0, len(x), batch_size):
        forward(x[i:i + batch_size])
        m = network_macs(net, input_hw)
        n = len(x[i:i + batch_size])
        backbone.append(m["backbone"].expand(n))
        conv.append(torch.as_tensor(m["conv"], dtype=torch.float64).expand(n))
        gates.append(m["gates"].expand(n))
        kept.append(torch.stack([layer.last_keep.to(torch.float64).mean(1) for layer in net.layers], 1))
        dense = m["dense"]
    backbone, conv, gates, kept = (torch.cat(v) for v in (backbone, conv, gates, kept))
    return {"macs_backbone": float(backbone.mean()), "macs_backbone_std": float(backbone.std()) if len(x) > 1 else 0.0,
            "macs_conv": float(conv.mean()), "macs_gates": float(gates.mean()), "macs_dense": float(dense),
            "kept": [{"mean": float(k.mean()), "std": float(k.std()) if len(k) > 1 else 0.0,
                      "min": float(k.min()), "max": float(k.max())} for k in kept.T]}


def channel_metrics(measured: dict, backbone_params: int, overhead_params: int, dense_params: int,
                    overhead_macs: float | None = None) -> dict:
    """The flat metrics every channel-pruning record shares (DRL, FBS, FPGM, uniform L1), from
    `measure` (or the same keys for a static net): mean backbone MACs per input against the dense
    backbone's, the overheads (runtime gates, by default, plus the agent) apart, stored parameters
    (backbone; overheads: gates, static importances, agent) against the dense backbone's, and per
    layer the mean kept fraction of output channels. The runner's generic size metrics count every
    Linear / Conv2d as dense, so "dense_macs", "effective_macs" and "theoretical_speedup" are
    replaced by the measured backbone counts."""
    mean, dense = measured["macs_backbone"], measured["macs_dense"]
    over = measured.get("macs_gates", 0.0) if overhead_macs is None else overhead_macs
    stored = backbone_params + overhead_params
    return {"macs_mean": mean, "macs_std": measured.get("macs_backbone_std", 0.0), "macs_dense": dense,
            "macs_fraction": mean / dense, "macs_speedup": dense / mean, "macs_overhead": float(over),
            "macs_speedup_with_overhead": dense / (mean + over),
            "params_backbone": int(backbone_params), "params_overhead": int(overhead_params), "params_stored": int(stored),
            "params_dense": int(dense_params), "params_ratio": stored / dense_params,
            "params_backbone_ratio": backbone_params / dense_params,
            "kept_ratio": [k["mean"] for k in measured["kept"]], "kept_ratio_std": [k["std"] for k in measured["kept"]],
            "dense_macs": dense, "effective_macs": round(mean), "theoretical_speedup": dense / mean}


def deleted_counts(net) -> list:
    """Per layer, how many channels can never be kept at the stored static ratio and Rr
    (floor((1 - Rr) * |M_s|): all of M_s at Rr = 0, none at Rr = 1); they are not stored."""
    out = []
    for layer in net.layers:
        c = layer.conv.out_channels
        k_s = int(keep_count(layer.static_ratio, c, 1, layer.min_ratio))
        out.append(math.floor((1.0 - layer.rr) * (c - k_s) + _EPS))
    return out


def param_counts(model) -> dict:
    """Parameters that must be stored, by role. For a plain backbone: conv weights, BN affine and
    the classifier. For a GatedNet or GatedResNet, after deleting never-selectable channels (from
    their conv, BN, gate and importances, and from the inputs of the conv that reads them): conv,
    `bn` (beta, and the BN scale of layers without a runtime gate; the affine BN of ungated convs),
    `gate` (f: weights and biases, the biases carrying the pretrained BN scale), `static` (v and
    h) and the classifier. `backbone` = conv + bn + fc; `total` adds the gates and static
    importances (the agent is counted apart)."""
    count = {"conv": 0, "bn": 0, "fc": 0, "gate": 0, "static": 0}
    if isinstance(model, (GatedNet, GatedResNet)):
        gone = deleted_counts(model)
        site_list, fc_slot = sites(model, (64, 64))      # the input size does not change a count

        def kept(slot, full):
            return full if slot is None or slot == INPUT else full - gone[slot]

        for conv, bn, _, i, o in site_list:
            c_in, c_out = kept(i, conv.in_channels), kept(o, conv.out_channels)
            count["conv"] += conv.kernel_size[0] * conv.kernel_size[1] * c_in * c_out + (c_out if conv.bias is not None else 0)
            if o is None:                      # an ungated conv keeps its affine BN
                count["bn"] += 2 * c_out if bn is not None and bn.affine else 0
                continue
            layer = model.layers[o]
            count["bn"] += c_out * (1 if layer.gate is not None else 2)
            count["gate"] += (c_in * c_out + c_out) if layer.gate is not None else 0
            count["static"] += c_out
        if model.static_map is not None:
            count["static"] += sum(p.numel() for p in model.static_map.parameters())
        fc = model.fc
        count["fc"] = kept(fc_slot, fc.in_features) * fc.out_features + (fc.out_features if fc.bias is not None else 0)
    else:
        for m in model.modules():
            kind = ("conv" if isinstance(m, nn.Conv2d) else "bn" if isinstance(m, nn.BatchNorm2d)
                    else "fc" if isinstance(m, nn.Linear) else None)
            if kind:
                count[kind] += sum(p.numel() for p in m.parameters(recurse=False))
    count["backbone"] = count["conv"] + count["bn"] + count["fc"]
    count["total"] = count["backbone"] + count["gate"] + count["static"]
    return count


# --- physical narrowing ---------------------------------------------------------------------------

@torch.no_grad()
def export_static(net):
    """A physically narrower copy of a statically pruned net (every layer at Rr = 0): the
    channels its static masks prune are removed from the conv, BN, gate, importances and the
    inputs of the conv (or classifier) that reads them, and the copy keeps every channel it has
    (ratios 1). In a ResNet the second conv of a block computes its kept channels only and adds
    them into the residual stream at their places (`out_index`). In eval mode its outputs equal
    the masked net's (pruned channels are exact zeros downstream)."""
    bad = [t for t, layer in enumerate(net.layers) if layer.rr != 0]
    if bad:
        raise ConfigError(f"export_static needs a statically pruned net (Rr = 0 in every layer); layers {bad} are not")
    out = copy.deepcopy(net)
    kept = []
    for layer in out.layers:
        u_s = layer.static_importance()
        c = u_s.numel()
        keep = ~top_mask(u_s[None], keep_count(layer.static_ratio, c, 1, layer.min_ratio, u_s.device))[0]
        kept.append(keep.nonzero()[:, 0])
    site_list, fc_slot = sites(out, (64, 64))
    for conv, _, _, i, o in site_list:
        if o is None:
            continue
        layer = out.layers[o]
        _narrow(layer, kept[o], None if i is None or i == INPUT else kept[i])
        layer.static_ratio, layer.runtime_ratio = 1.0, 1.0
        if isinstance(out, GatedResNet) and not layer.relu:   # a block's second conv: back into the stream
            layer.out_index = kept[o]
    if fc_slot is not None:
        prev, fc = kept[fc_slot], out.fc
        new_fc = nn.Linear(len(prev), fc.out_features, fc.bias is not None).to(fc.weight.device)
        new_fc.weight.copy_(fc.weight[:, prev])
        if fc.bias is not None:
            new_fc.bias.copy_(fc.bias)
        out.fc = new_fc
    return out


def _narrow(layer: GatedConv, out_idx: torch.Tensor, in_idx: torch.Tensor | None) -> None:
    """Keep output channels out_idx (and input channels in_idx, if given) of one gated layer."""
    conv = layer.conv
    w = conv.weight[out_idx] if in_idx is None else conv.weight[out_idx][:, in_idx]
    new = nn.Conv2d(w.shape[1], w.shape[0], conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    bias=conv.bias is not None).to(w.device)
    new.weight.copy_(w)
    if conv.bias is not None:
        new.bias.copy_(conv.bias[out_idx])
    layer.conv = new
    bn = nn.BatchNorm2d(len(out_idx), eps=layer.bn.eps, momentum=layer.bn.momentum, affine=False,
                        track_running_stats=layer.bn.track_running_stats).to(w.device).train(layer.bn.training)
    if layer.bn.track_running_stats:
        bn.running_mean.copy_(layer.bn.running_mean[out_idx])
        bn.running_var.copy_(layer.bn.running_var[out_idx])
        bn.num_batches_tracked.copy_(layer.bn.num_batches_tracked)
    layer.bn = bn
    layer.beta = nn.Parameter(layer.beta[out_idx].clone())
    layer.static = nn.Parameter(layer.static[out_idx].clone())
    if layer.gate is not None:
        g = layer.gate
        gw = g.weight[out_idx] if in_idx is None else g.weight[out_idx][:, in_idx]
        layer.gate = nn.Linear(gw.shape[1], gw.shape[0]).to(w.device)
        layer.gate.weight.copy_(gw)
        layer.gate.bias.copy_(g.bias[out_idx])
    else:
        layer.gamma = nn.Parameter(layer.gamma[out_idx].clone())

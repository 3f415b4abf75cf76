"""Static filter-pruning baselines of the DRL paper: FPGM (its rebuttal's tables) and uniform L1.

Both keep ceil(d C) filters in every conv block of a trained ConvChain backbone (the parent
run), remove the others physically (drl_nets.narrow_chain: the filter, its BN channel, the
next conv's input channel, the classifier's input) and train with the run's optimizer, lr
and epochs. On a ResNet (the DRL paper's ImageNet table) the pruned convs are the two 3x3
convs of every block, the widths DRL and FBS gate (drl_nets.narrow_resnet: the second conv
computes its kept channels and adds them into the full-width residual stream); the stem, the
shortcuts and the classifier keep their width.

  fpgm        He et al., CVPR 2019: the filters nearest the geometric median of their layer are
              the most replaceable. Score filter i by sum_j ||W_i - W_j||_2 over the layer's
              flattened filters and prune the smallest scores. `soft` (FPGM's code): train the
              full-width net, selecting and zeroing the pruned filters before the first epoch and
              after every epoch, so that a zeroed filter can grow back, and slice at the end;
              `soft` False: select once, slice, fine-tune the narrow net.
  l1_channel  Li et al., ICLR 2017: keep the filters of largest L1 norm; slice, fine-tune.

Departure, named: FPGM's code zeroes the pruned filters only; behind a BatchNorm a zero filter
still outputs the BN shift, so we zero the channel's BN scale and shift too. The channel is then
exactly zero after its block, and slicing it away changes no output.
"""
from __future__ import annotations

import copy

import torch

from ..config import RunConfig, check_choice
from ..models.drl_nets import ALL_BACKBONES, ResNetBackbone, narrow_chain, narrow_resnet
from ..train import Callback
from . import drl_gates as G
from .args import ARGS
from .base import Method, Result, register


def geometric_median_scores(weight: torch.Tensor) -> torch.Tensor:
    """FPGM's criterion per filter (first dimension): the sum of Euclidean distances to the layer's other filters."""
    w = weight.detach().flatten(1).to(torch.float64)
    return torch.cdist(w, w).sum(1)


def l1_scores(weight: torch.Tensor) -> torch.Tensor:
    return weight.detach().abs().flatten(1).sum(1)


SCORES = {"fpgm": geometric_median_scores, "l1_channel": l1_scores}


def slots(net) -> list:
    """(conv, BN) of every prunable conv: each block of a chain; the two 3x3 convs of every ResNet block."""
    if isinstance(net, ResNetBackbone):
        return net.slots()
    return [(b.conv, b.bn) for b in net.blocks]


def kept_filters(chain, budget: float, criterion: str) -> list:
    """Per prunable conv (`slots`), the sorted indices of the ceil(budget C) filters with the largest scores."""
    out = []
    for conv, _ in slots(chain):
        w = conv.weight
        k = int(G.keep_count(budget, w.shape[0], 1)[0])
        out.append(SCORES[criterion](w).topk(k).indices.sort().values)
    return out


@torch.no_grad()
def zero_channels(chain, keep: list) -> None:
    """Zero every filter outside `keep` with its BN scale and shift: the channel is 0 after its block."""
    for (conv, bn), idx in zip(slots(chain), keep):
        drop = torch.ones(conv.out_channels, dtype=torch.bool, device=idx.device)
        drop[idx] = False
        conv.weight[drop] = 0.0
        bn.weight[drop] = 0.0
        bn.bias[drop] = 0.0


class SoftPruning(Callback):
    """FPGM's soft pruning: select and zero the pruned filters before training and after every epoch."""

    def __init__(self, budget: float, criterion: str):
        self.budget, self.criterion, self.keep = budget, criterion, None

    def _prune(self, model):
        self.keep = kept_filters(model, self.budget, self.criterion)
        zero_channels(model, self.keep)

    def on_train_begin(self, state):
        self._prune(state.model)

    def on_epoch_end(self, state):
        self._prune(state.model)


def static_metrics(narrow, parent, input_hw) -> dict:
    """channel_metrics of a physically narrowed chain against its full-width parent."""
    full = G.network_macs(parent, input_hw)
    measured = {"macs_backbone": float(G.network_macs(narrow, input_hw)["backbone"]), "macs_dense": full["dense"],
                "kept": [{"mean": n.out_channels / p.out_channels, "std": 0.0}
                         for (n, _), (p, _) in zip(slots(narrow), slots(parent))]}
    return G.channel_metrics(measured, G.param_counts(narrow)["backbone"], 0, G.param_counts(parent)["backbone"])


class ChannelPrune(Method):
    needs_parent = True

    def __init__(self, name: str):
        self.name, self.defaults = name, ARGS[name]

    def validate(self, cfg: RunConfig) -> None:
        super().validate(cfg)
        a = {**self.defaults, **cfg.args}
        check_choice(f"{self.name} backbone (model)", cfg.model, ALL_BACKBONES)
        G.check_ratio("budget", a["budget"])
        if "soft" in a:
            check_choice("soft", a["soft"], (True, False))

    def load_weights(self, model, state: dict):
        name = {id(m): n for n, m in model.named_modules()}
        widths = [state[f"{name[id(conv)]}.weight"].shape[0] for conv, _ in slots(model)]
        narrow = narrow_resnet if isinstance(model, ResNetBackbone) else narrow_chain
        net = narrow(model, [torch.arange(w) for w in widths])
        net.load_state_dict(state)
        return net

    def run(self, ctx) -> Result:
        a = {**self.defaults, **ctx.cfg.args}
        parent = ctx.parent_model()
        if isinstance(parent, ResNetBackbone):
            narrow, full = narrow_resnet, copy.deepcopy(parent)
        else:        # a full-width copy, made as the stored records were
            narrow, full = narrow_chain, narrow_chain(parent, [torch.arange(b.conv.out_channels) for b in parent.blocks])
        if a.get("soft"):
            soft = SoftPruning(a["budget"], self.name)
            history = ctx.fit(full, callbacks=[soft])
            net = narrow(full, soft.keep)
        else:
            net = narrow(full, kept_filters(full, a["budget"], self.name))
            history = ctx.fit(net)
        net.eval()
        extra = static_metrics(net, parent, tuple(ctx.input_shape[1:]))
        extra["widths"] = [conv.out_channels for conv, _ in slots(net)]
        return Result(net, history, extra)


register(ChannelPrune("fpgm"))
register(ChannelPrune("l1_channel"))

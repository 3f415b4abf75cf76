"""Wall-clock variants of channel pruning, for the DRL paper's latency table (rebuttal, CPU and GPU ms).

MAC counts say what pruning could save; whether a network runs faster depends on how the
pruning is executed. The variants, all built from one backbone (replicate.models.drl_nets) at a
uniform budget d, are those the rebuttal's table compares:

  dense         the backbone.
  masked        runtime pruning as FBS and the DRL code execute it: every conv computes all its
                output channels, then a per-input mask zeroes the pruned ones (no work saved).
  sliced        runtime pruning executed by slicing: per input, only the kept output channels
                are computed from only the previous layer's kept channels (`sliced_forward`).
                One input at a time (each input keeps different channels), so batch 1 only.
  static        a physically narrower network keeping ceil(d C) channels per layer (FPGM, L1).
  drl rr=1      masked runtime pruning plus the runtime agent choosing each layer's ratio.
  drl rr=0.5    the channels no input can select at Rr = 0.5 (floor(0.5 (C - ceil(d C))) per
                layer) deleted for good, masked runtime pruning with the agent on what is left,
                keeping ceil(d C) channels per input as the other runtime variants do.

Only the shapes matter for time, so the weights are those of a fresh backbone; the agent's
ratio is its initial mean, the budget. `time_forwards` measures the variants round-robin in
one process (medians after warm-up), so that a busy machine slows them alike and their ratios
stay meaningful even where the milliseconds do not.
"""
from __future__ import annotations

import math
import statistics
import time

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..models.drl_nets import build_backbone, narrow_chain
from . import drl_gates as G

VARIANTS = ("dense", "masked", "sliced", "static", "drl rr=1", "drl rr=0.5")


@torch.no_grad()
def sliced_forward(net: G.GatedNet, x: torch.Tensor) -> torch.Tensor:
    """The eval-mode output of a runtime-only GatedNet (Rr = 1, its stored runtime ratios) for one
    input, computing only the kept channels: the same numbers as `net(x)` (tested), without the
    work on pruned channels."""
    if x.shape[0] != 1:
        raise ConfigError(f"sliced execution keeps different channels per input: batch 1 only, got {x.shape[0]}")
    if any(layer.rr != 1 or layer.gate is None for layer in net.layers) or net.training:
        raise ConfigError("sliced execution needs an eval-mode, runtime-only net (Rr = 1 in every layer)")
    prev = None
    for layer in net.layers:
        conv, bn = layer.conv, layer.bn
        gate_w = layer.gate.weight if prev is None else layer.gate.weight[:, prev]
        u_r = F.linear(x.mean((2, 3)), gate_w, layer.gate.bias)[0]
        u = layer.unified_importance(u_r[None], layer.static_importance()[None])[0]
        k = int(G.keep_count(layer.runtime_ratio, u_r.numel(), 1, layer.min_ratio)[0])
        idx = G._ranks(u_r[None], descending=True)[0].argsort()[:k]   # the k largest u_r, as the mask keeps
        w = conv.weight[idx] if prev is None else conv.weight[idx][:, prev]
        z = F.conv2d(x, w, None if conv.bias is None else conv.bias[idx], conv.stride, conv.padding, conv.dilation)
        z = (z - bn.running_mean[idx][:, None, None]) / torch.sqrt(bn.running_var[idx][:, None, None] + bn.eps)
        x = (z * u[idx][:, None, None] + layer.beta[idx][:, None, None]).relu()
        prev = idx
    return F.linear(x.mean((2, 3)), net.fc.weight[:, prev], net.fc.bias)


def deleted_width(channels: int, d: float, rr: float) -> int:
    """Channels no input can select at trade-off rate rr when the static part keeps ceil(d C):
    floor((1 - rr) (C - ceil(d C)))."""
    k_s = int(G.keep_count(d, channels, 1)[0])
    return math.floor((1.0 - rr) * (channels - k_s) + G._EPS)


def build_variants(model: str, d: float, hidden: int = 128, input_shape=None) -> dict:
    """name -> (module in eval mode, how it is called: "batch" or "single") for every VARIANTS entry."""
    from ..methods import drl_prune
    from ..methods.args import ARGS

    d = G.check_ratio("budget", d)
    torch.manual_seed(0)
    dense = build_backbone(model).eval()
    widths = [b.conv.out_channels for b in dense.blocks]
    keep = [int(G.keep_count(d, c, 1)[0]) for c in widths]

    masked = G.to_gated(dense, rr=1.0).eval()
    masked.set_ratios(runtime=d)
    static = narrow_chain(dense, [torch.arange(k) for k in keep]).eval()

    def drl(backbone, budget):
        a = {**ARGS["drl_prune"], "rr": 1.0, "hidden": hidden, "budget": budget}
        return drl_prune.build(backbone, a).eval()

    survivors = [c - deleted_width(c, d, 0.5) for c in widths]
    narrowed = narrow_chain(dense, [torch.arange(s) for s in survivors]).eval()
    # the agent's initial mean is its budget input: ceil(d C) of the C' survivors (layers differ by rounding only)
    inner = sum(k / s for k, s in zip(keep, survivors)) / len(keep)
    return {"dense": (dense, "batch"), "masked": (masked, "batch"), "sliced": (masked, "single"),
            "static": (static, "batch"), "drl rr=1": (drl(dense, d), "batch"),
            "drl rr=0.5": (drl(narrowed, min(inner, 1.0)), "batch")}


@torch.no_grad()
def time_forwards(variants: dict, x: torch.Tensor, repeats: int = 25, warmup: int = 5) -> dict:
    """Median milliseconds of one forward of each variant on the batch `x`, measured round-robin
    (every repeat runs each variant once, in turn). A "single" variant (sliced) runs the batch's
    inputs one at a time, so its time is per batch as well; with a batch of 1 it is one call."""
    if repeats < 1 or warmup < 0:
        raise ConfigError(f"repeats must be >= 1 and warmup >= 0, got {repeats!r} and {warmup!r}")

    def call(module, how):
        if how == "single" and isinstance(module, G.GatedNet):
            for i in range(x.shape[0]):
                sliced_forward(module, x[i:i + 1])
        else:
            module(x)

    times = {name: [] for name in variants}
    for r in range(warmup + repeats):
        for name, (module, how) in variants.items():
            start = time.perf_counter()
            call(module, how)
            if r >= warmup:
                times[name].append(1000 * (time.perf_counter() - start))
    return {name: statistics.median(v) for name, v in times.items()}

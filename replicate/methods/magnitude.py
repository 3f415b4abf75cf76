"""Magnitude pruning, the baseline every paper in the suite compares with.

Three schedules, one argument each (`schedule`):

- ``iterative`` -- Han et al. 2015, "Learning both weights and connections":
  prune, retrain, prune again. Han prunes each layer below a threshold equal to
  a quality parameter q times the standard deviation of the layer's weights.
  We set q so that the network reaches the requested compression exactly,
  which is the same as keeping the globally largest |w| / sigma_layer; sigma
  is the standard deviation of the layer's surviving weights at that step.
  Pruned weights stay zero for good. One run is one prune-and-retrain step;
  a chain of runs (see `iterative_chain`) walks 2x -> 4x -> ... as Han's
  schedule does, each level starting from the previous level's weights.
- ``oneshot`` -- prune the dense model once to the target, then fine-tune
  with the mask fixed (`scope` global or layer-wise).
  With ``layer_remaining`` ({layer: fraction kept}) a step prunes each layer to its own
  fraction instead (the largest |w| of the layer survive): Han's published per-layer
  ratios, which his hand-tuned per-layer sensitivities produced.
- ``gradual`` -- Zhu & Gupta 2017, "To prune, or not to prune": sparsity rises
  as s_t = s_f (1 - (1 - (t - t0) / (t1 - t0))^3) between steps t0 and t1,
  pruning every `prune_every` steps, each layer to the same sparsity.

The run's `epochs` are the (re)training epochs of that step; its lr etc. are
the retraining settings.
"""
from __future__ import annotations

import math

import torch

from ..config import ConfigError, RunConfig, check_choice
from ..metrics import prunable
from ..train import Callback
from .args import ARGS
from .base import Method, Result, register

SCHEDULES = ("iterative", "oneshot", "gradual")
SCOPES = ("std", "global", "layer")


def target_remaining(args) -> float:
    """Fraction of prunable weights to keep, from `compression` or `sparsity`."""
    if args.get("compression") is not None:
        return 1.0 / float(args["compression"])
    return 1.0 - float(args["sparsity"])


@torch.no_grad()
def magnitude_masks(weights: dict, alive: dict, keep: int, scope: str = "std") -> dict:
    """Masks keeping `keep` weights in total among the `alive` ones.

    weights, alive: name -> tensor (same shapes); scope as in SCOPES.
    Already-pruned weights are never revived.
    """
    check_choice("scope", scope, SCOPES)
    total = sum(w.numel() for w in weights.values())
    if scope == "layer":
        frac = keep / total
        out = {}
        for name, w in weights.items():
            k = min(int(round(frac * w.numel())), int(alive[name].sum()))
            out[name] = _topk_mask(w.abs().masked_fill(~alive[name], -1.0), k)
        return out
    scores = []
    for name, w in weights.items():
        s = w.abs()
        if scope == "std":
            live = w[alive[name]]
            sigma = live.std() if live.numel() > 1 else torch.tensor(1.0)
            s = s / sigma.clamp_min(1e-12)
        scores.append(s.masked_fill(~alive[name], -1.0).flatten())
    flat = torch.cat(scores)
    keep = min(keep, int(sum(int(a.sum()) for a in alive.values())))
    mask = _topk_mask(flat, keep)
    out, i = {}, 0
    for name, w in weights.items():
        out[name] = mask[i:i + w.numel()].view_as(w)
        i += w.numel()
    return out


def _topk_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    mask = torch.zeros(scores.numel(), dtype=torch.bool)
    if k > 0:
        mask[torch.topk(scores.flatten(), k, sorted=False).indices] = True
    return mask.view_as(scores)


def quality_parameter(weights: dict, masks: dict) -> float:
    """Han's q: the smallest kept |w| / sigma_layer, i.e. the common threshold factor."""
    q = math.inf
    for name, w in weights.items():
        kept = w[masks[name]]
        if kept.numel():
            live = w[w != 0]
            sigma = float(live.std()) if live.numel() > 1 else 1.0
            q = min(q, float(kept.abs().min()) / max(sigma, 1e-12))
    return q if math.isfinite(q) else 0.0


class GradualPruning(Callback):
    """Zhu & Gupta's cubic sparsity schedule, applied every `every` steps."""

    def __init__(self, final_remaining: float, start: float, end: float, every: int, scope: str):
        self.final_sparsity = 1.0 - final_remaining
        self.start, self.end, self.every, self.scope = start, end, every, scope

    def on_train_begin(self, state):
        self.t0 = int(self.start * state.total_steps)
        self.t1 = max(int(self.end * state.total_steps), self.t0 + 1)
        self.params = prunable(state.model)
        for p in self.params.values():
            state.masks.setdefault(p, torch.ones_like(p, dtype=torch.bool))

    def sparsity_at(self, step: int) -> float:
        frac = min(max((step - self.t0) / (self.t1 - self.t0), 0.0), 1.0)
        return self.final_sparsity * (1 - (1 - frac) ** 3)

    @torch.no_grad()
    def after_step(self, state):
        t = state.step
        if t < self.t0 or t > self.t1:
            return
        if (t - self.t0) % self.every != 0 and t != self.t1:
            return
        weights = {n: p.detach() for n, p in self.params.items()}
        alive = {n: state.masks[p].bool() for n, p in self.params.items()}
        total = sum(w.numel() for w in weights.values())
        keep = int(round((1 - self.sparsity_at(t)) * total))
        new = magnitude_masks(weights, alive, keep, self.scope)
        for n, p in self.params.items():
            state.masks[p] = new[n].to(p.dtype)
            p.mul_(state.masks[p])


class Magnitude(Method):
    name = "magnitude"
    defaults = ARGS["magnitude"]

    def validate(self, cfg: RunConfig) -> None:
        super().validate(cfg)
        a = {**self.defaults, **cfg.args}
        check_choice("schedule", a["schedule"], SCHEDULES)
        check_choice("scope", a["scope"], SCOPES)
        given = [k for k in ("compression", "sparsity", "layer_remaining") if a[k] is not None]
        if len(given) != 1:
            raise ConfigError("magnitude pruning needs exactly one of compression (>= 1), sparsity ([0, 1)) "
                              f"or layer_remaining ({{layer: fraction kept}}), got {given or 'none'}")
        if a["layer_remaining"] is not None:
            lr_ = a["layer_remaining"]
            if a["schedule"] == "gradual":
                raise ConfigError("layer_remaining works with the iterative and oneshot schedules, not gradual")
            if not isinstance(lr_, dict) or not lr_ or not all(isinstance(v, (int, float)) and 0 < v <= 1 for v in lr_.values()):
                raise ConfigError(f"layer_remaining must map layer names to fractions in (0, 1], got {lr_!r}")
        if a["compression"] is not None and not float(a["compression"]) >= 1:
            raise ConfigError(f"compression must be >= 1, got {a['compression']}")
        if a["sparsity"] is not None and not 0 <= float(a["sparsity"]) < 1:
            raise ConfigError(f"sparsity must be in [0, 1), got {a['sparsity']}")
        if not 0 <= a["prune_start"] < a["prune_end"] <= 1 or int(a["prune_every"]) < 1:
            raise ConfigError("gradual pruning needs 0 <= prune_start < prune_end <= 1 and prune_every >= 1")
        if a["schedule"] != "gradual" and cfg.parent is None:
            raise ConfigError(f"{a['schedule']} magnitude pruning needs a parent run (the trained model to prune)")

    def run(self, ctx) -> Result:
        a = {**self.defaults, **ctx.cfg.args}
        if a["layer_remaining"] is not None:
            return self._per_layer(ctx, a["layer_remaining"])
        remaining = target_remaining(a)
        if a["schedule"] == "gradual":
            model = ctx.parent_model() if ctx.cfg.parent else ctx.build_model()
            cb = GradualPruning(remaining, a["prune_start"], a["prune_end"], int(a["prune_every"]), a["scope"])
            history = ctx.fit(model, callbacks=[cb], masks={})
            return Result(model, history, {"requested_compression": 1 / remaining})
        model = ctx.parent_model()
        params = prunable(model)
        weights = {n: p.detach() for n, p in params.items()}
        alive = {n: w != 0 for n, w in weights.items()}
        total = sum(w.numel() for w in weights.values())
        keep = int(round(remaining * total))
        new = magnitude_masks(weights, alive, keep, a["scope"])
        q = quality_parameter(weights, new) if a["scope"] == "std" else None
        masks = {params[n]: new[n].to(params[n].dtype) for n in params}
        with torch.no_grad():
            for p, m in masks.items():
                p.mul_(m)
        from ..train import evaluate
        before = evaluate(model, ctx.data.x_test, ctx.data.y_test)
        history = ctx.fit(model, masks=masks)
        return Result(model, history, {"requested_compression": 1 / remaining,
                                       "quality_parameter": q,
                                       "test_acc_before_retraining": before["acc"]})


    def _per_layer(self, ctx, fractions: dict) -> Result:
        """Prune each layer to its own kept fraction (of its total size; weights already pruned stay
        pruned), then retrain with the masks fixed."""
        model = ctx.parent_model()
        params = prunable(model)
        unknown = sorted(set(fractions) - set(params))
        if unknown or set(fractions) != set(params):
            raise ConfigError(f"layer_remaining must name every prunable layer exactly: {sorted(params)}, "
                              f"got {sorted(fractions)}")
        masks = {}
        with torch.no_grad():
            for n, p in params.items():
                alive = p != 0
                k = min(int(round(float(fractions[n]) * p.numel())), int(alive.sum()))
                m = _topk_mask(p.abs().masked_fill(~alive, -1.0).flatten(), k).view_as(p)
                masks[p] = m.to(p.dtype)
                p.mul_(masks[p])
        from ..train import evaluate
        before = evaluate(model, ctx.data.x_test, ctx.data.y_test)
        history = ctx.fit(model, masks=masks)
        total = sum(p.numel() for p in params.values())
        kept = sum(float(fractions[n]) * p.numel() for n, p in params.items())
        return Result(model, history, {"requested_compression": total / kept,
                                       "test_acc_before_retraining": before["acc"]})


register(Magnitude())


def iterative_chain(dense: RunConfig, compressions, epochs: int, scope: str = "std", **overrides) -> list:
    """Han's schedule as a chain of runs: each level prunes the previous level's
    model further and retrains it for `epochs`. Returns one config per level,
    in increasing compression; level i's parent is level i-1 (the first's is `dense`).
    `scope` "std" is Han's q x sigma rule; "global" one magnitude threshold for all layers."""
    check_choice("scope", scope, SCOPES)
    extra = {} if scope == "std" else {"scope": scope}
    chain, parent = [], dense
    for c in sorted(compressions):
        cfg = dense.replace(method="magnitude", epochs=epochs, parent=parent,
                            args={"schedule": "iterative", "compression": float(c), **extra}, **overrides)
        chain.append(cfg)
        parent = cfg
    return chain


def per_layer_chain(dense: RunConfig, final: dict, compressions, epochs: int, **overrides) -> list:
    """Han's iterative schedule towards per-layer kept fractions `final` ({layer: fraction}) reached at
    the largest of `compressions`: at level c each layer keeps final[layer] ** (log c / log C), so
    the per-layer ratios move geometrically from 1 to Han's published ones. One config per level;
    level i's parent is level i-1 (the first's is `dense`)."""
    levels = sorted(float(c) for c in compressions)
    top = levels[-1]
    if top <= 1:
        raise ConfigError(f"per_layer_chain needs a final compression above 1, got {levels}")
    chain, parent = [], dense
    for c in levels:
        frac = {n: round(float(f) ** (math.log(c) / math.log(top)), 6) for n, f in sorted(final.items())}
        cfg = dense.replace(method="magnitude", epochs=epochs, parent=parent,
                            args={"schedule": "iterative", "layer_remaining": frac}, **overrides)
        chain.append(cfg)
        parent = cfg
    return chain


def oneshot(dense: RunConfig, compression: float, epochs: int, scope: str = "global", **overrides) -> RunConfig:
    """Prune `dense` once to `compression` and fine-tune for `epochs`."""
    return dense.replace(method="magnitude", epochs=epochs, parent=dense,
                         args={"schedule": "oneshot", "compression": float(compression), "scope": scope},
                         **overrides)

"""Adaptive quantization (Khoram & Li, ICLR 2018): the per-weight pieces.

The paper's body could not be read offline, so this is a reconstruction from
its abstract, its review and secondary summaries; the guesses are listed here
and in `run_aq`'s docstring. Every reconstructed choice is a named option so
that a reader with the PDF can change it in one place:

- each weight w_i gets an error margin tau_i; it is pruned (0 bits) when
  |w_i| <= tau_i, otherwise rounded to the fixed-point grid with
  N_i = max(0, ceil(log2(1 / tau_i)) - 1) fractional bits, so that the rounding
  error 2^-(N_i + 1) never exceeds tau_i;
- the margins come from the linearised loss constraint sum_i |g_i| tau_i <= C
  (the worst case of g . dW over |dW_i| <= tau_i) with the size bound
  -sum_i log2 tau_i minimised: the closed form (KKT) is a water-filling
  tau_i = min(radius, lam / |g_i|), with lam chosen so that the constraint
  holds with equality; `tau_rounding="pow2"` rounds each tau down to a power
  of two, where the size bound is tight.

`run_aq` is the iterative trust-region algorithm built on them (its guesses are
listed in its docstring), and `AdaptiveQuant` the method the run store calls.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..config import ConfigError, RunConfig, check_choice
from ..metrics import prunable
from ..train import evaluate
from .args import ARGS
from .base import Method, Result, register
from . import quantization as q

TAU_ROUNDINGS = ("exact", "pow2")


def margins(g: torch.Tensor, budget: float, radius: float = math.inf, tau_rounding: str = "exact") -> torch.Tensor:
    """Error margins tau (same shape as g) minimising -sum log2 tau subject to
    sum |g_i| tau_i <= budget and 0 < tau_i <= radius.

    With `tau_rounding="exact"` the constraint holds with equality whenever the
    radius does not bind every weight; weights with g_i = 0 get the radius (they
    cost nothing in the constraint). Needs a finite radius if some g_i = 0."""
    check_choice("tau_rounding", tau_rounding, TAU_ROUNDINGS)
    if not budget > 0:
        raise ValueError(f"the loss budget must be > 0, got {budget}")
    if not radius > 0:
        raise ValueError(f"the trust radius must be > 0, got {radius}")
    a = g.abs().double().flatten()
    zero = a == 0
    if bool(zero.any()) and math.isinf(radius):
        raise ValueError("weights with zero gradient need a finite trust radius")
    tau = torch.full_like(a, float(radius))
    pos = a[~zero]
    if pos.numel():
        if math.isinf(radius):
            tau[~zero] = budget / (pos.numel() * pos)   # equal share of the budget per weight
        elif float((pos * radius).sum()) > budget:
            # water-filling: tau_i = min(radius, lam / a_i). With the k largest-|g| weights uncapped
            # (tau = lam / a) and the rest at the radius, the budget is met with equality by
            # lam_k = (budget - radius * sum(rest)) / k; the right k is the first consistent one.
            order = torch.sort(pos, descending=True).values
            n = order.numel()
            rest = torch.cat([torch.flip(torch.cumsum(torch.flip(order, [0]), 0), [0])[1:], order.new_zeros(1)])
            k = torch.arange(1, n + 1, dtype=order.dtype)
            lam = (budget - radius * rest) / k
            nxt = torch.cat([order[1:], order.new_zeros(1)])
            ok = (lam > 0) & (lam / order <= radius * (1 + 1e-12)) & ((nxt == 0) | (lam / nxt.clamp(min=1e-300) >= radius * (1 - 1e-12)))
            lam = float(lam[ok.nonzero()[0, 0]])
            tau[~zero] = torch.minimum(torch.full_like(pos, float(radius)), lam / pos)
    if tau_rounding == "pow2":
        tau = torch.pow(2.0, torch.floor(torch.log2(tau)))
    return tau.reshape(g.shape).to(g.dtype if g.dtype.is_floating_point else torch.float64)


def precision(tau: torch.Tensor) -> torch.Tensor:
    """Fractional bits N = max(0, ceil(log2(1 / tau)) - 1): rounding error 2^-(N+1) <= tau."""
    return torch.clamp(torch.ceil(torch.log2(1.0 / tau.double())) - 1, min=0).to(tau.dtype)


def quantize(w: torch.Tensor, tau: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(quantized weights, payload bits per weight): pruned where |w| <= tau,
    else rounded to N(tau) fractional bits; |w - w_hat| <= tau everywhere."""
    n = precision(tau).to(w.dtype)
    wq = torch.where(w.abs() <= tau.to(w.dtype), torch.zeros_like(w), q.fixed_point(w, n))
    return wq, q.fixed_point_bits(wq, n)


# -- the iterative algorithm ---------------------------------------------------------

BOUNDS = ("additive", "relative")
LINEARIZE = ("initial", "current")


def loss_and_grad(model, weights: list, x: torch.Tensor, y: torch.Tensor, chunk: int = 2000):
    """Mean cross-entropy over (x, y) and its gradient with respect to `weights`
    (eval mode, no data order involved: deterministic)."""
    was = model.training
    model.eval()
    grads = [torch.zeros_like(w) for w in weights]
    total = 0.0
    for i in range(0, len(x), chunk):
        out = model(x[i:i + chunk])
        loss = F.cross_entropy(out, y[i:i + chunk], reduction="sum")
        gs = torch.autograd.grad(loss, weights)
        for a, b in zip(grads, gs):
            a.add_(b)
        total += float(loss.detach())
    model.train(was)
    n = max(len(x), 1)
    return total / n, [g / n for g in grads]


def size_bits(bits: list) -> dict:
    """Payload bits, and the bookkeeping of storing each weight's precision
    (ceil(log2(max bits + 1)) bits per weight, which also marks pruned weights)."""
    payload = float(sum(float(b.sum()) for b in bits))
    n = sum(b.numel() for b in bits)
    top = max((float(b.max()) for b in bits if b.numel()), default=0.0)
    per = math.ceil(math.log2(top + 1)) if top > 0 else 0
    return {"weights": n, "payload_bits": payload, "bookkeeping_bits": float(n * per),
            "bits_per_weight": payload / max(n, 1),
            "compression_payload": q.compression(n, payload),
            "compression_with_bookkeeping": q.compression(n, payload + n * per)}


def run_aq(model, x, y, *, delta: float, bound: str = "additive", linearize: str = "initial",
           radius0: float = 2 ** -6, expand: float = 2.0, shrink: float = 2.0, max_iters: int = 25,
           patience: int = 3, tau_rounding: str = "pow2") -> dict:
    """Quantize `model`'s Linear/Conv2d weights in place (biases stay 32-bit floats).

    Trust region: at each iteration the margins are the closed form above with
    radius r; the candidate is accepted when the true loss on (x, y) stays within
    the bound (then r *= expand), else rejected (r /= shrink). Margins never
    shrink, so a weight's precision never increases. Stops after `patience`
    iterations without a smaller model, or after `max_iters`.

    The two readings of eq. 19 that the review raises: linearize="initial" uses the
    gradient at the trained weights W0 and the budget bound - L(W0) at every
    iteration (the form the review writes, L(W0) + grad L(W0) . dW); "current"
    uses the gradient at the current quantized weights and the remaining budget
    bound - L(W_k), spent on enlarging the margins."""
    check_choice("bound", bound, BOUNDS)
    check_choice("linearize", linearize, LINEARIZE)
    ws = list(prunable(model).values())
    w0 = [w.detach().clone() for w in ws]
    l0, g0 = loss_and_grad(model, ws, x, y)
    lbar = l0 + delta if bound == "additive" else l0 * (1 + delta)
    gnorm = math.sqrt(sum(float((g ** 2).sum()) for g in g0))
    mean_abs_g = sum(float(g.abs().sum()) for g in g0) / sum(g.numel() for g in g0)
    tau_acc = [torch.zeros_like(w) for w in ws]
    best_bits = [torch.full_like(w, q.FLOAT_BITS) for w in ws]   # float32 to start with
    best = size_bits(best_bits)
    current = w0                 # the accepted weights, restored after a rejection
    g_cur = g0                   # gradient at `current`, recomputed only when it moves
    cur_loss, r, stale, log = l0, radius0, 0, []
    for it in range(max_iters):
        if linearize == "initial":
            g, budget = g0, lbar - l0
        else:
            g, budget = g_cur, lbar - cur_loss
        if budget <= 0:
            log.append({"iteration": it, "radius": r, "accepted": False, "reason": "no budget left"})
            break
        flat = torch.cat([a.flatten() for a in g]).double()
        tau = margins(flat, budget, r, tau_rounding)
        if linearize == "current":
            tau = tau + torch.cat([t.flatten() for t in tau_acc]).double()
        cand, bits, off = [], [], 0
        for w, t_old in zip(w0, tau_acc):
            t = torch.maximum(tau[off:off + w.numel()].view_as(w).to(w.dtype), t_old)   # margins never shrink
            off += w.numel()
            wq, b = quantize(w, t)
            cand.append((wq, t))
            bits.append(b)
        with torch.no_grad():
            for w, (wq, _) in zip(ws, cand):
                w.copy_(wq)
        new_loss = evaluate(model, x, y)["loss"]
        size = size_bits(bits)
        predicted = l0 + float(sum((gg * (wq - w)).sum() for gg, (wq, _), w in zip(g0, cand, w0)))
        ok = new_loss <= lbar and size["payload_bits"] < best["payload_bits"]
        log.append({"iteration": it, "radius": r, "accepted": ok, "loss": new_loss, "predicted_loss_linear_w0": predicted,
                    "bound": lbar, **size, "pruned": float(sum(float((wq == 0).sum()) for wq, _ in cand)) / size["weights"]})
        if ok:
            tau_acc = [t for _, t in cand]
            current = [wq for wq, _ in cand]
            best, best_bits, cur_loss, stale = size, bits, new_loss, 0
            if linearize == "current":
                _, g_cur = loss_and_grad(model, ws, x, y)
            r *= expand
        else:
            with torch.no_grad():
                for w, c in zip(ws, current):
                    w.copy_(c)
            r /= shrink
            stale += 1
            if stale >= patience:
                break
    names = list(prunable(model))
    per_layer = {}
    for name, w, b in zip(names, ws, best_bits):
        vals, counts = torch.unique(b, return_counts=True)
        per_layer[name] = {"weights": w.numel(), "pruned": float((w == 0).float().mean()),
                           "distinct_nonzero": int(torch.unique(w[w != 0]).numel()),
                           "mean_bits": float(b.mean()), "bits_histogram": {str(int(v)): int(c) for v, c in zip(vals, counts)}}
    return {"start_loss": l0, "start_grad_norm": gnorm, "start_mean_abs_grad": mean_abs_g, "bound": lbar,
            "final_loss": cur_loss, "iterations": log, "accepted": sum(1 for e in log if e["accepted"]),
            "size": best, "layers": per_layer}


class AdaptiveQuant(Method):
    name = "adaptive_quant"
    needs_parent = True
    defaults = ARGS["adaptive_quant"]

    def validate(self, cfg: RunConfig) -> None:
        super().validate(cfg)
        a = {**self.defaults, **cfg.args}
        check_choice("bound", a["bound"], BOUNDS)
        check_choice("linearize", a["linearize"], LINEARIZE)
        check_choice("tau_rounding", a["tau_rounding"], TAU_ROUNDINGS)
        for k in ("delta", "radius0"):
            if not (isinstance(a[k], (int, float)) and a[k] > 0 and math.isfinite(a[k])):
                raise ConfigError(f"{k} must be a finite number > 0, got {a[k]!r}")
        for k in ("expand", "shrink"):
            if not (isinstance(a[k], (int, float)) and a[k] >= 1):
                raise ConfigError(f"{k} must be >= 1, got {a[k]!r}")
        for k in ("max_iters", "patience"):
            if not (isinstance(a[k], int) and a[k] >= 1):
                raise ConfigError(f"{k} must be an integer >= 1, got {a[k]!r}")
        if a["grad_samples"] is not None and not (isinstance(a["grad_samples"], int) and a["grad_samples"] >= 1):
            raise ConfigError(f"grad_samples must be a positive integer or None, got {a['grad_samples']!r}")

    def run(self, ctx) -> Result:
        a = {**self.defaults, **ctx.cfg.args}
        model = ctx.parent_model()
        x, y = ctx.data.x_train, ctx.data.y_train
        if a["grad_samples"] is not None and a["grad_samples"] < len(x):
            idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(ctx.cfg.seed))[: a["grad_samples"]]
            x, y = x[idx], y[idx]
        dev = next(model.parameters()).device
        out = run_aq(model, x.to(dev), y.to(dev), delta=a["delta"], bound=a["bound"], linearize=a["linearize"],
                     radius0=a["radius0"], expand=a["expand"], shrink=a["shrink"], max_iters=a["max_iters"],
                     patience=a["patience"], tau_rounding=a["tau_rounding"])
        return Result(model, [], {"aq": out})


register(AdaptiveQuant())

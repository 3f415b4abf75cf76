"""Adaptive quantization (Khoram & Li, ICLR 2018): the per-weight pieces.

The paper's body could not be read offline, so this is a reconstruction from
its abstract, its review and secondary summaries (see the notebooks of
notebooks/aq/ for the list of guesses). Every reconstructed choice is a named
option so that a reader with the PDF can change it in one place:

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

The iterative trust-region algorithm is built on these functions.
"""
from __future__ import annotations

import math

import torch

from ..config import check_choice
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

"""Weight quantization primitives and size accounting shared by adaptive
quantization (adaptive_quant.py) and its baselines.

Conventions (stated in every notebook that uses them):
- a *fixed-point* weight with f fractional bits lies on the grid 2^-f; its
  payload is 1 sign bit + the integer bits its magnitude needs + f; a pruned
  weight (exactly 0) costs 0 payload bits;
- *uniform k-bit* quantization is per layer and symmetric: 2^(k-1) - 1 levels
  each side of zero, step max|w| / (2^(k-1) - 1); k = 1 is sign(w) x mean|w|
  (the binary case);
- *weight sharing* (Deep Compression) clusters a layer's non-zero weights into
  at most 2^b shared values with 1-D k-means from a linear initialisation;
- sizes are in bits; compression is 32 x (number of weights) / bits.
"""
from __future__ import annotations

import heapq
import math
from collections import Counter

import torch

FLOAT_BITS = 32


# -- fixed point ----------------------------------------------------------------

def fixed_point(w: torch.Tensor, frac_bits: torch.Tensor) -> torch.Tensor:
    """Round every weight to the grid 2^-frac_bits (its own number of fractional bits)."""
    scale = torch.pow(2.0, frac_bits.to(w.dtype))
    return torch.round(w * scale) / scale


def integer_bits(w: torch.Tensor) -> torch.Tensor:
    """Bits for the integer part of |w| (0 when |w| < 1)."""
    a = w.abs().floor()
    return torch.where(a >= 1, torch.floor(torch.log2(a.clamp(min=1))) + 1, torch.zeros_like(a))


def fixed_point_bits(wq: torch.Tensor, frac_bits: torch.Tensor) -> torch.Tensor:
    """Payload bits per weight: sign + integer + fractional; 0 for a weight that is exactly 0."""
    bits = 1 + integer_bits(wq) + frac_bits.to(wq.dtype)
    return torch.where(wq == 0, torch.zeros_like(bits), bits)


# -- uniform k-bit ----------------------------------------------------------------

def uniform_quantize(w: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric per-tensor uniform quantization to `bits` bits (1 = binary, sign x mean|w|)."""
    if not isinstance(bits, int) or bits < 1:
        raise ValueError(f"bits must be an integer >= 1, got {bits!r}")
    if bits == 1:
        return torch.sign(w) * w.abs().mean()
    levels = 2 ** (bits - 1) - 1
    m = w.abs().max()
    if m == 0:
        return w.clone()
    step = m / levels
    return torch.round(w / step).clamp(-levels, levels) * step


# -- weight sharing (Deep Compression) -----------------------------------------------

def kmeans_1d(values: torch.Tensor, k: int, iters: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    """1-D k-means with centroids initialised linearly between min and max (Han et
    al.'s recommended init). Returns (centroids (k',), index of each value); empty
    clusters are dropped, so k' <= k."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    v = values.flatten().double()
    if v.numel() == 0:
        return torch.zeros(0, dtype=values.dtype), torch.zeros(0, dtype=torch.long)
    c = torch.linspace(float(v.min()), float(v.max()), k, dtype=torch.float64)
    for _ in range(iters):
        idx = (v[:, None] - c[None, :]).abs().argmin(1)
        sums = torch.zeros_like(c).index_add_(0, idx, v)
        counts = torch.zeros_like(c).index_add_(0, idx, torch.ones_like(v))
        new = torch.where(counts > 0, sums / counts.clamp(min=1), c)
        if torch.allclose(new, c):
            break
        c = new
    idx = (v[:, None] - c[None, :]).abs().argmin(1)
    used = torch.unique(idx)
    remap = torch.full((k,), -1, dtype=torch.long)
    remap[used] = torch.arange(len(used))
    return c[used].to(values.dtype), remap[idx]


def share_weights(w: torch.Tensor, bits: int, iters: int = 30) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Replace the non-zero weights of `w` by at most 2^bits shared values.
    Returns (shared weights, centroids, cluster index per non-zero weight)."""
    nz = w != 0
    cents, idx = kmeans_1d(w[nz], 2 ** bits, iters)
    out = torch.zeros_like(w)
    out[nz] = cents[idx]
    return out, cents, idx


def huffman_bits(symbols) -> int:
    """Total length in bits of the Huffman code of a sequence of symbols."""
    counts = Counter(symbols.tolist() if isinstance(symbols, torch.Tensor) else symbols)
    if len(counts) <= 1:
        return sum(counts.values())   # one symbol: one bit each
    heap = list(counts.values())
    heapq.heapify(heap)
    total = 0
    while len(heap) > 1:
        a, b = heapq.heappop(heap), heapq.heappop(heap)
        total += a + b                # every symbol under the merged node gets one more bit
        heapq.heappush(heap, a + b)
    return total


def sparse_index_bits(mask: torch.Tensor, index_bits: int = 4) -> int:
    """Bits for the positions of the non-zero weights stored as relative indices
    of `index_bits` bits (Deep Compression: 5 for fc, 8 for conv); a gap longer
    than 2^index_bits - 1 costs a padding zero entry."""
    pos = torch.nonzero(mask.flatten()).flatten()
    if pos.numel() == 0:
        return 0
    gaps = torch.diff(pos, prepend=torch.tensor([-1])) - 1
    maxgap = 2 ** index_bits - 1
    entries = int(pos.numel() + (gaps // (maxgap + 1)).sum())
    return entries * index_bits


def compression(n_weights: int, bits: float) -> float:
    return FLOAT_BITS * n_weights / max(bits, 1e-12)

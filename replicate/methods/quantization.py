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

import copy
import heapq
import math
from collections import Counter

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..config import ConfigError, RunConfig
from ..metrics import prunable
from ..train import Callback, evaluate
from .args import ARGS
from .base import Method, Result, register

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


def relative_index_symbols(mask: torch.Tensor, index_bits: int) -> torch.Tensor:
    """The relative indices (gaps) that store the positions of `mask`'s non-zeros
    in `index_bits` bits each: a gap longer than 2^index_bits - 1 needs padding
    entries (value 2^index_bits - 1, a stored zero) first. The order of the
    returned symbols is not the storage order; only the multiset is needed."""
    pos = torch.nonzero(mask.flatten()).flatten()
    if pos.numel() == 0:
        return pos
    gaps = torch.diff(pos, prepend=pos.new_tensor([-1])) - 1
    maxgap = 2 ** index_bits - 1
    pads = int((gaps // (maxgap + 1)).sum())
    return torch.cat([gaps.new_full((pads,), maxgap), gaps % (maxgap + 1)])


def sparse_index_bits(mask: torch.Tensor, index_bits: int = 4) -> int:
    """Bits for the positions of the non-zero weights stored as relative indices
    of `index_bits` bits (Deep Compression: 5 for fc, 8 for conv)."""
    return relative_index_symbols(mask, index_bits).numel() * index_bits


def compression(n_weights: int, bits: float) -> float:
    return FLOAT_BITS * n_weights / max(bits, 1e-12)


# -- methods: uniform k-bit (binary at k = 1) and Deep Compression ------------------------


class _STEQuant(nn.Module):
    """Forward: the weight quantized to `bits` (zeros kept at zero); backward: identity
    (the straight-through estimator), so the float shadow weight keeps learning."""

    def __init__(self, bits: int):
        super().__init__()
        self.bits = bits

    def forward(self, w):
        wq = uniform_quantize(w, self.bits) * (w != 0)
        return w + (wq - w).detach()


def uniform_sizes(model, bits: int) -> dict:
    """Bits of a model whose Linear/Conv2d weights are stored with `bits` bits each
    (plus one 32-bit scale per layer); zeros are stored like any other value."""
    ws = list(prunable(model).values())
    n = sum(w.numel() for w in ws)
    total = n * bits + 32 * len(ws)
    return {"weights": n, "payload_bits": float(total), "bits_per_weight": total / n,
            "compression_payload": compression(n, total)}


class UniformQuant(Method):
    """Per-layer symmetric uniform k-bit quantization of a trained model, optionally
    fine-tuned with the straight-through estimator; k = 1 is a binarized-weight model
    (sign x mean|w| per layer; trained with STE it is BinaryConnect-style). Without a
    parent it trains from scratch with quantized weights for `epochs`.

    `latent=True` keeps the float shadow weights that STE training learned as the
    run's model (so another method can start from them); the quantized model's
    test error is then recorded as `quantized_test_error` and the run's own test
    error is the shadow network's."""

    name = "uniform_quant"
    defaults = ARGS["uniform_quant"]

    def validate(self, cfg: RunConfig) -> None:
        super().validate(cfg)
        a = {**self.defaults, **cfg.args}
        b = a["bits"]
        if not (isinstance(b, int) and not isinstance(b, bool) and 1 <= b <= 16):
            raise ConfigError(f"bits must be an integer from 1 to 16, got {b!r}")
        if not isinstance(a["latent"], bool):
            raise ConfigError(f"latent must be true or false, got {a['latent']!r}")
        if a["latent"] and cfg.epochs == 0:
            raise ConfigError("latent=True keeps the shadow weights of quantization-aware training; it needs epochs > 0")

    def run(self, ctx) -> Result:
        a = {**self.defaults, **ctx.cfg.args}
        bits = a["bits"]
        model = ctx.parent_model() if ctx.cfg.parent is not None else ctx.build_model()
        mods = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        history = []
        if ctx.cfg.epochs > 0:
            for m in mods:
                parametrize.register_parametrization(m, "weight", _STEQuant(bits))
            history = ctx.fit(model)
            for m in mods:
                parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)
        extra = {}
        if a["latent"]:
            quantized = copy.deepcopy(model)
            _quantize_layers(quantized, bits)
            extra["quantized_test_error"] = 1 - evaluate(quantized, ctx.data.x_test, ctx.data.y_test)["acc"]
            extra["quant"] = uniform_sizes(quantized, bits)
            return Result(model, history, extra)
        _quantize_layers(model, bits)
        return Result(model, history, {"quant": uniform_sizes(model, bits)})


@torch.no_grad()
def _quantize_layers(model, bits: int) -> None:
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            m.weight.copy_(uniform_quantize(m.weight, bits) * (m.weight != 0))


class _Project(Callback):
    """After every step, each cluster's weights are set to their mean: the shared
    value moves by the cluster's mean gradient step (Deep Compression sums the
    gradients of a cluster; the mean is the same direction with a smaller step)."""

    def __init__(self, clusters):
        # [(weight, nonzero mask, cluster index per nonzero, cluster sizes)]: the sizes never change
        self.clusters = [(w, nz, idx, torch.bincount(idx, minlength=k).clamp(min=1).to(w.dtype))
                         for w, nz, idx, k in clusters]

    @torch.no_grad()
    def after_step(self, state):
        for w, nz, idx, sizes in self.clusters:
            v = w[nz]
            w[nz] = (v.new_zeros(len(sizes)).index_add_(0, idx, v) / sizes)[idx]


def deep_compression_sizes(model, index_bits_conv: int = 8, index_bits_fc: int = 5) -> dict:
    """Deep Compression's storage: per layer, the non-zero weights' cluster indices
    and the relative positions (padding entries for long gaps), each Huffman-coded,
    plus a 32-bit codebook; also the size before Huffman coding."""
    payload = raw = 0.0
    n = 0
    for w in prunable(model).values():
        ib = index_bits_conv if w.dim() == 4 else index_bits_fc
        flat = w.detach().flatten()
        nz = flat != 0
        _, idx = torch.unique(flat[nz], return_inverse=True)
        k = max(int(idx.max()) + 1 if idx.numel() else 1, 1)
        vbits = max(math.ceil(math.log2(k)), 1)
        symbols = relative_index_symbols(nz, ib)
        n_entries = symbols.numel()
        raw += n_entries * (vbits + ib) + 32 * k
        payload += huffman_bits(idx) + huffman_bits(symbols) + vbits * (n_entries - int(nz.sum())) + 32 * k
        n += flat.numel()
    return {"weights": n, "payload_bits": payload, "bits_before_huffman": raw, "bits_per_weight": payload / max(n, 1),
            "compression_payload": compression(n, payload), "compression_before_huffman": compression(n, raw)}


class DeepCompression(Method):
    """Han et al. 2016's pipeline after pruning: the parent is a pruned model (e.g. a
    magnitude run); each layer's non-zero weights are shared among 2^bits values
    (k-means, linear init; `conv_bits` / `fc_bits`), the shared values are fine-tuned
    for `epochs` with the pruning mask fixed, and the size is counted with Huffman
    coding of the indices and of the relative positions."""

    name = "deep_compression"
    needs_parent = True
    defaults = ARGS["deep_compression"]

    def validate(self, cfg: RunConfig) -> None:
        super().validate(cfg)
        a = {**self.defaults, **cfg.args}
        for k in ("conv_bits", "fc_bits"):
            if not (isinstance(a[k], int) and 1 <= a[k] <= 16):
                raise ConfigError(f"{k} must be an integer from 1 to 16, got {a[k]!r}")

    def run(self, ctx) -> Result:
        a = {**self.defaults, **ctx.cfg.args}
        model = ctx.parent_model()
        clusters, masks = [], {}
        with torch.no_grad():
            for w in prunable(model).values():
                bits = a["conv_bits"] if w.dim() == 4 else a["fc_bits"]
                shared, cents, idx = share_weights(w.detach(), bits)
                w.copy_(shared)
                nz = shared != 0
                clusters.append((w, nz, idx, len(cents)))
                masks[w] = nz.to(w.dtype)
        history = ctx.fit(model, masks=masks, callbacks=[_Project(clusters)]) if ctx.cfg.epochs > 0 else []
        return Result(model, history, {"quant": deep_compression_sizes(model)})


register(UniformQuant())
register(DeepCompression())

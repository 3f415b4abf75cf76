"""What a compressed model costs: parameters, non-zeros, FLOPs, bytes, latency.

Conventions (the same as Han et al. 2015 and SparseVD, whose tables we compare with):
- *prunable* tensors are the weights of Linear and Conv2d layers; biases are
  never pruned and are NOT counted in the compression ratio;
- compression ratio = prunable weights / non-zero prunable weights;
- totals "with biases" are reported next to it for readers who count those;
- FLOPs are multiply-accumulates of Linear/Conv2d for one input sample; the
  effective count scales each layer by its weight density (masked zeros do
  no useful work), as ShrinkBench does. Dense FLOP counters ignore masks.
"""
from __future__ import annotations

import statistics
import time

import torch
from torch import nn


def prunable(model: nn.Module) -> dict:
    """name -> weight tensor of every Linear / Conv2d layer, in forward order."""
    return {name: m.weight for name, m in model.named_modules()
            if isinstance(m, (nn.Linear, nn.Conv2d))}


def layer_stats(model: nn.Module) -> dict:
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            w = m.weight.detach()
            b = m.bias.detach() if m.bias is not None else None
            out[name] = {
                "kind": "conv" if isinstance(m, nn.Conv2d) else "fc",
                "weights": w.numel(),
                "nonzero": int((w != 0).sum()),
                "biases": b.numel() if b is not None else 0,
                "nonzero_biases": int((b != 0).sum()) if b is not None else 0,
            }
            out[name]["remaining"] = out[name]["nonzero"] / max(out[name]["weights"], 1)
    return out


def macs_per_layer(model: nn.Module, input_shape=None, example: torch.Tensor | None = None) -> dict:
    """Dense multiply-accumulates of each Linear/Conv2d layer for one sample
    (summed over calls, so a layer applied at every step of a recurrence counts every step).
    The sample is zeros of `input_shape`, or `example` (a batch of one, e.g. token ids)."""
    macs, handles = {}, []

    def hook(name):
        def fn(m, inp, out):
            if isinstance(m, nn.Conv2d):
                per_out = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
                macs[name] = macs.get(name, 0) + out[0].numel() * per_out
            else:
                # 1 row, or the steps of a sequence; a layer with no inputs (an exported factorization that
                # kept no component) costs nothing
                rows = inp[0][0].numel() // m.in_features if m.in_features else 0
                macs[name] = macs.get(name, 0) + rows * m.in_features * m.out_features
        return fn

    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            handles.append(m.register_forward_hook(hook(name)))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            p = next(model.parameters())
            if example is None:
                example = torch.zeros((1, *input_shape), dtype=p.dtype)
            model(example.to(p.device))
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return macs


def sparse_bytes(weights: int, nonzero: int, rows: int, value_bits: int = 32, index_bits: int = 32) -> int:
    """Bytes to store a layer in CSR form: values + column indices + row pointers."""
    return (nonzero * (value_bits + index_bits) + (rows + 1) * index_bits) // 8


def summarize(model: nn.Module, input_shape=None, example: torch.Tensor | None = None) -> dict:
    """All size metrics of a (possibly masked) model, per layer and in total
    (MACs for one sample: zeros of `input_shape`, or `example`)."""
    layers = layer_stats(model)
    macs = macs_per_layer(model, input_shape, example)
    mods = dict(model.named_modules())
    total_w = sum(l["weights"] for l in layers.values())
    total_nz = sum(l["nonzero"] for l in layers.values())
    total_b = sum(l["biases"] for l in layers.values())
    dense_flops = eff_flops = 0
    dense_bytes = sparse_b = 0
    for name, l in layers.items():
        l["dense_macs"] = macs.get(name, 0)
        l["effective_macs"] = round(l["dense_macs"] * l["remaining"])
        dense_flops += l["dense_macs"]
        eff_flops += l["effective_macs"]
        rows = mods[name].weight.shape[0]
        l["dense_bytes"] = 4 * (l["weights"] + l["biases"])
        l["sparse_bytes"] = sparse_bytes(l["weights"], l["nonzero"], rows) + 4 * l["biases"]
        dense_bytes += l["dense_bytes"]
        sparse_b += l["sparse_bytes"]
    return {
        "layers": layers,
        "weights": total_w,
        "nonzero": total_nz,
        "remaining": total_nz / max(total_w, 1),
        "compression": total_w / max(total_nz, 1),
        "params_with_biases": total_w + total_b,
        "nonzero_with_biases": total_nz + sum(l["nonzero_biases"] for l in layers.values()),
        "dense_macs": dense_flops,
        "effective_macs": eff_flops,
        "theoretical_speedup": dense_flops / max(eff_flops, 1),
        "dense_bytes": dense_bytes,
        "sparse_bytes": sparse_b,
        "counting": "compression counts Linear/Conv2d weights only (biases excluded), as Han et al. 2015",
    }


def latency(fn, *, warmup: int = 3, repeats: int = 20) -> dict:
    """Median and spread of fn()'s wall time in seconds. Compare ratios from one
    process, never absolute times across machines or sessions."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return {"median_s": statistics.median(times), "min_s": min(times),
            "max_s": max(times), "repeats": repeats}


@torch.no_grad()
def activation_stats(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> dict:
    """Per Linear/Conv2d layer, over the samples in `x`: how sparse its input is
    and how many multiply-accumulates remain once zeros are skipped.

    For each layer (in forward order):
    - `zero_input_frac`: fraction of the layer's input entries that are exactly 0
      (after a ReLU these are the post-ReLU zeros; for the first layer, zero pixels);
    - `macs_dense`, `macs_weight_sparse` (non-zero weights only) and
      `macs_weight_and_activation`: the MACs in which both the weight and the input
      entry are non-zero, counted exactly (for a convolution, by convolving the
      0/1 indicator of the input with the 0/1 indicator of the kernel), per sample;
    - `dead_rows`: output neurons / filters whose weights are all zero (their output
      is a constant, the bias), and `dead_rows_positive_bias`: those whose constant is
      positive, so that a following ReLU passes it on (a non-zero, input-independent value);
    - `never_active_inputs`: input units (features or channels) that are zero for every sample.
    """
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    acc = {n: {"zeros": 0, "entries": 0, "dense": 0.0, "wsparse": 0.0, "both": 0.0, "active": None}
           for n, _ in layers}

    def hook(name):
        def fn(m, inp, out):
            a = inp[0]
            nz = (a != 0).to(a.dtype)
            wnz = (m.weight != 0).to(a.dtype)
            s = acc[name]
            s["zeros"] += int((a == 0).sum())
            s["entries"] += a.numel()
            if isinstance(m, nn.Conv2d):
                both = nn.functional.conv2d(nz, wnz, None, m.stride, m.padding, m.dilation, m.groups)
                per_out = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
                positions = out[0, 0].numel()
                s["dense"] += a.shape[0] * positions * m.out_channels * per_out
                s["wsparse"] += a.shape[0] * positions * float(wnz.sum())
                active = nz.sum(dim=(0, 2, 3))
            else:
                both = nz.reshape(-1, nz.shape[-1]) @ wnz.t()
                s["dense"] += a.shape[0] * m.in_features * m.out_features
                s["wsparse"] += a.shape[0] * float(wnz.sum())
                active = nz.reshape(-1, nz.shape[-1]).sum(0)
            s["both"] += float(both.sum())
            s["active"] = active if s["active"] is None else s["active"] + active
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in layers]
    was = model.training
    model.eval()
    try:
        p = next(model.parameters())
        for i in range(0, len(x), batch_size):
            model(x[i:i + batch_size].to(p.device, p.dtype))
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    n = len(x)
    out = {}
    for name, m in layers:
        s = acc[name]
        rows = m.weight.reshape(m.weight.shape[0], -1)
        dead = (rows == 0).all(dim=1)
        out[name] = {
            "kind": "conv" if isinstance(m, nn.Conv2d) else "fc",
            "zero_input_frac": s["zeros"] / max(s["entries"], 1),
            "macs_dense": s["dense"] / n, "macs_weight_sparse": s["wsparse"] / n,
            "macs_weight_and_activation": s["both"] / n,
            "dead_rows": int(dead.sum()), "rows": rows.shape[0],
            "dead_rows_positive_bias": int((dead & (m.bias > 0)).sum()) if m.bias is not None else 0,
            "never_active_inputs": int((s["active"] == 0).sum()), "inputs": int(s["active"].numel()),
        }
    tot = {k: sum(v[k] for v in out.values()) for k in ("macs_dense", "macs_weight_sparse", "macs_weight_and_activation")}
    out["model"] = tot
    return out

"""CPU time of FLOP's models: exported (physically smaller) inference against the dense model and against
unstructured sparse matrices (CSR) of the same sparsity, and the cost of a FLOP training step (FLOP
notebook 08 and `make bench`).

Only shapes matter for time, so every variant is built with fresh random weights at the sizes a run
reached: `with_ranks` gives a model the structure FLOP's export gives it (each gated nn.Linear becomes a
pair q: d_in -> r', p: r' -> d_out, through `flop.restore_exported`, the code that loads an exported
model); `csr_copy` stores each chosen nn.Linear's weight as a torch.sparse CSR matrix holding the largest
(1 - s) of its entries (magnitude pruning of that layer to sparsity s) and multiplies with
torch.sparse.mm. Times are medians of round-robin repeats after a warm-up, so that every variant sees
the same machine load, and are compared as ratios measured in one process.
"""
from __future__ import annotations

import copy
import statistics
import time
import warnings
import torch
from torch import nn

from ..errors import ConfigError
from .flop import restore_exported
from .flop_gates import LagrangianBudget, factorize, flop_parameters, is_low_rank, selectable


def _shape(module: nn.Module) -> tuple:
    """(d_in, d_out, largest rank) of an nn.Linear or a low-rank pair (whose rank is its inner width)."""
    if is_low_rank(module):
        return module.q.in_features, module.p.out_features, module.q.out_features
    return module.in_features, module.out_features, min(module.in_features, module.out_features)


def matrix_weights(module: nn.Module) -> int:
    """Weights of an nn.Linear's matrix, or of both matrices of a low-rank pair."""
    if is_low_rank(module):
        return module.q.weight.numel() + module.p.weight.numel()
    return module.weight.numel()


def with_ranks(model: nn.Module, kept_rank: dict, generator: torch.Generator | None = None) -> nn.Module:
    """A copy of `model` in which each nn.Linear named in `kept_rank` has FLOP's exported structure at that
    rank (random weights of the layer's scale; the bias kept)."""
    modules = dict(model.named_modules())
    units = selectable(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for name, r in kept_rank.items():
        lin = modules.get(name)
        if name not in units:
            raise ConfigError(f"kept_rank names {name!r}, not an nn.Linear or low-rank pair of the model; valid: "
                              + ", ".join(units))
        d_in, d_out, full = _shape(lin)
        if isinstance(r, bool) or not isinstance(r, int) or not 0 <= r <= full:
            raise ConfigError(f"kept rank of {name} must be an integer in [0, {full}], got {r!r}")
        for key in (f"{name}.weight", f"{name}.q.weight", f"{name}.p.weight"):
            state.pop(key, None)
        bias = state.pop(f"{name}.bias", None)
        bias = state.pop(f"{name}.p.bias", bias)
        state[f"{name}.q.weight"] = torch.randn(r, d_in, generator=generator) * d_in ** -0.5
        state[f"{name}.p.weight"] = torch.randn(d_out, r, generator=generator) * max(r, 1) ** -0.5
        if bias is not None:
            state[f"{name}.p.bias"] = bias
    return restore_exported(copy.deepcopy(model), state)


class CSRLinear(nn.Module):
    """y = x W^T + b with W stored as a torch.sparse CSR matrix (inference only)."""

    def __init__(self, linear: nn.Linear, sparsity: float):
        super().__init__()
        if not 0 <= sparsity < 1:
            raise ConfigError(f"sparsity must be in [0, 1), got {sparsity!r}")
        w = linear.weight.detach()
        keep = max(1, round((1 - sparsity) * w.numel()))
        threshold = w.abs().flatten().kthvalue(w.numel() - keep + 1).values
        self.in_features, self.out_features = linear.in_features, linear.out_features
        with warnings.catch_warnings():    # torch calls its CSR support "beta" on every conversion
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            self.weight = (w * (w.abs() >= threshold)).to_sparse_csr()
        self.bias = None if linear.bias is None else linear.bias.detach().clone()

    def nonzero(self) -> int:
        return int(self.weight.values().numel())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        y = torch.sparse.mm(self.weight, flat.t()).t()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)


def csr_copy(model: nn.Module, sparsity: float, names) -> nn.Module:
    """A copy of `model` whose nn.Linear layers `names` are CSRLinear at `sparsity` each (both matrices of a
    low-rank pair, as unstructured pruning of the official factorized model prunes them)."""
    out = copy.deepcopy(model)
    for name in names:
        lin = out.get_submodule(name)
        if is_low_rank(lin):
            lin.q, lin.p = CSRLinear(lin.q, sparsity), CSRLinear(lin.p, sparsity)
            continue
        if not isinstance(lin, nn.Linear):
            raise ConfigError(f"{name!r} is not an nn.Linear or low-rank pair of the model")
        owner, _, attr = name.rpartition(".")
        setattr(out.get_submodule(owner) if owner else out, attr, CSRLinear(lin, sparsity))
    return out


def csr_nonzero(model: nn.Module, names) -> int:
    """Stored non-zeros of csr_copy's layers `names`."""
    total = 0
    for name in names:
        m = model.get_submodule(name)
        total += m.nonzero() if isinstance(m, CSRLinear) else m.q.nonzero() + m.p.nonzero()
    return total


def round_robin(calls: dict, repeats: int = 25, warmup: int = 5) -> dict:
    """Median milliseconds of each zero-argument callable in `calls`, timed in turn (every repeat calls each
    once), after `warmup` untimed rounds."""
    if repeats < 1 or warmup < 0:
        raise ConfigError(f"repeats must be >= 1 and warmup >= 0, got {repeats!r} and {warmup!r}")
    times = {name: [] for name in calls}
    for r in range(warmup + repeats):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            if r >= warmup:
                times[name].append(1000 * (time.perf_counter() - start))
    return {name: statistics.median(v) for name, v in times.items()}


def forward_calls(variants: dict, tokens: torch.Tensor) -> dict:
    """name -> a callable running one inference forward of that variant on `tokens` (no autograd)."""
    def call(model):
        def run():
            with torch.inference_mode():
                model(tokens)
        return run
    for m in variants.values():
        m.eval()
    return {name: call(m) for name, m in variants.items()}


def step_calls(model: nn.Module, tokens: torch.Tensor, targets: torch.Tensor, layers=None, target: float = 0.5,
               lr: float = 2e-3, gate_lr: float = 0.05, lambda_lr: float = 0.1) -> dict:
    """Training-step callables on one batch (forward, cross-entropy, backward, Adam, clip 0.25):
    "dense" (the model as it is), "dense factorized" (full-rank SVD factors, gates off: z = 1) and
    "FLOP" (sampled gates, the Lagrangian term, the gates' and the multipliers' own Adam)."""
    def lm_loss(m):
        logits, _ = m(tokens)
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    def plain(m):
        opt = torch.optim.Adam(m.parameters(), lr=lr)

        def run():
            opt.zero_grad(set_to_none=True)
            lm_loss(m).backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 0.25)
            opt.step()
        return run

    dense = copy.deepcopy(model).train()
    fact = factorize(copy.deepcopy(model), layers).train()
    for m in fact.modules():
        if hasattr(m, "use_gates"):
            m.use_gates = False
    flop = factorize(copy.deepcopy(model), layers).train()
    parts = flop_parameters(flop)
    budget = LagrangianBudget(target, warmup_steps=0)
    opts = [torch.optim.Adam(parts["model"], lr=lr), torch.optim.Adam(parts["gates"], lr=gate_lr),
            budget.optimizer(lambda_lr)]

    def flop_step():
        for o in opts:
            o.zero_grad(set_to_none=True)
        (lm_loss(flop) + budget.penalty(flop, 0)).backward()
        torch.nn.utils.clip_grad_norm_(parts["model"], 0.25)
        for o in opts:
            o.step()

    return {"dense": plain(dense), "dense factorized": plain(fact), "FLOP": flop_step}


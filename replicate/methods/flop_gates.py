"""FLOP's building blocks: hard-concrete gates, factorized gated linear layers, the Lagrangian budget.

Wang, Wohlwend & Lei, "Structured pruning of large language models" (FLOP), EMNLP 2020. Each weight matrix W (d_out x d_in) is written as W = P diag(z) Q,
P: d_out x r, Q: r x d_in, so W = sum_k z_k p_k q_k^T; every rank-1 component has a gate z_k drawn
from Louizos, Welling & Kingma's hard-concrete distribution (ICLR 2018). Closing gate k removes
d_in + d_out weights, so a layer's expected size is (d_in + d_out) * E[L0]. Instead of a fixed L0
coefficient, a Lagrangian term drives the expected sparsity to a target.

Hard concrete. Gate j has one parameter log_alpha_j:
    u ~ U(eps, 1 - eps),   s = sigmoid((log u - log(1 - u) + log_alpha_j) / beta),
    z_j = min(1, max(0, s (r - l) + l)),   l < 0 < 1 < r,
    P(z_j != 0) = sigmoid(log_alpha_j - beta log(-l / r)),   E[L0] = sum_j P(z_j != 0).
The sample is reparameterised (gradients reach log_alpha through s); the clamp makes exact 0s and 1s.

Choices, each an option; the default is named first:
  beta        2/3 (Louizos et al.). The official FLOP code uses 1.0 (its
              `temperature` default, never overridden); the paper's own value could not be read offline.
  stretch     (l, r) = (-0.1, 1.1), as in both codes.
  gate init   log_alpha ~ N(log(1 - init_drop) - log(init_drop), init_std), so sigmoid(log_alpha) =
              1 - init_drop on average. `init_drop` is what the official code calls init_mean: a drop
              rate. Defaults 0.5 and 0.01 (the code's defaults and its enwik8 SRU script: log_alpha mean 0,
              P(z != 0) = 0.83 at beta 2/3, 0.92 at beta 1); its WikiText-103 script uses 0.1, its
              Transformer-XL script 0.05, and the `dev` branch an std of 0.1.
  sampling    "batch": one u per gate per forward, shared by the whole batch (the official code) |
              "example": an independent sample for every input vector (Louizos's per-example option;
              in a sequence model that is one sample per token).
  eval_rule   the deterministic gate in eval mode:
              "flop_topk" ("0.8 top-k with soft values", the official code's rule): zero the
                round(n - E[L0]) gates with the smallest log_alpha; the others keep the soft value
                sigmoid(0.8 log_alpha / beta), in (0, 1). Each layer keeps round(E[L0]) components, so hard
                sparsity follows expected sparsity (the code's checkpoint selection, hard sparsity >
                target - 0.02, relies on it). The default: it is the rule of the code behind the numbers.
              "louizos_clamp" (Louizos et al.'s test-time gate): min(1, max(0, sigmoid(log_alpha) (r - l) + l)).
  layer init  "svd": from a trained nn.Linear, W = U S V^T, P = U S^1/2, Q = S^1/2 V^T (the `dev` branch);
              exact at full rank r = min(d_in, d_out), the truncated SVD below it |
              "random": factorized from scratch (the official LM scripts), P and Q initialised as two
              stacked nn.Linear layers would be; the default rank d_in d_out / (d_in + d_out) keeps the
              parameter count.
  sparsity    s_hat = 1 - (expected kept weights) / total over the factorized layers, total being
              "dense": their dense size sum(d_in d_out) (our default, the honest count; negative while
                the factorized layers are bigger than the dense ones: full-rank SVD of a square matrix
                doubles it) |
              "factorized": their factorized size sum((d_in + d_out) r) (the official code's N_prunable).
Counts are of weight matrices only: biases are never gated and count in neither total.

Lagrangian: loss + lambda1 (s_hat - t) + lambda2 (s_hat - t)^2, with lambda1 = lambda2 = 0 at
the start and t raised linearly from 0 to the target over `warmup_steps`. The model's optimizer minimises;
the multipliers get their own optimizer, which maximises (torch's maximize=True: the official code set a
negative learning rate, which current torch refuses). d/d lambda2 = (s_hat - t)^2 >= 0: lambda2 only grows.

Baseline structure (the paper's "L0 without factorization"): `ColumnGatedLinear`, y = W (z * x) + b with
one gate per input column of the dense layer; it exports to a column selection and a narrower nn.Linear,
and counts d_out weights per kept column. `factorize(..., structure="columns")` installs it instead.

Adaptive clusters (`factorize(..., clusters=True)`, the official WikiText-103 scheme): in a model with an
adaptive embedding (models.language.AdaptiveEmbedding) or PyTorch's adaptive softmax, each cluster's
width gets one gate per dimension (`WidthGated`), on the output of the cluster's table (embedding) or of
its tail's first projection (softmax); closing dimension j removes column j of the table (|V_i| weights,
or the projection's row, d_in) and column j of the layer that reads it (the embedding's up-projection or
the tail's output layer, d_out): |V_i| + d_out (or d_in + d_out) weights per dimension, so the tables are
pruned too. Those layers are then not factorized; every other nn.Linear is. The official model ties the
embedding and the softmax and shares their masks; our word model is untied, so each side has its gates.

Not here: the code's index_select training shortcut, and log_alpha clamping
(Louizos clamps to [log 1e-2, log 1e2]; FLOP does not).
"""
from __future__ import annotations

import copy
import math
import warnings
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, check_choice

BETA = 2 / 3               # Louizos et al.'s temperature; the official FLOP code uses 1.0
STRETCH = (-0.1, 1.1)      # (l, r): the stretched interval, the same in both codes
EPS = 1e-6                 # u ~ U(EPS, 1 - EPS) keeps log u and log(1 - u) finite
INIT_DROP = 0.5            # the code's init_mean (a drop rate): log_alpha mean log(1 - p) - log(p) = 0
INIT_STD = 0.01            # spread of the initial log_alpha
FLOP_SOFT_SCALE = 0.8      # the official eval rule's factor in sigmoid(0.8 log_alpha / beta)
EVAL_RULES = ("flop_topk", "louizos_clamp")
SAMPLINGS = ("batch", "example")
INITS = ("svd", "random")
STRUCTURES = ("factorized", "columns")
SPARSITY_TOTALS = ("dense", "factorized")
SPARSITY_LABELS = {   # what a table or an axis should say for each denominator
    "dense": "sparsity vs the gated layers' dense size",
    "factorized": "sparsity vs the gated layers' factorized size (official code)",
}


class HardConcrete(nn.Module):
    """n hard-concrete gates. In training, forward() returns a reparameterised sample (n,) or
    (*batch_shape, n) by `sampling`; in eval mode, the deterministic mask of `eval_rule`."""

    def __init__(self, n: int, *, beta: float = BETA, stretch=STRETCH, init_drop: float = INIT_DROP,
                 init_std: float = INIT_STD, eval_rule: str = "flop_topk", sampling: str = "batch"):
        super().__init__()
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"a HardConcrete needs an integer number of gates n >= 1, got {n!r}")
        try:
            l, r = (float(v) for v in stretch)
        except (TypeError, ValueError):
            raise ConfigError(f"stretch must be a pair (l, r) with l < 0 and r > 1, e.g. (-0.1, 1.1); got {stretch!r}")
        if not (l < 0 and r > 1 and math.isfinite(l) and math.isfinite(r)):
            raise ConfigError(f"stretch needs l < 0 and r > 1 (finite), e.g. (-0.1, 1.1); got l={l}, r={r}")
        if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta > 0):
            raise ConfigError(f"beta (temperature) must be a finite number > 0 (2/3 Louizos, 1.0 the FLOP code); got {beta!r}")
        check_choice("evaluation rule", eval_rule, EVAL_RULES)
        check_choice("gate sampling", sampling, SAMPLINGS)
        self.n, self.beta, self.l, self.r = n, float(beta), l, r
        self.eval_rule, self.sampling = eval_rule, sampling
        self.log_alpha = nn.Parameter(torch.empty(n))
        self.reset_parameters(init_drop, init_std)

    @torch.no_grad()
    def reset_parameters(self, init_drop: float = INIT_DROP, init_std: float = INIT_STD, generator=None) -> None:
        """log_alpha ~ N(log(1 - init_drop) - log(init_drop), init_std)."""
        if not (isinstance(init_drop, (int, float)) and 0 < init_drop < 1):
            raise ConfigError(f"init_drop must be in (0, 1) (a drop rate; 0.5 gives log_alpha mean 0); got {init_drop!r}")
        if not (isinstance(init_std, (int, float)) and math.isfinite(init_std) and init_std >= 0):
            raise ConfigError(f"init_std must be a finite number >= 0; got {init_std!r}")
        self.log_alpha.normal_(math.log(1 - init_drop) - math.log(init_drop), init_std, generator=generator)

    def prob_nonzero(self) -> torch.Tensor:
        """P(z_j != 0) per gate, in closed form (differentiable in log_alpha)."""
        return torch.sigmoid(self.log_alpha - self.beta * math.log(-self.l / self.r))

    def prob_one(self) -> torch.Tensor:
        """P(z_j = 1) per gate: the stretched s reaches 1 when s >= (1 - l) / (r - l)."""
        return torch.sigmoid(self.log_alpha - self.beta * math.log((1 - self.l) / (self.r - 1)))

    def expected_l0(self) -> torch.Tensor:
        """E[number of non-zero gates] = sum_j P(z_j != 0), a differentiable scalar."""
        return self.prob_nonzero().sum()

    def sample(self, shape=(), generator=None) -> torch.Tensor:
        """A reparameterised sample of shape (*shape, n): shape () gives one sample shared by a batch,
        shape (B,) one per example."""
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        la = self.log_alpha
        u = torch.rand(*shape, self.n, generator=generator, device=la.device, dtype=la.dtype)
        u = u * (1 - 2 * EPS) + EPS
        s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + la) / self.beta)
        return (s * (self.r - self.l) + self.l).clamp(0.0, 1.0)

    @torch.no_grad()
    def eval_mask(self) -> torch.Tensor:
        """The deterministic gate values (n,) of `eval_rule` (see the module docstring)."""
        la = self.log_alpha.detach()
        if self.eval_rule == "louizos_clamp":
            return (torch.sigmoid(la) * (self.r - self.l) + self.l).clamp(0.0, 1.0)
        n_zero = min(self.n, max(0, round(self.n - float(self.expected_l0()))))
        soft = torch.sigmoid(FLOP_SOFT_SCALE * la / self.beta)
        if n_zero:
            soft[torch.topk(la, n_zero, largest=False).indices] = 0.0
        return soft

    def forward(self, batch_shape=()) -> torch.Tensor:
        if not self.training:
            return self.eval_mask()
        return self.sample(batch_shape if self.sampling == "example" else ())

    def extra_repr(self) -> str:
        return (f"n={self.n}, beta={self.beta:.4g}, stretch=({self.l}, {self.r}), "
                f"eval_rule={self.eval_rule}, sampling={self.sampling}")


def parameter_preserving_rank(in_features: int, out_features: int) -> int:
    """The rank at which P and Q hold as many weights as the dense matrix (the Transformer-XL script's default)."""
    return max(1, in_features * out_features // (in_features + out_features))


def _linear(weight: torch.Tensor, bias) -> nn.Linear:
    """A plain nn.Linear holding copies of `weight` (out x in) and `bias`."""
    with warnings.catch_warnings():   # a layer whose gates are all closed has a zero-element weight
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
        out = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        out.weight.copy_(weight)
        if bias is not None:
            out.bias.copy_(bias)
    return out


class FactorizedLinear(nn.Module):
    """y = P diag(z) Q x + b, with z from a HardConcrete over the rank dimension.

    `gate_options` go to HardConcrete (beta, stretch, init_drop, init_std, eval_rule, sampling).
    A new layer is initialised at random (the "random" init); use from_linear() to start from a trained layer.
    """

    def __init__(self, in_features: int, out_features: int, rank: int | None = None, bias: bool = True,
                 **gate_options):
        super().__init__()
        rank = parameter_preserving_rank(in_features, out_features) if rank is None else rank
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ConfigError(f"rank must be an integer >= 1 (or None for d_in d_out / (d_in + d_out)); got {rank!r}")
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.p = nn.Parameter(torch.empty(out_features, rank))    # the output side, d_out x r
        self.q = nn.Parameter(torch.empty(rank, in_features))     # the input side, r x d_in
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.gates = HardConcrete(rank, **gate_options)
        self.use_gates = True          # False: z is the fixed `keep` mask alone (structured magnitude pruning)
        self.register_buffer("keep", torch.ones(rank))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """P and Q as two stacked nn.Linear layers (in -> r -> out) initialise them; the bias as nn.Linear does."""
        nn.init.kaiming_uniform_(self.q, a=math.sqrt(5))
        nn.init.kaiming_uniform_(self.p, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features else 0.0
            self.bias.uniform_(-bound, bound)

    @classmethod
    @torch.no_grad()
    def from_linear(cls, linear: nn.Linear, init: str = "svd", rank: int | None = None,
                    **gate_options) -> "FactorizedLinear":
        """A factorized twin of `linear` (same device, dtype and bias). init "svd": P = U S^1/2,
        Q = S^1/2 V^T from the top `rank` singular triplets (default all: the output is the dense
        layer's when every gate is 1); init "random": fresh P and Q, the trained weight is dropped."""
        check_choice("factorization init", init, INITS)
        if not isinstance(linear, nn.Linear):
            raise ConfigError(f"from_linear needs an nn.Linear, got {type(linear).__name__}")
        d_in, d_out = linear.in_features, linear.out_features
        full = min(d_in, d_out)
        if init == "svd":
            rank = full if rank is None else rank
            if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= full:
                raise ConfigError(f"an SVD factorization needs an integer rank in [1, min(d_in, d_out) = {full}]; got {rank!r}")
        w = linear.weight
        layer = cls(d_in, d_out, rank, bias=linear.bias is not None, **gate_options).to(device=w.device, dtype=w.dtype)
        if init == "svd":
            u, s, vh = torch.linalg.svd(w.detach().double(), full_matrices=False)   # float64: exact to float32 tolerance
            root = s[:rank].sqrt()
            layer.p.copy_(u[:, :rank] * root)
            layer.q.copy_(root[:, None] * vh[:rank])
        if linear.bias is not None:
            layer.bias.copy_(linear.bias)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.gates(x.shape[:-1]) * self.keep if self.use_gates else self.keep   # (r,) or per example
        return F.linear(F.linear(x, self.q) * z, self.p, self.bias)

    def mask(self) -> torch.Tensor:
        """The evaluation-mode z: the gates' deterministic mask (when used) times the fixed keep mask."""
        return self.gates.eval_mask() * self.keep if self.use_gates else self.keep.clone()

    def component_norms(self) -> torch.Tensor:
        """||P[:, k]|| ||Q[k, :]|| per component: the singular values right after an SVD init."""
        return self.p.detach().norm(dim=0) * self.q.detach().norm(dim=1)

    @classmethod
    @torch.no_grad()
    def from_low_rank(cls, pair: nn.Module, init: str = "svd", **gate_options) -> "FactorizedLinear":
        """A gated twin of a low-rank pair (a module with `low_rank = True` and nn.Linear children q: d_in -> r,
        p: r -> d_out, such as models.language.LowRankLinear, the official code's ProjectedLinear): the gates sit
        on its inner dimension. init "svd" (any trained start): P and Q are the pair's own factors, as trained;
        "random": fresh ones. Its dense size is its own (d_in + d_out) r: the model has no larger dense form."""
        check_choice("factorization init", init, INITS)
        q, p = pair.q, pair.p
        layer = cls(q.in_features, p.out_features, q.out_features, bias=p.bias is not None,
                    **gate_options).to(device=q.weight.device, dtype=q.weight.dtype)
        if init == "svd":
            layer.q.copy_(q.weight)
            layer.p.copy_(p.weight)
        if p.bias is not None:
            layer.bias.copy_(p.bias)
        layer.dense_size = layer.factorized_parameters()
        return layer

    dense_size = None      # set for a layer made from a low-rank pair (its dense form is the pair itself)

    # Parameter counts: weight matrices only (the bias is never gated).
    def dense_parameters(self) -> int:
        """Weights of the dense layer this one stands for: d_in d_out (a low-rank pair's own size)."""
        return self.dense_size if self.dense_size is not None else self.in_features * self.out_features

    def factorized_parameters(self) -> int:
        """Weights of P and Q: (d_in + d_out) r."""
        return (self.in_features + self.out_features) * self.rank

    def expected_parameters(self) -> torch.Tensor:
        """(d_in + d_out) E[L0], differentiable in log_alpha: what the Lagrangian sees."""
        if not self.use_gates:
            return (self.in_features + self.out_features) * self.keep.sum()
        return (self.in_features + self.out_features) * (self.gates.prob_nonzero() * self.keep).sum()

    def kept_rank(self) -> int:
        """Components whose gate is non-zero under the evaluation mask."""
        return int(torch.count_nonzero(self.mask()))

    def kept_parameters(self) -> int:
        """(d_in + d_out) times the kept rank: the weights export() keeps as a pair of layers."""
        return (self.in_features + self.out_features) * self.kept_rank()

    @torch.no_grad()
    def export(self, merged: bool = False) -> nn.Module:
        """A plain module with the closed components physically removed and the evaluation mask folded
        into P, giving this layer's eval-mode output. merged=False: nn.Sequential(q: d_in -> r', p: r' -> d_out
        with the bias), (d_in + d_out) r' weights; merged=True: one nn.Linear with W = P' Q' (d_in d_out weights,
        smaller only when r' < d_in d_out / (d_in + d_out))."""
        mask = self.mask()
        keep = mask.nonzero().flatten()
        p = self.p[:, keep] * mask[keep]
        q = self.q[keep]
        bias = None if self.bias is None else self.bias.detach()
        if merged:
            return _linear(p @ q, bias)
        return nn.Sequential(OrderedDict(q=_linear(q, None), p=_linear(p, bias)))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, bias={self.bias is not None}"


class ColumnSelect(nn.Module):
    """x[..., index]: the kept input columns of an exported column-gated layer."""

    def __init__(self, index: torch.Tensor):
        super().__init__()
        self.register_buffer("index", index.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(-1, self.index)


class ColumnGatedLinear(nn.Module):
    """y = W (z * x) + b with z from a HardConcrete over the input columns: L0 pruning of a dense layer's
    inputs without factorization (the FLOP paper's baseline). Same counting interface as FactorizedLinear:
    its "rank" is the number of input columns, each kept column costs d_out weights."""

    def __init__(self, linear: nn.Linear, **gate_options):
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise ConfigError(f"ColumnGatedLinear needs an nn.Linear, got {type(linear).__name__}")
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.rank = linear.in_features
        self.weight = nn.Parameter(linear.weight.detach().clone())
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())
        self.gates = HardConcrete(linear.in_features, **gate_options).to(linear.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x * self.gates(x.shape[:-1]), self.weight, self.bias)

    def dense_parameters(self) -> int:
        return self.in_features * self.out_features

    def factorized_parameters(self) -> int:
        """No factorization: the dense size."""
        return self.dense_parameters()

    def expected_parameters(self) -> torch.Tensor:
        return self.out_features * self.gates.expected_l0()

    def kept_rank(self) -> int:
        return int(torch.count_nonzero(self.gates.eval_mask()))

    def kept_parameters(self) -> int:
        return self.out_features * self.kept_rank()

    @torch.no_grad()
    def export(self, merged: bool = False) -> nn.Module:
        """nn.Sequential(select: the kept columns, linear: d_out x kept, the mask folded into W)."""
        mask = self.gates.eval_mask()
        keep = mask.nonzero().flatten()
        bias = None if self.bias is None else self.bias.detach()
        return nn.Sequential(OrderedDict(select=ColumnSelect(keep), linear=_linear(self.weight[:, keep] * mask[keep], bias)))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class WidthGated(nn.Module):
    """One adaptive cluster's width gated (module docstring, "Adaptive clusters"): y = first(x) * z, z from a
    HardConcrete over the k dimensions `first` produces (an nn.Embedding: a cluster's table of width k; an
    nn.Linear: an adaptive-softmax tail's projection to its k-wide hidden layer). `partner` is the qualified
    name of the nn.Linear that reads those k dimensions; export_model removes its input columns with this
    layer's closed dimensions. Same counting interface as FactorizedLinear: its "rank" is k, a kept
    dimension costs (|V_i| or d_in) + the partner's d_out weights."""

    def __init__(self, first: nn.Module, partner: str, partner_out: int, **gate_options):
        super().__init__()
        if isinstance(first, nn.Embedding):
            self.in_features, k = first.num_embeddings, first.embedding_dim
        elif isinstance(first, nn.Linear):
            self.in_features, k = first.in_features, first.out_features
        else:
            raise ConfigError(f"WidthGated needs an nn.Embedding or nn.Linear, got {type(first).__name__}")
        self.first, self.partner, self.partner_out = first, partner, int(partner_out)
        self.rank = self.out_features = k
        self.gates = HardConcrete(k, **gate_options).to(first.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.first(x)
        return y * self.gates(y.shape[:-1])

    def dense_parameters(self) -> int:
        return self.rank * (self.in_features + self.partner_out)

    def factorized_parameters(self) -> int:
        """No factorization: the dense size."""
        return self.dense_parameters()

    def expected_parameters(self) -> torch.Tensor:
        return (self.in_features + self.partner_out) * self.gates.expected_l0()

    def kept_index(self) -> torch.Tensor:
        return self.gates.eval_mask().nonzero().flatten()

    def kept_rank(self) -> int:
        return int(torch.count_nonzero(self.gates.eval_mask()))

    def kept_parameters(self) -> int:
        return (self.in_features + self.partner_out) * self.kept_rank()

    @torch.no_grad()
    def export(self, merged: bool = False) -> nn.Module:
        """`first` narrowed to the kept dimensions with the evaluation mask folded in (the partner is narrowed by
        export_model, which knows the model)."""
        mask = self.gates.eval_mask()
        keep = mask.nonzero().flatten()
        w = self.first.weight
        if isinstance(self.first, nn.Embedding):
            with warnings.catch_warnings():   # a cluster whose gates are all closed has a zero-width table
                warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
                out = nn.Embedding(w.shape[0], len(keep), padding_idx=self.first.padding_idx).to(w.device, w.dtype)
            out.weight.copy_(w[:, keep] * mask[keep])
            return out
        bias = None if self.first.bias is None else self.first.bias[keep] * mask[keep]
        return _linear(w[keep] * mask[keep, None], bias)

    def extra_repr(self) -> str:
        return f"width={self.rank}, in={self.in_features}, partner={self.partner!r} (out {self.partner_out})"


GATED = (FactorizedLinear, ColumnGatedLinear, WidthGated)


def cluster_units(model: nn.Module) -> list:
    """(name of the module producing a cluster's width, name of the nn.Linear reading it) for every cluster of
    every adaptive embedding (embeds.i, projs.i: models.language.AdaptiveEmbedding's protocol, two
    ModuleLists of equal length) and adaptive softmax tail (tail.i.0, tail.i.1) in `model`. A softmax tied to
    the embedding (models.language.TiedAdaptiveLogSoftmax) has no units of its own: it reads the embedding's
    tables, projections and gates."""
    out = []
    for n, m in model.named_modules():
        prefix = f"{n}." if n else ""
        embeds, projs = getattr(m, "embeds", None), getattr(m, "projs", None)
        if isinstance(embeds, nn.ModuleList) and isinstance(projs, nn.ModuleList) and len(embeds) == len(projs):
            out += [(f"{prefix}embeds.{i}", f"{prefix}projs.{i}") for i in range(len(m.embeds))]
        elif isinstance(m, nn.AdaptiveLogSoftmaxWithLoss):
            out += [(f"{prefix}tail.{i}.0", f"{prefix}tail.{i}.1") for i in range(len(m.tail))]
    return out


def factorized_layers(model: nn.Module) -> dict:
    """name -> gated layer (FactorizedLinear, or ColumnGatedLinear for the unfactorized baseline), in module order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, GATED)}


def is_low_rank(module: nn.Module) -> bool:
    """A low-rank pair (LowRankLinear's protocol): `low_rank = True` and nn.Linear children q and p."""
    return (getattr(module, "low_rank", False) is True and isinstance(getattr(module, "q", None), nn.Linear)
            and isinstance(getattr(module, "p", None), nn.Linear))


def selectable(model: nn.Module, structure: str = "factorized") -> dict:
    """name -> module that factorize() can gate: the nn.Linear layers and, for structure "factorized", the
    low-rank pairs as units (their q and p are then not listed separately). In module order."""
    pairs = [n for n, m in model.named_modules() if n and is_low_rank(m)] if structure == "factorized" else []
    return {n: m for n, m in model.named_modules() if n and (n in pairs or isinstance(m, nn.Linear)
                                                             and not any(n.startswith(f"{p}.") for p in pairs))}


def matrix_sizes(model: nn.Module, names=None) -> list:
    """Per prunable unit of `model` (selectable(); `names` picks some, in that order): a dict with "matrix",
    "d_in", "d_out", "full_rank" (min(d_in, d_out), or a low-rank pair's inner size), "dense" (d_in d_out; a
    low-rank pair, trained factorized, is its own dense form: (d_in + d_out) r), "factorized" ((d_in + d_out)
    times the full rank: the size the official code's sparsity is computed against) and "low_rank". Works on
    a model built on the meta device (shapes only)."""
    units = selectable(model)
    out = []
    for n in (list(units) if names is None else list(names)):
        u = units[n]
        if is_low_rank(u):
            d_in, d_out, r = u.q.in_features, u.p.out_features, u.q.out_features
            dense = (d_in + d_out) * r
        else:
            d_in, d_out = u.in_features, u.out_features
            r, dense = min(d_in, d_out), d_in * d_out
        out.append({"matrix": n, "d_in": d_in, "d_out": d_out, "full_rank": r, "dense": dense,
                    "factorized": (d_in + d_out) * r, "low_rank": is_low_rank(u)})
    return out


def factorize(model: nn.Module, which=None, *, init: str = "svd", rank: int | None = None, inplace: bool = True,
              structure: str = "factorized", clusters: bool = False, **gate_options) -> nn.Module:
    """Replace selected nn.Linear modules of `model` by FactorizedLinear.from_linear(...).

    which: None -- every module whose type is exactly nn.Linear (subclasses such as MultiheadAttention's
    out_proj, whose owner reads its weight directly, are left alone unless named) and every low-rank pair
    (is_low_rank: gated on its inner dimension, from_low_rank); a name or a list of
    qualified names (as in named_modules()); or a callable (name, module) -> bool over the nn.Linear modules.
    inplace=False works on a deep copy and leaves `model` untouched. structure "columns" installs
    ColumnGatedLinear (gates on the input columns, no factorization; init and rank do not apply).
    clusters=True first gates the width of every adaptive cluster (WidthGated, cluster_units) and leaves
    the layers involved out of `which`. Returns the model.
    """
    check_choice("factorization init", init, INITS)
    check_choice("gate structure", structure, STRUCTURES)
    check_choice("clusters", clusters, (False, True))
    if not inplace:
        model = copy.deepcopy(model)
    taken = set()
    if not clusters and any(getattr(m, "tied_to_embedding", False) for m in model.modules()):
        raise ConfigError("this word model's softmax is tied to its embedding (it reads the tables and projections as "
                          "plain matrices): prune it with clusters=True, the official scheme, which gates the "
                          "clusters' widths and leaves them plain")
    if clusters:
        units = cluster_units(model)
        if not units:
            raise ConfigError("clusters=True needs a model with an adaptive embedding or an adaptive softmax "
                              "(e.g. word-sru); this one has neither")
        for first, partner in units:
            owner_name, _, attr = first.rpartition(".")
            owner = model.get_submodule(owner_name) if owner_name else model
            setattr(owner, attr, WidthGated(model.get_submodule(first), partner,
                                            model.get_submodule(partner).out_features, **gate_options))
            taken |= {first, partner}
    linears = {n: m for n, m in selectable(model, structure).items()
               if n not in taken and not any(n.startswith(f"{t}.") for t in taken)}
    if which is None:
        names = [n for n, m in linears.items() if type(m) is nn.Linear or is_low_rank(m)]
    elif callable(which):
        names = [n for n, m in linears.items() if which(n, m)]
    else:
        names = [which] if isinstance(which, str) else list(which)
        bad = [n for n in names if n not in linears]
        if bad:
            raise ConfigError(f"unknown nn.Linear layer(s) {', '.join(map(repr, bad))}; valid: {', '.join(linears) or 'none'}")
    if not names:
        raise ConfigError(f"factorize() selected no nn.Linear layer; valid names: {', '.join(linears) or 'none'}")
    for name in names:
        owner_name, _, attr = name.rpartition(".")
        owner = model.get_submodule(owner_name) if owner_name else model
        if is_low_rank(linears[name]):
            if rank is not None:
                raise ConfigError(f"{name} is a low-rank pair of rank {linears[name].q.out_features}: "
                                  "its rank is fixed (rank must be None)")
            layer = FactorizedLinear.from_low_rank(linears[name], init=init, **gate_options)
        else:
            layer = (ColumnGatedLinear(linears[name], **gate_options) if structure == "columns"
                     else FactorizedLinear.from_linear(linears[name], init=init, rank=rank, **gate_options))
        setattr(owner, attr, layer)
    return model


def flop_parameters(model: nn.Module) -> dict:
    """The parameters split for separate optimizers: "gates" (every log_alpha) and "model" (the rest).
    The SRU scripts give log_alpha its own Adam; Transformer-XL and the `dev` toy put it in the model's."""
    gates = [m.log_alpha for m in model.modules() if isinstance(m, HardConcrete)]
    ids = {id(p) for p in gates}
    return {"model": [p for p in model.parameters() if id(p) not in ids], "gates": gates}


def _layers_and_total(model: nn.Module, total: str):
    check_choice("sparsity total", total, SPARSITY_TOTALS)
    layers = list(factorized_layers(model).values())
    if not layers:
        raise ConfigError("the model has no gated (factorized or column-gated) layer; call factorize() first")
    size = sum(m.dense_parameters() if total == "dense" else m.factorized_parameters() for m in layers)
    return layers, size


def expected_sparsity(model: nn.Module, total: str = "dense") -> torch.Tensor:
    """s_hat = 1 - sum (d_in + d_out) E[L0] / total, differentiable; total "dense" or "factorized" (SPARSITY_LABELS)."""
    layers, size = _layers_and_total(model, total)
    return 1 - sum(m.expected_parameters() for m in layers) / size


def hard_sparsity(model: nn.Module, total: str = "dense") -> float:
    """1 - weights kept under the evaluation masks / total (the size export() gives, biases aside)."""
    layers, size = _layers_and_total(model, total)
    return 1 - sum(m.kept_parameters() for m in layers) / size


@torch.no_grad()
def export_model(model: nn.Module) -> nn.Module:
    """Replace every gated layer of `model` (in place) by its export(): the physically smaller model. A
    WidthGated layer's partner loses the input columns of its closed dimensions."""
    for name, layer in list(factorized_layers(model).items()):
        owner_name, _, attr = name.rpartition(".")
        if not attr:
            raise ConfigError("export_model() needs a model that contains FactorizedLinear layers; call layer.export()")
        if isinstance(layer, WidthGated):
            keep, partner = layer.kept_index(), model.get_submodule(layer.partner)
            p_owner, _, p_attr = layer.partner.rpartition(".")
            setattr(model.get_submodule(p_owner) if p_owner else model, p_attr,
                    _linear(partner.weight[:, keep], None if partner.bias is None else partner.bias))
        setattr(model.get_submodule(owner_name) if owner_name else model, attr, layer.export())
    return model


class LagrangianBudget(nn.Module):
    """lambda1 (s_hat - t_k) + lambda2 (s_hat - t_k)^2, added to the loss.

    target: the final sparsity t in [0, 1); t_k = t min(1, k / warmup_steps) at step k (t from the
    start when warmup_steps is 0); total: the denominator of s_hat ("dense" or "factorized").
    Optimise lambda1, lambda2 with optimizer(), which ascends; the model's optimizer descends.
    """

    def __init__(self, target: float, warmup_steps: int = 0, total: str = "dense", quadratic: bool = True):
        super().__init__()
        if not isinstance(quadratic, bool):
            raise ConfigError(f"quadratic must be True (lambda1 and lambda2 terms) or False (lambda1 alone); got {quadratic!r}")
        self.quadratic = quadratic
        if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 <= target < 1:
            raise ConfigError(f"target sparsity must be a number in [0, 1); got {target!r}")
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be an integer >= 0 (0: the target from the start); got {warmup_steps!r}")
        check_choice("sparsity total", total, SPARSITY_TOTALS)
        self.target, self.warmup_steps, self.total = float(target), warmup_steps, total
        self.lambda1 = nn.Parameter(torch.zeros(()))
        self.lambda2 = nn.Parameter(torch.zeros(()))

    def target_at(self, step: int) -> float:
        """t_k = t min(1, k / warmup_steps), k = steps since pruning began."""
        if self.warmup_steps == 0:
            return self.target
        return self.target * min(1.0, max(0, step) / self.warmup_steps)

    def forward(self, s_hat: torch.Tensor, step: int) -> torch.Tensor:
        gap = s_hat - self.target_at(step)
        if not self.quadratic:              # the plain Lagrangian (an ablation): lambda2 stays 0
            return self.lambda1 * gap
        return self.lambda1 * gap + self.lambda2 * gap * gap

    def penalty(self, model: nn.Module, step: int) -> torch.Tensor:
        """The term for `model`'s expected sparsity against this budget's total."""
        return self(expected_sparsity(model, self.total), step)

    def optimizer(self, lr: float, **adam_options) -> torch.optim.Optimizer:
        """Adam over (lambda1, lambda2) that maximises the loss (gradient ascent; the game's max player)."""
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ConfigError(f"the multipliers' lr must be a finite number > 0 (the ascent is maximize=True); got {lr!r}")
        return torch.optim.Adam(self.parameters(), lr=lr, maximize=True, **adam_options)

    def extra_repr(self) -> str:
        return f"target={self.target}, warmup_steps={self.warmup_steps}, total={self.total}, quadratic={self.quadratic}"

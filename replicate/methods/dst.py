"""Dynamic Sparse Training (Liu, Xu, Shi, Cheung & So, ICLR 2020).

Every Linear / Conv2d layer gets trainable thresholds t (by default one per
output neuron or filter, initialised to 0, so training starts dense). The
layer computes Q = |W| - t (t broadcast over each row), the mask M = step(Q),
and uses W * M in place of W (eq. 1-2). The step has no useful gradient, so
its backward uses an estimator H; the paper's "long-tailed" one (eq. 3) is

    H(x) = 2 - 4|x|  for |x| <= 0.4,   0.4  for 0.4 < |x| <= 1,   0 beyond.

With it, autograd gives exactly the paper's gradients: a performance term
dL/d(WM) * M and a structure term dL/d(WM) * W * H(Q) * sign(W) for the
weights (so masked weights keep learning and can come back), and
-sum_j dL/d(WM)_ij * W_ij * H(Q_ij) for the thresholds. The objective adds
alpha * sum over layers and thresholds of exp(-t) (eq. 5), which pushes
thresholds up against the task loss: alpha is the only sparsity knob.

Reset rule (official code, CR appendix A.1; not in the submission's text):
when a layer keeps <= 1 % of its weights, its thresholds are set back to 0.
The official code checks this on every forward, in training and evaluation.

Each departure point is a named option, with the paper's (or, where the paper
is silent, the official code's) choice as default:
  estimator    long_tailed (eq. 3) | ste (1 on |x| <= 1) | triangle (2-4|x| on |x| <= 0.4 only)
  granularity  neuron (the paper) | layer (one scalar) | weight (one threshold per weight)
  regularizer  exp: exp(-t) (eq. 5) | linear: -t | inverse: 1/(t+eps) | neglog: -log(t+eps)
               | softplus: softplus(-t) | exp_layer_mean: per-layer mean of exp(-t)
               | l0_density: sum over layers of the fraction of weights the mask keeps, an L0
                 surrogate whose gradient reaches W and t through the same estimator H (ours:
                 the reviewers asked for alternatives, the authors named none)
  reset        train_and_eval (code) | train (only while training) | off
  step_at_zero 0: S(0) = 0, the code's strict '>' | 1: S(0) = 1, the paper's Fig. 2(a)
Biases are never masked and do not count in remaining ratios.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError, RunConfig, check_choice
from ..train import Callback
from .args import ARGS
from .base import Method, Result, register

ESTIMATORS = ("long_tailed", "ste", "triangle")
GRANULARITIES = ("neuron", "layer", "weight")
REGULARIZERS = ("exp", "linear", "inverse", "neglog", "softplus", "exp_layer_mean", "l0_density")
RESETS = ("train_and_eval", "train", "off")
EPS = 1e-2  # keeps 1/(t+eps) and -log(t+eps) finite at t = 0 (the initial thresholds)


def _at_most(a: torch.Tensor, bound: float) -> torch.Tensor:
    """1.0 where a <= bound, else 0.0, as a float tensor. Built from sign() because on
    CPU a float comparison followed by a cast costs several times a multiplication."""
    return (a - bound).sign_().clamp_min_(0).neg_().add_(1)


def estimator_grad(x: torch.Tensor, kind: str) -> torch.Tensor:
    """The backward of the unit step, evaluated at x (written with few passes
    over memory and no bool tensors: this runs on every weight at every step)."""
    a = x.abs()
    if kind == "long_tailed":   # 2-4|x| down to 0.4 at |x| = 0.4, then 0.4 up to |x| = 1, then 0
        h = a.mul(-4).add_(2).clamp_min_(0.4)
        return h.sub_((a - 1).sign_().clamp_min_(0), alpha=0.4)   # minus 0.4 exactly where |x| > 1
    if kind == "ste":
        return _at_most(a, 1.0)
    if kind == "triangle":
        return a.mul(-4).add_(2).mul_(_at_most(a, 0.4))
    raise ConfigError(f"unknown estimator {kind!r}; valid: {', '.join(ESTIMATORS)}")


def _step(q: torch.Tensor, at_zero: int) -> torch.Tensor:
    """The unit step as a 0/1 float tensor: S(0) = 0 (strict '>') or S(0) = 1."""
    if at_zero == 0:
        return q.sign().clamp_min_(0)
    return q.neg().sign_().clamp_min_(0).neg_().add_(1)


class _Step(torch.autograd.Function):
    """The unit step with the estimator as its backward (reference form, used in tests)."""

    @staticmethod
    def forward(ctx, x, kind, at_zero):
        ctx.save_for_backward(x)
        ctx.kind = kind
        return _step(x, at_zero)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * estimator_grad(x, ctx.kind), None, None


def binary_step(x, kind: str = "long_tailed", at_zero: int = 0):
    return _Step.apply(x, kind, at_zero)


class _MaskedWeight(torch.autograd.Function):
    """W * step(|W| - t) in one node; also returns the 0/1 mask (float). Its backward
    is what autograd derives from the reference form (tests check this), using
    sign(W) * W = |W| to save passes:
      dW = g * M + g * H(Q) * |W|,   dt = -sum(g * H(Q) * W) over each row.
    Masks are float and products replace torch.where: on CPU both are several times
    faster than bool tensors for the same values."""

    @staticmethod
    def forward(ctx, w, t, kind, at_zero):
        aw = w.abs()
        q = aw - t
        m = _step(q, at_zero)
        ctx.save_for_backward(w, aw, q, m)
        ctx.kind, ctx.t_shape = kind, t.shape
        ctx.mark_non_differentiable(m)
        return w * m, m

    @staticmethod
    def backward(ctx, g, _unused):
        w, aw, q, m = ctx.saved_tensors
        gh = estimator_grad(q, ctx.kind).mul_(g)
        grad_w = torch.addcmul(g * m, gh, aw)
        grad_t = -(gh.mul_(w)).sum_to_size(ctx.t_shape)
        return grad_w, grad_t, None, None


# --- the compiled kernel: the same masked weight and gradients, each pass fused into one loop --------------
# The eager _MaskedWeight makes about a dozen passes over the weights per step around a small matmul (DST's
# step cost 2.4x a dense one for LeNet-300-100). torch.compile (inductor, a C++ compiler on CPU) fuses the
# forward (|W| - t, the step, W * M, the kept count) and the backward (the estimator, both gradients) into
# single loops. Same values: the step and the estimator are exact in both, the products are single roundings;
# only the thresholds' row sums may add in another order (float tolerance, tested). REPLICATE_DST_KERNEL chooses:
# "eager", "compiled", or "auto" (the default: compiled for CPU runs outside the smoke profile, where a
# first compilation of a few seconds to a minute would cost more than it saves). If compiling fails
# (no C++ compiler), the layer falls back to eager with one warning; records say which kernel ran.
KERNELS = ("eager", "compiled")
KERNEL_ENV = "REPLICATE_DST_KERNEL"
_KERNEL_CACHE: dict = {}
_COMPILE_FAILED: list = []


def _estimator_where(q: torch.Tensor, kind: str) -> torch.Tensor:
    """estimator_grad(q, kind) written with torch.where (what the compiler fuses; the same values)."""
    a = q.abs()
    zero = torch.zeros_like(a)
    if kind == "long_tailed":
        return torch.where(a <= 0.4, 2 - 4 * a, torch.where(a <= 1.0, zero + 0.4, zero))
    if kind == "ste":
        return torch.where(a <= 1.0, zero + 1.0, zero)
    if kind == "triangle":
        return torch.where(a <= 0.4, 2 - 4 * a, zero)
    raise ConfigError(f"unknown estimator {kind!r}; valid: {', '.join(ESTIMATORS)}")


def _kernels(kind: str, at_zero: int):
    """(forward, backward) compiled for one estimator and step convention, over lists of layers:
    forward(ws, ts, prevs, news) -> (W * M per layer, a 2 x layers tensor: the kept count of each layer, and
    the count of weights kept now and not in `prevs`), writing M into the preallocated `news` (writing into
    kept buffers is cheaper than returning fresh masks; one tensor of counts is read with one call);
    backward(gs, ws, ts) -> (dW per layer, dt per layer). One call serves every masked layer of a model
    (batched_forward). Each is traced (make_fx) and compiled by inductor once per set of input shapes, strides
    and dtypes, and the compiled code is then called directly: torch.compile's guards and wrappers add a
    fixed cost to every call, which weighed on LeNet-300-100's short step (make bench)."""
    def forward_flat(*args):
        n = len(args) // 4
        outs, kept, revived = [], [], []
        for w, t, p, new in zip(args[:n], args[n:2 * n], args[2 * n:3 * n], args[3 * n:]):
            q = w.abs() - t
            m = (q > 0 if at_zero == 0 else q >= 0).to(w.dtype)
            outs.append(w * m)
            kept.append(m.sum())
            revived.append((m * (1 - p)).sum())
            new.copy_(m)
        return (*outs, torch.stack([torch.stack(kept), torch.stack(revived)]))

    def backward_flat(*args):           # q and M recomputed: reading W again is cheaper than storing them
        n = len(args) // 3
        gw, gt = [], []
        for g, w, t in zip(args[:n], args[n:2 * n], args[2 * n:]):
            aw = w.abs()
            q = aw - t
            m = (q > 0 if at_zero == 0 else q >= 0).to(w.dtype)
            gh = g * _estimator_where(q, kind)
            gw.append(g * m + gh * aw)
            gt.append(-(gh * w).sum_to_size(t.shape))
        return (*gw, *gt)

    def forward(ws, ts, prevs, news):
        out = _call_compiled(("forward", kind, at_zero), forward_flat, [*ws, *ts, *prevs, *news])
        return list(out[:-1]), out[-1]

    def backward(gs, ws, ts):
        n = len(ws)
        out = _call_compiled(("backward", kind, at_zero), backward_flat, [*[g.contiguous() for g in gs], *ws, *ts])
        return list(out[:n]), list(out[n:])
    return forward, backward


def _call_compiled(tag, fn, args):
    """fn(*args) through inductor code compiled for exactly these inputs' shapes, strides, dtypes and device
    (cached per process; a first call traces and compiles, a few seconds)."""
    key = (tag, tuple((tuple(a.shape), a.stride(), a.dtype, a.device) for a in args))
    compiled = _KERNEL_CACHE.get(key)
    if compiled is None:
        from torch.fx.experimental.proxy_tensor import make_fx
        import torch._inductor
        compiled = torch._inductor.compile(make_fx(fn)(*args), list(args))
        # the generated module's own entry point when there is one: the wrappers around it (for autograd and
        # input mutation, which these graphs handle inside the kernel) cost a fixed time per call
        inner = getattr(compiled, "current_callable", None)
        compiled = (lambda *a: inner(list(a))) if callable(inner) else compiled
        _KERNEL_CACHE[key] = compiled
    return compiled(*args)


class _CompiledMaskedWeights(torch.autograd.Function):
    """_MaskedWeight's values for n layers in one autograd node, through the compiled kernels.
    apply(kind, at_zero, n, buffers, penalty, w_1..w_n, t_1..t_n) -> (W*M for each layer, the 2 x n counts of
    the forward kernel[, the exp penalty]); t_i the threshold parameters (broadcast inside the node: no view
    nodes); buffers = (previous masks, masks to write); penalty = None or alpha: the node also computes the exp
    penalty alpha * sum(exp(-t)) with _ExpPenalty's arithmetic and adds its gradient to the thresholds' (one
    node fewer per step; the same values).
    One node for all layers: on a small network the fixed cost of a node and a compiled call per layer (about
    0.2 ms) weighs more than the passes over the weights."""

    @staticmethod
    def forward(ctx, kind, at_zero, n, buffers, penalty, *wt):
        fwd, _ = _kernels(kind, at_zero)
        plain = [x.detach() for x in wt]              # plain tensors: parameters make the compiled call costly
        ts = [t.view(_broadcast_shape(w, t)) for w, t in zip(plain[:n], plain[n:])]
        outs, counts = fwd(plain[:n], ts, *buffers)
        ctx.save_for_backward(*wt[:n])
        # the thresholds as they are now; a reset replaces a threshold's tensor rather than zeroing it in place
        # (_Masked.masked_weight), so these keep the values this forward used without a copy
        ctx.ts, ctx.tshapes = ts, [t.shape for t in plain[n:]]
        ctx.kind, ctx.at_zero, ctx.n = kind, at_zero, n
        ctx.mark_non_differentiable(counts)
        ctx.set_materialize_grads(False)
        ctx.penalty = None
        if not penalty:
            return (*outs, counts)
        es = _ExpPenalty.exps(plain[n:])
        ctx.penalty = (penalty, es)
        return (*outs, counts, _ExpPenalty.value(penalty, es))

    @staticmethod
    def backward(ctx, *grads):
        n = ctx.n
        ws = [x.detach() for x in ctx.saved_tensors]
        gs = [g if g is not None else torch.zeros_like(w) for g, w in zip(grads[:n], ws)]
        _, bwd = _kernels(ctx.kind, ctx.at_zero)
        gw, gt = bwd(gs, ws, ctx.ts)
        if ctx.penalty is not None and grads[n + 1] is not None:
            alpha, es = ctx.penalty
            # what autograd would add into each threshold's gradient from _ExpPenalty's node (a + b = b + a)
            gt = [a.view(b.shape) + b for a, b in zip(gt, _ExpPenalty.grads(alpha, es, grads[n + 1]))]
        else:
            gt = [a.view(s) for a, s in zip(gt, ctx.tshapes)]
        return (None, None, None, None, None, *gw, *gt)


def _compiled(layers, penalty=None) -> tuple:
    """([(W*M, M, kept count, revived count)], the exp penalty or None) for masked layers sharing an estimator
    and step convention, in one node; the counts are Python floats. M is the layer's mask buffer, overwritten by
    its next forward. penalty: None or alpha, the exp penalty over these layers' thresholds computed in the
    same node."""
    n = len(layers)
    bufs = [m._mask_buffers() for m in layers]
    prevs, news = [b[0] for b in bufs], [b[1] for b in bufs]
    out = _CompiledMaskedWeights.apply(layers[0].estimator, layers[0].step_at_zero, n, (prevs, news), penalty,
                                       *[m.weight for m in layers], *[m.threshold for m in layers])
    kept, revived = out[n].tolist()
    return [(out[i], news[i], kept[i], revived[i]) for i in range(n)], (out[n + 1] if penalty else None)


def _broadcast_shape(w: torch.Tensor, t: torch.Tensor) -> tuple:
    """The shape that broadcasts a threshold against its weight (_Masked._broadcast_threshold's view)."""
    if t.shape == w.shape:
        return tuple(t.shape)
    if t.numel() == 1:
        return (1,) * w.dim()
    return (t.shape[0],) + (1,) * (w.dim() - 1)


def _note_compile_failure(e: Exception) -> None:
    import warnings
    _COMPILE_FAILED.append(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    warnings.warn(f"DST's compiled kernel is not available here ({_COMPILE_FAILED[0]}); using the eager "
                  f"kernel (set {KERNEL_ENV}=eager to silence this)", stacklevel=3)


def kernel_for(profile: str | None) -> str:
    """The kernel a run uses: REPLICATE_DST_KERNEL (eager | compiled | auto), auto meaning compiled except in
    the smoke profile."""
    import os
    choice = os.environ.get(KERNEL_ENV, "auto")
    check_choice(KERNEL_ENV, choice, KERNELS + ("auto",))
    if choice == "auto":
        return "eager" if profile == "smoke" else "compiled"
    return choice


class _Masked:
    """Shared logic of the masked Linear and Conv2d layers."""

    # Per-forward state, set several times a step: plain attributes, skipping nn.Module.__setattr__'s checks
    # for parameters, buffers and submodules (which these never are).
    _PLAIN = frozenset({"_stash", "last_mask", "_last_kept", "last_revived", "_prev", "_mask_bufs"})

    def __setattr__(self, name, value):
        if name in _Masked._PLAIN:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def _init_mask(self, granularity, estimator, reset, step_at_zero, kernel="eager"):
        check_choice("granularity", granularity, GRANULARITIES)
        check_choice("estimator", estimator, ESTIMATORS)
        check_choice("reset", reset, RESETS)
        check_choice("kernel", kernel, KERNELS)
        self.kernel = kernel
        self._stash = None   # W * M computed for the whole model by batched_forward, for this forward only
        shape = {"neuron": (self.weight.shape[0],), "layer": (1,), "weight": tuple(self.weight.shape)}[granularity]
        self.threshold = nn.Parameter(torch.zeros(shape, device=self.weight.device))
        self.granularity, self.estimator, self.reset = granularity, estimator, reset
        self.step_at_zero = step_at_zero
        self.resets = 0  # how often the reset rule fired
        # The compiled kernel writes masks into two buffers in turn: the mask of the last training forward
        # (against which the next counts the weights that came back) and the one being written.
        self._mask_bufs, self._prev = None, 0
        self.last_revived = None  # weights kept by the last training forward and not by the one before

    def _broadcast_threshold(self):
        t = self.threshold
        if self.granularity == "neuron":
            return t.view(-1, *([1] * (self.weight.dim() - 1)))
        return t if self.granularity == "weight" else t.view(*([1] * self.weight.dim()))

    def _mask_buffers(self):
        """(the previous training forward's mask, the buffer this forward writes) for the compiled kernel."""
        w = self.weight
        b = self._mask_bufs
        if b is None or b[0].shape != w.shape or b[0].device != w.device or b[0].dtype != w.dtype:
            self._mask_bufs = [torch.ones_like(w, memory_format=torch.contiguous_format).detach() for _ in range(2)]
        return self._mask_bufs[self._prev], self._mask_bufs[1 - self._prev]

    def restart_revived(self) -> None:
        """Count weights that come back from the next training forward on (its mask is compared with all-ones)."""
        if self._mask_bufs is not None:
            self._mask_bufs[self._prev].fill_(1)
        self.last_revived = None

    def _mask_and_weight(self):
        """(W * M, M, the kept count or None, the revived count or None)."""
        if self.kernel_used() == "compiled":
            try:
                return _compiled([self])[0][0]
            except Exception as e:  # noqa: BLE001 - any compiler failure: the eager kernel gives the same values
                _note_compile_failure(e)
        w, m = _MaskedWeight.apply(self.weight, self._broadcast_threshold(), self.estimator, self.step_at_zero)
        return w, m, None, None

    def kernel_used(self) -> str:
        """The kernel this layer's forward passes run: "compiled", or "eager" (also after a failed compile)."""
        return "compiled" if self.kernel == "compiled" and not _COMPILE_FAILED and self.weight.device.type == "cpu" \
            else "eager"

    def masked_weight(self, computed=None):
        """W * M for the forward pass, applying the reset rule first if it fires. `computed`: this layer's
        (W * M, M, kept count, revived count) already computed with the other layers' (batched_forward).
        With the compiled kernel, last_mask is a buffer that a later forward overwrites."""
        w, m, count, revived = computed if computed is not None else self._mask_and_weight()
        fire = self.reset == "train_and_eval" or (self.reset == "train" and self.training)
        kept = float(count) if count is not None else (float(m.sum()) if fire else None)
        if fire and kept <= 0.01 * m.numel():
            # a new zero tensor rather than zeroing in place: a compiled node of this forward keeps the old one
            # for its backward (the same parameter object, so the optimizer's state is unaffected)
            self.threshold.data = torch.zeros_like(self.threshold)
            self.resets += 1
            w, m, count, revived = self._mask_and_weight()   # compiled: compared with the same previous mask
            kept = float(count) if count is not None else float(m.sum())
        self.last_mask, self._last_kept = m, kept
        if self.training:
            self.last_revived = revived
            if revived is not None:
                self._prev = 1 - self._prev   # this mask becomes the one the next training forward compares with
        return w

    def kept(self) -> int:
        """Weights kept by the last forward's mask (counted once per forward)."""
        if self._last_kept is None:
            self._last_kept = float(self.last_mask.sum())
        return int(round(self._last_kept))

    @torch.no_grad()
    def mask(self) -> torch.Tensor:
        """The current 0/1 mask, as the next forward pass would use it (a copy the layer does not reuse)."""
        prev, revived = self._prev, self.last_revived   # not a step: the count of weights that came back stays
        self.masked_weight()
        self._prev, self.last_revived = prev, revived
        return self.last_mask.clone()


class MaskedLinear(_Masked, nn.Linear):
    def __init__(self, in_features, out_features, bias=True, *, granularity="neuron",
                 estimator="long_tailed", reset="train_and_eval", step_at_zero=0, kernel="eager"):
        nn.Linear.__init__(self, in_features, out_features, bias)
        self._init_mask(granularity, estimator, reset, step_at_zero, kernel)

    def forward(self, x):
        w = self._stash if self._stash is not None else self.masked_weight()
        return F.linear(x, w, self.bias)


class MaskedConv2d(_Masked, nn.Conv2d):
    def __init__(self, *args, granularity="neuron", estimator="long_tailed", reset="train_and_eval",
                 step_at_zero=0, kernel="eager", **kw):
        nn.Conv2d.__init__(self, *args, **kw)
        self._init_mask(granularity, estimator, reset, step_at_zero, kernel)

    def forward(self, x):
        w = self._stash if self._stash is not None else self.masked_weight()
        return self._conv_forward(x, w, self.bias)


def masked_layers(model) -> dict:
    return {n: m for n, m in model.named_modules() if isinstance(m, _Masked)}


@torch.no_grad()
def to_masked(model: nn.Module, **options) -> nn.Module:
    """Replace every Linear / Conv2d by its masked twin, keeping the weights. With kernel="compiled" the
    model also computes all its masked weights in one compiled call before each forward (batched_forward)."""
    _replace(model, options)
    if options.get("kernel") == "compiled" and not getattr(model, "_dst_batched", False):
        model.register_forward_pre_hook(_batched_pre_hook)
        model.register_forward_hook(_batched_post_hook)
        model._dst_batched = True
    return model


def _batched_pre_hook(model, _inputs):
    batched_forward(model)


def _batched_post_hook(model, _inputs, _output):
    for m in model.__dict__.get("_dst_stashed", ()):
        m._stash = None


def batched_forward(model: nn.Module) -> None:
    """Compute the masked weights of all of `model`'s compiled-kernel layers in one node and keep each for
    this forward (every use of a layer in the forward then shares it); the reset rule is applied per layer
    as in masked_weight(). When penalty_fn(model, "exp", alpha) asked for it and one node covers every masked
    layer, a training forward computes the penalty in that node too, for the penalty's next call (dropped if a
    reset fired: the penalty then sees the reset thresholds, as before)."""
    groups: dict = {}
    layers = list(masked_layers(model).values())
    object.__setattr__(model, "_dst_stashed", layers)    # for the post-forward hook (a plain attribute)
    model.__dict__.pop("_dst_penalty", None)
    for m in layers:
        m._stash = None
        if m.kernel_used() == "compiled":
            groups.setdefault((m.estimator, m.step_at_zero), []).append(m)
    alpha = model.__dict__.get("_dst_exp_alpha")
    fuse = alpha is not None and len(groups) == 1 and len(next(iter(groups.values()))) == len(layers) \
        and model.training and torch.is_grad_enabled()
    for group in groups.values():
        try:
            computed, pen = _compiled(group, alpha if fuse else None)
        except Exception as e:  # noqa: BLE001 - any compiler failure: each layer falls back to its eager kernel
            _note_compile_failure(e)
            return
        resets = sum(m.resets for m in group)
        for m, c in zip(group, computed):
            m._stash = m.masked_weight(computed=c)
        if pen is not None and sum(m.resets for m in group) == resets:
            object.__setattr__(model, "_dst_penalty", (tuple(layers), alpha, pen))


def _replace(model: nn.Module, options: dict) -> None:
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Conv2d) and not isinstance(child, _Masked):
            new = MaskedConv2d(child.in_channels, child.out_channels, child.kernel_size, stride=child.stride,
                               padding=child.padding, dilation=child.dilation, groups=child.groups,
                               bias=child.bias is not None, **options)
        elif isinstance(child, nn.Linear) and not isinstance(child, _Masked):
            new = MaskedLinear(child.in_features, child.out_features, child.bias is not None, **options)
        else:
            _replace(child, options)
            continue
        new.weight.copy_(child.weight)
        if child.bias is not None:
            new.bias.copy_(child.bias)
        setattr(model, name, new.to(child.weight.device))


@torch.no_grad()
def to_plain(model: nn.Module) -> nn.Module:
    """Fold each mask into its weights (W * M) and turn masked layers back into
    plain Linear / Conv2d, so every metric and the weight cache see a normal model."""
    for name, child in list(model.named_children()):
        if isinstance(child, _Masked):
            was = child.training
            child.eval()
            w = child.masked_weight().detach()
            child.train(was)
            if isinstance(child, nn.Conv2d):
                new = nn.Conv2d(child.in_channels, child.out_channels, child.kernel_size, stride=child.stride,
                                padding=child.padding, dilation=child.dilation, groups=child.groups,
                                bias=child.bias is not None)
            else:
                new = nn.Linear(child.in_features, child.out_features, child.bias is not None)
            new.weight.copy_(w)
            if child.bias is not None:
                new.bias.copy_(child.bias)
            setattr(model, name, new.to(w.device))
        else:
            to_plain(child)
    return model


def penalty_fn(model, kind: str, alpha: float):
    """alpha * sum over layers of the regularizer applied to the layer's thresholds
    (l0_density: to the layer's mask density, mean(step(|W| - t)), whose backward is the estimator H)."""
    check_choice("regularizer", kind, REGULARIZERS)
    layers = list(masked_layers(model).values())
    thresholds = [m.threshold for m in layers]
    if kind == "l0_density":
        def density_penalty():
            return alpha * sum(binary_step(m.weight.abs() - m._broadcast_threshold(), m.estimator, m.step_at_zero).mean()
                               for m in layers)
        return density_penalty

    def term(t):
        if kind == "exp":
            return torch.exp(-t).sum()
        if kind == "linear":
            return (-t).sum()
        if kind in ("inverse", "neglog"):
            # Singular below -eps: evaluate at max(t, 0) but keep the gradient flowing
            # (straight-through), so negative thresholds are still pushed up.
            tc = t + (t.clamp_min(0) - t).detach()
            return (1 / (tc + EPS)).sum() if kind == "inverse" else (-torch.log(tc + EPS)).sum()
        if kind == "softplus":
            return F.softplus(-t).sum()
        return torch.exp(-t).mean()  # exp_layer_mean

    if kind == "exp":
        # the model's compiled forward may compute the penalty in its own node (batched_forward): then this
        # returns that value, computed from the same thresholds with the same arithmetic
        object.__setattr__(model, "_dst_exp_alpha", alpha)
        key = tuple(layers)

        def exp_penalty():
            fused = model.__dict__.pop("_dst_penalty", None)
            if fused is not None and fused[0] == key and fused[1] == alpha:
                return fused[2]
            return _ExpPenalty.apply(alpha, *thresholds)
        return exp_penalty

    def penalty():
        return alpha * sum(term(t) for t in thresholds)
    return penalty


class _ExpPenalty(torch.autograd.Function):
    """alpha * sum over layers of sum(exp(-t)) (eq. 5) for all layers in one autograd node, with the same
    arithmetic as the chain autograd builds from the formula (per-layer sums added in layer order, then times
    alpha; gradient -(g alpha) exp(-t)), so values and gradients are bit-identical (tested). The chain costs
    about a dozen nodes forward and backward per step, a noticeable share of LeNet-300-100's short step.
    exps / value / grads are shared with the compiled masked-weight node, which can compute the same penalty."""

    @staticmethod
    def exps(ts):
        return torch._foreach_exp(torch._foreach_neg(ts))

    @staticmethod
    def value(alpha, es):
        return alpha * sum(e.sum() for e in es)

    @staticmethod
    def grads(alpha, es, g):
        grads = torch._foreach_mul(es, g * alpha)
        torch._foreach_neg_(grads)
        return grads

    @staticmethod
    def forward(ctx, alpha, *ts):
        es = _ExpPenalty.exps(ts)
        ctx.save_for_backward(*es)
        ctx.alpha = alpha
        return _ExpPenalty.value(alpha, es)

    @staticmethod
    def backward(ctx, g):
        return (None, *_ExpPenalty.grads(ctx.alpha, ctx.saved_tensors, g))


@torch.no_grad()
def remaining(model) -> dict:
    """Per-layer fraction of weights kept by the current masks, and the model's (pooled)."""
    out, kept, total = {}, 0, 0
    for name, m in masked_layers(model).items():
        mask = m.last_mask if getattr(m, "last_mask", None) is not None else m.mask()
        k = m.kept()
        out[name] = k / mask.numel()
        kept += k
        total += mask.numel()
    out["model"] = kept / max(total, 1)
    return out


@torch.no_grad()
def threshold_summary(t: torch.Tensor, bins: int = 40) -> dict:
    """Histogram of a layer's final thresholds (raw values too when there are few)."""
    v = t.detach().flatten().cpu().double()
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        hi = lo + 1e-12
    counts = torch.histc(v, bins=bins, min=lo, max=hi)
    out = {"min": lo, "max": float(v.max()), "mean": float(v.mean()), "n": v.numel(),
           "hist_edges": torch.linspace(lo, hi, bins + 1).tolist(), "hist_counts": counts.int().tolist()}
    if v.numel() <= 1000:
        out["values"] = v.tolist()
    return out


class SparsityLog(Callback):
    """Per-epoch remaining ratios, reset counts, threshold statistics and mask
    0 -> 1 transitions (weights that came back); per-step ratios in epoch 1."""

    def __init__(self, per_step_epochs: int = 1):
        self.per_step_epochs = per_step_epochs
        self.steps = []
        self.revived = 0
        self.prev = None

    def on_train_begin(self, state):
        self.layers = masked_layers(state.model)
        for m in self.layers.values():
            m.restart_revived()

    @torch.no_grad()
    def after_step(self, state):
        masks = {n: m.last_mask for n, m in self.layers.items()}  # 0/1 float
        sums = {n: m.kept() for n, m in self.layers.items()}  # the reset rule already counted them
        # compiled kernel: the forward counted the weights that came back; eager: count them here
        counted = {n: m.last_revived for n, m in self.layers.items() if m.last_revived is not None}
        self.revived += sum(int(round(float(r))) for r in counted.values())
        if self.prev is not None:
            # kept now but not before: sum(new) - sum(new * old), as one dot product
            self.revived += sum(int(round(sums[n] - float(torch.dot(masks[n].flatten(), self.prev[n].flatten()))))
                                for n in masks if n not in counted and n in self.prev)
        self.prev = {n: v for n, v in masks.items() if n not in counted}  # eager forwards make new tensors
        if state.epoch < self.per_step_epochs:
            r = {n: sums[n] / v.numel() for n, v in masks.items()}
            r["step"] = state.step
            self.steps.append(r)

    @torch.no_grad()
    def on_epoch_end(self, state):
        h = state.history[-1]
        h["remaining"] = remaining(state.model)
        h["resets"] = {n: m.resets for n, m in self.layers.items()}
        h["revived_weights"] = self.revived
        h["threshold_mean"] = {n: float(m.threshold.mean()) for n, m in self.layers.items()}


class DST(Method):
    name = "dst"
    defaults = ARGS["dst"]

    def validate(self, cfg: RunConfig) -> None:
        super().validate(cfg)
        a = {**self.defaults, **cfg.args}
        check_choice("estimator", a["estimator"], ESTIMATORS)
        check_choice("granularity", a["granularity"], GRANULARITIES)
        check_choice("regularizer", a["regularizer"], REGULARIZERS)
        check_choice("reset", a["reset"], RESETS)
        check_choice("step_at_zero", a["step_at_zero"], (0, 1))
        if not (isinstance(a["alpha"], (int, float)) and a["alpha"] >= 0 and math.isfinite(a["alpha"])):
            raise ConfigError(f"alpha must be a finite number >= 0, got {a['alpha']!r}")

    def run(self, ctx) -> Result:
        a = {**self.defaults, **ctx.cfg.args}
        model = to_masked(ctx.build_model(), granularity=a["granularity"], estimator=a["estimator"],
                          reset=a["reset"], step_at_zero=a["step_at_zero"], kernel=kernel_for(ctx.cfg.profile))
        c = ctx.cfg
        thresholds = [m.threshold for m in masked_layers(model).values()]
        others = [p for p in model.parameters() if all(p is not t for t in thresholds)]
        groups = [{"params": others}, {"params": thresholds,
                                       "weight_decay": c.weight_decay if a["threshold_decay"] else 0.0}]
        from ..train import make_optimizer
        opt = make_optimizer(groups, c.optimizer, c.lr, c.momentum, c.weight_decay)
        log = SparsityLog()
        history = ctx.fit(model, optimizer_obj=opt, callbacks=[log],
                          penalty=penalty_fn(model, a["regularizer"], float(a["alpha"])))
        last = history[-1] if history else {}
        best = max(history, key=lambda h: h["test_acc"]) if history else {}
        lowest = min(history, key=lambda h: h["remaining"]["model"]) if history else {}
        extra = {
            "final_remaining": last.get("remaining", {}),
            "best_epoch": best.get("epoch"), "best_epoch_acc": best.get("test_acc"),
            "best_epoch_remaining": best.get("remaining", {}).get("model"),
            "lowest_remaining": lowest.get("remaining", {}).get("model"),
            "acc_at_lowest_remaining": lowest.get("test_acc"),
            "resets": {n: m.resets for n, m in masked_layers(model).items()},
            "revived_weights": log.revived,
            "steps_epoch1": log.steps,
            "thresholds": {n: threshold_summary(m.threshold) for n, m in masked_layers(model).items()},
            "kernel": sorted({m.kernel_used() for m in masked_layers(model).values()}),
        }
        return Result(to_plain(model), history, extra)


register(DST())

"""Every method's arguments and their defaults: what a run key needs to know.

A run's key leaves out the arguments equal to their defaults (config.canonical),
so computing it needs these tables but no method implementation. They live here,
away from the algorithms, so that hashing a configuration or opening the store
imports nothing beyond the standard library. A method module reads its own
table (`defaults = ARGS["dst"]`); adding an argument with a default keeps every
stored key valid, changing a default does not (tests/test_pinned_keys.py).
"""
from __future__ import annotations

ARGS: dict[str, dict] = {
    "dense": {},
    "pretrained": {
        "weights": "IMAGENET1K_V1",   # torchvision's published weight set
    },
    "dst": {
        "alpha": 5e-4,               # regularizer strength (MNIST LeNets: README and SUB Fig. 3)
        "estimator": "long_tailed",  # eq. 3
        "granularity": "neuron",     # one threshold per output neuron / filter (SUB section 3)
        "regularizer": "exp",        # eq. 5
        "reset": "train_and_eval",   # official code: <= 1 % kept -> thresholds to 0, also in eval
        "step_at_zero": 0,           # official code: strict '>' (the paper's figure has S(0) = 1)
        "threshold_decay": False,    # CIFAR code applies weight decay to thresholds too
    },
    "magnitude": {
        "schedule": "iterative",  # iterative (Han) | oneshot | gradual (Zhu & Gupta)
        "compression": None,      # target: prunable weights / non-zero weights (>= 1) ...
        "sparsity": None,         # ... or the target fraction of zeros, in [0, 1)
        "scope": "std",           # std: Han's q*sigma per layer | global | layer
        "prune_start": 0.0,       # gradual: fraction of training before pruning starts
        "prune_end": 0.75,        # gradual: fraction of training at which s_f is reached
        "prune_every": 100,       # gradual: optimizer steps between pruning events
        "layer_remaining": None,  # iterative/oneshot: {layer: fraction of its weights to keep} instead of a
                                  # network-wide target (Han et al.'s published per-layer ratios)
    },
    "sensitivity": {
        "lam": 1e-4,                   # lambda of eq. 9 (not scaled by the learning rate)
        "threshold": 1e-3,             # T: |w| < T is pruned after every epoch
        "threshold_scale": "absolute",  # or "layer_std": T x std of the layer's weights
        "coefficients": "specific",    # eq. 7
        "outputs": "logits",
        "reduction": "batch_mean",     # one extra backward pass per step
        "form": "bounded",             # eq. 8: S-bar = max(0, 1 - S)
        "mask": True,                  # pruned weights stay at zero
    },
    "uniform_quant": {
        "bits": 8,          # bits per weight, per layer (1: sign x mean|w| of the layer)
        "latent": False,    # keep the float shadow weights as the run's model
    },
    "deep_compression": {
        "conv_bits": 8,     # shared values per conv layer: 2^conv_bits
        "fc_bits": 5,       # shared values per fully connected layer: 2^fc_bits
    },
    "adaptive_quant": {
        "delta": 0.01,            # loss bound: L0 + delta ("additive") or L0 x (1 + delta) ("relative")
        "bound": "additive",
        "linearize": "initial",   # eq. 19: gradient at W0, or at the current quantized weights
        "radius0": 2 ** -6,       # initial trust radius on the margins
        "expand": 2.0,
        "shrink": 2.0,
        "max_iters": 25,          # the summary's "about 25 iterations"
        "patience": 3,
        "tau_rounding": "pow2",   # margins rounded down to powers of two (the size bound is tight there)
        "grad_samples": 10000,    # training images for the loss and gradient (first n of a fixed permutation); None: all
    },
}

# The module under replicate/methods/ that implements each method (loaded on first use).
MODULES: dict[str, str] = {
    "dense": "dense", "pretrained": "pretrained", "dst": "dst", "magnitude": "magnitude",
    "sensitivity": "sensitivity", "uniform_quant": "quantization", "deep_compression": "quantization",
    "adaptive_quant": "adaptive_quant",
}

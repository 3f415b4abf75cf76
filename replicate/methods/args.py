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
    "flop": {                     # FLOP (Wang, Wohlwend & Lei 2020): methods/flop.py, building blocks in flop_gates.py
        "target": 0.5,            # final sparsity t of the gated layers, in [0, 1), against `total`
        "total": "dense",         # sparsity denominator: "dense" (the gated layers' dense size) | "factorized" (the code's)
        "warmup": 0.5,            # fraction of the run's optimizer steps over which t rises linearly from 0 (0: t at once)
        "quadratic": True,        # the lambda2 (s_hat - t)^2 term (FLOP); False: lambda1 alone (the plain Lagrangian)
        "lambda_lr": 0.1,         # Adam lr of the multipliers lambda1, lambda2 (gradient ascent), both starting at 0
        "gate_lr": 0.05,          # Adam lr of log alpha, its own optimizer (the SRU scripts); None: in the run's optimizer
        "beta": 2 / 3,            # hard-concrete temperature (Louizos et al.; the official code uses 1.0)
        "init_drop": 0.5,         # initial drop rate: log alpha ~ N(log((1 - p) / p), init_std), mean 0 at 0.5
        "init_std": 0.01,
        "eval_rule": "flop_topk",  # deterministic gates in eval mode: "flop_topk" (the code's) | "louizos_clamp"
        "sampling": "batch",      # one gate sample per forward shared by the batch (the code's) | "example"
        "layers": None,           # nn.Linear layers to factorize (qualified names); None: every plain nn.Linear
        "init": "svd",            # factors from the parent's trained weights ("svd", exact) | "random" (from scratch)
        "rank": None,             # None: full rank (svd) or d_in d_out / (d_in + d_out) (random)
        "budget": "lagrangian",   # "lagrangian": the multipliers drive s_hat to t (FLOP) | "fixed": the baseline
                                  # loss + l0_coef (1 - s_hat), Louizos et al.'s fixed L0 weight (target unused) |
                                  # "agp": no gates, gradual magnitude pruning of the factorization's components
        "l0_coef": None,          # the fixed weight of the expected kept fraction (required with budget "fixed")
        "structure": "factorized",  # gates on the SVD components (FLOP) | "columns": on the dense layer's input
                                    # columns, no factorization (the paper's L0 baseline; init and rank unused)
        "clusters": False,        # True: gate each adaptive cluster's width, its table included (the official
                                  # WikiText-103 scheme; flop_gates.WidthGated); False: factorize the projections
    },
    "drl_prune": {                # DRL static + runtime channel pruning (Chen, Chen & Pan 2020): methods/drl_prune.py
        "budget": 0.5,            # d in (0, 1]: the MACs (runtime) and conv parameters (static) of every layer keeping d of its channels
        "rr": 0.5,                # trade-off rate Rr in [0, 1]: 1 runtime only, 0 static only (the code's README example 0.5)
        "iterations": 40,         # I, alternations of Algorithm 1 (rebuttal, CIFAR-10)
        "agent_batches": 1560,    # N1 per iteration, CNN frozen (rebuttal: 4 CIFAR-10 epochs)
        "cnn_batches": 780,       # N2 per iteration, agents frozen (rebuttal: 2 epochs)
        "pretrain_batches": 0,    # CNN + gates at preserve ratio 1 before the first iteration (ours; the code loads a checkpoint)
        "finetune_epochs": 0,     # CNN epochs with the agents frozen after the last iteration
        "agent_lr": 1e-6,         # Adam lr of both agents (paper and rebuttal)
        "hidden": 32,             # the agents' width (paper: 128, more than M-FashionNet-S itself; rl/agents.py)
        "encoder_input": "in",    # runtime encoder reads GAP(F_in) (rebuttal) | "in+out": also u_r (code)
        "consumption": "actions", # the runtime reward's budget use: from the agent's ratios (paper) | "masks"
        "under_bonus": 0.1,       # runtime reward per unit of MAC fraction under budget (code; 0: Eq. 10 alone)
        "sign_rule": "paper",     # drl_gates: u = u_r u_s | "code"
        "static_floor": True,     # drl_gates: never-selectable channels always pruned (ICLR section 3.4)
        "gamma": 0.999,           # GAE discount over the layers (code)
        "lam": 0.95,              # GAE lambda (code)
        "clip": 0.2,              # PPO ratio clip (code)
        "ppo_epochs": 1,          # passes over each batch of episodes (code)
        "minibatch": 64,          # episodes per PPO step (code: 2 steps per 128-image batch)
        "eval_every": 0,          # test evaluation every this many iterations (0: after the last only)
        "policy": "agents",       # "agents": the learned ratios (the method) | "uniform": every layer and input keeps
                                  # the budget d through both pruners, no agent is trained (what the agents add)
    },
    "fbs": {                      # Feature Boosting and Suppression (Gao et al. 2019), the DRL paper's baseline: methods/fbs.py
        "budget": 0.5,            # d: every layer keeps the ceil(d C) most salient channels of each input
        "l1": 1e-4,               # weight of the L1 penalty on the saliencies (sum over layers, mean over inputs); ours
    },
    "fpgm": {                     # filter pruning via the geometric median (He et al. 2019): methods/channel_prune.py
        "budget": 0.5,            # keep ceil(d C) filters per layer (FPGM's rate_dist = 1 - d)
        "soft": True,             # FPGM's soft pruning (zero after every epoch, slice at the end) | False: slice, then fine-tune
    },
    "l1_channel": {               # static uniform channel pruning by filter L1 norm (Li et al. 2017): methods/channel_prune.py
        "budget": 0.5,            # keep the ceil(d C) filters of largest L1 norm per layer, slice, fine-tune
    },
}

# The module under replicate/methods/ that implements each method (loaded on first use).
MODULES: dict[str, str] = {
    "dense": "dense", "pretrained": "pretrained", "dst": "dst", "magnitude": "magnitude",
    "sensitivity": "sensitivity", "uniform_quant": "quantization", "deep_compression": "quantization",
    "adaptive_quant": "adaptive_quant", "drl_prune": "drl_prune", "fbs": "fbs", "fpgm": "channel_prune",
    "l1_channel": "channel_prune", "flop": "flop",
}

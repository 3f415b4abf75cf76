"""Proximal Policy Optimization (Schulman et al., 2017), compact and written from the equations.

What the DRL pruning paper (papers/drl_pruning.md §2) trains its runtime and
static agents with. One file in the single-file spirit of CleanRL, but our own
code; the pieces are separate so each can be tested on its own:

  gae                  generalised advantage estimation (Schulman et al., 2016):
                         delta_t = r_t + gamma * V_{t+1} * (1 - done_t) - V_t
                         A_t     = delta_t + gamma * lam * (1 - done_t) * A_{t+1}
                         returns = A + V
                       done_t = 1 marks t as the last step of its episode, so
                       nothing is bootstrapped across an episode boundary.
  clipped_policy_loss  -mean(min(rho * A, clip(rho, 1 - eps, 1 + eps) * A)),
                       rho = exp(new_logp - old_logp)
  value_loss           0.5 * mean((V - R)^2), or with value clipping the max of
                       the clipped and unclipped squared errors (the official
                       DRL code's choice, value clip 0.2)
  GaussianHead         mean, learnable log-std (one parameter, or a linear head
                       of the state), log_prob and entropy summed over action dims
  update               K epochs of shuffled minibatches over one rollout

Defaults are the official DRL code's: clip 0.2, value clip 0.2,
vf_coef 0.5, no entropy bonus, 1 epoch, minibatch 64, grad-norm 0.5,
per-minibatch advantage normalisation, GAE gamma 0.999 and lambda 0.95.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

# The official DRL code's PPO settings.
CLIP = 0.2             # policy ratio clip epsilon
VALUE_CLIP = 0.2       # how far a new value prediction may move from the old one before its error is clipped
VF_COEF = 0.5          # weight of the value loss in the joint objective
ENT_COEF = 0.0         # entropy bonus (the code uses none)
EPOCHS = 1             # passes over each rollout
MINIBATCH = 64         # samples per gradient step (2 steps per 128-image batch)
MAX_GRAD_NORM = 0.5    # global gradient-norm clip
GAMMA = 0.999          # discount over the layers of one episode
LAM = 0.95             # GAE lambda


@torch.no_grad()
def gae(rewards, values, dones, last_value, gamma: float = GAMMA, lam: float = LAM):
    """Advantages and returns of a rollout of T steps (shape (T,) or (T, N) for N parallel streams).

    `values[t]` is V(s_t); `last_value` is V of the state after the last step
    (ignored where dones[-1] is 1); `dones[t]` = 1 when step t ends an episode.
    Computed in float64, returned in the dtype of `values`."""
    dtype = values.dtype if torch.is_tensor(values) and values.is_floating_point() else torch.get_default_dtype()
    rewards, values = torch.as_tensor(rewards, dtype=torch.float64), torch.as_tensor(values, dtype=torch.float64)
    dones = torch.as_tensor(dones, dtype=torch.float64)
    nxt = torch.as_tensor(last_value, dtype=torch.float64).expand_as(values[0])
    adv = torch.zeros_like(values)
    running = torch.zeros_like(values[0])
    for t in reversed(range(values.shape[0])):
        live = 1.0 - dones[t]
        delta = rewards[t] + gamma * nxt * live - values[t]
        running = delta + gamma * lam * live * running
        adv[t] = running
        nxt = values[t]
    return adv.to(dtype), (adv + values).to(dtype)


def clipped_policy_loss(new_logp, old_logp, adv, clip: float = CLIP):
    """PPO's clipped surrogate, negated for minimisation. Where the ratio has left
    [1 - clip, 1 + clip] in the direction the advantage favours, the clipped term
    is the minimum and is constant in new_logp, so that sample gives no gradient."""
    ratio = torch.exp(new_logp - old_logp)
    return -torch.min(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv).mean()


def value_loss(new_v, returns, old_v=None, clip: float | None = VALUE_CLIP):
    """0.5 * mean squared error; with `old_v` and `clip`, the pessimistic (larger)
    of the unclipped error and the error of old_v + clamp(new_v - old_v, -clip, clip)."""
    err = (new_v - returns) ** 2
    if old_v is not None and clip is not None:
        clipped = old_v + (new_v - old_v).clamp(-clip, clip)
        err = torch.max(err, (clipped - returns) ** 2)
    return 0.5 * err.mean()


class GaussianHead(nn.Module):
    """A diagonal Gaussian policy over `act_dim` continuous actions from features h.

    mean = Linear(h) (+ offset, e.g. the DRL agent's budget); log-std is one
    learnable parameter per action dimension, or, with `state_dependent_std`, a
    second Linear of h whose bias starts at `log_std_init` (the DRL code's -4)."""

    def __init__(self, in_features: int, act_dim: int = 1, log_std_init: float = 0.0,
                 state_dependent_std: bool = False, mean_init_scale: float = 1.0):
        super().__init__()
        self.mean = nn.Linear(in_features, act_dim)
        with torch.no_grad():
            self.mean.weight.mul_(mean_init_scale)   # the DRL code scales the mean head's init by 0.2
            self.mean.bias.zero_()
        if state_dependent_std:
            self.log_std = nn.Linear(in_features, act_dim)
            nn.init.constant_(self.log_std.bias, log_std_init)
        else:
            self.log_std = nn.Parameter(torch.full((act_dim,), float(log_std_init)))

    def forward(self, h, offset=None):
        """(mean, log_std), both of shape (..., act_dim)."""
        mu = self.mean(h)
        if offset is not None:
            mu = mu + offset
        log_std = self.log_std(h) if isinstance(self.log_std, nn.Linear) else self.log_std.expand_as(mu)
        return mu, log_std

    @staticmethod
    def log_prob(mu, log_std, action):
        """log N(action; mu, exp(log_std)^2), summed over the last dimension."""
        z = (action - mu) * torch.exp(-log_std)
        return (-0.5 * z * z - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    @staticmethod
    def entropy(log_std):
        return (log_std + 0.5 * (1.0 + math.log(2 * math.pi))).sum(-1)

    @staticmethod
    def sample(mu, log_std, generator: torch.Generator | None = None):
        noise = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        return mu + torch.exp(log_std) * noise


def update(evaluate: Callable, optimizer: torch.optim.Optimizer, rollout: dict, *, epochs: int = EPOCHS,
           minibatch: int = MINIBATCH, clip: float = CLIP, value_clip: float | None = VALUE_CLIP,
           vf_coef: float = VF_COEF, ent_coef: float = ENT_COEF, max_grad_norm: float | None = MAX_GRAD_NORM,
           normalize_adv: bool = True, generator: torch.Generator | None = None) -> dict:
    """K epochs of minibatch PPO over one rollout; returns the mean of each loss term.

    `rollout` maps names to tensors whose first dimension indexes samples (a
    sample may itself be an episode, e.g. one image's pass through all layers).
    It must hold "logp", "values", "advantages" and "returns" (as collected,
    detached); anything else (observations, actions, hidden states) is passed
    through to `evaluate(minibatch) -> (new_logp, entropy, new_values)`, which
    re-evaluates the current policy on a minibatch (a dict of the same keys). It may
    return a fourth item, an auxiliary loss added to the objective as it is (the DRL
    agents' penalty on means outside the action range); its mean is reported as "aux_loss"."""
    n = rollout["logp"].shape[0]
    params = [p for g in optimizer.param_groups for p in g["params"]]
    stats = {"policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0, "approx_kl": 0.0, "clip_frac": 0.0,
             "aux_loss": 0.0}
    steps = 0
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, minibatch):
            idx = order[start:start + minibatch]
            mb = {k: v[idx] for k, v in rollout.items()}
            out = evaluate(mb)
            new_logp, ent, new_v = out[:3]
            aux = out[3] if len(out) > 3 else None
            adv = mb["advantages"].to(new_logp.dtype)
            if normalize_adv and adv.numel() > 1:
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            old_logp = mb["logp"].to(new_logp.dtype)
            pl = clipped_policy_loss(new_logp, old_logp, adv, clip)
            vl = value_loss(new_v, mb["returns"].to(new_v.dtype), mb["values"].to(new_v.dtype), value_clip)
            ent = ent.mean()
            loss = pl + vf_coef * vl - ent_coef * ent
            if aux is not None:
                loss = loss + aux
                stats["aux_loss"] += float(aux.detach())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if max_grad_norm is not None:
                nn.utils.clip_grad_norm_(params, max_grad_norm)
            optimizer.step()
            with torch.no_grad():
                log_ratio = new_logp - old_logp
                stats["approx_kl"] += float(((log_ratio.exp() - 1) - log_ratio).mean())   # Schulman's k3 estimator
                stats["clip_frac"] += float(((log_ratio.exp() - 1).abs() > clip).float().mean())
            stats["policy_loss"] += pl.item()
            stats["value_loss"] += vl.item()
            stats["entropy"] += ent.item()
            steps += 1
    return {k: v / max(steps, 1) for k, v in stats.items()}

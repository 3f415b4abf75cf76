"""A recurrent Gaussian agent that acts once per step of a fixed-length episode.

The DRL pruning paper (Chen, Chen & Pan, NeurIPS 2020) runs its agents over the layers of
a network: one episode is one input's pass, one step is one layer. Nothing here
knows about pruning; the method module decides what a step observes and rewards.

  encoder      per step t its own E_t = ReLU(Linear(obs_size[t] -> hidden)) (steps may
               observe vectors of different sizes: a layer's input channels)
  recurrence   one tanh RNN cell shared by every step, input [E_t(obs_t), c], its hidden
               state carried from step to step (h_0 = 0); c is a scalar condition given
               with every step (the pruning budget)
  heads        mean    = Linear(h_t -> 1) + c, weights x0.2 and bias 0 at init, so the
                         first policy's mean is the condition itself
               log std = Linear(h_t -> 1), bias -4 at init (std ~0.018)
               value   = Linear(h_t -> 1), the critic
The official code's static agent uses an LSTM where this uses the RNN cell of the
runtime agent (the paper's text describes an RNN for both).

Observations of one episode are stored padded to the largest obs_size, shape
(batch, steps, max_size); `evaluate` re-runs the recurrence over them for PPO.
"""
from __future__ import annotations

import torch
from torch import nn

from .ppo import GaussianHead

LOG_STD_INIT = -4.0      # the official code's initial log std (std ~0.018)
MEAN_INIT_SCALE = 0.2    # the official code scales the mean head's initial weights by 0.2


class LayerAgent(nn.Module):
    """Per-step encoders -> shared RNN cell -> Gaussian actor (mean offset by the condition) and critic."""

    def __init__(self, obs_sizes, hidden: int = 32, log_std_init: float = LOG_STD_INIT,
                 mean_init_scale: float = MEAN_INIT_SCALE):
        super().__init__()
        self.obs_sizes = [int(n) for n in obs_sizes]
        self.hidden = int(hidden)
        self.encoders = nn.ModuleList(nn.Linear(n, hidden) for n in self.obs_sizes)
        self.rnn = nn.RNNCell(hidden + 1, hidden)
        self.actor = GaussianHead(hidden, 1, log_std_init=log_std_init, state_dependent_std=True,
                                  mean_init_scale=mean_init_scale)
        self.critic = nn.Linear(hidden, 1)

    @property
    def steps(self) -> int:
        return len(self.obs_sizes)

    def initial(self, batch: int, device=None) -> torch.Tensor:
        return torch.zeros(batch, self.hidden, device=device)

    def step(self, t: int, obs: torch.Tensor, h: torch.Tensor, cond: torch.Tensor):
        """One step: obs (B, obs_size[t]), h (B, hidden), cond (B,) -> mean (B,), log std (B,),
        value (B,) and the next hidden state."""
        e = self.encoders[t](obs[:, :self.obs_sizes[t]]).relu()
        h = self.rnn(torch.cat([e, cond[:, None].to(e.dtype)], 1), h)
        mu, log_std = self.actor(h, offset=cond[:, None].to(h.dtype))
        return mu[:, 0], log_std[:, 0], self.critic(h)[:, 0], h

    def evaluate(self, obs: torch.Tensor, actions: torch.Tensor, cond: torch.Tensor):
        """Re-run whole episodes: obs (B, T, max_size), actions (B, T), cond (B,) -> log-probabilities,
        entropies, values and means, each (B, T)."""
        h = self.initial(obs.shape[0], obs.device)
        logp, ent, values, means = [], [], [], []
        for t in range(self.steps):
            mu, log_std, v, h = self.step(t, obs[:, t], h, cond)
            logp.append(GaussianHead.log_prob(mu[:, None], log_std[:, None], actions[:, t, None]))
            ent.append(GaussianHead.entropy(log_std[:, None]))
            values.append(v)
            means.append(mu)
        return tuple(torch.stack(x, 1) for x in (logp, ent, values, means))

    def pad(self, obs: torch.Tensor) -> torch.Tensor:
        """One step's observation padded with zeros to the largest obs_size (for storage)."""
        width = max(self.obs_sizes)
        return nn.functional.pad(obs, (0, width - obs.shape[1]))

    def inference_params(self) -> int:
        """Parameters needed to act at inference (a = mean): encoders, the RNN cell and the mean head."""
        mods = [*self.encoders, self.rnn, self.actor.mean]
        return sum(p.numel() for m in mods for p in m.parameters())

    def inference_macs(self) -> int:
        """Multiply-accumulates per episode at inference: every step's encoder, one RNN step (input
        and hidden matrices) and the mean head."""
        h = self.hidden
        return sum(n * h + (h + 1) * h + h * h + h for n in self.obs_sizes)

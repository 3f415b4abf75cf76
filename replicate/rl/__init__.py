"""Reinforcement learning the DRL pruning paper needs (PPO), small and tested on its own.

Nothing here knows about pruning: the agents and rewards of papers/drl_pruning.md
build on these pieces.
"""
from __future__ import annotations

from .ppo import GaussianHead, clipped_policy_loss, gae, update, value_loss

__all__ = ["GaussianHead", "clipped_policy_loss", "gae", "update", "value_loss"]

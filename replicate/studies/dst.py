"""The DST study plan: the MNIST recipe shared by the DST notebooks.

Notebooks 01-03 (and 05, 06 for their reference runs) must build identical
configurations to share run records, so the schedule per profile lives here, once.
"""
from __future__ import annotations

import math

from ..config import RunConfig
from . import choose

MNIST_STEPS_20_EPOCHS = 20 * math.ceil(60000 / 64)  # the paper's 20 MNIST epochs at batch 64


def epochs_for_steps(n_train: int, steps: int, batch: int = 64) -> int:
    """Epochs of a smaller training set that give about `steps` optimizer steps."""
    return max(1, round(steps / math.ceil(n_train / batch)))


MODELS = ("lenet300-100", "lenet5-caffe")   # the models the MNIST recipe has a schedule for

def recipe_schedule(profile: str) -> dict:
    """Per profile: datasets, subset sizes and, per (model, dataset), a tuple
    (recipe epochs, longer-schedule epochs or None, alpha scale, fine-tune epochs
    of the magnitude context run). Scale 1 means the paper's alpha. In the cpu
    profile LeNet-5 runs a compressed schedule: 3 Fashion-MNIST epochs (and the
    same steps on MNIST-5k) with alpha x 20/3, so that lr * alpha * steps matches
    the paper's 20 epochs."""
    plans = {
        "smoke": {"datasets": ["mnist5k"], "train_size": 1000, "test_size": 500,
                  "runs": {("lenet300-100", "mnist5k"): (2, 3, 1.0, 1), ("lenet5-caffe", "mnist5k"): (1, None, 1.0, 1)}},
        "cpu": {"datasets": ["fashion_mnist", "mnist5k"], "train_size": None, "test_size": None,
                "runs": {("lenet300-100", "fashion_mnist"): (20, 60, 1.0, 2),
                         ("lenet300-100", "mnist5k"): (epochs_for_steps(4000, MNIST_STEPS_20_EPOCHS),
                                                       epochs_for_steps(4000, 3 * MNIST_STEPS_20_EPOCHS), 1.0, 10),
                         ("lenet5-caffe", "fashion_mnist"): (3, None, 20 / 3, 1),
                         ("lenet5-caffe", "mnist5k"): (epochs_for_steps(4000, 3 * math.ceil(60000 / 64)), None, 20 / 3, 5)}},
        "paper": {"datasets": ["mnist"], "train_size": None, "test_size": None,
                  "runs": {("lenet300-100", "mnist"): (20, 60, 1.0, 2), ("lenet5-caffe", "mnist"): (20, 60, 1.0, 2)}},
    }
    return choose(profile, plans)


def recipe_config(model: str, dataset: str, seed: int, profile: str, epochs: int,
                  alpha: float | None = None) -> RunConfig:
    """The paper's MNIST recipe (SGD lr 0.01, momentum 0.9, batch 64, no weight
    decay, no input normalisation): dense when alpha is None, else DST with alpha."""
    plan = recipe_schedule(profile)
    c = RunConfig(model=model, dataset=dataset, seed=seed, profile=profile, epochs=epochs, lr=0.01,
                  momentum=0.9, batch_size=64, train_size=plan["train_size"], test_size=plan["test_size"])
    return c if alpha is None else c.replace(method="dst", args={"alpha": alpha})


def steps_vs_paper(epochs: int, n_train: int, paper_steps: int = MNIST_STEPS_20_EPOCHS, batch: int = 64) -> str:
    """Our optimizer steps over the paper's (20 MNIST epochs at batch 64 by default), as claims.budget text."""
    from ..claims import budget

    return budget(epochs * math.ceil(n_train / batch), paper_steps)


def budget_vs_paper(models, datasets, profile: str) -> str:
    """The recipe's budget relative to the paper's for these models and datasets: one value when they
    agree, else "<model> on <dataset>: <value>" for each."""
    from ..data import spec

    plan = recipe_schedule(profile)
    found = {(m, d): steps_vs_paper(plan["runs"][(m, d)][0], plan["train_size"] or spec(d).train_examples)
             for m in models for d in datasets if (m, d) in plan["runs"]}
    if len(set(found.values())) == 1:
        return next(iter(found.values()))
    return "; ".join(f"{m} on {d}: {v}" for (m, d), v in found.items()) or "unknown"


# Notebook 08 (the learning-rate-decay jump): LeNet-5-Caffe with a step decay (lr x 0.1) at mid-training,
# at two initial learning rates, the paper's LeNet alpha, SGD with momentum 0.9, batch 64.
LR_DECAY = {
    "smoke": {"model": "lenet5-caffe", "dataset": "mnist5k", "train_size": 500, "test_size": 300,
              "epochs": 4, "decay_at": 2, "lrs": (0.1, 0.01), "alpha": 5e-4, "window": 1},
    "cpu": {"model": "lenet5-caffe", "dataset": "mnist5k", "train_size": None, "test_size": None,
            "epochs": 40, "decay_at": 20, "lrs": (0.1, 0.01), "alpha": 5e-4, "window": 3},
    "paper": {"model": "lenet5-caffe", "dataset": "mnist", "train_size": None, "test_size": None,
              "epochs": 40, "decay_at": 20, "lrs": (0.1, 0.01), "alpha": 5e-4, "window": 3},
}


def lr_decay_plan(profile: str) -> dict:
    return choose(profile, LR_DECAY)


def lr_decay_config(seed: int, profile: str, lr: float, dst: bool = True) -> RunConfig:
    """Notebook 08's run: DST (or dense, `dst=False`) with lr divided by 10 after `decay_at` epochs."""
    p = lr_decay_plan(profile)
    c = RunConfig(model=p["model"], dataset=p["dataset"], seed=seed, profile=profile, epochs=p["epochs"], lr=lr,
                  momentum=0.9, batch_size=64, lr_schedule="step", lr_milestones=(p["decay_at"],),
                  train_size=p["train_size"], test_size=p["test_size"])
    return c.replace(method="dst", args={"alpha": p["alpha"]}) if dst else c

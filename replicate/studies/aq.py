"""The run configurations shared by the adaptive-quantization notebooks (notebooks/aq/).

Notebooks 01-04 read the same runs (one grid per base model), so they are
built here once: a notebook asks for `grid(model, dataset, seed, plan)` and the
run store returns what an earlier notebook already ran.

The base models are trained to (near) convergence first, as the brief asks:
Adam with a cosine schedule for many epochs, with a seeded validation split held
out of the training set (every compressed run shares it, so a notebook can select
an operating point on validation error and report the test error).
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

from ..config import ConfigError, RunConfig, check_choice
from . import per_combo
from ..methods import magnitude

MODELS = ("lenet300-100", "lenet5-caffe")

# Per profile: datasets, base-training epochs per (model, dataset), validation size per
# dataset, the fine-tuning budgets, and the grids of every method.
PLANS = {
    "smoke": {
        "datasets": ("mnist5k",), "train_size": 1000, "test_size": 500,
        "val_size": {"mnist5k": 200},
        "base_epochs": {("lenet300-100", "mnist5k"): 2, ("lenet5-caffe", "mnist5k"): 2},
        "bnn_epochs": {("lenet300-100", "mnist5k"): 2, ("lenet5-caffe", "mnist5k"): 2},
        "finetune_epochs": 1, "prune_epochs": 1,
        "deltas": (0.01, 0.1), "uniform_bits": (2, 4, 8), "uniform_ft_bits": (2,),
        "dc_compressions": (10.0,), "dc_fc_bits": (5,),
        "long_base": {("lenet5-caffe", "mnist5k"): 2},
    },
    "cpu": {
        "datasets": ("fashion_mnist", "mnist5k"), "test_size": None,
        # LeNet-5-Caffe on Fashion-MNIST trains on a seeded 10,000-image subset of the
        # training set (9,000 + 1,000 for validation): on all 60,000 images its share of the
        # shared grid alone took about 65 min of the two cores, over the 45-min budget. Its base
        # trains 50 epochs there: 20 (as on all 60,000 images) are far fewer steps on 9,000 images
        # and did not bring its training loss near zero
        "train_size": {("lenet5-caffe", "fashion_mnist"): 10000},
        "val_size": {"fashion_mnist": 5000, "mnist5k": 500, ("lenet5-caffe", "fashion_mnist"): 1000},
        "base_epochs": {("lenet300-100", "fashion_mnist"): 60, ("lenet300-100", "mnist5k"): 100,
                        ("lenet5-caffe", "fashion_mnist"): 50, ("lenet5-caffe", "mnist5k"): 60},
        # BinaryConnect on MNIST-5k: half the base's epochs, to fit the budget (its error
        # is in the headline table next to the base's)
        "bnn_epochs": {("lenet300-100", "fashion_mnist"): 30, ("lenet300-100", "mnist5k"): 50,
                       ("lenet5-caffe", "fashion_mnist"): 16, ("lenet5-caffe", "mnist5k"): 30},
        "finetune_epochs": 1, "prune_epochs": 3,
        "deltas": (0.001, 0.003, 0.01, 0.03, 0.1, 0.3),
        "uniform_bits": (1, 2, 3, 4, 5, 6, 8), "uniform_ft_bits": (2, 3, 4),
        "dc_compressions": (4.0, 10.0, 20.0), "dc_fc_bits": (5, 3),
        # notebook 05's one-option-at-a-time runs: LeNet-5-Caffe on Fashion-MNIST is left out
        # (its 13 ablation runs x 3 seeds, a whole-training-set gradient among them, do not fit the budget)
        "ablation_combos": (("lenet300-100", "fashion_mnist"), ("lenet300-100", "mnist5k"), ("lenet5-caffe", "mnist5k")),
        # the current-point linearisation re-derives the margins at every iteration (LeNet-5-Caffe
        # on MNIST-5k: about 140 s a run); notebook 05 runs it at the three middle bounds
        "current_deltas": (0.003, 0.01, 0.03),
        # notebook 05's headline re-test: the headline base trained four times as long
        "long_base": {("lenet5-caffe", "mnist5k"): 4},
    },
    "paper": {
        "datasets": ("mnist",), "train_size": None, "test_size": None,
        "val_size": {"mnist": 5000},
        "base_epochs": {("lenet300-100", "mnist"): 100, ("lenet5-caffe", "mnist"): 60},
        "bnn_epochs": {("lenet300-100", "mnist"): 100, ("lenet5-caffe", "mnist"): 60},
        "finetune_epochs": 2, "prune_epochs": 10,
        "deltas": (0.001, 0.003, 0.01, 0.03, 0.1, 0.3),
        "uniform_bits": (1, 2, 3, 4, 5, 6, 8), "uniform_ft_bits": (2, 3, 4),
        "dc_compressions": (4.0, 10.0, 20.0), "dc_fc_bits": (5, 3),
        "long_base": {("lenet5-caffe", "mnist"): 4},
    },
}
HEADLINE_DELTA = 0.01      # the AQ operating point of the headline table (loss bound L0 + 0.01)
HEADLINE_BITS = 4          # the uniform operating point of the headline table
HEADLINE_DC = 10.0         # the pruning level under Deep Compression's headline row


def plan(profile: str) -> dict:
    check_choice("profile", profile, tuple(PLANS))
    return PLANS[profile]


def base(model: str, dataset: str, seed: int, profile: str) -> RunConfig:
    """The converged full-precision model every method starts from."""
    p = plan(profile)
    if (model, dataset) not in p["base_epochs"]:
        raise ConfigError(f"no base model planned for {model} on {dataset} in the {profile} profile; "
                          f"planned: {sorted(p['base_epochs'])}")
    return RunConfig(method="dense", model=model, dataset=dataset, seed=seed, profile=profile,
                     epochs=p["base_epochs"][(model, dataset)], batch_size=128, optimizer="adam", lr=1e-3,
                     lr_schedule="cosine", train_size=per_combo(p["train_size"], model, dataset),
                     test_size=p["test_size"], val_size=per_combo(p["val_size"], model, dataset))


def aq(b: RunConfig, delta: float, **args) -> RunConfig:
    """Adaptive quantization of base `b` with loss bound L0 + delta (or named options)."""
    return dataclasses.replace(b, method="adaptive_quant", epochs=0, lr_schedule="constant", parent=b,
                               args={"delta": float(delta), **args})


def uniform(b: RunConfig, bits: int, finetune: bool = False) -> RunConfig:
    """Per-layer uniform `bits` quantization of `b`, optionally fine-tuned with the
    straight-through estimator (Adam, lr 1e-4)."""
    p = plan(b.profile)
    return dataclasses.replace(b, method="uniform_quant", epochs=p["finetune_epochs"] if finetune else 0, lr=1e-4,
                               lr_schedule="constant", parent=b, args={"bits": int(bits)})


def bnn(b: RunConfig) -> RunConfig:
    """BinaryConnect-style training from scratch (binary weights sign x mean|w| per
    layer in the forward pass, float shadow weights updated with STE), same recipe as
    the base but its own epoch budget. The run keeps the shadow weights (so notebook 06
    can compress them); `binarized(...)` is the binary network as a run of its own."""
    p = plan(b.profile)
    return b.replace(method="uniform_quant", epochs=p["bnn_epochs"][(b.model, b.dataset)],
                     args={"bits": 1, "latent": True})


def binarized(bnn_cfg: RunConfig) -> RunConfig:
    """The binarized network of a `bnn` run as a run of its own (sign x mean|w| of its
    shadow weights, no training): a parent for methods applied to the binary weights."""
    return dataclasses.replace(bnn_cfg, method="uniform_quant", epochs=0, parent=bnn_cfg, args={"bits": 1})


def pruned(b: RunConfig, compression: float) -> RunConfig:
    """Magnitude pruning of `b` to `compression` (one shot, one global threshold),
    retrained with the mask fixed at the base recipe's learning rate (Adam, lr 1e-3,
    constant). A lower retraining rate (1e-4) or Han's per-layer std thresholds left
    10x-pruned models far from recovered within the cpu profile's 3 epochs."""
    p = plan(b.profile)
    return magnitude.oneshot(b, compression, p["prune_epochs"], scope="global", lr=1e-3, lr_schedule="constant")


def deep_compression(b: RunConfig, compression: float, fc_bits: int = 5, conv_bits: int = 8) -> RunConfig:
    """Deep Compression after `pruned(b, compression)`: k-means sharing, fine-tuned
    shared values (Adam, lr 1e-4, constant), Huffman-coded size."""
    parent = pruned(b, compression)
    p = plan(b.profile)
    return dataclasses.replace(parent, method="deep_compression", epochs=p["finetune_epochs"], lr=1e-4, parent=parent,
                               args={"fc_bits": int(fc_bits), "conv_bits": int(conv_bits)})


def grid(model: str, dataset: str, seed: int, profile: str) -> dict:
    """Every run of the shared grid for one base model, keyed by (method, setting)."""
    p, b = plan(profile), base(model, dataset, seed, profile)
    out = {("base", None): b}
    out.update({("aq", d): aq(b, d) for d in p["deltas"]})
    out.update({("uniform", k): uniform(b, k) for k in p["uniform_bits"]})
    out.update({("uniform+ft", k): uniform(b, k, finetune=True) for k in p["uniform_ft_bits"]})
    out[("bnn", None)] = bnn(b)                       # float shadow weights
    out[("binarized", None)] = binarized(out[("bnn", None)])   # the binary network itself
    out.update({("pruned", c): pruned(b, c) for c in p["dc_compressions"]})
    out.update({("dc", (c, fb)): deep_compression(b, c, fb) for c in p["dc_compressions"] for fb in p["dc_fc_bits"]})
    return out


def run_grids(combos, seeds, profile: str) -> dict:
    """Run (or read from the store) the shared grid of every (model, dataset) in
    `combos` and seed; returns {(model, dataset, seed, key): record}. One schedule for the three
    groups (notebook.run_groups): each child starts as soon as its own parent is stored."""
    from .. import notebook as nb
    from ..runner import run

    grids = {(m, d, s): grid(m, d, s, profile) for m, d in combos for s in seeds}
    nb.run_groups({
        "base models (trained to near convergence)": [g[("base", None)] for g in grids.values()],
        "adaptive quantization, uniform k-bit, binarized, magnitude pruning":
            [c for g in grids.values() for k, c in g.items() if k[0] in ("aq", "uniform", "uniform+ft", "bnn", "pruned")],
        "Deep Compression (k-means + Huffman), binarized networks":
            [c for g in grids.values() for k, c in g.items() if k[0] in ("dc", "binarized")]})
    return {(m, d, s, k): run(c) for (m, d, s), g in grids.items() for k, c in g.items()}


class Selection(NamedTuple):
    """What an adaptive-quantization notebook's parameters resolve to (unpack it)."""
    profile: str
    plan: dict
    seeds: list
    models: list
    datasets: list
    combos: list      # (model, dataset) pairs, datasets outer


def select(profile, seeds=None, models=None, datasets=None, notebook: str | None = None) -> Selection:
    """The shared opening of the aq notebooks: set up the profile (notebook.setup), take its plan,
    check the list parameters against it (None: all of them) and say what runs."""
    from .. import notebook as nb

    p = nb.setup(profile, notebook=notebook)
    pl = plan(p.name)
    seeds = list(seeds) if seeds is not None else list(p.seeds)
    models = nb.check_subset("model", models if models is not None else MODELS, MODELS)
    datasets = nb.check_subset("dataset", datasets if datasets is not None else pl["datasets"], pl["datasets"])
    print(f"models {models} on {datasets}; seeds {seeds}")
    return Selection(p.name, pl, seeds, models, datasets, [(m, d) for d in datasets for m in models])


def accessors(rec: dict, seeds):
    """(records, err, val_err, derr, cr) over run_grids' records: the runs of one grid key for every
    seed; test and validation error in %; the error change in points against the same seed's base
    model; the weight compression."""
    from .. import report

    def records(m, d, key):
        return [rec[(m, d, s, key)] for s in seeds]

    def derr(r):
        return error_change(rec, r)

    return records, report.metric("test_error", 100), report.metric("val_error", 100), derr, compression_of


def error_change(rec: dict, record: dict, base_key=("base", None)) -> float:
    """Test error of `record` minus that of the same seed's base model, in points."""
    c = record["config"]
    base_rec = rec[(c["model"], c["dataset"], c["seed"], base_key)]
    return 100 * (record["metrics"]["test_error"] - base_rec["metrics"]["test_error"])


def layer_stats(record: dict) -> dict:
    """Per layer of an adaptive-quantization record: weights, pruned fraction, total
    payload bits, mean payload bits of the kept weights, the layer's compression and
    its bits histogram {bits: count}."""
    out = {}
    for name, l in record["metrics"]["aq"]["layers"].items():
        h = {int(b): c for b, c in l["bits_histogram"].items()}
        kept = sum(c for b, c in h.items() if b > 0)
        bits = sum(b * c for b, c in h.items())
        out[name] = {"weights": l["weights"], "pruned": l["pruned"], "kept_bits": bits / kept if kept else float("nan"),
                     "compression": 32 * l["weights"] / max(bits, 1e-12), "bits": bits, "hist": h}
    return out


def compression_of(record: dict) -> float:
    """Compression (32-bit floats / stored bits, payload only) of any run of the grid."""
    m = record["metrics"]
    if "aq" in m:
        return m["aq"]["size"]["compression_payload"]
    if "quant" in m:
        return m["quant"]["compression_payload"]
    return m["compression"]     # dense and pruned runs: weights / non-zero weights (32-bit each)


# -- notebook 05: the algorithm's own options --------------------------------------------

ABLATION_RADII = (2 ** -8, 2 ** -4)      # around the default trust radius 2^-6
LONG_ITERS = 60                         # the "about 25 iterations" question: let it run longer
GRAD_SAMPLES = (1000, None)             # around the default 10,000 (None: the whole training split)


def short_base(model: str, dataset: str, seed: int, profile: str) -> RunConfig:
    """The base recipe with a quarter of the epochs: a model that is not converged."""
    b = base(model, dataset, seed, profile)
    return b.replace(epochs=max(1, b.epochs // 4))


def long_base(model: str, dataset: str, seed: int, profile: str) -> RunConfig | None:
    """The base recipe with `long_base` times the epochs (the plan names the pairs; None elsewhere): does
    a longer-trained base bring the headline compression closer to the paper's?"""
    factor = plan(profile).get("long_base", {}).get((model, dataset))
    if factor is None:
        return None
    b = base(model, dataset, seed, profile)
    return b.replace(epochs=b.epochs * factor)


def ablation_combos(profile: str) -> tuple:
    """The (model, dataset) pairs notebook 05 varies the options on (default: all planned)."""
    p = plan(profile)
    return tuple(p.get("ablation_combos", sorted(p["base_epochs"])))


def ablations(model: str, dataset: str, seed: int, profile: str) -> dict:
    """Adaptive-quantization runs that vary one option at a time around the defaults
    (at the headline loss bound unless the option is the bound itself)."""
    p, b = plan(profile), base(model, dataset, seed, profile)
    d = HEADLINE_DELTA
    out = {("radius0", r): aq(b, d, radius0=r) for r in ABLATION_RADII}
    out[("long", LONG_ITERS)] = aq(b, d, max_iters=LONG_ITERS, patience=LONG_ITERS)
    out.update({("current", x): aq(b, x, linearize="current") for x in p.get("current_deltas", p["deltas"])})
    out[("tau_rounding", "exact")] = aq(b, d, tau_rounding="exact")
    out.update({("grad_samples", n): aq(b, d, grad_samples=n) for n in GRAD_SAMPLES})
    out[("relative", 0.1)] = aq(b, 0.1, bound="relative")
    sb = short_base(model, dataset, seed, profile)
    out[("short_base", None)] = sb
    out[("short_base_aq", d)] = aq(sb, d)
    return out


# -- notebook 06: binarized starting models -----------------------------------------------

BNN_DELTAS = (0.01, 0.1)


def bnn_study(model: str, dataset: str, seed: int, profile: str) -> dict:
    """(a) adaptive quantization of a BinaryConnect model's float shadow weights, then
    re-binarized; (b) adaptive quantization of its binary weights."""
    b = base(model, dataset, seed, profile)
    sh = bnn(b)
    bi = binarized(sh)
    out = {("shadow", None): sh, ("binary", None): bi}
    for dl in BNN_DELTAS:
        a = aq(sh, dl)
        out[("aq_shadow", dl)] = a
        out[("aq_shadow_rebinarized", dl)] = binarized(a)
        out[("aq_binary", dl)] = aq(bi, dl)
    return out

"""Small helpers that keep every notebook's first cells the same.

A notebook's derived-settings cell calls `setup(profile)`: it resolves the
profile (REPLICATE_PROFILE wins when set, so CI's smoke profile cannot be
overridden by a parameter cell papermill injected into a committed notebook),
validates it, fixes the thread count, applies the figure style and prints one
line saying what runs.
"""
from __future__ import annotations

import os

from . import profiles, report, train
from .config import check_choice


def setup(profile: str | None) -> profiles.Profile:
    p = profiles.get(profile)
    threads = train.set_threads()
    report.style()
    print(f"profile: {p.name} ({p.description}); torch threads: {threads}; "
          f"device: {train.default_device()}")
    return p


def choose(profile: str, plans: dict) -> dict:
    """The plan (settings dict) of the profile in force."""
    check_choice("profile", profile, tuple(plans))
    return plans[profile]


def check_subset(what: str, values, valid) -> list:
    """Validate a list parameter, e.g. models=[...]; one-line error naming the valid values."""
    for v in values:
        check_choice(what, v, tuple(valid))
    return list(values)


def _run_in_worker(cfg_dict: dict) -> str:
    """Worker entry point: one thread per process, so two workers fill two cores."""
    import warnings

    os.environ["REPLICATE_THREADS"] = "1"
    from .config import RunConfig
    from .runner import run

    # A diverged run is recorded as failed and counted in run_all's summary line; its
    # warning would otherwise reach the notebook's output from this process's stderr.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run(RunConfig.from_dict(cfg_dict))["status"]


# Rough per-image training cost of each model relative to LeNet-300-100 on this kind of
# machine; only used to start the longest runs first (unknown models count as conv nets).
_RELATIVE_COST = {"lenet300-100": 1.0, "lenet5-caffe": 15.0}
_TRAIN_IMAGES = {"mnist": 60000, "fashion_mnist": 60000, "mnist5k": 4000}


def _cost_estimate(cfg) -> float:
    """A rough cost of running `cfg` (epochs x training images x model cost), for ordering only."""
    images = cfg.train_size or _TRAIN_IMAGES.get(cfg.dataset, 50000)
    return max(cfg.epochs, 0.5) * images * _RELATIVE_COST.get(cfg.model, 15.0)


def _pending_cost(cfg, have) -> float:
    """The cost estimate of `cfg` plus that of each ancestor `have` says is not stored yet
    (a worker running `cfg` runs those first)."""
    total, c = 0.0, cfg
    while c is not None and not have(c):
        total += _cost_estimate(c)
        c = c.parent
    return total


def workers_default() -> int:
    """REPLICATE_WORKERS (default 1): processes that run independent configurations at once."""
    return max(1, int(os.environ.get("REPLICATE_WORKERS", "1")))


def run_all(cfgs, label: str, workers: int | None = None) -> list:
    """Run (or fetch from the store) each configuration; print one summary line.

    With workers > 1, the configurations missing from the store are run in
    separate processes (one thread each) and then read back from the store.
    Give only independent configurations (no run whose parent is in the list).
    The missing runs start longest first (by a rough estimate), so that two workers
    finish together; the order changes no result (every run has its own seed)."""
    from .runner import _usable, fresh_requested, run
    from .store import Store

    cfgs = list(cfgs)
    fresh = fresh_requested()
    missing = []
    for c in cfgs:
        c.validate()
        if not _usable(Store.for_profile(c.profile).get(c), fresh):
            missing.append(c)
    workers = workers or workers_default()
    if workers > 1 and len(missing) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
            def have(c):
                return _usable(Store.for_profile(c.profile).get(c), fresh)

            order = sorted(missing, key=lambda c: _pending_cost(c, have), reverse=True)
            list(pool.map(_run_in_worker, [c.to_dict() for c in order]))
    records = [run(c) for c in cfgs]
    failed = sum(r["status"] != "ok" for r in records)
    print(f"{label}: {len(cfgs)} runs ({len(cfgs) - len(missing)} read from the store, {len(missing)} run now"
          + (f", {failed} failed" if failed else "") + ")")
    return records

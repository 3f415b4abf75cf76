"""Stored analyses of trained models: what a notebook computes from a run's weights.

A run record keeps a run's metrics; its weights live in a git-ignored cache.
Whatever a notebook computes from the weights themselves (activation
statistics, the kept fraction of each input pixel, the distribution of a
saliency) is an *analysis*, and it is stored like a run: one JSON record per
(run, analysis name, parameters, version), written atomically, with a
checksum, next to the run store (``results/analyses/`` for the committed
store, ``build/smoke/analyses/`` for smoke runs). A fresh clone therefore
re-executes a notebook from the committed records without its weights.

    value = analyses.compute(cfg, "activation_stats", lambda model, ds: ..., params={...})

When no analysis record exists, the run's weights are loaded (from the cache,
or by re-running the run; with ``REPLICATE_NO_TRAIN=1`` that is an error) and
`fn(model, data)` is computed and stored. If re-running gave weights whose
headline metric differs from the stored record's, the analysis record says so
(``weights: "recomputed, differs from record"`` with the metrics of the
weights it was computed from), and `compute` warns: the analysis and the
record then describe different weights, and the notebook says which it used.

Bump `version` when `fn` changes what it computes; old records are ignored.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Callable

from .config import RunConfig
from .store import Store, _aside, _checksum, write_json_atomic

SCHEMA = 1


def analyses_dir(store: Store) -> Path:
    """Where a store's analyses live: results/runs -> results/analyses."""
    root = store.root
    return root.parent / "analyses" if root.name == "runs" else root.with_name(root.name + "-analyses")


def _jsonable(value: Any) -> Any:
    """Plain JSON values from tensors, arrays and numpy scalars (NaN kept as None)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().tolist()
    elif hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"analysis values must be JSON-like (numbers, lists, dicts, tensors); got {type(value).__name__}")


def analysis_key(cfg: RunConfig, name: str, params: dict | None, version: int) -> str:
    body = json.dumps({"run": cfg.key, "name": name, "params": _jsonable(params or {}), "version": version},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()[:12]


def path_of(cfg: RunConfig, name: str, params: dict | None = None, version: int = 1,
            store: Store | None = None) -> Path:
    store = store or Store.for_profile(cfg.profile)
    akey = analysis_key(cfg, name, params, version)
    return analyses_dir(store) / name / f"{cfg.model}_{cfg.dataset}_{cfg.profile}_{cfg.key}_{akey}.json"


def read(path: Path, *, run_checksum: str | None = None) -> dict | None:
    """A stored analysis record, or None when it is absent, corrupt or belongs to another
    version of its run record (then it is recomputed; corrupt files are moved aside)."""
    if not path.exists():
        return None
    try:
        rec = json.loads(path.read_text())
        ok = isinstance(rec, dict) and "checksum" in rec and rec["checksum"] == _checksum(rec)
    except (json.JSONDecodeError, UnicodeDecodeError):
        ok = False
    if not ok:
        bad = _aside(path)
        os.replace(path, bad)
        warnings.warn(f"corrupt analysis record {path.name}; moved to {bad.name}, recomputing", stacklevel=3)
        return None
    if run_checksum is not None and rec.get("run_checksum") != run_checksum:
        return None
    return rec


def _write(path: Path, rec: dict) -> None:
    rec = {**rec, "schema": SCHEMA}
    rec["checksum"] = _checksum(rec)
    write_json_atomic(path, rec, separators=(",", ":"))


def compute(cfg: RunConfig, name: str, fn: Callable, *, params: dict | None = None, version: int = 1,
            store: Store | None = None) -> Any:
    """The value of analysis `name` of run `cfg`: stored, or computed as fn(model, data) and stored.

    `params` are the analysis's own settings (they enter its key); `fn` must not depend on
    anything else. The run itself must be in the store (or is run first)."""
    from . import runner  # lazy: reading a stored analysis needs neither torch nor the methods

    store = store or Store.for_profile(cfg.profile)
    record = runner.run(cfg, store=store)
    if record["status"] != "ok":
        raise RuntimeError(f"run {cfg.label} ({cfg.key}) failed ({record.get('error')}); it has no model to analyse")
    path = path_of(cfg, name, params, version, store)
    rec = read(path, run_checksum=record["checksum"])
    if rec is None:
        model, used = runner.load_model(cfg, store=store)
        value = _jsonable(fn(model, runner.load_data(cfg)))
        weights = used.get("weights", "recorded") if isinstance(used, dict) else "recorded"
        rec = {"run_key": cfg.key, "run_label": cfg.label, "run_checksum": record["checksum"],
               "analysis": name, "params": _jsonable(params or {}), "version": version,
               "key": analysis_key(cfg, name, params, version), "value": value,
               "weights": weights, "weights_metrics": {k: v for k, v in used.get("metrics", {}).items()
                                                       if k.startswith("test_")},
               "provenance": runner.provenance_now()}
        _write(path, rec)
    if rec["weights"] != "recorded":
        warnings.warn(f"analysis {name} of {cfg.label} was computed from re-trained weights that differ from the "
                      f"stored record (theirs: {rec['weights_metrics']}); it describes those weights", stacklevel=2)
    return rec["value"]


def _recover_in_worker(cfg_dict: dict) -> None:
    """Worker entry point: re-run one run to put its weights in the cache (on its record's threads)."""
    from . import runner
    runner.load_model(RunConfig.from_dict(cfg_dict))


def compute_all(cfgs, name: str, fn: Callable, *, params: dict | None = None, version: int = 1,
                workers: int | None = None) -> list:
    """`compute` for each configuration. Runs whose analysis is not stored and whose weights are
    not cached are first re-run in worker processes (REPLICATE_WORKERS), each on its record's
    thread count, so that recovering many models uses every core."""
    from .notebook import workers_default

    cfgs = list(cfgs)
    missing = []
    for c in cfgs:
        store = Store.for_profile(c.profile)
        record = store.get(c)
        if record is None or record["status"] != "ok":
            continue
        if read(path_of(c, name, params, version, store), run_checksum=record["checksum"]) is None \
                and not store.weights_path(c).exists():
            missing.append(c)
    workers = workers or workers_default()
    if workers > 1 and len(missing) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        from .train import check_training_allowed, note
        check_training_allowed(f"{len(missing)} run(s) whose weights analysis {name} needs")
        note(f"  {name}: recovering the weights of {len(missing)} run(s) in {min(workers, len(missing))} processes")
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
            list(pool.map(_recover_in_worker, [c.to_dict() for c in missing]))
    return [compute(c, name, fn, params=params, version=version) for c in cfgs]

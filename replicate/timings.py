"""Live timings, kept apart from the results a reader compares across commits.

A wall-clock measurement (the cost of one training step, of one compression
run) depends on the machine and on whatever else runs on it, so it cannot be
reproduced from the run store. A notebook that measures one does it through

    df = timings.measured("sensitivity", "04_step_cost", profile, measure)

which writes ``results/tables/<paper>/<name>_timing.csv`` with a sidecar
``<name>_timing.json`` (when, at which commit, on how many threads, on which
processor). Re-executing the notebook reads the stored timing instead of
measuring again, so a warm re-execution trains nothing and rewrites no table;
``REPLICATE_TIMINGS=1`` (``make timings``) measures anew. When nothing is
stored, the timing is measured (or, with ``REPLICATE_NO_TRAIN=1``, that is an
error naming the command to run). Claims that rest on a timing quote
`described(...)`, which names when and where it was measured.
"""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Callable

import pandas as pd

from .report import output_root


def remeasure_requested() -> bool:
    return os.environ.get("REPLICATE_TIMINGS", "0") not in ("0", "", "false", "no")


def paths(paper: str, name: str, profile: str) -> tuple[Path, Path]:
    d = output_root(profile) / "results" / "tables" / paper
    return d / f"{name}_timing.csv", d / f"{name}_timing.json"


def measured(paper: str, name: str, profile: str, measure: Callable[[], pd.DataFrame],
             *, remeasure: bool | None = None) -> pd.DataFrame:
    """The timing table `name`: stored, or measured now by `measure()` (a DataFrame) and stored."""
    from . import runner, train  # lazy: reading a stored timing needs no torch

    csv, meta = paths(paper, name, profile)
    remeasure = remeasure_requested() if remeasure is None else remeasure
    if csv.exists() and meta.exists() and not remeasure:
        info = json.loads(meta.read_text())
        print(f"timing {name}: stored, {describe(info)}; REPLICATE_TIMINGS=1 (make timings) measures again")
        return pd.read_csv(csv)
    train.check_training_allowed(f"timing {name} (not stored)")
    df = measure()
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"timing {name}: measure() must return a DataFrame, got {type(df).__name__}")
    csv.parent.mkdir(parents=True, exist_ok=True)
    tmp = csv.with_suffix(".csv.tmp")
    df.to_csv(tmp, index=False, float_format="%.4g")
    os.replace(tmp, csv)
    prov = runner.provenance_now()
    info = {"name": name, "profile": profile, "measured": prov["time"][:19] + "Z", "git_commit": prov["git_commit"],
            "git_dirty": prov["git_dirty"], "threads": train.set_threads(), "processor": platform.processor() or
            platform.machine(), "torch_version": prov["torch_version"]}
    meta.write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    print(f"timing {name}: measured now, {describe(info)}")
    return pd.read_csv(csv)   # what a later re-execution reads: the same rounding either way


def describe(info: dict) -> str:
    commit = (info.get("git_commit") or "unknown")[:10] + ("+changes" if info.get("git_dirty") else "")
    return f"measured {info['measured'][:10]} at commit {commit} on {info['threads']} thread(s)"


def described(paper: str, name: str, profile: str) -> str:
    """One line for a claim's evidence: when and where the stored timing was measured."""
    _, meta = paths(paper, name, profile)
    return f"timing {name}_timing.csv, " + describe(json.loads(meta.read_text())) if meta.exists() else \
        f"timing {name}: not stored"

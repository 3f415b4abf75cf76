"""Re-run stored records and compare: `python -m replicate verify`.

A record is replayable when its configuration alone (plus the code it names) gives
its numbers again. `verify` re-runs records in a temporary store and weight cache
(the committed store is only read), each on the thread count its record names, and
compares each headline metric with the stored one against the seed-to-seed spread
of the record's group (the same configuration with the other seeds, in the store):

* `exact`: equal to the last digit (expected on the machine that made the record);
* `within spread`: different, but by no more than twice the group's standard deviation;
* `OUTSIDE`: by more than that (or different where the group has no spread to compare).

Records are chosen by key, or the N cheapest of a profile (wall time of the run and of
every parent it needs, as recorded). The exit status is 1 when any metric is OUTSIDE.
"""
from __future__ import annotations

import math
import os
import statistics
import tempfile
import time
from pathlib import Path

from .config import RunConfig
from .store import Store

METRICS = ("test_acc", "test_bpc", "test_ppl", "remaining", "compression")


def _cost(record: dict, store: Store) -> float:
    """Recorded wall time of the run and of each parent that a fresh store would have to train."""
    total = store.own_seconds(record)
    parent = RunConfig.from_dict(record["config"]).parent
    while parent is not None:
        p = store.get(parent)
        total += store.own_seconds(p) if p else math.inf
        parent = parent.parent
    return total


def choose(store: Store, profile: str, keys=(), sample: int = 5) -> list:
    records = [r for r in store.records() if r["config"]["profile"] == profile]
    if keys:
        chosen = []
        for k in keys:
            hits = [r for r in records if r["key"].startswith(k)]
            if len(hits) != 1:
                from .errors import ConfigError
                raise ConfigError(f"key {k!r} matches {len(hits)} record(s) of profile {profile}")
            chosen.append(hits[0])
        return chosen
    ok = [r for r in records if r["status"] == "ok"]
    return sorted(ok, key=lambda r: (_cost(r, store), r["key"]))[:sample]


def group_values(store_records: list, record: dict, metric: str) -> list:
    """The metric over the record's group: the same configuration with the other seeds (the
    record itself left out, so that a wrong record cannot widen the spread it is judged by)."""
    def without_seed(c):
        d = dict(c)
        d.pop("seed", None)
        if d.get("parent"):
            d["parent"] = without_seed(d["parent"])
        return d

    target = without_seed(record["config"])
    return [r["metrics"][metric] for r in store_records
            if r["status"] == "ok" and metric in r["metrics"] and r["key"] != record["key"]
            and without_seed(r["config"]) == target]


def judge(stored: float, rerun: float, spread: float | None) -> str:
    if stored == rerun:
        return "exact"
    if spread is not None and not math.isnan(spread) and abs(rerun - stored) <= 2 * spread:
        return "within spread"
    return "OUTSIDE"


def verify(records: list, store: Store, progress=print) -> list:
    """Re-run each record in a temporary store; one row per (record, metric)."""
    from . import runner, train

    everything = list(store.records())
    rows = []
    saved = {k: os.environ.get(k) for k in ("REPLICATE_STORE", "REPLICATE_CACHE", "REPLICATE_THREADS")}
    with tempfile.TemporaryDirectory(prefix="replicate-verify-") as tmp:
        try:
            os.environ["REPLICATE_STORE"] = str(Path(tmp) / "runs")
            os.environ["REPLICATE_CACHE"] = str(Path(tmp) / "cache")
            for i, rec in enumerate(records, 1):
                cfg = RunConfig.from_dict(rec["config"])
                threads = rec["provenance"].get("threads")
                progress(f"[{i}/{len(records)}] re-running {cfg.label} ({rec['key']}) on {threads} thread(s)")
                t0 = time.perf_counter()
                # the lineage root first, each run on the thread count of its own record
                lineage, c = [], cfg
                while c is not None:
                    lineage.insert(0, c)
                    c = c.parent
                for c in lineage:
                    stored = rec if c is cfg else store.get(c)
                    n = (stored or {}).get("provenance", {}).get("threads")
                    os.environ["REPLICATE_THREADS"] = str(n) if n else ""
                    new = runner.run(c, store=Store(Path(tmp) / "runs"), fresh=False)
                train.set_threads()
                for m in METRICS:
                    if m not in rec["metrics"]:
                        continue
                    vals = group_values(everything, rec, m)
                    spread = statistics.stdev(vals) if len(vals) >= 2 else None
                    a, b = rec["metrics"][m], new["metrics"].get(m, math.nan)
                    rows.append({"key": rec["key"], "run": cfg.label, "metric": m, "stored": a, "rerun": b,
                                 "diff": b - a, "group_std": spread, "group_n": len(vals),
                                 "verdict": judge(a, b, spread), "seconds": round(time.perf_counter() - t0, 1)})
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return rows

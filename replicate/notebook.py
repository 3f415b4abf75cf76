"""Small helpers that keep every notebook's first cells the same.

A notebook's derived-settings cell calls `setup(profile)`: it resolves the
profile (REPLICATE_PROFILE wins when set, so CI's smoke profile cannot be
overridden by a parameter cell papermill injected into a committed notebook),
validates it, fixes the thread count, turns progress bars off unless asked
for, applies the figure style and prints one line saying what runs.
"""
from __future__ import annotations

import os

from . import profiles, report, train
from .config import check_choice


def setup(profile: str | None) -> profiles.Profile:
    p = profiles.get(profile)
    threads = train.set_threads()
    os.environ.setdefault("REPLICATE_PROGRESS", "0")
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


def run_all(cfgs, label: str) -> list:
    """Run (or fetch from the store) each configuration; print one summary line."""
    from .runner import fresh_requested, run
    from .store import Store

    cfgs = list(cfgs)
    stored = 0
    for c in cfgs:
        c.validate()
        rec = Store.for_profile(c.profile).get(c)
        stored += rec is not None and not fresh_requested()
    records = [run(c) for c in cfgs]
    failed = sum(r["status"] != "ok" for r in records)
    print(f"{label}: {len(cfgs)} runs ({stored} read from the store, {len(cfgs) - stored} run now"
          + (f", {failed} failed" if failed else "") + ")")
    return records

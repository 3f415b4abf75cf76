"""Study plans: one module per paper, holding the runs its notebooks share.

Methods hold algorithms and the builder for one run; studies hold the plans that
several notebooks of a paper read (so they ask for identical configurations and
the run store returns what an earlier notebook already ran); notebooks hold the
question, the grid a reader must see, the verdict thresholds and the prose.
Import a study one way: `from replicate.studies import dst as study`.

This module holds the helpers every plan uses.
"""
from __future__ import annotations

from ..errors import check_choice


def per_combo(value, model: str, dataset: str):
    """A plan's setting: one value for every run, or a dict keyed by (model, dataset)
    and/or dataset (None when neither key is present)."""
    if not isinstance(value, dict):
        return value
    return value.get((model, dataset), value.get(dataset))


def choose(profile: str, plans: dict) -> dict:
    """The plan (settings dict, or any value) of the profile in force; one-line error for a profile without
    one. In the paper profile's dry run (replicate.dry_run) a dict plan's seed lists ("seeds", and any "<what>_seeds")
    are cut to the first: every seed runs the same code, and the paper-scale models make each run cost minutes even
    when capped."""
    check_choice("profile", profile, tuple(plans))
    plan = plans[profile]
    if profile == "paper" and isinstance(plan, dict):
        cut = {k: list(v[:1]) for k, v in plan.items()
               if (k == "seeds" or k.endswith("_seeds")) and isinstance(v, (list, tuple)) and len(v) > 1}
        if cut:
            from .. import dry_run
            if dry_run.active():
                return {**plan, **cut}
    return plan

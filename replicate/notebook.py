"""Small helpers that keep every notebook's first cells the same.

A notebook's derived-settings cell calls `setup(profile)`: it resolves the
profile (REPLICATE_PROFILE wins when set, so CI's smoke profile cannot be
overridden by a parameter cell papermill injected into a committed notebook),
validates it, fixes the thread count, applies the figure style and prints one
line saying what runs.
"""
from __future__ import annotations

import os

from . import claims, profiles, report, train
from .errors import ConfigError, check_choice
from .studies import choose  # noqa: F401  (nb.choose in notebooks)


def setup(profile: str | None, notebook: str | None = None) -> profiles.Profile:
    """`notebook` ("<paper>/<NN_name>") is written into the claims rows this notebook makes."""
    p = profiles.get(profile)
    claims.set_notebook(notebook)
    _stable_table_output()
    threads = train.set_threads()
    report.style()
    print(f"profile: {p.name} ({p.description}); torch threads: {threads}; "
          f"device: {train.default_device()}")
    return p


def _stable_table_output() -> None:
    """Render pandas Styler tables with numbered element ids (t1, t2, ... in display order) and a
    plain-text view of their data, instead of random ids and '<Styler at 0x...>', so that
    re-executing a notebook from the store leaves its committed outputs unchanged."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    import itertools

    from pandas.io.formats.style import Styler

    number = itertools.count(1)
    formatters = shell.display_formatter.formatters
    formatters["text/html"].for_type(Styler, lambda s: s.set_uuid(f"t{next(number)}").to_html())
    formatters["text/plain"].for_type(Styler, lambda s, printer, cycle: printer.text(s.data.to_string()))


def check_subset(what: str, values, valid) -> list:
    """Validate a list parameter, e.g. models=[...]; one-line error naming the valid values.
    A string (papermill -p passes text) is read as a Python/JSON list, or as one name."""
    if isinstance(values, str):
        import ast
        try:
            parsed = ast.literal_eval(values)
        except (ValueError, SyntaxError):
            parsed = [values]
        values = [parsed] if isinstance(parsed, str) else parsed
    if not isinstance(values, (list, tuple)):
        raise ConfigError(f"{what} must be a list of names, got {values!r}; valid: {', '.join(map(str, valid))}")
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


def _cost_estimate(cfg) -> float:
    """A rough cost of running `cfg` (epochs x training examples x the model's relative cost,
    from the dataset and model specs), for ordering only."""
    from . import data, models

    examples = cfg.train_size or data.spec(cfg.dataset).train_examples
    return max(cfg.epochs, 0.5) * examples * models.spec(cfg.model).relative_cost


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

    With workers > 1, or another executor than local (REPLICATE_EXECUTOR: local | dask | slurm,
    replicate/executors.py), the configurations missing from the store run as separate jobs (one
    thread each; missing parents first, once each) and are then read back from the store. The
    missing runs start as soon as their parent is stored, those with the most estimated work behind
    them first (their own and their children's), so that no worker waits while a run is ready and
    the workers finish together; the order changes no result (every run has its own seed)."""
    return run_groups({label: cfgs}, workers)[0]


def run_groups(groups: dict, workers: int | None = None) -> list:
    """run_all for several groups at once: {label: configurations} -> one list of records per group,
    in order, and one summary line per group. Every missing run of every group goes into one
    schedule, so no worker idles at the end of a group while another group's runs are ready (as it
    would between consecutive run_all calls); a group's parents need not be a group of their own."""
    from .runner import _usable, fresh_requested, run
    from .store import Store

    groups = {label: list(cfgs) for label, cfgs in groups.items()}
    fresh = fresh_requested()
    missing, missing_keys = [], set()
    for cfgs in groups.values():
        for c in cfgs:
            c.validate()
            if c.key not in missing_keys and not _usable(Store.for_profile(c.profile).get(c), fresh):
                missing.append(c)
                missing_keys.add(c.key)
    label = "; ".join(groups)
    workers = workers or workers_default()
    total = sum(len(cfgs) for cfgs in groups.values())
    if missing:
        from .train import note
        note(f"  {label}: {total - len(missing)} of {total} runs in the store, training {len(missing)}"
             + (f" in {min(workers, len(missing))} processes" if workers > 1 and len(missing) > 1 else ""))
    from .executors import dispatch, executor_name
    executor = executor_name()
    if missing and (executor != "local" or (workers > 1 and len(missing) > 1)):
        def have(c):
            return _usable(Store.for_profile(c.profile).get(c), fresh)

        failures = dispatch(missing, have, workers, label, executor)
        lost = [f"{c.label} ({err})" for c, err in failures if Store.for_profile(c.profile).get(c) is None]
        if lost:   # no record at all (a diverged run leaves a failed one): say which, and stop
            raise RuntimeError(f"{label}: {len(lost)} run(s) failed twice on the {executor} executor and left no "
                               "record: " + "; ".join(lost))
    out = []
    for group, cfgs in groups.items():
        records = [run(c) for c in cfgs]
        failed = sum(r["status"] != "ok" for r in records)
        now = sum(c.key in missing_keys for c in cfgs)
        print(f"{group}: {len(cfgs)} runs ({len(cfgs) - now} read from the store, {now} run now"
              + (f", {failed} failed" if failed else "") + ")")
        out.append(records)
    return out

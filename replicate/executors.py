"""Where a notebook's independent runs execute: local processes, a Dask cluster, or Slurm (submitit).

`notebook.run_all` hands the configurations missing from the store to `dispatch`, which runs
each one as a job on the executor named by REPLICATE_EXECUTOR:

  local   processes on this machine (REPLICATE_WORKERS of them, one thread each): the default.
  dask    a Dask distributed cluster: REPLICATE_DASK_SCHEDULER="tcp://host:8786" joins a running
          one; unset, a LocalCluster of REPLICATE_WORKERS single-threaded worker processes is
          started for the call.
  slurm   Slurm through submitit, one job per run: REPLICATE_SLURM_PARTITION, _GPUS (per job,
          default 0), _TIME (minutes, default 240), _MEM (GB, default 8), _CPUS (default 1);
          per-run logs under REPLICATE_SLURM_LOGS (default build/slurm-logs/). REPLICATE_SLURM_CLUSTER
          =local uses submitit's local executor (tests, a machine without Slurm).

Every job runs `runner.run` on its configuration and writes the record into the run store, so
the store (REPLICATE_ROOT's results/runs, and REPLICATE_CACHE for weights) must be on a filesystem
every worker sees. Records are written atomically (a temporary file renamed over the record):
two jobs finishing the same configuration leave one valid record, a job killed mid-run leaves
none. Jobs run one thread each, like the local workers, so a record made on a cluster is the
record a local re-execution would make (up to the provenance, which names the host and the
executor) and a cache hit for it, and the reverse.

Scheduling: runs whose parent is missing too are preceded by the parent, as a job of its own,
once however many children share it (levels: a run waits until its ancestors are stored). Jobs
are collected as they finish, with a progress line; a job that raises or whose worker is lost is
submitted once more, and a run that fails twice is reported by name (never dropped silently:
`run_all` then raises unless the run left a failed record, such as a diverged training).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from .errors import ConfigError, check_choice

EXECUTORS = ("local", "dask", "slurm")
RETRIES = 1                     # a failed or lost job is submitted once more


def executor_name() -> str:
    """REPLICATE_EXECUTOR (default local), validated."""
    name = os.environ.get("REPLICATE_EXECUTOR", "local").strip().lower() or "local"
    check_choice("REPLICATE_EXECUTOR", name, EXECUTORS)
    return name


def job(cfg_dict: dict, executor: str) -> tuple:
    """One run as a job on any executor: (key, status). One torch thread, as local workers use."""
    import warnings

    os.environ["REPLICATE_THREADS"] = "1"
    os.environ["REPLICATE_EXECUTOR_USED"] = executor
    from .config import RunConfig
    from .runner import run

    cfg = RunConfig.from_dict(cfg_dict)
    with warnings.catch_warnings():       # a diverged run is recorded as failed and counted by run_all
        warnings.simplefilter("ignore")
        return cfg.key, run(cfg)["status"]


def levels(missing, have) -> list:
    """The runs to execute in waves: each missing configuration and its missing ancestors, once
    each (by key), grouped so that every run comes after its parent; within a wave, longest first."""
    from .notebook import _cost_estimate

    depth, node = {}, {}
    for cfg in missing:
        chain, c = [], cfg
        while c is not None and not have(c):
            chain.append(c)
            c = c.parent
        for d, c in enumerate(reversed(chain)):      # d = missing ancestors above c
            depth[c.key] = max(depth.get(c.key, 0), d)
            node[c.key] = c
    waves = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for key, d in depth.items():
        waves[d].append(node[key])
    return [sorted(w, key=_cost_estimate, reverse=True) for w in waves]


class _Local:
    def __init__(self, workers: int):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))

    def submit(self, cfg_dict):
        return self.pool.submit(job, cfg_dict, "local")

    def close(self):
        self.pool.shutdown()


class _Dask:
    def __init__(self, workers: int):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ConfigError("REPLICATE_EXECUTOR=dask needs Dask distributed: pip install dask distributed") from None
        address = os.environ.get("REPLICATE_DASK_SCHEDULER", "").strip()
        self.cluster = None
        if address:
            self.client = Client(address)
        else:
            self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                        dashboard_address=None)
            self.client = Client(self.cluster)

    def submit(self, cfg_dict):
        return self.client.submit(job, cfg_dict, "dask", pure=False)

    def close(self):
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


class _Slurm:
    def __init__(self, workers: int):
        try:
            import submitit
        except ImportError:
            raise ConfigError("REPLICATE_EXECUTOR=slurm needs submitit: pip install submitit") from None
        from .store import repo_root

        folder = Path(os.environ.get("REPLICATE_SLURM_LOGS") or repo_root() / "build" / "slurm-logs")
        cluster = os.environ.get("REPLICATE_SLURM_CLUSTER", "").strip() or None
        self.executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=cluster)
        params = {"timeout_min": _int_env("REPLICATE_SLURM_TIME", 240), "mem_gb": _int_env("REPLICATE_SLURM_MEM", 8),
                  "cpus_per_task": _int_env("REPLICATE_SLURM_CPUS", 1), "name": "replicate"}
        gpus = _int_env("REPLICATE_SLURM_GPUS", 0)
        if gpus:
            params["gpus_per_node"] = gpus
        if cluster == "local":
            params["local_setup"] = []
        partition = os.environ.get("REPLICATE_SLURM_PARTITION", "").strip()
        if partition:
            params["slurm_partition"] = partition
        self.executor.update_parameters(**params)

    def submit(self, cfg_dict):
        return self.executor.submit(job, cfg_dict, "slurm")

    def close(self):
        pass


def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        n = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from None
    if n < 0:
        raise ConfigError(f"{name} must be >= 0, got {n}")
    return n


_KINDS = {"local": _Local, "dask": _Dask, "slurm": _Slurm}


def dispatch(missing, have, workers: int, label: str = "runs", executor: str | None = None) -> list:
    """Run the missing configurations (and their missing ancestors, first) on the executor; return
    [(configuration, error text)] for runs that failed twice (empty when all finished)."""
    from .train import note

    name = executor or executor_name()
    waves = levels(missing, have)
    total, done, failures = sum(len(w) for w in waves), 0, []
    if not total:
        return []
    backend = _KINDS[name](workers)
    try:
        for wave in waves:
            pending = {id(f): (f, c, 0) for c in wave for f in [backend.submit(c.to_dict())]}
            while pending:
                finished = [v for v in pending.values() if v[0].done()]
                if not finished:
                    time.sleep(0.2)
                    continue
                for fut, cfg, tries in finished:
                    del pending[id(fut)]
                    try:
                        fut.result()
                    except Exception as err:          # the job raised, or its worker was lost
                        if tries < RETRIES:
                            note(f"  {label}: {cfg.label} failed on {name} ({type(err).__name__}: {err}); retrying once")
                            new = backend.submit(cfg.to_dict())
                            pending[id(new)] = (new, cfg, tries + 1)
                            continue
                        failures.append((cfg, f"{type(err).__name__}: {err}"))
                    done += 1
                    note(f"  {label}: {done}/{total} runs finished on {name}" + (f", {len(failures)} failed" if failures else ""))
    finally:
        backend.close()
    return failures

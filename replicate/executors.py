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
once however many children share it (job_graph). A run is submitted as soon as its parent's job
has finished, not when a whole generation has: with a limited number of workers (local processes,
a Dask LocalCluster), each free worker takes the ready run with the longest estimated work still
behind it (its own and its longest chain of children in the call), so that parents go before the
runs that do not wait for anything and no worker idles while a run is ready. On Slurm and on a
running Dask cluster every ready run is submitted at once and the cluster queues them. Jobs are
collected as they finish, with a progress line; a job that raises or whose worker is lost is
submitted once more, and a run that fails twice is reported by name (never dropped silently:
`run_all` then raises unless the run left a failed record, such as a diverged training). The
order changes no record: every run has its own seed.
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


def job_graph(missing, have) -> tuple:
    """The runs to execute: each missing configuration and its missing ancestors, once each (by key).
    Returns (nodes, parent): key -> configuration, and key -> the key of its parent when that parent
    runs in this call too (None when the parent is stored or there is none)."""
    nodes, parent = {}, {}
    for cfg in missing:
        c = cfg
        while c is not None and not have(c) and c.key not in nodes:
            nodes[c.key] = c
            up = c.parent if c.parent is not None and not have(c.parent) else None
            parent[c.key] = up.key if up is not None else None
            c = up
    return nodes, parent


def priorities(nodes: dict, parent: dict) -> dict:
    """key -> the estimated work behind a run: its own cost estimate plus the longest chain of its
    children in the graph (a run that others wait for comes before one of the same size that nobody
    waits for); the same rule as the cost table's schedule estimate (reproduce.schedule_makespan)."""
    from .notebook import _cost_estimate
    from .reproduce import chains_behind

    return chains_behind({k: _cost_estimate(c) for k, c in nodes.items()}, parent)[1]


class _Local:
    def __init__(self, workers: int):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))
        self.slots = workers        # jobs in flight at most: the scheduler picks the next one itself

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
            self.slots = None       # a running cluster of unknown size queues whatever is ready
        else:
            self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                        dashboard_address=None)
            self.client = Client(self.cluster)
            self.slots = workers

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
        self.slots = None           # Slurm queues every ready job

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


POLL_S = 0.2                    # seconds between looks at the jobs in flight


def dispatch(missing, have, workers: int, label: str = "runs", executor: str | None = None) -> list:
    """Run the missing configurations (and their missing ancestors, each after its parent) on the
    executor; return [(configuration, error text)] for runs that failed twice (empty when all finished).
    A run becomes ready when its parent's job is done (a parent that failed twice leaves its children
    to try it again themselves, and fail by name); free slots take the ready run with the most work behind it."""
    from .train import note

    name = executor or executor_name()
    nodes, parent = job_graph(missing, have)
    if not nodes:
        return []
    rank = priorities(nodes, parent)
    waiting: dict = {}
    for k, p in parent.items():
        if p is not None:
            waiting.setdefault(p, []).append(k)
    ready = [k for k in nodes if parent[k] is None]
    total, done, failures = len(nodes), 0, []
    backend = _KINDS[name](workers)
    slots = getattr(backend, "slots", None)
    pending: dict = {}
    try:
        while ready or pending:
            ready.sort(key=lambda k: -rank[k])       # stable: equal estimates keep the order they came in
            while ready and (slots is None or len(pending) < slots):
                k = ready.pop(0)
                f = backend.submit(nodes[k].to_dict())
                pending[id(f)] = (f, k, 0)
            finished = [v for v in pending.values() if v[0].done()]
            if not finished:
                time.sleep(POLL_S)
                continue
            for fut, k, tries in finished:
                del pending[id(fut)]
                cfg = nodes[k]
                try:
                    fut.result()
                except Exception as err:          # the job raised, or its worker was lost
                    if tries < RETRIES:
                        note(f"  {label}: {cfg.label} failed on {name} ({type(err).__name__}: {err}); retrying once")
                        new = backend.submit(cfg.to_dict())
                        pending[id(new)] = (new, k, tries + 1)
                        continue
                    failures.append((cfg, f"{type(err).__name__}: {err}"))
                done += 1
                ready.extend(waiting.pop(k, ()))
                note(f"  {label}: {done}/{total} runs finished on {name}" + (f", {len(failures)} failed" if failures else ""))
    finally:
        backend.close()
    return failures

"""The executors that run a notebook's missing configurations: local processes, Dask, Slurm (submitit)."""
import json

import pytest

from replicate import notebook as nb
from replicate.config import ConfigError, RunConfig
from replicate.executors import EXECUTORS, _int_env, executor_name, levels
from replicate.store import Store

SMALL = dict(method="dense", model="lenet300-100", dataset="mnist5k", epochs=1, train_size=300, test_size=100,
             profile="smoke")


def grid():
    """Two dense runs, and a pruned run of each: children whose parents are missing too."""
    dense = [RunConfig(**{**SMALL, "seed": s}) for s in range(2)]
    pruned = [d.replace(method="magnitude", parent=d, epochs=1, args={"schedule": "oneshot", "compression": 4.0})
              for d in dense]
    return dense, pruned


def test_executor_setting_is_validated(monkeypatch):
    monkeypatch.setenv("REPLICATE_EXECUTOR", "kubernetes")
    with pytest.raises(ConfigError, match="local, dask, slurm"):
        executor_name()
    monkeypatch.setenv("REPLICATE_EXECUTOR", "Dask")
    assert executor_name() == "dask" and EXECUTORS == ("local", "dask", "slurm")
    monkeypatch.setenv("REPLICATE_SLURM_TIME", "two hours")
    with pytest.raises(ConfigError, match="REPLICATE_SLURM_TIME must be a whole number"):
        _int_env("REPLICATE_SLURM_TIME", 240)


def test_levels_put_every_missing_parent_first_and_once():
    dense, pruned = grid()
    nothing = lambda c: False  # noqa: E731
    waves = levels(pruned + [pruned[0]], nothing)
    assert [sorted(c.key for c in w) for w in waves] == [sorted(d.key for d in dense), sorted(p.key for p in pruned)]
    stored = {dense[0].key}
    waves = levels(pruned, lambda c: c.key in stored)
    # pruned[0]'s parent is stored: it can start at once, beside dense[1]; pruned[1] waits for dense[1]
    assert [sorted(c.key for c in w) for w in waves] == [sorted([dense[1].key, pruned[0].key]), [pruned[1].key]]
    assert levels([], nothing) == []


def _records(cfgs):
    store = Store.for_profile("smoke")
    return [store.get(c) for c in cfgs]


def _same_but_provenance(a, b):
    """Equal records, up to the provenance and the measured epoch times (wall clock, never equal)."""
    def strip(r):
        r = {k: v for k, v in r.items() if k not in ("provenance", "checksum")}
        r["history"] = [{k: v for k, v in h.items() if k != "epoch_time_s"} for h in r["history"]]
        return r
    return json.dumps(strip(a), sort_keys=True) == json.dumps(strip(b), sort_keys=True)


@pytest.mark.parametrize("executor", ["dask", "slurm"])
def test_cluster_executors_make_the_local_executors_records(executor, tmp_path, monkeypatch):
    """The grid through Dask's LocalCluster / submitit's local executor (2 workers) gives the records
    the local executor gives (same thread count), parents first, and names itself in the provenance."""
    dense, pruned = grid()
    monkeypatch.setenv("REPLICATE_EXECUTOR", "local")
    monkeypatch.setenv("REPLICATE_STORE", str(tmp_path / "local"))
    nb.run_all(pruned, "local", workers=2)
    local = _records(dense + pruned)

    monkeypatch.setenv("REPLICATE_EXECUTOR", executor)
    monkeypatch.setenv("REPLICATE_STORE", str(tmp_path / executor))
    monkeypatch.setenv("REPLICATE_CACHE", str(tmp_path / f"cache-{executor}"))
    monkeypatch.setenv("REPLICATE_SLURM_CLUSTER", "local")
    monkeypatch.setenv("REPLICATE_SLURM_LOGS", str(tmp_path / "logs"))
    recs = nb.run_all(pruned, executor, workers=2)
    remote = _records(dense + pruned)
    assert all(r is not None and r["status"] == "ok" for r in remote)
    assert all(_same_but_provenance(a, b) for a, b in zip(local, remote))
    assert {r["provenance"]["executor"] for r in remote} == {executor}
    assert {r["provenance"]["executor"] for r in local} == {"local"}
    assert [r["key"] for r in recs] == [c.key for c in pruned]
    # a record made on the cluster is a cache hit for a local re-execution
    monkeypatch.setenv("REPLICATE_EXECUTOR", "local")
    monkeypatch.setenv("REPLICATE_NO_TRAIN", "1")
    assert [r["key"] for r in nb.run_all(pruned, "again", workers=2)] == [c.key for c in pruned]
    if executor == "slurm":
        assert any((tmp_path / "logs").rglob("*.out")), "submitit keeps a log per job"


class _Future:
    def __init__(self, error=None):
        self.error = error

    def done(self):
        return True

    def result(self):
        if self.error:
            raise self.error


def _fake_backend(fail_times: dict, submitted: list):
    """An in-process executor whose jobs for some labels raise (a lost worker) a number of times."""
    from replicate import executors
    from replicate.config import RunConfig as RC

    class Fake:
        def __init__(self, workers):
            pass

        def submit(self, cfg_dict):
            cfg = RC.from_dict(cfg_dict)
            submitted.append(cfg.label)
            if fail_times.get(cfg.label, 0) > 0:
                fail_times[cfg.label] -= 1
                return _Future(RuntimeError("worker lost"))
            executors.job(cfg_dict, "local")
            return _Future()

        def close(self):
            pass
    return Fake


def test_a_lost_job_is_retried_once_and_a_twice_lost_run_is_reported(monkeypatch):
    from replicate import executors

    dense, _ = grid()
    submitted = []
    monkeypatch.setitem(executors._KINDS, "local", _fake_backend({dense[0].label: 1}, submitted))
    records = nb.run_all(dense, "retry", workers=2)
    assert [r["status"] for r in records] == ["ok", "ok"]
    assert submitted.count(dense[0].label) == 2 and submitted.count(dense[1].label) == 1

    more = [RunConfig(**{**SMALL, "seed": s}) for s in (5, 6)]
    monkeypatch.setitem(executors._KINDS, "local", _fake_backend({more[0].label: 2}, []))
    with pytest.raises(RuntimeError, match=f"failed twice on the local executor.*{more[0].label}"):
        nb.run_all(more, "lost", workers=2)
    assert Store.for_profile("smoke").get(more[1]) is not None     # the other run finished and is stored

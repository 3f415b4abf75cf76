"""The executors that run a notebook's missing configurations: local processes, Dask, Slurm (submitit)."""
import json

import pytest

from replicate import notebook as nb
from replicate.config import ConfigError, RunConfig
from replicate.executors import EXECUTORS, _int_env, executor_name, job_graph, priorities
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


def test_the_job_graph_holds_every_missing_parent_once_before_its_children():
    dense, pruned = grid()
    nothing = lambda c: False  # noqa: E731
    nodes, parent = job_graph(pruned + [pruned[0]], nothing)
    assert sorted(nodes) == sorted(c.key for c in dense + pruned)
    assert {k: parent[k] for k in nodes} == {**{d.key: None for d in dense}, **{p.key: d.key for d, p in zip(dense, pruned)}}
    rank = priorities(nodes, parent)
    assert all(rank[d.key] > rank[p.key] for d, p in zip(dense, pruned))    # a parent carries its child's work
    stored = {dense[0].key}
    nodes, parent = job_graph(pruned, lambda c: c.key in stored)
    # pruned[0]'s parent is stored: it is ready at once, beside dense[1]; pruned[1] waits for dense[1]
    assert parent == {pruned[0].key: None, dense[1].key: None, pruned[1].key: dense[1].key}
    assert job_graph([], nothing) == ({}, {})


class _Timed:
    """A fake job that is done after it has been looked at `ticks` times (one look per scheduler pass)."""
    def __init__(self, ticks, log, key):
        self.ticks, self.log, self.key = ticks, log, key

    def done(self):
        self.ticks -= 1
        if self.ticks <= 0 and self.key not in self.log["finished"]:
            self.log["finished"].append(self.key)
        return self.ticks <= 0

    def result(self):
        return None


def test_a_ready_run_takes_a_free_worker_at_once_and_never_before_its_parent(monkeypatch):
    """Three missing parents, two of them with a child, and two workers: the parents with children go
    first; when the first parent finishes, the free worker takes the ready run with the most work behind
    it (its child or the third parent) instead of waiting for the whole generation; a child never starts
    before its parent is done, and no more than two jobs are ever in flight."""
    from replicate import executors

    parents = [RunConfig(**{**SMALL, "seed": s}) for s in range(3)]
    kids = [p.replace(method="magnitude", parent=p, epochs=2, args={"schedule": "oneshot", "compression": 4.0})
            for p in parents[:2]]      # two epochs: estimated longer than the third parent's one
    log = {"submitted": [], "finished": [], "in_flight": []}
    ticks = {parents[0].key: 1, parents[1].key: 3, parents[2].key: 1, kids[0].key: 1, kids[1].key: 1}

    class Fake:
        slots = 2

        def __init__(self, workers):
            self.slots = workers

        def submit(self, cfg_dict):
            key = RunConfig.from_dict(cfg_dict).key
            log["submitted"].append(key)
            log["in_flight"].append(len(log["submitted"]) - len(log["finished"]))
            return _Timed(ticks[key], log, key)

        def close(self):
            pass

    monkeypatch.setitem(executors._KINDS, "local", Fake)
    monkeypatch.setattr(executors, "POLL_S", 0)
    assert executors.dispatch(kids + [parents[2]], lambda c: False, 2, "schedule", "local") == []
    order = log["submitted"]
    assert sorted(order) == sorted(c.key for c in parents + kids)
    assert set(order[:2]) == {parents[0].key, parents[1].key}           # the parents others wait for first
    assert max(log["in_flight"]) <= 2
    for p, k in zip(parents, kids):
        assert log["finished"].index(p.key) < order.index(k.key)        # a child after its parent is done
    # parent 0 finished first while parent 1 still ran: its child (estimated longer than the third parent) took
    # the free worker, then the third parent; generation by generation, the child would have waited for parent 1
    assert order[2] == kids[0].key and order.index(parents[2].key) < order.index(kids[1].key)
    assert log["in_flight"][2:4] == [2, 2]       # while parent 1 ran, the other worker was never idle


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


def test_run_groups_schedules_every_group_at_once_and_counts_each(monkeypatch, capsys):
    """Parents and children in two groups go to one dispatch (no barrier between the groups); each
    group's summary line counts its own runs; the records come back group by group, in order."""
    import replicate.executors as ex

    dense, pruned = grid()
    calls = []
    real = ex.dispatch
    monkeypatch.setattr(ex, "dispatch", lambda missing, *a, **k: calls.append([c.key for c in missing]) or real(missing, *a, **k))
    got_dense, got_pruned = nb.run_groups({"dense": dense, "pruned": pruned}, workers=2)
    assert calls == [[c.key for c in dense + pruned]]
    assert [r["key"] for r in got_dense] == [c.key for c in dense]
    assert [r["key"] for r in got_pruned] == [c.key for c in pruned]
    out = capsys.readouterr().out.splitlines()
    assert out[-2:] == ["dense: 2 runs (0 read from the store, 2 run now)", "pruned: 2 runs (0 read from the store, 2 run now)"]
    more = [p.replace(args={"schedule": "oneshot", "compression": 8.0}) for p in pruned]
    got = nb.run_groups({"pruned": pruned, "more": more}, workers=2)
    assert calls[1] == [c.key for c in more] and [r["status"] for r in got[1]] == ["ok", "ok"]
    assert capsys.readouterr().out.splitlines()[-2:] == ["pruned: 2 runs (2 read from the store, 0 run now)",
                                                         "more: 2 runs (0 read from the store, 2 run now)"]

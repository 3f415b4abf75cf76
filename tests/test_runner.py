"""Reliability of runs and of the store: determinism, interruption, corruption, divergence."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

import replicate
from replicate import runner, train
from replicate.config import RunConfig
from replicate.store import Store

SMALL = dict(model="lenet300-100", dataset="mnist5k", train_size=500, test_size=200, epochs=2)


def test_same_configuration_twice_gives_identical_metrics(tmp_path):
    cfg = RunConfig(**SMALL)
    a = replicate.run(cfg)
    b = replicate.run(cfg, fresh=True, store=Store(tmp_path / "other"))
    assert a["status"] == b["status"] == "ok"
    assert a["metrics"]["test_acc"] == b["metrics"]["test_acc"]
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    assert a["key"] == b["key"]


def test_record_holds_configuration_curves_metrics_and_provenance():
    rec = replicate.run(RunConfig(**SMALL))
    assert rec["config"]["dataset"] == "mnist5k" and len(rec["history"]) == 2
    for k in ("test_acc", "compression", "nonzero", "dense_macs", "layers"):
        assert k in rec["metrics"]
    for k in ("replicate_version", "git_commit", "library_hash", "torch_version", "device", "threads",
              "wall_time_s", "start_time", "end_time"):
        assert k in rec["provenance"]
    assert rec["provenance"]["threads"] == 1


def test_a_childs_wall_time_leaves_out_the_parent_it_had_to_train(tmp_path):
    from datetime import datetime
    store = Store(tmp_path / "runs")
    parent = RunConfig(**SMALL)
    child = parent.replace(method="magnitude", parent=parent, epochs=1, args={"schedule": "oneshot", "compression": 4})
    rec = runner.run(child, store=store)                  # the parent is trained inside this call
    prec = store.get(parent)
    p, pp = rec["provenance"], prec["provenance"]
    span = (datetime.fromisoformat(p["end_time"]) - datetime.fromisoformat(p["start_time"])).total_seconds()
    assert p["parent_s"] >= pp["wall_time_s"] > 0          # getting the parent included training it
    assert p["wall_time_s"] + p["parent_s"] <= span + 0.01  # the two parts of the call, counted once each
    assert store.own_seconds(rec) == p["wall_time_s"]
    assert pp["parent_s"] == 0.0                           # a run without a parent


def test_own_seconds_takes_a_parent_trained_inside_an_older_record_off_its_wall_time():
    from replicate.store import own_seconds
    old = {"wall_time_s": 100.0, "start_time": "2026-01-01T10:00:00+00:00", "end_time": "2026-01-01T10:01:40+00:00"}
    inside = {"provenance": {"wall_time_s": 70.0, "start_time": "2026-01-01T10:00:01+00:00",
                             "end_time": "2026-01-01T10:01:11+00:00"}}
    before = {"provenance": {"wall_time_s": 70.0, "start_time": "2026-01-01T09:00:00+00:00",
                             "end_time": "2026-01-01T09:01:10+00:00"}}
    assert own_seconds({"provenance": old}, inside) == 30.0          # trained inside the child's call
    assert own_seconds({"provenance": old}, before) == 100.0         # stored before: the wall time is the run's own
    assert own_seconds({"provenance": old}, None) == 100.0
    assert own_seconds({"provenance": {**old, "parent_s": 70.0}}, inside) == 100.0   # already its own time
    assert own_seconds({"provenance": {**old, "wall_time_s": 50.0}}, inside) == 0.0  # never negative


def test_stored_run_is_not_rerun(monkeypatch):
    cfg = RunConfig(**SMALL)
    first = replicate.run(cfg)

    def boom(*a, **k):
        raise AssertionError("should have been read from the store")
    monkeypatch.setattr(train, "fit", boom)
    assert replicate.run(cfg) == first


def test_dependent_run_is_resolved_lazily(monkeypatch):
    parent = RunConfig(**SMALL)
    child = parent.replace(method="magnitude", parent=parent, epochs=1,
                           args={"schedule": "oneshot", "compression": 4})
    rec = replicate.run(child)
    assert rec["status"] == "ok"
    assert Store.for_profile("cpu").get(parent) is not None  # the parent was run and stored too
    # Without the weight cache, a stored child is still served without touching its parent.
    import shutil
    shutil.rmtree(os.environ["REPLICATE_CACHE"])
    monkeypatch.setattr(train, "fit", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    assert replicate.run(child)["metrics"] == rec["metrics"]


def test_missing_weights_are_recovered_by_rerunning_the_parent():
    parent = RunConfig(**SMALL)
    replicate.run(parent)
    import shutil
    shutil.rmtree(os.environ["REPLICATE_CACHE"])
    child = parent.replace(method="magnitude", parent=parent, epochs=1,
                           args={"schedule": "oneshot", "compression": 4})
    assert replicate.run(child)["status"] == "ok"


def test_corrupt_record_is_reported_and_recomputed():
    cfg = RunConfig(**SMALL)
    rec = replicate.run(cfg)
    path = Store.for_profile("cpu").path(cfg)
    # A half-written file ...
    path.write_text(path.read_text()[: len(path.read_text()) // 2])
    with pytest.warns(UserWarning, match="corrupt run record"):
        again = replicate.run(cfg)
    assert again["metrics"]["test_acc"] == rec["metrics"]["test_acc"]
    assert path.with_suffix(".json.corrupt").exists()
    # ... and an edited one (valid JSON, wrong checksum).
    doc = json.loads(path.read_text())
    doc["metrics"]["test_acc"] = 0.999
    path.write_text(json.dumps(doc))
    with pytest.warns(UserWarning, match="checksum mismatch"):
        third = replicate.run(cfg)
    assert third["metrics"]["test_acc"] == rec["metrics"]["test_acc"]


def test_record_under_wrong_key_is_rejected():
    a, b = RunConfig(**SMALL), RunConfig(**{**SMALL, "epochs": 1})
    replicate.run(a)
    store = Store.for_profile("cpu")
    store.path(b).parent.mkdir(parents=True, exist_ok=True)
    store.path(b).write_text(store.path(a).read_text())
    with pytest.warns(UserWarning, match="expected"):
        assert store.get(b) is None


def test_interrupted_run_leaves_no_record(tmp_path):
    """A run killed with SIGKILL in the middle of training leaves nothing; re-running completes it."""
    cfg = RunConfig(**{**SMALL, "epochs": 400})
    script = textwrap.dedent(f"""
        import sys, replicate
        from replicate import train
        from replicate.config import RunConfig
        real_fit = train.fit
        def fit(*a, **k):
            print("training", flush=True)
            return real_fit(*a, **k)
        train.fit = fit
        replicate.run(RunConfig.from_dict({cfg.to_dict()!r}))
        print("finished", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env=os.environ.copy())
    assert proc.stdout.readline().strip() == "training"
    time.sleep(1.0)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    store = Store.for_profile("cpu")
    assert not store.path(cfg).exists()
    assert not list(store.root.rglob("*.json")), "an interrupted run left a file behind"
    short = RunConfig(**{**SMALL, "epochs": 1})
    assert replicate.run(short)["status"] == "ok"
    assert store.path(short).exists()


def test_nan_loss_is_recorded_as_failed_with_its_epoch():
    cfg = RunConfig(**{**SMALL, "epochs": 3, "lr": 1e6})
    with pytest.warns(UserWarning, match="diverged"):
        rec = replicate.run(cfg)
    assert rec["status"] == "failed"
    assert rec["failed_epoch"] == 1
    assert "training loss became" in rec["error"]
    # Stored: asking again does not retrain, and the report excludes it visibly.
    assert replicate.run(cfg)["status"] == "failed"
    from replicate import report
    row = report.row("x", "lenet300-100", "mnist5k", "cpu", "acc", [rec, replicate.run(RunConfig(**SMALL))],
                     lambda r: r["metrics"]["test_acc"])
    assert row["n_seeds"] == 1 and row["n_failed"] == 1 and "1 failed run(s) excluded" in row["note"]


def test_fresh_environment_reruns_records_from_before_this_process(monkeypatch):
    cfg = RunConfig(**SMALL)
    rec = replicate.run(cfg)
    monkeypatch.setattr(runner, "_PROCESS_START", "9999")  # everything stored is "older"
    monkeypatch.setenv("REPLICATE_FRESH", "1")
    calls = []
    real = train.fit
    monkeypatch.setattr(train, "fit", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = replicate.run(cfg)
    assert calls and again["metrics"]["test_acc"] == rec["metrics"]["test_acc"]


def test_masks_keep_pruned_weights_at_zero(tiny):
    from replicate import models
    model = models.build("lenet300-100")
    mask = (torch.rand_like(model.fc1.weight) > 0.5).float()
    train.fit(model, tiny, epochs=1, masks={model.fc1.weight: mask}, progress=False)
    assert torch.all(model.fc1.weight[mask == 0] == 0)
    assert (model.fc1.weight[mask == 1] != 0).float().mean() > 0.99


def test_parallel_workers_write_the_same_records_as_sequential_runs(tmp_path):
    from replicate import notebook as nb
    cfgs = [RunConfig(**{**SMALL, "epochs": 1, "seed": s}) for s in range(2)]
    recs = nb.run_all(cfgs, "parallel", workers=2)
    assert [r["provenance"]["threads"] for r in recs] == [1, 1]
    again = [replicate.run(c, fresh=True, store=Store(tmp_path / "seq")) for c in cfgs]
    assert [r["metrics"]["test_acc"] for r in recs] == [r["metrics"]["test_acc"] for r in again]


def test_workers_start_the_longest_runs_first():
    from replicate import notebook as nb
    conv = RunConfig(method="dense", model="lenet5-caffe", dataset="fashion_mnist", epochs=50, train_size=9000)
    mlp = RunConfig(method="dense", model="lenet300-100", dataset="fashion_mnist", epochs=60)
    small = RunConfig(method="dense", model="lenet300-100", dataset="mnist5k", epochs=100)
    quick = RunConfig(method="dense", model="lenet5-caffe", dataset="mnist5k", epochs=0)
    order = sorted([small, quick, mlp, conv], key=nb._cost_estimate, reverse=True)
    assert order == [conv, mlp, small, quick]
    # a run whose parents are not stored yet carries their cost: a chain of four short
    # levels outranks one run longer than any single level
    chain, parent = [], conv.replace(epochs=2)
    for c in (2.0, 4.0, 8.0, 16.0):
        parent = parent.replace(method="magnitude", parent=parent, args={"schedule": "iterative", "compression": c})
        chain.append(parent)
    single = conv.replace(epochs=5)
    nothing_stored = lambda c: False  # noqa: E731
    assert nb._pending_cost(chain[-1], nothing_stored) == pytest.approx(5 * nb._cost_estimate(chain[0]))
    assert nb._pending_cost(chain[-1], nothing_stored) > nb._pending_cost(single, nothing_stored) > nb._cost_estimate(chain[-1])
    assert nb._pending_cost(chain[-1], lambda c: c is not chain[-1]) == nb._cost_estimate(chain[-1])


def test_validation_split_is_held_out_of_training_and_recorded():
    cfg = RunConfig(**SMALL, val_size=100)
    tr, va = runner.load_data(cfg), runner.load_data(cfg, validation=True)
    assert tr.n_train == 400 and va.n_test == 100 and tr.n_test == 200
    # the held-out images are none of the training images
    flat = {bytes(x.numpy().tobytes()) for x in tr.x_train}
    assert not any(bytes(x.numpy().tobytes()) in flat for x in va.x_test)
    rec = replicate.run(cfg)
    assert rec["provenance"]["n_train"] == 400
    acc = train.evaluate(runner.load_model(cfg)[0], va.x_test, va.y_test)["acc"]
    assert rec["metrics"]["val_error"] == pytest.approx(1 - acc)
    assert "val_error" not in replicate.run(RunConfig(**SMALL))["metrics"]
    with pytest.raises(ValueError, match="no validation split"):
        runner.load_data(RunConfig(**SMALL), validation=True)


def test_dirty_flag_ignores_results_and_notebook_outputs(tmp_path, monkeypatch):
    import json as _json
    root = tmp_path / "repo"
    (root / "results").mkdir(parents=True)
    nb = {"cells": [{"cell_type": "code", "source": ["x = 1"], "outputs": []}], "metadata": {}}
    (root / "n.ipynb").write_text(_json.dumps(nb))
    (root / "results" / "t.csv").write_text("a\n1\n")
    (root / "code.py").write_text("A = 1\n")
    git = lambda *a: subprocess.run(["git", "-C", str(root), *a], check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    git("-c", "user.email=t@t", "-c", "user.name=t", "add", ".")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "c")
    monkeypatch.setenv("REPLICATE_ROOT", str(root))
    assert runner._git_commit()[1] is False
    (root / "results" / "t.csv").write_text("a\n2\n")
    nb["cells"][0]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["1"]}]
    (root / "n.ipynb").write_text(_json.dumps(nb))
    assert runner._git_commit()[1] is False
    nb["cells"][0]["source"] = ["x = 2"]
    (root / "n.ipynb").write_text(_json.dumps(nb))
    assert runner._git_commit()[1] is True
    nb["cells"][0]["source"] = ["x = 1"]
    (root / "n.ipynb").write_text(_json.dumps(nb))
    (root / "code.py").write_text("A = 2\n")
    assert runner._git_commit()[1] is True


def test_a_second_corrupt_copy_does_not_overwrite_the_first():
    cfg = RunConfig(**SMALL)
    store = Store.for_profile(cfg.profile)
    for n in range(2):
        replicate.run(cfg)
        store.path(cfg).write_text("{ half-written")
        with pytest.warns(UserWarning, match="corrupt run record"):
            assert store.get(cfg) is None
    aside = sorted(p.name for p in store.path(cfg).parent.glob("*.corrupt*"))
    assert len(aside) == 2, aside


@pytest.mark.parametrize("model_name", ["lenet300-100", "lenet5-caffe"])
def test_evaluation_does_not_depend_on_its_chunk_size(model_name):
    # the evaluation chunk changed from 2,000 to 500 images without a CACHE_VERSION bump: that is
    # sound only if a record's test metrics cannot depend on it (accuracy exactly, loss to float noise)
    from replicate.methods import dst
    from replicate.models import build
    from replicate.tasks.classification import evaluate

    torch.manual_seed(0)
    x, y = torch.rand(2100, 1, 28, 28), torch.randint(0, 10, (2100,))
    for model in (build(model_name), dst.to_masked(build(model_name))):
        ref = evaluate(model, x, y, batch_size=2000)
        for bs in (500, 137, 2100):
            got = evaluate(model, x, y, batch_size=bs)
            assert got["acc"] == ref["acc"]
            assert abs(got["loss"] - ref["loss"]) <= 1e-6 * max(1.0, abs(ref["loss"]))


def test_recomputed_weights_are_reused_and_named_in_the_childs_provenance(monkeypatch):
    """Weights recomputed on another machine that do not reproduce their record are kept apart from the
    cache slot, reused by the next run that needs them (no second retraining), and every child trained
    from them says so in its provenance."""
    parent = RunConfig(**SMALL)
    replicate.run(parent)
    store = Store.for_profile(parent.profile)
    store.weights_path(parent).unlink()
    rec = store.get(parent)
    rec["metrics"]["test_acc"] -= 0.01                 # as if the record came from another machine's weights
    store.put({k: v for k, v in rec.items() if k not in ("key", "checksum", "schema")})
    child = parent.replace(method="magnitude", parent=parent, epochs=1, args={"schedule": "oneshot", "compression": 4})
    with pytest.warns(UserWarning, match="the model returned is the re-run's"):
        first = replicate.run(child)
    note = first["provenance"]["parent_weights"]
    assert note["key"] == parent.key and note["metric"] == "test_acc"
    assert note["weights"] == pytest.approx(note["record"] + 0.01)
    assert not store.weights_path(parent).exists()      # the cache slot still holds only matching weights
    calls = []
    real_fit = runner.train.fit
    monkeypatch.setattr(runner.train, "fit", lambda *a, **k: calls.append(1) or real_fit(*a, **k))
    other = child.replace(args={"compression": 8})
    with pytest.warns(UserWarning, match="the model returned is the re-run's"):
        second = replicate.run(other)
    assert second["provenance"]["parent_weights"] == note
    assert len(calls) == 1                               # the child trained; the parent was not retrained

"""Stored analyses, the no-training switch and stored timings: what lets a fresh
clone re-execute the notebooks from the committed records without training."""
import json

import pandas as pd
import torch
import pytest

import replicate
from replicate import analyses, runner, timings
from replicate.config import RunConfig
from replicate.errors import TrainingDisabled
from replicate.store import Store

SMALL = dict(model="lenet300-100", dataset="mnist5k", train_size=300, test_size=100, epochs=1)


def fc1_kept(model, ds):
    return (model.fc1.weight != 0).float().mean(0)


def test_analysis_is_computed_once_then_read_without_weights(tmp_path):
    cfg = RunConfig(**SMALL)
    first = analyses.compute(cfg, "fc1_kept", fc1_kept)
    assert len(first) == 784 and all(v == 1.0 for v in first)
    # weights gone and training forbidden: the stored analysis still answers
    Store.for_profile(cfg.profile).weights_path(cfg).unlink()
    calls = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REPLICATE_NO_TRAIN", "1")
        again = analyses.compute(cfg, "fc1_kept", lambda m, d: calls.append(1))
    assert again == first and calls == []
    path = analyses.path_of(cfg, "fc1_kept")
    rec = json.loads(path.read_text())
    assert rec["run_key"] == cfg.key and rec["weights"] == "recorded" and rec["checksum"]
    assert path.parent.parent == Store.for_profile(cfg.profile).root.parent / "analyses"


def test_analysis_key_changes_with_params_and_version():
    cfg = RunConfig(**SMALL)
    keys = {analyses.analysis_key(cfg, "a", None, 1), analyses.analysis_key(cfg, "a", {"n": 2}, 1),
            analyses.analysis_key(cfg, "a", None, 2), analyses.analysis_key(cfg, "b", None, 1)}
    assert len(keys) == 4


def test_corrupt_analysis_is_moved_aside_and_recomputed():
    cfg = RunConfig(**SMALL)
    analyses.compute(cfg, "fc1_kept", fc1_kept)
    path = analyses.path_of(cfg, "fc1_kept")
    path.write_text(path.read_text().replace("1.0", "0.5", 1))
    with pytest.warns(UserWarning, match="corrupt analysis"):
        value = analyses.compute(cfg, "fc1_kept", fc1_kept)
    assert value[0] == 1.0 and path.with_suffix(".json.corrupt").exists()


def test_no_train_makes_a_missing_run_an_error(monkeypatch):
    monkeypatch.setenv("REPLICATE_NO_TRAIN", "1")
    with pytest.raises(TrainingDisabled, match="REPLICATE_NO_TRAIN"):
        replicate.run(RunConfig(**SMALL))
    assert not list(Store.for_profile("cpu").root.rglob("*.json"))


def test_no_train_reads_stored_runs_but_refuses_to_recover_weights(monkeypatch):
    cfg = RunConfig(**SMALL)
    rec = replicate.run(cfg)
    Store.for_profile(cfg.profile).weights_path(cfg).unlink()
    monkeypatch.setenv("REPLICATE_NO_TRAIN", "1")
    assert replicate.run(cfg)["checksum"] == rec["checksum"]
    with pytest.raises(TrainingDisabled, match="recover its weights"):
        runner.load_model(cfg)


def test_weights_that_do_not_reproduce_the_record_are_marked(monkeypatch):
    cfg = RunConfig(**SMALL)
    replicate.run(cfg)
    store = Store.for_profile(cfg.profile)
    store.weights_path(cfg).unlink()
    # pretend the stored record came from other weights (another machine)
    rec = store.get(cfg)
    rec["metrics"]["test_acc"] = rec["metrics"]["test_acc"] - 0.01
    store.put({k: v for k, v in rec.items() if k not in ("key", "checksum", "schema")})
    with pytest.warns(UserWarning) as caught:
        value = analyses.compute(cfg, "fc1_kept", fc1_kept)
    assert any("the model returned is the re-run's" in str(w.message) for w in caught)
    saved = json.loads(analyses.path_of(cfg, "fc1_kept").read_text())
    assert saved["weights"] == "recomputed, differs from record"
    assert saved["weights_metrics"]["test_acc"] == pytest.approx(rec["metrics"]["test_acc"] + 0.01)
    with pytest.warns(UserWarning, match="differ from the stored record"):
        assert analyses.compute(cfg, "fc1_kept", fc1_kept) == value


def test_timing_is_measured_once_then_read(monkeypatch, tmp_path):
    monkeypatch.setenv("REPLICATE_ROOT", str(tmp_path))
    calls = []

    def measure():
        calls.append(1)
        return pd.DataFrame({"variant": ["a"], "ms per step": [1.23456]})

    a = timings.measured("paper", "01_cost", "smoke", measure)
    monkeypatch.setenv("REPLICATE_NO_TRAIN", "1")
    b = timings.measured("paper", "01_cost", "smoke", measure)
    assert calls == [1] and a.equals(b)
    assert "measured" in timings.described("paper", "01_cost", "smoke")
    monkeypatch.delenv("REPLICATE_NO_TRAIN")
    monkeypatch.setenv("REPLICATE_TIMINGS", "1")
    timings.measured("paper", "01_cost", "smoke", measure)
    assert calls == [1, 1]


def test_missing_timing_under_no_train_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("REPLICATE_ROOT", str(tmp_path))
    monkeypatch.setenv("REPLICATE_NO_TRAIN", "1")
    with pytest.raises(TrainingDisabled, match="timing 01_cost"):
        timings.measured("paper", "01_cost", "smoke", lambda: pd.DataFrame())


def test_fit_refuses_under_no_train(monkeypatch, tiny):
    from replicate import models, train
    monkeypatch.setenv("REPLICATE_NO_TRAIN", "1")
    net = models.build("lenet300-100", tiny.input_shape, tiny.num_classes)
    with pytest.raises(TrainingDisabled):
        train.fit(net, tiny, epochs=1)


def test_weights_are_recovered_on_the_records_thread_count(monkeypatch):
    from replicate import train
    monkeypatch.setenv("REPLICATE_THREADS", "2")
    cfg = RunConfig(**SMALL)
    rec = replicate.run(cfg)
    assert rec["provenance"]["threads"] == 2
    Store.for_profile(cfg.profile).weights_path(cfg).unlink()
    monkeypatch.setenv("REPLICATE_THREADS", "1")
    torch.set_num_threads(1)
    asked = []
    real = train.set_threads
    monkeypatch.setattr(train, "set_threads", lambda n=None: asked.append(n) or real(n))
    model, used = runner.load_model(cfg)
    assert asked == [2] and torch.get_num_threads() == 1
    assert used["checksum"] == rec["checksum"] and "weights" not in used


def test_compute_all_recovers_missing_weights_in_workers():
    cfgs = [RunConfig(**SMALL, seed=s) for s in (0, 1)]
    for c in cfgs:
        replicate.run(c)
        Store.for_profile(c.profile).weights_path(c).unlink()
    values = analyses.compute_all(cfgs, "fc1_kept", fc1_kept, workers=2)
    assert len(values) == 2 and all(len(v) == 784 for v in values)
    assert all(Store.for_profile(c.profile).weights_path(c).exists() for c in cfgs)

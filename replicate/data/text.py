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

``kjv_word``
    The same text with words as tokens: each verse a line, split on whitespace with
    punctuation kept apart from words, ``<eos>`` at every line end (the WikiText
    convention); the vocabulary is built on train only, unseen words map to ``<unk>``.

``enwik8`` (paper profile)
    The first 100,000,000 bytes of the English Wikipedia dump of the Hutter Prize,
    ``$REPLICATE_DATA/enwik8/enwik8`` (unzipped), checked by size and its first bytes;
    bytes are the tokens, split 90M / 5M / 5M as in the FLOP paper's setup.

``wikitext103`` (paper profile)
    WikiText-103's tokenised files ``wiki.train.tokens``, ``wiki.valid.tokens`` and
    ``wiki.test.tokens`` in ``$REPLICATE_DATA/wikitext-103/``: words split on spaces,
    ``<eos>`` at each line end, the vocabulary built on train (the files carry their own
    ``<unk>``).

``kjv_char_sample``
    The first 515 verses of the same text (Genesis 1:1 to 21:1, 63,918
    characters), shipped with the package (``kjv_genesis.txt``, md5-checked),
    so that the smoke profile of the language-model notebooks needs no
    installed corpus. Same splits and vocabulary rule as ``kjv_char``.

``kjv_word_sample``
    The same shipped verses with words as tokens, as ``kjv_word`` does.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, replace
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


EOS = "<eos>"
ENWIK8_BYTES = 100_000_000
ENWIK8_HEAD = b"<mediawiki"
ENWIK8_SPLITS = (90_000_000, 5_000_000, 5_000_000)
WIKITEXT_FILES = ("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens")
_WORD = re.compile(r"\w+(?:'\w+)?|[^\w\s]")


def words(text: str) -> list:
    """Word tokens of plain text: words (with an inner apostrophe) and single punctuation marks,
    `<eos>` at every line end."""
    out = []
    for line in text.splitlines():
        toks = _WORD.findall(line)
        if toks:
            out += toks + [EOS]
    return out


def word_stream(name: str, train: list, dev: list, test: list, source: str) -> TextStream:
    """Word tokens as ids, the vocabulary (sorted by frequency, then alphabetically) built on train
    only; `<unk>` (id 0) for a word never seen in train."""
    from collections import Counter

    counts = Counter(train)
    counts.pop(UNK, None)
    vocab = (UNK,) + tuple(sorted(counts, key=lambda w: (-counts[w], w)))
    index = {w: i for i, w in enumerate(vocab)}

    def ids(part: list) -> torch.Tensor:
        return torch.tensor([index.get(w, 0) for w in part], dtype=torch.int64)

    return TextStream(name, ids(train), ids(dev), ids(test), vocab, source, unit="word")


def _data_dir(what: str, sub: str, root, install: str) -> Path:
    base = Path(root) if root is not None else (Path(os.environ["REPLICATE_DATA"]) / sub
                                                if os.environ.get("REPLICATE_DATA") else None)
    if base is None or not base.is_dir():
        raise DataNotFound(f"dataset {what!r} not found ({'no ' + str(base) if base else 'REPLICATE_DATA is not set'}); "
                           f"{install}")
    return base


def load_enwik8(root=None, expected_bytes: int = ENWIK8_BYTES, splits=ENWIK8_SPLITS) -> TextStream:
    """enwik8 as bytes (see the module docstring); `expected_bytes` and `splits` are the real file's
    unless a test passes a fabricated one's."""
    base = _data_dir("enwik8", "enwik8", root, "download enwik8.zip from the Hutter Prize page, unzip it and "
                     "put the file `enwik8` in $REPLICATE_DATA/enwik8/")
    path = base / "enwik8"
    if not path.is_file():
        raise DataNotFound(f"dataset 'enwik8': {path} is missing; unzip enwik8.zip into {base}")
    raw = path.read_bytes()
    if len(raw) != expected_bytes or not raw.startswith(ENWIK8_HEAD):
        raise DataCorrupt(f"{path} has {len(raw):,} bytes starting {raw[:10]!r}; enwik8 has {expected_bytes:,} "
                          f"starting {ENWIK8_HEAD!r}: download and unzip it again")
    if sum(splits) != len(raw):
        raise ValueError(f"splits {splits} do not add up to the file's {len(raw):,} bytes")
    data = torch.frombuffer(bytearray(raw), dtype=torch.uint8).to(torch.int64)
    n_train, n_dev, _ = splits
    train, dev, test = data[:n_train], data[n_train:n_train + n_dev], data[n_train + n_dev:]
    present = torch.unique(train)
    lut = torch.zeros(256, dtype=torch.int64)          # byte -> id; bytes unseen in train -> 0 (unknown)
    lut[present] = torch.arange(1, len(present) + 1)
    vocab = (UNK,) + tuple(f"0x{int(b):02x}" for b in present)
    return TextStream("enwik8", lut[train], lut[dev], lut[test], vocab, f"file:{path.name}", unit="char")


def load_wikitext103(root=None) -> TextStream:
    """WikiText-103's word streams (see the module docstring)."""
    base = _data_dir("wikitext103", "wikitext-103", root, "download wikitext-103-v1.zip (the tokenised version), "
                     "unzip it and put wiki.{train,valid,test}.tokens in $REPLICATE_DATA/wikitext-103/")
    parts = []
    for name in WIKITEXT_FILES:
        path = base / name
        if not path.is_file():
            raise DataNotFound(f"dataset 'wikitext103': {path} is missing; expected {', '.join(WIKITEXT_FILES)} in {base}")
        toks = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.split()
                if line:
                    toks += line + [EOS]
        parts.append(toks)
    if not parts[0]:
        raise DataCorrupt(f"{base / WIKITEXT_FILES[0]} holds no tokens")
    return word_stream("wikitext103", *parts, source="file:wikitext-103")


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
    return _kjv_stream("kjv", strip_references(raw.decode("utf-8")), source, unit)


def _kjv_stream(name: str, text: str, source: str, unit: str) -> TextStream:
    """`<name>_char` or `<name>_word` (`unit`) of King James text whose references are stripped."""
    if unit == "word":
        train, dev, test = split_text(text)
        return word_stream(f"{name}_word", words(train), words(dev), words(test), source)
    if unit != "char":
        raise ValueError(f"unknown unit {unit!r}; valid: char, word")
    return char_stream(f"{name}_char", text, source)


def load_kjv_sample(unit: str = "char") -> TextStream:
    """The shipped first 515 verses of the King James Bible as characters or words (module docstring)."""
    raw = KJV_SAMPLE.read_bytes()
    digest = hashlib.md5(raw).hexdigest()
    if digest != KJV_SAMPLE_MD5:
        raise DataCorrupt(f"the shipped King James sample {KJV_SAMPLE.name} has md5 {digest}, expected {KJV_SAMPLE_MD5}: "
                          "restore it from the repository")
    ds = _kjv_stream("kjv", raw.decode("utf-8"), f"package:{KJV_SAMPLE.name}", unit)
    return replace(ds, name=f"{ds.name}_sample")


def subset(ds: TextStream, n_train: int | None = None, n_test: int | None = None) -> TextStream:
    """The first `n_train` training and `n_test` dev and test tokens (streams stay contiguous)."""
    for what, n, have in (("n_train", n_train, len(ds.train)), ("n_test", n_test, len(ds.test))):
        if n is not None and not 0 < n <= have:
            raise ValueError(f"{what}={n} must be between 1 and {have}")
    train = ds.train if n_train is None else ds.train[:n_train]
    dev = ds.dev if n_test is None else ds.dev[:n_test]
    test = ds.test if n_test is None else ds.test[:n_test]
    return TextStream(ds.name, train, dev, test, ds.vocab, ds.source, ds.unit)

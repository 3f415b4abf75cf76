"""Sentence (and sentence-pair) classification sets, for the transformer stand-in of FLOP.

A `SentenceSet` holds three fixed splits of labelled examples (``text_a``, an
optional ``text_b`` for pair tasks, and an integer label, or a float score for
STS-B) and the label names. Tokenising is the model's business (its own
WordPiece vocabulary), so the examples stay strings here.

``kjv_testament`` (cpu profile)
    Verses of the King James Bible (the same Debian dump as ``kjv_char``) labelled
    by testament: 0 = Old (Genesis to Malachi), 1 = New (Matthew to Revelation).
    Balanced: every New Testament verse (7,957) and as many Old Testament verses,
    those whose reference has the smallest md5 (a fixed choice that needs no
    random generator). Fixed split, also by the reference's md5: one twentieth of
    the verses is test, one twentieth dev, the rest train; so neighbouring verses
    of one chapter can fall in different splits, which makes the task easier than
    a split by book would. **It is not GLUE**: a stand-in with real text that runs
    offline, chosen so that a small encoder is far from both chance and perfection.

``kjv_testament_sample`` (smoke profile)
    The same task on text shipped with the package: the 515 verses of ``kjv_genesis.txt``
    (Genesis 1:1 to 21:1, label 0) and the first 515 verses of Matthew in ``kjv_matthew.txt``
    (Matthew 1:1 to 15:26, label 1), both md5-checked, split by the same rule (the md5 of the
    verse's file and line number).

GLUE (paper profile): ``sst2``, ``cola``, ``mrpc``, ``qqp``, ``stsb``, ``mnli``, ``qnli``, ``rte``, ``wnli``
    The standard TSV files of the GLUE benchmark as its download script lays them
    out, ``$REPLICATE_DATA/glue/<TASK>/train.tsv`` and ``dev.tsv`` (MNLI:
    ``dev_matched.tsv``), with ``<TASK>`` spelled as there (``SST-2``, ``CoLA``,
    ``MRPC``, ``QQP``, ``STS-B``, ``MNLI``, ``QNLI``, ``RTE``, ``WNLI``). GLUE's
    test labels are not public, so the dev file is the test split here (as in the
    FLOP paper's GLUE results) and the dev split is empty. Each file's header
    (CoLA has none) is checked against the columns read; rows with the wrong
    number of fields are skipped and counted (QQP ships a few), and more than
    0.1 % of such rows is an error. Nothing is downloaded.
"""
from __future__ import annotations

import csv
import hashlib
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataCorrupt, DataNotFound, check_choice
from .text import KJV_DUMP_MD5, KJV_INSTALL, KJV_SAMPLE, KJV_SAMPLE_MD5, _read_dump

# The books of the New Testament as the `bible` program abbreviates them (Matthew to Revelation).
NEW_TESTAMENT = ("Mat", "Mark", "Luke", "John", "Acts", "Rom", "1Cor", "2Cor", "Gal", "Eph", "Phi", "Col", "1Th",
                 "2Th", "1Tim", "2Tim", "Titus", "Phmn", "Heb", "Jas", "1Pet", "2Pet", "1Jn", "2Jn", "3Jn", "Jude", "Rev")
KJV_VERSES = 31102
KJV_NEW_VERSES = 7957
_REFERENCE = re.compile(r"^([1-3]?[A-Za-z]+)(\d+:\d+) (.*)$")


@dataclass(frozen=True)
class Example:
    text_a: str
    label: int | float
    text_b: str | None = None


@dataclass(frozen=True, repr=False)
class SentenceSet:
    """Labelled sentences (or pairs) in three fixed splits. `labels` is empty for a regression task."""

    name: str
    train: tuple
    dev: tuple
    test: tuple
    labels: tuple
    source: str
    skipped: dict = field(default_factory=dict)    # split -> malformed rows skipped

    task = "sentence_classification"
    pairs = property(lambda self: any(e.text_b is not None for e in self.train[:100]))
    num_classes = property(lambda self: len(self.labels) or 1)

    def counts(self, split: str) -> dict:
        """How many examples of each label `split` holds (classification tasks)."""
        out = {name: 0 for name in self.labels}
        for e in getattr(self, split):
            out[self.labels[e.label]] += 1
        return out

    def __repr__(self) -> str:
        return (f"SentenceSet(name={self.name!r}, train={len(self.train)}, dev={len(self.dev)}, test={len(self.test)}, "
                f"labels={self.labels or 'regression'}, source={self.source!r})")


def _md5(s: str) -> str:
    return hashlib.md5(s.encode("utf-8")).hexdigest()


def testament_examples(dump: str) -> list:
    """(reference, verse, label) for every verse of a `bible -f` dump; label 1 for the New Testament."""
    out = []
    for n, line in enumerate(dump.splitlines(), 1):
        if not line.strip():
            continue
        m = _REFERENCE.match(line)
        if not m:
            raise DataCorrupt(f"line {n} of the King James dump has no verse reference: {line[:40]!r}")
        book, verse, text = m.groups()
        out.append((book + verse, text, int(book in NEW_TESTAMENT)))
    return out


def testament_set(dump: str, source: str, name: str = "kjv_testament") -> SentenceSet:
    """The balanced, fixed-split testament classification set of a dump (see the module docstring)."""
    verses = testament_examples(dump)
    new = [v for v in verses if v[2] == 1]
    old = sorted((v for v in verses if v[2] == 0), key=lambda v: _md5(v[0]))[:len(new)]
    if not new or len(old) < len(new):
        raise DataCorrupt(f"the dump has {len(new)} New and {len(old)} Old Testament verses; cannot balance them")
    splits = _split(old + new, key=lambda v: v[0])
    return SentenceSet(name, *(tuple(Example(t, y) for _, t, y in splits[k]) for k in ("train", "dev", "test")),
                       ("old", "new"), source)


def load_kjv_testament(root=None) -> SentenceSet:
    raw, source = _read_dump(root)
    digest = hashlib.md5(raw).hexdigest()
    if digest != KJV_DUMP_MD5:
        raise DataCorrupt(f"the King James Bible dump ({source}, {len(raw)} bytes) has md5 {digest}, expected "
                          f"{KJV_DUMP_MD5}: reinstall with `{KJV_INSTALL}`")
    ds = testament_set(raw.decode("utf-8"), source)
    n = len(ds.train) + len(ds.dev) + len(ds.test)
    if n != 2 * KJV_NEW_VERSES:
        raise DataCorrupt(f"kjv_testament has {n} verses, expected {2 * KJV_NEW_VERSES}")
    return ds


KJV_MATTHEW_SAMPLE = Path(__file__).with_name("kjv_matthew.txt")
KJV_MATTHEW_SAMPLE_MD5 = "820637880fb17ffb1086ae5d6108dd36"   # 60,385 bytes, 515 verses, prefixes stripped


def _split(items, key):
    """Fixed split by the md5 of each item's key: one twentieth test, one twentieth dev, the rest train."""
    splits = {"train": [], "dev": [], "test": []}
    for item in sorted(items, key=lambda it: _md5("split:" + key(it))):
        bucket = int(_md5("split:" + key(item))[:8], 16) % 20
        splits["test" if bucket == 0 else "dev" if bucket == 1 else "train"].append(item)
    return splits


def load_kjv_testament_sample() -> SentenceSet:
    """The shipped Genesis (Old) and Matthew (New) samples as a testament set (see the module docstring)."""
    verses = []
    for path, md5, label in ((KJV_SAMPLE, KJV_SAMPLE_MD5, 0), (KJV_MATTHEW_SAMPLE, KJV_MATTHEW_SAMPLE_MD5, 1)):
        raw = path.read_bytes()
        if hashlib.md5(raw).hexdigest() != md5:
            raise DataCorrupt(f"the shipped sample {path.name} has md5 {hashlib.md5(raw).hexdigest()}, expected {md5}: "
                              "restore it from the repository")
        verses += [(f"{path.name}:{i}", line, label) for i, line in enumerate(raw.decode("utf-8").splitlines(), 1)]
    splits = _split(verses, key=lambda v: v[0])
    return SentenceSet("kjv_testament_sample", *(tuple(Example(t, y) for _, t, y in splits[k]) for k in ("train", "dev", "test")),
                       ("old", "new"), "package:kjv_genesis.txt+kjv_matthew.txt")


# GLUE: folder, whether the file has a header, then (text_a, text_b, label) as header names or, without a
# header, column positions; the label names in id order (empty for STS-B's regression score); the dev file.
GLUE = {
    "sst2": ("SST-2", True, ("sentence", None, "label"), ("0", "1"), "dev.tsv"),
    "cola": ("CoLA", False, (3, None, 1), ("0", "1"), "dev.tsv"),
    "mrpc": ("MRPC", True, ("#1 String", "#2 String", "Quality"), ("0", "1"), "dev.tsv"),
    "qqp": ("QQP", True, ("question1", "question2", "is_duplicate"), ("0", "1"), "dev.tsv"),
    "stsb": ("STS-B", True, ("sentence1", "sentence2", "score"), (), "dev.tsv"),
    "mnli": ("MNLI", True, ("sentence1", "sentence2", "gold_label"), ("contradiction", "entailment", "neutral"),
             "dev_matched.tsv"),
    "qnli": ("QNLI", True, ("question", "sentence", "label"), ("entailment", "not_entailment"), "dev.tsv"),
    "rte": ("RTE", True, ("sentence1", "sentence2", "label"), ("entailment", "not_entailment"), "dev.tsv"),
    "wnli": ("WNLI", True, ("sentence1", "sentence2", "label"), ("0", "1"), "dev.tsv"),
}
MALFORMED_LIMIT = 0.001


def _read_tsv(path: Path, task: str) -> tuple[list, int]:
    folder, header, (a, b, y), labels, _ = GLUE[task]
    csv.field_size_limit(sys.maxsize)
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows:
        raise DataCorrupt(f"{path} is empty")
    if header:
        names = rows[0]
        missing = [c for c in (a, b, y) if c is not None and c not in names]
        if missing:
            raise DataCorrupt(f"{path} is not GLUE's {folder} file: its header lacks {', '.join(missing)} "
                              f"(has {', '.join(names)})")
        a, b, y = (None if c is None else names.index(c) for c in (a, b, y))
        width, rows = len(names), rows[1:]
    else:
        width = len(rows[0])
    index = {lab: i for i, lab in enumerate(labels)}
    out, bad = [], 0
    for row in rows:
        if len(row) != width:
            bad += 1
            continue
        raw = row[y].strip()
        if labels:
            if raw not in index:
                raise DataCorrupt(f"{path}: label {raw!r} is not one of {', '.join(labels)}")
            label = index[raw]
        else:
            try:
                label = float(raw)
            except ValueError:
                raise DataCorrupt(f"{path}: score {raw!r} is not a number") from None
        out.append(Example(row[a], label, None if b is None else row[b]))
    if rows and bad > MALFORMED_LIMIT * len(rows):
        raise DataCorrupt(f"{path}: {bad} of {len(rows)} rows have the wrong number of fields (limit "
                          f"{MALFORMED_LIMIT:.1%}); the file is not GLUE's {folder} TSV")
    if not out:
        raise DataCorrupt(f"{path} holds no examples")
    return out, bad


def glue_dir(task: str, root=None) -> Path:
    check_choice("GLUE task", task, tuple(GLUE))
    folder = GLUE[task][0]
    base = Path(root) if root is not None else (Path(os.environ["REPLICATE_DATA"]) / "glue"
                                                if os.environ.get("REPLICATE_DATA") else None)
    if base is None:
        raise DataNotFound(f"GLUE {folder} needs REPLICATE_DATA: put the benchmark's TSV files in "
                           f"$REPLICATE_DATA/glue/{folder}/ (train.tsv, {GLUE[task][4]}); nothing is downloaded")
    d = base / folder
    need = [d / "train.tsv", d / GLUE[task][4]]
    missing = [str(p) for p in need if not p.is_file()]
    if missing:
        raise DataNotFound(f"GLUE {folder} not found (missing {', '.join(missing)}); put the benchmark's TSV files "
                           f"in {d}/ as GLUE's download script lays them out; nothing is downloaded")
    return d


def load_glue(task: str, root=None) -> SentenceSet:
    """A GLUE task from its standard TSV files (see the module docstring); dev is the test split."""
    d = glue_dir(task, root)
    train, bad_train = _read_tsv(d / "train.tsv", task)
    test, bad_test = _read_tsv(d / GLUE[task][4], task)
    return SentenceSet(f"glue_{task}", tuple(train), (), tuple(test), GLUE[task][3], f"file:glue/{GLUE[task][0]}",
                       skipped={"train": bad_train, "test": bad_test})



@dataclass(frozen=True, repr=False)
class TokenSet:
    """A sentence set tokenised for one encoder: (N, L) int64 token ids padded with `pad_id`, int64 labels."""

    name: str
    x_train: object          # torch.Tensor int64 (N, L)
    y_train: object          # torch.Tensor int64 (N,)
    x_test: object
    y_test: object
    num_classes: int
    source: str
    pad_id: int = 0
    vocab_size: int = 0

    task = "sequence_classification"

    def __post_init__(self):
        import torch
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.dtype != torch.int64 or x.dim() != 2 or y.dtype != torch.int64 or len(y) != len(x):
                raise ValueError(f"x_{split} must be int64 (N, L) token ids with one int64 label each; got "
                                 f"{x.dtype} {tuple(x.shape)} and {y.dtype} {tuple(y.shape)}")

    n_train = property(lambda self: len(self.y_train))
    n_test = property(lambda self: len(self.y_test))

    def __repr__(self) -> str:
        return (f"TokenSet(name={self.name!r}, train={self.n_train}, test={self.n_test}, length={self.x_train.shape[1]}, "
                f"classes={self.num_classes}, source={self.source!r})")


def tokenize(ds: SentenceSet, tokenizer, max_len: int, split_as_test: str = "test") -> TokenSet:
    """`ds` as token ids of `tokenizer` (a Hugging Face tokenizer: [CLS] text_a [SEP] (text_b [SEP])), cut to
    `max_len` tokens and padded with its pad id; `split_as_test` names the split that becomes the test set."""
    import torch
    if not ds.labels:
        raise ValueError(f"{ds.name} is a regression task; TokenSet holds class labels")

    def ids(examples):
        pairs = any(e.text_b is not None for e in examples)
        enc = tokenizer([e.text_a for e in examples], [e.text_b for e in examples] if pairs else None,
                        truncation=True, max_length=max_len, padding="max_length")
        return (torch.tensor(enc["input_ids"], dtype=torch.int64),
                torch.tensor([e.label for e in examples], dtype=torch.int64))

    x_tr, y_tr = ids(ds.train)
    x_te, y_te = ids(getattr(ds, split_as_test))
    return TokenSet(ds.name, x_tr, y_tr, x_te, y_te, len(ds.labels), ds.source, int(tokenizer.pad_token_id),
                    len(tokenizer))


def token_subset(ds: TokenSet, n_train: int | None = None, n_test: int | None = None) -> TokenSet:
    """The first `n_train` training and `n_test` test examples (the sets are already in a fixed shuffled order)."""
    for what, n, have in (("n_train", n_train, ds.n_train), ("n_test", n_test, ds.n_test)):
        if n is not None and not 0 < n <= have:
            raise ValueError(f"{what}={n} must be between 1 and {have}")
    tr, te = slice(None, n_train), slice(None, n_test)
    return TokenSet(ds.name, ds.x_train[tr], ds.y_train[tr], ds.x_test[te], ds.y_test[te], ds.num_classes, ds.source,
                    ds.pad_id, ds.vocab_size)


TESTAMENT_MAX_LEN = 64     # WordPiece tokens with [CLS] and [SEP]; about 3 % of the verses are longer and cut


def load_kjv_testament_tokens(root=None, sample: bool = False) -> TokenSet:
    """kjv_testament (or its shipped sample) tokenised with the MiniLM's WordPiece vocabulary (BERT-base
    uncased's), 64 tokens at most."""
    from ..models.bert import minilm_tokenizer
    ds = load_kjv_testament_sample() if sample else load_kjv_testament(root)
    return tokenize(ds, minilm_tokenizer(), TESTAMENT_MAX_LEN)


GLUE_MAX_LEN = 128     # BERT's usual fine-tuning length


def load_glue_tokens(task: str, root=None, encoder: str = "bert-base") -> TokenSet:
    """A GLUE classification task tokenised for `encoder` (pairs as [CLS] a [SEP] b [SEP]), 128 tokens at most."""
    from ..models.bert import tokenizer
    return tokenize(load_glue(task, root), tokenizer(encoder), GLUE_MAX_LEN)


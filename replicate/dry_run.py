"""The paper profile's dry run (`make test-paper-dry`): every notebook in the `paper` profile, against small
fabricated datasets laid out exactly as the real ones, with epochs, sizes and method schedules capped.

Nobody can run the paper profile here (its datasets are not reachable), so without a dry run a user with
the hardware would be the first to execute those code paths, hours into a job. With REPLICATE_DRY_RUN=1:

  * every RunConfig of the paper profile is capped when it is made (`cap`, called by RunConfig itself, so
    the notebooks, the store and the parents all see the same capped configuration): at most EPOCHS epochs,
    batches of at most BATCH, at most TRAIN / TEST / VAL examples (language models: TOKENS tokens in windows of
    at most BPTT, so that the paper's 34.5M-parameter SRU takes two steps, not thousands), and each
    method's own schedule arguments at most METHOD_CAPS (DRL's iterations and batches, adaptive
    quantization's iterations and gradient samples, the pruning interval of gradual magnitude pruning);
  * a study plan's seeds are cut to the first (`studies.choose`): the paper-scale models make every run
    cost minutes even when capped, and every seed runs the same code;
  * dataset files are not checksum-verified (they are fabricated, so no published md5 can match); their
    format, counts and shapes are still checked by the real loaders;
  * runs, weights and outputs go under build/paper-dry/ (never into results/ or the weight cache), and the
    published weights a `pretrained` run loads are a file of random values of the right shapes there
    (TORCH_HOME), since they cannot be downloaded here either.

Nothing else changes: the same study plans, models (at paper scale), methods, notebooks and report code
run as they would for a real paper-profile run. `fabricate(root)` writes the datasets; `main` fabricates
them under build/paper-dry/data and executes the notebooks (all, or those named), reporting each
notebook's outcome instead of stopping at the first failure.

This module imports nothing of the package at import time: config.py calls `cap` for every RunConfig.
"""
from __future__ import annotations

import argparse
import gzip
import os
import pickle
import struct
import sys
import time
from pathlib import Path

ENV = "REPLICATE_DRY_RUN"
EPOCHS, BATCH, TRAIN, TEST, VAL, TOKENS, BPTT = 1, 16, 64, 32, 16, 1024, 32
METHOD_CAPS = {
    "drl_prune": {"iterations": 2, "agent_batches": 2, "cnn_batches": 2, "pretrain_batches": 2, "finetune_epochs": 1},
    "adaptive_quant": {"max_iters": 2, "grad_samples": 64},
    "magnitude": {"prune_every": 1},
}
LANGUAGE = ("kjv_char", "kjv_word", "enwik8", "wikitext103", "kjv_char_sample", "kjv_word_sample")


def active() -> bool:
    return os.environ.get(ENV, "0") not in ("0", "", "false", "no")


def _min(value, cap):
    return cap if value is None else min(value, cap)


def cap(fields: dict) -> dict:
    """The capped values of a paper-profile configuration's fields (a dict of RunConfig fields; only the
    ones that change are returned). Idempotent; other profiles are left alone."""
    if not active() or fields.get("profile") != "paper":
        return {}
    out = {"epochs": min(fields["epochs"], EPOCHS), "batch_size": min(fields["batch_size"], BATCH)}
    language = fields.get("dataset") in LANGUAGE
    if language and fields.get("bptt") is not None:
        out["bptt"] = min(fields["bptt"], BPTT)
    out["train_size"] = _min(fields.get("train_size"), TOKENS if language else TRAIN)
    out["test_size"] = _min(fields.get("test_size"), TOKENS // 2 if language else TEST)
    if fields.get("val_size") is not None:
        out["val_size"] = min(fields["val_size"], TOKENS // 4 if language else VAL)
    from .methods.args import ARGS      # the defaults table imports nothing else

    method = fields.get("method")
    args = dict(fields.get("args") or {})
    changed = {}
    for k, limit in METHOD_CAPS.get(method, {}).items():
        value = args.get(k, ARGS.get(method, {}).get(k))
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > limit:
            changed[k] = limit
    if changed:
        out["args"] = {**args, **changed}
    return {k: v for k, v in out.items() if fields.get(k) != v}


# --- fabricated datasets, in the real layouts ----------------------------------------------------------

def _idx(path: Path, array, compress: bool) -> None:
    import numpy as np
    a = np.ascontiguousarray(array, dtype=np.uint8)
    raw = struct.pack(">BBBB", 0, 0, 0x08, a.ndim) + struct.pack(">" + "I" * a.ndim, *a.shape) + a.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        with gzip.open(path, "wb", compresslevel=1) as f:
            f.write(raw)
    else:
        path.write_bytes(raw)


def _mnist_style(directory: Path, seed: int) -> None:
    """train/t10k images and labels as .gz IDX files with the real counts (60,000 / 10,000)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    for split, n in (("train", 60000), ("t10k", 10000)):
        images = np.zeros((n, 28, 28), np.uint8)
        images[:, 10:18, 10:18] = rng.integers(0, 256, (n, 1, 1), dtype=np.uint8)
        _idx(directory / f"{split}-images-idx3-ubyte.gz", images, True)
        _idx(directory / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10, True)


def _cifar(directory: Path, per_batch: int = 20, n_test: int = 40) -> None:
    """cifar-10-batches-py as torchvision reads it: five training pickles, a test pickle, batches.meta."""
    import numpy as np
    folder = directory / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         "labels": (np.arange(n) % 10).tolist(), "batch_label": name}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                                     "truck"], "num_vis": 3072}, f)


def _svhn(directory: Path, n_train: int = 100, n_test: int = 40) -> None:
    """train_32x32.mat and test_32x32.mat: X (32, 32, 3, N) uint8, y (N, 1) with 10 for the digit 0."""
    import numpy as np
    import scipy.io
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    for split, n in (("train", n_train), ("test", n_test)):
        scipy.io.savemat(directory / f"{split}_32x32.mat", {"X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8),
                                                            "y": (np.arange(n) % 10 + 1).reshape(-1, 1).astype(np.uint8)})


def _imagenet(directory: Path, classes: int = 1000, per_class_train: int = 1, per_class_val: int = 1) -> None:
    """meta.bin + train/<wnid>/*.JPEG + val/<wnid>/*.JPEG for 1,000 classes (what torchvision's ImageNet class
    leaves after unpacking the official archives), one small image per class and split."""
    import torch
    from PIL import Image
    wnids = [f"n{10000000 + i:08d}" for i in range(classes)]
    for split, n in (("train", per_class_train), ("val", per_class_val)):
        for c, w in enumerate(wnids):
            d = directory / split / w
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                path = d / f"{w}_{i}.JPEG"
                if not path.exists():
                    Image.new("RGB", (64 + (c % 5) * 8, 48 + (i % 3) * 16), ((c * 37) % 256, (c * 91) % 256, 128)).save(path)
    torch.save(({w: (f"class {k}",) for k, w in enumerate(wnids)}, [w for w in wnids for _ in range(per_class_val)]),
               directory / "meta.bin")


def _enwik8(directory: Path, size: int = 100_000_000) -> None:
    """enwik8, unzipped: 100,000,000 bytes starting as the real file does (the loader checks both)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "enwik8"
    if path.exists() and path.stat().st_size == size:
        return
    head = b'<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.3/" '
    body = b"<page><title>Dry run</title><text>Fabricated bytes for the paper profile's dry run.</text></page>\n"
    blob = head + body * ((size - len(head)) // len(body) + 1)
    path.write_bytes(blob[:size])


WT103_TYPES = 110_000     # more word types than the last cutoff of the paper's word model (100,000)


def _wikitext103(directory: Path) -> None:
    """wiki.{train,valid,test}.tokens; the training split has WT103_TYPES word types (each rare word once), so
    that the paper-profile word model keeps all six of its adaptive clusters, as it would on WikiText-103."""
    directory.mkdir(parents=True, exist_ok=True)
    line = " = Dry run = \n the quick brown fox jumps over the lazy dog , and <unk> . \n"
    rare = "".join(" ".join(f"w{i}" for i in range(j, min(j + 1000, WT103_TYPES))) + " \n"
                   for j in range(0, WT103_TYPES, 1000))
    for name, text in (("wiki.train.tokens", line * 2000 + rare), ("wiki.valid.tokens", line * 200),
                       ("wiki.test.tokens", line * 200)):
        (directory / name).write_text(text)


def _glue(directory: Path, n_train: int = 200, n_dev: int = 40) -> None:
    """GLUE's SST-2 as its download script lays it out: train.tsv and dev.tsv with a sentence\tlabel header."""
    d = directory / "SST-2"
    d.mkdir(parents=True, exist_ok=True)
    words = ("a fine film", "dull and long", "the best of the year", "not worth it")
    for name, n in (("train.tsv", n_train), ("dev.tsv", n_dev)):
        (d / name).write_text("sentence\tlabel\n" + "".join(f"{words[i % 4]} {i}\t{int(i % 4 in (0, 2))}\n"
                                                             for i in range(n)))


def bert_base(directory: Path) -> Path:
    """A BERT-base folder as save_pretrained writes it (config of bert-base-uncased: 12 layers, hidden 768,
    vocabulary 30,522) with a fresh network's random weights and a fabricated WordPiece vocabulary of the
    right size, for REPLICATE_BERT."""
    directory = Path(directory)
    if (directory / "model.safetensors").exists():
        return directory
    import torch
    import transformers
    transformers.utils.logging.disable_progress_bar()
    directory.mkdir(parents=True, exist_ok=True)
    special = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = ["a", "fine", "film", "dull", "and", "long", "the", "best", "of", "year", "not", "worth", "it"]
    vocab = special + words + [f"w{i}" for i in range(30522 - len(special) - len(words))]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    config = transformers.BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                     intermediate_size=3072, max_position_embeddings=512)
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(directory)
    transformers.BertTokenizer(str(directory / "vocab.txt")).save_pretrained(directory)
    return directory


def published_weights(torch_home: Path) -> list:
    """Files in place of the published weights that `pretrained` runs load (methods/pretrained.py: VGG-16's
    ImageNet weights), where torchvision looks for them ($TORCH_HOME/hub/checkpoints/<the URL's file name>):
    a state dict of the right keys and shapes with a fresh network's random values (torchvision does not
    check the file's hash by default). Returns the paths written or found."""
    import torch
    import torchvision

    from .methods.pretrained import WEIGHTS
    out = []
    for builder, names in WEIGHTS.values():
        for name in names:
            enum = torchvision.models.get_model_weights(builder)[name]
            path = Path(torch_home) / "hub" / "checkpoints" / enum.url.rsplit("/", 1)[-1]
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.manual_seed(0)
                net = torchvision.models.get_model(builder, weights=None, num_classes=len(enum.meta["categories"]))
                torch.save(net.state_dict(), path)
            out.append(path)
    return out


def fabricate(root: Path) -> dict:
    """Write every paper-profile dataset under `root` (the REPLICATE_DATA layout). Returns name -> path."""
    root = Path(root)
    made = {"mnist": root / "mnist", "fashion_mnist": root / "fashion_mnist", "cifar10": root / "cifar10",
            "svhn": root / "svhn", "imagenet": root / "imagenet", "enwik8": root / "enwik8",
            "wikitext103": root / "wikitext-103", "glue": root / "glue"}
    if not (made["mnist"] / "t10k-labels-idx1-ubyte.gz").exists():
        _mnist_style(made["mnist"], 0)
    if not (made["fashion_mnist"] / "t10k-labels-idx1-ubyte.gz").exists():
        _mnist_style(made["fashion_mnist"], 1)
    if not (made["cifar10"] / "cifar-10-batches-py" / "batches.meta").exists():
        _cifar(made["cifar10"])
    if not (made["svhn"] / "test_32x32.mat").exists():
        _svhn(made["svhn"])
    if not (made["imagenet"] / "meta.bin").exists():
        _imagenet(made["imagenet"])
    _enwik8(made["enwik8"])
    if not (made["wikitext103"] / "wiki.test.tokens").exists():
        _wikitext103(made["wikitext103"])
    if not (made["glue"] / "SST-2" / "dev.tsv").exists():
        _glue(made["glue"])
    return made


# --- the driver ----------------------------------------------------------------------------------------

def _why(err: BaseException) -> str:
    """The last line of a notebook's error (papermill puts the cell's exception there)."""
    lines = [ln for ln in str(err).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(err).__name__


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m replicate.dry_run",
                                description="Execute notebooks in the paper profile against fabricated data, capped "
                                            "(make test-paper-dry); writes only under build/paper-dry/.")
    p.add_argument("paths", nargs="*", help="notebooks or folders (default: every notebook)")
    a = p.parse_args(argv)
    import papermill as pm

    from .reproduce import _notebooks, kernel_manager_class
    from .store import repo_root

    root = repo_root()
    base = root / "build" / "paper-dry"
    notebooks = [n for n in _notebooks(a.paths) if not n.name.startswith("_")]
    os.environ.update({ENV: "1", "REPLICATE_PROFILE": "paper", "REPLICATE_DATA": str(base / "data"),
                       "TORCH_HOME": str(base / "torch"), "REPLICATE_BERT": str(base / "bert-base"),
                       "REPLICATE_STORE": str(base / "runs"), "REPLICATE_CACHE": str(base / "cache"),
                       "REPLICATE_DOWNLOAD": "0", "REPLICATE_PROGRESS": "0", "REPLICATE_NO_TRAIN": "0"})
    t0 = time.perf_counter()
    print(f"fabricating the paper profile's datasets under {base / 'data'} ...", flush=True)
    fabricate(base / "data")
    published_weights(base / "torch")
    bert_base(base / "bert-base")
    print(f"  done in {time.perf_counter() - t0:.0f} s", flush=True)
    km_class = kernel_manager_class(root)
    (root / "build" / "tmp").mkdir(parents=True, exist_ok=True)
    outcomes = {}
    for i, nb in enumerate(notebooks, 1):
        rel = nb.relative_to(root)
        out = base / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        print(f"[{i}/{len(notebooks)}] {rel} (paper profile, dry run)", flush=True)
        start = time.perf_counter()
        try:
            pm.execute_notebook(str(nb), str(out), cwd=str(nb.parent), kernel_name="python3", progress_bar=False,
                                log_output=False, report_mode=False, kernel_manager_class=km_class)
            outcomes[rel] = ("ok", time.perf_counter() - start, "")
        except Exception as err:  # noqa: BLE001 - every notebook's outcome is reported, none stops the others
            outcomes[rel] = ("FAILED", time.perf_counter() - start, _why(err))
        status, secs, why = outcomes[rel]
        print(f"  {status} in {secs:.0f} s" + (f": {why}" if why else ""), flush=True)
    failed = [n for n, (s, _, _) in outcomes.items() if s != "ok"]
    print(f"\npaper-profile dry run: {len(outcomes) - len(failed)} of {len(outcomes)} notebooks ran "
          f"({time.perf_counter() - t0:.0f} s); executed notebooks in {base}")
    for n in failed:
        print(f"  FAILED {n}: {outcomes[n][2]}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

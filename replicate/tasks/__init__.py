"""Tasks: what the one training loop needs to know about the data it trains on.

A task supplies a training epoch's batches, the loss of a batch, the evaluation
of a split (a dict of metrics) and the metrics a run records; the loop in
replicate.train supplies everything else (seeding, callbacks, masks, the
penalty hook, gradient clipping, divergence handling, progress). The task of a
run comes from its dataset's spec (replicate.data.SPECS), never from a flag.

* classification: in-memory images (or streamed ImageNet) and labels; accuracy.
* sequence_classification: padded token-id sequences with a label each, the model
  called with an attention mask (a sentence classifier; Hugging Face models fit).
* language_model: contiguous token streams, truncated backpropagation through
  time with the hidden state carried between windows and detached; bits per
  character (or perplexity for word tokens).
"""
from __future__ import annotations

from ..errors import check_choice
from .base import Task
from .classification import Classification
from .language_model import LanguageModel
from .sequence_classification import SequenceClassification

TASKS = {"classification": Classification, "sequence_classification": SequenceClassification,
         "language_model": LanguageModel}


def for_data(data, augment: str = "none", bptt: int | None = None) -> Task:
    """The task of a loaded dataset (its `task` attribute; images are classification), with the
    run's settings that concern it: `augment` for images, `bptt` (default 64) for token streams."""
    name = getattr(data, "task", "classification")
    check_choice("task", name, tuple(TASKS))
    if name == "language_model":
        return LanguageModel(bptt=bptt or 64, unit=getattr(data, "unit", "char"))
    if name == "sequence_classification":
        return SequenceClassification(pad_id=getattr(data, "pad_id", 0))
    return Classification(augment=augment)


__all__ = ["Task", "Classification", "SequenceClassification", "LanguageModel", "TASKS", "for_data"]

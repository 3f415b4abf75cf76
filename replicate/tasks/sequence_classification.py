"""Sequence classification: padded token-id sequences and a label each (a sentence
classifier such as the transformer stand-in of the FLOP paper).

Batches, loss, accuracy and the recorded metrics are classification's (a seeded
permutation, cross-entropy, accuracy); only the call differs: the model gets the
token ids and an attention mask (ids != the padding id), and may return the
logits or an object holding them in `.logits` (Hugging Face models).
"""
from __future__ import annotations

import torch

from .classification import Classification


class SequenceClassification(Classification):
    name = "sequence_classification"

    def __init__(self, pad_id: int = 0):
        super().__init__(augment="none")
        self.pad_id = pad_id

    def forward(self, model, ids):
        # padding columns that no sequence of the batch reaches are cut (masked positions change nothing)
        real = ids != self.pad_id
        width = int(real.any(0).nonzero().max()) + 1 if real.any() else ids.shape[1]
        ids, real = ids[:, :width], real[:, :width]
        out = model(input_ids=ids, attention_mask=real.long())
        return getattr(out, "logits", out)

    def example_input(self, data):
        return torch.zeros((1, data.x_train.shape[1]), dtype=torch.int64)

"""Sequence classification: padded token-id sequences and a label each (a sentence
classifier such as the transformer stand-in of the FLOP paper).

Batches, loss and accuracy are classification's (a seeded permutation, cross-
entropy, accuracy); the model is called with the token ids and an attention mask
(ids != the padding id), and may return the logits or an object holding them in
`.logits` (Hugging Face models).
"""
from __future__ import annotations

import torch

from .classification import Classification, evaluate


class SequenceClassification(Classification):
    name = "sequence_classification"

    def __init__(self, pad_id: int = 0):
        super().__init__(augment="none")
        self.pad_id = pad_id

    def forward(self, model, ids):
        out = model(input_ids=ids, attention_mask=(ids != self.pad_id).long())
        return getattr(out, "logits", out)

    def loss(self, model, inputs, targets):
        out = self.forward(model, inputs)
        return torch.nn.functional.cross_entropy(out, targets), out

    def evaluate(self, model, x, y=None, batch_size: int = 500, top5: bool = False) -> dict:
        return evaluate(model, x, y, batch_size=batch_size, forward=self.forward)

    def final_metrics(self, model, data, history: list, validation=None) -> dict:
        final = self.evaluate(model, data.x_test, data.y_test)
        m = {"test_acc": final["acc"], "test_error": 1 - final["acc"], "test_loss": final["loss"],
             "best_test_acc": max((h["test_acc"] for h in history), default=final["acc"]),
             "epochs_run": len(history)}
        if validation is not None:
            val = self.evaluate(model, validation.x_test, validation.y_test)
            m.update({"val_acc": val["acc"], "val_error": 1 - val["acc"], "val_loss": val["loss"]})
        return m

    def example_input(self, data):
        return torch.zeros((1, data.x_train.shape[1]), dtype=torch.int64)

"""The task interface (see the package docstring)."""
from __future__ import annotations


class Task:
    name: str = ""
    metric: str = ""                 # the headline metric in evaluate()'s dict
    higher_is_better: bool = True

    def prepare(self, data, device):
        """Per-fit set-up (e.g. moving the training split to the device); returns a state object."""
        raise NotImplementedError

    def steps_per_epoch(self, prepared, batch_size: int) -> int:
        raise NotImplementedError

    def batches(self, prepared, batch_size: int, gen):
        """One epoch of (inputs, targets, count) training batches; `count` weighs the batch's loss
        in the epoch's mean. Draws from `gen` only (the data order is a function of seed and epoch)."""
        raise NotImplementedError

    def loss(self, model, inputs, targets):
        """(loss, output) of one training batch."""
        raise NotImplementedError

    def evaluate(self, model, x, y=None, batch_size: int = 500) -> dict:
        """Metrics over one whole split; always has "loss" and `self.metric`."""
        raise NotImplementedError

    def final_metrics(self, model, data, history: list, validation=None) -> dict:
        """What the runner records for a finished run."""
        raise NotImplementedError

    def example_input(self, data):
        """One input sample for counting multiply-accumulates (batch of 1)."""
        raise NotImplementedError

"""Language modelling on contiguous token streams.

Training: the stream is cut into `batch_size` contiguous rows; a batch is the
next window of `bptt` tokens of every row, its targets the same window shifted
by one. The model's hidden state is carried from one window to the next and
detached (truncated backpropagation through time), and reset at the start of
every epoch; the data order is fixed, so the seed only decides initialisation.
Evaluation runs the same way over a whole held-out stream (10 rows). A model
takes (tokens (B, T), hidden or None) and returns (logits (B, T, V), hidden);
a model that also has `target_log_prob(tokens, targets, hidden)` (the word
models' adaptive softmax) is trained and evaluated through it, which scores
only the targets and gives the same loss.

Metrics: the mean cross-entropy per token in nats ("loss"), and bits per
character ("bpc" = loss / ln 2) for character streams or perplexity ("ppl" =
exp(loss)) for word streams.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import Task

EVAL_ROWS = 10


def detach(hidden):
    """Cut the graph behind a hidden state (a tensor, or a tuple/list of them)."""
    if hidden is None:
        return None
    if isinstance(hidden, torch.Tensor):
        return hidden.detach()
    return type(hidden)(detach(h) for h in hidden)


def rows(stream: torch.Tensor, n_rows: int) -> torch.Tensor:
    """The stream as `n_rows` contiguous rows (the tail that does not fill a row is dropped)."""
    length = len(stream) // n_rows
    if length < 2:
        raise ValueError(f"a stream of {len(stream)} tokens is too short for {n_rows} rows")
    return stream[:n_rows * length].view(n_rows, length)


class LanguageModel(Task):
    name = "language_model"

    def __init__(self, bptt: int = 64, unit: str = "char"):
        if not (isinstance(bptt, int) and bptt >= 1):
            raise ValueError(f"bptt must be a positive number of tokens, got {bptt!r}")
        self.bptt, self.unit = bptt, unit
        self.metric = "bpc" if unit == "char" else "ppl"
        self.higher_is_better = False
        self.hidden = None

    def _metrics(self, nats: float) -> dict:
        return {"loss": nats, self.metric: nats / math.log(2) if self.metric == "bpc" else math.exp(min(nats, 50))}

    def prepare(self, data, device):
        return {"stream": data.x_train.to(device)}

    def steps_per_epoch(self, prepared, batch_size: int) -> int:
        length = len(prepared["stream"]) // batch_size
        return -(-(length - 1) // self.bptt)

    def batches(self, prepared, batch_size: int, gen):
        data = rows(prepared["stream"], batch_size)
        self.hidden = None
        for i in range(0, data.shape[1] - 1, self.bptt):
            t = min(self.bptt, data.shape[1] - 1 - i)
            yield data[:, i:i + t], data[:, i + 1:i + 1 + t], data.shape[0] * t

    def loss(self, model, inputs, targets):
        if hasattr(model, "target_log_prob"):       # word models with an adaptive softmax: no full distribution
            logp, hidden = model.target_log_prob(inputs, targets, self.hidden)
            self.hidden = detach(hidden)
            return -logp.mean(), logp
        out, hidden = model(inputs, self.hidden)
        self.hidden = detach(hidden)
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), targets.reshape(-1)), out

    @torch.no_grad()
    def evaluate(self, model, x, y=None, batch_size: int = 500) -> dict:
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        data = rows(x.to(device), min(EVAL_ROWS, max(1, len(x) // 2)))
        hidden, nats, count = None, 0.0, 0
        for i in range(0, data.shape[1] - 1, self.bptt):
            t = min(self.bptt, data.shape[1] - 1 - i)
            if hasattr(model, "target_log_prob"):
                logp, hidden = model.target_log_prob(data[:, i:i + t], data[:, i + 1:i + 1 + t], hidden)
                nats -= logp.sum().item()
            else:
                out, hidden = model(data[:, i:i + t], hidden)
                nats += F.cross_entropy(out.reshape(-1, out.shape[-1]), data[:, i + 1:i + 1 + t].reshape(-1),
                                        reduction="sum").item()
            count += data.shape[0] * t
        model.train(was_training)
        return self._metrics(nats / max(count, 1))

    def final_metrics(self, model, data, history: list, validation=None) -> dict:
        k = self.metric
        test = self.evaluate(model, data.test)
        dev = self.evaluate(model, data.dev)
        pick = min if not self.higher_is_better else max
        return {f"test_{k}": test[k], "test_loss": test["loss"], f"val_{k}": dev[k], "val_loss": dev["loss"],
                f"best_test_{k}": pick((h[f"test_{k}"] for h in history), default=test[k]),
                "epochs_run": len(history)}

    def example_input(self, data):
        return torch.zeros((1, self.bptt), dtype=torch.int64)

"""Image classification: batches are slices of a seeded permutation of in-memory
tensors (or streamed ImageNet images); cross-entropy; accuracy."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .base import Task


def crop_flip(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop after zero padding, then a random horizontal flip, per image."""
    n, _, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=gen).to(x.device)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=gen).to(x.device)
    flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
    cols = torch.arange(w, device=x.device)
    cols = torch.where(flip[:, None], w - 1 - cols, cols) + ox[:, None]   # (n, w)
    rows = torch.arange(h, device=x.device) + oy[:, None]                   # (n, h)
    b = torch.arange(n, device=x.device)[:, None, None]
    return xp[b, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def evaluate(model, x, y, batch_size: int = 500, top5: bool = False, forward=None) -> dict:
    """Loss and accuracy over a whole split, in chunks of `batch_size` (no shuffling;
    chunks of 500 stay in cache: on one thread LeNet-5-Caffe evaluates faster in
    them than in chunks of 2,000).
    `x` may be a tensor or streamed images (replicate.imagenet.LazyImages, decoded
    a chunk at a time); `top5=True` adds the top-5 accuracy as "acc5"; `forward(model, x)`
    replaces `model(x)` (sequence classification passes an attention mask)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    if not isinstance(x, torch.Tensor):
        batch_size = min(batch_size, x.eval_chunk)
    loss_sum, correct, correct5 = 0.0, 0, 0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        out = model(xb) if forward is None else forward(model, xb)
        loss_sum += F.cross_entropy(out, yb, reduction="sum").item()
        correct += (out.argmax(1) == yb).sum().item()
        if top5:
            correct5 += (out.topk(min(5, out.shape[1]), dim=1).indices == yb[:, None]).any(1).sum().item()
    model.train(was_training)
    n = max(len(x), 1)
    res = {"loss": loss_sum / n, "acc": correct / n}
    if top5:
        res["acc5"] = correct5 / n
    return res


class Classification(Task):
    name = "classification"
    metric = "acc"
    higher_is_better = True

    def __init__(self, augment: str = "none"):
        self.augment = augment

    def prepare(self, data, device):
        x, y = data.x_train.to(device), data.y_train.to(device)
        streamed = not isinstance(x, torch.Tensor)
        if streamed and self.augment != "none":
            raise ConfigError(f"augment={self.augment!r} is for in-memory image tensors; streamed images "
                              "(ImageNet) are augmented by their own loader, so use augment='none'")
        return {"x": x, "y": y, "streamed": streamed, "device": device}

    def steps_per_epoch(self, prepared, batch_size: int) -> int:
        return -(-len(prepared["x"]) // batch_size)

    def batches(self, prepared, batch_size: int, gen):
        x, y, device = prepared["x"], prepared["y"], prepared["device"]
        n = len(x)
        order = torch.randperm(n, generator=gen).to(device)
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            xb = x.batch(idx, gen).to(device) if prepared["streamed"] else x[idx]
            if self.augment != "none":
                xb = crop_flip(xb, gen)
            yield xb, y[idx], len(idx)

    def forward(self, model, inputs):
        """The model's class scores for a batch (sequence classification adds an attention mask)."""
        return model(inputs)

    def loss(self, model, inputs, targets):
        out = self.forward(model, inputs)
        return F.cross_entropy(out, targets), out

    def evaluate(self, model, x, y=None, batch_size: int = 500, top5: bool = False) -> dict:
        return evaluate(model, x, y, batch_size=batch_size, top5=top5, forward=self.forward)

    def final_metrics(self, model, data, history: list, validation=None) -> dict:
        top5 = data.name == "imagenet"      # ImageNet tables report top-5 as well
        final = self.evaluate(model, data.x_test, data.y_test, top5=top5)
        m = {"test_acc": final["acc"], "test_error": 1 - final["acc"], "test_loss": final["loss"],
             "best_test_acc": max((h["test_acc"] for h in history), default=final["acc"]),
             "epochs_run": len(history)}
        if top5:
            m.update({"test_top5_acc": final["acc5"], "test_top5_error": 1 - final["acc5"]})
        if validation is not None:
            val = self.evaluate(model, validation.x_test, validation.y_test)
            m.update({"val_acc": val["acc"], "val_error": 1 - val["acc"], "val_loss": val["loss"]})
        return m

    def example_input(self, data):
        return torch.zeros((1, *data.x_train.shape[1:]))

"""One small training loop for every method.

Methods plug in at three places (see the README's layout section): they may
replace modules before training, pass callbacks that run around the optimizer
step and at the end of each epoch, and pass masks that are re-applied after
every step.

What is being learned is the task's business (replicate.tasks: batches, loss,
evaluation); the loop owns seeding of the data order, callbacks, masks, the
penalty hook, gradient clipping, divergence handling and progress, so every
task gets the same guarantees. The data order is a pure function of
(seed, epoch).
"""
from __future__ import annotations

import math
import os
import random
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from . import tasks as tasks_mod
from .errors import ConfigError, TrainingDisabled
from .tasks.classification import crop_flip, evaluate  # noqa: F401  (used by methods)


class Divergence(RuntimeError):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, loss: float):
        super().__init__(f"training loss became {loss} in epoch {epoch}")
        self.epoch = epoch      # 1-based epoch in which it happened
        self.loss = loss
        self.history = []       # the epochs completed before it


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads explicitly (REPLICATE_THREADS, default all cores)."""
    n = n or int(os.environ.get("REPLICATE_THREADS", "0")) or (os.cpu_count() or 1)
    torch.set_num_threads(n)
    return torch.get_num_threads()


_ALLOCATOR_TUNED: list = []


def tune_allocator() -> bool:
    """Keep freed memory in the process for reuse (glibc: mmap threshold 256 MB, trim threshold 1 GB), once per
    process; REPLICATE_MALLOC_TUNE=0 leaves the C allocator alone. A training step allocates tensors of the
    weights' size (gradients, DST's masked weights); with glibc's defaults, blocks of that size are mapped
    and unmapped on every step, and the kernel zero-fills fresh pages each time: that cost about a third of
    DST's LeNet-300-100 step on this project's machine. Results do not change; the process may hold up to
    1 GB of freed memory. True when the allocator was tuned (only on Linux with glibc)."""
    if _ALLOCATOR_TUNED:
        return _ALLOCATOR_TUNED[0]
    ok = False
    if os.environ.get("REPLICATE_MALLOC_TUNE", "1") not in ("0", "false", "no") and sys.platform.startswith("linux"):
        try:
            import ctypes
            libc = ctypes.CDLL("libc.so.6")
            ok = bool(libc.mallopt(-3, 256 << 20)) and bool(libc.mallopt(-1, 1 << 30))   # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
        except (OSError, AttributeError):
            ok = False
    _ALLOCATOR_TUNED.append(ok)
    return ok


def training_disabled() -> bool:
    """REPLICATE_NO_TRAIN=1: any training is an error (re-execution from the stored records)."""
    return os.environ.get("REPLICATE_NO_TRAIN", "0") not in ("0", "", "false", "no")


def check_training_allowed(what: str) -> None:
    if training_disabled():
        raise TrainingDisabled(f"{what} would have to be trained, and REPLICATE_NO_TRAIN=1 forbids training; "
                               "unset it to train, or restore the missing records")


def default_device() -> torch.device:
    want = os.environ.get("REPLICATE_DEVICE")
    if want:
        return torch.device(want)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


_progress_file = None


def progress_stream():
    """REPLICATE_PROGRESS_TO names a file (the terminal of `make reproduce-all`) that
    progress goes to instead of the cell's output; None when unset or not writable."""
    global _progress_file
    path = os.environ.get("REPLICATE_PROGRESS_TO")
    if not path:
        return None
    if _progress_file is None or _progress_file.name != path:
        try:
            _progress_file = open(path, "a", buffering=1)
        except OSError:
            return None
    return _progress_file


def note(message: str) -> None:
    """One progress line to REPLICATE_PROGRESS_TO, if set (never into a notebook's output)."""
    stream = progress_stream()
    if stream is not None:
        try:
            stream.write(message + "\n")
        except OSError:
            pass


def progress_enabled() -> bool:
    """Progress bars in interactive use only. A shell on a terminal, or a notebook
    opened in Jupyter (which sets JPY_SESSION_NAME) or VS Code, shows them; a
    kernel driven by papermill or nbval sets neither, so stored outputs stay
    clean, unless REPLICATE_PROGRESS_TO sends progress elsewhere (a terminal).
    REPLICATE_PROGRESS=0/1 overrides the guess."""
    flag = os.environ.get("REPLICATE_PROGRESS")
    if flag is not None:
        return flag not in ("0", "false", "no", "")
    if progress_stream() is not None:
        return True
    if "ipykernel" in sys.modules:
        return "JPY_SESSION_NAME" in os.environ or "VSCODE_PID" in os.environ
    return sys.stderr.isatty()


@dataclass
class State:
    """What callbacks see. They may read anything and change the model, the
    optimizer or the masks; `stop` ends training after the current epoch."""
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    masks: dict = field(default_factory=dict)   # parameter -> 0/1 tensor of the same shape
    epoch: int = 0
    step: int = 0                               # optimizer steps done so far
    steps_per_epoch: int = 0
    total_steps: int = 0
    loss: torch.Tensor | None = None            # loss of the current batch
    inputs: torch.Tensor | None = None          # the current batch (after augmentation) ...
    targets: torch.Tensor | None = None
    output: torch.Tensor | None = None          # ... and the model's output on it
    retain_graph: bool = False                  # set by a callback that backpropagates `output` again
    history: list = field(default_factory=list)
    stop: bool = False


class Callback:
    """Override any of these; the loop only calls the ones a callback defines."""

    def on_train_begin(self, state: State): ...
    def before_step(self, state: State): ...   # after backward, before optimizer.step
    def after_step(self, state: State): ...    # after optimizer.step and mask application
    def on_epoch_end(self, state: State): ...  # after evaluation; state.history[-1] is this epoch


def make_optimizer(params, optimizer: str, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
    if not lr > 0:
        raise ConfigError(f"learning rate must be positive, got lr={lr}")
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ConfigError(f"unknown optimizer {optimizer!r}; valid: sgd, adam")


def lr_at(epoch: int, base: float, schedule: str, epochs: int, milestones=()) -> float:
    if schedule == "constant":
        return base
    if schedule == "cosine":
        return 0.5 * base * (1 + math.cos(math.pi * epoch / max(epochs, 1)))
    if schedule == "step":
        return base * 0.1 ** sum(epoch >= m for m in milestones)
    raise ConfigError(f"unknown lr_schedule {schedule!r}; valid: constant, cosine, step")


@torch.no_grad()
def apply_masks(masks: dict) -> None:
    for p, m in masks.items():
        p.mul_(m)


def fit(model, data, *, epochs: int, batch_size: int = 64, optimizer: str = "sgd",
        lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 0.0,
        lr_schedule: str = "constant", lr_milestones=(), seed: int = 0,
        callbacks=(), masks: dict | None = None, optimizer_obj=None,
        params=None, penalty=None, desc: str = "train", progress: bool | None = None,
        augment: str = "none", task=None, grad_clip: float | None = None) -> list:
    """Train `model` on `data` (a loaded dataset) and return per-epoch history.

    `task` (replicate.tasks) supplies batches, loss and evaluation; by default it is
    the dataset's own task (classification for images, with `augment`).
    `params` restricts what the optimizer updates (default: all parameters);
    `optimizer_obj` passes a ready optimizer instead (e.g. with extra param groups);
    `penalty()` returns a scalar added to every batch's loss (a method's regularizer);
    `grad_clip` rescales the gradient to at most this global norm before each step;
    `augment="crop-flip"` pads each training batch by 4, crops it back at a random
    offset and flips half of it horizontally (seeded with the data order).
    Streamed images (replicate.imagenet.LazyImages) bring their own augmentation
    (random resized crop and flip, drawn from the same seeded generator), so
    `augment` must stay "none" for them.
    Each history entry holds the task's test metrics as test_<name> (test_acc, test_bpc, ...).
    Raises Divergence when an epoch's training loss is not finite.
    """
    tune_allocator()
    check_training_allowed(f"{desc} ({epochs} epochs)")
    if task is None:
        task = tasks_mod.for_data(data, augment=augment)
    elif augment != "none":
        raise ConfigError("pass augment to the task, not to fit, when giving a task")
    device = next(model.parameters()).device
    prepared = task.prepare(data, device)
    xt, yt = data.x_test, data.y_test
    opt = optimizer_obj or make_optimizer(
        params if params is not None else model.parameters(), optimizer, lr, momentum, weight_decay)
    masks = masks if masks is not None else {}
    steps_per_epoch = task.steps_per_epoch(prepared, batch_size)
    state = State(model=model, optimizer=opt, masks=masks, steps_per_epoch=steps_per_epoch,
                  total_steps=steps_per_epoch * epochs)
    clip_params = [p for g in opt.param_groups for p in g["params"]] if grad_clip else None
    # Pre-bind only the hooks callbacks actually define: the loop stays as cheap as a bare one.
    hooks = {name: [getattr(cb, name) for cb in callbacks
                    if getattr(type(cb), name, None) is not getattr(Callback, name)]
             for name in ("on_train_begin", "before_step", "after_step", "on_epoch_end")}
    for h in hooks["on_train_begin"]:
        h(state)
    if masks:
        apply_masks(masks)
    gen = torch.Generator().manual_seed(seed)
    show = progress_enabled() if progress is None else progress
    bar = None
    if show and epochs > 0:
        from tqdm.auto import tqdm
        bar = tqdm(total=epochs, desc=desc, leave=False, file=progress_stream() or sys.stderr)
    model.train()
    for epoch in range(epochs):
        state.epoch = epoch
        for g in opt.param_groups:
            g["lr"] = lr_at(epoch, g.get("initial_lr", g.setdefault("initial_lr", g["lr"])),
                            lr_schedule, epochs, lr_milestones)
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        seen = 0
        for xb, yb, count in task.batches(prepared, batch_size, gen):
            loss, out = task.loss(model, xb, yb)
            if penalty is not None:
                loss = loss + penalty()
            opt.zero_grad(set_to_none=True)
            loss.backward(retain_graph=state.retain_graph)
            state.loss, state.inputs, state.targets, state.output = loss, xb, yb, out
            for h in hooks["before_step"]:
                h(state)
            if clip_params:
                torch.nn.utils.clip_grad_norm_(clip_params, grad_clip)
            opt.step()
            if masks:
                apply_masks(masks)
            state.step += 1
            for h in hooks["after_step"]:
                h(state)
            loss_sum += loss.detach() * count
            seen += count
        train_loss = loss_sum.item() / seen
        train_time = time.perf_counter() - t0
        if not math.isfinite(train_loss):
            if bar:
                bar.close()
            err = Divergence(epoch + 1, train_loss)
            err.history = state.history
            raise err
        test = task.evaluate(model, xt, yt)
        state.history.append({"epoch": epoch + 1, "train_loss": train_loss,
                              **{f"test_{k}": v for k, v in test.items()},
                              "lr": opt.param_groups[0]["lr"], "epoch_time_s": train_time})
        for h in hooks["on_epoch_end"]:
            h(state)
        if bar:
            bar.set_postfix(loss=f"{train_loss:.3f}", **{task.metric: f"{test[task.metric]:.4f}"})
            bar.update(1)
        if state.stop:
            break
    if bar:
        bar.close()
    return state.history

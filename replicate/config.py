"""Run configurations and their canonical keys.

A run is a frozen `RunConfig`. Its key is a short hash of the canonical form of
the configuration in which every field equal to its default is left out
(OpenLTH's rule), so adding a new option with a default never invalidates the
records already in the store. Method-specific hyper-parameters live in `args`
and are canonicalised against the method's own defaults.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import ConfigError, check_choice
from .methods.base import method_defaults, method_names

PROFILES = ("smoke", "cpu", "paper")
OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("constant", "cosine", "step")
AUGMENTS = ("none", "crop-flip")
# Bump when training semantics change so old records stop matching. Not bumped for changes that
# cannot move a result: the evaluation chunk size (2,000 -> 500 images) changes neither accuracy nor,
# beyond float summation order, the loss (tests/test_runner.py checks both).
CACHE_VERSION = 1


@dataclass(frozen=True)
class RunConfig:
    method: str = "dense"            # a name in replicate.methods.method_names()
    model: str = "lenet300-100"      # a name in replicate.models.MODELS
    dataset: str = "fashion_mnist"   # a name in replicate.data.DATASETS
    seed: int = 0
    profile: str = "cpu"             # smoke | cpu | paper; part of the key on purpose
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9            # SGD only
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    lr_milestones: tuple = ()        # epochs at which "step" divides the lr by 10
    train_size: int | None = None    # seeded subset of the training set (smoke profile)
    test_size: int | None = None
    val_size: int | None = None      # hold out this many training examples (seeded split) for model selection
    normalize: bool | str = False    # True: one training-set mean/std; "channel": per channel
    augment: str = "none"            # "crop-flip": pad 4, random crop, horizontal flip (CIFAR recipes)
    bptt: int | None = None          # language models: tokens per truncated-backpropagation window (None: 64)
    grad_clip: float | None = None   # rescale gradients to at most this global norm before each step
    args: Mapping[str, Any] = field(default_factory=dict)  # method hyper-parameters
    parent: "RunConfig | None" = None  # run whose trained weights this one starts from
    version: int = CACHE_VERSION

    def __post_init__(self):
        # Coerce numeric types so that lr=1 and lr=1.0 hash the same.
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.type in ("float", "float | None") and isinstance(v, int) and not isinstance(v, bool):
                object.__setattr__(self, f.name, float(v))
        object.__setattr__(self, "lr_milestones", tuple(int(m) for m in self.lr_milestones))
        object.__setattr__(self, "args", dict(sorted(dict(self.args).items())))
        if self.profile == "paper":       # REPLICATE_DRY_RUN=1 caps the paper profile (dry_run.py); else nothing
            from . import dry_run
            for name, value in dry_run.cap({f.name: getattr(self, f.name) for f in dataclasses.fields(self)}).items():
                object.__setattr__(self, name, dict(sorted(value.items())) if name == "args" else value)

    # -- canonical form ------------------------------------------------------
    def canonical(self) -> dict:
        """The configuration with default values left out (the key's input)."""
        out: dict = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "args":
                defaults = method_defaults(self.method)
                v = {k: _plain(x) for k, x in v.items() if k not in defaults or defaults[k] != x}
                if v:
                    out["args"] = v
                continue
            if f.name == "parent":
                if v is not None:
                    out["parent"] = v.canonical()
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            if v != default or f.name in ("method", "model", "dataset", "profile"):
                out[f.name] = _plain(v)
        return out

    @property
    def key(self) -> str:
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def to_dict(self) -> dict:
        """Full configuration (defaults included) for the record."""
        d = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
        d["parent"] = self.parent.to_dict() if self.parent else None
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "RunConfig":
        d = dict(d)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}; valid: {', '.join(sorted(names))}")
        if d.get("parent"):
            d["parent"] = cls.from_dict(d["parent"])
        if "lr_milestones" in d:
            d["lr_milestones"] = tuple(d["lr_milestones"])
        return cls(**d)

    def replace(self, **changes) -> "RunConfig":
        if "args" in changes:
            changes["args"] = {**self.args, **changes["args"]}
        return dataclasses.replace(self, **changes)

    @property
    def label(self) -> str:
        """A short human-readable name, used in file names and messages."""
        return f"{self.method}-{self.model}-{self.dataset}-{self.profile}-s{self.seed}"

    # -- validation ----------------------------------------------------------
    def validate(self) -> "RunConfig":
        from .data import DATASETS, spec
        from .methods import get_method
        from .models import FAMILY_TASK
        from .models import spec as model_spec

        check_choice("method", self.method, method_names())
        family = model_spec(self.model).family
        check_choice("dataset", self.dataset, DATASETS)
        task = spec(self.dataset).task
        if FAMILY_TASK[family] != task:
            raise ConfigError(f"model {self.model!r} ({family}) cannot train on dataset "
                              f"{self.dataset!r} ({task} data)")
        check_choice("profile", self.profile, PROFILES)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_choice("augment", self.augment, AUGMENTS)
        check_choice("normalize", self.normalize, (False, True, "channel"))
        if not self.lr > 0:
            raise ConfigError(f"learning rate must be positive, got lr={self.lr}")
        if self.epochs < 0:
            raise ConfigError(f"epochs must be >= 0, got {self.epochs}")
        if not (isinstance(self.seed, int) and self.seed >= 0):
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        for name in ("train_size", "test_size"):
            n = getattr(self, name)
            if n is not None and not (isinstance(n, int) and n >= 1):
                raise ConfigError(f"{name} must be a positive number of examples or None (all), got {n!r}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise ConfigError("weight_decay must be >= 0 and momentum in [0, 1)")
        if task != "classification" and (self.augment != "none" or self.normalize or self.val_size):
            raise ConfigError(f"augment, normalize and val_size are for image datasets; {self.dataset!r} is "
                              f"{task} data (its dev split is fixed)")
        if self.bptt is not None and (task != "language_model" or not (isinstance(self.bptt, int) and self.bptt >= 1)):
            raise ConfigError(f"bptt must be a positive number of tokens, and only for language-model datasets; "
                              f"got bptt={self.bptt!r} for {self.dataset!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"grad_clip must be a positive norm or None, got {self.grad_clip!r}")
        if self.val_size is not None and not (isinstance(self.val_size, int) and self.val_size >= 1):
            raise ConfigError(f"val_size must be a positive number of training examples or None, got {self.val_size!r}")
        if self.parent is not None and self.parent.val_size != self.val_size:
            raise ConfigError(f"a run with val_size={self.val_size} must start from a parent trained on the same "
                              f"split, but the parent has val_size={self.parent.val_size}")
        method = get_method(self.method)
        unknown = sorted(set(self.args) - set(method.defaults))
        if unknown:
            raise ConfigError(
                f"unknown argument(s) {unknown} for method {self.method!r}; "
                f"valid: {', '.join(sorted(method.defaults)) or 'none'}")
        try:
            method.validate(self)
        except ConfigError:
            raise
        except (ValueError, TypeError) as err:   # e.g. a number argument given as text
            raise ConfigError(f"bad argument for method {self.method!r}: {err} (arguments: {self.args})") from None
        if self.parent is not None:
            self.parent.validate()
        return self


def _plain(v):
    """JSON-friendly, canonical representation of a config value."""
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in sorted(v.items())}
    if isinstance(v, RunConfig):
        return v.canonical()
    return v

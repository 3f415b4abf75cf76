"""What every method shares: the Method interface, its Result, and the lazy registry.

A method module defines one `Method` subclass and registers an instance of it.
Modules are imported on first use by name (`get_method("dst")` imports
replicate.methods.dst), so that naming, validating the name of, or hashing a
configuration never imports an implementation or its dependencies (torch,
transformers, an RL stack). The argument tables a key needs are in `args.py`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from ..errors import ConfigError, check_choice
from .args import ARGS, MODULES

METHODS: dict = {}     # name -> registered Method instance (filled as modules are imported)


@dataclass
class Result:
    model: object                 # the trained / compressed torch module
    history: list                 # per-epoch dicts from replicate.train.fit (may be concatenated)
    extra: dict = field(default_factory=dict)   # JSON-friendly method-specific metrics


class Method:
    name: str = ""
    defaults: dict = {}           # every argument the method accepts, with its default (args.ARGS[name])
    needs_parent: bool = False    # True when the method starts from another run's weights

    def validate(self, cfg) -> None:
        """Checks shared by every method; a method's own validate() calls this first."""
        if self.needs_parent and cfg.parent is None:
            raise ConfigError(f"method {self.name!r} needs a parent run (the model to compress)")
        if cfg.parent is not None and cfg.parent.model != cfg.model:
            raise ConfigError(f"a {self.name} run must use the same model as its parent "
                              f"({cfg.model!r} vs {cfg.parent.model!r})")

    def run(self, ctx) -> Result:
        raise NotImplementedError

    def load_weights(self, model, state: dict):
        """The run's model from its cached weights; `model` is a fresh build of the run's model name. A method
        whose result has another structure (FLOP's physically smaller layers) rebuilds it from the state."""
        model.load_state_dict(state)
        return model


def method_names() -> tuple:
    """Every method name, sorted (no implementation is imported)."""
    return tuple(sorted(ARGS))


def method_defaults(name: str) -> dict:
    """A method's arguments with their defaults (no implementation is imported)."""
    check_choice("method", name, method_names())
    return ARGS[name]


def register(method: Method) -> Method:
    if method.name not in ARGS:
        raise ConfigError(f"method {method.name!r} has no argument table in replicate/methods/args.py")
    if method.defaults is not ARGS[method.name]:
        raise ConfigError(f"method {method.name!r} must take its defaults from args.ARGS[{method.name!r}]")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    """The registered method, importing its module on first use."""
    check_choice("method", name, method_names())
    if name not in METHODS:
        importlib.import_module(f"{__package__}.{MODULES[name]}")
    return METHODS[name]

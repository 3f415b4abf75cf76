"""Compression methods. Each module defines one `Method` and registers it.

A method receives a `replicate.runner.Context` (configuration, data, model
builder, access to the trained weights of the parent run, and the shared
training loop) and returns a `Result`. It never touches the store itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ConfigError, check_choice

METHODS: dict = {}


@dataclass
class Result:
    model: object                 # the trained / compressed torch module
    history: list                 # per-epoch dicts from replicate.train.fit (may be concatenated)
    extra: dict = field(default_factory=dict)   # JSON-friendly method-specific metrics


class Method:
    name: str = ""
    defaults: dict = {}           # every argument the method accepts, with its default
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


def register(method: Method) -> Method:
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    check_choice("method", name, tuple(METHODS))
    return METHODS[name]


from . import adaptive_quant, dense, dst, magnitude, pretrained, quantization, sensitivity  # noqa: E402,F401  (registration)

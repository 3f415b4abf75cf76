"""Errors and choice checks shared by every layer of the package.

A leaf module: it imports nothing of replicate and nothing beyond the standard
library, so configuration, the store and the command line can raise the same
one-line errors without pulling in models, methods or torch.
"""
from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A bad parameter; the message is one line naming the valid values."""


def check_choice(what: str, value: Any, valid) -> None:
    """Raise ConfigError unless `value` is one of `valid` (the message lists them)."""
    try:
        ok = value in valid
    except TypeError:          # an unhashable value (a list given where a name was expected)
        ok = False
    if not ok:
        raise ConfigError(f"unknown {what} {value!r}; valid: {', '.join(map(str, valid))}")


class DataNotFound(FileNotFoundError):
    """No usable copy of a dataset was found; the message says how to get one."""


class DataCorrupt(ValueError):
    """A data file exists but is malformed or fails its checksum."""


class TrainingDisabled(RuntimeError):
    """Training was needed but REPLICATE_NO_TRAIN forbids it (a re-execution from the store)."""

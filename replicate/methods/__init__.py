"""Compression methods. Each module defines one `Method` and registers it.

A method receives a `replicate.runner.Context` (configuration, data, model
builder, access to the trained weights of the parent run, and the shared
training loop) and returns a `Result`. It never touches the store itself.

Importing this package imports no method implementation: `get_method(name)`
loads a method's module on first use (see base.py), and the argument tables
that run keys need are in args.py.
"""
from __future__ import annotations

from .base import METHODS, Method, Result, get_method, method_defaults, method_names, register

__all__ = ["METHODS", "Method", "Result", "get_method", "method_defaults", "method_names", "register"]

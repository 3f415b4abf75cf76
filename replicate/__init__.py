"""replicate: a reproducible replication suite for five neural-network compression papers.

The library owns the logic (data, models, the training loop, methods, the run
store, metrics, reports); the notebooks under notebooks/ own the narrative.
"""
__version__ = "0.1.0"

from .config import ConfigError, RunConfig  # noqa: E402

__all__ = ["RunConfig", "ConfigError", "run", "load_model", "__version__"]


def run(cfg, **kw):
    """Return the record of `cfg`, running it if it is not in the store (see replicate.runner)."""
    from .runner import run as _run

    return _run(cfg, **kw)


def load_model(cfg, **kw):
    from .runner import load_model as _load

    return _load(cfg, **kw)

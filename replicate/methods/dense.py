"""Dense training: the reference every compression method is measured against."""
from __future__ import annotations

from .args import ARGS
from .base import Method, Result, register


class Dense(Method):
    name = "dense"
    defaults = ARGS["dense"]

    def run(self, ctx) -> Result:
        model = ctx.build_model()
        history = ctx.fit(model)
        return Result(model, history)


register(Dense())

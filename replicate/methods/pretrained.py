"""A published, already trained model: the starting point when training one is
out of reach (VGG-16 on ImageNet for the sensitivity paper's Table 3, ResNet-18 on ImageNet for the
DRL paper's, whose base top-1 / top-5 are those torchvision publishes for these weights).

The run trains nothing (epochs must be 0). It loads torchvision's published
weights for the model into the freshly built network and records its test
error like any other run, so that compression runs can name it as their parent.
torchvision downloads the weights once into its own cache (``$TORCH_HOME``,
default ``~/.cache/torch``); without internet, put the file there yourself.
"""
from __future__ import annotations

from ..config import ConfigError, check_choice
from .args import ARGS
from .base import Method, Result, register

# model -> (torchvision builder name, the weight sets it publishes)
WEIGHTS = {"vgg16": ("vgg16", ("IMAGENET1K_V1",)), "resnet18": ("resnet18", ("IMAGENET1K_V1",))}


def torchvision_state_dict(model: str, weights: str) -> dict:
    """torchvision's published state dict (downloaded into torch's cache the first time)."""
    import torchvision

    enum = torchvision.models.get_model_weights(WEIGHTS[model][0])[weights]
    try:
        return enum.get_state_dict(progress=False)
    except Exception as err:  # URLError, OSError, ... : say what to do
        raise RuntimeError(
            f"could not get torchvision's {model} weights {weights} ({type(err).__name__}: {err}); "
            f"they download from {enum.url} into $TORCH_HOME/hub/checkpoints/ (default ~/.cache/torch); "
            "without internet, copy that file there") from err


class Pretrained(Method):
    name = "pretrained"
    defaults = ARGS["pretrained"]

    def validate(self, cfg) -> None:
        super().validate(cfg)
        check_choice("model for pretrained weights", cfg.model, tuple(WEIGHTS))
        check_choice("weights", {**self.defaults, **cfg.args}["weights"], WEIGHTS[cfg.model][1])
        if cfg.epochs != 0 or cfg.parent is not None:
            raise ConfigError(f"a pretrained run loads published weights and trains nothing: "
                              f"it needs epochs=0 and no parent (got epochs={cfg.epochs})")

    def run(self, ctx) -> Result:
        model = ctx.build_model()
        weights = {**self.defaults, **ctx.cfg.args}["weights"]
        model.net.load_state_dict(torchvision_state_dict(ctx.cfg.model, weights))
        return Result(model, [], {"pretrained_weights": f"torchvision {ctx.cfg.model} {weights}"})


register(Pretrained())

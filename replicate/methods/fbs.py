"""Feature Boosting and Suppression (Gao et al., ICLR 2019), the DRL paper's runtime baseline
(its Tables 1-3).

Every conv block of a trained backbone (the parent run) gets a saliency predictor
    g_l = ReLU(f_l(GAP(x_{l-1}))),   f_l one Linear(C_in, C_out)
and a winner-take-all: per input only the ceil(d C) most salient channels survive,
    y_l = ReLU((pi_l * g_l) * (BN_noaffine(conv(x_{l-1})) + beta_l)),
pi_l the winners' 0/1 mask: g replaces the BN scale on the winners (boosting), the losers
are zero (suppression), so the next layer skips them too. Training adds an L1 penalty on
the saliencies, `l1` x sum_l ||g_l||_1 averaged over the batch, with the run's optimizer,
lr and epochs. The gates start as the BN they replace (f's weights 0, its bias the
trained BN scale gamma, beta_l = beta / gamma), so before training the gated net computes
the parent exactly except for the suppressed channels.

The layer is a drl_gates.GatedConv with its own forward (the DRL gate adds beta after the
gate and has no ReLU on the saliency), so masks, MAC accounting and parameter counts are
shared with the DRL method; FBS stores no static importances, so they are not counted.
"""
from __future__ import annotations


import torch

from ..config import ConfigError, RunConfig, check_choice
from ..models.drl_nets import ALL_BACKBONES
from . import drl_gates as G
from .args import ARGS
from .base import Method, Result, register


class FBSConv(G.GatedConv):
    """A conv block with FBS's saliency gate and winner-take-all (module docstring)."""

    def __init__(self, conv, bn, **options):
        super().__init__(conv, bn, **options)
        with torch.no_grad():       # fold gamma out of beta: gamma (z + beta / gamma) = gamma z + beta
            gamma = self.gate.bias.detach()
            self.beta.copy_(torch.where(gamma.abs() > 1e-8, self.beta / gamma, self.beta))
        self.static.requires_grad_(False)     # u_s is not part of FBS
        self.last_saliency = None

    def runtime_importance(self, x):
        return self.gate(x.mean((2, 3))).relu()

    def forward(self, x, a_r=None, a_s=None):
        g = self.runtime_importance(x)
        k = G.keep_count(self.runtime_ratio if a_r is None else a_r, g.shape[1], g.shape[0], self.min_ratio, g.device)
        keep = (~G.top_mask(g.detach(), k)).to(x.dtype)
        self.last_keep, self.last_saliency = keep, g
        z = self.bn(self.conv(x)) + self.beta[None, :, None, None]
        y = z * (g * keep)[:, :, None, None]
        return y.relu() if self.relu else y


def to_fbs(backbone, budget: float):
    """An FBS-gated copy of a ConvChain (a GatedNet) or a ResNet (a GatedResNet: the two 3x3 convs of
    every block, as the DRL gates) keeping ceil(budget C) channels per layer and input."""
    return G.to_gated(backbone, layer_class=FBSConv, rr=1.0, runtime_ratio=G.check_ratio("budget", budget))


def l1_penalty(net, weight: float):
    """weight x sum over layers of ||g_l||_1, averaged over the inputs of the last forward."""
    def penalty():
        return weight * sum(layer.last_saliency.abs().sum(1).mean() for layer in net.layers)
    return penalty


class FBS(Method):
    name = "fbs"
    defaults = ARGS["fbs"]
    needs_parent = True

    def validate(self, cfg: RunConfig) -> None:
        super().validate(cfg)
        a = {**self.defaults, **cfg.args}
        check_choice("FBS backbone (model)", cfg.model, ALL_BACKBONES)
        G.check_ratio("budget", a["budget"])
        if isinstance(a["l1"], bool) or not isinstance(a["l1"], (int, float)) or not a["l1"] >= 0:
            raise ConfigError(f"l1 must be a number >= 0, got {a['l1']!r}")

    def load_weights(self, model, state: dict):
        net = _with_budget(to_fbs(model, 1.0), 1.0)
        net.load_state_dict(state)
        net.set_ratios(runtime=float(net.budget))
        return net

    def run(self, ctx) -> Result:
        a = {**self.defaults, **ctx.cfg.args}
        parent = ctx.parent_model()
        net = _with_budget(to_fbs(parent, a["budget"]).to(ctx.device), a["budget"])
        history = ctx.fit(net, penalty=l1_penalty(net, float(a["l1"])) if a["l1"] else None)
        net.eval()
        hw = tuple(ctx.input_shape[1:])
        m = G.measure(net, net, ctx.data.x_test.to(ctx.device), hw)
        p = G.param_counts(net)
        extra = G.channel_metrics(m, p["backbone"], p["gate"], G.param_counts(parent)["backbone"])
        extra["fbs"] = {"budget": a["budget"], "budget_macs_fraction": G.uniform_budget(net, a["budget"], hw),
                        "params": {k: v for k, v in p.items() if k != "static"}}
        return Result(net, history, extra)


def _with_budget(net, budget: float):
    """The budget as a buffer, so the cached weights say which one they were trained for."""
    net.register_buffer("budget", torch.tensor(float(budget)))
    return net


register(FBS())

"""DRL static + runtime channel pruning (Chen, Chen & Pan, NeurIPS 2020; ICLR 2020 submission §3).

From a trained backbone (the parent run) every conv block becomes a gated layer
(drl_gates.GatedConv; in a ResNet, the two 3x3 convs of every block, drl_gates.GatedResNet): a runtime pruner keeps the most important channels of each input, a
static pruner the most important channels of the layer, and the trade-off pruner's rate Rr
mixes them (Rr = 1 runtime only, Rr = 0 static only). Two agents (rl/agents.LayerAgent, one
step per layer) choose the preserve ratios and learn by PPO (rl/ppo.py). Algorithm 1,
alternating `iterations` times:

  (i)  `agent_batches` batches with the CNN frozen (eval mode): per input, the runtime agent
       reads GAP of each layer's input, the static agent a constant per-layer state (the
       code's (C_in + C_out) / max), both sample a preserve ratio per layer; the episode's
       reward, given at the last layer only, is
           R = -CE / beta_b + P(B, B_bar)                                      (Eqs. 7-11, 14-15)
       with beta_b a running mean of the batch cross-entropy, B the fraction of the dense conv
       MACs (runtime) or conv parameters (static) that the sampled ratios consume, counted
       sum_l K_l (r_{l-1} C_{l-1}) (r_l C_l), r_0 = 1 (drl_gates.ratio_macs), B_bar the same
       for the uniform ratio d (`budget`), and, with the code's signs (Eq. 10 as printed has
       the wrong sign),
           P = -1.2 (exp((B - B_bar) / 0.03) - 1)            over budget,
           P = under_bonus (B_bar - B) (runtime), 0 (static)  under it;
       the agents' means also pay 0.5 (mu - clip(mu, 0.1, 1))^2 (Eq. 13, the code's weights
       100 runtime, 1e-3 static); one PPO update per batch and agent, GAE over the layers.
       An agent whose side cannot act is not trained (the static one at Rr = 1, the runtime
       one at Rr = 0).
  (ii) `cnn_batches` batches with the agents frozen (a = mean): the convs, gates f, static
       importances v, BN shifts and classifier learn by cross-entropy through the pruned
       forward, with the run's optimizer and lr (the code's CNN gradient clip of 40 is the
       run's grad_clip).
At inference (`DRLNet`) the static ratios are the static agent's means, fixed per layer,
and the runtime agent acts on each input with its mean. The record gives MACs per input
measured from the masks each test image got (backbone apart from gates and agent), stored
parameters after deleting never-selectable channels, the physically narrowed static model's
size and accuracy (at Rr = 0 it is the deployed model), and per-layer kept ratios.

Options (args.ARGS["drl_prune"]), the paper's choice first where it has one:
  encoder_input  "in": the runtime encoder reads GAP(F_in) (rebuttal) | "in+out": also u_r (code)
  consumption    "actions": B from the agent's ratios (paper, code) | "masks": the runtime
                 agent's B from the masks the input really got (exact at 0 < Rr < 1, where the
                 trade-off pruner moves the masks away from the actions)
  under_bonus    the code's runtime bonus under budget (0.1); 0 gives the paper's Eq. 10
  sign_rule, static_floor   as in drl_gates
  policy         "agents": the ratios the agents learn (the method) | "uniform": a control, every layer keeps the
                 budget d through the runtime and the static pruner alike, for every input (the trade-off pruner
                 still mixes their channel choices at Rr); no agent exists or is trained, the CNN phase is the
                 same (iterations x cnn_batches), so the run isolates what the learned ratios add
Departures, named: the agents' hidden width is an option (`hidden`, the paper's 128 would
outweigh M-FashionNet-S); the static agent uses the runtime agent's RNN cell (the code: an
LSTM); the penalty's exponent is capped at MAX_EXPONENT so that one far-over-budget sample
cannot swamp a batch; pretraining is `pretrain_batches` CNN batches at ratio 1 (the paper
trains to convergence, the code loads a checkpoint it does not ship).
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError, RunConfig, check_choice
from ..models.drl_nets import ALL_BACKBONES
from ..rl import ppo
from ..rl.agents import LayerAgent
from . import drl_gates as G
from .args import ARGS
from .base import Method, Result, register

PENALTY_SCALE = 1.2          # the code's weight of the over-budget penalty
PENALTY_TEMPERATURE = 0.03   # exp((B - B_bar) / 0.03): the code's alpha_1 = 1 / 0.03
MAX_EXPONENT = 5.0           # ours: the penalty is at most 1.2 (e^5 - 1) ~ 177
LOSS_WARMUP = 200            # beta_b: cumulative mean of the batch CE over the first 200 batches ...
LOSS_EMA = 0.995             # ... then an exponential moving average keeping 0.995 of the old value
RANGE_COEF = {"runtime": 100.0, "static": 1e-3}   # the code's weights of Eq. 13's range penalty
ENCODER_INPUTS = ("in", "in+out")
CONSUMPTIONS = ("actions", "masks")
POLICIES = ("agents", "uniform")


# --- rewards -----------------------------------------------------------------------------------------

def layer_units(net, input_hw) -> dict:
    """Per gated conv (slot): MACs per (input channel x output channel) pair, parameters per pair,
    C_in, C_out and the slot its input channels come from (-1: a full-width input); `fixed_macs`
    and `fixed_params`, what the ungated convs (a ResNet's stem and shortcuts) always cost."""
    units, weights, c_in, c_out, src = [], [], [], [], []
    fixed = {"macs": 0.0, "params": 0.0}
    for conv, _, hw, i, o in G.sites(net, input_hw)[0]:
        out_hw = G.conv_output_hw(conv, hw)
        k = conv.kernel_size[0] * conv.kernel_size[1]
        if o is None:
            fixed["macs"] += k * out_hw[0] * out_hw[1] * conv.in_channels * conv.out_channels
            fixed["params"] += k * conv.in_channels * conv.out_channels
            continue
        units.append(k * out_hw[0] * out_hw[1])
        weights.append(k)
        c_in.append(conv.in_channels)
        c_out.append(conv.out_channels)
        src.append(-1 if i is None or i == G.INPUT else i)
    out = {name: torch.tensor(v, dtype=torch.float64) for name, v in
           (("macs", units), ("params", weights), ("c_in", c_in), ("c_out", c_out))}
    out["source"] = torch.tensor(src, dtype=torch.long)
    out["fixed_macs"], out["fixed_params"] = fixed["macs"], fixed["params"]
    return out


def consumption(ratios: torch.Tensor, units: torch.Tensor, c_in: torch.Tensor, c_out: torch.Tensor,
                source: torch.Tensor | None = None, fixed: float = 0.0) -> torch.Tensor:
    """(fixed + sum_l u_l (r_src(l) C_in_l)(r_l C_out_l)) / (fixed + sum_l u_l C_in_l C_out_l) per row
    of `ratios` (B, L): src(l) the slot feeding conv l's input (`layer_units`' "source"; default,
    a chain: l - 1), r = 1 for a full-width input (a chain's first conv, a ResNet block's first)."""
    r = ratios.to(torch.float64)
    if source is None:
        source = torch.arange(r.shape[1]) - 1
    prev = torch.where(source >= 0, r[:, source.clamp(min=0)], torch.ones_like(r))
    return (fixed + (units * prev * c_in * r * c_out).sum(1)) / (fixed + (units * c_in * c_out).sum())


def budget_reward(used: torch.Tensor, target: float, under_bonus: float) -> torch.Tensor:
    """P(B, B_bar): the exponential penalty over budget, under_bonus x the margin under it."""
    over = used - target
    penalty = -PENALTY_SCALE * torch.expm1((over / PENALTY_TEMPERATURE).clamp(max=MAX_EXPONENT))
    return torch.where(over > 0, penalty, under_bonus * -over)


class LossScale:
    """beta_b of Eqs. 8-9: the batch-mean cross-entropy, averaged cumulatively, then by an EMA."""

    def __init__(self):
        self.value, self.count = 0.0, 0

    def update(self, batch_mean: float) -> float:
        self.count += 1
        if self.count <= LOSS_WARMUP:
            self.value += (batch_mean - self.value) / self.count
        else:
            self.value = LOSS_EMA * self.value + (1 - LOSS_EMA) * batch_mean
        return self.value


# --- the deployed model ------------------------------------------------------------------------------

class DRLNet(nn.Module):
    """The gated backbone, the runtime agent acting with its mean, and the static agent's per-layer
    ratios (a buffer): what runs at inference and what the CNN phase trains."""

    def __init__(self, gated: G.GatedNet, runtime: LayerAgent, budget: float, encoder_input: str = "in",
                 uniform: bool = False):
        super().__init__()
        self.gated, self.runtime, self.encoder_input = gated, runtime, encoder_input
        self.uniform = uniform       # policy "uniform": ratio d everywhere, the agent unused (and not stored)
        if uniform:
            self.register_buffer("uniform_policy", torch.ones(()))
        self.register_buffer("budget", torch.tensor(float(budget)))
        self.register_buffer("static_ratios", torch.full((len(gated.layers),), float(budget)))
        first = gated.layers[0]      # the layers' options, so that the weights alone rebuild the net
        self.register_buffer("options", torch.tensor([first.rr, float(first.sign_rule == "code"),
                                                      float(first.static_floor)]))
        self.register_load_state_dict_post_hook(lambda module, keys: module.sync_ratios())
        self.sync_ratios()

    @property
    def rr(self) -> float:
        return self.gated.layers[0].rr

    def sync_ratios(self) -> None:
        """The layers' stored static ratios follow the buffer (parameter counts and export read them)."""
        self.gated.set_ratios(static=[min(max(float(r), G.MIN_RATIO), 1.0) for r in self.static_ratios])

    def observe(self, layer, x: torch.Tensor) -> torch.Tensor:
        """The runtime agent's observation of a layer's input: GAP(F_in) (and u_r with "in+out")."""
        obs = x.mean((2, 3))
        return torch.cat([obs, layer.runtime_importance(x)], 1) if self.encoder_input == "in+out" else obs

    def forward(self, x):
        rr, cond, h = self.rr, self.budget.expand(x.shape[0]), None

        if self.uniform:
            d = float(self.budget)
            return self.gated(x, policy=lambda t, layer, inp: (d if rr > 0 else None, d if rr < 1 else None))

        def policy(t, layer, inp):
            nonlocal h
            a_r = None
            if rr > 0:
                with torch.no_grad():
                    h = self.runtime.initial(inp.shape[0], inp.device) if h is None else h
                    a_r, _, _, h = self.runtime.step(t, self.observe(layer, inp), h, cond)
            return a_r, (self.static_ratios[t] if rr < 1 else None)
        return self.gated(x, policy=policy)


def build(backbone, a: dict, input_hw=None) -> DRLNet:   # a ConvChain or a ResNet
    """An untrained DRLNet around (a copy of) `backbone` with the run's options."""
    gated = G.to_gated(backbone, rr=a["rr"], sign_rule=a["sign_rule"], static_floor=a["static_floor"])
    sizes = [layer.conv.in_channels + (layer.conv.out_channels if a["encoder_input"] == "in+out" else 0)
             for layer in gated.layers]
    return DRLNet(gated, LayerAgent(sizes, a["hidden"]), a["budget"], a["encoder_input"], a.get("policy") == "uniform")


# --- Algorithm 1 ---------------------------------------------------------------------------------------

def _batches(task, prepared, batch_size: int, seed: int):
    """An endless stream of training batches (a fresh seeded order every pass)."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        for xb, yb, _ in task.batches(prepared, batch_size, gen):
            yield xb, yb


def _episodes(steps: dict, reward: torch.Tensor, cond, gamma: float, lam: float) -> dict:
    """One agent's rollout from a batch of episodes (reward at the last layer only), for ppo.update."""
    values = torch.stack(steps["values"])                          # (L, B)
    rewards = torch.zeros_like(values)
    rewards[-1] = reward.to(values.dtype)
    dones = torch.zeros_like(values)
    dones[-1] = 1.0
    adv, ret = ppo.gae(rewards, values, dones, 0.0, gamma=gamma, lam=lam)
    return {"obs": torch.stack(steps["obs"], 1), "actions": torch.stack(steps["actions"], 1),
            "logp": torch.stack(steps["logp"], 1), "values": values.T, "advantages": adv.T,
            "returns": ret.T, "cond": cond}


class Trainer:
    """The agents, their optimizers and reward state for one run (Algorithm 1)."""

    def __init__(self, model: DRLNet, a: dict, input_hw, seed: int):
        self.model, self.a = model, a
        self.train_runtime, self.train_static = model.rr > 0, model.rr < 1
        n = len(model.gated.layers)
        self.static = LayerAgent([1] * n, a["hidden"])
        c = torch.tensor([layer.conv.in_channels + layer.conv.out_channels for layer in model.gated.layers],
                         dtype=torch.float32)
        self.static_obs = (c / c.max())[:, None]                      # (L, 1): the code's constant state
        self.units = layer_units(model.gated, input_hw)
        d = torch.full((1, n), float(a["budget"]))
        self.target = {kind: float(self.consumption(kind, d)) for kind in ("runtime", "static")}
        self.dense_conv = G.ratio_macs(model.gated, [1.0] * n, input_hw)
        self.input_hw = tuple(input_hw)
        self.opt = {"runtime": torch.optim.Adam(model.runtime.parameters(), lr=a["agent_lr"]),
                    "static": torch.optim.Adam(self.static.parameters(), lr=a["agent_lr"])}
        self.scale = LossScale()
        self.gen = torch.Generator().manual_seed(seed)

    def consumption(self, kind: str, ratios: torch.Tensor) -> torch.Tensor:
        """B for each row of per-layer ratios: of the dense conv MACs (runtime) or conv parameters (static)."""
        u, unit = self.units, "macs" if kind == "runtime" else "params"
        return consumption(ratios, u[unit], u["c_in"], u["c_out"], u["source"], u[f"fixed_{unit}"])

    @torch.no_grad()
    def rollout(self, x, y) -> dict:
        """One batch of episodes with sampled actions; returns each trained agent's rollout and stats."""
        m, b = self.model, x.shape[0]
        cond = m.budget.expand(b).clone()
        steps = {k: {"obs": [], "actions": [], "logp": [], "values": []} for k in ("runtime", "static")}
        h = {"runtime": m.runtime.initial(b, x.device), "static": self.static.initial(b, x.device)}

        def act(kind, agent, t, obs):
            mu, log_std, v, h[kind] = agent.step(t, obs, h[kind], cond)
            a = ppo.GaussianHead.sample(mu[:, None], log_std[:, None], self.gen)
            s = steps[kind]
            s["obs"].append(agent.pad(obs))
            s["actions"].append(a[:, 0])
            s["logp"].append(ppo.GaussianHead.log_prob(mu[:, None], log_std[:, None], a))
            s["values"].append(v)
            return a[:, 0]

        def policy(t, layer, inp):
            a_r = act("runtime", m.runtime, t, m.observe(layer, inp)) if self.train_runtime else None
            a_s = act("static", self.static, t, self.static_obs[t].expand(b, 1)) if self.train_static else None
            return a_r, a_s

        ce = F.cross_entropy(m.gated(x, policy=policy), y, reduction="none")
        if not torch.isfinite(ce).all():
            return {"finite": False}
        acc_reward = -ce / max(self.scale.update(float(ce.mean())), 1e-12)
        out = {"finite": True, "ce": float(ce.mean())}
        if self.train_runtime:
            if self.a["consumption"] == "masks":
                used = G.network_macs(m.gated, self.input_hw)["conv"] / self.dense_conv
            else:
                ratios = torch.stack(steps["runtime"]["actions"], 1).clamp(G.MIN_RATIO, 1.0)
                used = self.consumption("runtime", ratios)
            reward = acc_reward + budget_reward(used, self.target["runtime"], self.a["under_bonus"])
            out["runtime"] = _episodes(steps["runtime"], reward, cond, self.a["gamma"], self.a["lam"])
            out["runtime_used"], out["runtime_reward"] = float(used.mean()), float(reward.mean())
        if self.train_static:
            ratios = torch.stack(steps["static"]["actions"], 1).clamp(G.MIN_RATIO, 1.0)
            used = self.consumption("static", ratios)
            reward = acc_reward + budget_reward(used, self.target["static"], 0.0)
            out["static"] = _episodes(steps["static"], reward, cond, self.a["gamma"], self.a["lam"])
            out["static_used"], out["static_reward"] = float(used.mean()), float(reward.mean())
        return out

    def update(self, kind: str, roll: dict) -> dict:
        agent = self.model.runtime if kind == "runtime" else self.static

        def evaluate(mb):
            logp, ent, values, mu = agent.evaluate(mb["obs"], mb["actions"], mb["cond"])
            off_range = 0.5 * (mu - mu.clamp(G.MIN_RATIO, 1.0)).pow(2).sum(1).mean()   # Eq. 13, on the means
            return logp, ent, values, RANGE_COEF[kind] * off_range

        return ppo.update(evaluate, self.opt[kind], roll, epochs=self.a["ppo_epochs"], minibatch=self.a["minibatch"],
                          clip=self.a["clip"], generator=self.gen)

    @torch.no_grad()
    def static_means(self) -> torch.Tensor:
        """The static agent's per-layer means (constant states, so the same for every input)."""
        h, cond, out = self.static.initial(1), self.model.budget.expand(1), []
        for t in range(len(self.model.gated.layers)):
            mu, _, _, h = self.static.step(t, self.static_obs[t][None], h, cond)
            out.append(float(mu[0]))
        return torch.tensor(out)


def _diverged(iteration: int, value: float, history: list):
    from ..train import Divergence

    err = Divergence(iteration, value)
    err.history = history
    return err


def cnn_steps(forward, params, opt, stream, n: int, grad_clip, iteration: int, history: list) -> float:
    """n optimizer steps of cross-entropy through `forward`; the mean loss (Divergence when not finite)."""
    total = 0.0
    for _ in range(n):
        xb, yb = next(stream)
        loss = F.cross_entropy(forward(xb), yb)
        if not torch.isfinite(loss):
            raise _diverged(iteration, loss.item(), history)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        total += loss.item()
    return total / max(n, 1)


def check_args(a: dict, model: str) -> None:
    check_choice("DRL backbone (model)", model, ALL_BACKBONES)
    G.check_ratio("budget", a["budget"])
    G.check_rr(a["rr"])
    check_choice("encoder_input", a["encoder_input"], ENCODER_INPUTS)
    check_choice("consumption", a["consumption"], CONSUMPTIONS)
    check_choice("policy", a["policy"], POLICIES)
    check_choice("sign_rule", a["sign_rule"], G.SIGN_RULES)
    check_choice("static_floor", a["static_floor"], (True, False))
    for name in ("iterations", "agent_batches", "cnn_batches", "pretrain_batches", "finetune_epochs", "eval_every",
                 "ppo_epochs", "minibatch", "hidden"):
        low = 1 if name in ("iterations", "ppo_epochs", "minibatch", "hidden") else 0
        if isinstance(a[name], bool) or not isinstance(a[name], int) or a[name] < low:
            raise ConfigError(f"{name} must be an integer >= {low}, got {a[name]!r}")
    for name in ("agent_lr", "under_bonus", "gamma", "lam", "clip"):
        v = a[name]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ConfigError(f"{name} must be a finite number >= 0, got {v!r}")
    if not a["agent_lr"] > 0:
        raise ConfigError(f"agent_lr must be positive, got {a['agent_lr']!r}")


class DRLPrune(Method):
    name = "drl_prune"
    defaults = ARGS["drl_prune"]
    needs_parent = True

    def validate(self, cfg: RunConfig) -> None:
        super().validate(cfg)
        check_args({**self.defaults, **cfg.args}, cfg.model)

    def load_weights(self, model, state: dict) -> DRLNet:
        """The DRLNet around the fresh backbone `model`, its options read back from the weights."""
        rr, sign, floor = (float(v) for v in state["options"])
        enc_in = state["runtime.encoders.0.weight"].shape[1]
        a = {"budget": float(state["budget"]), "rr": rr, "sign_rule": G.SIGN_RULES[1] if sign else G.SIGN_RULES[0],
             "static_floor": bool(floor), "hidden": state["runtime.rnn.weight_hh"].shape[0],
             "encoder_input": "in" if enc_in == G.convs_of(model)[0].in_channels else "in+out",
             "policy": "uniform" if "uniform_policy" in state else "agents"}
        net = build(model, a)
        net.load_state_dict(state)
        return net

    def run(self, ctx) -> Result:
        c, a = ctx.cfg, {**self.defaults, **ctx.cfg.args}
        parent = ctx.parent_model()
        hw = tuple(ctx.input_shape[1:])
        model = build(parent, a).to(ctx.device)
        trainer = Trainer(model, a, hw, c.seed)
        task, ds = ctx.task, ctx.data
        prepared = task.prepare(ds, ctx.device)
        agent_data = _batches(task, prepared, c.batch_size, c.seed * 1000 + 1)
        cnn_data = _batches(task, prepared, c.batch_size, c.seed * 1000 + 2)
        from ..train import make_optimizer
        cnn_params = list(model.gated.parameters())
        opt = make_optimizer(cnn_params, c.optimizer, c.lr, c.momentum, c.weight_decay)
        history, curve = [], []
        if a["pretrain_batches"]:
            model.train()
            cnn_steps(lambda xb: model.gated(xb, policy=lambda t, layer, inp: (1.0, 1.0)), cnn_params, opt, cnn_data,
                      a["pretrain_batches"], c.grad_clip, 0, history)
        uniform = a["policy"] == "uniform"
        for it in range(1, a["iterations"] + 1):
            model.eval()
            stats = {"iteration": it}
            sums: dict = {}
            for _ in range(0 if uniform else a["agent_batches"]):
                roll = trainer.rollout(*next(agent_data))
                if not roll["finite"]:
                    raise _diverged(it, math.nan, history)
                for kind in ("runtime", "static"):
                    if kind in roll:
                        for k, v in trainer.update(kind, roll[kind]).items():
                            sums[f"{kind}_{k}"] = sums.get(f"{kind}_{k}", 0.0) + v
                for k in ("ce", "runtime_used", "runtime_reward", "static_used", "static_reward"):
                    if k in roll:
                        sums[k] = sums.get(k, 0.0) + roll[k]
            if any(not math.isfinite(v) for v in sums.values()):
                raise _diverged(it, math.nan, history)
            stats.update({k: v / max(a["agent_batches"], 1) for k, v in sums.items()})
            if trainer.train_static and not uniform:
                model.static_ratios.copy_(trainer.static_means())
                model.sync_ratios()
            model.train()
            stats["cnn_loss"] = cnn_steps(model, cnn_params, opt, cnn_data, a["cnn_batches"], c.grad_clip, it, history)
            stats["static_ratios"] = [round(float(r), 4) for r in model.static_ratios]
            curve.append(stats)
            if (a["eval_every"] and it % a["eval_every"] == 0) or it == a["iterations"]:
                test = task.evaluate(model, ds.x_test, ds.y_test)
                history.append({"epoch": it, "iteration": it, "train_loss": stats["cnn_loss"],
                                **{f"test_{k}": v for k, v in test.items()}})
        if a["finetune_epochs"]:
            for h in ctx.fit(model, epochs=a["finetune_epochs"], params=cnn_params, stream=3):
                history.append({**h, "epoch": a["iterations"] + h["epoch"], "phase": "finetune"})
        model.eval()
        return Result(model, history, record_metrics(model, parent, ctx, a, curve))


def record_metrics(model: DRLNet, parent, ctx, a: dict, curve: list) -> dict:
    """What the record keeps beyond accuracy: measured MACs, stored parameters, the static export."""
    hw, ds = tuple(ctx.input_shape[1:]), ctx.data
    m = G.measure(model.gated, model, ds.x_test.to(ctx.device), hw)
    dense_params = G.param_counts(parent)
    params = G.param_counts(model.gated)
    agent_params = model.runtime.inference_params() if model.rr > 0 and not model.uniform else 0
    agent_macs = model.runtime.inference_macs() if model.rr > 0 and not model.uniform else 0
    n = len(model.gated.layers)
    budget_frac = G.uniform_budget(model.gated, a["budget"], hw)
    dense_conv = G.ratio_macs(model.gated, [1.0] * n, hw)
    out = G.channel_metrics(m, params["backbone"], params["total"] - params["backbone"] + agent_params,
                            dense_params["backbone"], overhead_macs=m["macs_gates"] + agent_macs)
    static = {}
    if model.rr < 1:   # the static part alone, physically narrowed (the deployed model at Rr = 0)
        narrow = copy.deepcopy(model.gated)
        narrow.set_rr(0.0)
        narrow = G.export_static(narrow).eval()
        static = {"static_export_params": G.param_counts(narrow)["total"],
                  "static_export_test_acc": ctx.task.evaluate(narrow, ds.x_test, ds.y_test)["acc"]}
    out.update(static)
    out["drl"] = {
        "budget": a["budget"], "rr": model.rr, "budget_macs_fraction": budget_frac,
        "achieved_macs_fraction": m["macs_conv"] / dense_conv, "macs_gates": m["macs_gates"],
        "macs_agent": agent_macs, "params": params, "params_agent": agent_params,
        "static_ratios": [float(r) for r in model.static_ratios], "deleted_channels": G.deleted_counts(model.gated),
        "curve": curve,
    }
    return out


register(DRLPrune())

"""FLOP: structured pruning by factorization and a Lagrangian budget (Wang, Wohlwend & Lei, EMNLP 2020).

One run starts from its parent's trained dense model, writes each chosen nn.Linear as W = P diag(z) Q
(flop_gates.factorize: SVD of the trained weight by default, so the factorized model starts with the dense
model's outputs), and trains for the run's epochs with

    loss + lambda1 (s_hat - t_k) + lambda2 (s_hat - t_k)^2,

where s_hat is the expected sparsity of the gated layers (closed form in log alpha), t_k the target at step k
(raised linearly from 0 to `target` over the first `warmup` fraction of the steps), and lambda1, lambda2
multipliers that start at 0 and are *maximised* by their own Adam while the model minimises: a simultaneous
descent-ascent game whose fixed point has s_hat = t. The model's weights use the run's optimizer settings;
log alpha gets its own Adam (`gate_lr`) as in the official SRU scripts (`gate_lr` None puts it in the run's
optimizer, as the official Transformer-XL script does). At the end the closed components are removed
(flop_gates.export_model): the run's model is the physically smaller one, each factorized layer a pair of
dense layers of inner size r' (the kept rank), and its test metric is checked against the masked model's
in evaluation mode (they agree up to float rounding; both are recorded).

Every choice is an argument (args.ARGS["flop"]; the building blocks' docstring gives the sources):
  target, total   sparsity t in [0, 1) against the gated layers' dense size ("dense", our default: the
                  honest count, so t = 0.5 means half the dense weights of those layers are gone) or their
                  factorized size ("factorized", the official code's denominator; full-rank SVD makes it
                  larger than the dense size, so the same t removes fewer weights).
  warmup          fraction of the run's optimizer steps over which t_k rises to t. The official scripts use
                  0 (enwik8 SRU) up to 64,000 steps of far longer runs; 0.5 leaves half of a short run for
                  the model to recover at the final size.
  quadratic       True: the augmented term lambda2 (s_hat - t)^2 as in the paper and code; False drops it (the plain
                  Lagrangian, an ablation: lambda2 stays 0).
  lambda_lr, gate_lr  0.1 and 0.05: chosen for runs of about a thousand steps. On a small SRU (d 64) with
                  780 steps and warm-up 0.5 they ended within 0.02 of t = 0.5, 0.7, 0.8 and 0.9, where
                  0.05 / 0.05 stalled at 0.83 for t = 0.9: open gates with a large log alpha feel little of
                  the penalty (its gradient carries sigmoid'(log alpha)), so the multiplier must grow large,
                  and a faster one gets there within the run. The official scripts' rates were set for
                  10^5-step runs; the paper's are not available offline.
  beta, init_drop, init_std, eval_rule, sampling   the gates' (flop_gates.HardConcrete).
  layers          which nn.Linear layers are factorized (None: every plain nn.Linear, the output layer
                  included, so that unstructured magnitude pruning of the same model prunes the same set).
                  The official enwik8 script factorizes the SRU layers and leaves the output layer dense.
  budget, l0_coef "lagrangian" (FLOP) | "fixed": the baseline without multipliers, loss + l0_coef (1 - s_hat)
                  (Louizos et al.'s fixed weight on the expected L0, here the expected kept fraction of the
                  gated layers), whose final sparsity follows from the weight instead of a target | "agp":
                  no gates, structured gradual magnitude pruning of the factorization's components to the
                  target (ComponentAGP; warmup, lambda_lr and gate_lr unused).
  structure       "factorized" (FLOP) | "columns": gates on the dense layers' input columns, no factorization
                  (the paper's L0 baseline, flop_gates.ColumnGatedLinear).
  clusters        False (ours so far): an adaptive embedding's projections and the adaptive softmax's tail
                  projections are factorized like any nn.Linear, the tables are not pruned | True: the
                  official WikiText-103 scheme, one gate per dimension of each cluster's width that removes
                  the table's column with the projection's (flop_gates.WidthGated). In an untied model the
                  embedding and the softmax have separate gates; in a tied one (word-sru-paper, as the
                  official script ties them) the softmax reads the embedding's tables, projections and gates,
                  so one gate removes a dimension from both. Needs a model with adaptive clusters; a tied
                  model needs clusters=True.
  init, rank      "svd" from the trained weight (the official `dev` branch) at full rank by default, or
                  "random" factors trained from the parent's other weights (the official LM scripts train
                  factorized models from scratch).

Departures from the official code, each deliberate: the run keeps its final model (the code selects the
best dev evaluation among those with hard sparsity above target - 0.02); the multipliers ascend with
torch's maximize=True (the code set a negative learning rate, which current torch refuses); no
input-column gates on the first layer (the code's enwik8 "FLOP" model mixes them in); no index_select
shortcut in training, so a FLOP step costs the full factorized product.

Recorded (Result.extra): expected and hard sparsity against both totals, kept and full rank per layer,
parameter counts (dense model, gated layers dense / factorized / kept, exported model), lambda1, lambda2
and the target at the end, the masked and exported models' test metrics, and a trace of about 100
points (step, t_k, s_hat, hard sparsity, lambda1, lambda2) for controllability plots.
"""
from __future__ import annotations

import copy
import math
from collections import OrderedDict

import torch
from torch import nn

from ..config import ConfigError, RunConfig, check_choice
from ..train import Callback, seed_everything
from .args import ARGS
from .base import Method, Result, register
from .flop_gates import (EVAL_RULES, INITS, SAMPLINGS, SPARSITY_LABELS, SPARSITY_TOTALS, STRUCTURES, LagrangianBudget,
                         ColumnSelect, _linear, is_low_rank, selectable,
                         expected_sparsity, export_model, factorize, factorized_layers, flop_parameters, hard_sparsity)

TRACE_POINTS = 100   # about this many (step, t, s_hat, ...) points per run, evenly spaced


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _layer_names(layers):
    """The `layers` argument as a list of names, or None for every plain nn.Linear."""
    return None if layers is None else [layers] if isinstance(layers, str) else list(layers)


def linear_names(model_name: str):
    """The qualified names of a registered model's nn.Linear layers, built on the meta device (no memory,
    no time); None when the model cannot be built without its data (then the run checks the names)."""
    from .. import models
    try:
        with torch.device("meta"):
            model = models.build(model_name, (1, 28, 28), 10)
    except Exception:  # noqa: BLE001 - a builder that needs real data shapes: checked at run time
        return None
    return list(selectable(model))


def models_family(model_name: str) -> str:
    from .. import models
    return models.spec(model_name).family


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


BUDGETS = ("lagrangian", "fixed", "agp")
AGP_END = 0.75      # structured AGP prunes over the first 75 % of the steps (as magnitude.py's gradual schedule)


class ComponentAGP(Callback):
    """Structured gradual magnitude pruning of a factorized model (the paper's "AGP on the factorization's
    diagonal"): no gates; after every step in the first AGP_END of the run, in each factorized layer, the
    components with the smallest ||P[:, k]|| ||Q[k, :]|| are masked until the layer keeps at most (1 - s_k)
    of its own size, s_k = t (1 - (1 - k / n)^3) (Zhu & Gupta's cubic schedule). Every layer gets the same
    sparsity, as Distiller's pruner (the official AGP scripts) gives each masked parameter its own level;
    one ranking across layers instead emptied the character model's decoder, whose singular values are
    the smallest. A masked component stays masked. Exposes the same status and trace as LagrangianPruning."""

    def __init__(self, target: float, total: str):
        self.target, self.total = target, total
        self.trace: list = []
        self.s_hat = math.nan

    def on_train_begin(self, state):
        self.state = state
        self.layers = list(factorized_layers(state.model).values())
        for layer in self.layers:
            layer.use_gates = False
        self.end = max(1, round(AGP_END * state.total_steps))
        self.every = max(1, state.total_steps // TRACE_POINTS)

    def target_at(self, step: int) -> float:
        return self.target * (1 - (1 - min(step, self.end) / self.end) ** 3)

    @torch.no_grad()
    def after_step(self, state):
        if state.step <= self.end:
            level = 1 - self.target_at(state.step)
            for layer in self.layers:
                size = layer.dense_parameters() if self.total == "dense" else layer.factorized_parameters()
                allowed, kept = level * size, layer.kept_parameters()
                if kept <= allowed:
                    continue
                norms = layer.component_norms()
                for k in sorted((k for k in range(len(norms)) if layer.keep[k] > 0), key=lambda k: float(norms[k])):
                    if kept <= allowed:
                        break
                    layer.keep[k] = 0.0
                    kept -= layer.in_features + layer.out_features
        self.s_hat = hard_sparsity(state.model, self.total)
        if state.step % self.every == 0 or state.step == state.total_steps:
            self.trace.append({"step": state.step, "expected_sparsity": self.s_hat, **self.status(state.step)})

    def penalty(self):
        return None

    def status(self, step: int) -> dict:
        return {"target": self.target_at(step), "hard_sparsity": hard_sparsity(self.state.model, self.total),
                "lambda1": 0.0, "lambda2": 0.0}

    def on_epoch_end(self, state):
        state.history[-1].update(expected_sparsity=hard_sparsity(state.model, self.total), **self.status(state.step))


class LagrangianPruning(Callback):
    """The budget term as the loop's penalty, and the steps of the gate and multiplier optimizers.

    penalty() returns lambda1 (s_hat - t_k) + lambda2 (s_hat - t_k)^2 for the current step; its gradient
    reaches the multipliers and log alpha, whose optimizers step right after the backward pass (before the
    model's step: the players move simultaneously), then clear their gradients."""

    def __init__(self, target: float, warmup: float, total: str, lambda_lr: float, gate_lr: float | None,
                 l0_coef: float | None = None, quadratic: bool = True):
        self.target, self.warmup, self.total, self.quadratic = target, warmup, total, quadratic
        self.lambda_lr, self.gate_lr = lambda_lr, gate_lr
        self.l0_coef = l0_coef            # not None: the fixed-coefficient baseline, no multipliers
        self.trace: list = []

    def on_train_begin(self, state):
        self.state = state
        device = next(state.model.parameters()).device
        self.budget = LagrangianBudget(self.target, round(self.warmup * state.total_steps), self.total,
                                       self.quadratic).to(device)
        self.optimizers = [self.budget.optimizer(self.lambda_lr)] if self.l0_coef is None else []
        if self.gate_lr is not None:
            self.optimizers.append(torch.optim.Adam(flop_parameters(state.model)["gates"], lr=self.gate_lr))
        self.every = max(1, state.total_steps // TRACE_POINTS)
        self.s_hat = math.nan

    def penalty(self) -> torch.Tensor:
        s_hat = expected_sparsity(self.state.model, self.total)
        self.s_hat = float(s_hat.detach())
        if self.l0_coef is not None:       # Louizos et al.: a fixed weight on the expected L0 (kept fraction)
            return self.l0_coef * (1.0 - s_hat)
        return self.budget(s_hat, self.state.step)

    def before_step(self, state):
        for opt in self.optimizers:
            opt.step()
            opt.zero_grad(set_to_none=True)

    def status(self, step: int) -> dict:
        return {"target": self.budget.target_at(step), "hard_sparsity": hard_sparsity(self.state.model, self.total),
                "lambda1": float(self.budget.lambda1.detach()), "lambda2": float(self.budget.lambda2.detach())}

    def after_step(self, state):
        if state.step % self.every == 0 or state.step == state.total_steps:
            self.trace.append({"step": state.step, "expected_sparsity": self.s_hat, **self.status(state.step - 1)})

    def on_epoch_end(self, state):
        state.history[-1].update(expected_sparsity=float(expected_sparsity(state.model, self.total).detach()),
                                 **self.status(state.step))


class FLOP(Method):
    name = "flop"
    defaults = ARGS["flop"]
    needs_parent = True

    def validate(self, cfg: RunConfig) -> None:
        super().validate(cfg)
        a = {**self.defaults, **cfg.args}
        if not (_number(a["target"]) and 0 <= a["target"] < 1):
            raise ConfigError(f"flop target (sparsity) must be a number in [0, 1); got {a['target']!r}")
        check_choice("sparsity total", a["total"], SPARSITY_TOTALS)
        if not (_number(a["warmup"]) and 0 <= a["warmup"] <= 1):
            raise ConfigError(f"flop warmup must be a fraction of the run's steps in [0, 1]; got {a['warmup']!r}")
        for k in ("lambda_lr", "gate_lr", "beta"):
            if not (_number(a[k]) and a[k] > 0) and not (k == "gate_lr" and a[k] is None):
                extra = " or None (log alpha in the run's optimizer)" if k == "gate_lr" else ""
                raise ConfigError(f"flop {k} must be a finite number > 0{extra}; got {a[k]!r}")
        if not (_number(a["init_drop"]) and 0 < a["init_drop"] < 1):
            raise ConfigError(f"flop init_drop must be in (0, 1) (a drop rate; 0.5 gives log alpha mean 0); got {a['init_drop']!r}")
        if not (_number(a["init_std"]) and a["init_std"] >= 0):
            raise ConfigError(f"flop init_std must be a finite number >= 0; got {a['init_std']!r}")
        if not isinstance(a["quadratic"], bool):
            raise ConfigError(f"flop quadratic must be True (lambda1 and lambda2 terms, FLOP) or False (lambda1 alone); "
                              f"got {a['quadratic']!r}")
        check_choice("evaluation rule", a["eval_rule"], EVAL_RULES)
        check_choice("gate sampling", a["sampling"], SAMPLINGS)
        check_choice("factorization init", a["init"], INITS)
        check_choice("flop budget", a["budget"], BUDGETS)
        check_choice("gate structure", a["structure"], STRUCTURES)
        if a["structure"] == "columns" and (a["rank"] is not None or a["init"] != "svd"):
            raise ConfigError("flop structure 'columns' gates the dense layer itself: rank and init do not apply "
                              "(leave them at None and 'svd')")
        if a["budget"] == "agp" and a["structure"] != "factorized":
            raise ConfigError("flop budget 'agp' prunes the factorization's components: it needs structure='factorized'")
        if a["budget"] == "fixed" and not (_number(a["l0_coef"]) and a["l0_coef"] > 0):
            raise ConfigError(f"flop budget 'fixed' needs l0_coef, a finite number > 0; got {a['l0_coef']!r}")
        if a["budget"] == "lagrangian" and a["l0_coef"] is not None:
            raise ConfigError("flop l0_coef is the fixed budget's weight: set budget='fixed' or leave l0_coef None")
        check_choice("clusters", a["clusters"], (False, True))
        if a["clusters"] and (a["budget"] == "agp" or a["structure"] != "factorized"):
            raise ConfigError("flop clusters=True gates the clusters' widths: it needs budget 'lagrangian' or 'fixed' "
                              "and structure 'factorized'")
        if a["clusters"] and models_family(cfg.model) != "language":
            raise ConfigError(f"flop clusters=True needs a language model with adaptive clusters (word-sru); got {cfg.model!r}")
        if a["rank"] is not None and (isinstance(a["rank"], bool) or not isinstance(a["rank"], int) or a["rank"] < 1):
            raise ConfigError(f"flop rank must be an integer >= 1 or None (full rank); got {a['rank']!r}")
        names = _layer_names(a["layers"])
        if names is not None:
            if not names or not all(isinstance(n, str) and n for n in names):
                raise ConfigError(f"flop layers must be None (every nn.Linear) or a list of layer names; got {a['layers']!r}")
            valid = linear_names(cfg.model)
            bad = [n for n in names if valid is not None and n not in valid]
            if bad:
                raise ConfigError(f"unknown nn.Linear layer(s) {', '.join(map(repr, bad))} in {cfg.model!r}; "
                                  f"valid: {', '.join(valid)}")

    def run(self, ctx) -> Result:
        a = {**self.defaults, **ctx.cfg.args}
        model = ctx.parent_model()
        params_dense = n_parameters(model)
        seed_everything(ctx.cfg.seed)     # the gates' initial log alpha (and random factors) come from the run's seed
        factorize(model, _layer_names(a["layers"]), init=a["init"], rank=a["rank"], beta=float(a["beta"]),
                  init_drop=float(a["init_drop"]), init_std=float(a["init_std"]), eval_rule=a["eval_rule"],
                  sampling=a["sampling"], structure=a["structure"], clusters=a["clusters"])
        layers = factorized_layers(model)
        if a["budget"] == "agp":
            pruning = ComponentAGP(float(a["target"]), a["total"])
            params, penalty = flop_parameters(model)["model"], None       # the gates are not used
        else:
            pruning = LagrangianPruning(float(a["target"]), float(a["warmup"]), a["total"], float(a["lambda_lr"]),
                                        None if a["gate_lr"] is None else float(a["gate_lr"]),
                                        None if a["budget"] == "lagrangian" else float(a["l0_coef"]), a["quadratic"])
            params = flop_parameters(model)["model"] if a["gate_lr"] is not None else None
            penalty = pruning.penalty
        history = ctx.fit(model, callbacks=[pruning], penalty=penalty, params=params)

        model.eval()
        k = ctx.task.metric
        masked = ctx.task.evaluate(model, ctx.data.x_test, ctx.data.y_test)[k]
        extra = {f"{which}_sparsity_{total}": (float(expected_sparsity(model, total).detach()) if which == "expected"
                                                else hard_sparsity(model, total))
                 for which in ("expected", "hard") for total in SPARSITY_TOTALS}
        extra.update({
            "sparsity_total": a["total"], "sparsity_label": SPARSITY_LABELS[a["total"]],
            "kept_rank": {n: m.kept_rank() for n, m in layers.items()},
            "full_rank": {n: m.rank for n, m in layers.items()},
            "params_dense_model": params_dense,
            "params_gated_dense": sum(m.dense_parameters() for m in layers.values()),
            "params_gated_factorized": sum(m.factorized_parameters() for m in layers.values()),
            "params_gated_kept": sum(m.kept_parameters() for m in layers.values()),
            **{key: value for key, value in pruning.status(pruning.state.step).items() if key != "hard_sparsity"},
            "trace": pruning.trace,
        })
        exported = export_model(copy.deepcopy(model))
        extra["params_exported_model"] = n_parameters(exported)
        extra[f"test_{k}_masked"] = masked
        extra[f"test_{k}_exported"] = ctx.task.evaluate(exported, ctx.data.x_test, ctx.data.y_test)[k]
        return Result(exported, history, extra)

    def load_weights(self, model: nn.Module, state: dict) -> nn.Module:
        return restore_exported(model, state)


@torch.no_grad()
def restore_exported(model: nn.Module, state: dict) -> nn.Module:
    """`model` (the registry's fresh build) with the state of an exported FLOP model: every nn.Linear whose
    weights the state holds as a pair `<name>.q.weight`, `<name>.p.weight` (and `<name>.p.bias`) becomes
    that pair of layers, and one held as `<name>.select.index`, `<name>.linear.weight` a column selection
    and a narrower layer, sized by the state (export's structure); an nn.Linear or nn.Embedding the state
    holds at another shape (a narrowed adaptive cluster, clusters=True) is rebuilt at that shape; then the
    state is loaded."""
    modules = dict(model.named_modules())
    for name, m in modules.items():
        w = state.get(f"{name}.weight")
        if isinstance(m, (nn.Linear, nn.Embedding)) and w is not None and tuple(w.shape) != tuple(m.weight.shape):
            owner, _, attr = name.rpartition(".")
            new = (_linear(w, state.get(f"{name}.bias")) if isinstance(m, nn.Linear)
                   else nn.Embedding.from_pretrained(w.clone(), freeze=False, padding_idx=m.padding_idx))
            setattr(model.get_submodule(owner) if owner else model, attr, new)
    modules = dict(model.named_modules())
    for key in [k for k in state if k.endswith(".q.weight")]:
        name = key[: -len(".q.weight")]
        if (isinstance(modules.get(name), nn.Linear) or is_low_rank(modules.get(name))) and f"{name}.p.weight" in state:
            owner, _, attr = name.rpartition(".")
            pair = nn.Sequential(OrderedDict(q=_linear(state[key], None),
                                             p=_linear(state[f"{name}.p.weight"], state.get(f"{name}.p.bias"))))
            setattr(model.get_submodule(owner) if owner else model, attr, pair)
    for key in [k for k in state if k.endswith(".select.index")]:      # column-gated layers (structure "columns")
        name = key[: -len(".select.index")]
        if isinstance(modules.get(name), nn.Linear) and f"{name}.linear.weight" in state:
            owner, _, attr = name.rpartition(".")
            narrow = nn.Sequential(OrderedDict(select=ColumnSelect(state[key]),
                                               linear=_linear(state[f"{name}.linear.weight"], state.get(f"{name}.linear.bias"))))
            setattr(model.get_submodule(owner) if owner else model, attr, narrow)
    model.load_state_dict(state)
    return model


register(FLOP())

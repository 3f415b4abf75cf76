"""The DRL channel-pruning study plan (Chen, Chen & Pan, NeurIPS 2020): the runs its notebooks share.

Per seed: a dense backbone (Adam, lr 1e-3, batch 128), then on that same parent at a budget d:
the DRL method at several trade-off rates Rr, FBS (runtime, uniform d), FPGM and uniform L1
channel pruning (static, physically narrowed). Every notebook that asks for the same budget and
Rr gets the same record from the store.

Profiles:
  smoke  M-FashionNet-S on 1,000 MNIST-5k digits (500 test), 1 dense epoch, 2 pretraining
         batches and one DRL iteration of 3 agent + 2 CNN batches, 1 baseline epoch: proves the
         notebooks run (well under a minute).
  cpu    M-FashionNet-S on all of Fashion-MNIST (60k/10k), a labelled proxy for M-CifarNet on
         CIFAR-10; 2 seeds; dense 3 epochs; DRL: 100 batches of gate and static-importance
         pretraining at ratio 1 (so the static ranking is learned, not the tie order of fresh
         importances), then I = 8 iterations of N1 = 60 agent and N2 = 30 CNN batches (the
         rebuttal's 2:1 ratio; 720 batches, 0.77 % of the paper's 40 x (1560 + 780)), agents at
         lr 1e-4 (the paper's 1e-6 barely moves a policy in 480 updates; a notebook parameter);
         baselines 1 epoch each (469 CNN batches, more than the 340 of a DRL run).
  paper  M-CifarNet on CIFAR-10 (crop and flip, per-channel normalisation), one epoch of
         pretraining, the rebuttal's schedule (40 x (1560 + 780) batches, agents at lr 1e-6);
         the dense recipe (100 epochs) is ours: the paper starts from a checkpoint it does not
         describe.

Cost of the cpu profile, estimated from a timed tiny run of these configurations (6,400
training and 2,000 test images, 1 dense epoch, DRL 24 + 12 batches, baselines 1 epoch; one
thread on the 2-core machine while two other trainings ran, load ~6.5): per batch of 128, dense
0.35 s, DRL agent batch 0.18 s, DRL CNN batch 0.35 s, FBS 0.32 s, FPGM (full width) 0.36 s,
L1 (narrow) 0.14 s; evaluating 10k test images ~6 s, measuring the gated net's per-input MACs
on them ~13 s. Per seed: dense 3 x 469 steps ~8.6 min; each DRL run 100 x 0.35 + 480 x 0.18 +
240 x 0.35 s + ~37 s of evaluation ~4 min, three of them ~12 min; FBS ~3 min; FPGM ~3.1 min;
L1 ~1.3 min: ~28 min per seed on one loaded thread. The notebook's two seeds as two worker
processes of one thread each (the Makefile's default): ~28 min, inside the 45-minute budget
even on this loaded machine; one process alone would take ~56 min, so run it with two workers.
"""
from __future__ import annotations

from ..claims import budget as budget_text
from ..config import ConfigError, RunConfig
from . import choose

CNN_LR, BATCH = 1e-3, 128        # Adam for every CNN phase (the paper's CIFAR-10 CNN lr) and the batch
CNN_GRAD_CLIP = 40.0             # the official code's gradient-norm clip in the CNN phase
PAPER_BATCHES = 40 * (1560 + 780)   # the rebuttal's CIFAR-10 schedule: iterations x (N1 + N2)

PLANS = {
    "smoke": {"model": "m-fashionnet-s", "dataset": "mnist5k", "train_size": 1000, "test_size": 500, "seeds": [0],
              "dense_epochs": 1, "pretrain_batches": 2, "iterations": 1, "agent_batches": 3, "cnn_batches": 2,
              "baseline_epochs": 1,
              "agent_lr": 1e-4, "augment": "none", "normalize": False},
    "cpu": {"model": "m-fashionnet-s", "dataset": "fashion_mnist", "train_size": None, "test_size": None,
            "seeds": [0, 1], "dense_epochs": 3, "pretrain_batches": 100, "iterations": 8, "agent_batches": 60,
            "cnn_batches": 30,
            "baseline_epochs": 1, "agent_lr": 1e-4, "augment": "none", "normalize": False},
    "paper": {"model": "m-cifarnet", "dataset": "cifar10", "train_size": None, "test_size": None, "seeds": [0],
              "dense_epochs": 100, "pretrain_batches": 390, "iterations": 40, "agent_batches": 1560,
              "cnn_batches": 780,
              "baseline_epochs": 2, "agent_lr": 1e-6, "augment": "crop-flip", "normalize": "channel"},
}


def plan(profile: str) -> dict:
    return choose(profile, PLANS)


def dense(seed: int, profile: str) -> RunConfig:
    p = plan(profile)
    return RunConfig(method="dense", model=p["model"], dataset=p["dataset"], seed=seed, profile=profile,
                     epochs=p["dense_epochs"], optimizer="adam", lr=CNN_LR, batch_size=BATCH,
                     train_size=p["train_size"], test_size=p["test_size"], augment=p["augment"],
                     normalize=p["normalize"])


def drl(seed: int, profile: str, budget: float, rr: float, agent_lr: float | None = None,
        cnn_lr: float | None = None, **args) -> RunConfig:
    """The DRL method on the seed's dense parent (extra `args` override the plan's schedule;
    `cnn_lr`, the CNN phase's Adam lr, defaults to the parent's)."""
    p, parent = plan(profile), dense(seed, profile)
    schedule = {k: p[k] for k in ("pretrain_batches", "iterations", "agent_batches", "cnn_batches")}
    schedule["agent_lr"] = p["agent_lr"] if agent_lr is None else agent_lr
    cfg = parent.replace(method="drl_prune", parent=parent, epochs=0, grad_clip=CNN_GRAD_CLIP,
                         args={**schedule, "budget": budget, "rr": rr, **args})
    return cfg if cnn_lr is None else cfg.replace(lr=float(cnn_lr))


# notebook 05: the rebuttal's learning-rate ablation (CIFAR-10, d = 0.5, Rr = 0.5), (DRL lr, CNN lr)
LR_PAIRS = ((1e-6, 1e-3), (1e-6, 1e-2), (1e-6, 1e-4), (1e-5, 1e-3), (1e-7, 1e-3))
LR_REFERENCE = (1e-6, 1e-3)      # the paper's setting, which the other pairs change one at a time
LR_ABLATION = {"budget": 0.5, "rr": 0.5}


# notebook 02: budgets d (the paper's Tables 1 and 2 are d = 0.5 and 0.7), DRL at these Rr against FBS
SWEEP = {"smoke": {"budgets": (0.5, 0.7), "rates": (0.5, 1.0)},
         "cpu": {"budgets": (0.3, 0.5, 0.7), "rates": (0.5, 1.0)},
         "paper": {"budgets": (0.3, 0.5, 0.7, 0.9), "rates": (0.0, 0.5, 1.0)}}


# notebook 03: the trade-off rate at d = 0.5 (the paper's Fig. 2 is at 0.45; 0.5 shares notebook 01's runs)
RR_SWEEP = {"smoke": (0.0, 0.5, 1.0), "cpu": (0.0, 0.25, 0.5, 0.75, 1.0), "paper": (0.0, 0.25, 0.5, 0.75, 1.0)}
RR_SWEEP_BUDGET = 0.5


def sweep_plan(profile: str) -> dict:
    return choose(profile, SWEEP)


def lr_reference_name(agent_lr: float, cnn_lr: float) -> str:
    """The pair's method name in references/drl2020.json."""
    return f"drl-rr{LR_ABLATION['rr']:g}-d{LR_ABLATION['budget']:g}-lr-{agent_lr!r}-{cnn_lr!r}"


def baseline(method: str, seed: int, profile: str, budget: float, **args) -> RunConfig:
    """FBS, FPGM or uniform L1 channel pruning on the same parent and budget."""
    parent = dense(seed, profile)
    return parent.replace(method=method, parent=parent, epochs=plan(profile)["baseline_epochs"],
                          args={"budget": budget, **args})


def batches_vs_paper(profile: str) -> str:
    """Our DRL schedule's batches (iterations x (N1 + N2)) over the rebuttal's, as claims.budget text."""
    p = plan(profile)
    return budget_text(p["iterations"] * (p["agent_batches"] + p["cnn_batches"]), PAPER_BATCHES)


# --- notebook 00: accounting without training ------------------------------------------------------

ACCOUNTING_INPUT = {"m-cifarnet": (3, 32, 32), "m-fashionnet": (1, 28, 28), "m-fashionnet-s": (1, 28, 28)}


def accounting(model: str, budgets=(0.5, 0.7), hidden: int = 128) -> dict:
    """What the counting rules give for an untrained backbone, no data needed: dense MACs and
    parameters (conv + FC, the paper's count, and with BN's affine), per budget d the MAC
    speed-up measured from the masks when every conv keeps ceil(d C) of its output channels for
    every input and the speed-up by the budget rule (d C, unrounded), FBS's gate parameters, the
    runtime agent's MACs and parameters at width `hidden` with either encoder input, and the
    runtime-only (Rr = 1) stored parameters (gates, static importances and agent included)."""
    import torch

    from ..methods import drl_gates as G
    from ..methods import drl_prune
    from ..methods.args import ARGS
    from ..models.drl_nets import build_backbone

    shape = ACCOUNTING_INPUT.get(model)
    if shape is None:
        raise ConfigError(f"no accounting input size for {model!r}; valid: {', '.join(ACCOUNTING_INPUT)}")
    torch.manual_seed(0)
    hw, net = shape[1:], build_backbone(model).eval()
    dense = G.network_macs(net, hw)["dense"]
    p = G.param_counts(net)
    out = {"model": model, "input": shape, "dense_macs": dense, "params_conv_fc": p["conv"] + p["fc"],
           "params_backbone": p["backbone"], "conv_layers": len(G.convs_of(net)), "budgets": {}}
    gated = G.to_gated(net).eval()
    for d in budgets:
        with torch.no_grad():
            gated(torch.randn(2, *shape), policy=lambda t, layer, x, d=d: (d, None))
        measured = dense / float(G.network_macs(gated, hw)["backbone"].mean())
        out["budgets"][d] = {"speedup_measured": measured, "speedup_budget_rule": 1 / G.uniform_budget(net, d, hw)}
    out["fbs_gate_params"] = G.param_counts(gated)["gate"]
    out["fbs_params_ratio"] = (p["conv"] + p["fc"] + out["fbs_gate_params"]) / (p["conv"] + p["fc"])
    out["agent"] = {}
    for enc in ("in", "in+out"):
        a = {**ARGS["drl_prune"], "rr": 1.0, "hidden": hidden, "encoder_input": enc}
        drl = drl_prune.build(net, a, hw)
        pc = G.param_counts(drl.gated)
        agent = drl.runtime.inference_params()
        out["agent"][enc] = {"macs": G.agent_macs(net, hidden, enc), "params": agent,
                             "macs_pct": 100 * G.agent_macs(net, hidden, enc) / dense,
                             "runtime_only_params_ratio": (pc["total"] + agent) / p["backbone"],
                             "runtime_only_parts": {"backbone": pc["backbone"], "gates": pc["gate"],
                                                    "static": pc["static"], "agent": agent}}
    return out


# --- tables shared by notebooks 01 and 02 ---------------------------------------------------------

BASELINE_LABELS = {"fbs": "FBS (runtime, uniform d)", "fpgm": "FPGM (static, narrowed)",
                   "l1_channel": "uniform L1 (static, narrowed)"}


def method_label(key) -> str:
    """("drl", Rr) or (baseline, None) as a table shows it."""
    return f"DRL, Rr = {key[1]:g}" if key[0] == "drl" else BASELINE_LABELS[key[0]]


def paper_entry(key, metric: str, budget: float) -> dict | None:
    """The paper's M-CifarNet number for ("drl", Rr) or (baseline, None) at budget d, or None."""
    from .. import references

    name = {("drl", 1.0): f"drl-rr1-d{budget:g}", ("drl", 0.5): f"drl-rr0.5-d{budget:g}",
            ("fbs", None): f"fbs-d{budget:g}", ("fpgm", None): f"fpgm-d{budget:g}"}.get(key)
    return references.lookup("drl2020", "m-cifarnet", name, metric) if name else None


def table_rows(base: dict, runs: dict, budget: float, profile: str, agent_lr: float) -> list:
    """report.row()s of the paper's Tables 1-2 layout: per method, the accuracy change against the
    same seed's dense backbone, the measured MAC speed-up and the stored parameters, the paper's
    number beside each (M-CifarNet on CIFAR-10, so only changes and ratios are compared)."""
    from .. import references, report

    p = plan(profile)
    model, dataset = p["model"], p["dataset"]
    acc = report.metric("test_acc", 100)
    change = report.change_vs(base, acc)
    note = f"{model} on {dataset}: proxy for M-CifarNet on CIFAR-10"
    rows = [report.row("dense backbone", model, dataset, profile, "test_acc_pct", base.values(), acc,
                       references.lookup("drl2020", "m-cifarnet", "dense", "test_acc_pct"), note=note)]
    note += f"; d = {budget:g}"
    for key, rs in runs.items():
        extra = f"; agent lr {agent_lr:g}" if key[0] == "drl" else ""
        for metric, fn, how in (("acc_change_pct_points", change, note),
                                ("mac_speedup", report.metric("macs_speedup"), "measured per input from the masks"),
                                ("params_ratio", report.metric("params_ratio"),
                                 "stored / dense backbone, overheads included")):
            rows.append(report.row(method_label(key), model, dataset, profile, metric, rs, fn,
                                   paper_entry(key, metric, budget), comparable=True, note=how + extra))
    return rows


# --- notebook 04: ResNet-18 on ImageNet (the paper's Table 3), run in the paper profile only -----------

IMAGENET_BUDGET, IMAGENET_RR = 0.7, 0.5   # Table 3: "overall sparsity 0.7" as FBS; the DRL row is Rr = 0.5
# ours, not the paper's (it gives no ImageNet schedule): the CNN phases fine-tune torchvision's published weights with
# Adam at a tenth of the CIFAR-10 lr; the agents keep the paper's lr and width; N1:N2 = 2:1 as the rebuttal's
# CIFAR-10 schedule; 20 x 250 CNN batches of 256 is about one ImageNet epoch, and FBS and FPGM get one epoch to match
IMAGENET = {"batch_size": 256, "lr": 1e-4, "pretrain_batches": 500, "iterations": 20, "agent_batches": 500,
            "cnn_batches": 250, "agent_lr": 1e-6, "hidden": 128, "baseline_epochs": 1}
IMAGENET_KINDS = ("base", "fbs", "fpgm", "drl")


def imagenet(kind: str, seed: int = 0, **overrides) -> RunConfig:
    """A run of the paper's Table 3 (ResNet-18 on ImageNet, profile "paper"): "base", torchvision's
    published ResNet-18 (a `pretrained` run: loads the weights, trains nothing); "fbs", "fpgm" (soft pruning
    of the same 16 convs, sliced at the end) and "drl" (Rr = 0.5) at d = 0.7 from it, with IMAGENET's
    schedule (`overrides` change its values)."""
    from ..config import check_choice

    check_choice("Table 3 run", kind, IMAGENET_KINDS)
    unknown = sorted(set(overrides) - set(IMAGENET))
    if unknown:
        raise ConfigError(f"unknown setting(s) {unknown}; valid: {', '.join(IMAGENET)}")
    p = {**IMAGENET, **overrides}
    base = RunConfig(method="pretrained", model="resnet18", dataset="imagenet", seed=seed, profile="paper",
                     epochs=0, batch_size=p["batch_size"])
    if kind == "base":
        return base
    child = base.replace(parent=base, optimizer="adam", lr=p["lr"])
    if kind in ("fbs", "fpgm"):
        return child.replace(method=kind, epochs=p["baseline_epochs"], args={"budget": IMAGENET_BUDGET})
    schedule = {k: p[k] for k in ("pretrain_batches", "iterations", "agent_batches", "cnn_batches", "agent_lr", "hidden")}
    return child.replace(method="drl_prune", epochs=0, grad_clip=CNN_GRAD_CLIP,
                         args={**schedule, "budget": IMAGENET_BUDGET, "rr": IMAGENET_RR})


def resnet_accounting(budget: float = IMAGENET_BUDGET, rr: float = IMAGENET_RR, hidden: int = IMAGENET["hidden"]) -> dict:
    """ResNet-18 at 224 x 224 by the same counters as `accounting`, no data: dense MACs and parameters;
    the MAC speed-up measured from the masks when the 16 gated convs (the two 3x3 convs of every block)
    keep ceil(d C) channels per input, and by the budget rule; the speed-up if every conv, the residual
    stream included, kept a fraction d of its inputs and outputs (the image excepted: what gating the
    stream too could reach); FBS's stored parameters with gates on the 16 convs and with the three 1x1
    shortcut convs gated as well; DRL's stored parameters at Rr with every static ratio at d (before
    training: the agents then choose their own) and its agent's MACs."""
    import torch

    from ..methods import drl_gates as G
    from ..methods import drl_prune
    from ..methods import fbs
    from ..methods.args import ARGS
    from ..models.drl_nets import build_backbone

    torch.manual_seed(0)
    hw, net = (224, 224), build_backbone("resnet18").eval()
    m, p = G.network_macs(net, hw), G.param_counts(net)
    gated = G.to_gated(net).eval()
    with torch.no_grad():
        gated(torch.rand(1, 3, *hw), policy=lambda t, layer, x: (budget, None))
    measured = m["dense"] / float(G.network_macs(gated, hw)["backbone"].mean())
    everywhere = 0.0
    for conv, _, ihw, i, o in G.sites(net, hw)[0]:
        oh, ow = G.conv_output_hw(conv, ihw)
        r_in = 1.0 if i == G.INPUT else budget
        everywhere += conv.kernel_size[0] * conv.kernel_size[1] * oh * ow * r_in * conv.in_channels * budget * conv.out_channels
    everywhere += budget * net.fc.in_features * net.fc.out_features
    fbs_gates = G.param_counts(fbs.to_fbs(net, budget))["gate"]
    shortcut_gates = sum(b.downsample[0].in_channels * b.downsample[0].out_channels + b.downsample[0].out_channels
                         for b in net.blocks if b.downsample is not None)
    a = {**ARGS["drl_prune"], "rr": rr, "budget": budget, "hidden": hidden}
    drl = drl_prune.build(net, a, hw)
    pc = G.param_counts(drl.gated)
    agent = drl.runtime.inference_params()
    return {"dense_macs": m["dense"], "params": p["backbone"], "gated_convs": len(G.convs_of(net)),
            "budget": budget, "rr": rr, "speedup_measured": measured,
            "speedup_budget_rule": 1 / G.uniform_budget(net, budget, hw), "speedup_everywhere": m["dense"] / everywhere,
            "fbs_params_ratio": (p["backbone"] + fbs_gates) / p["backbone"],
            "fbs_params_ratio_with_shortcuts": (p["backbone"] + fbs_gates + shortcut_gates) / p["backbone"],
            "drl_params_ratio": (pc["total"] + agent) / p["backbone"], "drl_parts": {**pc, "agent": agent},
            "agent_macs_pct": 100 * G.agent_macs(net, hidden, a["encoder_input"]) / m["dense"]}

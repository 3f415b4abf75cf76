"""Command line: `python -m replicate runs` lists records, `python -m replicate run ...` runs one.

Examples:
  python -m replicate runs --profile cpu --method magnitude
  python -m replicate run --method dense --model lenet300-100 --dataset mnist5k --epochs 5 --seed 0
  python -m replicate run --model char-lstm --dataset kjv_char --epochs 2 --grad-clip 0.25
  python -m replicate run --method magnitude --arg schedule=oneshot --arg compression=12 \
      --parent-epochs 5 --epochs 2 --lr 0.001 --dataset mnist5k
"""
from __future__ import annotations

import argparse
import ast
import json
import sys

from .config import ConfigError, RunConfig


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _cmd_runs(a) -> int:
    from .store import Store

    store = Store.for_profile(a.profile)
    n = 0
    print(f"{'key':12}  {'status':6}  {'method':10}  {'model':13}  {'dataset':13}  seed  {'test_acc':>8}  "
          f"{'compr.':>7}  {'wall_s':>7}  args")
    for r in store.records(a.method):
        c = r["config"]
        if c["profile"] != a.profile:
            continue
        m = r["metrics"]
        acc = f"{m['test_acc']:.4f}" if "test_acc" in m else "-"
        comp = f"{m['compression']:.1f}" if "compression" in m else "-"
        print(f"{r['key']:12}  {r['status']:6}  {c['method']:10}  {c['model']:13}  {c['dataset']:13}  "
              f"{c['seed']:4}  {acc:>8}  {comp:>7}  {r['provenance']['wall_time_s']:7.1f}  "
              f"{json.dumps(c['args']) if c['args'] else ''}")
        n += 1
    print(f"{n} record(s) in {store.root} for profile {a.profile}")
    return 0


def _cmd_run(a) -> int:
    from .runner import run

    common = dict(model=a.model, dataset=a.dataset, seed=a.seed, profile=a.profile,
                  batch_size=a.batch_size, optimizer=a.optimizer, momentum=a.momentum,
                  weight_decay=a.weight_decay, train_size=a.train_size, test_size=a.test_size,
                  bptt=a.bptt, grad_clip=a.grad_clip)
    parent = None
    if a.parent_epochs:
        parent = RunConfig(method="dense", epochs=a.parent_epochs, lr=a.parent_lr, **common)
    args = dict(kv.split("=", 1) for kv in a.arg)
    cfg = RunConfig(method=a.method, epochs=a.epochs, lr=a.lr, parent=parent,
                    args={k: _value(v) for k, v in args.items()}, **common)
    cfg.validate()
    rec = run(cfg, fresh=a.fresh)
    out = {"key": rec["key"], "status": rec["status"], "label": cfg.label}
    out.update({k: rec["metrics"][k] for k in ("test_acc", "test_bpc", "test_ppl", "compression", "effective_macs")
                if k in rec["metrics"]})
    print(json.dumps(out, indent=1))
    return 0 if rec["status"] == "ok" else 1


def _cmd_ensure_data(a) -> int:
    """Make sure the datasets of a profile are there, installing the offline ones if possible."""
    import os
    import shutil
    import subprocess

    from . import data, profiles

    prof = profiles.get(a.profile)
    for name in prof.datasets:
        try:
            ds = data.load(name)
            print(f"{name}: {len(ds.x_train)} train / {len(ds.x_test)} test images ({ds.source})")
            continue
        except data.DataNotFound as err:
            first = err
        if name == "fashion_mnist" and shutil.which("apt-get") and os.geteuid() == 0:
            print("fashion_mnist: installing the Debian package dataset-fashion-mnist")
            ok = subprocess.run("apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist",
                                shell=True).returncode == 0
            data._clear_cache()
            if ok:
                try:
                    ds = data.load(name)
                    print(f"{name}: {len(ds.x_train)} train / {len(ds.x_test)} test images ({ds.source})")
                    continue
                except data.DataNotFound:
                    pass
        try:
            print(f"{name}: trying a torchvision download")
            ds = data.load(name, download=True)
            print(f"{name}: {len(ds.x_train)} train / {len(ds.x_test)} test images ({ds.source})")
        except Exception as err:  # noqa: BLE001 - report the first, most useful message
            print(f"error: {name} is not available for the {prof.name} profile: {first} "
                  f"(download also failed: {err.__class__.__name__})", file=sys.stderr)
            return 1
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m replicate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("runs", help="list the records in the store")
    r.add_argument("--profile", default="cpu")
    r.add_argument("--method", default=None)
    x = sub.add_parser("run", help="run one configuration (or read it from the store)")
    x.add_argument("--method", default="dense")
    x.add_argument("--model", default="lenet300-100")
    x.add_argument("--dataset", default="fashion_mnist")
    x.add_argument("--seed", type=int, default=0)
    x.add_argument("--profile", default="cpu")
    x.add_argument("--epochs", type=int, default=10)
    x.add_argument("--lr", type=float, default=0.01)
    x.add_argument("--batch-size", type=int, default=64)
    x.add_argument("--optimizer", default="sgd")
    x.add_argument("--momentum", type=float, default=0.9)
    x.add_argument("--weight-decay", type=float, default=0.0)
    x.add_argument("--train-size", type=int, default=None)
    x.add_argument("--test-size", type=int, default=None)
    x.add_argument("--bptt", type=int, default=None, help="language models: tokens per BPTT window (default 64)")
    x.add_argument("--grad-clip", type=float, default=None, help="clip gradients to this global norm")
    x.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE", help="method argument")
    x.add_argument("--parent-epochs", type=int, default=0,
                   help="train a dense parent for this many epochs first (methods that prune a model)")
    x.add_argument("--parent-lr", type=float, default=0.01)
    x.add_argument("--fresh", action="store_true", help="re-run even if the record exists")
    e = sub.add_parser("ensure-data", help="check (and install where possible) a profile's datasets")
    e.add_argument("--profile", default="cpu")
    a = p.parse_args(argv)
    try:
        return {"runs": _cmd_runs, "run": _cmd_run, "ensure-data": _cmd_ensure_data}[a.cmd](a)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

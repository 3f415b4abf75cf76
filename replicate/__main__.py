"""Command line: `python -m replicate runs` lists records, `show KEY` prints one, `run ...` runs one.

Examples:
  python -m replicate runs --profile cpu --method magnitude
  python -m replicate runs --method dst --model lenet300-100 --where epochs=60 --format csv
  python -m replicate show 9f1c2ab4e0d1
  python -m replicate verify --sample 20          # re-run the 20 cheapest records, compare their metrics
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
from .errors import DataCorrupt, DataNotFound


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


_HEADLINE = ("test_acc", "test_bpc", "test_ppl")


def _matches(value, wanted) -> bool:
    if isinstance(value, (int, float)) and isinstance(wanted, (int, float)) and not isinstance(value, bool):
        return abs(value - wanted) <= 1e-9 * max(1.0, abs(wanted))
    return value == wanted or str(value) == str(wanted)


def _where(text: str, records: list) -> tuple[str, object]:
    """'field=value' -> (field, value); field is a configuration field or a method argument
    (`args.alpha` or plain `alpha`); an unknown field is an error naming the valid ones."""
    import dataclasses

    if "=" not in text:
        raise ConfigError(f"--where takes FIELD=VALUE, got {text!r}")
    field, value = text.split("=", 1)
    fields = [f.name for f in dataclasses.fields(RunConfig)]
    arg_names = sorted({k for r in records for k in r["config"].get("args", {})})
    name = field[5:] if field.startswith("args.") else field
    if field not in fields and name not in arg_names:
        raise ConfigError(f"unknown field {field!r} for --where; configuration fields: {', '.join(fields)}; "
                          f"method arguments in these records: {', '.join(arg_names) or 'none'}")
    return field, _value(value)


def _field(config: dict, field: str):
    if field.startswith("args."):
        return config.get("args", {}).get(field[5:], None)
    if field in config:
        return config[field]
    return config.get("args", {}).get(field, None)


def _row(r: dict) -> dict:
    c, m = r["config"], r["metrics"]
    headline = next((k for k in _HEADLINE if k in m), None)
    parent = RunConfig.from_dict(c["parent"]).key if c.get("parent") else ""
    return {"key": r["key"], "status": r["status"], "method": c["method"], "model": c["model"], "dataset": c["dataset"],
            "seed": c["seed"], "profile": c["profile"], "epochs": c["epochs"], "lr": c["lr"], "parent": parent,
            "metric": headline or "", "value": m.get(headline) if headline else None,
            "compression": m.get("compression"), "wall_s": r["provenance"].get("wall_time_s"),
            "args": json.dumps(c["args"], sort_keys=True) if c["args"] else ""}


def _select(a) -> tuple[list, object]:
    from .store import Store
    from .errors import check_choice
    from .methods.args import ARGS

    if a.method is not None:
        check_choice("method", a.method, sorted(ARGS))
    store = Store.for_profile(a.profile)
    records = [r for r in store.records(a.method) if r["config"]["profile"] == a.profile]
    if a.model is not None:
        check_choice("model", a.model, sorted({r["config"]["model"] for r in records}) or ["(no records)"])
    if a.dataset is not None:
        check_choice("dataset", a.dataset, sorted({r["config"]["dataset"] for r in records}) or ["(no records)"])
    conds = [(f, v) for f, v in (("model", a.model), ("dataset", a.dataset), ("seed", a.seed)) if v is not None]
    conds += [_where(w, records) for w in a.where]
    out = []
    for r in records:
        if a.status is not None and r["status"] != a.status:
            continue
        if all(_matches(_field(r["config"], f), v) for f, v in conds):
            out.append(r)
    return out, store


def _cmd_runs(a) -> int:
    records, store = _select(a)
    rows = [_row(r) for r in records]
    if a.format == "json":
        print(json.dumps(rows, indent=1))
    elif a.format == "csv":
        import csv
        w = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["key"])
        w.writeheader()
        w.writerows(rows)
    else:
        fmt = "{key:12}  {status:6}  {method:14}  {model:13}  {dataset:13}  {seed:>4}  {epochs:>6}  {lr:>8}  {parent:12}  {value:>8}  {compression:>7}  {wall_s:>7}  {args}"
        print(fmt.format(key="key", status="status", method="method", model="model", dataset="dataset", seed="seed",
                         epochs="epochs", lr="lr", parent="parent", value="metric", compression="compr.",
                         wall_s="wall_s", args="args"))
        for r in rows:
            print(fmt.format(**{**r, "lr": f"{r['lr']:g}", "parent": r["parent"] or "-",
                                "value": "-" if r["value"] is None else f"{r['value']:.4f}",
                                "compression": "-" if r["compression"] is None else f"{r['compression']:.1f}",
                                "wall_s": "-" if r["wall_s"] is None else f"{r['wall_s']:.1f}"}))
        print(f"{len(rows)} record(s) in {store.root.name}/ for profile {a.profile}"
              + ("; metric is each record's headline test metric (accuracy, bits per character or perplexity)" if rows else ""))
    return 0


def _find(key: str):
    """(record, store) holding `key` (or a unique prefix of at least 6 characters), in any profile's store."""
    from .store import Store

    if len(key) < 6:
        raise ConfigError(f"give at least 6 characters of a run key, got {key!r}")
    found = []
    for profile in ("cpu", "smoke"):
        store = Store.for_profile(profile)
        for path in store.root.rglob(f"*_{key}*.json") if store.root.exists() else []:
            found.append((store._read(path), store))
    keys = {r["key"] for r, _ in found}
    if not found:
        raise ConfigError(f"no stored run with key {key!r} (python -m replicate runs lists them)")
    if len(keys) > 1:
        raise ConfigError(f"key prefix {key!r} is ambiguous: {', '.join(sorted(keys))}")
    return found[0]


def _cmd_show(a) -> int:
    record, store = _find(a.key)
    if a.json:
        print(json.dumps(record, indent=1, sort_keys=True))
        return 0
    cfg = RunConfig.from_dict(record["config"])
    print(f"run {cfg.label}  key {record['key']}  status {record['status']}")
    print(f"record: {store.root.name}/{store.path(cfg).relative_to(store.root)}")
    print("\nconfiguration:")
    for k, v in cfg.to_dict().items():
        if k not in ("parent",) and v not in (None, {}, [], ()):
            print(f"  {k}: {json.dumps(v) if isinstance(v, (dict, list)) else v}")
    print("\nlineage (this run, then each parent):")
    c, depth = cfg, 0
    while c is not None:
        have = store.get(c) is not None
        print(f"  {'  ' * depth}{c.label}  {c.key}  {'stored' if have else 'not stored'}")
        c, depth = c.parent, depth + 1
    print("\nmetrics:")
    for k, v in record["metrics"].items():
        if isinstance(v, (int, float, str)) or v is None:
            print(f"  {k}: {v}")
        else:
            print(f"  {k}: ({type(v).__name__} of {len(v)}; --json shows it)")
    print(f"  history: {len(record['history'])} epochs" + (f"; failed in epoch {record.get('failed_epoch')}: {record.get('error')}"
                                                            if record["status"] != "ok" else ""))
    from .report import metric_notes
    for note in metric_notes(record):
        print(f"  note: {note}")
    print("\nprovenance:")
    for k, v in record["provenance"].items():
        print(f"  {k}: {v}")
    return 0


def _cmd_verify(a) -> int:
    from . import verify
    from .store import Store

    store = Store.for_profile(a.profile)
    records = verify.choose(store, a.profile, a.keys, a.sample)
    if not records:
        print(f"no records of profile {a.profile} to verify", file=sys.stderr)
        return 2
    rows = verify.verify(records, store, progress=lambda m: print(m, file=sys.stderr, flush=True))
    if a.format == "json":
        print(json.dumps(rows, indent=1))
    else:
        print(f"{'key':12}  {'metric':11}  {'stored':>10}  {'re-run':>10}  {'diff':>10}  {'group std':>9}  n  verdict")
        for r in rows:
            std = "-" if r["group_std"] is None else f"{r['group_std']:.4g}"
            print(f"{r['key']:12}  {r['metric']:11}  {r['stored']:10.6g}  {r['rerun']:10.6g}  {r['diff']:10.3g}  "
                  f"{std:>9}  {r['group_n']}  {r['verdict']}")
    outside = [r for r in rows if r["verdict"] == "OUTSIDE"]
    exact = sum(r["verdict"] == "exact" for r in rows)
    print(f"{len(records)} record(s), {len(rows)} metric(s): {exact} exact, {len(rows) - exact - len(outside)} within "
          f"twice the seeds' spread, {len(outside)} outside", file=sys.stderr)
    return 1 if outside else 0


def _cmd_run(a) -> int:
    from .runner import run

    common = dict(model=a.model, dataset=a.dataset, seed=a.seed, profile=a.profile,
                  batch_size=a.batch_size, optimizer=a.optimizer, momentum=a.momentum,
                  weight_decay=a.weight_decay, train_size=a.train_size, test_size=a.test_size,
                  bptt=a.bptt, grad_clip=a.grad_clip)
    parent = None
    if a.parent_epochs:
        parent = RunConfig(method="dense", epochs=a.parent_epochs, lr=a.parent_lr, **common)
    bad = [kv for kv in a.arg if "=" not in kv or not kv.split("=", 1)[0]]
    if bad:
        raise ConfigError(f"method arguments are KEY=VALUE, got {', '.join(map(repr, bad))}")
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


def _unit(ds) -> str:
    return "tokens" if getattr(ds, "task", "") == "language_model" else "images"


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
            print(f"{name}: {len(ds.x_train)} train / {len(ds.x_test)} test {_unit(ds)} ({ds.source})")
            continue
        except data.DataNotFound as err:
            first = err
        debian = {"fashion_mnist": "dataset-fashion-mnist", "kjv_char": "bible-kjv bible-kjv-text"}
        if name in debian and shutil.which("apt-get") and os.geteuid() == 0:
            print(f"{name}: installing the Debian package(s) {debian[name]}")
            ok = subprocess.run(f"apt-get update -qq && apt-get install -y -qq {debian[name]}",
                                shell=True).returncode == 0
            data._clear_cache()
            if ok:
                try:
                    ds = data.load(name)
                    print(f"{name}: {len(ds.x_train)} train / {len(ds.x_test)} test {_unit(ds)} ({ds.source})")
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
    r = sub.add_parser("runs", help="list the records in the store (filters combine)")
    r.add_argument("--profile", default=None, choices=("smoke", "cpu", "paper"), help="default: REPLICATE_PROFILE, else cpu")
    r.add_argument("--method", default=None)
    r.add_argument("--model", default=None)
    r.add_argument("--dataset", default=None)
    r.add_argument("--seed", type=int, default=None)
    r.add_argument("--status", default=None, choices=("ok", "failed"))
    r.add_argument("--where", action="append", default=[], metavar="FIELD=VALUE",
                   help="any configuration field or method argument, e.g. --where epochs=60 --where alpha=5e-4")
    r.add_argument("--format", default="table", choices=("table", "csv", "json"))
    sh = sub.add_parser("show", help="one record: configuration, lineage, metrics, provenance")
    sh.add_argument("key", help="a run key (or a unique prefix of 6+ characters)")
    sh.add_argument("--json", action="store_true", help="the whole record as JSON")
    x = sub.add_parser("run", help="run one configuration (or read it from the store)")
    x.add_argument("--method", default="dense")
    x.add_argument("--model", default="lenet300-100")
    x.add_argument("--dataset", default="fashion_mnist")
    x.add_argument("--seed", type=int, default=0)
    x.add_argument("--profile", default=None, choices=("smoke", "cpu", "paper"), help="default: REPLICATE_PROFILE, else cpu")
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
    v = sub.add_parser("verify", help="re-run stored records in a temporary store and compare their metrics")
    v.add_argument("keys", nargs="*", help="run keys (or unique prefixes); default: the --sample cheapest records")
    v.add_argument("--profile", default=None, choices=("smoke", "cpu", "paper"), help="default: REPLICATE_PROFILE, else cpu")
    v.add_argument("--sample", type=int, default=5, help="how many of the cheapest records (default 5)")
    v.add_argument("--format", default="table", choices=("table", "json"))
    e = sub.add_parser("ensure-data", help="check (and install where possible) a profile's datasets")
    e.add_argument("--profile", default=None, choices=("smoke", "cpu", "paper"), help="default: REPLICATE_PROFILE, else cpu")
    a = p.parse_args(argv)
    try:
        if getattr(a, "profile", "-") is None:
            from .profiles import resolve
            a.profile = resolve(None)     # REPLICATE_PROFILE (checked), else cpu
        return {"runs": _cmd_runs, "show": _cmd_show, "run": _cmd_run, "verify": _cmd_verify,
                "ensure-data": _cmd_ensure_data}[a.cmd](a)
    except (ConfigError, DataNotFound, DataCorrupt) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader went away (`| head`): stop quietly
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())

"""Time notebooks from an empty run store: what `make reproduce-all FRESH=1` costs, measured notebook by notebook.

    python -m replicate.scratch [--workers 2] NOTEBOOK_OR_FOLDER ...      (make time-from-scratch NOTEBOOKS=...)
    python -m replicate.scratch --readme                                  (only rewrite the README's table)

Each notebook is executed in the cpu profile in a throw-away clone of this checkout's HEAD (build/scratch/tree:
committed code only, so a measurement names its commit), with an empty run store, analyses folder and weight
cache of its own: it trains every run it reads and every parent those need, with REPLICATE_WORKERS processes,
exactly as a user with an empty store would. Nothing in this checkout changes except one row per notebook
appended to results/costs/from_scratch.csv (notebook, commit, seconds, runs trained, workers, threads, the
machine's CPU count, date, exit status), and the README's table of them, which sets each measurement beside
the estimate that the committed records give for the same runs (reproduce.schedule_makespan over their
recorded wall times). The clone, its stores and its executed notebooks are deleted afterwards.

A measurement is as good as the machine was idle: run nothing else beside it.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .store import repo_root

FIELDS = ("notebook", "commit", "seconds", "runs_trained", "workers", "threads_per_run", "cpus", "date", "status")
README_START, README_END = "<!-- scratch:begin -->", "<!-- scratch:end -->"


def results_file(root: Path) -> Path:
    return root / "results" / "costs" / "from_scratch.csv"


def _git(root: Path, *args) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True).stdout.strip()


def measure(notebook: str, root: Path, workers: int) -> dict:
    """Execute `notebook` (a path relative to the checkout) from an empty store in a clone of HEAD; its row."""
    base = root / "build" / "scratch"
    tree = base / "tree"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    _git(root, "clone", "--quiet", "--shared", str(root), str(tree))
    commit = _git(tree, "rev-parse", "HEAD")
    store, cache = base / "runs", base / "cache"
    store.mkdir()
    cache.mkdir()
    env = {**os.environ, "PYTHONPATH": str(tree), "REPLICATE_ROOT": str(tree), "REPLICATE_STORE": str(store),
           "REPLICATE_CACHE": str(cache), "REPLICATE_WORKERS": str(workers), "REPLICATE_FRESH": "0",
           "REPLICATE_NO_TRAIN": "0"}
    print(f"{notebook}: from an empty store at {commit[:10]}, {workers} worker(s) ...", file=sys.stderr, flush=True)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "replicate.reproduce", "--profile", "cpu", notebook], cwd=tree,
                          env=env)
    seconds = time.perf_counter() - t
    trained = sum(1 for _ in store.rglob("*.json"))
    row = {"notebook": notebook, "commit": commit, "seconds": round(seconds, 1), "runs_trained": trained,
           "workers": workers, "cpus": os.cpu_count(),
           # notebook.run_all gives each worker process one thread; a single worker trains in the kernel
           "threads_per_run": 1 if workers > 1 else int(env.get("REPLICATE_THREADS") or os.cpu_count() or 1),
           "date": datetime.date.today().isoformat(), "status": "ok" if proc.returncode == 0 else "failed"}
    row["keys"] = sorted(p.stem.rsplit("_", 1)[-1] for p in store.rglob("*.json"))   # <label>_<key>.json
    shutil.rmtree(base, ignore_errors=True)
    return row


def append(root: Path, row: dict) -> None:
    path = results_file(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow(row)


def table(root: Path, store_dir: Path | None = None) -> str:
    """Markdown: the latest measurement of each notebook, beside the estimate the committed records give for the
    same runs (recorded wall times of the runs the measurement trained, scheduled on the same workers)."""
    from .config import RunConfig
    from .reproduce import schedule_makespan
    from .store import Store

    path = results_file(root)
    if not path.exists():
        return "(no measurement yet: `make time-from-scratch NOTEBOOKS=...`)\n"
    rows = {}
    with path.open() as f:
        for r in csv.DictReader(f):
            rows[r["notebook"]] = r                     # the latest row of each notebook
    keys_file = path.with_suffix(".keys")
    keys = {}
    if keys_file.exists():
        for line in keys_file.read_text().splitlines():
            nb, _, ks = line.partition(" ")
            keys[nb] = ks.split()
    records = {r["key"]: r for r in Store(store_dir or root / "results" / "runs").records()}
    parent_of = {}
    for k, r in records.items():
        p = RunConfig.from_dict(r["config"]).parent
        parent_of[k] = p.key if p is not None else None
    out = ["| notebook | commit | runs trained | workers | measured (min) | estimated from the records (min) "
           "| measured / estimated |", "|---|---|---|---|---|---|---|"]
    for nb in sorted(rows):
        r = rows[nb]
        known = [k for k in keys.get(nb, []) if k in records]
        est = None
        if known and len(known) == len(keys.get(nb, [])):
            est = schedule_makespan({k: records[k]["provenance"].get("wall_time_s") or 0.0 for k in known}, parent_of,
                                    int(r["workers"])) / 60
        measured = float(r["seconds"]) / 60
        status = "" if r["status"] == "ok" else f" ({r['status']})"
        out.append(f"| {nb} | `{r['commit'][:8]}` | {r['runs_trained']} | {r['workers']} | {measured:.1f}{status} | "
                   + (f"{est:.1f} | {measured / est:.2f} |" if est else "— | — |"))
    return "\n".join(out) + "\n"


def update_readme(root: Path) -> bool:
    readme = root / "README.md"
    text = readme.read_text()
    if README_START not in text:
        return False
    start, end = text.index(README_START) + len(README_START), text.index(README_END)
    new = text[:start] + "\n" + table(root) + text[end:]
    if new != text:
        readme.write_text(new)
    return new != text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m replicate.scratch", description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="*", help="notebooks or folders")
    ap.add_argument("--workers", type=int, default=int(os.environ.get("REPLICATE_WORKERS", "2")))
    ap.add_argument("--readme", action="store_true", help="only rewrite the README's table from the measurements")
    a = ap.parse_args(argv)
    root = repo_root()
    if not a.readme:
        if not a.paths:
            ap.error("name the notebooks or folders to time (each is executed from an empty store)")
        if _git(root, "status", "--porcelain", "--", "replicate"):
            print("note: the library has uncommitted changes; the measurement runs HEAD's committed code",
                  file=sys.stderr)
        from .reproduce import _notebooks
        for nb in _notebooks(a.paths):
            rel = str(nb.relative_to(root))
            row = measure(rel, root, a.workers)
            append(root, row)
            with results_file(root).with_suffix(".keys").open("a") as f:
                f.write(f"{rel} {' '.join(row['keys'])}\n")
            print(f"  {rel}: {row['seconds'] / 60:.1f} min, {row['runs_trained']} runs trained ({row['status']})",
                  file=sys.stderr, flush=True)
    update_readme(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())

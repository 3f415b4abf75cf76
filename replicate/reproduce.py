"""Execute notebooks with papermill, as `make reproduce-all` does.

    python -m replicate.reproduce [--profile cpu] [--no-train] [--timings] [NOTEBOOK_OR_FOLDER ...]

Each notebook is executed into build/tmp/ and replaces its committed copy only
when it ran to the end, so an interrupted or failing run leaves the committed
notebook as it was (a failed copy is kept under build/failed/ to read).
What is not a result is normalised away (execution timestamps and durations,
split output streams), so re-executing from the store leaves `git status` clean.
Outputs of profiles other than cpu go to build/<profile>/notebooks/.

Progress goes to this terminal, never into the notebooks: per notebook, the runs
it finds in the store and the runs it trains, with a progress bar per training
run; at the end, a summary (notebooks, runs read, runs trained, analyses computed,
timings measured, wall time).

--no-train (REPLICATE_NO_TRAIN=1) makes any training an error: the check that
the committed records alone reproduce every table. --timings (REPLICATE_TIMINGS=1)
measures the live timings again instead of reading the stored ones.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .store import default_store_dir, repo_root

_DROP_NB_META = ("start_time", "end_time", "duration", "exception")



def kernel_manager_class(root: Path):
    """A kernel manager whose kernel talks to this process over local IPC sockets (files under
    build/tmp/) instead of unencrypted TCP on localhost, which ipykernel warns about on every start,
    and that does not interrupt a finished kernel before shutting it down (the interrupt can land
    while the kernel is still idling and logs a KeyboardInterrupt error to the terminal)."""
    from jupyter_client.manager import KernelManager

    class LocalKernelManager(KernelManager):
        def __init__(self, **kw):
            kw.setdefault("transport", "ipc")
            super().__init__(**kw)
            self.ip = str(root / "build" / "tmp" / f"kernel-{os.getpid()}")

        async def _async_interrupt_kernel(self):
            if not self.shutting_down:
                await super()._async_interrupt_kernel()

    return LocalKernelManager

def normalise(nb: dict) -> dict:
    """Strip what changes on every execution without changing a result."""
    pm = nb.get("metadata", {}).get("papermill")
    if isinstance(pm, dict):
        for k in _DROP_NB_META:
            pm.pop(k, None)
    for cell in nb.get("cells", []):
        meta = cell.get("metadata", {})
        meta.pop("papermill", None)
        meta.pop("execution", None)
        if cell.get("cell_type") != "code":
            continue
        merged = []
        for out in cell.get("outputs", []):
            if (out.get("output_type") == "stream" and merged and merged[-1].get("output_type") == "stream"
                    and merged[-1].get("name") == out.get("name")):
                prev = merged[-1]
                text = "".join(prev["text"]) + "".join(out["text"])
                prev["text"] = text.splitlines(keepends=True)
                continue
            merged.append(out)
        cell["outputs"] = merged
    return nb


def _notebooks(args) -> list[Path]:
    root = repo_root()
    found = []
    for a in args or ["notebooks"]:
        p = Path(a)
        p = p if p.is_absolute() else (root / p)
        if p.is_dir():
            found += sorted(q for q in p.rglob("*.ipynb") if ".ipynb_checkpoints" not in q.parts)
        elif p.suffix == ".ipynb" and p.exists():
            found.append(p)
        else:
            raise SystemExit(f"no notebook or folder {a!r}")
    # the template last: it shows the conventions, it holds no paper's result
    return sorted(dict.fromkeys(found), key=lambda q: (q.name.startswith("_"), str(q)))


def _count(d: Path) -> int:
    return sum(1 for _ in d.rglob("*.json")) if d.exists() else 0


def chains_behind(durations: dict, parents: dict) -> tuple:
    """(children {key: [keys]}, behind {key: seconds of the run and its longest chain of descendants}) for the
    runs in `durations`; parents outside `durations` count as done."""
    children: dict = {}
    for k in durations:
        p = parents.get(k)
        if p in durations:
            children.setdefault(p, []).append(k)
    behind: dict = {}

    def walk(k):
        if k not in behind:
            behind[k] = durations[k] + max((walk(c) for c in children.get(k, ())), default=0.0)
        return behind[k]
    for k in durations:
        walk(k)
    return children, behind


def longest_chain(durations: dict, parents: dict) -> float:
    """The longest total duration along a chain of parents (a run cannot start before its parent is done):
    durations {key: seconds}, parents {key: parent key or None}; parents outside `durations` count as done."""
    return max(chains_behind(durations, parents)[1].values(), default=0.0)


def schedule_makespan(durations: dict, parents: dict, workers: int = 2) -> float:
    """Seconds until `workers` processes have run every run in `durations`, a run starting only after its parent
    (parents outside `durations` count as done), each free worker taking the ready run with the longest chain of
    children still behind it (a greedy list schedule: an estimate, not the optimum)."""
    import heapq

    children, behind = chains_behind(durations, parents)
    ready = [(-behind[k], k) for k in durations if parents.get(k) not in durations]
    heapq.heapify(ready)
    running: list = []                   # (finish time, key)
    now, free = 0.0, workers
    while ready or running:
        while ready and free:
            _, k = heapq.heappop(ready)
            heapq.heappush(running, (now + durations[k], k))
            free -= 1
        now, done = heapq.heappop(running)
        free += 1
        for c in children.get(done, ()):
            heapq.heappush(ready, (-behind[c], c))
    return now


def cost_table(per_notebook: dict, store_dir: Path, workers: int = 2) -> str:
    """Markdown: per notebook (in execution order), the runs it read, the recorded single-thread wall time
    of those runs and every parent they need, and the part not already paid by an earlier notebook; then
    two estimates for `workers` processes, from the same recorded times: the notebook alone from an empty
    store (schedule_makespan of all its runs) and its longest chain of parents (no number of workers makes
    it shorter). The last line totals the runs a from-scratch execution trains once each, and `make
    reproduce-all FRESH=1` (notebooks one after another, each training only what earlier ones did not).
    Recorded times come from the runs' provenance (one thread each, on whatever load the machine had then;
    each run's own time, store.own_seconds), not from a timed from-scratch execution."""
    from .config import RunConfig
    from .store import Store, own_seconds

    records = {r["key"]: r for r in Store(store_dir).records()}
    parent_of = {}
    for k, r in records.items():
        parent = RunConfig.from_dict(r["config"]).parent
        parent_of[k] = parent.key if parent is not None else None

    def closure(keys):
        out = set()
        for k in keys:
            r = records.get(k)
            while r is not None and r["key"] not in out:
                out.add(r["key"])
                p = parent_of[r["key"]]
                r = records.get(p) if p is not None else None
        return out

    def seconds(keys):
        return {k: own_seconds(records[k], records.get(parent_of[k])) for k in keys}

    def hours(keys):
        return sum(seconds(keys).values()) / 3600

    lines = [f"| notebook | runs read | runs with parents | recorded hours | new hours (not in an earlier notebook) "
             f"| alone from scratch, {workers} workers (min) | longest chain of parents (min) |",
             "|---|---|---|---|---|---|---|"]
    paid: set = set()
    suite = 0.0
    for nb, keys in per_notebook.items():
        allk = closure(keys)
        new = allk - paid
        paid |= allk
        suite += schedule_makespan(seconds(new), parent_of, workers)
        alone = schedule_makespan(seconds(allk), parent_of, workers)
        lines.append(f"| {nb} | {len(keys)} | {len(allk)} | {hours(allk):.2f} | {hours(new):.2f} | {alone / 60:.0f} "
                     f"| {longest_chain(seconds(allk), parent_of) / 60:.0f} |")
    lines.append(f"| **all, each run once** | | {len(paid)} | | **{hours(paid):.2f}** | **{suite / 3600:.1f} h** "
                 f"(notebooks in order) | {longest_chain(seconds(paid), parent_of) / 60:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m replicate.reproduce", description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="*", help="notebooks or folders (default: notebooks/)")
    ap.add_argument("--profile", default=os.environ.get("REPLICATE_PROFILE", "cpu"), choices=("smoke", "cpu", "paper"))
    ap.add_argument("--no-train", action="store_true", help="any training is an error (REPLICATE_NO_TRAIN=1)")
    ap.add_argument("--timings", action="store_true", help="measure live timings again (REPLICATE_TIMINGS=1)")
    ap.add_argument("--fresh", action="store_true", help="retrain every run once (REPLICATE_FRESH=1)")
    ap.add_argument("--costs", metavar="FILE", default=None,
                    help="write a Markdown table of each notebook's recorded training cost (its runs and their parents, "
                         "from the records' wall times) to FILE")
    a = ap.parse_args(argv)

    import papermill as pm

    root = repo_root()
    notebooks = _notebooks(a.paths)
    env = {"REPLICATE_PROFILE": a.profile, "REPLICATE_NO_TRAIN": "1" if a.no_train else "0",
           "REPLICATE_TIMINGS": "1" if a.timings else "0", "REPLICATE_FRESH": "1" if a.fresh else "0"}
    os.environ.update(env)
    os.environ.pop("REPLICATE_PROGRESS", None)
    if sys.stderr.isatty() or os.environ.get("CI"):
        # the kernel writes its progress here: this process's stderr, not the notebook's output
        os.environ["REPLICATE_PROGRESS_TO"] = f"/proc/{os.getpid()}/fd/2"
    if not os.path.exists(os.environ.get("REPLICATE_PROGRESS_TO", "/nonexistent")):
        os.environ.pop("REPLICATE_PROGRESS_TO", None)
        os.environ["REPLICATE_PROGRESS"] = "0"
    store = default_store_dir(a.profile)
    analyses_dir = store.parent / "analyses" if store.name == "runs" else store.with_name(store.name + "-analyses")
    runs0, an0 = _count(store), _count(analyses_dir)
    from .report import output_root

    tables = output_root(a.profile) / "results" / "tables"
    timing_files = lambda: {p: p.stat().st_mtime for p in tables.glob("*/*_timing.json")}  # noqa: E731
    t0_timings = timing_files()
    t0 = time.perf_counter()
    run_log = root / "build" / "tmp" / "runs-read.log"
    run_log.parent.mkdir(parents=True, exist_ok=True)
    os.environ["REPLICATE_RUN_LOG"] = str(run_log)
    read_all: set = set()
    per_notebook: dict = {}
    km_class = kernel_manager_class(root)
    for i, nb_path in enumerate(notebooks, 1):
        rel = nb_path.relative_to(root)
        out = nb_path if a.profile == "cpu" else root / "build" / a.profile / rel
        tmp = root / "build" / "tmp" / rel
        tmp.parent.mkdir(parents=True, exist_ok=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        print(f"[{i}/{len(notebooks)}] {rel} ({a.profile} profile)", file=sys.stderr, flush=True)
        t = time.perf_counter()
        r0 = _count(store)
        run_log.write_text("")
        try:
            pm.execute_notebook(str(nb_path), str(tmp), cwd=str(nb_path.parent), kernel_name="python3",
                                progress_bar=False, log_output=False, report_mode=False,
                                kernel_manager_class=km_class)
        except BaseException as err:  # noqa: BLE001 - also Ctrl-C: the committed notebook stays as it was
            failed = root / "build" / "failed" / rel
            failed.parent.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                os.replace(tmp, failed)
            print(f"  FAILED after {time.perf_counter() - t:.0f} s: {str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__}"
                  f"\n  {rel} is unchanged; the failed execution is in {failed.relative_to(root)}", file=sys.stderr)
            return 1
        nb = normalise(json.loads(tmp.read_text()))
        meta = nb["metadata"].setdefault("papermill", {})
        meta["input_path"], meta["output_path"] = str(rel), str(out.relative_to(root))
        tmp.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        os.replace(tmp, out)
        read = set(run_log.read_text().split())
        read_all |= read
        per_notebook[str(rel)] = read
        print(f"  done in {time.perf_counter() - t:.0f} s: {len(read)} runs read from the store, {_count(store) - r0} trained",
              file=sys.stderr, flush=True)
    if a.costs:
        Path(a.costs).write_text(cost_table(per_notebook, store))
        print(f"recorded costs per notebook: {a.costs}", file=sys.stderr)
    measured = sum(1 for p, m in timing_files().items() if t0_timings.get(p) != m)
    print(f"{len(notebooks)} notebooks executed ({a.profile} profile) in {time.perf_counter() - t0:.0f} s: "
          f"{len(read_all)} runs read, {_count(store) - runs0} runs trained, {_count(analyses_dir) - an0} analyses computed, "
          f"{measured} timings measured" + ("; training was disabled" if a.no_train else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

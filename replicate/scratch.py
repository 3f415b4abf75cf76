"""Time notebooks from an empty run store: what `make reproduce-all FRESH=1` costs, measured notebook by notebook.

    python -m replicate.scratch [--workers 2] NOTEBOOK_OR_FOLDER ...      (make time-from-scratch NOTEBOOKS=...)
    python -m replicate.scratch --together NOTEBOOK_OR_FOLDER ...         (... TOGETHER=1: one store for all)
    python -m replicate.scratch --readme                                  (only rewrite the README's table)

Each notebook is executed in the cpu profile in a throw-away clone of this checkout's HEAD (build/scratch/tree:
committed code only, so a measurement names its commit), with an empty run store, analyses folder and weight
cache of its own: it trains every run it reads and every parent those need, with REPLICATE_WORKERS processes,
exactly as a user with an empty store would. Nothing in this checkout changes except one row per notebook
appended to results/costs/from_scratch.csv (notebook, commit, seconds, runs trained, workers, threads, the
machine's CPU count, date, exit status), and the README's table of them, which sets each measurement beside
the estimate that the committed records give for the same runs (reproduce.schedule_makespan over their
recorded wall times). The clone, its stores and its executed notebooks are deleted afterwards.

With --together the named notebooks are executed one after another in the same empty store, as `make
reproduce-all FRESH=1` executes them: each row is what that notebook added, given the runs the earlier ones left
(its `after` field names them; all rows of one such measurement share a `group`). Measurements of groups that
share no run add up to what the groups cost together; runs shared across groups are paid once per group, so
a sum over groups is an upper bound.

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

FIELDS = ("notebook", "commit", "seconds", "runs_trained", "workers", "threads_per_run", "cpus", "date", "status",
          "after", "group")
README_START, README_END = "<!-- scratch:begin -->", "<!-- scratch:end -->"
GOAL_MIN = 45            # each notebook's goal from an empty store on 2 cores (minutes)
SUITE_GOAL_MIN = 240     # the whole cpu profile's goal from an empty store on 2 cores (minutes)


def results_file(root: Path) -> Path:
    return root / "results" / "costs" / "from_scratch.csv"


def _git(root: Path, *args) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True).stdout.strip()


def measure(notebook: str, root: Path, workers: int) -> dict:
    """Execute `notebook` (a path relative to the checkout) from an empty store in a clone of HEAD; its row."""
    return measure_together([notebook], root, workers)[0]


def measure_together(notebooks: list, root: Path, workers: int, on_row=None) -> list:
    """Execute `notebooks` one after another in one empty store in a clone of HEAD; one row each, holding
    the seconds that notebook took and the runs it trained beyond those the earlier ones left. `on_row` is
    called with each row as soon as its notebook has finished (an interrupted group keeps what it measured)."""
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
    group = datetime.datetime.now().strftime("%Y-%m-%dT%H:%M:%S") if len(notebooks) > 1 else ""
    rows: list = []
    try:
        for i, notebook in enumerate(notebooks):
            before = _stored_keys(store)
            print(f"{notebook}: from {'an empty store' if not i else 'the store the notebooks before it left'} at "
                  f"{commit[:10]}, {workers} worker(s) ...", file=sys.stderr, flush=True)
            t = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "replicate.reproduce", "--profile", "cpu", notebook],
                                  cwd=tree, env=env)
            seconds = time.perf_counter() - t
            keys = sorted(_stored_keys(store) - before)
            rows.append({"notebook": notebook, "commit": commit, "seconds": round(seconds, 1),
                         "runs_trained": len(keys), "workers": workers, "cpus": os.cpu_count(),
                         # notebook.run_all gives each worker process one thread; one worker trains in the kernel
                         "threads_per_run": 1 if workers > 1 else int(env.get("REPLICATE_THREADS") or os.cpu_count()
                                                                      or 1),
                         "date": datetime.date.today().isoformat(),
                         "status": "ok" if proc.returncode == 0 else "failed",
                         "after": ";".join(notebooks[:i]), "group": group, "keys": keys})
            if on_row is not None:
                on_row(rows[-1])
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return rows


def _stored_keys(store: Path) -> set:
    return {p.stem.rsplit("_", 1)[-1] for p in store.rglob("*.json")}       # <label>_<key>.json


def _label(row: dict) -> str:
    """A row's name in the keys file: the notebook; for a row measured with others in one store, after '@' the
    notebooks run before it there and after '#' its group (so that it never stands for an alone measurement)."""
    after, group = row.get("after") or "", row.get("group") or ""
    return row["notebook"] + (f"@{after.replace(';', ',')}" if after else "") + (f"#{group}" if group else "")


def append(root: Path, row: dict) -> None:
    """One row appended to the measurements (a file written before a field was added gets the new header, its
    rows an empty value there), and the row's run keys to the keys file beside it."""
    path = results_file(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    old = []
    if path.exists():
        with path.open() as f:
            reader = csv.DictReader(f)
            if tuple(reader.fieldnames or ()) != FIELDS:
                old = list(reader)
    if old:
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore", restval="")
            w.writeheader()
            w.writerows(old)
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore", restval="")
        if new:
            w.writeheader()
        w.writerow(row)
    if "keys" in row:
        with path.with_suffix(".keys").open("a") as f:
            f.write(f"{_label(row)} {' '.join(row['keys'])}\n")


def table(root: Path, store_dir: Path | None = None) -> str:
    """Markdown: the latest measurement of each notebook (alone, or after given notebooks in the same store),
    beside the estimate the committed records give for the same runs (recorded wall times of the runs the
    measurement trained, scheduled on the same workers); then each measurement of several notebooks together,
    with its total."""
    from .config import RunConfig
    from .reproduce import schedule_makespan
    from .store import Store, own_seconds

    path = results_file(root)
    if not path.exists():
        return "(no measurement yet: `make time-from-scratch NOTEBOOKS=...`)\n"
    rows = {}
    with path.open() as f:
        for r in csv.DictReader(f):
            rows[_label(r)] = r      # the latest alone row of each notebook; each group's rows are kept apart
    keys_file = path.with_suffix(".keys")
    keys = {}
    if keys_file.exists():
        for line in keys_file.read_text().splitlines():
            label, _, ks = line.partition(" ")
            keys[label] = ks.split()
    records = {r["key"]: r for r in Store(store_dir or root / "results" / "runs").records()}
    parent_of = {}
    for k, r in records.items():
        p = RunConfig.from_dict(r["config"]).parent
        parent_of[k] = p.key if p is not None else None

    def estimate(label, workers):
        want = keys.get(label)
        if want is None or any(k not in records for k in want):
            return None
        return schedule_makespan({k: own_seconds(records[k], records.get(parent_of[k])) for k in want}, parent_of,
                                 workers) / 60

    out = ["| notebook | store at its start | commit | runs trained | workers | measured (min) "
           "| estimated from the records (min) | measured / estimated |", "|---|---|---|---|---|---|---|---|"]
    number = {g: i + 1 for i, g in enumerate(sorted({r.get("group") for r in rows.values()} - {None, ""}))}
    groups: dict = {}
    for label in sorted(rows, key=lambda lb: (rows[lb].get("group") or "", lb)):
        r = rows[label]
        est = estimate(label, int(r["workers"]))
        measured = float(r["seconds"]) / 60
        status = "" if r["status"] == "ok" else f" ({r['status']})"
        before = len(r["after"].split(";")) if r.get("after") else 0
        start = "empty"
        if r.get("group"):
            groups.setdefault(r["group"], []).append((r, est))
            start = (f"empty (first of group {number[r['group']]})" if not before else
                     f"what the {before} notebook{'s' if before > 1 else ''} before it in group "
                     f"{number[r['group']]} left")
        out.append(f"| {r['notebook']} | {start} | `{r['commit'][:8]}` | {r['runs_trained']} | {r['workers']} | "
                   f"{measured:.1f}{status} | " + (f"{est:.1f} | {measured / est:.2f} |" if est else "— | — |"))
    out += ["", _summary(root, rows, keys)]
    for group, members in sorted(groups.items()):
        members.sort(key=lambda m: len(m[0]["after"].split(";")) if m[0].get("after") else 0)
        first = members[0][0]
        total = sum(float(r["seconds"]) for r, _ in members) / 60
        ests = [e for _, e in members]
        est = f"{sum(ests):.1f}" if all(e is not None for e in ests) else "—"
        ok = all(r["status"] == "ok" for r, _ in members)
        out.append(f"\nGroup {number[group]} (one store, notebooks in this order, `{first['commit'][:8]}`, "
                   f"{first['workers']} workers, {group[:10]}): {', '.join(r['notebook'] for r, _ in members)}: "
                   f"**{total:.1f} min** measured{'' if ok else ' (a notebook failed)'}, {est} min estimated from "
                   f"the records.")
    return "\n".join(out) + "\n"


def _summary(root: Path, rows: dict, keys: dict | None = None) -> str:
    """One paragraph under the table: how many of the checkout's notebooks are measured alone (a group's first
    notebook counts: the store was empty at its start), their sum (an upper bound for running them one after
    another in one store), the longest, those above GOAL_MIN, the notebooks measured only after others in one
    store, and the notebooks not measured yet."""
    from .reproduce import _notebooks

    root = root.resolve()
    folder = root / "notebooks"
    every = [q.relative_to(root).as_posix() for q in _notebooks([str(folder)])
             if not q.name.startswith("_")] if folder.is_dir() else []
    alone = {r["notebook"]: r for r in rows.values() if not r.get("group")}
    for r in rows.values():
        if r.get("group") and not r.get("after") and r["notebook"] not in alone:
            alone[r["notebook"]] = r
    after_others = sorted({r["notebook"] for r in rows.values() if r.get("group")} - set(alone))
    minutes = {nb: float(r["seconds"]) / 60 for nb, r in alone.items()}
    if not minutes:
        return "No notebook measured alone yet."
    longest = max(minutes, key=minutes.get)
    over = [f"{nb} ({m:.1f})" for nb, m in sorted(minutes.items()) if m > GOAL_MIN]
    failed = [r["notebook"] for r in alone.values() if r["status"] != "ok"]
    missing = [nb for nb in every if nb not in minutes and nb not in after_others]
    text = (f"Measured alone: {len(minutes)} of {len(every)} notebooks, **{sum(minutes.values()):.1f} min** in all "
            "(each from its own empty store, a group's first notebook included, so a run two of them read is paid "
            "twice: an upper bound for running them one after another in one store); the longest "
            f"{minutes[longest]:.1f} min ({longest}); above the {GOAL_MIN}-minute goal: {', '.join(over) or 'none'}.")
    if failed:
        text += f" Failed: {', '.join(failed)}."

    def by_folder(notebooks):                            # notebooks/<folder>/<number>_<name>.ipynb
        out: dict = {}
        for nb in notebooks:
            folder_name, _, name = nb.removeprefix("notebooks/").rpartition("/")
            out.setdefault(folder_name, []).append(name.split("_", 1)[0])
        return "; ".join(f"{f} {', '.join(n)}" for f, n in out.items())

    if after_others:
        text += (" Measured only after other notebooks in one store (the table gives what each added there): "
                 f"{by_folder(after_others)}.")
    text += f" Not measured yet: {by_folder(missing)}." if missing else " Every notebook is measured."
    return text + "\n\n" + _suite(rows, every, by_folder, keys or {})


def _suite(rows: dict, every: list, by_folder, keys: dict) -> str:
    """The whole suite from measured parts: each group measured together (the latest first; one that shares a
    notebook with a group already taken is left out) and every other notebook's latest alone row. Runs that two
    parts read are trained in each, so the sum is an upper bound for `make reproduce-all FRESH=1` on the same
    workers; with notebooks not covered it is a partial sum and says so. The other way: parts that trained no run
    in common (by the run keys each measurement recorded, on the most workers measured) add up to what the suite
    cannot avoid, those runs being trained in any order (up to the packing of each part's last runs on the
    workers): the largest such sum (`_disjoint`)."""
    groups: dict = {}
    for r in rows.values():
        if r.get("group"):
            groups.setdefault(r["group"], []).append(r)
    covered: set = set()                                 # the notebooks a part already pays for
    parts = []                                           # (measured together?, its rows)
    for g in sorted(groups, reverse=True):
        members = {r["notebook"] for r in groups[g]}
        if not members & covered:
            parts.append((True, groups[g]))
            covered |= members
    for r in rows.values():
        if not r.get("group") and r["notebook"] not in covered:
            parts.append((False, [r]))
            covered.add(r["notebook"])
    if not parts:
        return "The whole suite: nothing measured yet."
    minutes = sum(float(r["seconds"]) for _, rs in parts for r in rs) / 60
    workers = sorted({str(r["workers"]) for _, rs in parts for r in rs})
    failed = any(r["status"] != "ok" for _, rs in parts for r in rs)
    uncovered = [nb for nb in every if nb not in covered]
    n_groups = sum(together for together, _ in parts)
    text = (f"The whole suite from scratch, added up from measured parts ({n_groups} group(s) measured together, "
            f"{len(parts) - n_groups} notebook(s) alone; {' or '.join(workers)} workers): "
            f"**{minutes:.1f} min ({minutes / 60:.1f} h)** for {len(every) - len(uncovered)} of {len(every)} "
            "notebooks. A run that two parts read is trained in each, so this is an upper bound for those notebooks "
            "in one store")
    if failed:
        text += "; a part failed, so its time is not the notebook's whole cost"
    trained = {}                                         # a part's index -> the runs it trained, when recorded
    most = max(int(w) for w in workers)                  # a part timed on fewer workers would overstate a floor
    for i, (_, rs) in enumerate(parts):
        if all(_label(r) in keys and int(r["workers"]) == most for r in rs):
            trained[i] = {k for r in rs for k in keys[_label(r)]}
    taken = _disjoint(trained, {i: sum(float(r["seconds"]) for r in rs) for i, (_, rs) in enumerate(parts)})
    low = sum(float(r["seconds"]) for i in taken for r in parts[i][1]) / 60
    if taken:
        text += (f"; the {len(taken)} parts that trained no run in common add up to **{low:.1f} min "
                 f"({low / 60:.1f} h)**: a floor for the whole suite, which trains all those runs")
    goal = f"the {SUITE_GOAL_MIN}-minute goal for the whole suite"
    floor_over = f" The floor is above {goal}: the suite does not meet it, whatever the rest costs."
    if uncovered:
        return (text + f". Not covered yet: {by_folder(uncovered)}; no total for the suite yet."
                + (floor_over if low > SUITE_GOAL_MIN else ""))
    if minutes <= SUITE_GOAL_MIN:
        return text + f". Every notebook is covered: within {goal}."
    if low > SUITE_GOAL_MIN:
        return text + "." + floor_over.replace(" The floor", " Every notebook is covered; the floor")
    return text + (f". Every notebook is covered: the sum is above {goal} and the floor within it, so whether the suite "
                   "meets it in one store depends on the runs the parts share (measure them together to decide).")


def _disjoint(trained: dict, weight: dict, exact_up_to: int = 14) -> list:
    """The parts (keys of `trained`, each a set of run keys) that share no run with each other and have the
    largest total weight: exhaustive within each group of parts linked by shared runs when it has at most
    `exact_up_to` members, longest first otherwise. Parts that trained nothing are left out."""
    nodes = [i for i in trained if trained[i]]
    linked = {i: {j for j in nodes if j != i and trained[i] & trained[j]} for i in nodes}
    taken, done = [], set()
    for start in nodes:
        if start in done:
            continue
        component, todo = [], [start]
        while todo:                                      # the parts linked to start by shared runs
            i = todo.pop()
            if i not in done:
                done.add(i)
                component.append(i)
                todo.extend(linked[i] - done)
        if len(component) <= exact_up_to:
            best, best_w = [], -1.0
            for mask in range(1 << len(component)):
                chosen = [component[b] for b in range(len(component)) if mask >> b & 1]
                if any(j in linked[i] for i in chosen for j in chosen):
                    continue
                w = sum(weight[i] for i in chosen)
                if w > best_w:
                    best, best_w = chosen, w
        else:
            best, seen = [], set()
            for i in sorted(component, key=lambda i: -weight[i]):
                if not linked[i] & seen:
                    best.append(i)
                    seen.add(i)
        taken += best
    return sorted(taken)


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
    ap.add_argument("--together", action="store_true",
                    help="one empty store for all the named notebooks, executed in order (as make reproduce-all "
                         "FRESH=1 does); each row is what its notebook added")
    ap.add_argument("--readme", action="store_true", help="only rewrite the README's table from the measurements")
    a = ap.parse_args(argv)
    if a.workers < 1:
        ap.error(f"--workers must be at least 1, not {a.workers}")
    root = repo_root()
    if not a.readme:
        if not a.paths:
            ap.error("name the notebooks or folders to time (each is executed from an empty store)")
        if _git(root, "status", "--porcelain", "--", "replicate"):
            print("note: the library has uncommitted changes; the measurement runs HEAD's committed code",
                  file=sys.stderr)
        from .reproduce import _notebooks
        rels = [str(nb.relative_to(root)) for nb in _notebooks(a.paths)]

        def record(row):
            append(root, row)
            print(f"  {row['notebook']}: {row['seconds'] / 60:.1f} min, {row['runs_trained']} runs trained "
                  f"({row['status']})", file=sys.stderr, flush=True)

        for batch in ([rels] if a.together else [[r] for r in rels]):
            measure_together(batch, root, a.workers, on_row=record)
    update_readme(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())

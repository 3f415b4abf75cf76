"""The committed records alone reproduce every notebook: re-executing all of them in the cpu
profile with training forbidden succeeds and changes no committed byte (notebooks, tables,
claims, figures). Runs on a copy of the tracked files, so the checkout is never touched.
`make test` skips it (it takes about 5 minutes); CI runs `make check-store`, the same check on
its fresh clone, and `REPLICATE_CHECK_STORE=1 pytest tests/test_reproduce.py` runs it here."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from replicate.reproduce import normalise

ROOT = Path(__file__).resolve().parent.parent


def _digest(root: Path, parts=("notebooks", "results", "figures")) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for part in parts for p in sorted((root / part).rglob("*")) if p.is_file()}


def test_normalise_strips_execution_noise_and_merges_streams():
    nb = {"metadata": {"papermill": {"start_time": "t", "end_time": "t", "duration": 1.0, "parameters": {}}},
          "cells": [{"cell_type": "code", "metadata": {"papermill": {"duration": 2}, "execution": {"a": 1}, "tags": []},
                     "outputs": [{"output_type": "stream", "name": "stdout", "text": ["a\n"]},
                                 {"output_type": "stream", "name": "stdout", "text": ["b\n"]},
                                 {"output_type": "stream", "name": "stderr", "text": ["c\n"]}]}]}
    out = normalise(nb)
    assert out["metadata"]["papermill"] == {"parameters": {}}
    assert out["cells"][0]["metadata"] == {"tags": []}
    assert [o["name"] for o in out["cells"][0]["outputs"]] == ["stdout", "stderr"]
    assert "".join(out["cells"][0]["outputs"][0]["text"]) == "a\nb\n"


@pytest.mark.skipif(os.environ.get("REPLICATE_CHECK_STORE") != "1",
                    reason="about 5 minutes: set REPLICATE_CHECK_STORE=1 (CI runs `make check-store`, the same check in place)")
def test_every_notebook_reexecutes_from_the_store_without_training(tmp_path, fashion_mnist):
    tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, text=True, check=True).stdout
    if not tracked:
        pytest.skip("not a git checkout")
    copy = tmp_path / "checkout"
    for rel in tracked.split("\0"):
        if rel and (ROOT / rel).is_file():
            (copy / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, copy / rel)
    before = _digest(copy)
    # the committed outputs were made on 2 threads and the CPU; the setup line prints both
    env = {**os.environ, "REPLICATE_ROOT": str(copy), "PYTHONPATH": str(copy), "REPLICATE_WORKERS": "1",
           "REPLICATE_CACHE": str(tmp_path / "no-cache"), "REPLICATE_THREADS": "2", "REPLICATE_DEVICE": "cpu"}
    for k in ("REPLICATE_STORE", "REPLICATE_PROFILE", "REPLICATE_FRESH", "REPLICATE_TIMINGS", "REPLICATE_PROGRESS_TO"):
        env.pop(k, None)
    p = subprocess.run([sys.executable, "-m", "replicate.reproduce", "--profile", "cpu", "--no-train", "notebooks"],
                       cwd=copy, env=env, capture_output=True, text=True, timeout=1800)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "0 runs trained, 0 analyses computed, 0 timings measured" in p.stderr, p.stderr[-1000:]
    after = _digest(copy)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"{len(changed)} committed file(s) changed on re-execution: {changed[:15]}"
    # and no notebook's output mentions training
    for nb in (copy / "notebooks").rglob("*.ipynb"):
        text = json.dumps(json.loads(nb.read_text())["cells"])
        assert "REPLICATE_NO_TRAIN" not in text, nb.name


def test_cost_table_counts_parents_and_each_run_once(tmp_path):
    from replicate import runner
    from replicate.config import RunConfig
    from replicate.reproduce import cost_table
    from replicate.store import default_store_dir

    dense = RunConfig(model="lenet300-100", dataset="mnist5k", epochs=1, train_size=200, test_size=100, profile="smoke")
    child = dense.replace(method="magnitude", parent=dense, args={"schedule": "oneshot", "compression": 2.0})
    rec_c, rec_d = runner.run(child), runner.run(dense)
    table = cost_table({"a.ipynb": {rec_c["key"]}, "b.ipynb": {rec_d["key"]}}, default_store_dir("smoke"))
    rows = [line.split("|")[1:-1] for line in table.splitlines()[2:]]
    hours = lambda *rs: sum(r["provenance"]["wall_time_s"] for r in rs) / 3600  # noqa: E731
    assert rows[0][0].strip() == "a.ipynb" and rows[0][2].strip() == "2"              # its run and the parent
    assert float(rows[0][4]) == round(hours(rec_c, rec_d), 2) and float(rows[1][4]) == 0.0  # b's run was paid by a
    assert rows[2][2].strip() == "2"
    assert rows[0][5].strip() == f"{hours(rec_c, rec_d) * 60:.0f}"          # a child waits for its parent


def test_the_schedule_estimate_respects_parents_and_workers():
    from replicate.reproduce import longest_chain, schedule_makespan
    d = {"a": 10.0, "b": 5.0, "c": 5.0, "d": 4.0, "e": 3.0}
    parents = {"b": "a", "c": "a", "d": "x"}       # x is outside: already done
    assert longest_chain(d, parents) == 15.0
    assert schedule_makespan(d, parents, workers=1) == 27.0                   # one worker: the sum
    # two workers: a (10) with d (4) then e (3, ends at 7); b and c start at 10 and end at 15
    assert schedule_makespan(d, parents, workers=2) == 15.0
    assert schedule_makespan(d, parents, workers=8) == 15.0                   # never below the longest chain
    # the run with the longest chain behind it goes first: b (then c) before a and e, which fill the other worker
    assert schedule_makespan({"a": 4.0, "b": 4.0, "c": 4.0, "e": 4.0}, {"c": "b"}, workers=2) == 8.0
    assert schedule_makespan({"a": 4.0, "e": 4.0, "b": 4.0, "c": 4.0}, {"c": "b"}, workers=2) == 8.0
    assert schedule_makespan({}, {}, workers=2) == 0.0

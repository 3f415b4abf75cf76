"""replicate.scratch: a notebook timed from an empty store in a clone of HEAD, and the README table made
from the measurements beside the committed records' estimate."""
import csv
import subprocess
from pathlib import Path

import pytest

from replicate import scratch
from replicate.reproduce import schedule_makespan
from replicate.store import Store

ROOT = Path(__file__).resolve().parent.parent


def test_the_table_sets_the_latest_measurement_beside_the_records_estimate(tmp_path):
    records = list(Store(ROOT / "results" / "runs").records("dense"))[:3]
    if len(records) < 3:
        pytest.skip("no committed dense records")
    keys = [r["key"] for r in records]
    (tmp_path / "results" / "costs").mkdir(parents=True)
    for row in ({"notebook": "a.ipynb", "seconds": 999, "status": "ok", "workers": 2},
                {"notebook": "a.ipynb", "seconds": 120, "status": "ok", "workers": 2},
                {"notebook": "b.ipynb", "seconds": 60, "status": "failed", "workers": 1}):
        scratch.append(tmp_path, {**row, "commit": "0123456789abcdef", "runs_trained": 3})
    scratch.results_file(tmp_path).with_suffix(".keys").write_text(f"a.ipynb {' '.join(keys)}\nb.ipynb unknownkey\n")
    text = scratch.table(tmp_path, ROOT / "results" / "runs")
    rows = [ln for ln in text.splitlines() if ln.startswith("| a.ipynb") or ln.startswith("| b.ipynb")]
    assert len(rows) == 2
    est = schedule_makespan({r["key"]: r["provenance"].get("wall_time_s") or 0.0 for r in records}, {}, 2) / 60
    assert f"| 2.0 | {est:.1f} | {2.0 / est:.2f} |" in rows[0]           # the latest row of a.ipynb, not 999 s
    assert "1.0 (failed) | — | — |" in rows[1]                            # a key the store lacks: no estimate
    with scratch.results_file(tmp_path).open() as f:
        assert len(list(csv.DictReader(f))) == 3                           # every measurement is kept


def test_without_measurements_the_table_says_how_to_make_them(tmp_path):
    assert "make time-from-scratch" in scratch.table(tmp_path)


def test_a_notebook_timed_from_an_empty_store_trains_every_run_and_leaves_the_checkout_alone(fashion_mnist):
    if subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True).returncode:
        pytest.skip("not a git checkout")
    before = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True, text=True).stdout
    row = scratch.measure("notebooks/_template.ipynb", ROOT, 2)
    assert row["status"] == "ok" and row["seconds"] > 0
    committed = {r["key"] for r in Store(ROOT / "results" / "runs").records()}
    assert row["runs_trained"] == len(row["keys"]) > 0 and set(row["keys"]) <= committed   # the same runs, trained
    assert row["commit"] == subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                                           text=True).stdout.strip()
    after = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True, text=True).stdout
    assert after == before and not (ROOT / "build" / "scratch").exists()

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


@pytest.fixture
def records():
    """Three committed records, whose recorded wall times the tables' estimates are made of."""
    found = list(Store(ROOT / "results" / "runs").records("dense"))[:3]
    if len(found) < 3:
        pytest.skip("no committed dense records")
    return found


def test_the_table_sets_the_latest_measurement_beside_the_records_estimate(tmp_path, records):
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


def test_notebooks_measured_together_are_listed_in_order_with_their_total(tmp_path, records):
    keys = [r["key"] for r in records]
    (tmp_path / "results" / "costs").mkdir(parents=True)
    common = {"commit": "0123456789abcdef", "status": "ok", "workers": 2}
    scratch.append(tmp_path, {**common, "notebook": "a.ipynb", "seconds": 600, "runs_trained": 3, "keys": keys})
    scratch.append(tmp_path, {**common, "notebook": "a.ipynb", "seconds": 120, "runs_trained": 2, "keys": keys[:2],
                              "group": "2026-01-01T00:00:00"})
    scratch.append(tmp_path, {**common, "notebook": "b.ipynb", "seconds": 60, "runs_trained": 1, "keys": keys[2:],
                              "group": "2026-01-01T00:00:00", "after": "a.ipynb"})
    text = scratch.table(tmp_path, ROOT / "results" / "runs")
    lines = text.splitlines()
    alone = [ln for ln in lines if ln.startswith("| a.ipynb | empty |")]
    grouped = [ln for ln in lines if "group 1" in ln]
    assert len(alone) == 1 and "| 10.0 |" in alone[0]        # the group's first row does not replace it
    assert len(grouped) == 2 and "| 2.0 |" in grouped[0] and "before it in group 1" in grouped[1]
    wall = {r["key"]: r["provenance"].get("wall_time_s") or 0.0 for r in records}
    est = (schedule_makespan({k: wall[k] for k in keys[:2]}, {}, 2) + schedule_makespan({keys[2]: wall[keys[2]]}, {},
                                                                                          2)) / 60
    total = [ln for ln in lines if ln.startswith("Group 1")]
    assert len(total) == 1 and "a.ipynb, b.ipynb: **3.0 min** measured" in total[0] and f"{est:.1f} min" in total[0]


def test_a_measurements_file_without_the_newer_fields_keeps_its_rows(tmp_path):
    path = scratch.results_file(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text("notebook,commit,seconds,runs_trained,workers,threads_per_run,cpus,date,status\n"
                    "a.ipynb,abc,10.0,1,2,1,2,2026-01-01,ok\n")
    scratch.append(tmp_path, {"notebook": "b.ipynb", "commit": "abc", "seconds": 5, "runs_trained": 0, "workers": 2,
                              "status": "ok", "after": "a.ipynb", "group": "g"})
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == scratch.FIELDS and [r["notebook"] for r in rows] == ["a.ipynb", "b.ipynb"]
    assert rows[0]["seconds"] == "10.0" and rows[0]["after"] == "" and rows[1]["after"] == "a.ipynb"


def test_without_measurements_the_table_says_how_to_make_them(tmp_path):
    assert "make time-from-scratch" in scratch.table(tmp_path)


def test_a_notebook_timed_from_an_empty_store_trains_every_run_and_leaves_the_checkout_alone(fashion_mnist):
    if subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True).returncode:
        pytest.skip("not a git checkout")
    before = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True, text=True).stdout
    row, again = scratch.measure_together(["notebooks/_template.ipynb"] * 2, ROOT, 2)
    assert row["status"] == "ok" and row["seconds"] > 0 and not row["after"] and row["group"] == again["group"]
    assert again["status"] == "ok" and again["runs_trained"] == 0 and again["after"] == "notebooks/_template.ipynb"
    committed = {r["key"] for r in Store(ROOT / "results" / "runs").records()}
    assert row["runs_trained"] == len(row["keys"]) > 0 and set(row["keys"]) <= committed   # the same runs, trained
    assert row["commit"] == subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                                           text=True).stdout.strip()
    after = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True, text=True).stdout
    assert after == before and not (ROOT / "build" / "scratch").exists()


def test_the_summary_adds_the_alone_rows_and_names_what_is_over_the_goal_or_not_measured(tmp_path):
    for name in ("a", "b", "c", "d", "_template"):
        path = tmp_path / "notebooks" / "x" / f"{name}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    common = {"commit": "0123456789abcdef", "status": "ok", "workers": 2, "runs_trained": 1}
    scratch.append(tmp_path, {**common, "notebook": "notebooks/x/a.ipynb", "seconds": 50 * 60})
    scratch.append(tmp_path, {**common, "notebook": "notebooks/x/b.ipynb", "seconds": 10 * 60})
    scratch.append(tmp_path, {**common, "notebook": "notebooks/x/c.ipynb", "seconds": 99 * 60, "group": "g",
                              "after": "notebooks/x/b.ipynb"})
    text = scratch.table(tmp_path, tmp_path / "no-store")
    line = next(ln for ln in text.splitlines() if ln.startswith("Measured alone"))
    assert "2 of 4 notebooks, **60.0 min**" in line                   # a row after others in a group is not alone
    assert "the longest 50.0 min (notebooks/x/a.ipynb)" in line
    assert "goal: notebooks/x/a.ipynb (50.0)." in line and "Not measured yet: x d." in line
    assert "Measured only after other notebooks in one store (the table gives what each added there): x c." in line
    scratch.append(tmp_path, {**common, "notebook": "notebooks/x/d.ipynb", "seconds": 7 * 60, "group": "h"})
    line = next(ln for ln in scratch.table(tmp_path, tmp_path / "no-store").splitlines()
                if ln.startswith("Measured alone"))
    assert "3 of 4 notebooks, **67.0 min**" in line                   # a group's first notebook started from empty
    assert "x c." in line and "Not measured yet" not in line
    scratch.append(tmp_path, {**common, "notebook": "notebooks/x/a.ipynb", "seconds": 30 * 60})
    scratch.append(tmp_path, {**common, "notebook": "notebooks/x/c.ipynb", "seconds": 5 * 60})
    line = next(ln for ln in scratch.table(tmp_path, tmp_path / "no-store").splitlines()
                if ln.startswith("Measured alone"))
    assert "4 of 4 notebooks, **52.0 min**" in line and "goal: none." in line and "Every notebook is measured." in line
    scratch.append(tmp_path, {**common, "notebook": "notebooks/x/b.ipynb", "seconds": 60, "status": "failed"})
    line = next(ln for ln in scratch.table(tmp_path, tmp_path / "no-store").splitlines()
                if ln.startswith("Measured alone"))
    assert "Failed: notebooks/x/b.ipynb." in line                      # the latest row of b failed


def test_the_suite_total_adds_each_group_once_and_the_other_notebooks_alone(tmp_path, monkeypatch):
    for name in ("1_a", "2_b", "3_c", "4_d"):
        path = tmp_path / "notebooks" / "x" / f"{name}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    common = {"commit": "0123456789abcdef", "status": "ok", "workers": 2, "runs_trained": 1}

    def suite():
        return next(ln for ln in scratch.table(tmp_path, tmp_path / "no-store").splitlines()
                    if ln.startswith("The whole suite"))

    scratch.append(tmp_path, {**common, "notebook": "notebooks/x/1_a.ipynb", "seconds": 20 * 60, "keys": ["k1"]})
    assert "**20.0 min (0.3 h)** for 1 of 4 notebooks" in suite() and "Not covered yet: x 2, 3, 4" in suite()
    older = {**common, "group": "2026-01-01T00:00:00"}                   # b then c in one store, an older group
    scratch.append(tmp_path, {**older, "notebook": "notebooks/x/2_b.ipynb", "seconds": 30 * 60})
    scratch.append(tmp_path, {**older, "notebook": "notebooks/x/3_c.ipynb", "seconds": 5 * 60,
                              "after": "notebooks/x/2_b.ipynb"})
    scratch.append(tmp_path, {**common, "notebook": "notebooks/x/2_b.ipynb", "seconds": 50 * 60,    # b alone
                              "keys": ["k2", "k3"]})
    scratch.append(tmp_path, {**common, "notebook": "notebooks/x/4_d.ipynb", "seconds": 100 * 60})
    line = suite()                          # a + group(b, c) + d: b's alone row is not added beside its group
    assert "(1 group(s) measured together, 2 notebook(s) alone; 2 workers): **155.0 min (2.6 h)** for 4 of 4" in line
    assert "within the 240-minute goal" in line
    newer = {**common, "group": "2026-02-01T00:00:00"}                   # a newer group with c, d: the older one
    scratch.append(tmp_path, {**newer, "notebook": "notebooks/x/3_c.ipynb", "seconds": 200 * 60,  # shares c, so
                              "keys": ["k3"]})
    scratch.append(tmp_path, {**newer, "notebook": "notebooks/x/4_d.ipynb", "seconds": 1 * 60,     # b is alone
                              "after": "notebooks/x/3_c.ipynb", "keys": ["k4"]})
    line = suite()                                                     # group(c, d) 201 + a 20 + b 50
    assert "**271.0 min (4.5 h)** for 4 of 4" in line and "above the 240-minute goal" in line
    assert "the 2 parts that trained no run in common add up to **221.0 min" in line    # b shares k3 with c
    assert "the sum is above the 240-minute goal for the whole suite and the floor within it" in line
    monkeypatch.setattr(scratch, "SUITE_GOAL_MIN", 300)
    assert "within the 300-minute goal" in suite()
    monkeypatch.setattr(scratch, "SUITE_GOAL_MIN", 200)                  # the floor (221) is above it
    assert "Every notebook is covered; the floor is above the 200-minute goal" in suite()
    (tmp_path / "notebooks" / "x" / "5_e.ipynb").write_text("{}")       # not measured: no total, a verdict still
    line = suite()
    assert "Not covered yet: x 5; no total" in line and "the suite does not meet it, whatever the rest costs" in line
    monkeypatch.setattr(scratch, "SUITE_GOAL_MIN", 240)
    assert "whatever the rest costs" not in suite()
    scratch.append(tmp_path, {**common, "notebook": "notebooks/x/5_e.ipynb", "seconds": 500 * 60, "workers": 1,
                              "keys": ["k9"]})                      # one worker: in the sum, not in the floor
    line = suite()
    assert "1 or 2 workers): **771.0 min" in line and "add up to **221.0 min" in line


def test_the_disjoint_parts_are_the_heaviest_set_that_shares_no_run():
    trained = {0: {"x", "y"}, 1: {"x"}, 2: {"y"}, 3: {"z"}, 4: set()}
    weight = {0: 40.0, 1: 37.0, 2: 36.0, 3: 1.0, 4: 99.0}
    assert scratch._disjoint(trained, weight) == [1, 2, 3]                 # 37 + 36 beats 40 (0 shares with both)
    assert scratch._disjoint(trained, weight, exact_up_to=0) == [0, 3]     # longest first, above the exact size

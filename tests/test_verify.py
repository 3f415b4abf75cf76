"""`python -m replicate verify`: stored records re-run in a temporary store, each metric judged
against the seeds' spread; and the README's headline tables agree with results/."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import replicate
from replicate import report, verify
from replicate.config import RunConfig
from replicate.store import Store

ROOT = Path(__file__).resolve().parent.parent
SMALL = dict(model="lenet300-100", dataset="mnist5k", train_size=300, test_size=100, epochs=1)


def test_judge_reaches_every_verdict():
    assert verify.judge(0.9, 0.9, 0.01) == "exact"
    assert verify.judge(0.9, 0.915, 0.01) == "within spread"
    assert verify.judge(0.9, 0.95, 0.01) == "OUTSIDE"
    assert verify.judge(1.0, 1.01, None) == "OUTSIDE"      # no spread to compare with


def test_verify_replays_records_and_flags_one_that_was_edited():
    store = Store.for_profile("cpu")
    for s in (0, 1, 2):
        replicate.run(RunConfig(**SMALL, seed=s))
    rows = verify.verify(verify.choose(store, "cpu", sample=3), store, progress=lambda m: None)
    assert {r["verdict"] for r in rows} == {"exact"}
    # a record whose accuracy was changed by hand no longer replays
    cfg = RunConfig(**SMALL, seed=0)
    rec = store.get(cfg)
    rec["metrics"]["test_acc"] += 0.2
    store.put({k: v for k, v in rec.items() if k not in ("key", "checksum", "schema")})
    rows = verify.verify([store.get(cfg)], store, progress=lambda m: None)
    assert [r["verdict"] for r in rows if r["metric"] == "test_acc"] == ["OUTSIDE"]
    assert os.environ.get("REPLICATE_STORE", "").endswith("runs")   # the environment is restored


def test_verify_cli_exit_status(tmp_path):
    replicate.run(RunConfig(**SMALL))
    p = subprocess.run([sys.executable, "-m", "replicate", "verify", "--sample", "1", "--format", "json"],
                       capture_output=True, text=True, env=os.environ.copy(), timeout=600)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)[0]["verdict"] == "exact"
    bad = subprocess.run([sys.executable, "-m", "replicate", "verify", "ffffffffffff"], capture_output=True, text=True,
                         env=os.environ.copy(), timeout=300)
    assert bad.returncode == 2 and "matches 0 record" in bad.stderr


@pytest.mark.skipif(not (ROOT / "results" / "runs").exists(), reason="no committed store")
def test_the_cheapest_committed_records_replay(tmp_path, monkeypatch):
    """A small sample of the committed store re-run here: every metric within the seeds' spread."""
    monkeypatch.setenv("REPLICATE_STORE", str(ROOT / "results" / "runs"))   # read only: verify writes to a temp store
    store = Store(ROOT / "results" / "runs")
    rows = verify.verify(verify.choose(store, "cpu", sample=2), store, progress=lambda m: None)
    assert rows and all(r["verdict"] != "OUTSIDE" for r in rows), rows


def test_readme_headline_is_the_one_results_give():
    text = (ROOT / "README.md").read_text()
    start = text.index(report.HEADLINE_START) + len(report.HEADLINE_START)
    end = text.index(report.HEADLINE_END)
    assert text[start:end].strip() == report.headline_table().strip(), "run `make reproduce-all` (or report.update_readme())"

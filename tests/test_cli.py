import json
import os
import subprocess
import sys

import pytest


def cli(*args):
    return subprocess.run([sys.executable, "-m", "replicate", *args], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=300)


def test_run_then_list():
    r = cli("run", "--dataset", "mnist5k", "--epochs", "1", "--train-size", "300", "--test-size", "100")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["status"] == "ok" and 0 <= out["test_acc"] <= 1
    listing = cli("runs", "--profile", "cpu")
    assert out["key"] in listing.stdout and "1 record(s)" in listing.stdout


def test_bad_name_is_a_one_line_error():
    r = cli("run", "--dataset", "imagenet21k")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0
    assert "valid: mnist, fashion_mnist, mnist5k, cifar10, svhn" in r.stderr


def test_runs_filters_formats_and_show_with_lineage():
    base = ("--dataset", "mnist5k", "--epochs", "1", "--train-size", "300", "--test-size", "100")
    a = json.loads(cli("run", *base, "--seed", "0").stdout)
    b = json.loads(cli("run", *base, "--seed", "1").stdout)
    c = cli("run", "--method", "magnitude", "--arg", "schedule=oneshot", "--arg", "compression=4", "--parent-epochs", "1",
            *base, "--lr", "0.001")
    assert c.returncode == 0, c.stderr
    pruned = json.loads(c.stdout)

    rows = json.loads(cli("runs", "--method", "dense", "--seed", "1", "--format", "json").stdout)
    assert [r["key"] for r in rows] == [b["key"]]
    assert {"epochs", "lr", "parent", "status", "metric", "value"} <= set(rows[0])
    rows = json.loads(cli("runs", "--where", "args.compression=4", "--format", "json").stdout)
    assert [r["key"] for r in rows] == [pruned["key"]] and rows[0]["parent"]
    csv_out = cli("runs", "--where", "epochs=1", "--format", "csv").stdout.splitlines()
    assert csv_out[0].startswith("key,status,method") and len(csv_out) == 1 + 3   # 2 dense (seed 0 is also the parent) + 1 pruned

    bad = cli("runs", "--where", "alphaa=1")
    assert bad.returncode == 2 and "unknown field 'alphaa'" in bad.stderr and "epochs" in bad.stderr
    assert cli("runs", "--method", "nosuch").returncode == 2

    shown = cli("show", pruned["key"])
    assert shown.returncode == 0, shown.stderr
    assert "lineage" in shown.stdout and rows[0]["parent"] in shown.stdout and "provenance" in shown.stdout
    assert json.loads(cli("show", a["key"][:8], "--json").stdout)["key"] == a["key"]
    assert cli("show", "ffffffffffff").returncode == 2


def test_runs_into_a_closed_pipe_is_quiet():
    cli("run", "--dataset", "mnist5k", "--epochs", "1", "--train-size", "300", "--test-size", "100")
    p = subprocess.run(f"'{sys.executable}' -m replicate runs --format json | head -c 1", shell=True,
                       capture_output=True, text=True, env=os.environ.copy(), timeout=300)
    assert "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr


@pytest.mark.parametrize("args, says", [
    (["--method", "magnitude", "--arg", "compression=abc", "--parent-epochs", "1"], "bad argument for method 'magnitude'"),
    (["--method", "magnitude", "--arg", "compression"], "KEY=VALUE"),
    (["--dataset", "mnist5k", "--train-size", "999999"], "n_train=999999 must be between 0 and 4000"),
    (["--dataset", "mnist5k", "--train-size", "0"], "train_size must be a positive number"),
    (["--dataset", "mnist5k", "--seed", "-1"], "seed must be a non-negative integer"),
    (["--profile", "fast"], "invalid choice: 'fast'"),
])
def test_bad_run_inputs_are_one_line_errors_and_store_nothing(args, says, tmp_path):
    r = cli("run", "--epochs", "1", *args)
    assert r.returncode == 2, r.stderr
    assert says in r.stderr and "Traceback" not in r.stderr
    assert not list((tmp_path / "runs").rglob("*.json"))


def test_missing_dataset_is_a_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setenv("REPLICATE_DATA", str(tmp_path / "empty"))
    r = cli("run", "--dataset", "mnist", "--epochs", "1")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "not found" in r.stderr


def test_cli_takes_the_profile_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("REPLICATE_PROFILE", "smoke")
    out = json.loads(cli("run", "--dataset", "mnist5k", "--epochs", "1", "--train-size", "100", "--test-size", "50").stdout)
    assert out["label"].endswith("-smoke-s0")
    monkeypatch.setenv("REPLICATE_PROFILE", "fast")
    r = cli("runs")
    assert r.returncode == 2 and "unknown profile" in r.stderr and "Traceback" not in r.stderr

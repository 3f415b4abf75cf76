import json
import os
import subprocess
import sys


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

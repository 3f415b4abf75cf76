"""The layering the architecture relies on, and the committed run keys, pinned.

* Computing a run key or a record's path imports no method implementation, no
  study, no notebook helper, and nothing beyond the standard library (so a
  method's heavy dependencies never become dependencies of the store).
* Every committed record under results/runs/ still has the key its configuration
  hashes to, sits at the path the store computes for it, and passes its checksum:
  a refactor that changed a key or a default would orphan stored runs.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from replicate.config import RunConfig
from replicate.store import Store, _checksum

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "results" / "runs"

_PROBE = """
import sys
from replicate.config import RunConfig
from replicate.store import Store
p = RunConfig(dataset="mnist5k", epochs=2)
c = p.replace(method="dst", parent=None, args={"alpha": 1e-3})
m = RunConfig(method="magnitude", parent=p, args={"compression": 4.0})
Store("unused").path(c); Store("unused").path(m); c.canonical(); m.key
print("\\n".join(sorted(sys.modules)))
"""


def test_keys_and_store_paths_import_no_implementation():
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout.split()
    ours = {m for m in out if m.startswith("replicate")}
    allowed = {"replicate", "replicate.errors", "replicate.config", "replicate.store",
               "replicate.methods", "replicate.methods.base", "replicate.methods.args"}
    assert ours <= allowed, f"computing a key imported {sorted(ours - allowed)}"
    third_party = {m.split(".")[0] for m in out} & {"torch", "numpy", "pandas", "matplotlib", "scipy",
                                                    "tqdm", "mlxtend", "transformers", "sru"}
    assert not third_party, f"computing a key imported {sorted(third_party)}"


_LAZY = """
import sys
from replicate.methods import get_method
before = "replicate.methods.dst" in sys.modules
m = get_method("dst")
print(before, "replicate.methods.dst" in sys.modules, m.name, m.defaults["alpha"])
"""


def test_get_method_loads_its_module_on_demand():
    out = subprocess.run([sys.executable, "-c", _LAZY], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout.split()
    assert out == ["False", "True", "dst", "0.0005"]
    from replicate.methods import get_method, method_names

    for name in method_names():
        assert get_method(name).name == name


def _committed():
    return sorted(RUNS.rglob("*.json")) if RUNS.exists() else []


@pytest.mark.skipif(not _committed(), reason="no committed run records")
def test_every_committed_record_keeps_its_key_path_and_checksum():
    store = Store(RUNS)
    bad = []
    for path in _committed():
        rec = json.loads(path.read_text())
        cfg = RunConfig.from_dict(rec["config"])
        if cfg.key != rec["key"]:
            bad.append(f"{path.relative_to(ROOT)}: config hashes to {cfg.key}, record says {rec['key']}")
        elif store.path(cfg) != path:
            bad.append(f"{path.relative_to(ROOT)}: the store would look for it at {store.path(cfg).name}")
        elif _checksum(rec) != rec["checksum"]:
            bad.append(f"{path.relative_to(ROOT)}: checksum mismatch")
    assert not bad, f"{len(bad)} committed record(s) no longer match:\n" + "\n".join(bad[:20])


ANALYSES = ROOT / "results" / "analyses"


@pytest.mark.skipif(not (ANALYSES.exists() and any(ANALYSES.rglob("*.json"))), reason="no committed analyses")
def test_every_committed_analysis_belongs_to_a_committed_run_record():
    """An analysis record is used only while its run record is the one it was computed from:
    each must name a committed run, carry that record's checksum and its own valid checksum,
    and sit at the path its key gives."""
    from replicate import analyses
    store = Store(RUNS)
    bad = []
    for path in sorted(ANALYSES.rglob("*.json")):
        rec = json.loads(path.read_text())
        runs = list(RUNS.rglob(f"*_{rec['run_key']}.json"))
        if len(runs) != 1:
            bad.append(f"{path.name}: no committed run {rec['run_key']}")
            continue
        run = json.loads(runs[0].read_text())
        cfg = RunConfig.from_dict(run["config"])
        if rec["run_checksum"] != run["checksum"]:
            bad.append(f"{path.name}: computed from another version of run {rec['run_key']}")
        elif _checksum(rec) != rec["checksum"]:
            bad.append(f"{path.name}: checksum mismatch")
        elif analyses.path_of(cfg, rec["analysis"], rec["params"], rec["version"], store) != path:
            bad.append(f"{path.name}: not at the path its key gives")
        elif rec["weights"] != "recorded":
            bad.append(f"{path.name}: computed from weights that differ from the record ({rec['weights']})")
    assert not bad, "\n".join(bad[:20])


def test_store_belongs_to_the_checkout_run_from(tmp_path, monkeypatch):
    import warnings

    from replicate import store
    other = tmp_path / "other"
    (other / "replicate").mkdir(parents=True)
    (other / "pyproject.toml").write_text("[project]\nname = 'replicate'\n")
    (other / "replicate" / "__init__.py").write_text("")
    (other / "notebooks").mkdir()
    monkeypatch.delenv("REPLICATE_ROOT", raising=False)
    monkeypatch.delenv("REPLICATE_STORE", raising=False)
    monkeypatch.chdir(other / "notebooks")
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert store.repo_root() == other.resolve()
        assert store.default_store_dir("cpu") == other.resolve() / "results" / "runs"
    monkeypatch.setenv("REPLICATE_ROOT", str(tmp_path))
    assert store.repo_root() == tmp_path

"""The run store: one JSON record per finished run.

Records live at <store>/<method>/<model>_<dataset>_<profile>_<key>.json. A
record is written only when its run has finished, atomically (temporary file
in the same directory, then rename), so an interrupted run leaves nothing
behind. Each record carries a checksum of its own content; a record that does
not parse, lacks a field, belongs to another key or fails its checksum is
reported, moved aside (``.corrupt``) and recomputed, never read as a result.

The committed store is results/runs/. Smoke-profile runs go to
build/smoke/runs/ (git-ignored) so that CI and quick checks never mix with
committed results. REPLICATE_STORE overrides both.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

from .config import RunConfig

REQUIRED = ("key", "config", "status", "metrics", "history", "provenance", "checksum")
SCHEMA = 1


def _is_checkout(d: Path) -> bool:
    return (d / "pyproject.toml").exists() and (d / "replicate" / "__init__.py").exists()


_warned_roots: set = set()


def repo_root() -> Path:
    """The project directory: REPLICATE_ROOT, else the checkout you run from (the nearest
    directory at or above the working directory holding pyproject.toml and replicate/), else
    the checkout holding this package. So a second checkout used with the same (editable)
    environment keeps its own store, cache and outputs; a warning says when the code imported
    is another checkout's."""
    env = os.environ.get("REPLICATE_ROOT")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent.parent
    cwd = Path.cwd().resolve()
    for d in (cwd, *cwd.parents):
        if _is_checkout(d):
            if d != here and _is_checkout(here) and d not in _warned_roots:
                _warned_roots.add(d)
                warnings.warn(f"running from the checkout {d.name}/ with the replicate package of another checkout; "
                              "results, store and cache are this checkout's (set REPLICATE_ROOT to choose)", stacklevel=2)
            return d
    return here if _is_checkout(here) else cwd


def default_store_dir(profile: str) -> Path:
    env = os.environ.get("REPLICATE_STORE")
    if env:
        return Path(env)
    root = repo_root()
    if profile == "paper" and _dry_run():
        return root / "build" / "paper-dry" / "runs"      # a dry run never writes into results/
    return root / ("build/smoke/runs" if profile == "smoke" else "results/runs")


def _dry_run() -> bool:
    from .dry_run import active
    return active()


def cache_dir() -> Path:
    """Git-ignored cache for trained weights (REPLICATE_CACHE overrides)."""
    env = os.environ.get("REPLICATE_CACHE")
    return Path(env) if env else repo_root() / ".cache" / "replicate"


def own_seconds(record: dict, parent: dict | None = None) -> float:
    """The seconds a run's own training took, from its record (and its parent's record, when it has one).

    A record's `wall_time_s` leaves out the time spent getting its parent's model, which its provenance
    gives as `parent_s`. Records made before `parent_s` existed count there a parent that was trained inside
    the same call (a child run asked for before its parent was stored): such a parent is recognised by its
    recorded interval lying within the child's, and its recorded wall time (which counts its own parents the
    same way) is taken off. A parent retrained only to recover its weights cannot be recognised that way."""
    from datetime import datetime

    prov = record.get("provenance", {})
    wall = prov.get("wall_time_s") or 0.0
    if "parent_s" in prov or parent is None:
        return wall
    pp = parent.get("provenance", {})
    try:
        start, end, p_start, p_end = (datetime.fromisoformat(t) for t in (prov["start_time"], prov["end_time"],
                                                                          pp["start_time"], pp["end_time"]))
    except (KeyError, TypeError, ValueError):
        return wall
    inside = start <= p_start and p_end <= end
    return max(wall - (pp.get("wall_time_s") or 0.0), 0.0) if inside else wall


class CorruptRecord(ValueError):
    pass


def _checksum(record: dict) -> str:
    body = {k: v for k, v in record.items() if k != "checksum"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _aside(path: Path) -> Path:
    """A free name to move a corrupt file to: <name>.corrupt, then <name>.corrupt.1, .2, ..."""
    bad = path.with_suffix(path.suffix + ".corrupt")
    n = 0
    while bad.exists():
        n += 1
        bad = path.with_suffix(f"{path.suffix}.corrupt.{n}")
    return bad


def write_json_atomic(path: Path, obj, **dump_kw) -> None:
    """Write JSON (sorted keys, a final newline) to a temporary file beside `path`, flush it
    to disk and rename it over `path`: readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, sort_keys=True, **dump_kw)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class Store:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    @classmethod
    def for_profile(cls, profile: str) -> "Store":
        return cls(default_store_dir(profile))

    def path(self, cfg: RunConfig) -> Path:
        return self.root / cfg.method / f"{cfg.model}_{cfg.dataset}_{cfg.profile}_{cfg.key}.json"

    def get(self, cfg: RunConfig) -> dict | None:
        """The stored record for cfg, or None if absent or corrupt (corrupt ones are moved aside)."""
        path = self.path(cfg)
        if not path.exists():
            return None
        try:
            return self._read(path, cfg.key)
        except CorruptRecord as err:
            bad = _aside(path)
            os.replace(path, bad)
            warnings.warn(f"corrupt run record {path.name}: {err}; moved to {bad.name}, recomputing",
                          stacklevel=2)
            return None

    def _read(self, path: Path, key: str | None = None) -> dict:
        try:
            record = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CorruptRecord(f"not valid JSON ({err.__class__.__name__})") from None
        if not isinstance(record, dict):
            raise CorruptRecord("not a JSON object")
        missing = [f for f in REQUIRED if f not in record]
        if missing:
            raise CorruptRecord(f"missing field(s) {missing}")
        if key is not None and record["key"] != key:
            raise CorruptRecord(f"holds key {record['key']}, expected {key}")
        if record["checksum"] != _checksum(record):
            raise CorruptRecord("checksum mismatch (edited or half-written)")
        return record

    def put(self, record: dict) -> Path:
        cfg = RunConfig.from_dict(record["config"])
        record = {**record, "key": cfg.key, "schema": SCHEMA}
        record["checksum"] = _checksum(record)
        path = self.path(cfg)
        write_json_atomic(path, record, indent=1)
        return path

    def records(self, method: str | None = None):
        """Every valid record in the store (corrupt ones are skipped with a warning)."""
        base = self.root / method if method else self.root
        for path in sorted(base.rglob("*.json")):
            try:
                yield self._read(path)
            except CorruptRecord as err:
                warnings.warn(f"skipping corrupt run record {path.name}: {err}", stacklevel=2)

    def own_seconds(self, record: dict) -> float:
        """The seconds the run of `record` took itself, without its parent's (module function own_seconds)."""
        parent = RunConfig.from_dict(record["config"]).parent
        return own_seconds(record, self.get(parent) if parent is not None else None)

    # -- trained weights (git-ignored cache) -------------------------------------
    def weights_path(self, cfg: RunConfig) -> Path:
        return cache_dir() / "weights" / cfg.method / f"{cfg.label}-{cfg.key}.pt"

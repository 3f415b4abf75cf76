"""Run a configuration, or return its stored record.

`run(cfg)` is the one entry point notebooks use. It looks the configuration up
in the store and returns the record when there is one; otherwise it seeds
everything, loads the data, lets the method train or compress, measures the
result, and writes the record atomically. Prerequisites (a dense model to
prune) are resolved lazily: a stored record is returned without loading or
training anything it depended on.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import socket
import subprocess
import time
import warnings
from pathlib import Path

import torch

from . import __version__
from . import data as data_mod
from . import metrics, models, tasks, train
from .config import RunConfig
from .methods import get_method
from .store import Store, repo_root

_PROCESS_START = _dt.datetime.now(_dt.timezone.utc).isoformat()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat()


def fresh_requested() -> bool:
    """REPLICATE_FRESH=1 retrains everything once: records written before this
    process started are ignored, those written by it are reused."""
    return os.environ.get("REPLICATE_FRESH", "0") not in ("0", "", "false", "no")


def load_data(cfg: RunConfig, *, validation: bool = False):
    """The run's data. With `cfg.val_size`, that many training examples are held
    out (a split seeded independently of the run's seed, so every run of a study
    shares it) and never trained on; `validation=True` returns them in the test
    fields instead of the test set, for model selection."""
    ds = data_mod.load(cfg.dataset)
    if cfg.train_size or cfg.test_size:
        ds = data_mod.subset(ds, cfg.train_size, cfg.test_size, seed=0)
    if cfg.val_size:
        train_part, val_part = data_mod.split_validation(ds, cfg.val_size, seed=0)
        ds = val_part if validation else train_part
    elif validation:
        raise ValueError(f"run {cfg.label} has no validation split (val_size is None)")
    if cfg.normalize:
        if not isinstance(ds.x_train, torch.Tensor):
            raise ValueError(f"normalize={cfg.normalize!r} needs in-memory images; {cfg.dataset} is streamed "
                             "from disk and its models normalise their inputs themselves")
        # one mean/std over the training examples, or one per channel (shape (1, C, 1, 1), broadcast)
        dims = (0, 2, 3) if cfg.normalize == "channel" else tuple(range(ds.x_train.dim()))
        mean, std = ds.x_train.mean(dims, keepdim=True), ds.x_train.std(dims, keepdim=True)
        ds = data_mod.Dataset(ds.name, (ds.x_train - mean) / std, ds.y_train,
                              (ds.x_test - mean) / std, ds.y_test, ds.num_classes, ds.source)
    return ds


def task_for(cfg: RunConfig, ds):
    """The run's task, from its dataset (with the configuration's task settings)."""
    return tasks.for_data(ds, augment=cfg.augment, bptt=cfg.bptt)


class Context:
    """What a method gets: the configuration, the data and the shared tools."""

    def __init__(self, cfg: RunConfig, ds, device, store: Store):
        self.cfg, self.data, self.device, self.store = cfg, ds, device, store
        self.parent_note = None
        self.parent_seconds = 0.0     # spent getting the parent's model (trained now, or read): not this run's time
        self.task = task_for(cfg, ds)

    @property
    def input_shape(self):
        return tuple(self.data.x_train.shape[1:])

    def build_model(self):
        """A freshly initialised model, seeded by the run's seed."""
        train.seed_everything(self.cfg.seed)
        m = models.build(self.cfg.model, self.input_shape, self.data.num_classes)
        return m.to(self.device)

    def parent_model(self):
        """The parent run's trained model (trained now if its weights are not cached). When those weights
        had to be recomputed and do not reproduce the parent's record (another CPU or torch build), the
        run's provenance says so (`parent_weights`), with both values of the parent's headline metric."""
        t = time.perf_counter()
        try:
            model, record = load_model(self.cfg.parent, store=self.store)
        finally:
            self.parent_seconds += time.perf_counter() - t
        if record is not None and record.get("weights") == RECOMPUTED:
            self.parent_note = {"key": record["key"], "metric": record["weights_metric"],
                                "record": record["weights_stored"], "weights": record["metrics"][record["weights_metric"]]}
        return model.to(self.device)

    def fit(self, model, epochs: int | None = None, stream: int = 0, **overrides) -> list:
        """Train with the run's optimizer settings; `overrides` change any of them.
        `stream` separates data orders of successive phases of one run."""
        c = self.cfg
        kw = dict(epochs=c.epochs if epochs is None else epochs, batch_size=c.batch_size,
                  optimizer=c.optimizer, lr=c.lr, momentum=c.momentum,
                  weight_decay=c.weight_decay, lr_schedule=c.lr_schedule,
                  lr_milestones=c.lr_milestones, task=self.task, grad_clip=c.grad_clip,
                  seed=c.seed * 1000 + stream, desc=c.label)
        kw.update(overrides)
        return train.fit(model, self.data, **kw)


def _sources(text: str) -> list:
    import json
    return [(c.get("cell_type"), "".join(c.get("source", []))) for c in json.loads(text).get("cells", [])]


def _code_changed(root, path: str) -> bool:
    """Whether a modified file changes code: results, figures and the README's generated table do
    not, nor does a notebook whose cell sources are those of HEAD (only its outputs changed)."""
    if path.startswith(("results/", "figures/")) or path == "README.md":
        return False
    if path.endswith(".ipynb"):
        try:
            head = subprocess.run(["git", "-C", str(root), "show", f"HEAD:{path}"], capture_output=True,
                                  text=True, timeout=10).stdout
            return _sources(head) != _sources((root / path).read_text())
        except (OSError, ValueError, subprocess.SubprocessError):
            return True
    return True


def _git_commit():
    """(HEAD commit, dirty): dirty when the working tree changes code or notebook sources;
    re-executed notebook outputs, tables and figures do not count."""
    root = repo_root()
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    paths = [line[3:].split(" -> ")[-1].strip('"') for line in status.splitlines() if line.strip()]
    return commit, any(_code_changed(root, p) for p in paths)


_LIBRARY_HASH = None


def library_hash() -> str:
    """sha256 over the library's Python sources (path and content, sorted): identifies the code a
    record was made with even when the working tree was not committed."""
    global _LIBRARY_HASH
    if _LIBRARY_HASH is None:
        import hashlib
        from pathlib import Path
        pkg = Path(__file__).resolve().parent
        h = hashlib.sha256()
        for f in sorted(pkg.rglob("*.py")):
            h.update(str(f.relative_to(pkg)).encode() + b"\0" + f.read_bytes() + b"\0")
        _LIBRARY_HASH = h.hexdigest()[:16]
    return _LIBRARY_HASH


def _provenance(device, threads, start, wall, ds, parent_s: float = 0.0) -> dict:
    """`wall` is the run's own time: the seconds spent getting its parent's model (training it, when the store
    lacked it, or reading its weights) are left out and recorded as `parent_s`. (Records made before `parent_s`
    existed count a parent trained inside the same call in their wall time; store.own_seconds corrects them.)"""
    commit, dirty = _git_commit()
    return {
        "replicate_version": __version__, "git_commit": commit, "git_dirty": dirty, "library_hash": library_hash(),
        "torch_version": torch.__version__, "python_version": platform.python_version(),
        "device": str(device), "device_name": (torch.cuda.get_device_name(device)
                                                if device.type == "cuda" else platform.processor() or "cpu"),
        "threads": threads, "wall_time_s": round(wall, 3), "parent_s": round(parent_s, 3), "start_time": start,
        "end_time": _now(),
        "data_source": ds.source, "n_train": len(ds.x_train), "n_test": len(ds.x_test),
        "host": socket.gethostname(), "executor": os.environ.get("REPLICATE_EXECUTOR_USED", "inline"),
    }


def provenance_now() -> dict:
    """Code and environment identity for something computed now (an analysis, a timing)."""
    commit, dirty = _git_commit()
    return {"replicate_version": __version__, "git_commit": commit, "git_dirty": dirty, "library_hash": library_hash(),
            "torch_version": torch.__version__, "python_version": platform.python_version(),
            "threads": torch.get_num_threads(), "time": _now()}


def _log_read(key: str) -> None:
    """REPLICATE_RUN_LOG names a file that collects the keys of the records read from the store
    (the notebook driver counts them for its summary)."""
    path = os.environ.get("REPLICATE_RUN_LOG")
    if path:
        try:
            with open(path, "a") as f:
                f.write(key + "\n")
        except OSError:
            pass


def _usable(record, fresh) -> bool:
    if record is None:
        return False
    if fresh and record["provenance"].get("end_time", "") < _PROCESS_START:
        return False
    return True


def run(cfg: RunConfig, *, fresh: bool | None = None, store: Store | None = None) -> dict:
    """The record of `cfg`: from the store when present, else by running it."""
    record, _ = _run(cfg, fresh=fresh, store=store, want_model=False)
    return record


def load_model(cfg: RunConfig, *, store: Store | None = None):
    """(model, record) of a run, from the weight cache or by (re)running it."""
    return _run(cfg, fresh=None, store=store, want_model=True)


def _run(cfg: RunConfig, *, fresh, store, want_model):
    cfg.validate()
    store = store or Store.for_profile(cfg.profile)
    fresh = fresh_requested() if fresh is None else fresh
    record = store.get(cfg)
    have = _usable(record, fresh)
    wpath = store.weights_path(cfg)
    if have and not want_model:
        _log_read(record["key"])
        return record, None
    device = train.default_device()
    if have and want_model and wpath.exists() and record["status"] == "ok":
        ds_shape, classes = _shape_of(cfg)
        model = get_method(cfg.method).load_weights(models.build(cfg.model, ds_shape, classes),
                                                    torch.load(wpath, map_location="cpu", weights_only=True))
        return model.to(device), record
    again = _recomputed(cfg, record, wpath) if have and want_model and record["status"] == "ok" else None
    if again is not None:
        _warn_recomputed(cfg, again)
        ds_shape, classes = _shape_of(cfg)
        model = get_method(cfg.method).load_weights(models.build(cfg.model, ds_shape, classes),
                                                    torch.load(_recomputed_paths(wpath)[0], map_location="cpu",
                                                               weights_only=True))
        return model.to(device), again
    if have and record["status"] != "ok":
        raise RuntimeError(f"run {cfg.label} ({cfg.key}) failed earlier: {record.get('error')}; "
                           "it has no model to continue from")

    train.check_training_allowed(
        f"run {cfg.label} ({cfg.key})"
        + (" to recover its weights (they are not in the cache)" if have else " (not in the store)"))
    train.note(f"  training {cfg.label} ({cfg.key})" + (" again, to recover its weights" if have else ""))
    threads_before = torch.get_num_threads()
    # Re-running to recover weights: on the record's thread count, so that the sums run in the
    # same order and the weights are the recorded ones (on the machine that made them).
    threads = train.set_threads(record["provenance"].get("threads") if have else None)
    try:
        return _train(cfg, store, record, have, want_model, wpath, threads)
    finally:
        if have:
            torch.set_num_threads(threads_before)


def _train(cfg, store, record, have, want_model, wpath, threads):
    device = train.default_device()
    torch.use_deterministic_algorithms(True, warn_only=True)
    ds = load_data(cfg)
    method = get_method(cfg.method)
    start, t0 = _now(), time.perf_counter()
    ctx = Context(cfg, ds, device, store)
    try:
        result = method.run(ctx)
    except train.Divergence as err:
        new = {"config": cfg.to_dict(), "status": "failed", "error": str(err),
               "failed_epoch": err.epoch, "history": err.history, "metrics": {},
               "provenance": _provenance(device, threads, start, time.perf_counter() - t0 - ctx.parent_seconds, ds,
                                         ctx.parent_seconds)}
        store.put(new)
        warnings.warn(f"run {cfg.label} diverged ({err}); recorded as failed", stacklevel=2)
        if want_model:
            raise
        return store.get(cfg), None
    wall = time.perf_counter() - t0 - ctx.parent_seconds
    model = result.model
    task = ctx.task
    m = metrics.summarize(model, example=task.example_input(ds))
    m.update(task.final_metrics(model, ds, result.history,
                                validation=load_data(cfg, validation=True) if cfg.val_size else None))
    m.update(result.extra)
    new = {"config": cfg.to_dict(), "status": "ok", "history": result.history, "metrics": m,
           "provenance": _provenance(device, threads, start, wall, ds, ctx.parent_seconds)}
    if ctx.parent_note is not None:
        new["provenance"]["parent_weights"] = ctx.parent_note
    if have and record["status"] == "ok" and want_model:
        # Re-ran only to get weights back: keep the stored record when the weights
        # reproduce it; otherwise hand back what these weights measure, marked, so
        # that nothing computed from them is shown beside the stored metrics.
        k = f"test_{task.metric}"
        new = record
        if abs(record["metrics"][k] - m[k]) > 1e-9:
            new = {**record, "metrics": m, "history": result.history, "weights": RECOMPUTED, "weights_metric": k,
                   "weights_stored": record["metrics"][k],
                   "provenance": _provenance(device, threads, start, wall, ds, ctx.parent_seconds)}
            _warn_recomputed(cfg, new)
            # not in the run's cache slot, which holds only weights that match their record: kept beside it
            # with the metrics they give, so that the next run needing them on this machine does not retrain
            wfile, side = _recomputed_paths(wpath)
            wfile.parent.mkdir(parents=True, exist_ok=True)
            tmp = wfile.with_suffix(".tmp")
            torch.save({k_: v.detach().cpu() for k_, v in model.state_dict().items()}, tmp)
            os.replace(tmp, wfile)
            side.write_text(json.dumps({**new, "record_checksum": record.get("checksum")}, default=str))
            return model, new
    else:
        store.put(new)
        new = store.get(cfg)
    wpath.parent.mkdir(parents=True, exist_ok=True)
    tmp = wpath.with_suffix(".tmp")
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    os.replace(tmp, wpath)
    return (model, new) if want_model else (new, None)


RECOMPUTED = "recomputed, differs from record"


def _recomputed_paths(wpath: Path) -> tuple:
    """Where recomputed weights that do not reproduce their record are kept: beside the run's cache slot."""
    return wpath.with_name(wpath.stem + ".recomputed.pt"), wpath.with_name(wpath.stem + ".recomputed.json")


def _recomputed(cfg: RunConfig, record: dict, wpath: Path):
    """The marked record of earlier recomputed weights of this run, if they were made from this very record
    on this machine's torch build and the record's thread count; else None (they are recomputed again)."""
    wfile, side = _recomputed_paths(wpath)
    if not (wfile.exists() and side.exists()):
        return None
    try:
        saved = json.loads(side.read_text())
    except (OSError, ValueError):
        return None
    prov = saved.get("provenance", {})
    same = (saved.get("record_checksum") == record.get("checksum") and prov.get("torch_version") == torch.__version__
            and prov.get("host") == socket.gethostname() and prov.get("threads") == record["provenance"].get("threads"))
    if not same:
        return None
    saved.pop("record_checksum", None)
    return saved


def _warn_recomputed(cfg: RunConfig, again: dict) -> None:
    k = again["weights_metric"]
    warnings.warn(f"re-running {cfg.label} to recover its weights gave {k} {again['metrics'][k]:.4f}, the stored "
                  f"record says {again['weights_stored']:.4f}; the model returned is the re-run's", stacklevel=3)


def _shape_of(cfg: RunConfig):
    ds = load_data(cfg)
    return tuple(ds.x_train.shape[1:]), ds.num_classes

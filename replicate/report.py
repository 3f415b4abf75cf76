"""Paper-vs-replication tables, the claims table, and one figure style.

Every notebook builds its table with `row(...)` + `table(...)`: the metric,
the paper's value with its source (or "not published"), ours as mean +- std
over seeds, the difference, and the dataset and profile of our runs. Tables
are written in long form to results/tables/<paper>/<notebook>.csv (+ .md);
claims to results/claims/<paper>.csv. Outputs of profiles other than `cpu`
go under build/<profile>/ so that they never overwrite the committed results.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .claims import VERDICTS  # noqa: F401  (write_claims checks against the same list)
from .store import repo_root

TABLE_COLUMNS = ["experiment", "model", "dataset", "profile", "metric", "paper", "paper_source",
                 "paper_verified", "paper_dataset", "ours_mean", "ours_std", "n_seeds", "n_failed",
                 "diff", "note", "run_keys"]
CLAIM_COLUMNS = ["claim_id", "claim", "source", "verdict", "evidence", "notebook"]


def output_root(profile: str) -> Path:
    """Committed results are the cpu profile's; other profiles write under build/<profile>/."""
    from .dry_run import active

    root = repo_root()
    if profile == "paper" and active():
        return root / "build" / "paper-dry"              # the paper profile's dry run (dry_run.py)
    return root if profile == "cpu" else root / "build" / profile


def metric(name: str, scale: float = 1.0):
    """An accessor: record -> scale x its final metric `name` (e.g. metric("test_error", 100) in %)."""
    def get(r):
        v = r["metrics"][name]
        return v if scale == 1 else scale * v
    get.__name__ = f"{name}x{scale:g}"
    return get


def layer_metric(layer: str, name: str = "remaining", scale: float = 100.0):
    """An accessor: record -> scale x metric `name` of one layer (default: its remaining weights in %)."""
    def get(r):
        return scale * r["metrics"]["layers"][layer][name]
    get.__name__ = f"{layer}.{name}x{scale:g}"
    return get


def seed_of(r) -> int:
    return r["config"]["seed"]


def run_id(r) -> tuple:
    """(model, dataset, seed) of a record: the key of a reference run when a table mixes models and datasets."""
    c = r["config"]
    return c["model"], c["dataset"], c["seed"]


def metric_notes(record) -> list:
    """What a record's metrics measure where the obvious reading is wrong (printed by `show`)."""
    cfg, notes = record.get("config", {}), []
    args = cfg.get("args") or {}
    if cfg.get("method") == "uniform_quant" and args.get("latent"):
        notes.append("latent=True: test_acc / test_error are the float shadow weights' (the run's model, kept for "
                     "another method to start from); the binarized or quantized network's error is "
                     "metrics.quantized_test_error")
    if cfg.get("method") == "sensitivity":
        notes.append("history: each epoch's test accuracy is measured before that epoch's thresholding and its "
                     "'remaining' after it; metrics.test_acc is the final, thresholded network's "
                     "(report.evaluated_history pairs them)")
    return notes


def evaluated_history(record) -> list:
    """Per epoch, the test accuracy and the remaining fraction of the network that was evaluated.

    A history entry's `remaining` is read at the end of the epoch, after the callbacks. For
    sensitivity runs (eq. 9) that is after the epoch's thresholding, which comes after the
    evaluation: entry e's test accuracy belongs to the network that entry e - 1's `remaining`
    describes (the parent's, 1.0, for the first epoch), and the run's final metrics.test_acc to the
    last entry's. This pairs them correctly: [{"epoch", "test_acc", "remaining"}], plus a last
    point {"epoch": "final", ...} from the run's metrics."""
    hist = record.get("history") or []
    if record["config"]["method"] != "sensitivity":
        return [{"epoch": h["epoch"], "test_acc": h["test_acc"], "remaining": h["remaining"]["model"]} for h in hist]
    out, prev = [], 1.0
    for h in hist:
        out.append({"epoch": h["epoch"], "test_acc": h["test_acc"], "remaining": prev})
        prev = h["remaining"]["model"]
    if hist and "test_acc" in record.get("metrics", {}):
        out.append({"epoch": "final", "test_acc": record["metrics"]["test_acc"], "remaining": prev})
    return out


def change_vs(reference: dict, fn, key=seed_of):
    """An accessor: record -> fn(record) - fn(the reference record of the same seed); `reference`
    maps key(record) (by default the seed) to the reference run's record (the paired change
    against the same seed's dense or base model)."""
    def get(r):
        return fn(r) - fn(reference[key(r)])
    return get


def values(records, fn) -> tuple:
    """(values of fn over the successful records, number of failed records)."""
    ok = [r for r in records if r["status"] == "ok"]
    return [float(fn(r)) for r in ok], len(records) - len(ok)


def row(experiment: str, model: str, dataset: str, profile: str, metric: str, records,
        fn, paper: dict | None = None, comparable: bool | None = None, note: str = "") -> dict:
    """One table row. `fn(record)` extracts our value; `paper` is a references.lookup() dict.

    The difference ours - paper is given only when it means something: same
    dataset, or `comparable=True` for relative quantities (a drop, a ratio). A row
    whose runs trained on a subset of the training set says so in its note. `run_keys` lists the
    keys of the records behind the row (`python -m replicate show KEY` prints one)."""
    records = list(records)
    vals, failed = values(records, fn)
    mean, std = _mean_std(vals)
    pval = paper.get("value") if paper else None
    pdata = paper.get("dataset") if paper else None
    if comparable is None:
        comparable = pdata == dataset
    diff = mean - float(pval) if (comparable and isinstance(pval, (int, float)) and vals) else math.nan
    notes = [note] if note else []
    subsets = sorted({r["config"].get("train_size") for r in records if isinstance(r, dict) and "config" in r} - {None})
    if subsets:   # say so on every row whose runs trained on part of the training set
        notes.append("training subset of " + " / ".join(f"{n:,}" for n in subsets) + f" {_examples(dataset)}")
    if failed:
        notes.append(f"{failed} failed run(s) excluded")
    if paper and pdata and pdata != dataset:
        notes.append(f"paper on {pdata}, ours on {dataset}")
    return {
        "experiment": experiment, "model": model, "dataset": dataset, "profile": profile,
        "metric": metric, "paper": pval if paper else None,
        "paper_source": paper.get("source") if paper else "not published",
        "paper_verified": paper.get("verified") if paper else None,
        "paper_dataset": pdata, "ours_mean": mean, "ours_std": std, "n_seeds": len(vals),
        "n_failed": failed, "diff": diff, "note": "; ".join(notes),
        "run_keys": " ".join(r["key"] for r in records if isinstance(r, dict) and "key" in r),
    }


def _examples(dataset: str) -> str:
    """What a training subset of `dataset` counts: "tokens" of a token stream, "sentences" of a sentence
    classification set, else "images"."""
    from .data import SPECS   # imported here: the data package brings torch
    spec = SPECS.get(dataset)
    task = spec.task if spec is not None else None
    return {"language_model": "tokens", "sequence_classification": "sentences"}.get(task, "images")


def table(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def fmt(df: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """A readable view: ours as mean +- std, the paper's value marked as such."""
    def num(v):
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"

    out = pd.DataFrame({
        "experiment": df.experiment, "model": df.model, "metric": df.metric,
        "paper (value, source)": [_paper_cell(p, s, v) for p, s, v in zip(df.paper, df.paper_source, df.paper_verified)],
        "ours (mean ± std)": [("undefined (NaN)" if math.isnan(m) else
                               num(m) if (s is None or (isinstance(s, float) and math.isnan(s))) else f"{num(m)} ± {num(s)}")
                              if n else "no successful run"
                              for m, s, n in zip(df.ours_mean, df.ours_std, df.n_seeds)],
        "seeds": df.n_seeds, "diff": [num(d) for d in df["diff"]],
        "dataset / profile": df.dataset + " / " + df.profile, "note": df.note,
    })
    return out


def _paper_cell(p, source, verified) -> str:
    """The paper column: the value with its source; a value that exists only in a PDF
    we could not read (null in references/) says so instead of "not published"."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "not published" if source in (None, "not published") else f"not available offline ({source})"
    return f"{p} ({source}{'' if verified else ', unverified'})"


def write_table(df: pd.DataFrame, paper: str, notebook: str, profile: str) -> Path:
    """Write the long-form CSV and a Markdown view; returns the CSV path."""
    d = output_root(profile) / "results" / "tables" / paper
    d.mkdir(parents=True, exist_ok=True)
    csv = d / f"{notebook}.csv"
    df.to_csv(csv, index=False, float_format="%.6g")
    (d / f"{notebook}.md").write_text(fmt(df).to_markdown(index=False) + "\n")
    return csv


def write_frame(df: pd.DataFrame, paper: str, name: str, profile: str) -> None:
    """Write a notebook's supporting table (long form, not a paper-vs-ours table) as
    results/tables/<paper>/<name>.csv, numbers to 4 significant digits. Returns nothing, so
    that a cell ending with it prints no file path."""
    d = output_root(profile) / "results" / "tables" / paper
    d.mkdir(parents=True, exist_ok=True)
    df.to_csv(d / f"{name}.csv", index=False, float_format="%.4g")


def write_claims(paper: str, claims, profile: str) -> Path:
    """Add or update claims in the paper's claims table (keyed by claim_id; several
    notebooks contribute to one table). Each needs a verdict from VERDICTS and its evidence."""
    df = pd.DataFrame(claims, columns=CLAIM_COLUMNS)
    bad = sorted(set(df.verdict) - set(VERDICTS))
    if bad:
        raise ValueError(f"unknown verdict(s) {bad}; valid: {', '.join(VERDICTS)}")
    d = output_root(profile) / "results" / "claims"
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{paper}.csv"
    if path.exists():
        old = pd.read_csv(path)
        df = pd.concat([old[~old.claim_id.isin(df.claim_id)], df], ignore_index=True)
    df.sort_values("claim_id").to_csv(path, index=False)
    return path


# -- figures -------------------------------------------------------------------

def style() -> None:
    import matplotlib

    matplotlib.rcParams.update({
        "figure.figsize": (6.4, 4.0), "figure.dpi": 90, "savefig.dpi": 110,
        "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
        "axes.spines.right": False, "legend.frameon": False, "font.size": 10,
        "svg.hashsalt": "replicate",   # stable ids inside SVGs: re-saving an unchanged figure changes no byte
    })


def _integer_epoch_ticks(fig) -> None:
    """Epochs and iterations are counts: no tick at 2.5 on a linear axis labelled with one."""
    from matplotlib.ticker import MaxNLocator

    for ax in fig.axes:
        for axis, label, scale in ((ax.xaxis, ax.get_xlabel(), ax.get_xscale()), (ax.yaxis, ax.get_ylabel(), ax.get_yscale())):
            if scale == "linear" and any(w in label.lower() for w in ("epoch", "iteration")) and "%" not in label:
                axis.set_major_locator(MaxNLocator(integer=True))


def savefig(fig, paper: str, name: str, profile: str) -> Path:
    d = output_root(profile) / "figures" / paper
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{name}.png"
    _integer_epoch_ticks(fig)
    fig.savefig(path, bbox_inches="tight")
    # SVG beside the PNG, for slides and print; no date in it, so an unchanged figure is byte-identical
    fig.savefig(path.with_suffix(".svg"), bbox_inches="tight", metadata={"Date": None})
    return path


def _mean_std(vals) -> tuple:
    """Mean and sample standard deviation (0 for one value, NaN for none)."""
    if not vals:
        return math.nan, math.nan
    return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0


def mean_std(records, fn):
    """Mean and std of fn over the successful records."""
    return _mean_std(values(records, fn)[0])


# -- README headline table -----------------------------------------------------

HEADLINE_START, HEADLINE_END = "<!-- headline:start -->", "<!-- headline:end -->"


# (title, table file, metrics shown[, experiment prefixes shown]) for the README, in order.
HEADLINES = [   # title, notebook (under notebooks/, its table under results/tables/), metrics (columns), experiment prefixes
    ("Magnitude pruning (paper: Han et al. 2015 on MNIST)", "baselines/01_dense_and_magnitude",
     ["test_error_pct", "error_change_pct_points"], ["dense", "iterative (Han) 12x"]),
    ("DST Table 1 (paper: Liu et al. 2020 on MNIST)", "dst/01_table1",
     ["test_acc_pct (final)", "remaining_pct (final)", "acc_change_vs_dense_pct_points (final)"], ["dense", "DST recipe"]),
    ("Sensitivity-driven regularization, Tables 1-2 (paper rows not available offline; batch-sum sensitivity "
     "vs the weight-decay control, same lambda and T)", "sensitivity/01_tables_1_2",
     ["error_change_vs_dense_pct_points", "compression"], ["sensitivity, lambda 0.0005", "weight decay, lambda 0.0005"]),
    ("Adaptive quantization, headline operating points (paper: LeNet-5 on MNIST 64x at 0.65 -> 0.77 %, unverified; "
     "compression = 32-bit weights / stored bits)", "aq/01_headline",
     ["error_change_pct_points", "compression"], ["adaptive quantization", "uniform 4-bit", "Deep Compression"]),
    ("FLOP, character LM (paper: enwik8, its table not available offline; ours: an SRU on the King James Bible)",
     "flop/01_char_lm", ["test_bpc", "hard_sparsity", "parameters_thousands"], ["dense", "FLOP", "AGP"]),
    ("FLOP, transformer character LM (paper: a Transformer-XL on enwik8, its table not available offline; ours: a "
     "2-layer causal transformer on the King James Bible)", "flop/04_char_transformer",
     ["test_bpc", "hard_sparsity", "parameters_thousands"], ["dense", "FLOP", "AGP"]),
    ("FLOP controllability (a reviewer's question; no paper values): the Lagrangian at each target t against "
     "fixed-coefficient L0, same parents and steps; sparsity of the weight matrices vs their dense size",
     "flop/03_controllability", ["expected_sparsity", "hard_sparsity", "test_bpc"], ["FLOP", "L0"]),
    ("FLOP, word LM with an adaptive embedding (paper: WikiText-103, its table not available offline; ours: a small "
     "word SRU on the King James Bible's words)", "flop/05_word_lm", ["test_ppl", "hard_sparsity", "parameters_thousands"],
     ["dense", "FLOP", "AGP"]),
    ("FLOP, transformer stand-in (paper: BERT-base on GLUE, not available offline; ours: the 6-layer MiniLM on King "
     "James verses, Old vs New Testament, not GLUE)", "flop/07_transformer",
     ["accuracy %", "accuracy change (pts)", "encoder linears kept (k)"], ["dense", "FLOP"]),
    ("DRL channel pruning, Table 1 at d = 0.5 (paper: M-CifarNet on CIFAR-10; ours: M-FashionNet-S on "
     "Fashion-MNIST, compare changes and ratios)", "drl/01_tradeoff",
     ["test_acc_pct", "acc_change_pct_points", "mac_speedup", "params_ratio"], ["dense", "DRL", "FBS", "FPGM", "uniform L1"]),
]
SHORT = {"test_error_pct": "error %", "error_change_pct_points": "error change (pts)", "test_acc_pct (final)": "accuracy %",
         "remaining_pct (final)": "remaining %", "acc_change_vs_dense_pct_points (final)": "accuracy change (pts)",
         "error_change_vs_dense_pct_points": "error change vs dense (pts)", "compression": "compression ×",
         "test_bpc": "test BPC", "hard_sparsity": "sparsity", "parameters_thousands": "parameters (k)",
         "test_acc_pct": "accuracy %", "acc_change_pct_points": "accuracy change (pts)", "mac_speedup": "MAC speed-up ×",
         "params_ratio": "stored params ×", "expected_sparsity": "expected sparsity", "test_ppl": "test perplexity"}


def headline_table() -> str:
    """Compact Markdown tables from the committed results (cpu profile): one row per model, dataset
    and experiment, a link to the notebook, the paper's values labelled as such, and the first
    characters of the run keys behind each row (`python -m replicate show KEY`)."""
    out = []
    for title, notebook, metrics, prefixes in HEADLINES:
        path = repo_root() / "results" / "tables" / f"{notebook}.csv"
        if not path.exists():
            continue
        df = pd.read_csv(path, keep_default_na=True)
        keep = df[df.metric.isin(metrics) & df.experiment.str.startswith(tuple(prefixes))]
        out += [f"**{title}** — [notebook](notebooks/{notebook}.ipynb), [full table](results/tables/{notebook}.md)", "",
                "| model | data (profile) | experiment | " + " | ".join(SHORT.get(m, m) for m in metrics) + " | paper | runs |",
                "|---|---|---|" + "---|" * len(metrics) + "---|---|"]
        for (model, dataset, profile, exp), g in keep.groupby(["model", "dataset", "profile", "experiment"], sort=False):
            by = {r.metric: r for r in g.itertuples()}
            cells = [f"{by[m].ours_mean:.2f} ± {by[m].ours_std:.2f}" if m in by and not pd.isna(by[m].ours_std)
                     else (f"{by[m].ours_mean:.2f}" if m in by else "") for m in metrics]
            paper = "; ".join(f"{SHORT.get(m, m)} {by[m].paper:g} ({by[m].paper_source}, {by[m].paper_dataset})"
                              for m in metrics if m in by and not pd.isna(by[m].paper)) or "—"
            keys = sorted({k for r in g.itertuples() for k in str(getattr(r, "run_keys", "") or "").split() if k != "nan"})
            n = max(int(r.n_seeds) for r in g.itertuples())
            out.append(f"| {model} | {dataset} ({profile}, n={n}) | {exp} | " + " | ".join(cells) + f" | {paper} | "
                       + (" ".join(f"`{k[:8]}`" for k in keys) or "—") + " |")
        out.append("")
    return "\n".join(out).strip() or "_No results yet: run `make reproduce-all`._"


def update_readme() -> bool:
    """Replace the README's headline block with the table built from results/. True if changed."""
    readme = repo_root() / "README.md"
    text = readme.read_text()
    start, end = text.index(HEADLINE_START) + len(HEADLINE_START), text.index(HEADLINE_END)
    new = text[:start] + "\n" + headline_table() + "\n" + text[end:]
    if new != text:
        readme.write_text(new)
    return new != text

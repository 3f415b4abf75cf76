"""Claims and verdicts: one record per claim, rules that can go either way, one ledger.

A notebook states a claim exactly as its rule tests it, computes the per-case
outcomes from the records (booleans, or None where a case could not be tested),
turns them into a verdict with a helper below, and writes the Claim with
`write(paper, claims, profile)`. The ledger is results/claims/<paper>.csv, one
row per claim_id (several notebooks contribute to one file, merged by id), with
the notebook that wrote the row filled in from `notebook.setup(...)`, and the
scope the verdict was reached on:

* `data`: "paper data", or "proxy: fashion_mnist, mnist5k" etc.;
* `budget_vs_paper`: our optimizer steps (or epochs) over the paper's for the
  runs the verdict rests on, "paper" where the recipe is the paper's, or
  "unknown" where the paper's budget is not available. A contradicted verdict
  reached below the paper's budget says so in its row (`write` adds the note).

Verdicts: supported, contradicted, inconclusive, not testable here, and
documented (a correction of the paper's text or tables that needs no experiment).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import ConfigError, check_choice

VERDICTS = ("supported", "contradicted", "inconclusive", "not testable here", "documented")
COLUMNS = ["claim_id", "claim", "source", "verdict", "evidence", "data", "budget_vs_paper", "notebook"]
BELOW_BUDGET = "reached below the paper's training budget"

_current_notebook: str | None = None   # set by notebook.setup(); the path written into claims rows


def set_notebook(path: str | None) -> None:
    global _current_notebook
    _current_notebook = path


@dataclass
class Claim:
    claim_id: str
    claim: str              # the claim exactly as the rule tests it
    source: str             # where the paper (or review) makes it
    verdict: str            # one of VERDICTS
    evidence: str           # generated from the comparison the rule made
    data: str               # "paper data" | "proxy: <datasets>"
    budget_vs_paper: str    # "paper" | a ratio such as "0.25" | "unknown"
    notebook: str = ""      # filled in by write() from the running notebook

    def __post_init__(self):
        check_choice("verdict", self.verdict, VERDICTS)
        for name in ("claim_id", "claim", "source", "evidence", "data", "budget_vs_paper"):
            if not str(getattr(self, name)).strip():
                raise ConfigError(f"claim {self.claim_id!r}: {name} must not be empty")


def budget(ours: float | None, paper: float | None) -> str:
    """Our budget (steps or epochs) over the paper's as text: "paper" when equal, "unknown" when
    the paper's is not available, else the ratio with two significant digits."""
    if paper is None or ours is None or (isinstance(paper, float) and math.isnan(paper)):
        return "unknown"
    if ours == paper:
        return "paper"
    return f"{ours / paper:.2g}"


def data_scope(datasets, paper_data=("mnist", "cifar10", "svhn", "imagenet", "enwik8")) -> str:
    """"paper data" when every dataset is one the papers used, else "proxy: <the others>"."""
    proxies = [d for d in dict.fromkeys(datasets) if d not in paper_data]
    return "paper data" if not proxies else "proxy: " + ", ".join(proxies)


def below_paper(budget_vs_paper: str) -> bool:
    """True when the budget (or any of several "<what>: <value>" budgets) is a ratio below 1."""
    for part in str(budget_vs_paper).split(";"):
        try:
            if float(part.rsplit(":", 1)[-1]) < 1:
                return True
        except ValueError:
            continue
    return False


def combine(outcomes, *, holds="supported", fails="contradicted", mixed="inconclusive",
            untested="not testable here") -> str:
    """The usual all / none / some rule over per-case outcomes (True: the claim holds in that case,
    False: it does not, None: the case could not be tested, ignored). Every value is reachable."""
    tested = [o for o in outcomes if o is not None]
    if not tested:
        return untested
    if all(tested):
        return holds
    if not any(tested):
        return fails
    return mixed


def compare(a: float, b: float, *, digits: int = 2, unit: str = "") -> str:
    """'a > b' / 'a < b' / 'a = b' with the sign that the numbers really have (as rounded)."""
    return f"{a:.{digits}f}{unit} {_relation(a, b, digits)} {b:.{digits}f}{unit}"


def _relation(a: float, b: float, digits: int) -> str:
    """'>', '<' or '=' between a and b as they are shown (rounded to `digits`)."""
    ra, rb = round(a, digits), round(b, digits)
    return ">" if ra > rb else "<" if ra < rb else "="


def chain(values, digits: int = 2) -> str:
    """Consecutive values joined by the relation each pair really has: '93.48 > 75.94 < 80.00'."""
    vals = list(values)
    out = f"{vals[0]:.{digits}f}" if vals else ""
    for a, b in zip(vals, vals[1:]):
        out += f" {_relation(a, b, digits)} {b:.{digits}f}"
    return out


def write(paper: str, claims, profile: str, notebook: str | None = None) -> Path:
    """Add or update `claims` (Claim objects) in results/claims/<paper>.csv, merged by claim_id.
    Outputs of profiles other than cpu go under build/<profile>/ (report.output_root)."""
    import pandas as pd

    from .report import output_root

    where = notebook or _current_notebook
    if not where:
        raise ConfigError("claims.write needs the notebook that makes the claims: call "
                          "replicate.notebook.setup(profile, notebook='<paper>/<NN_name>') first")
    rows = []
    for c in claims:
        if not isinstance(c, Claim):
            raise ConfigError(f"claims.write takes Claim records, got {type(c).__name__}")
        row = asdict(c)
        row["notebook"] = where if where.startswith("notebooks/") else f"notebooks/{where}.ipynb"
        if row["verdict"] == "contradicted" and below_paper(row["budget_vs_paper"]) and BELOW_BUDGET not in row["evidence"]:
            row["evidence"] += f" ({BELOW_BUDGET}; our steps over the paper's: {row['budget_vs_paper']})"
        rows.append(row)
    df = pd.DataFrame(rows, columns=COLUMNS)
    d = output_root(profile) / "results" / "claims"
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{paper}.csv"
    if path.exists():
        old = pd.read_csv(path, dtype=str, keep_default_na=False)
        for col in COLUMNS:
            if col not in old:
                old[col] = ""
        df = pd.concat([old[~old.claim_id.isin(df.claim_id)][COLUMNS], df], ignore_index=True)
    tmp = path.with_suffix(".csv.tmp")
    df.sort_values("claim_id").to_csv(tmp, index=False)
    tmp.replace(path)
    return path

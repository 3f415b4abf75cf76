"""Published numbers, one JSON file per paper, each entry with its source and a
`verified` flag (checked against a primary source or not). These are the only
place a paper's number may come from; tables always label them as the paper's.

Numbers that exist only in a PDF we could not read are entered with
"value": null and a "note" saying where to find them, so a reader with the
PDF fills them in here and nowhere else.
"""
from __future__ import annotations

import json
from importlib import resources

import pandas as pd

from ..errors import check_choice


def available() -> tuple:
    return tuple(sorted(p.name[:-5] for p in resources.files(__name__).iterdir()
                        if p.name.endswith(".json")))


def load(paper: str) -> pd.DataFrame:
    """All entries of one paper's reference file as a DataFrame (one row per number)."""
    check_choice("reference paper", paper, available())
    doc = json.loads(resources.files(__name__).joinpath(f"{paper}.json").read_text())
    df = pd.DataFrame(doc["entries"])
    df.insert(0, "paper", doc["paper"])
    df.attrs["citation"] = doc.get("citation", "")
    return df


def lookup(paper: str, model: str, method: str, metric: str) -> dict | None:
    """One published number as a dict (value, source, verified, dataset), or None."""
    df = load(paper)
    hit = df[(df.model == model) & (df.method == method) & (df.metric == metric)]
    if hit.empty:
        return None
    return hit.iloc[0].to_dict()


def change(paper: str, model: str, reference_method: str, method: str, metric: str, source: str) -> dict | None:
    """A published difference, method - reference_method, of one metric (e.g. a pruned model's error
    minus its dense reference), as a lookup()-style dict that is verified only if both numbers are."""
    ref, new = lookup(paper, model, reference_method, metric), lookup(paper, model, method, metric)
    if ref is None or new is None:
        return None
    return {"value": round(new["value"] - ref["value"], 4), "source": source,
            "verified": ref["verified"] and new["verified"], "dataset": ref["dataset"]}

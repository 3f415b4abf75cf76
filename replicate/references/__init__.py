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

from ..config import check_choice


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

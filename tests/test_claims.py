"""The claims helpers: every verdict reachable, evidence that follows the numbers,
scope columns written, rows merged by claim_id with the notebook filled in."""
import pandas as pd
import pytest

from replicate import claims
from replicate.claims import Claim
from replicate.errors import ConfigError


@pytest.mark.parametrize("outcomes, verdict", [
    ([True, True], "supported"), ([False, False], "contradicted"), ([True, False], "inconclusive"),
    ([None, None], "not testable here"), ([True, None], "supported"), ([], "not testable here"),
])
def test_combine_reaches_every_verdict(outcomes, verdict):
    assert claims.combine(outcomes) == verdict


def test_compare_uses_the_real_order():
    assert claims.compare(8.64, 45.33) == "8.64 < 45.33"
    assert claims.compare(45.33, 8.64, unit="%") == "45.33% > 8.64%"
    assert claims.compare(1.001, 1.004) == "1.00 = 1.00"


def test_budget_text():
    assert claims.budget(20, 20) == "paper"
    assert claims.budget(10, 200) == "0.05"
    assert claims.budget(10, None) == "unknown"
    assert claims.below_paper("0.05") and not claims.below_paper("paper") and not claims.below_paper("unknown")


def _claim(cid="x-1", verdict="supported", budget="paper", evidence="a > b"):
    return Claim(cid, "A claim, as tested", "Paper, Table 1", verdict, evidence, "proxy: mnist5k", budget)


def test_claim_checks_its_fields():
    with pytest.raises(ConfigError, match="unknown verdict 'maybe'"):
        _claim(verdict="maybe")
    with pytest.raises(ConfigError, match="evidence must not be empty"):
        _claim(evidence=" ")


def test_write_merges_by_id_and_fills_scope(tmp_path, monkeypatch):
    monkeypatch.setenv("REPLICATE_ROOT", str(tmp_path))
    claims.set_notebook(None)
    with pytest.raises(ConfigError, match="notebook.setup"):
        claims.write("demo", [_claim()], "cpu")
    claims.set_notebook("demo/01_first")
    claims.write("demo", [_claim("b"), _claim("a", verdict="contradicted", budget="0.1")], "cpu")
    path = claims.write("demo", [_claim("b", verdict="inconclusive")], "cpu", notebook="demo/02_second")
    df = pd.read_csv(path, dtype=str)
    assert list(df.columns) == claims.COLUMNS and list(df.claim_id) == ["a", "b"]
    a, b = df.iloc[0], df.iloc[1]
    assert a.notebook == "notebooks/demo/01_first.ipynb" and claims.BELOW_BUDGET in a.evidence
    assert b.verdict == "inconclusive" and b.notebook == "notebooks/demo/02_second.ipynb"
    assert a.budget_vs_paper == "0.1" and b.data == "proxy: mnist5k"
    claims.set_notebook(None)


def test_data_scope():
    assert claims.data_scope(["mnist"]) == "paper data"
    assert claims.data_scope(["fashion_mnist", "mnist5k", "mnist5k"]) == "proxy: fashion_mnist, mnist5k"


def test_chain_and_mixed_budgets():
    assert claims.chain([8.64, 45.33, 45.331, 2.0]) == "8.64 < 45.33 = 45.33 > 2.00"
    assert claims.below_paper("lenet300-100 on fashion_mnist: 1; lenet5-caffe on fashion_mnist: 0.15")
    assert not claims.below_paper("lenet300-100 on mnist5k: 1; lenet5-caffe on mnist5k: paper")


def test_dst_recipe_budgets():
    from replicate.studies import dst as study

    assert study.steps_vs_paper(20, 60000) == "paper"
    assert study.steps_vs_paper(3, 60000) == "0.15"
    cpu = study.budget_vs_paper(["lenet300-100", "lenet5-caffe"], ["fashion_mnist"], "cpu")
    assert cpu == "lenet300-100 on fashion_mnist: paper; lenet5-caffe on fashion_mnist: 0.15"
    assert study.budget_vs_paper(["lenet300-100"], ["mnist"], "paper") == "paper"

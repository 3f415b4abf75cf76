import math

import pandas as pd
import pytest

from replicate import references, report


def rec(acc, seed=0, status="ok"):
    return {"status": status, "config": {"seed": seed}, "metrics": {"test_acc": acc} if status == "ok" else {}}


def test_row_mean_std_and_difference_only_when_comparable():
    paper = references.lookup("han2015", "lenet300-100", "dense", "test_error_pct")
    assert paper["value"] == 1.64 and paper["verified"]
    recs = [rec(0.9), rec(0.8, 1), rec(None, 2, "failed")]
    r = report.row("dense", "lenet300-100", "fashion_mnist", "cpu", "acc", recs,
                   lambda x: x["metrics"]["test_acc"], paper)
    assert math.isclose(r["ours_mean"], 0.85) and math.isclose(r["ours_std"], 0.0707106, rel_tol=1e-5)
    assert r["n_seeds"] == 2 and r["n_failed"] == 1
    assert math.isnan(r["diff"])  # paper on MNIST, ours on Fashion-MNIST
    assert "paper on mnist, ours on fashion_mnist" in r["note"]
    same = report.row("dense", "lenet300-100", "mnist", "paper", "err", [rec(1.5)],
                      lambda x: x["metrics"]["test_acc"], paper)
    assert math.isclose(same["diff"], 1.5 - 1.64)


def test_written_table_has_the_standard_columns(tmp_path, monkeypatch):
    monkeypatch.setenv("REPLICATE_ROOT", str(tmp_path))
    df = report.table([report.row("e", "m", "d", "cpu", "x", [rec(1.0)], lambda r: r["metrics"]["test_acc"])])
    path = report.write_table(df, "demo", "nb", "cpu")
    got = pd.read_csv(path)
    for col in ("experiment", "model", "dataset", "profile", "metric", "paper", "paper_source",
                "ours_mean", "ours_std", "n_seeds"):
        assert col in got.columns
    assert got.paper_source[0] == "not published"
    assert (tmp_path / "results/tables/demo/nb.md").exists()
    smoke = report.write_table(df, "demo", "nb", "smoke")
    assert "build/smoke" in str(smoke)


def test_claims_need_a_known_verdict(tmp_path, monkeypatch):
    monkeypatch.setenv("REPLICATE_ROOT", str(tmp_path))
    ok = {"claim_id": "c1", "claim": "x", "source": "s", "verdict": "supported", "evidence": "e", "notebook": "n"}
    report.write_claims("demo", [ok], "cpu")
    assert list(pd.read_csv(tmp_path / "results/claims/demo.csv").columns) == report.CLAIM_COLUMNS
    with pytest.raises(ValueError, match="valid: supported, contradicted, inconclusive, not testable here"):
        report.write_claims("demo", [{**ok, "verdict": "probably"}], "cpu")


def test_every_reference_has_a_source_and_a_verified_flag():
    for paper in references.available():
        df = references.load(paper)
        assert df.source.notna().all() and df.verified.isin([True, False]).all()


def test_claims_from_several_notebooks_are_merged_by_id(tmp_path, monkeypatch):
    monkeypatch.setenv("REPLICATE_ROOT", str(tmp_path))
    base = {"claim": "x", "source": "s", "evidence": "e", "notebook": "n"}
    report.write_claims("demo", [{**base, "claim_id": "a", "verdict": "supported"}], "cpu")
    report.write_claims("demo", [{**base, "claim_id": "b", "verdict": "inconclusive"}], "cpu")
    report.write_claims("demo", [{**base, "claim_id": "a", "verdict": "contradicted"}], "cpu")
    got = pd.read_csv(tmp_path / "results/claims/demo.csv")
    assert dict(zip(got.claim_id, got.verdict)) == {"a": "contradicted", "b": "inconclusive"}


def test_fmt_says_when_a_paper_value_is_not_available_offline_and_shows_single_measurements():
    from replicate import report
    recs = [{"status": "ok", "v": 2.0}]
    ref = {"value": float("nan"), "source": "Tartaglione et al. 2018, Table 1", "verified": False, "dataset": "mnist"}
    df = report.table([report.row("x", "lenet300-100", "mnist", "cpu", "m", recs, lambda r: r["v"], paper=ref),
                       report.row("y", "lenet300-100", "mnist", "cpu", "m", recs, lambda r: r["v"])])
    out = report.fmt(df)
    assert out["paper (value, source)"].tolist() == ["not available offline (Tartaglione et al. 2018, Table 1)",
                                                     "not published"]
    assert out["ours (mean ± std)"].tolist() == ["2.00 ± 0.00", "2.00 ± 0.00"]
    df.loc[1, "ours_std"] = float("nan")   # one measurement, no spread (e.g. a timing)
    assert report.fmt(df)["ours (mean ± std)"].tolist()[1] == "2.00"


def test_row_says_when_its_runs_used_a_training_subset():
    full = [rec(0.9), rec(0.8, 1)]
    sub = [{**r, "config": {**r["config"], "train_size": 10000}} for r in full]
    get = lambda x: x["metrics"]["test_acc"]   # noqa: E731
    assert "subset" not in report.row("e", "m", "d", "cpu", "acc", full, get)["note"]
    assert "training subset of 10,000 images" in report.row("e", "m", "d", "cpu", "acc", iter(sub), get)["note"]


def test_metric_and_paired_change_accessors():
    base = {s: {"config": {"seed": s}, "metrics": {"test_error": e}} for s, e in ((0, 0.10), (1, 0.20))}
    runs = [{"config": {"seed": s}, "metrics": {"test_error": e}} for s, e in ((0, 0.15), (1, 0.18))]
    err = report.metric("test_error", 100)
    assert err(runs[0]) == pytest.approx(15.0)
    change = report.change_vs(base, err)
    assert [round(change(r), 6) for r in runs] == [5.0, -2.0]


def test_plot_helpers_make_panels_bands_and_files(tmp_path, monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    from replicate import plots

    monkeypatch.setenv("REPLICATE_ROOT", str(tmp_path))
    fig, axes = plots.panels([("a", "x"), ("b", "x"), ("c", "x"), ("d", "x")], ncols=3)
    assert len(axes) == 4 and not fig.axes[5].get_visible()
    ax = axes[("a", "x")]
    plots.band(ax, [1, 2], [[1.0, 3.0], [2.0, 2.0]], label="m")
    plots.errorbars(ax, [1, 2], [[1.0], [2.0, 4.0]], label="e")
    plots.label(ax, "epoch", "error (%)", plots.title("lenet", "mnist5k", profile="smoke"))
    assert ax.get_title() == "lenet, mnist5k (smoke profile)" and ax.get_legend() is not None
    m, s = plots.mean_std([[1.0, 3.0], [2.0]])
    assert list(m) == [2.0, 2.0] and s[1] == 0.0
    assert plots.finish(fig, "demo", "panels", "smoke") is None
    assert (tmp_path / "build" / "smoke" / "figures" / "demo" / "panels.png").exists()


def test_published_change_is_the_difference_of_two_lookups():
    d = references.lookup("dst2020", "lenet300-100", "dense", "test_acc_pct")
    s = references.lookup("dst2020", "lenet300-100", "dst", "test_acc_pct")
    c = references.change("dst2020", "lenet300-100", "dense", "dst", "test_acc_pct", "DST Table 1 (sparse - dense)")
    assert c["value"] == round(s["value"] - d["value"], 4) and c["verified"] == (d["verified"] and s["verified"])
    assert references.change("dst2020", "lenet300-100", "dense", "no-such-method", "test_acc_pct", "x") is None


def test_list_parameters_given_as_text_are_parsed_not_split_into_characters():
    from replicate import notebook as nb
    from replicate.errors import ConfigError
    assert nb.check_subset("model", '["lenet5-caffe"]', ["lenet300-100", "lenet5-caffe"]) == ["lenet5-caffe"]
    assert nb.check_subset("model", "lenet5-caffe", ["lenet300-100", "lenet5-caffe"]) == ["lenet5-caffe"]
    with pytest.raises(ConfigError, match="unknown model 'nope'; valid: lenet300-100"):
        nb.check_subset("model", '["nope"]', ["lenet300-100", "lenet5-caffe"])


def test_evaluated_history_pairs_accuracy_with_the_evaluated_network():
    # sensitivity: remaining is read after the epoch's thresholding, accuracy before it
    hist = [{"epoch": 1, "test_acc": 0.9, "remaining": {"model": 0.8}},
            {"epoch": 2, "test_acc": 0.85, "remaining": {"model": 0.5}}]
    rec = {"config": {"method": "sensitivity"}, "history": hist, "metrics": {"test_acc": 0.8}}
    pairs = report.evaluated_history(rec)
    assert [(p["epoch"], p["test_acc"], p["remaining"]) for p in pairs] == [(1, 0.9, 1.0), (2, 0.85, 0.8), ("final", 0.8, 0.5)]
    other = report.evaluated_history({**rec, "config": {"method": "dst"}})
    assert [(p["test_acc"], p["remaining"]) for p in other] == [(0.9, 0.8), (0.85, 0.5)]


def test_metric_notes_flag_the_misleading_readings():
    latent = {"config": {"method": "uniform_quant", "args": {"bits": 1, "latent": True}}}
    assert "quantized_test_error" in report.metric_notes(latent)[0]
    assert report.metric_notes({"config": {"method": "uniform_quant", "args": {"bits": 1}}}) == []
    assert "before that epoch's thresholding" in report.metric_notes({"config": {"method": "sensitivity", "args": {}}})[0]

"""`python -m benchmarks.run`: a quick smoke run writes well-shaped records, a table and plots;
the reference adapters fit the very rows they are given."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("surprise")
pytest.importorskip("matplotlib")

from benchmarks import references  # noqa: E402
from benchmarks.run import main  # noqa: E402

RECORD_KEYS = {"protocol", "model", "config", "data", "seed", "metrics", "metrics_sd", "folds",
               "fit_seconds", "predict_seconds", "peak_memory_mb", "side", "library", "config_source"}


def _check_record(record: dict, model: str) -> None:
    assert RECORD_KEYS <= set(record)
    assert record["model"] == model and record["protocol"] == "ml100k-folds"
    assert record["data"]["name"] == "ml-100k" and len(record["data"]["sha256"]) == 64
    assert [f["name"] for f in record["folds"]] == ["u1"] and record["metrics_sd"] == {}
    fold = record["folds"][0]
    assert {"name", "metrics", "fit_seconds", "predict_seconds"} <= set(fold)
    assert fold["metrics"]["rmse"] == record["metrics"]["rmse"]
    assert 0.85 < record["metrics"]["rmse"] < 1.1 and 0.6 < record["metrics"]["mae"] < 0.9


def test_quick_only_biased_mf(tmp_path):
    configs = tmp_path / "configs"
    configs.mkdir()
    chosen = {"protocol": "ml100k-folds", "carve": "validation_split(fold train, 0.1, seed 0)"}
    fold_config = {"factors": 8, "epochs": 15, "early_stopping": False}
    (configs / "biased-mf.ml100k-folds.json").write_text(json.dumps(  # a per-fold config, as configs/ has
        {"folds": {f"u{i}": {**fold_config, "reg": 0.05 * i} for i in range(1, 6)}, "chosen": chosen}))
    out = tmp_path / "results"
    assert main(["--quick", "--only", "biased-mf", "--out", str(out), "--configs", str(configs)]) == 0

    ours = json.loads((out / "records" / "ml100k-folds__biased-mf.json").read_text())
    _check_record(ours, "biased-mf")
    assert ours["side"] == "recstack" and ours["config"]["folds"]["u1"]["factors"] == 8  # read from configs/
    assert ours["config"]["folds"]["u1"]["reg"] == 0.05 and ours["config_provenance"] == chosen
    assert ours["config_source"].endswith("biased-mf.ml100k-folds.json")
    ref = json.loads((out / "records" / "ml100k-folds__surprise-svd.json").read_text())
    _check_record(ref, "surprise-svd")
    assert ref["library"].startswith("surprise") and ref["config"]["factors"] == 100

    (row,) = json.loads((out / "speed.json").read_text())
    assert row["ours"] == "biased-mf" and row["reference"] == "surprise-svd" and row["fold"] == "u1"
    assert row["recstack"]["config"]["factors"] == 100 and not row["recstack"]["config"]["early_stopping"]
    assert row["fit_ratio"] == pytest.approx(row["recstack"]["fit_seconds"] / row["reference_side"]["fit_seconds"],
                                             rel=1e-3)
    assert row["metric_gap"] < 0.05  # same algorithm, same settings: RMSEs agree closely
    assert isinstance(row["met"], bool)

    table = (out / "README.md").read_text()
    assert "| `biased-mf` | recstack |" in table and "| `surprise-svd` | surprise" in table
    assert "biased-mf (1 thread) vs surprise.SVD" in table and ("**met**" in table or "**not met**" in table)
    assert (out / "rmse_vs_fit_time.png").stat().st_size > 1000
    assert not (out / "records" / "ml100k-folds__mf.json").exists()  # --only kept it out


def test_unknown_only_name_is_refused(tmp_path, capsys):
    assert main(["--quick", "--only", "no-such-model", "--out", str(tmp_path)]) == 2
    assert "no-such-model" in capsys.readouterr().err


def test_surprise_adapter_fits_our_rows(blocks):
    trainset = references.surprise_trainset(blocks)
    assert trainset.n_ratings == len(blocks)
    raw = {(trainset.to_raw_uid(u), trainset.to_raw_iid(i)): r for u, i, r in trainset.all_ratings()}
    assert raw == {(int(u), int(i)): float(r) for u, i, r in zip(blocks.user, blocks.item, blocks.rating)}
    model = references.SurpriseBaselineOnly().fit(blocks)
    pred = model.predict(blocks.user[:20], blocks.item[:20])
    assert pred.shape == (20,) and np.all((pred >= blocks.rating.min()) & (pred <= blocks.rating.max()))


def test_cornac_ease_matches_recstack_ease(blocks):
    """Two independent implementations of Steck's closed form give the same scores."""
    pytest.importorskip("cornac")
    pytest.importorskip("recstack.models.ease")
    from recstack.models.base import make_model

    users = np.arange(blocks.n_users)
    ours = make_model("ease", lambda_=10.0).fit(blocks).score(users)
    theirs = references.CornacEASE(lambda_=10.0).fit(blocks).score(users)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


def test_implicit_adapters_rank_the_blocks(blocks):
    """With only in-block interactions kept, an implicit reference's top unseen item is in-block."""
    pytest.importorskip("implicit")
    from recstack.data.synthetic import block_of
    from recstack.recommend import recommend

    liked = blocks.subset(blocks.rating >= 3)
    for model in (references.ImplicitALS(factors=4, epochs=10, reg=0.1),
                  references.ImplicitBM25(k=20)):
        model.fit(liked)
        users = np.arange(liked.n_users)
        top, _ = recommend(model, users, 1, exclude=liked.csr)
        assert np.mean(block_of(top[:, 0]) == block_of(users)) > 0.9, model.name


def test_per_fold_config_is_planned_and_mirrored(tmp_path):
    """configs/fm.ml100k-folds.json is a per-fold config: the bench gives each fold its own
    params, and myFM mirrors fm's features, rank and sweeps."""
    import argparse
    from pathlib import Path

    from benchmarks.run import build_plan

    configs = Path(__file__).resolve().parent.parent / "configs"
    args = argparse.Namespace(quick=False, only=["fm"], levels=[1, 2, 3])
    jobs, _ = build_plan(args, configs)
    fm = next(j for j in jobs if j.model == "fm")
    assert set(fm.fold_params) == {"u1", "u2", "u3", "u4", "u5"} and fm.params == {}
    my = next((j for j in jobs if j.model == "myfm"), None)
    if my is not None:
        assert my.params["features"] == fm.fold_params["u1"]["features"]
        assert my.params["factors"] == fm.fold_params["u1"]["factors"]


def test_sync_readme_replaces_only_the_marked_tables(tmp_path):
    from benchmarks.report import sync_readme

    results = tmp_path / "results.md"
    results.write_text("# run\n\nheader prose\n\n### msr-75\n\n| model | NDCG |\n|---|---|\n| `als` | 0.48 |\n\n"
                       "### speed (ratios)\n\nprose | with a bar\n\n| pair | ratio |\n|---|---|\n| a | 0.1 |\n")
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- bench:msr-75 -->\n| model | NDCG |\n|---|---|\n| `als` | 0.40 |\n"
                      "<!-- /bench:msr-75 -->\nmiddle\n<!-- bench:speed -->\nstale\n<!-- /bench:speed -->\nend\n")
    assert sync_readme(readme, results) == ["msr-75", "speed"]
    text = readme.read_text()
    assert "| `als` | 0.48 |" in text and "0.40" not in text and "stale" not in text
    assert text.startswith("intro\n") and "\nmiddle\n" in text and text.endswith("end\n")
    assert "prose | with a bar" not in text  # only table lines are copied
    before = text
    sync_readme(readme, results)
    assert readme.read_text() == before  # idempotent
    readme.write_text(before + "<!-- bench:cold-items -->\n<!-- /bench:cold-items -->\n")
    with pytest.raises(SystemExit, match="cold-items"):
        sync_readme(readme, results)


def test_myfm_adapter_fits_with_the_date_block(ml100k_u1):
    """The myFM reference on fm's design with the rating day (as the bench runs it): it fits,
    a test day seen in training moves the estimate, and its RMSE is a factor model's on u1."""
    pytest.importorskip("myfm")
    train, test = ml100k_u1
    model = references.MyFM(features="genres,date", factors=4, burn_in=3, samples=20).fit(train)
    est = model.predict(test.user, test.item, timestamps=test.timestamp)
    assert np.sqrt(np.mean((est - test.rating) ** 2)) < 0.95
    assert not np.allclose(est, model.predict(test.user, test.item))  # no day: no date term

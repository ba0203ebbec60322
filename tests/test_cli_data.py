"""`recstack data synth` and `--data PARQUET` on train, evaluate and recommend, end to end."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from tests.test_cli import TINY, one_json, refused, run


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "s"
    info = one_json(run("data", "synth", "--users", "200", "--items", "150", "--ratings", "8000",
                        "--seed", "2", "--out", str(out), "--json").stdout)
    assert (info["n"], info["n_users"], info["n_items"]) == (8000, 200, 150)
    return out


def test_synth_writes_the_four_columns(synth_dir):
    table = pq.read_table(synth_dir / "ratings.parquet")
    assert table.column_names == ["user", "item", "rating", "timestamp"] and table.num_rows == 8000
    ratings = table["rating"].to_numpy()
    assert ratings.min() >= 1 and ratings.max() <= 5


def test_train_evaluate_and_recommend_read_parquet(synth_dir, tmp_path):
    rec = one_json(run("train", "als", *TINY, "--data", str(synth_dir), "--out", str(tmp_path / "m"),
                       "--json").stdout)
    assert rec["out"] == str(tmp_path / "m")
    ev = one_json(run("evaluate", "biased-mf", *TINY, "--protocol", "random-80-20", "--data",
                      str(synth_dir / "ratings.parquet"), "--json").stdout)
    assert ev["data"]["name"] == "s" and 0.3 < ev["metrics"]["rmse"] < 1.5
    top = one_json(run("recommend", str(tmp_path / "m"), "--user", "5", "-k", "5", "--json").stdout)
    assert len(top["items"]) == 5
    # --data: the user's items in that table are excluded too (here: all of the training data,
    # so the answer must not change, and none of them may appear)
    again = one_json(run("recommend", str(tmp_path / "m"), "--user", "5", "-k", "5", "--data",
                         str(synth_dir), "--json").stdout)
    assert [r["item"] for r in again["items"]] == [r["item"] for r in top["items"]]


def test_train_als_reads_parquet_the_lean_way(synth_dir, tmp_path):
    """A model that fits from the rating matrix alone (als): no timestamp column read, rows in
    the CSR's order; the factors are those of a fit on the rows in file order."""
    import numpy as np

    from recstack.data.parquet import read_parquet
    from recstack.models.base import make_model
    from recstack.persist import load_model

    proc = run("train", "als", *TINY, "--data", str(synth_dir), "--out", str(tmp_path / "m"), "--json")
    assert "timestamps not read" in proc.stderr
    saved = load_model(tmp_path / "m")
    assert not saved.train.timestamp.any() and np.all(np.diff(saved.train.user) >= 0)
    params = one_json(proc.stdout)["config"]
    direct = make_model("als", params).fit(read_parquet(synth_dir))
    # equal up to float32 rounding: a kernel compiled in this process and one loaded from numba's
    # cache by the CLI's may round differently in the last bits, which CG iterations carry on
    np.testing.assert_allclose(saved.model.item_factors_, direct.item_factors_, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(saved.model.user_factors_, direct.user_factors_, rtol=1e-3, atol=1e-4)
    timed = run("train", "biased-mf", *TINY, "--data", str(synth_dir), "--out", str(tmp_path / "b"))
    assert "timestamps not read" not in timed.stderr
    assert load_model(tmp_path / "b").train.timestamp.any()


def test_recommend_data_excludes_newer_history(synth_dir, tmp_path):
    import pyarrow as pa

    run("train", "als", *TINY, "--data", str(synth_dir), "--out", str(tmp_path / "m"))
    top = one_json(run("recommend", str(tmp_path / "m"), "--user", "5", "-k", "5", "--json").stdout)
    first = top["items"][0]["item"]
    newer = tmp_path / "newer.parquet"
    pq.write_table(pa.table({"user": [5], "item": [int(first)]}), newer)
    again = one_json(run("recommend", str(tmp_path / "m"), "--user", "5", "-k", "5", "--data", str(newer),
                         "--json").stdout)
    items = [r["item"] for r in again["items"]]
    assert first not in items and items[:4] == [r["item"] for r in top["items"][1:]]
    assert [r["rank"] for r in again["items"]] == [1, 2, 3, 4, 5]


def test_evaluate_custom_with_parquet_parts(synth_dir, tmp_path):
    import pyarrow as pa

    table = pq.read_table(synth_dir / "ratings.parquet")
    n = table.num_rows
    pq.write_table(table.slice(0, int(n * 0.8)), tmp_path / "train.parquet")
    pq.write_table(table.slice(int(n * 0.8)), tmp_path / "test.parquet")
    ev = one_json(run("evaluate", "biased-mf", *TINY, "--protocol", "custom", "--train",
                      str(tmp_path / "train.parquet"), "--test", str(tmp_path / "test.parquet"),
                      "--json").stdout)
    assert 0.3 < ev["metrics"]["rmse"] < 1.5
    pq.write_table(pa.table({"user": [1, 1], "item": [2, 2]}), tmp_path / "dup.parquet")
    refused(run("train", "als", "--data", str(tmp_path / "dup.parquet"), "--out", str(tmp_path / "x"), ok=False),
            "dup.parquet", "duplicate (user, item) pair (1, 2)")

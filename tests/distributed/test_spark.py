"""Spark MLlib ALS and Spark batch top-k against the in-process `als` and top-k, on small data."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from recstack.data.parquet import write_parquet
from recstack.data.synthetic import synthetic_interactions
from recstack.distributed.batch import local_top_k
from recstack.evaluate import topn_metrics
from recstack.models.als import ALS
from recstack.split import stratified_split

CFG = {"mode": "implicit", "factors": 8, "epochs": 6, "reg": 0.1, "reg_scaling": "count", "alpha": 1.0}


@pytest.fixture(scope="module")
def synth():
    data = synthetic_interactions(300, 120, 9_000, seed=5)
    return data, *stratified_split(data, 0.75, "item", 42)


def test_spark_and_in_process_als_agree_with_count_scaled_reg(spark, synth):
    from recstack.distributed.spark import fit_als_spark, mllib_reg

    _, train, test = synth
    local = ALS(CFG).fit(train)
    remote = fit_als_spark(spark, train, CFG)
    assert mllib_reg(remote.config, train) == 0.1  # count scaling passes λ through
    a = topn_metrics(local, train, test, 10, "train")[0]["ndcg@10"]
    b = topn_metrics(remote, train, test, 10, "train")[0]["ndcg@10"]
    pop = topn_metrics(ALS(CFG, epochs=1, factors=1).fit(train), train, test, 10, "train")[0]["ndcg@10"]
    assert abs(a - b) < 0.02 and b > pop


def test_spark_top_k_equals_local_top_k(spark, synth):
    from recstack.distributed.spark import spark_top_k

    _, train, _ = synth
    model = ALS(CFG).fit(train)
    users, items, scores = spark_top_k(spark, model.user_factors_, model.item_factors_, train, 10)
    lu, litems, lscores = local_top_k(model, train.csr, 10)
    np.testing.assert_array_equal(users, lu)
    same = (items == litems).all(axis=1).mean()
    assert same >= 0.99
    np.testing.assert_allclose(scores, lscores, rtol=1e-4, atol=1e-5)
    seen = train.csr
    assert not any(seen[u, items[u]].nnz for u in range(0, train.n_users, 7))


def test_cli_train_spark_then_batch_recommend_both_engines(spark, synth, tmp_path, capsys):
    from recstack.cli import main

    data, _, _ = synth
    write_parquet(data, tmp_path / "d")
    assert main(["train", "als", "--engine", "spark", "--master", "local[2]", "--data", str(tmp_path / "d"),
                 *[f"-p{k}={v}" for k, v in CFG.items()], "--out", str(tmp_path / "m"), "--json"]) == 0
    for engine in ("spark", "local"):
        assert main(["batch-recommend", str(tmp_path / "m"), "--engine", engine, "-k", "5",
                     "--out", str(tmp_path / f"{engine}.parquet"), "--json"]) == 0
    a = pq.read_table(tmp_path / "spark.parquet").to_pandas()
    b = pq.read_table(tmp_path / "local.parquet").to_pandas()
    expected = np.minimum(5, data.n_items - data.user_activity).sum()  # heavy users have < 5 unseen
    assert list(a.columns) == ["user", "item", "rank", "score"] and len(a) == len(b) == expected
    top_a = a.sort_values(["user", "rank"]).groupby("user")["item"].apply(tuple)
    top_b = b.sort_values(["user", "rank"]).groupby("user")["item"].apply(tuple)
    assert (top_a == top_b).mean() >= 0.99
    # the saved folder serves `recommend` unchanged
    capsys.readouterr()
    assert main(["recommend", str(tmp_path / "m"), "--user", str(top_b.index[0]), "-k", "5", "--json"]) == 0
    import json

    rec = json.loads(capsys.readouterr().out)
    assert tuple(int(r["item"]) for r in rec["items"]) == top_b.iloc[0]


def test_torch_distributor_runs_the_same_data_parallel_training(spark, synth):
    pytest.importorskip("torch")
    from recstack.models.base import make_model

    _, train, test = synth
    base = {"epochs": 2, "early_stopping": False, "batch_size": 512, "factors": 16, "seed": 0, "threads": 1}
    one = make_model("lightgcn", base).fit(train)
    two = make_model("lightgcn", {**base, "engine": "spark", "processes": 2}).fit(train)
    a = topn_metrics(one, train, test, 10, "train")[0]["ndcg@10"]
    b = topn_metrics(two, train, test, 10, "train")[0]["ndcg@10"]
    assert abs(a - b) <= 0.005 and two.epochs_ == 2

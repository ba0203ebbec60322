"""`hybrid`: conformance, kernel vs slow twin, new items and users from features, quality floors."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recstack.data.synthetic import block_data, block_of
from recstack.errors import DataError
from recstack.features.matrix import item_feature_matrix
from recstack.models.base import make_model
from recstack.models.hybrid import feature_rows, hybrid_epoch, hybrid_epoch_slow
from tests.models.conformance import ModelConformance

TINY = {"factors": 8, "epochs": 15, "learning_rate": 0.1, "min_rating": 3.0}


class TestHybrid(ModelConformance):
    model_name = "hybrid"
    params = TINY


class TestHybridBPR(ModelConformance):
    model_name = "hybrid"
    params = {**TINY, "loss": "bpr", "epochs": 30}


def with_block_features(data, n_blocks=2):
    """Block data whose items carry their block as a genre and users their block as occupation."""
    genres = [[f"g{b}"] for b in block_of(np.arange(data.n_items), n_blocks)]
    items = pd.DataFrame({"genres": genres, "year": 1990 + np.arange(data.n_items) % 7})
    users = pd.DataFrame({"occupation": [f"o{b}" for b in block_of(np.arange(data.n_users), n_blocks)]})
    return replace(data, item_features=items, user_features=users)


@pytest.mark.parametrize("warp", [True, False])
def test_kernel_matches_slow_twin(warp):
    data = with_block_features(block_data(n_users=30, n_items=20, density=0.4, seed=3))
    rows, _ = feature_rows(item_feature_matrix(data), data.n_items, True, 1.0)
    urows = sp.identity(data.n_users, dtype=np.float32, format="csr")
    rng = np.random.default_rng(0)
    pos = data.csr.copy()
    pos.sort_indices()
    coo = pos.tocoo()
    users, items = coo.row.astype(np.int32), coo.col.astype(np.int32)
    neg = rng.integers(0, data.n_items, (len(users), 5), dtype=np.int32)
    start = [(rng.random((m.shape[1], 6)) - 0.5).astype(np.float32) for m in (urows, rows)]
    outs = []
    for fn in (hybrid_epoch, hybrid_epoch_slow):
        EU, EI = start[0].copy(), start[1].copy()
        BI = np.zeros(rows.shape[1], np.float32)
        GU, GI, GBI = np.ones_like(EU), np.ones_like(EI), np.ones_like(BI)
        loss = fn(users, items, neg, pos.indptr.astype(np.int64), pos.indices.astype(np.int32),
                  urows.indptr.astype(np.int64), urows.indices.astype(np.int32), urows.data,
                  rows.indptr.astype(np.int64), rows.indices.astype(np.int32), rows.data,
                  EU, EI, BI, GU, GI, GBI, np.float32(0.05), np.float32(1e-4), np.float32(1e-4), warp, data.n_items)
        outs.append((loss, EU, EI, BI))
    assert outs[0][0] == pytest.approx(outs[1][0], rel=1e-4)
    for a, b in zip(outs[0][1:], outs[1][1:]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert not np.allclose(outs[0][1], start[0])  # it learned something


def test_new_item_scored_from_features_alone():
    data = with_block_features(block_data(n_users=60, n_items=40, density=0.5, seed=0))
    model = make_model("hybrid", {**TINY, "epochs": 30, "item_features": "genres", "user_features": "none"}).fit(data)
    users = np.arange(data.n_users)
    for g in (0, 1):
        s = model.score_new_item([f"genre=g{g}"])
        assert s.shape == (data.n_users,)
        mine = block_of(users) == g
        assert s[mine].min() > s[~mine].max()  # every fan of the genre above every other user
    with pytest.raises(DataError, match="unknown item feature.*'genre=nope'"):
        model.score_new_item(["genre=nope"])


def test_cold_item_in_vocabulary_uses_features():
    data = with_block_features(block_data(n_users=60, n_items=40, density=0.5, seed=0))
    cold = np.array([0, 1])  # one item of each block: drop all their rows from training
    train = data.subset(~np.isin(data.item, cold))
    model = make_model("hybrid", {**TINY, "epochs": 30, "item_features": "genres", "user_features": "none"}).fit(train)
    s = model.score(np.arange(data.n_users), cold)
    right = np.argmax(s, axis=1) == block_of(np.arange(data.n_users))  # item 0 is block 0, item 1 block 1
    assert right.mean() >= 0.95


def test_new_user_from_demographics_and_ratings():
    data = with_block_features(block_data(n_users=60, n_items=40, density=0.5, seed=0))
    model = make_model("hybrid", {**TINY, "epochs": 30}).fit(data)
    items = np.arange(data.n_items)
    for g in (0, 1):
        s = model.score_new_user(np.array([], np.int64), np.array([]), features=[f"occupation=o{g}"])
        assert (block_of(np.argsort(-s)[:10]) == g).all()  # demographics alone place the user
    s = model.score_new_user(np.array([1, 3, 5]), np.array([5.0, 5.0, 5.0]))  # no features: ratings only
    top = np.argsort(-s)
    top = top[~np.isin(top, [1, 3, 5])][:10]
    assert (block_of(items[top]) == 1).mean() >= 0.9


def test_explain_parts_sum_to_the_score():
    data = with_block_features(block_data(n_users=30, n_items=20, density=0.5, seed=1))
    model = make_model("hybrid", {**TINY, "item_features": "genres,year"}).fit(data)
    e = model.explain(3, 7)
    assert {p["key"] for p in e.parts} >= {"id", "genre=g1"} and e.exact
    assert e.score == pytest.approx(float(model.score([3], [7])[0, 0]), rel=1e-4, abs=1e-5)
    from recstack.persist import SavedModel
    from recstack.recommend import Recommender

    out = Recommender(SavedModel(model, data, {})).explain("3", "7")
    assert {"feature": "genre=g1", "contribution": pytest.approx(next(
        p["contribution"] for p in e.parts if p["key"] == "genre=g1"))} in out["parts"]


@pytest.mark.slow
def test_quality_floor_cold_items(ml100k):
    from recstack.evaluate import run_protocol

    rec = run_protocol("hybrid", "cold-items", data=ml100k,
                       params={"item_features": "genres,year", "user_features": "none", "epochs": 10})
    assert rec["metrics"]["ndcg@10"] > 0.14  # popular 0.130, content 0.131 on this split


def test_kg_model_requires_the_graph():
    from recstack.errors import ConfigError

    assert make_model("kg").config.item_features == "genres,year,kg"
    with pytest.raises(ConfigError, match="needs the 'kg' group"):
        make_model("kg", {"item_features": "genres"})


def test_kg_features_reach_the_model(ml100k):
    model = make_model("kg", {"epochs": 1, "factors": 4, "user_features": "none"})
    items, _ = model._features(ml100k)
    assert "kg" in set(items.groups) and "genre" in set(items.groups)


@pytest.mark.slow
def test_quality_floor_cold_users_beats_popular(ml100k):
    from recstack.evaluate import run_protocol

    hybrid = run_protocol("hybrid", "cold-users", data=ml100k,
                          params={"item_features": "genres,year", "epochs": 20})["metrics"]["ndcg@10"]
    assert hybrid > 0.4677 + 0.01  # popular's ndcg@10 at 5 given on this split

"""`item-knn` / `user-knn`: conformance in both modes, kernels against their twins, Surprise's
KNNBaseline numbers, a memory-safe sparse neighbour matrix, quality floors on MovieLens."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recstack.data.interactions import Interactions
from recstack.errors import ConfigError, RecstackError
from recstack.evaluate import rating_metrics, topn_metrics
from recstack.models.base import make_model
from recstack.models.knn import ItemKNN, UserKNN, bm25_weight
from recstack.models.similarity import (
    BASELINE,
    COSINE,
    DOT,
    MEANS,
    PEARSON,
    PLAIN,
    estimate_pairs,
    estimate_pairs_slow,
    neighbour_block,
    neighbour_block_slow,
    top_neighbours,
)
from tests.models.conformance import ModelConformance


class TestItemKNN(ModelConformance):
    model_name = "item-knn"
    params = {"k": 10}


class TestUserKNN(ModelConformance):
    model_name = "user-knn"
    params = {"k": 10, "similarity": "pearson", "estimator": "means", "shrinkage": 0.0}


class TestItemKNNRanking(ModelConformance):
    model_name = "item-knn"
    params = {"mode": "ranking", "similarity": "bm25", "k": 10}


class TestUserKNNRanking(ModelConformance):
    model_name = "user-knn"
    params = {"mode": "ranking", "similarity": "cosine", "k": 10}


def _random_csr(n_rows, n_cols, density, seed):
    rng = np.random.default_rng(seed)
    m = sp.random(n_rows, n_cols, density=density, random_state=rng, format="csr")
    m.data = rng.integers(1, 6, len(m.data)).astype(np.float64)
    m.sort_indices()
    return m


def _arrays(a):
    t = a.T.tocsr()
    t.sort_indices()
    i64 = np.int64
    return (a.indptr.astype(i64), a.indices.astype(i64), a.data, t.indptr.astype(i64),
            t.indices.astype(i64), t.data)


@pytest.mark.parametrize("kind,shrinkage", [(COSINE, 0.0), (COSINE, 5.0), (PEARSON, 0.0), (DOT, 2.0)])
def test_similarity_kernel_matches_slow_twin(kind, shrinkage):
    a = _random_csr(30, 25, 0.35, 0)
    keep = 29
    fast = neighbour_block(*_arrays(a), 3, 27, kind, shrinkage, 2, keep, 4)
    slow = neighbour_block_slow(*_arrays(a), 3, 27, kind, shrinkage, 2, keep)
    np.testing.assert_array_equal(fast[0], slow[0])
    for r in range(24):
        n = fast[0][r]
        got = dict(zip(fast[1][r, :n].tolist(), fast[2][r, :n].tolist()))
        want = dict(zip(slow[1][r, :n].tolist(), slow[2][r, :n].tolist()))
        assert got.keys() == want.keys()
        np.testing.assert_allclose([got[j] for j in want], list(want.values()), rtol=1e-5)
        assert (np.diff(fast[2][r, :n]) <= 0).all()  # best first


def test_pruning_keeps_the_best_and_blocks_agree():
    a = _random_csr(60, 40, 0.3, 1)
    full = top_neighbours(a, COSINE, 0.0, 1, 59)
    pruned = top_neighbours(a, COSINE, 0.0, 1, 5, block_elements=20)  # 4 rows per block
    assert (np.diff(pruned.indptr) <= 5).all()
    for r in range(60):
        lo, hi = full.indptr[r], full.indptr[r + 1]
        want = full.data[lo:hi][:5]
        np.testing.assert_allclose(pruned.data[pruned.indptr[r]:pruned.indptr[r + 1]], want)
    again = top_neighbours(a, COSINE, 0.0, 1, 5)
    np.testing.assert_array_equal(again.indices, pruned.indices)


@pytest.mark.parametrize("estimator", [PLAIN, MEANS, BASELINE])
def test_estimate_kernel_matches_slow_twin(estimator):
    x = _random_csr(25, 30, 0.3, 2)  # users × items
    nb = top_neighbours(x.T.tocsr(), COSINE, 1.0, 1, 29)
    rng = np.random.default_rng(3)
    ys = np.sort(rng.integers(0, 25, 200))
    xs = rng.integers(0, 30, 200)
    bounds = np.r_[0, np.flatnonzero(np.diff(ys)) + 1, len(ys)].astype(np.int64)
    args = (xs.astype(np.int64), ys.astype(np.int64), bounds, nb.indptr.astype(np.int64),
            nb.indices.astype(np.int64), nb.data.astype(np.float64), x.indptr.astype(np.int64),
            x.indices.astype(np.int64), x.data, 4, 2, estimator, 3.0, rng.normal(0, 0.3, 30),
            rng.normal(0, 0.3, 25), rng.uniform(2, 4, 30), 1.0, 5.0)
    np.testing.assert_allclose(estimate_pairs(*args, 3), estimate_pairs_slow(*args), rtol=1e-12)


def test_matches_surprise_knnbaseline(ml100k):
    """Default item-knn = Surprise's KNNBaseline(k=40, pearson_baseline, item-based), estimate for estimate."""
    surprise = pytest.importorskip("surprise")
    import pandas as pd

    small = ml100k.subset(np.arange(12000))
    train, test = small.subset(np.arange(10000)), small.subset(np.arange(10000, 12000))
    ours = ItemKNN().fit(train).predict(test.user, test.item)
    frame = pd.DataFrame({"u": train.user, "i": train.item, "r": train.rating})
    ts = surprise.Dataset.load_from_df(frame, surprise.Reader(rating_scale=(1, 5))).build_full_trainset()
    algo = surprise.KNNBaseline(k=40, sim_options={"name": "pearson_baseline", "user_based": False},
                                verbose=False).fit(ts)
    theirs = np.array([algo.predict(int(u), int(i)).est for u, i in zip(test.user, test.item)])
    seen = np.isin(test.user, train.user) & np.isin(test.item, train.item)
    np.testing.assert_allclose(ours[seen], theirs[seen], atol=1e-5)


def test_memory_safe_sparse_neighbours():
    """100,000 items: the stored state is a sparse matrix with ≤ k (or max_neighbours) per row."""
    rng = np.random.default_rng(0)
    n_users, n_items, n = 5000, 100_000, 60_000
    items = (rng.pareto(1.2, n) * 50).astype(np.int64) % n_items
    users = rng.integers(0, n_users, n)
    key = np.unique(users * n_items + items)
    data = Interactions.from_arrays(key // n_items, key % n_items, rng.integers(1, 6, len(key)),
                                    user_ids=np.arange(n_users).astype(str),
                                    item_ids=np.arange(n_items).astype(str))
    for params, cap in (({"mode": "ranking", "similarity": "bm25", "k": 20}, 20),
                        ({"k": 10, "max_neighbours": 30}, 30)):
        m = ItemKNN(**params).fit(data)
        per_row = np.diff(m.neighbour_indptr_)
        assert len(per_row) == n_items and per_row.max() <= cap
        assert m.neighbour_sims_.nbytes <= 4 * cap * n_items  # never an n×n array
        assert all(v.size <= cap * n_items + n_items + 1 for v in vars(m).values() if isinstance(v, np.ndarray))
        assert np.isfinite(m.score([0, 1], np.arange(100))).all()


def test_explicit_depends_on_mode(blocks):
    assert ItemKNN().explicit and not ItemKNN(mode="ranking", similarity="bm25").explicit
    with pytest.raises(RecstackError, match="does not estimate ratings"):
        rating_metrics(ItemKNN(mode="ranking", similarity="cosine").fit(blocks), blocks, blocks)
    with pytest.raises(ConfigError, match="bm25"):
        ItemKNN(similarity="bm25")
    with pytest.raises(ConfigError, match="max_neighbours"):
        ItemKNN(k=40, max_neighbours=10)
    assert UserKNN().config.user_based and not ItemKNN().config.user_based
    assert make_model("user-knn", {"k": 5}).config.user_based


def test_bm25_weight_matches_implicit():
    nn = pytest.importorskip("implicit.nearest_neighbours")
    x = _random_csr(20, 15, 0.4, 4)
    ours = bm25_weight(x, 1.2, 0.75).toarray()
    theirs = nn.bm25_weight(x, 1.2, 0.75).toarray()
    np.testing.assert_allclose(ours, theirs, rtol=1e-10)


def test_quality_floor_u1(ml100k_u1):
    """Item-based KNNBaseline on GroupLens u1: RMSE 0.936 with Surprise's defaults; floor 0.95."""
    train, test = ml100k_u1
    metrics, _ = rating_metrics(ItemKNN().fit(train), train, test)
    assert metrics["rmse"] < 0.95


def test_quality_floor_msr_ranking(ml100k_msr):
    """BM25 item-kNN on msr-75 (implicit's BM25Recommender: NDCG@10 0.406); floor 0.40."""
    train, test = ml100k_msr
    m = ItemKNN(mode="ranking", similarity="bm25", k=200).fit(train)
    metrics, _ = topn_metrics(m, train, test, k=10, candidates="train")
    assert metrics["ndcg@10"] > 0.40


@pytest.mark.parametrize("params", [{}, {"mode": "ranking", "similarity": "bm25"}])
def test_new_user_matches_trained_user(blocks, params):
    """Folding in a trained user's own ratings gives the trained user's scores (item-based)."""
    m = ItemKNN(k=10, **params).fit(blocks)
    u = 7
    row = blocks.csr[u]
    got = m.score_new_user(row.indices, row.data)
    want = m.score([u])[0]
    if m.explicit:  # the fold-in bias is one ALS step, so estimates agree closely, not exactly
        assert np.corrcoef(got, want)[0, 1] > 0.99
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(RecstackError, match="fold in"):
        UserKNN().fit(blocks).score_new_user(row.indices, row.data)

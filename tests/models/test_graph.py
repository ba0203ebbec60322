"""`rp3beta`: conformance, blocked sparse weights against the dense formula, walk
probabilities summing to 1, a quality floor on msr-75."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recstack.errors import ConfigError
from recstack.evaluate import topn_metrics
from recstack.models.graph import RP3Beta, rp3beta_weights, rp3beta_weights_slow
from tests.models.conformance import ModelConformance


class TestRP3Beta(ModelConformance):
    model_name = "rp3beta"
    params = {"alpha": 1.0, "beta": 0.5, "k": 20, "binary": False}


class TestRP3BetaNormalized(ModelConformance):
    model_name = "rp3beta"
    params = {"alpha": 0.8, "beta": 0.3, "k": 10, "binary": False, "normalize": True}


def _random(seed: int, shape=(30, 12), density=0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (rng.random(shape) < density) * rng.integers(1, 6, shape).astype(np.float64)
    x[:, 5] = 0.0  # an item nobody rated
    return x


@pytest.mark.parametrize(("alpha", "beta", "k", "normalize"),
                         [(1.0, 0.0, 0, False), (0.7, 0.6, 4, False), (1.3, 0.4, 3, True)])
def test_blocked_matches_dense_formula(alpha, beta, k, normalize):
    x = _random(0)
    fast = rp3beta_weights(sp.csr_matrix(x), alpha, beta, k, normalize, block=5).toarray()
    slow = rp3beta_weights_slow(x, alpha, beta, k, normalize)
    np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-15)
    assert np.all(np.diag(fast) == 0)
    if k:
        assert ((fast > 0).sum(axis=1) <= k).all()


def test_plain_walk_rows_are_probabilities():
    """α=1, β=0, no pruning: W[i] plus the return probability to i is a distribution (sums to 1)."""
    x = _random(1)
    w = rp3beta_weights(sp.csr_matrix(x), 1.0, 0.0, 0, False).toarray()
    p_ui = x / x.sum(axis=1, keepdims=True).clip(1e-300)
    p_iu = (x / x.sum(axis=0, keepdims=True).clip(1e-300)).T
    back = np.diag(p_iu @ p_ui)
    rated = x.sum(axis=0) > 0
    np.testing.assert_allclose((w.sum(axis=1) + back)[rated], 1.0, rtol=1e-12)
    assert w[~rated].sum() == 0 and w[:, ~rated].sum() == 0


def test_beta_penalises_popular_items():
    """With β > 0 the weight into item j shrinks by deg(j)^β relative to β = 0."""
    x = _random(2)
    w0 = rp3beta_weights(sp.csr_matrix(x), 1.0, 0.0, 0, False).toarray()
    w1 = rp3beta_weights(sp.csr_matrix(x), 1.0, 0.5, 0, False).toarray()
    deg = (x > 0).sum(axis=0).astype(float)
    ok = deg > 0
    np.testing.assert_allclose(w1[:, ok], w0[:, ok] / np.sqrt(deg[ok]), rtol=1e-12)


def test_bad_parameters():
    with pytest.raises(ConfigError, match="alpha"):
        RP3Beta(alpha=0.0)
    with pytest.raises(ConfigError, match="beta"):
        RP3Beta(beta=-0.1)


def test_new_user_matches_trained_user(blocks):
    m = RP3Beta(k=15, binary=False).fit(blocks)
    row = blocks.csr[4]
    np.testing.assert_allclose(m.score_new_user(row.indices, row.data), m.score([4])[0], rtol=1e-5, atol=1e-7)
    top, sims = m.similar_items(3, k=5)
    assert 3 not in top and np.all(np.diff(sims) <= 0)


def test_side_information_joins_the_walk(blocks):
    """side_weight w: W equals the plain walk on X with w·(one-hot genre/year rows) stacked under it."""
    from dataclasses import replace

    import pandas as pd

    from recstack.models.ease import side_matrix

    genres = [["A"] if i % 2 else ["B", "C"] for i in range(blocks.n_items)]
    years = pd.array([1990 + i % 5 for i in range(blocks.n_items)], dtype="Int64")
    data = replace(blocks, item_features=pd.DataFrame({"genres": genres, "year": years}))
    m = RP3Beta(alpha=0.9, beta=0.4, k=10, normalize=True, side_weight=2.0).fit(data)
    x = (data.csr.toarray() > 0).astype(float)
    stacked = np.vstack([x, 2.0 * side_matrix(data.item_features, 2).T])
    np.testing.assert_allclose(m.weights().toarray(), rp3beta_weights_slow(stacked, 0.9, 0.4, 10, True),
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(m.score([0, 1]), x[[0, 1]] @ m.weights().toarray(), rtol=1e-5, atol=1e-6)


def test_quality_floor_msr(ml100k_msr):
    """configs/rp3beta.msr-75.json (α=0.8, β=0.6, k=200, normalised, side_weight=1; chosen on a
    validation split of the train part) scores NDCG@10 0.453, P@10 0.394 on msr-75; floors 0.44, 0.38."""
    train, test = ml100k_msr
    model = RP3Beta(alpha=0.8, beta=0.6, k=200, normalize=True, side_weight=1.0).fit(train)
    metrics, _ = topn_metrics(model, train, test, k=10, candidates="train")
    assert metrics["ndcg@10"] > 0.44
    assert metrics["precision@10"] > 0.38

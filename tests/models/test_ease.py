"""`ease`: conformance, the closed form against per-column ridge regressions, a quality floor."""

from __future__ import annotations

import numpy as np
import pytest

from recstack.evaluate import topn_metrics
from recstack.models.base import make_model
from recstack.models.ease import EASE, dlae_weights, ease_weights
from tests.models.conformance import ModelConformance


class TestEASE(ModelConformance):
    model_name = "ease"
    params = {"lambda": 5.0, "binary": False}


class TestDLAE(ModelConformance):
    model_name = "ease"
    params = {"lambda": 5.0, "binary": False, "variant": "dlae", "dropout": 0.3}


def test_closed_form_matches_constrained_ridge():
    """Column j of B is the ridge regression of x_j on the other columns (diag(B) = 0)."""
    rng = np.random.default_rng(0)
    x = (rng.random((40, 9)) < 0.4).astype(np.float64) * rng.integers(1, 6, (40, 9))
    lam = 3.0
    b = ease_weights(x.T @ x, lam)
    assert np.allclose(np.diag(b), 0.0)
    for j in range(x.shape[1]):
        others = np.delete(np.arange(x.shape[1]), j)
        a = x[:, others]
        coef = np.linalg.solve(a.T @ a + lam * np.eye(len(others)), a.T @ x[:, j])
        np.testing.assert_allclose(b[others, j], coef, rtol=1e-8, atol=1e-10)


def test_dlae_closed_form():
    """DLAE minimises ||X − XB||² + ||Λ^½ B||², so (G + Λ) B = G."""
    rng = np.random.default_rng(1)
    x = (rng.random((30, 7)) < 0.5).astype(np.float64)
    g = x.T @ x
    b = dlae_weights(g, 2.0, 0.25)
    lam = np.diag(2.0 + 0.25 / 0.75 * np.diag(g))
    np.testing.assert_allclose((g + lam) @ b, g, atol=1e-9)


def test_lambda_alias_and_binary(blocks):
    m = make_model("ease", {"lambda": 300})
    assert m.config.lambda_ == 300.0
    fitted = EASE(lambda_=10.0).fit(blocks)
    assert set(np.unique(fitted.train_values_)) == {1.0}
    raw = EASE(lambda_=10.0, binary=False).fit(blocks)
    np.testing.assert_allclose(raw.train_values_, blocks.csr.data)


def test_new_user_matches_trained_user(blocks):
    m = EASE(lambda_=5.0, binary=False).fit(blocks)
    u = 3
    row = blocks.csr[u]
    np.testing.assert_allclose(m.score_new_user(row.indices, row.data), m.score([u])[0], rtol=1e-5, atol=1e-5)


def test_quality_floor_msr(ml100k_msr):
    """EASE λ=500 on msr-75 scores NDCG@10 ≈ 0.483 (Microsoft Recommenders' figure); floor 0.45."""
    train, test = ml100k_msr
    metrics, _ = topn_metrics(EASE(lambda_=500.0).fit(train), train, test, k=10, candidates="train")
    assert metrics["ndcg@10"] > 0.45
    assert metrics["precision@10"] > 0.39


def test_side_information_is_stacked_pseudo_users(blocks):
    """side_weight w: B equals plain EASE on X with w·(one-hot genre/year rows) stacked under it."""
    from dataclasses import replace

    import pandas as pd

    from recstack.errors import DataError
    from recstack.models.ease import side_matrix

    genres = [["A"] if i % 2 else ["B", "C"] for i in range(blocks.n_items)]
    years = pd.array([1990 + i % 5 for i in range(blocks.n_items)], dtype="Int64")
    data = replace(blocks, item_features=pd.DataFrame({"genres": genres, "year": years}))
    f = side_matrix(data.item_features, 2)
    assert f.shape == (blocks.n_items, 3 + 3)  # genres A, B, C; years 1990, 1992, 1994
    np.testing.assert_array_equal(f.sum(axis=1), np.where(np.arange(blocks.n_items) % 2, 2, 3))
    m = EASE(lambda_=20.0, side_weight=2.0).fit(data)
    x = data.csr.toarray()
    x[x > 0] = 1.0
    stacked = np.vstack([x, 2.0 * f.T])
    np.testing.assert_allclose(m.weights_, ease_weights(stacked.T @ stacked, 20.0), rtol=1e-4, atol=1e-6)
    with pytest.raises(DataError, match="item features"):
        EASE(side_weight=1.0).fit(blocks)

"""`baseline`: conformance (ALS and SGD), the ALS update against its loop twin, known biases, a floor."""

from __future__ import annotations

import numpy as np
import pytest

from recstack.data.interactions import Interactions
from recstack.evaluate import rating_metrics
from recstack.models.baseline import Baseline, als_biases, als_biases_slow
from recstack.recommend import recommend
from tests.models.conformance import ModelConformance


def additive_data(seed: int = 0) -> tuple[Interactions, np.ndarray, np.ndarray]:
    """Ratings exactly 3 + a_u + b_i on a random half of a 30 × 20 grid: biases are the known answer."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0, 0.5, 30), np.linspace(-1, 1, 20)
    users, items = np.nonzero(rng.random((30, 20)) < 0.5)
    return (Interactions.from_arrays(users, items, 3 + a[users] + b[items],
                                     user_ids=np.arange(30).astype(str), item_ids=np.arange(20).astype(str)),
            a, b)


class TestBaseline(ModelConformance):
    model_name = "baseline"
    params = {"method": "als"}

    def test_known_answer(self, fitted, data):
        """Biases do not personalise: the known answer is recovering additive biases (item order)."""
        data, _, b = additive_data()
        m = self.make(reg_u=0.0, reg_i=0.0, epochs=200).fit(data)
        np.testing.assert_allclose(m.item_bias_ - m.item_bias_.mean(), b - b.mean(), atol=1e-3)
        idx, _ = recommend(m, np.arange(30), k=3, exclude=data.csr)
        best_unseen = [np.setdiff1d(np.arange(20), data.csr[u].indices)[::-1][:3] for u in range(30)]
        np.testing.assert_array_equal(idx, np.array(best_unseen))


class TestBaselineSGD(TestBaseline):
    params = {"method": "sgd"}

    def test_known_answer(self, fitted, data):
        data, _, b = additive_data()
        m = self.make(reg=0.0, epochs=300, learning_rate=0.02).fit(data)
        assert np.corrcoef(m.item_bias_, b)[0, 1] > 0.99


def test_als_matches_slow_twin(blocks):
    u, i = blocks.user.astype(np.int64), blocks.item.astype(np.int64)
    r = blocks.rating.astype(np.float64)
    args = (u, i, r, blocks.n_users, blocks.n_items, float(r.mean()), 3, 5.0, 2.0)
    for x, y in zip(als_biases(*args), als_biases_slow(*args)):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ["als", "sgd"])
def test_quality_floor_u1(ml100k_u1, method):
    """GroupLens u1: μ + b_u + b_i lands near 0.953 (the reference the factor models must beat by
    a clear margin, see tests/conftest.py); a broken fit lands above 0.97 (μ alone: 1.15)."""
    train, test = ml100k_u1
    metrics, _ = rating_metrics(Baseline(method=method).fit(train), train, test)
    assert metrics["rmse"] < 0.97

"""`mf` and `biased-mf`: conformance, the numba kernel against its slow twin, a quality floor."""

from __future__ import annotations

import numpy as np
import pytest

from recstack.evaluate import rating_metrics
from recstack.models.mf import BiasedMF, sgd_epoch, sgd_epoch_slow
from tests.models.conformance import ModelConformance


class TestMF(ModelConformance):
    model_name = "mf"
    params = {"factors": 8, "epochs": 40, "early_stopping": False, "learning_rate": 0.02}


class TestBiasedMF(ModelConformance):
    model_name = "biased-mf"
    params = {"factors": 8, "epochs": 40, "early_stopping": False, "learning_rate": 0.02}


@pytest.mark.parametrize("biased", [False, True])
def test_kernel_matches_slow_twin(blocks, biased):
    rng = np.random.default_rng(1)
    u, i = blocks.user.astype(np.int64), blocks.item.astype(np.int64)
    r = blocks.rating.astype(np.float64)
    state = [rng.normal(0, 0.1, (blocks.n_users, 6)), rng.normal(0, 0.1, (blocks.n_items, 6)),
             np.zeros(blocks.n_users), np.zeros(blocks.n_items)]
    twin = [a.copy() for a in state]
    mu = float(r.mean()) if biased else 0.0
    for _ in range(3):
        order = rng.permutation(len(u))
        a = sgd_epoch(u[order], i[order], r[order], *state, mu, 0.01, 0.02, 0.03, biased)
        b = sgd_epoch_slow(u[order], i[order], r[order], *twin, mu, 0.01, 0.02, 0.03, biased)
        assert a == pytest.approx(b, rel=1e-9)
    for x, y in zip(state, twin):  # fastmath may reassociate the dot product: ulp-level differences
        np.testing.assert_allclose(x, y, rtol=1e-8, atol=1e-11)


def test_early_stopping_restores_best_epoch(ml100k_u1):
    train, _ = ml100k_u1
    m = BiasedMF(factors=10, epochs=60, patience=2).fit(train)
    hist = m.valid_rmse_history_
    assert m.best_epoch_ == int(np.argmin(hist)) + 1
    assert m.epochs_ - m.best_epoch_ <= 2 or m.epochs_ == 60


def test_biased_mf_quality_floor_u1(ml100k_u1):
    """Quality floor on GroupLens u1: a broken SGD would land far above 0.96."""
    train, test = ml100k_u1
    m = BiasedMF().fit(train)
    metrics, _ = rating_metrics(m, train, test)
    assert metrics["rmse"] < 0.96


def test_fold_in_recovers_a_known_user(ml100k_u1):
    """Folding in a trained user's own ratings gives scores close to the trained user's."""
    train, _ = ml100k_u1
    m = BiasedMF(factors=20).fit(train)
    u = 10
    rows = train.user == u
    s_new = m.score_new_user(train.item[rows], train.rating[rows])
    s_old = m.score([u])[0]
    assert np.corrcoef(s_new, s_old)[0, 1] > 0.8

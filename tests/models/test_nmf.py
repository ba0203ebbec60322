"""`nmf`: conformance, kernel vs slow twin and vs Surprise's NMF, non-negativity, a quality floor."""

from __future__ import annotations

import numpy as np
import pytest

from recstack.data.interactions import Interactions
from recstack.errors import DataError
from recstack.evaluate import rating_metrics
from recstack.models.nmf import NMF, nmf_epoch, nmf_epoch_slow
from tests.models.conformance import ModelConformance


class TestNMF(ModelConformance):
    model_name = "nmf"
    params = {"factors": 4, "epochs": 60}


class TestBiasedNMF(ModelConformance):
    model_name = "nmf"
    params = {"factors": 4, "epochs": 60, "biased": True}


def _args(data, rng, k=5):
    u, i = data.user.astype(np.int64), data.item.astype(np.int64)
    n_u = np.bincount(u, minlength=data.n_users).astype(np.float64)
    n_i = np.bincount(i, minlength=data.n_items).astype(np.float64)
    state = [rng.uniform(0, 1, (data.n_users, k)), rng.uniform(0, 1, (data.n_items, k)),
             rng.normal(0, 0.3, data.n_users), rng.normal(0, 0.3, data.n_items)]
    return u, i, data.rating.astype(np.float64), state, n_u, n_i


@pytest.mark.parametrize("biased", [False, True])
def test_kernel_matches_slow_twin(blocks, biased):
    u, i, r, state, n_u, n_i = _args(blocks, np.random.default_rng(2))
    twin = [a.copy() for a in state]
    for _ in range(3):
        a = nmf_epoch(u, i, r, *state, 3.0, biased, 0.01, 0.02, 0.06, 0.08, n_u, n_i)
        b = nmf_epoch_slow(u, i, r, *twin, 3.0, biased, 0.01, 0.02, 0.06, 0.08, n_u, n_i)
        assert a == pytest.approx(b, rel=1e-9)
    for x, y in zip(state, twin):
        np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-12)


def test_factors_stay_non_negative_even_when_biases_push_estimates_below_zero(blocks):
    """Large negative biases make r̂ < 0 for many ratings; the floor keeps every factor ≥ 0."""
    u, i, r, (P, Q, bu, bi), n_u, n_i = _args(blocks, np.random.default_rng(3))
    bu[:] = -6.0
    for _ in range(20):
        nmf_epoch(u, i, r, P, Q, bu, bi, 3.0, True, 0.001, 0.0, 0.06, 0.06, n_u, n_i)
        assert P.min() >= 0 and Q.min() >= 0 and np.isfinite(P).all() and np.isfinite(Q).all()


@pytest.mark.parametrize("biased", [False, True])
def test_fitted_factors_non_negative_on_ml100k(ml100k_u1, biased):
    train, _ = ml100k_u1
    m = NMF(biased=biased, epochs=30).fit(train)
    assert m.user_factors_.min() >= 0 and m.item_factors_.min() >= 0


def test_kernel_reproduces_surprise(ml100k_u1):
    """Surprise's order and initial state give Surprise's NMF factors (unbiased, where r̂ ≥ 0)."""
    surprise = pytest.importorskip("surprise")
    train = ml100k_u1[0].subset(np.arange(3000))
    frame = train.to_frame()[["user", "item", "rating"]]
    ts = surprise.Dataset.load_from_df(frame, surprise.Reader(rating_scale=(1, 5))).build_full_trainset()
    algo = surprise.NMF(random_state=0, n_epochs=3, n_factors=4).fit(ts)
    u = np.array([ts.to_inner_uid(x) for x in frame.user])
    i = np.array([ts.to_inner_iid(x) for x in frame.item])
    order = np.argsort(u, kind="stable")
    rs = np.random.RandomState(0)
    P, Q = rs.uniform(0, 1, (ts.n_users, 4)), rs.uniform(0, 1, (ts.n_items, 4))
    for _ in range(3):
        nmf_epoch(u[order].astype(np.int64), i[order].astype(np.int64), frame.rating.to_numpy(np.float64)[order],
                  P, Q, np.zeros(ts.n_users), np.zeros(ts.n_items), 0.0, False, 0.005, 0.02, 0.06, 0.06,
                  np.bincount(u).astype(np.float64), np.bincount(i).astype(np.float64))
    np.testing.assert_allclose(P, algo.pu, rtol=1e-9)
    np.testing.assert_allclose(Q, algo.qi, rtol=1e-9)


def test_negative_ratings_refused():
    data = Interactions.from_arrays(["a", "b"], ["x", "y"], [1.0, -1.0])
    with pytest.raises(DataError, match="non-negative"):
        NMF(factors=2, epochs=2).fit(data)


def test_unrated_item_has_no_estimate_unbiased(ml100k_u1):
    train, test = ml100k_u1
    m = NMF(epochs=5).fit(train)
    unrated = np.flatnonzero(train.item_popularity == 0)
    assert len(unrated) and np.isnan(m.predict(np.zeros(len(unrated), np.int64), unrated)).all()


@pytest.mark.parametrize("params", [{}, {"biased": True, "factors": 100, "reg": 0.06, "epochs": 100}])
def test_beats_the_baseline_on_u1(ml100k_u1, u1_baseline_rmse, u1_factor_floor, params):
    """GroupLens u1: the defaults (unbiased, 60 factors: 0.932) and a biased config (0.929) beat the
    bias-only baseline (0.953) by a clear margin. (15 factors, as this floor used before, gives
    0.947 unbiased and 0.952 biased: no better than the baseline, which a 0.98 floor hid.)"""
    train, test = ml100k_u1
    metrics, _ = rating_metrics(NMF(**params).fit(train), train, test)
    assert metrics["rmse"] < u1_factor_floor, (metrics["rmse"], u1_baseline_rmse)

"""`bpmf`: conformance, the numba kernels against their NumPy twins, sampler checks, a quality floor."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recstack.evaluate import rating_metrics
from recstack.models.bpmf import (
    BPMF,
    pair_scores,
    pair_scores_slow,
    sample_normal_wishart,
    sample_rows,
    sample_rows_slow,
    sample_wishart,
)
from tests.models.conformance import ModelConformance


class TestBPMF(ModelConformance):
    model_name = "bpmf"
    params = {"factors": 4, "burn_in": 10, "samples": 20, "keep": 10}


def _one_side(blocks, d, seed):
    rng = np.random.default_rng(seed)
    r = blocks.rating.astype(np.float64) - 3.0
    by_user = sp.csr_matrix((r, (blocks.user, blocks.item)), shape=(blocks.n_users, blocks.n_items))
    by_user.sort_indices()
    Y = np.hstack([rng.normal(0, 0.5, (blocks.n_items, d - 1)), np.ones((blocks.n_items, 1))])
    A = rng.normal(size=(d, d))
    prec = A @ A.T + d * np.eye(d)
    h = rng.normal(size=d)
    offset = rng.normal(0, 0.3, blocks.n_items)
    noise = rng.standard_normal((blocks.n_users, d))
    return by_user, Y, prec, h, offset, noise


@pytest.mark.parametrize("d", [1, 5])
def test_kernel_matches_slow_twin(blocks, d):
    """Same noise → the same draws from the kernel and its NumPy twin."""
    by_user, Y, prec, h, offset, noise = _one_side(blocks, d, seed=d)
    X = np.zeros((blocks.n_users, d))
    twin = np.zeros_like(X)
    args = (by_user.indptr, by_user.indices, by_user.data, offset, Y, prec, h, 1.7)
    sample_rows(*args, noise, X)
    sample_rows_slow(*args, noise, twin)
    np.testing.assert_allclose(X, twin, rtol=1e-10, atol=1e-12)
    assert np.abs(X).max() > 0.1  # something was drawn


def test_kernel_draws_the_right_gaussian(blocks):
    """With zero noise the draw is the posterior mean P⁻¹h; the noise adds covariance P⁻¹."""
    d = 3
    by_user, Y, prec, h, offset, _ = _one_side(blocks, d, seed=7)
    u = 5
    cols = by_user.indices[by_user.indptr[u]:by_user.indptr[u + 1]]
    t = by_user.data[by_user.indptr[u]:by_user.indptr[u + 1]] - offset[cols]
    P = prec + 2.0 * Y[cols].T @ Y[cols]
    mean = np.linalg.solve(P, h + 2.0 * Y[cols].T @ t)
    args = (by_user.indptr, by_user.indices, by_user.data, offset, Y, prec, h, 2.0)
    X = np.zeros((blocks.n_users, d))
    sample_rows(*args, np.zeros((blocks.n_users, d)), X)
    np.testing.assert_allclose(X[u], mean, rtol=1e-10)
    draws = np.empty((4000, d))
    rng = np.random.default_rng(0)
    for s in range(len(draws)):
        sample_rows(*args, rng.standard_normal((blocks.n_users, d)), X)
        draws[s] = X[u]
    np.testing.assert_allclose(np.cov(draws.T), np.linalg.inv(P), atol=0.1 * np.abs(np.linalg.inv(P)).max())


def test_pair_scores_match_twin():
    rng = np.random.default_rng(3)
    U, V = rng.normal(size=(7, 4)), rng.normal(size=(9, 4))
    u, i = rng.integers(0, 7, 50), rng.integers(0, 9, 50)
    np.testing.assert_allclose(pair_scores(u, i, U, V), pair_scores_slow(u, i, U, V), rtol=1e-12)
    np.testing.assert_allclose(pair_scores_slow(u, i, U, V)[0], U[u[0], :3] @ V[i[0], :3] + U[u[0], 3] + V[i[0], 3])


def test_wishart_mean():
    """E[Wishart(W, ν)] = ν W; the Gaussian-Wishart posterior centres on the data mean."""
    rng = np.random.default_rng(0)
    W = np.array([[2.0, 0.5], [0.5, 1.0]])
    mean = np.mean([sample_wishart(rng, W, 6.0) for _ in range(4000)], axis=0)
    np.testing.assert_allclose(mean, 6.0 * W, rtol=0.05)
    X = rng.normal([1.0, -2.0], 0.5, (5000, 2))
    mu, lam = sample_normal_wishart(rng, X, beta0=2.0, w0=1.0, nu0=2.0)
    np.testing.assert_allclose(mu, [1.0, -2.0], atol=0.05)
    np.testing.assert_allclose(np.linalg.inv(lam), 0.25 * np.eye(2), atol=0.03)


def test_scores_average_samples_not_factors(blocks):
    """The score is μ + the mean over stored samples of θ·φ — checked against a plain loop."""
    m = BPMF(factors=3, burn_in=2, samples=6, keep=3).fit(blocks)
    assert m.user_samples_.shape == (blocks.n_users, 3, 5)
    want = np.mean([m.user_samples_[:, s] @ m.item_samples_[:, s].T for s in range(3)], axis=0)
    np.testing.assert_allclose(m.score(np.arange(blocks.n_users)), want + m.global_mean_, rtol=1e-5, atol=1e-5)
    u, i = blocks.user[:40], blocks.item[:40]
    np.testing.assert_allclose(m.predict(u, i), np.clip(want[u, i] + m.global_mean_, 1, 5), rtol=1e-5, atol=1e-5)


def test_bpmf_beats_the_baseline_on_u1(ml100k_u1, u1_baseline_rmse, u1_factor_floor):
    """GroupLens u1, a short chain (0.911): beats the bias-only baseline (0.953) by a clear margin."""
    train, test = ml100k_u1
    m = BPMF(factors=10, burn_in=15, samples=40).fit(train)
    metrics, _ = rating_metrics(m, train, test)
    assert metrics["rmse"] < u1_factor_floor, (metrics["rmse"], u1_baseline_rmse)


def test_same_draws_whatever_the_thread_count(blocks):
    """Noise comes per row from the seeded generator, so 1 or 2 threads give identical fits."""
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 numba threads")
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = BPMF(factors=3, burn_in=3, samples=4).fit(blocks).score(np.arange(blocks.n_users))
        numba.set_num_threads(2)
        two = BPMF(factors=3, burn_in=3, samples=4).fit(blocks).score(np.arange(blocks.n_users))
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one, two)

"""`als`: conformance in both modes, solvers against the slow exact twin, quality floors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recstack.data.synthetic import block_of
from recstack.errors import RecstackError
from recstack.evaluate import rating_metrics, topn_metrics
from recstack.models.als import ALS, als_cg, als_solve, als_solve_slow
from recstack.recommend import recommend
from tests.models.conformance import ModelConformance


class TestALSImplicit(ModelConformance):
    model_name = "als"
    params = {"mode": "implicit", "factors": 4, "epochs": 10, "reg": 1.0, "alpha": 5.0}

    def test_known_answer(self, fitted, data):
        """Implicit feedback knows which items a user touched, not the rating: on the blocks' in-block
        interactions only (every user touches half of their own block), top unseen items are in-block."""
        inside = data.subset(block_of(data.user) == block_of(data.item))
        users = np.arange(inside.n_users)
        idx, _ = recommend(self.make().fit(inside), users, k=self.known_answer_k, exclude=inside.csr)
        assert (block_of(idx) == block_of(users)[:, None]).all()

    def test_partial_fit(self, data, tmp_path):
        """As `test_known_answer`: on the in-block interactions only."""
        self.check_partial_fit(data.subset(block_of(data.user) == block_of(data.item)), tmp_path)


class TestALSImplicitExact(TestALSImplicit):
    params = {**TestALSImplicit.params, "solver": "exact"}


class TestALSExplicit(ModelConformance):
    model_name = "als"
    params = {"mode": "explicit", "factors": 4, "epochs": 10, "reg": 0.05}


def _problem(seed=0, n=30, m=25, k=5, density=0.3):
    rng = np.random.default_rng(seed)
    mat = sp.random(n, m, density=density, format="csr", random_state=seed, dtype=np.float64)
    mat.data = 1.0 + 4.0 * mat.data  # confidences 1..5
    f32 = np.float32  # the kernels' one compiled signature: float32 values, float64 sums
    return (mat.indptr.astype(np.int64), mat.indices.astype(np.int64), mat.data.astype(f32),
            rng.normal(0, 0.1, (n, k)).astype(f32), rng.normal(0, 0.5, (m, k)).astype(f32))


def test_exact_kernel_matches_slow_twin():
    indptr, indices, conf, X, Y = _problem()
    k = X.shape[1]
    for weight, target, base, reg, per in ((conf - 1, conf, Y.T @ Y, 0.1, 0.0),  # implicit
                                           (np.ones_like(conf), conf - 3, np.zeros((k, k), np.float32), 0.0, 0.2)):
        a, b = X.copy(), X.copy()
        als_solve(indptr, indices, weight, target, a, Y, base, reg, per)
        als_solve_slow(indptr, indices, weight, target, b, Y, base, reg, per)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert not a[np.diff(indptr) == 0].any()  # explicit: rows with no ratings get 0


def test_cg_converges_to_the_exact_solve():
    """CG on a k×k positive definite system is exact after k steps; 3 warm steps keep the solution."""
    indptr, indices, conf, X, Y = _problem(1)
    k = X.shape[1]
    YtY = Y.T.astype(np.float64) @ Y
    A = (YtY + 0.1 * np.eye(k)).astype(np.float32)
    exact = X.astype(np.float64)
    als_solve_slow(indptr, indices, conf - 1, conf, exact, Y, YtY, 0.1, 0.0)
    cg = X.copy()
    als_cg(indptr, indices, conf - 1, cg, Y, A, 2 * k, 1.0)
    np.testing.assert_allclose(cg, exact, rtol=1e-4, atol=1e-5)
    warm = exact.astype(np.float32)
    als_cg(indptr, indices, conf - 1, warm, Y, A, 3, 1.0)
    np.testing.assert_allclose(warm, exact, rtol=1e-4, atol=1e-5)
    few = X.copy()  # from a cold start, 3 steps get most of the way
    als_cg(indptr, indices, conf - 1, few, Y, A, 3, 1.0)
    assert np.linalg.norm(few - exact) < 0.5 * np.linalg.norm(X - exact)


def test_cg_float32_matches_exact(ml100k_msr):
    """The training path runs CG in float32: one half-step agrees with the float64 exact solve."""
    train, _ = ml100k_msr
    ui = train.csr.astype(np.float32)
    ui.data = 1 + ui.data
    rng = np.random.default_rng(0)
    X = rng.normal(0, 0.1, (train.n_users, 8)).astype(np.float32)
    Y = rng.normal(0, 0.1, (train.n_items, 8)).astype(np.float32)
    args = (ui.indptr.astype(np.int64), ui.indices.astype(np.int64))
    exact = X.astype(np.float64)
    YtY = Y.T.astype(np.float64) @ Y
    als_solve_slow(*args, ui.data - 1.0, ui.data, exact, Y, YtY, 1.0, 0.0)
    als_cg(*args, ui.data - 1, X, Y, (YtY + np.eye(8)).astype(np.float32), 16, 1.0)
    np.testing.assert_allclose(X, exact, rtol=1e-3, atol=1e-4)


def test_cg_binary_confidence_needs_no_values():
    """Binary data: one value read for every entry (step 0) equals a constant array."""
    indptr, indices, conf, X, Y = _problem(2)
    k = X.shape[1]
    A = (Y.T.astype(np.float64) @ Y + 0.1 * np.eye(k)).astype(np.float32)
    alpha = np.float32(2.5)
    const, binary = X.copy(), X.copy()
    als_cg(indptr, indices, np.full(len(indices), alpha, np.float32), const, Y, A, 3, 1.0)
    als_cg(indptr, indices, np.ones(1, np.float32), binary, Y, A, 3, alpha, 0)  # step 0: values[0] for all
    np.testing.assert_allclose(binary, const, rtol=1e-5, atol=1e-7)
    assert not np.allclose(binary, X)


def test_explicit_flag_follows_mode(blocks):
    assert ALS(mode="explicit").explicit and not ALS(mode="implicit").explicit
    with pytest.raises(RecstackError, match="ratings"):
        ALS(mode="implicit", factors=2, epochs=1).fit(blocks).predict([0], [0])


def test_fold_in_recovers_a_known_user(ml100k_msr):
    """Folding in a trained user's items gives that user's vector (the same exact row solve)."""
    train, _ = ml100k_msr
    m = ALS(factors=16, epochs=5, solver="exact").fit(train)
    rows = train.user == 7
    x, _ = m.fold_in(train.item[rows], train.rating[rows])
    # the user's last solve used the item factors of the previous half-step: close, not equal
    assert np.corrcoef(x, m.user_factors_[7])[0, 1] > 0.95


def test_explicit_beats_the_baseline_on_u1(ml100k_u1, u1_baseline_rmse):
    """ALS-WR on GroupLens u1 (5 factors, λ 0.1, 20 epochs: 0.9505) beats the bias-only baseline
    (0.9534) — but only just: explicit ALS has no bias terms, so its best measured configs (5-20
    factors, λ 0.07-0.13) sit at 0.950-0.958, and no clear margin is possible; the earlier config
    (10 factors, 10 epochs: 0.959) was WORSE than the baseline under a 0.98 floor. μ alone: 1.15."""
    train, test = ml100k_u1
    metrics, _ = rating_metrics(ALS(mode="explicit", factors=5, epochs=20, reg=0.1).fit(train), train, test)
    assert metrics["rmse"] < u1_baseline_rmse, (metrics["rmse"], u1_baseline_rmse)


def test_implicit_quality_floor_msr(ml100k_msr):
    """msr-75 with the default (tuned) config: NDCG@10 ≈ 0.48; popularity alone gives ≈ 0.37."""
    train, test = ml100k_msr
    metrics, _ = topn_metrics(ALS().fit(train), train, test, 10, "train")
    assert metrics["ndcg@10"] > 0.42


def test_threads_do_not_change_the_factors(blocks):
    """Every row's solve is independent: 1 thread and 2 threads give the same factors."""
    one = ALS(factors=8, epochs=3, threads=1).fit(blocks)
    two = ALS(factors=8, epochs=3, threads=2).fit(blocks)
    np.testing.assert_array_equal(one.user_factors_, two.user_factors_)
    np.testing.assert_array_equal(one.item_factors_, two.item_factors_)

"""The numba top-k kernel against its NumPy twin: ties, NaN, -inf, short rows, both dtypes."""

from __future__ import annotations

import numpy as np
import pytest

from recstack.recommend import top_k_from_scores
from recstack.topk import top_k_rows, top_k_rows_serial, top_k_slow


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 3, 10, 40])
def test_kernel_equals_stable_sort(dtype, k):
    rng = np.random.default_rng(k)
    s = rng.integers(0, 6, (50, 30)).astype(dtype)  # many ties
    s[rng.random(s.shape) < 0.1] = np.nan
    s[rng.random(s.shape) < 0.1] = -np.inf
    s[3] = np.nan  # a row with nothing to rank
    s[4, 5:] = -np.inf  # a row with fewer than k
    idx, val = top_k_rows(s, k)
    ref_idx, ref_val = top_k_slow(s, k)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(val, ref_val)
    assert (idx[3] == -1).all() and np.isnan(val[3]).all()
    serial_idx, serial_val = top_k_rows_serial(s, k)  # the one-user path: same answers
    np.testing.assert_array_equal(serial_idx, ref_idx)
    np.testing.assert_array_equal(serial_val, ref_val)


def test_ties_break_by_lower_index_and_inf_ranks_first():
    idx, val = top_k_from_scores(np.array([[1.0, 2.0, 2.0, np.inf, 2.0]]), 3)
    assert idx.tolist() == [[3, 1, 2]] and val[0, 0] == np.inf
    idx, _ = top_k_from_scores(np.array([[1, 5, 5]], dtype=np.int64), 2)  # integer scores work too
    assert idx.tolist() == [[1, 2]]


def test_serial_kernel_equals_the_parallel_one():
    from recstack.topk import top_k_rows, top_k_rows_serial

    rng = np.random.default_rng(3)
    s = rng.normal(size=(50, 40)).astype(np.float32)
    s[rng.random(s.shape) < 0.3] = -np.inf
    s[0, :] = -np.inf
    for k in (1, 5, 40, 45):
        a, b = top_k_rows(s, k), top_k_rows_serial(s, k)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("name,params", [("biased-mf", {"factors": 8, "epochs": 5, "early_stopping": False}),
                                         ("als", {"factors": 8, "epochs": 3})])
def test_batch_top_k_of_factor_models_equals_recommend(name, params):
    """local_top_k's in-place factor scoring = `recommend` through model.score (seen excluded)."""
    from recstack.data.synthetic import synthetic_interactions
    from recstack.distributed.batch import local_top_k
    from recstack.models.base import make_model
    from recstack.recommend import recommend

    data = synthetic_interactions(400, 150, 8000, seed=2)
    model = make_model(name, params).fit(data)
    users, items, scores = local_top_k(model, data.csr, 10, block=64)
    ref_items, ref_scores = recommend(model, users, 10, exclude=data.csr)
    assert (items == ref_items).all(axis=1).mean() >= 0.99  # float rounding may swap a near-tie
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)
    assert not any(data.csr[u, items[u][items[u] >= 0]].nnz for u in range(0, data.n_users, 9))

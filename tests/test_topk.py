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

"""Row-wise top-k of a score matrix: a numba kernel (one pass per row, parallel over rows) and
its plain NumPy twin, the reference the kernel is tested against.

Both return the first k of a stable descending sort of each row's finite scores: ties break by
lower item index; NaN and -inf never rank; -1 / NaN pad rows with fewer than k rankable items.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _top_k_row(row, k, where, best, idx, val):  # pragma: no cover - numba
    """One row's k best into idx/val (scratch: where, best): an insertion-sorted buffer of the k
    best so far; an item enters only when strictly better than the current k-th, so the lower
    index wins a tie (the row is scanned in order)."""
    filled = 0
    for j in range(len(row)):
        s = row[j]
        if not (s > -np.inf):  # NaN and -inf
            continue
        if filled == k and s <= best[k - 1]:
            continue
        if filled < k:  # a free slot at the end; else the worst one is dropped
            pos = filled
            filled += 1
        else:
            pos = k - 1
        while pos > 0 and best[pos - 1] < s:
            best[pos] = best[pos - 1]
            where[pos] = where[pos - 1]
            pos -= 1
        best[pos] = s
        where[pos] = j
    for t in range(filled):
        idx[t] = where[t]
        val[t] = best[t]


@numba.njit(cache=True, parallel=True, nogil=True)
def top_k_rows(scores, k):  # pragma: no cover - numba
    """(n, m) float32/float64 scores → ((n, k) int64 indices, (n, k) float32 values), best first;
    rows in parallel."""
    n, m = scores.shape
    idx = np.full((n, k), -1, np.int64)
    val = np.full((n, k), np.nan, np.float32)
    for r in numba.prange(n):
        _top_k_row(scores[r], k, np.empty(k, np.int64), np.empty(k, scores.dtype), idx[r], val[r])
    return idx, val


@numba.njit(cache=True, nogil=True)
def top_k_rows_serial(scores, k):  # pragma: no cover - numba
    """`top_k_rows` on the calling thread only: for callers that run their own threads, and for a
    handful of rows (one user's answer), where waking the worker threads costs more than the scan."""
    n, m = scores.shape
    idx = np.full((n, k), -1, np.int64)
    val = np.full((n, k), np.nan, np.float32)
    where = np.empty(k, np.int64)
    best = np.empty(k, scores.dtype)
    for r in range(n):
        _top_k_row(scores[r], k, where, best, idx[r], val[r])
    return idx, val


def top_k_slow(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """NumPy twin of `top_k_rows`: a full stable sort per row."""
    s = np.where(np.isnan(scores), -np.inf, scores).astype(np.float64)
    n, m = s.shape
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    vals = np.take_along_axis(s, order, axis=1)
    idx = order.astype(np.int64)
    bad = ~np.isfinite(vals)
    idx[bad] = -1
    out = vals.astype(np.float32)
    out[bad] = np.nan
    if order.shape[1] < k:
        idx = np.pad(idx, ((0, 0), (0, k - order.shape[1])), constant_values=-1)
        out = np.pad(out, ((0, 0), (0, k - order.shape[1])), constant_values=np.nan)
    return idx, out

"""Matrix factorization trained by SGD, written from scratch.

`MF` (name `mf`): r̂(u, i) = p_u · q_i, squared error with L2, SGD, early stopping — the
level-1 model. `BiasedMF` (`biased-mf`): r̂(u, i) = μ + b_u + b_i + p_u · q_i (Funk 2006;
Koren, Bell & Volinsky 2009), the same update as Surprise's SVD.

The epoch is a numba kernel (`sgd_epoch`, float32, over rows shuffled in place by
`shuffle_rows`); `sgd_epoch_slow` and `shuffle_rows_slow` are their plain twins, used by the
tests to check the kernels. With `threads` > 1 an epoch is `dsgd_epoch`: the same kernel over
the blocks of `Strata`, the independent blocks of each stratum on parallel threads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

import numba
import numpy as np

from recstack.data.interactions import Interactions
from recstack.errors import ConfigError
from recstack.models.base import Explanation, Model, item_parts
from recstack.models.config import Config, require
from recstack.models.incremental import (
    check_extends,
    cholesky_solve,
    grow_rows,
    keep_ratings,
    merge_log,
    merge_pending,
    merged_row,
    pending,
    user_rows,
)
from recstack.progress import Bar
from recstack.split import validation_split


@numba.njit(cache=True, nogil=True, fastmath=True)
def _sgd_rows(users, items, ratings, lo, hi, P, Q, bu, bi, mu, lr, reg, reg_bias, biased):  # pragma: no cover
    """SGD updates for rows lo..hi-1 in order; returns their summed squared error.

    The factor step p ← p + lr·(e·q − reg·p) is written (1 − lr·reg)·p + (lr·e)·q: the same
    update, one multiply fewer per element. `fastmath` only lets the dot product be reassociated.
    """
    k = P.shape[1]
    zero, one = np.zeros(1, P.dtype)[0], np.ones(1, P.dtype)[0]  # kept in P's dtype
    keep = one - lr * reg
    sq = 0.0
    for idx in range(lo, hi):
        u = users[idx]
        i = items[idx]
        dot = zero
        for f in range(k):
            dot += P[u, f] * Q[i, f]
        pred = mu + dot
        if biased:
            pred += bu[u] + bi[i]
        err = ratings[idx] - pred
        sq += err * err
        if biased:
            bu[u] += lr * (err - reg_bias * bu[u])
            bi[i] += lr * (err - reg_bias * bi[i])
        step = lr * err
        for f in range(k):
            pf = P[u, f]
            qf = Q[i, f]
            P[u, f] = keep * pf + step * qf
            Q[i, f] = keep * qf + step * pf
    return sq


@numba.njit(cache=True, nogil=True)
def sgd_epoch(users, items, ratings, P, Q, bu, bi, mu, lr, reg, reg_bias, biased):  # pragma: no cover - numba
    """One SGD pass over the rows in the order given; updates P, Q (and bu, bi) in place.

    users/items: (n,) int, ratings: (n,) — the caller shuffles them (`shuffle_rows`). Works in
    the dtype of P/Q (float32 in training); scalars must share it so the inner loops vectorise.
    Returns the pass's train RMSE.
    """
    n = len(users)
    sq = _sgd_rows(users, items, ratings, 0, n, P, Q, bu, bi, mu, lr, reg, reg_bias, biased)
    return np.sqrt(sq / max(n, 1))


def dsgd_epoch(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, bounds: np.ndarray,
               seeds: np.ndarray, P: np.ndarray, Q: np.ndarray, bu: np.ndarray, bi: np.ndarray,
               mu: np.floating, lr: np.floating, reg: np.floating, reg_bias: np.floating,
               biased: bool, sub_bounds: np.ndarray | None = None) -> float:
    """One DSGD pass: rows arranged in g × g blocks (`Strata`; block j is rows bounds[j]..bounds[j+1]-1).

    Stratum s runs blocks (a, (a + s) mod g), a = 0..g-1, at once on g threads, each the
    nogil kernel `_sgd_rows`; they share no user and no item, so the result does not depend on
    the threads. A block with seeds[j] ≥ 0 is reshuffled just before its pass: as a whole
    (`shuffle_rows`), or sub-block by sub-block when `sub_bounds` (the cache-aware sub-blocks'
    row bounds, `Strata.sub_bounds`) is given, so the rows stay grouped (`shuffle_groups`).
    Returns the pass's train RMSE. Plain Python threads rather than a `parallel=True` kernel:
    the same updates, without compiling a parallel kernel (about 2 s of CPU on a cold cache)
    or starting numba's threading layer in each new process.
    """
    g = int(np.sqrt(len(seeds)) + 0.5)
    sq = np.zeros(g * g)

    def run(j: int) -> None:
        lo, hi = int(bounds[j]), int(bounds[j + 1])
        if seeds[j] >= 0 and sub_bounds is None:
            shuffle_rows(seeds[j], users[lo:hi], items[lo:hi], ratings[lo:hi])
        elif seeds[j] >= 0:
            inner = sub_bounds[(sub_bounds >= lo) & (sub_bounds <= hi)]
            shuffle_groups(seeds[j], inner, users, items, ratings)
        sq[j] = _sgd_rows(users, items, ratings, lo, hi, P, Q, bu, bi, mu, lr, reg, reg_bias, biased)

    pool = _thread_pool(g - 1)
    for s in range(g):
        blocks = [a * g + (a + s) % g for a in range(g)]
        futures = [pool.submit(run, j) for j in blocks[1:]]  # g - 1 workers, one block here
        try:
            run(blocks[0])
        finally:
            for future in futures:
                future.result()  # waits for the stratum; re-raises a worker's error
    total = 0.0
    for value in sq:  # in block order, as the kernel summed it
        total += value
    return float(np.sqrt(total / max(len(users), 1)))


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _thread_pool(n: int) -> ThreadPoolExecutor:
    """A pool of n worker threads, made once per size and reused by every epoch."""
    if n not in _POOLS:
        _POOLS[n] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="recstack-dsgd")
    return _POOLS[n]


def sgd_epoch_slow(users, items, ratings, P, Q, bu, bi, mu, lr, reg, reg_bias, biased):
    """Plain NumPy twin of `sgd_epoch`: same arguments, same update order, same result."""
    sq = 0.0
    keep = 1 - lr * reg
    for u, i, r in zip(users, items, ratings):
        pred = mu + (bu[u] + bi[i] if biased else 0.0) + float(np.sum(P[u] * Q[i]))
        err = r - pred
        sq += err * err
        if biased:
            bu[u] += lr * (err - reg_bias * bu[u])
            bi[i] += lr * (err - reg_bias * bi[i])
        pu = P[u].copy()
        P[u] = keep * pu + lr * err * Q[i]
        Q[i] = keep * Q[i] + lr * err * pu
    return np.sqrt(sq / max(len(users), 1))


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def fold_in_rows(users, indptr, indices, ratings, Q, bi, mu, reg, biased, P, bu):  # pragma: no cover - numba
    """`MF.fold_in` for each of `users` over all of their kept ratings (user-major CSR), written
    into P (and bu) by `fold_in_user`."""
    k = Q.shape[1]
    d = k + 1 if biased else k
    most = 1
    for u in users:
        most = max(most, indptr[u + 1] - indptr[u])
    H = np.ones((most, d))
    t = np.empty(most)
    rhs = np.empty(d)
    out = np.empty(d)
    for u in users:
        lo, hi = indptr[u], indptr[u + 1]
        fold_in_user(u, indices[lo:hi], ratings[lo:hi], H, t, rhs, out, Q, bi, mu, reg, biased, P, bu)


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def fold_in_user(u, items, ratings, H, t, rhs, out, Q, bi, mu, reg, biased, P, bu):  # pragma: no cover - numba
    """`MF.fold_in` of user u over (items, ratings), written into P[u] (and bu[u]): the ridge
    regression of r − μ (− b_i) on h_i = q_i (biased: [q_i, 1]) with penalty reg·n + 1, in
    float64 (HᵀH by BLAS). H (≥ n, d) has its last column 1 when biased; t, rhs, out: scratch."""
    k = Q.shape[1]
    d = H.shape[1]
    n = len(items)
    for p in range(n):
        j = items[p]
        t[p] = np.float64(ratings[p]) - mu - (bi[j] if biased else 0.0)
        for a in range(k):
            H[p, a] = Q[j, a]
    Hu = H[:n]
    A = np.dot(Hu.T, Hu)
    rhs[:] = np.dot(t[:n], Hu)
    lam = reg * n + 1.0
    for a in range(d):
        A[a, a] += lam
    cholesky_solve(A, rhs, out)
    for a in range(k):
        P[u, a] = out[a]
    if biased:
        bu[u] = out[k]


@numba.njit(cache=True, nogil=True)
def touch_rows(X):  # pragma: no cover - numba
    """Read one value per cache line of the (n, k) array X, in memory order; returns their sum.

    An update between recommendations finds the factors evicted from cache; one sequential sweep
    (prefetched by the hardware) brings them back far faster than the SGD's random row reads
    would, one miss at a time."""
    flat = X.reshape(-1)
    step = max(1, 64 // X.itemsize)
    total = 0.0
    for p in range(0, len(flat), step):
        total += flat[p]
    return total


@numba.njit(cache=True, nogil=True)
def partial_step(ev_u, ev_i, ev_r, n_items, log_u, log_i, log_r, log_prev, log_n, head, indptr, indices,
                 values, merge, n_rows, rep_u, rep_i, rep_r, replay_size, seed, epochs, P, Q, bu, bi, mu, lr,
                 reg, reg_bias, biased, fold_mu, fold_reg, resolve):  # pragma: no cover - numba
    """`MF.partial_fit` after growth, in one call: when `merge`, the pending log is first merged
    into the kept CSR (`merge_log`, rows grown to n_rows); the batch deduplicated (a later row
    for a pair wins) and sorted by (user, item), appended to the pending log (`PendingRatings`); `epochs`
    SGD passes over the batch then the replay buffer, shuffled with seed + epoch; the replay
    buffer moved on by the batch; each touched user re-solved over the kept ratings with the
    log on top (`merged_row`, `fold_in_user`) when `resolve`.

    Returns (log length, replay users, items, ratings, touched users ascending, CSR indptr,
    indices, values — new arrays after a merge — and the sum `touch_rows` read)."""
    if merge:
        indptr, indices, values = merge_log(indptr, indices, values, n_rows, n_items, log_u, log_i, log_r,
                                            log_n, head)
        log_n = 0
    m0 = len(ev_u)
    key = np.empty(m0, np.int64)
    for q in range(m0):
        key[q] = np.int64(ev_u[q]) * n_items + np.int64(ev_i[q])
    order = np.argsort(key, kind="mergesort")
    n_rep = len(rep_u)
    n_all = m0 + n_rep
    users = np.empty(n_all, np.int32)
    items = np.empty(n_all, np.int32)
    ratings = np.empty(n_all, np.float32)
    m = 0
    n_touched = 0
    for a in range(m0):
        q = order[a]
        if a + 1 < m0 and key[order[a + 1]] == key[q]:
            continue  # a later row for the same pair follows
        u = np.int32(ev_u[q])
        if m == 0 or users[m - 1] != u:
            n_touched += 1
        users[m] = u
        items[m] = np.int32(ev_i[q])
        ratings[m] = np.float32(ev_r[q])
        p = log_n + m
        log_u[p], log_i[p], log_r[p] = users[m], items[m], ratings[m]
        log_prev[p] = head[u]
        head[u] = p
        m += 1
    touched = np.empty(n_touched, np.int64)
    t = 0
    for q in range(m):
        if q == 0 or users[q] != users[q - 1]:
            touched[t] = users[q]
            t += 1
    size = min(replay_size, n_rep + m)  # the replay buffer moved on: its last `size` of (replay, batch)
    drop = n_rep + m - size
    new_u = np.empty(size, np.int32)
    new_i = np.empty(size, np.int32)
    new_r = np.empty(size, np.float32)
    for p in range(size):
        src = drop + p
        if src < n_rep:
            new_u[p], new_i[p], new_r[p] = rep_u[src], rep_i[src], rep_r[src]
        else:
            new_u[p], new_i[p], new_r[p] = users[src - n_rep], items[src - n_rep], ratings[src - n_rep]
    users[m:m + n_rep] = rep_u
    items[m:m + n_rep] = rep_i
    ratings[m:m + n_rep] = rep_r
    n_all = m + n_rep
    warm = touch_rows(P) + touch_rows(Q)  # the SGD's random rows, read in order first
    for e in range(epochs):
        shuffle_rows(np.uint64(seed) + np.uint64(e), users[:n_all], items[:n_all], ratings[:n_all])
        sgd_epoch(users[:n_all], items[:n_all], ratings[:n_all], P, Q, bu, bi, mu, lr, reg, reg_bias, biased)
    if resolve and n_touched:
        n_rows = len(indptr) - 1
        most = 1
        for u in touched:
            c = indptr[u + 1] - indptr[u] if u < n_rows else 0
            q = head[u]
            while q >= 0:
                c += 1
                q = log_prev[q]
            most = max(most, c)
        k = Q.shape[1]
        d = k + 1 if biased else k
        H = np.ones((most, d))
        tt = np.empty(most)
        rhs = np.empty(d)
        out = np.empty(d)
        row_i = np.empty(most, np.int32)
        row_r = np.empty(most, np.float32)
        stamp = np.full(len(Q), -1, np.int64)
        for u in touched:
            n = merged_row(u, indptr, indices, values, head, log_prev, log_i, log_r, stamp, row_i, row_r)
            fold_in_user(u, row_i[:n], row_r[:n], H, tt, rhs, out, Q, bi, fold_mu, fold_reg, biased, P, bu)
    return log_n + m, new_u, new_i, new_r, touched, indptr, indices, values, warm


_MASK64 = (1 << 64) - 1
_GOLDEN, _MIX1, _MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _mix64(z: int) -> int:
    """SplitMix64's output function (Steele, Lea & Flood 2014): a bijection of 64-bit integers."""
    z = ((z ^ (z >> 30)) * _MIX1) & _MASK64
    z = ((z ^ (z >> 27)) * _MIX2) & _MASK64
    return z ^ (z >> 31)


def stream_seed(a: int, b: int) -> int:
    """The shuffle seed (< 2⁶³) of update `b` of a model seeded `a`: SplitMix64's mix of `a`, then of
    that plus `b` and the golden-ratio step — a couple of microseconds, where seeding a numpy
    Generator per update took ~20 µs (a tenth of a day's update in the stream replay)."""
    return _mix64((_mix64((a + _GOLDEN) & _MASK64) + (b + 1) * _GOLDEN) & _MASK64) >> 1


@numba.njit(cache=True, nogil=True)
def shuffle_rows(seed, users, items, ratings):  # pragma: no cover - numba
    """Shuffle three parallel (n,) arrays in place with one random permutation.

    Fisher-Yates driven by SplitMix64 (Steele, Lea & Flood 2014) from the integer `seed`; the
    index for position j is the top half of (32 random bits × (j + 1)) (Lemire 2019), so rows
    counts below 2³² are supported. About ten times cheaper than `Generator.permutation` plus
    three gathers, which dominated the fit at Surprise's defaults.
    """
    s = np.uint64(seed)
    for j in range(len(users) - 1, 0, -1):
        s += np.uint64(_GOLDEN)
        z = s
        z = (z ^ (z >> np.uint64(30))) * np.uint64(_MIX1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX2)
        z = z ^ (z >> np.uint64(31))
        r = np.int64(((z >> np.uint64(32)) * np.uint64(j + 1)) >> np.uint64(32))
        users[j], users[r] = users[r], users[j]
        items[j], items[r] = items[r], items[j]
        ratings[j], ratings[r] = ratings[r], ratings[j]


@numba.njit(cache=True, nogil=True)
def shuffle_groups(seed, bounds, users, items, ratings):  # pragma: no cover - numba
    """`shuffle_rows` on each group of rows bounds[k]..bounds[k+1]-1 (group k with seed
    `seed` + k·0xBF58476D1CE4E5B9 mod 2⁶⁴): rows stay in their group. One group is exactly
    `shuffle_rows(seed, ...)` on it."""
    for k in range(len(bounds) - 1):
        lo, hi = bounds[k], bounds[k + 1]
        shuffle_rows(np.uint64(seed) + np.uint64(k) * np.uint64(_MIX1), users[lo:hi], items[lo:hi], ratings[lo:hi])


@numba.njit(cache=True, nogil=True)
def group_rows(keys, n_keys, users, items, ratings):  # pragma: no cover - numba
    """Rows reordered by key in O(n) (a counting sort, stable: rows keep their order inside a
    key) as new arrays (ratings float32), and the (n_keys + 1,) row bounds of each key."""
    n = len(keys)
    bounds = np.zeros(n_keys + 1, np.int64)
    for j in range(n):
        bounds[keys[j] + 1] += 1
    for k in range(n_keys):
        bounds[k + 1] += bounds[k]
    pos = bounds[:-1].copy()
    u = np.empty(n, users.dtype)
    it = np.empty(n, items.dtype)
    r = np.empty(n, np.float32)
    for j in range(n):
        k = keys[j]
        p = pos[k]
        pos[k] = p + 1
        u[p] = users[j]
        it[p] = items[j]
        r[p] = ratings[j]
    return u, it, r, bounds


def shuffle_rows_slow(seed: int, *arrays: np.ndarray) -> None:
    """Plain-Python twin of `shuffle_rows`: the same permutation of each array, in place."""
    s = seed & _MASK64
    for j in range(len(arrays[0]) - 1, 0, -1):
        s = (s + _GOLDEN) & _MASK64
        z = ((s ^ (s >> 30)) * _MIX1) & _MASK64
        z = ((z ^ (z >> 27)) * _MIX2) & _MASK64
        z ^= z >> 31
        r = ((z >> 32) * (j + 1)) >> 32
        for a in arrays:
            a[j], a[r] = a[r], a[j]


class Strata:
    """The g × g blocks of DSGD (Gemulla, Nijkamp, Haas & Sismanis, KDD 2011) for g threads.

    Users are cut into g contiguous index ranges holding about equal numbers of rows, items
    likewise; block (a, b) holds the rows of user range a and item range b, and `arrange` puts
    the rows in block order with block j at rows bounds[j]..bounds[j+1]-1. The g blocks
    (a, (a + s) mod g) of stratum s share no user and no item, so threads update them at once
    without locks and the result does not depend on thread timing. Contiguous ranges keep the
    threads off each other's cache lines: randomly drawn groups put rows of both threads in one
    line and were measured slower than one thread. g = 1 is one block (serial SGD).

    `tile` > 0 (cache-aware order): inside each block, the rows of each (tile users × tile items)
    sub-block come one after another, so the factor rows they touch stay in cache; rows are
    random inside a sub-block. `sub_bounds` are the sub-blocks' row bounds (the blocks' own
    without tiles). Arranging is a counting sort (O(n)), then one shuffle per sub-block.
    """

    def __init__(self, users: np.ndarray, items: np.ndarray, n_users: int, n_items: int, g: int,
                 tile: int = 0) -> None:
        self.g = g
        self.per_block = tile_count(n_users, n_items, tile) if tile > 0 else 1
        self.n_keys = g * g * self.per_block
        if self.n_keys >= 2**31:
            raise ConfigError(f"tile {tile} cuts {n_users:,} users × {n_items:,} items into too many sub-blocks")
        self.keys, counts = block_keys(users, items, self._ranges(users, n_users), self._ranges(items, n_items),
                                       g, max(tile, 1), -(-n_items // tile) if tile > 0 else 1, self.per_block)
        self.sub_bounds = np.concatenate([[0], np.cumsum(counts)])
        self.bounds = self.sub_bounds[::self.per_block]

    @property
    def order(self) -> np.ndarray:
        """The stable permutation that `arrange` applies before shuffling (block order)."""
        return np.argsort(self.keys, kind="stable")

    def arrange(self, users: np.ndarray, items: np.ndarray, ratings: np.ndarray,
                seed: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """New (users, items, float32 ratings) in block (and sub-block) order; with a `seed`,
        each sub-block shuffled (`shuffle_groups`). One sub-block and a seed: exactly
        `shuffle_rows(seed, ...)` on copies of the rows."""
        u, i, r, bounds = group_rows(self.keys, self.n_keys, users, items, ratings)
        if seed is not None:
            shuffle_groups(seed, bounds, u, i, r)
        return u, i, r

    def _ranges(self, ids: np.ndarray, n: int) -> np.ndarray:
        """(n,) range of each id 0..n-1 among g contiguous ranges holding about equal row counts."""
        cum = np.cumsum(count_ids(ids, n))
        inner = np.searchsorted(cum, cum[-1] * np.arange(1, self.g) / self.g) + 1
        return np.searchsorted(inner, np.arange(n), side="right").astype(np.int32)


@numba.njit(cache=True, nogil=True)
def count_ids(ids, n):  # pragma: no cover - numba
    """`np.bincount(ids, minlength=n)` without its int64 copy of `ids`."""
    out = np.zeros(n, np.int64)
    for j in range(len(ids)):
        out[ids[j]] += 1
    return out


@numba.njit(cache=True, nogil=True)
def block_keys(users, items, user_range, item_range, g, tile, item_tiles, per_block):  # pragma: no cover
    """(n,) int32 key of each row — its DSGD block (user range × g + item range) × per_block
    + its (tile users × tile items) sub-block (`tile_key`; 0 without tiles) — and the row count
    of each of the g²·per_block keys."""
    n = len(users)
    keys = np.empty(n, np.int32)
    counts = np.zeros(g * g * per_block, np.int64)
    for j in range(n):
        u, i = users[j], items[j]
        block = user_range[u] * g + item_range[i]
        sub = (u // tile) * item_tiles + i // tile if per_block > 1 else 0
        key = block * per_block + sub
        keys[j] = key
        counts[key] += 1
    return keys, counts


def tile_count(n_users: int, n_items: int, tile: int) -> int:
    """Number of (tile users × tile items) sub-blocks of an n_users × n_items matrix."""
    return -(-n_users // tile) * -(-n_items // tile)


def tile_key(users: np.ndarray, items: np.ndarray, n_items: int, tile: int) -> np.ndarray:
    """(n,) int64 sub-block of each row: rows sharing one keep their factor rows in cache
    (tile·factors·4 bytes per side: 2 × 512 KB at tile 2048, 64 factors)."""
    return (users // tile).astype(np.int64) * -(-n_items // tile) + items // tile


@contextmanager
def numba_threads(n: int) -> Iterator[None]:
    """Run the block with numba's parallel regions on n threads (at most NUMBA_NUM_THREADS)."""
    before = numba.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        numba.set_num_threads(before)


def latest_rows(timestamp: np.ndarray, m: int) -> np.ndarray:
    """The m latest rows, oldest first (ties by row order): the last m of the stable sort by
    timestamp, found among the rows at or after the m-th latest time (no full sort)."""
    n = len(timestamp)
    if m <= 0:
        return np.empty(0, np.int64)
    if n <= m:  # every row
        return np.lexsort((np.arange(n), timestamp))
    # the m latest times of each chunk hold the m latest overall: no copy of the whole column
    step = max(m, 1 << 20)
    tops = [np.partition(timestamp[lo:lo + step], max(len(timestamp[lo:lo + step]) - m, 0))[-m:]
            for lo in range(0, n, step)]
    tops = np.concatenate(tops)
    cut = np.partition(tops, len(tops) - m)[len(tops) - m]
    cand = np.flatnonzero(timestamp >= cut)
    return cand[np.lexsort((cand, timestamp[cand]))][len(cand) - m:]


class EarlyStopping:
    """The early-stopping rule of the SGD models: keep the state of the best validation epoch;
    stop once `patience` epochs have passed without a new best (only when enabled)."""

    def __init__(self, patience: int, enabled: bool = True) -> None:
        self.patience = patience
        self.enabled = enabled
        self.best = np.inf
        self.best_epoch = 0
        self.state: tuple[np.ndarray, ...] | None = None

    def update(self, epoch: int, loss: float, *state: np.ndarray) -> bool:
        """Record `loss` of `epoch` (copying `state` when it is a new best); True means stop."""
        if loss < self.best:
            self.best, self.best_epoch, self.state = loss, epoch, tuple(a.copy() for a in state)
            return False
        return self.enabled and epoch - self.best_epoch >= self.patience


def fit_with_refit(model: Model, train: Interactions, valid: Interactions | None,
                   train_for: Callable[[Interactions, Interactions | None, int], None]) -> None:
    """The SGD models' fit: early stopping on a carve, then a refit on all of `train`.

    `train_for(part, valid, epochs)` trains from scratch and sets `epochs_`, `best_epoch_` and
    the histories. With early stopping and no `valid`, a `valid_fraction` part is carved from
    `train` (`validation_split`, seeded by `seed`) to pick the epoch count; with `refit` (the
    default) the model is then trained again from the same seed on all of `train` for
    `best_epoch_` epochs, so no training row is lost; the histories and epoch counts of the
    carved run are kept. When `valid` is given (a protocol's own validation part), every row
    of `train` is already learned from, so there is nothing to refit: early stopping restores
    the best epoch on `valid` and `valid` itself is never trained on.
    """
    c = model.config
    if valid is not None or not c.early_stopping:
        train_for(train, valid, c.epochs)
        return
    part, carved = validation_split(train, c.valid_fraction, c.seed)
    train_for(part, carved, c.epochs)
    if not c.refit:
        return
    kept = (model.epochs_, model.best_epoch_, model.train_rmse_history_, model.valid_rmse_history_)
    train_for(train, None, model.best_epoch_)
    model.epochs_, model.best_epoch_, model.train_rmse_history_, model.valid_rmse_history_ = kept


@dataclass(frozen=True)
class MFConfig(Config):
    """Hyperparameters of `mf`: the seed project's settings (100 factors, SGD at 0.01, L2 0.02,
    early stopping with patience 3); `init_std` = 0.01 was chosen on a validation part carved
    from the random-80-20 training part (0.01 / 0.05 / 0.1 gave 0.917 / 0.926 / 0.959).

    `shuffle`: "epoch" reshuffles the rows before every pass; "once" shuffles them before the
    first pass and keeps that order (Surprise's SVD never reshuffles either). For `mf`, "epoch"
    was better on that validation part (mean over seeds 0–2: 0.9122 vs 0.9138).

    `threads` > 1 runs each pass as DSGD over `threads` × `threads` blocks (`Strata`), the
    blocks of one stratum in parallel. The visiting order then depends on `threads`, so the
    numbers do too (same seed and threads → same numbers); 1 is plain serial SGD.

    `tile` (cache-aware order, `Strata`): rows are visited sub-block by sub-block of (tile users
    × tile items), random inside each, so the factor rows in use stay in the core's cache
    (2 × 512 KB at 2048 and 64 factors). Below 2048 users and items (ML-100K) there is one
    sub-block and the order is the plain shuffle. At ML-25M's shape (25M ratings, 64 factors)
    one thread did 32M updates per CPU-second in this order against 7.6M in a random one.

    `refit` (on by default): after early stopping on a carved `valid_fraction` part has picked
    the epoch count, train again from scratch on all the training data for that many epochs
    (`fit_with_refit`); off, the model keeps the state of its best epoch on the carve and never
    learns from the carved rows.
    """

    factors: int = 100
    epochs: int = 100
    learning_rate: float = 0.01
    reg: float = 0.02
    init_std: float = 0.01
    early_stopping: bool = True
    patience: int = 3
    valid_fraction: float = 0.1
    refit: bool = True
    shuffle: Literal["epoch", "once"] = "epoch"
    threads: int = 1
    tile: int = 2048  # > 0: cache-aware order, rows grouped by (tile users × tile items) sub-block; 0: off
    seed: int = 0
    # partial_fit: SGD passes over each batch of new ratings plus the replay buffer of the most
    # recent `replay_size` ratings, at `partial_learning_rate` (0: `learning_rate`)
    partial_epochs: int = 3
    replay_size: int = 1000
    partial_learning_rate: float = 0.0

    def check(self) -> None:
        require(self.factors >= 1, "factors", self.factors, "must be ≥ 1")
        require(self.epochs >= 1, "epochs", self.epochs, "must be ≥ 1")
        require(self.learning_rate > 0, "learning_rate", self.learning_rate, "must be > 0")
        require(self.reg >= 0, "reg", self.reg, "must be ≥ 0")
        require(self.init_std >= 0, "init_std", self.init_std, "must be ≥ 0")
        require(self.patience >= 1, "patience", self.patience, "must be ≥ 1")
        require(self.threads >= 1, "threads", self.threads, "must be ≥ 1")
        require(self.tile >= 0, "tile", self.tile, "must be ≥ 0 (0: off)")
        require(0 < self.valid_fraction < 1, "valid_fraction", self.valid_fraction, "must be in (0, 1)")
        require(self.partial_epochs >= 0, "partial_epochs", self.partial_epochs, "must be ≥ 0")
        require(self.replay_size >= 0, "replay_size", self.replay_size, "must be ≥ 0")
        require(self.partial_learning_rate >= 0, "partial_learning_rate", self.partial_learning_rate,
                "must be ≥ 0 (0: learning_rate)")


@dataclass(frozen=True)
class BiasedMFConfig(MFConfig):
    """Hyperparameters of `biased-mf`; `reg_bias` < 0 means "same as reg".

    Defaults chosen by a grid on a 10% validation part carved from GroupLens u1's training
    part (never a test fold): factors {50,100,200,400} × reg {0.05…0.2} × lr {0.005, 0.01}
    × reg_bias {same, 0.02, 0.005} × init_std {0.01, 0.1}. `shuffle` = "once" then beat "epoch"
    on the same part (mean over seeds 0–2: 0.9228 vs 0.9245; on the random-80-20 carve 0.9136
    vs 0.9147) and saves the per-pass shuffle.
    """

    factors: int = 200
    epochs: int = 100
    learning_rate: float = 0.01
    reg: float = 0.12
    reg_bias: float = 0.02
    init_std: float = 0.1
    shuffle: Literal["epoch", "once"] = "once"


class MF(Model):
    """Matrix factorization without biases: r̂(u, i) = p_u · q_i.

    State: `user_factors_` (n_users, factors), `item_factors_` (n_items, factors), float32.
    """

    name = "mf"
    config_class = MFConfig
    explicit = True
    biased = False

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        return {
            "factors": trial.suggest_categorical("factors", [10, 25, 50, 100, 200]),
            "learning_rate": trial.suggest_float("learning_rate", 1e-3, 3e-2, log=True),
            "reg": trial.suggest_float("reg", 1e-3, 0.3, log=True),
            "init_std": trial.suggest_float("init_std", 0.01, 0.3, log=True),
        }

    # ---- training ----------------------------------------------------------------------
    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        fit_with_refit(self, train, valid, self._sgd)

    def _sgd(self, train: Interactions, valid: Interactions | None, epochs: int) -> None:
        """Seeded SGD on `train` for up to `epochs`, early stopping on `valid` when given."""
        c = self.config
        rng = np.random.default_rng(c.seed)
        f32 = np.float32
        P = rng.standard_normal((train.n_users, c.factors), dtype=f32) * f32(c.init_std)
        Q = rng.standard_normal((train.n_items, c.factors), dtype=f32) * f32(c.init_std)
        bu = np.zeros(train.n_users, f32)
        bi = np.zeros(train.n_items, f32)
        mu = train.global_mean if self.biased else 0.0
        reg_bias = getattr(c, "reg_bias", -1.0)
        reg_bias = c.reg if reg_bias < 0 else reg_bias
        # private copies in block (and, with `tile`, sub-block) order, shuffled inside each
        strata = Strata(train.user, train.item, train.n_users, train.n_items, c.threads, c.tile)
        users, items, ratings = strata.arrange(train.user, train.item, train.rating, int(rng.integers(1 << 63)))
        sub_bounds = strata.sub_bounds if strata.per_block > 1 else None
        scalars = (f32(mu), f32(c.learning_rate), f32(c.reg), f32(reg_bias), self.biased)
        stopper = EarlyStopping(c.patience, c.early_stopping)
        train_hist, valid_hist = [], []
        bar = Bar(f"{self.name} epochs", total=epochs)
        for epoch in range(1, epochs + 1):
            reshuffle = epoch > 1 and c.shuffle == "epoch"
            if c.threads == 1:
                if reshuffle:
                    shuffle_groups(int(rng.integers(1 << 63)), strata.sub_bounds, users, items, ratings)
                rmse = sgd_epoch(users, items, ratings, P, Q, bu, bi, *scalars)
            else:
                blocks = c.threads * c.threads
                seeds = rng.integers(1 << 63, size=blocks) if reshuffle else np.full(blocks, -1)
                with numba_threads(c.threads):
                    rmse = dsgd_epoch(users, items, ratings, strata.bounds, seeds, P, Q, bu, bi, *scalars,
                                      sub_bounds=sub_bounds)
            train_hist.append(float(rmse))
            if valid is not None and len(valid):
                err = self._raw(valid.user, valid.item, P, Q, bu, bi, mu) - valid.rating
                valid_hist.append(float(np.sqrt(np.mean(err * err))))
                bar.update(train_rmse=train_hist[-1], valid_rmse=valid_hist[-1])
                if stopper.update(epoch, valid_hist[-1], P, Q, bu, bi):
                    break
            else:
                bar.update(train_rmse=train_hist[-1])
        bar.close()
        restore = c.early_stopping and stopper.state is not None
        if restore:
            P, Q, bu, bi = stopper.state
        self.epochs_ = epoch
        self.best_epoch_ = stopper.best_epoch if restore else epoch
        self.train_rmse_history_ = np.asarray(train_hist)
        self.valid_rmse_history_ = np.asarray(valid_hist)
        # users / items with no training row never got an update: drop their random start, so
        # they score as μ + b_i (+ b_u) — what the data says about them — not as noise
        P[train.user_activity == 0] = 0.0
        Q[train.item_popularity == 0] = 0.0
        self.user_factors_ = P.astype(np.float32)
        self.item_factors_ = Q.astype(np.float32)
        self.global_mean_ = float(mu)
        self.min_rating_ = float(train.rating.min())
        self.max_rating_ = float(train.rating.max())
        if self.biased:
            self.user_bias_ = bu.astype(np.float32)
            self.item_bias_ = bi.astype(np.float32)

    def _raw(self, u, i, P, Q, bu, bi, mu) -> np.ndarray:
        out = mu + np.einsum("nf,nf->n", P[u], Q[i])
        if self.biased:
            out += bu[u] + bi[i]
        return out

    # ---- scoring -------------------------------------------------------------------------
    def _score(self, users: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        Q = self.item_factors_ if items is None else self.item_factors_[items]
        s = self.user_factors_[users] @ Q.T + self.global_mean_
        if self.biased:
            bi = self.item_bias_ if items is None else self.item_bias_[items]
            s += self.user_bias_[users][:, None] + bi[None, :]
        return s

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Clipped rating estimates for (user, item) pairs; NaN for users outside the model."""
        users = np.asarray(users, np.int64)
        items = np.asarray(items, np.int64)
        known = (users >= 0) & (users < self.n_users_)
        out = np.full(len(users), np.nan, np.float32)
        u, i = users[known], items[known]
        est = self.global_mean_ + np.einsum("nf,nf->n", self.user_factors_[u], self.item_factors_[i])
        if self.biased:
            est += self.user_bias_[u] + self.item_bias_[i]
        out[known] = np.clip(est, self.min_rating_, self.max_rating_)
        return out

    # ---- optional abilities ------------------------------------------------------------
    def item_vectors(self) -> np.ndarray:
        """(n_items, f[+1]) vectors for retrieval: item factors, plus the item bias when biased."""
        if self.biased:
            return np.hstack([self.item_factors_, self.item_bias_[:, None]]).astype(np.float32)
        return self.item_factors_

    def user_vectors(self, users: np.ndarray) -> np.ndarray:
        """(len(users), f[+1]): user·item orders items exactly as `score` does (μ and b_u are
        constant per user; the bias column meets a 1)."""
        P = self.user_factors_[np.asarray(users, np.int64)]
        if self.biased:
            return np.hstack([P, np.ones((len(P), 1), np.float32)])
        return P

    def fold_in(self, items: np.ndarray, ratings: np.ndarray) -> tuple[np.ndarray, float]:
        """A new user's (factor vector, bias) from their ratings, item factors fixed.

        Ridge regression of (rating - μ - b_i) on q_i with penalty reg·n + 1 — no retraining.
        """
        items = np.asarray(items, np.int64)
        r = np.asarray(ratings, np.float64) - self.global_mean_
        Q = self.item_factors_[items].astype(np.float64)
        if self.biased:
            r = r - self.item_bias_[items]
            Q = np.hstack([Q, np.ones((len(items), 1))])
        lam = self.config.reg * len(items) + 1.0
        p = np.linalg.solve(Q.T @ Q + lam * np.eye(Q.shape[1]), Q.T @ r)
        return (p[:-1], float(p[-1])) if self.biased else (p, 0.0)

    def score_new_user(self, items: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        """(n_items,) scores for a user known only by `ratings` of `items` (see `fold_in`)."""
        p, b = self.fold_in(items, ratings)
        s = self.item_factors_ @ p.astype(np.float32) + self.global_mean_ + b
        if self.biased:
            s = s + self.item_bias_
        return s.astype(np.float32)

    def _history_system(self, items: np.ndarray, ratings: np.ndarray,
                        item: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(A, w, H, t): the fold-in as p̃ = A⁻¹ Σ_j w_j h_j, scored against t for `item`.

        MF: h_j = q_j, t = q_i, w_j = r_j − μ. Biased MF: h_j = [q_j, 1], t = [q_i, 1] (the user
        bias is solved with the factors, as `fold_in` does), w_j = r_j − μ − b_j. In both,
        A = HᵀH + (reg·n + 1)·I, exactly `fold_in`'s system."""
        H = self.item_factors_[items].astype(np.float64)
        t = self.item_factors_[item].astype(np.float64)
        w = np.asarray(ratings, np.float64) - self.global_mean_
        if self.biased:
            w = w - self.item_bias_[items]
            H = np.hstack([H, np.ones((len(items), 1))])
            t = np.append(t, 1.0)
        A = H.T @ H + (self.config.reg * len(items) + 1.0) * np.eye(H.shape[1])
        return A, w, H, t

    def explain(self, user: int, item: int, history: tuple[np.ndarray, np.ndarray] | None = None) -> Explanation:
        """Fixed parts (μ, b_i) plus one part per history item, as the implicit library's ALS `explain`.

        The fold-in solve (`_history_system`) writes the user's part of the score (b_u + p_u·q_i)
        as Σ_j w_j · tᵀA⁻¹h_j; what the trained user vector holds beyond that solve (SGD's p_u is
        not exactly it) is a `rest` part, so the parts always sum to the score the ranking used.
        `history` = (item indices, ratings) of the user's training rows (the Recommender passes them)."""
        if history is None:
            raise ValueError(f"{self.name}.explain needs the user's history (items, ratings)")
        items = np.asarray(history[0], np.int64)
        fixed = {"global mean": self.global_mean_} if self.global_mean_ else {}
        personal = float(self.user_factors_[user].astype(np.float64) @ self.item_factors_[item])
        if self.biased:
            fixed["item bias"] = float(self.item_bias_[item])
            personal += float(self.user_bias_[user])
        if len(items) == 0:
            return item_parts(items, np.empty(0), rest=personal, biases=fixed)
        A, w, H, t = self._history_system(items, history[1], item)
        contrib = w * (H @ np.linalg.solve(A, t))
        return item_parts(items, contrib, rest=personal - float(contrib.sum()), biases=fixed)

    def similar_items(self, item: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The k items nearest to `item` by cosine similarity of item factors (itself excluded)."""
        Q = self.item_factors_
        norms = np.linalg.norm(Q, axis=1) + 1e-12
        sims = (Q @ Q[item]) / (norms * norms[item])
        sims[item] = -np.inf
        top = np.argsort(-sims, kind="stable")[:k]
        return top, sims[top].astype(np.float32)

    # ---- incremental updates (partial_fit) --------------------------------------------------
    # The model keeps its training ratings as state (see `incremental`) plus a ring buffer of
    # the most recent `replay_size` ratings, replayed with each batch of new ones against drift
    # (config fields `partial_epochs`, `replay_size`, `partial_learning_rate`; a model whose
    # config lacks them — ALS re-solves exactly — uses these class defaults).
    partial_epochs: ClassVar[int] = 3  # SGD passes over new ratings + replay per partial_fit
    replay_size: ClassVar[int] = 1000
    keeps_item_major: ClassVar[bool] = False  # user re-solves read the user-major ratings only

    def _partial(self, knob: str) -> Any:
        """A partial_fit knob: the config's field when it has one, else the class default."""
        return getattr(self.config, knob, getattr(type(self), knob, None))

    def fit(self, train: Interactions, valid: Interactions | None = None) -> Self:
        """`Model.fit`, then keep the training ratings and the most recent ones for `partial_fit`."""
        super().fit(train, valid)
        keep_ratings(self, train)
        self.__dict__.pop("_pending", None)  # ratings of an earlier fit's updates
        recent = latest_rows(train.timestamp, int(self._partial("replay_size")))
        self.replay_users_ = train.user[recent].astype(np.int32)
        self.replay_items_ = train.item[recent].astype(np.int32)
        self.replay_ratings_ = train.rating[recent].astype(np.float32)
        self.updates_ = 0
        return self

    def partial_fit(self, events: Interactions) -> Self:
        """Learn from `events` (vocabularies extending the model's): grow, SGD, re-solve users.

        New users and items start at zero (bias and factors); `partial_epochs` SGD passes run over
        the new ratings together with the replay buffer of recent ones (the training update,
        same learning rate and regularisation); then every touched user's vector (and bias) is
        solved exactly with item factors fixed — the `fold_in` ridge regression over all of the
        user's ratings. μ stays as fitted.

        The new ratings go to the pending log (`incremental.PendingRatings`), not into the kept
        CSR: a touched user's ratings are its CSR row with the log on top, and the log is merged
        into the CSR only when it outgrows its share (or before the state is saved). All of it —
        merge, dedupe, SGD, replay buffer, re-solves — is one compiled call (`partial_step`);
        factors of width ≥ 32 are re-solved by `resolve_users` (BLAS + LAPACK per user).
        """
        check_extends(self, events)
        log = pending(self)
        merge, n_rows = log.due(len(self.train_indices_), len(events)), self.n_users_  # rows the log knows
        self.n_users_, self.n_items_ = events.n_users, events.n_items
        self._grow_state(self.n_users_, self.n_items_)
        log.reserve(len(events), self.n_users_)
        f32 = np.float32
        P, Q = self.user_factors_, self.item_factors_
        bu = self.user_bias_ if self.biased else np.zeros(len(P), f32)
        bi = self.item_bias_ if self.biased else np.zeros(len(Q), f32)
        c = self.config
        reg_bias = getattr(c, "reg_bias", -1.0)
        lr = getattr(c, "partial_learning_rate", 0.0) or c.learning_rate
        seed = stream_seed(int(c.seed), int(self.updates_))
        narrow = Q.shape[1] < 32  # wide factors: re-solved by `resolve_users` (BLAS + LAPACK per user)
        (log.n, self.replay_users_, self.replay_items_, self.replay_ratings_, touched, self.train_indptr_,
         self.train_indices_, self.train_values_, _) = partial_step(
            events.user, events.item, events.rating, int(self.n_items_), log.users, log.items, log.ratings,
            log.prev, log.n, log.head, self.train_indptr_, self.train_indices_, self.train_values_, merge,
            int(n_rows), self.replay_users_, self.replay_items_, self.replay_ratings_,
            int(self._partial("replay_size")), seed, int(self._partial("partial_epochs")), P, Q, bu, bi,
            f32(self.global_mean_), f32(lr), f32(c.reg), f32(c.reg if reg_bias < 0 else reg_bias), self.biased,
            float(self.global_mean_), float(c.reg), narrow)
        if not narrow:
            self.resolve_users(touched)
        self.updates_ += 1
        return self

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """`Model.get_state`, with the pending ratings merged into the kept CSR first."""
        merge_pending(self)
        return super().get_state()

    def _grow_state(self, n_users: int, n_items: int) -> None:
        """Append zero rows for new users and items to every per-user / per-item state array
        (amortised: `grow_rows` keeps spare rows)."""
        grow_rows(self, "user_factors_", n_users)
        grow_rows(self, "item_factors_", n_items)
        if self.biased:
            grow_rows(self, "user_bias_", n_users)
            grow_rows(self, "item_bias_", n_items)

    def resolve_users(self, users: np.ndarray) -> None:
        """Solve `users`' vectors (and biases) exactly as `fold_in` does, over their kept ratings."""
        users = np.asarray(users, np.int64)
        if not len(users):
            return
        merge_pending(self)
        Q = self.item_factors_
        if Q.shape[1] < 32:  # one serial kernel over the users' rows of the kept CSR
            bi = self.item_bias_ if self.biased else Q[:, 0]
            bu = self.user_bias_ if self.biased else Q[:, 0]
            fold_in_rows(users, self.train_indptr_, self.train_indices_, self.train_values_, Q, bi,
                         float(self.global_mean_), float(self.config.reg), self.biased, self.user_factors_, bu)
            return
        indptr, items, ratings = user_rows(self, users)  # wide factors: BLAS Gram + LAPACK per user
        target = ratings - self.global_mean_
        Y = Q
        if self.biased:
            target = target - self.item_bias_[items]
            Y = np.hstack([Y, np.ones((len(Y), 1), np.float32)])
        k = Y.shape[1]
        X = np.zeros((len(users), k))
        for q in range(len(users)):
            rows = slice(indptr[q], indptr[q + 1])
            Yu = Y[items[rows]].astype(np.float64)
            lam = self.config.reg * len(Yu) + 1.0
            X[q] = np.linalg.solve(Yu.T @ Yu + lam * np.eye(k), Yu.T @ target[rows])
        if self.biased:
            self.user_factors_[users] = X[:, :-1]
            self.user_bias_[users] = X[:, -1]
        else:
            self.user_factors_[users] = X


class BiasedMF(MF):
    """Biased matrix factorization: r̂(u, i) = μ + b_u + b_i + p_u · q_i (SVD in Surprise's terms)."""

    name = "biased-mf"
    config_class = BiasedMFConfig
    biased = True

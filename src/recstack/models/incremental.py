"""Shared pieces of `partial_fit`: the ratings a model keeps, merged with new events in place.

Design: a model that learns incrementally keeps the ratings it learned from as its own state
arrays — a user-major CSR (`train_indptr_`, `train_indices_`, `train_values_`) and, for models
that re-solve items or patch item rows (ALS, kNN; `keeps_item_major`), the same ratings
item-major (`train_t_indptr_`, `train_t_indices_`, `train_t_values_`) — so that exact
re-solves of a touched user (all of the user's ratings) or item (all of its raters) need
nothing but the model. They are public attributes ending in `_`, so `persist.save_model`
writes them to `arrays.npz` and a saved, updated model reloads with everything it needs to
keep learning. (The Recommender's `train.npz` holds the same rows for seen-item exclusion and
popularity; the model never depends on the caller passing it back.)

`upsert_ratings` merges a batch of events into both CSRs: a repeated (user, item) replaces the
stored value, a new one is inserted at its sorted place (one compiled O(nnz) copy, no Python
loop per event), and the vocabularies grow to the events' sizes. A model whose update reads
only a few users' rows (MF's re-solves) keeps new ratings in a `PendingRatings` log over the
CSR instead, merged into it rarely (amortised O(1) per rating) and before the state is saved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from recstack.data.interactions import Interactions
from recstack.errors import RecstackError


@dataclass
class Upsert:
    """One merged batch, deduplicated (a later row for the same pair wins), sorted by (user, item).

    users, items: (n,) int64; ratings: (n,) float64; old: (n,) float64 previous stored value
    (NaN where the pair is new)."""

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    old: np.ndarray

    @property
    def touched_users(self) -> np.ndarray:
        """The distinct users, ascending (`users` is sorted: no sort needed)."""
        u = self.users
        if len(u) < 2:
            return u
        first = np.empty(len(u), np.bool_)
        first[0] = True
        np.not_equal(u[1:], u[:-1], out=first[1:])
        return u[first]

    @property
    def touched_items(self) -> np.ndarray:
        return np.unique(self.items)


def check_extends(model: Any, events: Interactions) -> None:
    """Raise unless `events`' vocabularies are at least as large as the model's (they extend them)."""
    if not isinstance(events, Interactions):
        raise RecstackError(f"partial_fit needs an Interactions, got {type(events).__name__}")
    if events.n_users < model.n_users_ or events.n_items < model.n_items_:
        raise RecstackError(
            f"partial_fit: the events' vocabularies ({events.n_users} users, {events.n_items} items) "
            f"must extend the model's ({model.n_users_} users, {model.n_items_} items)")


def grow(a: np.ndarray, n: int, fill: float = 0.0, spare: float = 0.0) -> np.ndarray:
    """`a` with rows appended (value `fill`) up to n rows — or n·(1 + spare) rows, so that large
    arrays grow in amortised steps; `a` itself when it is already long enough."""
    if len(a) >= n:
        return a
    n = max(n, int(len(a) * (1.0 + spare)))
    pad = np.full((n - len(a),) + a.shape[1:], fill, dtype=a.dtype)
    return np.concatenate([a, pad])


def grow_rows(owner: Any, name: str, n: int, fill: float = 0.0) -> None:
    """Set `owner.<name>` to n rows (new ones `fill`) as the first rows of a buffer with room to
    spare: the buffer doubles when full, so that a few new rows a day copy nothing (amortised
    O(1) per row). The buffers live in `owner._capacity` (private: never saved); the attribute
    is a plain view of exactly n rows, as saved and scored."""
    a = getattr(owner, name)
    if len(a) >= n:
        return
    buffers = owner.__dict__.setdefault("_capacity", {})
    buf = buffers.get(name)
    if buf is None or a.base is not buf or len(buf) < n:
        buf = np.empty((max(n, 2 * len(a), 16),) + a.shape[1:], a.dtype)
        buf[:len(a)] = a
        buffers[name] = buf
    buf[len(a):n] = fill
    setattr(owner, name, buf[:n])


def dedupe_last(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_items: int):
    """(users, items, ratings) with one row per pair — the last given — sorted by (user, item)."""
    key = users.astype(np.int64) * n_items + items.astype(np.int64)
    rev = key[::-1]
    _, first_in_rev = np.unique(rev, return_index=True)  # sorted keys; last occurrence in input
    pick = len(key) - 1 - first_in_rev
    return users[pick].astype(np.int64), items[pick].astype(np.int64), ratings[pick].astype(np.float64)


@numba.njit(cache=True, nogil=True)
def _upsert(indptr, indices, values, n_rows, rows, cols, vals):  # pragma: no cover - numba
    """`csr_upsert` in one pass: find each (row, col) by bisection in its sorted row, then copy
    the CSR once with the replacements and insertions (events sorted by (row, col), so their
    positions never decrease)."""
    n_old = len(indptr) - 1
    m = len(rows)
    pos = np.empty(m, np.int64)
    found = np.zeros(m, np.bool_)
    old = np.full(m, np.nan)
    n_new = 0
    for q in range(m):
        r = rows[q]
        lo = indptr[r] if r < n_old else indptr[n_old]
        hi = indptr[r + 1] if r < n_old else indptr[n_old]
        end = hi
        c = cols[q]
        while lo < hi:
            mid = (lo + hi) // 2
            if indices[mid] < c:
                lo = mid + 1
            else:
                hi = mid
        pos[q] = lo
        if lo < end and indices[lo] == c:
            found[q] = True
            old[q] = values[lo]
        else:
            n_new += 1
    out_i = np.empty(len(indices) + n_new, indices.dtype)
    out_v = np.empty(len(indices) + n_new, values.dtype)
    added = np.zeros(n_rows, np.int64)
    src = 0
    dst = 0
    for q in range(m):
        p = pos[q]
        k = p - src
        out_i[dst:dst + k] = indices[src:p]
        out_v[dst:dst + k] = values[src:p]
        dst += k
        src = p
        out_i[dst] = cols[q]
        out_v[dst] = vals[q]
        dst += 1
        if found[q]:
            src += 1
        else:
            added[rows[q]] += 1
    k = len(indices) - src
    out_i[dst:dst + k] = indices[src:]
    out_v[dst:dst + k] = values[src:]
    out_ptr = np.empty(n_rows + 1, np.int64)
    out_ptr[0] = 0
    run = 0
    for r in range(n_rows):
        run += added[r]
        out_ptr[r + 1] = (indptr[r + 1] if r < n_old else indptr[n_old]) + run
    return out_ptr, out_i, out_v, old


def csr_upsert(indptr: np.ndarray, indices: np.ndarray, values: np.ndarray, n_rows: int,
               rows: np.ndarray, cols: np.ndarray, vals: np.ndarray):
    """Merge (rows, cols, vals) — deduplicated, sorted by (row, col) — into a CSR with sorted rows.

    Returns (indptr (n_rows+1,), indices, values, old) where `old` holds each pair's previous
    value (NaN for a new pair); the CSR grows to `n_rows` rows. New arrays: the inputs are never
    written (one compiled pass, `_upsert`)."""
    return _upsert(np.asarray(indptr, np.int64), indices, values, int(n_rows), np.asarray(rows, np.int64),
                   np.asarray(cols, np.int64), np.asarray(vals, np.float64))


def csr_rows(indptr: np.ndarray, indices: np.ndarray, values: np.ndarray, rows: np.ndarray):
    """The sub-CSR (indptr, indices, values) of the chosen rows, in the order given."""
    rows = np.asarray(rows, np.int64)
    starts, ends = indptr[rows], indptr[rows + 1]
    lengths = ends - starts
    sub_ptr = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    take = np.repeat(starts - sub_ptr[:-1], lengths) + np.arange(sub_ptr[-1])
    return sub_ptr, indices[take], values[take]


def keep_ratings(model: Any, train: Interactions) -> None:
    """Store `train`'s ratings on `model` as user-major and item-major CSR state arrays (the
    item-major copy only when the model's `keeps_item_major` is true — the default — since
    `partial_fit` keeps every copy it has up to date).

    int64 row pointers, int32 column indices and float32 values (the ratings' own dtype): at
    25M ratings both orientations take 0.4 GB, and the user-major one shares `train.csr`'s arrays
    (never written in place: an upsert makes new arrays)."""
    keep = (("train_", train.csr),)
    if getattr(model, "keeps_item_major", True):
        keep += (("train_t_", train.csr_t),)
    for prefix, m in keep:
        setattr(model, f"{prefix}indptr_", m.indptr.astype(np.int64, copy=False))
        setattr(model, f"{prefix}indices_", m.indices.astype(np.int32, copy=False))
        setattr(model, f"{prefix}values_", m.data.astype(np.float32, copy=False))


def upsert_ratings(model: Any, events: Interactions) -> Upsert:
    """Merge `events` into the model's kept ratings (both orientations) and grow its sizes.

    Sets `n_users_`/`n_items_` to the events' vocabulary sizes. Returns the deduplicated batch."""
    check_extends(model, events)
    n_users, n_items = events.n_users, events.n_items
    u, i, r = dedupe_last(events.user, events.item, events.rating, n_items)
    model.train_indptr_, model.train_indices_, model.train_values_, old = csr_upsert(
        model.train_indptr_, model.train_indices_, model.train_values_, n_users, u, i, r)
    if getattr(model, "train_t_indptr_", None) is not None:  # the item-major copy, when kept
        order = np.lexsort((u, i))
        model.train_t_indptr_, model.train_t_indices_, model.train_t_values_, _ = csr_upsert(
            model.train_t_indptr_, model.train_t_indices_, model.train_t_values_, n_items,
            i[order], u[order], r[order])
    model.n_users_, model.n_items_ = n_users, n_items
    return Upsert(u, i, r, old)


class PendingRatings:
    """New ratings not yet merged into a model's kept user-major CSR: an append-only log.

    A daily batch is a few hundred ratings against a history of tens of thousands; copying the
    whole CSR to insert them (`csr_upsert`) grew with the history. The log takes them in O(1)
    each (buffers that double when full) and chains each user's entries (`head[u]`: the user's
    latest entry, `prev[q]`: the same user's entry before q, -1 at the end), so that a touched
    user's current ratings — the CSR row with the log's entries on top, a later one winning — are
    read in O(row + the user's log entries) (`merged_row`). `merge_into` folds the log into the
    CSR (one `csr_upsert`) when it exceeds `merge_share` of the kept ratings — O(1) amortised per
    rating — and before anything reads or saves the CSR itself (the log is private, never saved).
    """

    merge_share = 0.125  # merge when the log would exceed this share of the kept ratings …
    merge_floor = 4096  # … or this many entries, whichever is more

    def __init__(self) -> None:
        self.users = np.empty(1024, np.int32)
        self.items = np.empty(1024, np.int32)
        self.ratings = np.empty(1024, np.float32)
        self.prev = np.empty(1024, np.int64)
        self.head = np.full(1024, -1, np.int64)
        self.n = 0

    def reserve(self, m: int, n_users: int) -> None:
        """Room for m more entries and chains for n_users users."""
        need = self.n + m
        if need > len(self.users):
            size = max(need, 2 * len(self.users))
            for name in ("users", "items", "ratings", "prev"):
                old = getattr(self, name)
                new = np.empty(size, old.dtype)
                new[:self.n] = old[:self.n]
                setattr(self, name, new)
        if n_users > len(self.head):
            head = np.full(max(n_users, 2 * len(self.head)), -1, np.int64)
            head[:len(self.head)] = self.head
            self.head = head

    def due(self, nnz: int, m: int) -> bool:
        """Whether m more entries would take the log past its share of nnz kept ratings."""
        return self.n + m > max(self.merge_floor, int(self.merge_share * nnz))

    def merge_into(self, model: Any) -> None:
        """Fold the log into `model`'s kept user-major CSR (a later entry for a pair wins) and empty it."""
        if self.n == 0 and len(model.train_indptr_) - 1 >= model.n_users_:
            return
        model.train_indptr_, model.train_indices_, model.train_values_ = merge_log(
            model.train_indptr_, model.train_indices_, model.train_values_, model.n_users_, model.n_items_,
            self.users, self.items, self.ratings, self.n, self.head)
        self.n = 0


@numba.njit(cache=True, nogil=True)
def merge_log(indptr, indices, values, n_rows, n_items, log_u, log_i, log_r, log_n, head):  # pragma: no cover
    """The CSR with the first log_n log entries upserted (a later entry for a pair wins; rows
    grown to n_rows) as new arrays — `dedupe_last` then `csr_upsert` in one compiled call — and
    the merged users' chains emptied (head = -1)."""
    key = np.empty(log_n, np.int64)
    for q in range(log_n):
        key[q] = np.int64(log_u[q]) * n_items + np.int64(log_i[q])
    order = np.argsort(key, kind="mergesort")  # stable: the last of equal keys is the latest
    rows = np.empty(log_n, np.int64)
    cols = np.empty(log_n, np.int64)
    vals = np.empty(log_n)
    m = 0
    for a in range(log_n):
        q = order[a]
        if a + 1 < log_n and key[order[a + 1]] == key[q]:
            continue
        rows[m], cols[m], vals[m] = log_u[q], log_i[q], log_r[q]
        head[log_u[q]] = -1
        m += 1
    out_ptr, out_i, out_v, _ = _upsert(indptr, indices, values, n_rows, rows[:m], cols[:m], vals[:m])
    return out_ptr, out_i, out_v


def pending(model: Any) -> PendingRatings:
    """`model`'s log of ratings not yet in its kept CSR (made empty on first use; never saved)."""
    log = model.__dict__.get("_pending")
    if log is None:
        log = model.__dict__["_pending"] = PendingRatings()
    return log


def merge_pending(model: Any) -> None:
    """Bring `model`'s kept CSR up to date with its pending log (before the CSR is read or saved)."""
    log = model.__dict__.get("_pending")
    if log is not None:
        log.merge_into(model)


@numba.njit(cache=True, nogil=True)
def merged_row(u, indptr, indices, values, head, prev, log_items, log_ratings, stamp, items,
               ratings):  # pragma: no cover - numba
    """User u's current ratings — CSR row u with its pending log entries on top (a later entry
    wins) — written into items / ratings (room for the row plus the user's log entries), sorted by
    item as the merged CSR row would hold them; returns their count. `stamp` (n_items,) must be
    -1 where u is not written; it is restored."""
    m = 0
    q = head[u] if u < len(head) else -1
    while q >= 0:  # newest first: the first entry seen for an item is the one that counts
        j = log_items[q]
        if stamp[j] < 0:
            stamp[j] = m
            items[m] = j
            ratings[m] = log_ratings[q]
            m += 1
        q = prev[q]
    if m > 32:  # many: sorted by index (the items are distinct)
        order = np.argsort(items[:m])
        items[:m], ratings[:m] = items[:m][order], ratings[:m][order]
    for a in range(1, m):  # the user's few log entries, by item (a no-op after the sort)
        j, r = items[a], ratings[a]
        p = a
        while p > 0 and items[p - 1] > j:
            items[p] = items[p - 1]
            ratings[p] = ratings[p - 1]
            p -= 1
        items[p] = j
        ratings[p] = r
    n_rows = len(indptr) - 1
    lo = indptr[u] if u < n_rows else 0
    hi = indptr[u + 1] if u < n_rows else 0
    n_log = m
    for a in range(n_log):
        stamp[items[a]] = -1
    # merge from the back: the CSR row (skipping items the log replaces) and the sorted log part
    total = n_log
    for p in range(lo, hi):
        stamp[indices[p]] = 0
    for a in range(n_log):
        if stamp[items[a]] == 0:
            total -= 1  # a re-rate: counted once, with the CSR row
    total += hi - lo
    x, y, w = hi - 1, n_log - 1, total - 1
    while w >= 0:
        if y >= 0 and (x < lo or indices[x] <= items[y]):
            if x >= lo and indices[x] == items[y]:
                x -= 1  # replaced by the log's value
            items[w] = items[y]
            ratings[w] = ratings[y]
            y -= 1
        else:
            items[w] = indices[x]
            ratings[w] = values[x]
            x -= 1
        w -= 1
    for p in range(lo, hi):
        stamp[indices[p]] = -1
    return total


def user_rows(model: Any, users: np.ndarray):
    """Sub-CSR (indptr, item indices, ratings) of the kept ratings of `users`."""
    return csr_rows(model.train_indptr_, model.train_indices_, model.train_values_, users)


def item_rows(model: Any, items: np.ndarray):
    """Sub-CSR (indptr, user indices, ratings) of the kept ratings of `items`."""
    return csr_rows(model.train_t_indptr_, model.train_t_indices_, model.train_t_values_, items)


# ---- per-row Gram statistics (ALS) ----------------------------------------------------------
# A row's statistics are M (its k×k Gram, symmetric, kept packed: the lower triangle row by row,
# entry (a, e ≤ a) at a(a+1)/2 + e — k(k+1)/2 floats, half the memory traffic of the full
# matrix) and b (k). The kernels keep their innermost loops free of a store that could alias a
# load (an outer product written as `M[j, a, e] += wa * y[e]` is not vectorised: the store may
# alias y): an update is one flat axpy of a packed matrix built once.
def packed_size(k: int) -> int:
    """Floats in a packed symmetric k×k matrix."""
    return k * (k + 1) // 2


@numba.njit(cache=True, fastmath=True, inline="always")
def _packed_square(x, D):  # pragma: no cover - numba
    """D := x xᵀ, packed."""
    p = 0
    for a in range(len(x)):
        for e in range(a + 1):
            D[p] = x[a] * x[e]
            p += 1


@numba.njit(cache=True, parallel=True, fastmath=True)
def gram_stats(indptr, indices, weight, target, Y, M, b):  # pragma: no cover - numba
    """M[r] = Σ_j w_rj y_j y_jᵀ (packed), b[r] = Σ_j t_rj y_j for every CSR row r (M (n, k(k+1)/2), b (n, k))."""
    n, k = b.shape
    for r in numba.prange(n):
        m = M[r]
        m[:] = 0.0
        b[r, :] = 0.0
        for jj in range(indptr[r], indptr[r + 1]):
            j = indices[jj]
            w = weight[jj]
            t = target[jj]
            p = 0
            for a in range(k):
                b[r, a] += t * Y[j, a]
                wa = w * Y[j, a]
                for e in range(a + 1):
                    m[p] += wa * Y[j, e]
                    p += 1


@numba.njit(cache=True, fastmath=True)
def gram_delta(rows, indptr, indices, weight, target, old, new, M, b, picked, want):  # pragma: no cover
    """Vectors of `rows` moved old[q] → new[q]: fix the statistics of the columns they touch
    whose `picked[j]` is `want`.

    For entry (rows[q], j): M[j] += w (new newᵀ − old oldᵀ) (packed), b[j] += t (new − old).
    indptr, indices, weight, target: the CSR of the moved rows (row q ↔ rows[q])."""
    k = old.shape[1]
    D = np.empty(M.shape[1])
    d = np.empty(k)
    for q in range(len(rows)):
        p = 0
        for a in range(k):
            d[a] = new[q, a] - old[q, a]
            for e in range(a + 1):
                D[p] = new[q, a] * new[q, e] - old[q, a] * old[q, e]
                p += 1
        for jj in range(indptr[q], indptr[q + 1]):
            j = indices[jj]
            if picked[j] != want:
                continue
            _axpy(weight[jj], D, M[j])
            _axpy(target[jj], d, b[j])


@numba.njit(cache=True, fastmath=True)
def gram_add(cols, X, rows, dw, dt, M, b):  # pragma: no cover - numba
    """For each entry q: M[cols[q]] += dw[q] x xᵀ (packed), b[cols[q]] += dt[q] x, x = X[rows[q]]."""
    k = X.shape[1]
    D = np.empty(M.shape[1])
    x = np.empty(k)
    for q in range(len(cols)):
        r = rows[q]
        for a in range(k):
            x[a] = X[r, a]
        _packed_square(x, D)
        _axpy(dw[q], D, M[cols[q]])
        _axpy(dt[q], x, b[cols[q]])


@numba.njit(cache=True, fastmath=True, inline="always")
def _axpy(w, x, y):  # pragma: no cover - numba
    """y += w·x (1-D, same length)."""
    for p in range(len(x)):
        y[p] += w * x[p]


@numba.njit(cache=True, fastmath=True, error_model="numpy")
def cholesky_solve(A, rhs, out):  # pragma: no cover - numba
    """Solve A x = rhs (A (f, f) symmetric positive definite) into `out`; A and rhs are overwritten.

    The one Cholesky row solve of the ALS kernels (full fits and incremental re-solves)."""
    k = len(rhs)
    for j in range(k):
        s = A[j, j]
        for m in range(j):
            s -= A[j, m] * A[j, m]
        d = np.sqrt(s)
        A[j, j] = d
        for i in range(j + 1, k):
            s = A[i, j]
            for m in range(j):
                s -= A[i, m] * A[j, m]
            A[i, j] = s / d
    for i in range(k):
        s = rhs[i]
        for m in range(i):
            s -= A[i, m] * rhs[m]
        rhs[i] = s / A[i, i]
    for i in range(k - 1, -1, -1):
        s = rhs[i]
        for m in range(i + 1, k):
            s -= A[m, i] * out[m]
        out[i] = s / A[i, i]


@numba.njit(cache=True, fastmath=True)
def solve_from_stats(rows, M, b, base, lam, out):  # pragma: no cover - numba
    """out[q] = (base + M[rows[q]] + lam[q] I)⁻¹ b[rows[q]] (0 when the system is empty; M packed)."""
    k = base.shape[0]
    A = np.empty((k, k))
    rhs = np.empty(k)
    for q in range(len(rows)):
        r = rows[q]
        p = 0
        for a in range(k):
            rhs[a] = b[r, a]
            for e in range(a + 1):
                A[a, e] = base[a, e] + M[r, p]
                A[e, a] = A[a, e]
                p += 1
            A[a, a] += lam[q]
        if A[0, 0] == 0.0:
            out[q, :] = 0.0
            continue
        cholesky_solve(A, rhs, out[q])


@numba.njit(cache=True, fastmath=True)
def solve_rows(indptr, indices, weight, target, Y, base, reg, reg_per_count, out):  # pragma: no cover
    """Serial exact ridge solve of a few CSR rows (the `als_solve` system, no thread start-up):
    out[q] = (base + Σ_j w_qj y_j y_jᵀ + (reg + reg_per_count·n_q) I)⁻¹ Σ_j t_qj y_j.

    Each row's y_j are gathered column-wise (H (k, n), and W = H scaled by w) so that every
    entry of the Gram matrix is one vectorised dot product."""
    k = base.shape[0]
    A = np.empty((k, k))
    rhs = np.empty(k)
    most = 0
    for q in range(len(indptr) - 1):
        most = max(most, indptr[q + 1] - indptr[q])
    H = np.empty((k, most))
    W = np.empty((k, most))
    t = np.empty(most)
    for q in range(len(indptr) - 1):
        lo, n = indptr[q], indptr[q + 1] - indptr[q]
        for p in range(n):
            j = indices[lo + p]
            w = weight[lo + p]
            t[p] = target[lo + p]
            for a in range(k):
                H[a, p] = Y[j, a]
                W[a, p] = w * Y[j, a]
        for a in range(k):
            h = H[a]
            s = 0.0
            for p in range(n):
                s += t[p] * h[p]
            rhs[a] = s
            for e in range(a + 1):
                g = W[e]
                s = 0.0
                for p in range(n):
                    s += h[p] * g[p]
                A[a, e] = base[a, e] + s
                A[e, a] = base[e, a] + s
        lam = reg + reg_per_count * n
        for a in range(k):
            A[a, a] += lam
        if A[0, 0] == 0.0:
            out[q, :] = 0.0
            continue
        cholesky_solve(A, rhs, out[q])

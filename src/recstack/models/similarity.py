"""Sparse top-k neighbour similarities and neighbourhood rating estimates (numba kernels).

Rows of a sparse matrix A (entities: items for item-based kNN, users for user-based) are
compared over their common columns. For each row the kernel accumulates co-occurrence sums
in dense per-thread buffers (no n×n matrix), turns them into similarities and keeps only
the best `keep` positive ones, sorted by (similarity desc, index asc). Kinds:

- COSINE: Σab / sqrt(Σa² · Σb²), sums over common columns (Surprise's `cosine`; with
  baseline residuals as values it is `pearson_baseline`, Koren 2010 eq. 3)
- PEARSON: Pearson correlation over common columns (Surprise's `pearson`)
- DOT: Σab (values pre-weighted: L2-normalised rows or BM25, as in implicit's item-kNN)

Shrinkage multiplies a similarity by (n−1)/(n−1+λ), n = number of common columns.
Each kernel has a plain NumPy twin (`*_slow`) used by the tests.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp

from recstack.progress import Bar

COSINE, PEARSON, DOT = 0, 1, 2
PLAIN, MEANS, BASELINE = 0, 1, 2


def n_chunks() -> int:
    """Work pieces per parallel kernel call: a few per numba thread, for load balance."""
    return 4 * numba.get_num_threads()


# ---- similarities ---------------------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def pair_sums(e, indptr, indices, values, t_indptr, t_indices, t_values, acc, touched):  # pragma: no cover
    """Add entity e's co-rating sums with every other entity f into acc[f] (count, Σab, Σa, Σb,
    Σa², Σb²); newly touched f are appended to `touched`. Returns how many were touched."""
    nt = 0
    for p in range(indptr[e], indptr[e + 1]):
        o = indices[p]
        a = values[p]
        for r in range(t_indptr[o], t_indptr[o + 1]):
            f = t_indices[r]
            if f == e:
                continue
            b = t_values[r]
            if acc[f, 0] == 0.0:
                touched[nt] = f
                nt += 1
            acc[f, 0] += 1.0
            acc[f, 1] += a * b
            acc[f, 2] += a
            acc[f, 3] += b
            acc[f, 4] += a * a
            acc[f, 5] += b * b
    return nt


@numba.njit(cache=True, nogil=True)
def _finish(cnt, num, sa, sb, sqa, sqb, kind, shrinkage, min_support):  # pragma: no cover - numba
    if cnt < min_support or cnt == 0:
        return 0.0
    if kind == DOT:
        sim = num
    elif kind == COSINE:
        den = sqa * sqb
        sim = num / np.sqrt(den) if den > 0 else 0.0
    else:
        n = float(cnt)
        den = (n * sqa - sa * sa) * (n * sqb - sb * sb)
        sim = (n * num - sa * sb) / np.sqrt(den) if den > 0 else 0.0
    if shrinkage > 0:
        sim *= (cnt - 1.0) / (cnt - 1.0 + shrinkage)
    return sim


@numba.njit(cache=True, nogil=True)
def _best(cand, sims, keep):  # pragma: no cover - numba
    """The `keep` best (cand, sim) pairs ordered by (sim desc, cand asc)."""
    if len(sims) > keep:
        threshold = -np.partition(-sims, keep - 1)[keep - 1]
        sel = sims >= threshold
        cand, sims = cand[sel], sims[sel]
    by_index = np.argsort(cand)
    cand, sims = cand[by_index], sims[by_index]
    order = np.argsort(-sims, kind="mergesort")[:keep]
    return cand[order], sims[order]


@numba.njit(cache=True, parallel=True, nogil=True)
def neighbour_block(indptr, indices, values, t_indptr, t_indices, t_values, start, stop,
                    kind, shrinkage, min_support, keep, n_chunks):  # pragma: no cover - numba
    """Top-`keep` positive neighbours of rows start..stop-1 of A (CSR arrays; t_* = Aᵀ as CSR).

    Returns (counts (n,), idx (n, keep) int32, sims (n, keep) float32), n = stop - start;
    row r's neighbours are idx[r, :counts[r]], best first.
    """
    n_rows = stop - start
    n_ent = len(indptr) - 1
    counts = np.zeros(n_rows, np.int64)
    out_idx = np.full((n_rows, keep), -1, np.int32)
    out_sim = np.zeros((n_rows, keep), np.float32)
    n_chunks = max(1, min(n_rows, n_chunks))
    size = (n_rows + n_chunks - 1) // max(n_chunks, 1)
    for c in numba.prange(n_chunks):
        acc = np.zeros((n_ent, 6))  # per neighbour: count, Σab, Σa, Σb, Σa², Σb² (one cache line)
        touched = np.empty(n_ent, np.int64)
        for r in range(c * size, min((c + 1) * size, n_rows)):
            e = start + r
            nt = pair_sums(e, indptr, indices, values, t_indptr, t_indices, t_values, acc, touched)
            cand = np.empty(nt, np.int64)
            sims = np.empty(nt)
            m = 0
            for t in range(nt):
                f = touched[t]
                sim = _finish(acc[f, 0], acc[f, 1], acc[f, 2], acc[f, 3], acc[f, 4], acc[f, 5],
                              kind, shrinkage, min_support)
                sim = float(np.float32(sim))  # rank by the stored precision (ties: lower index)
                acc[f, :] = 0.0
                if sim > 0:
                    cand[m] = f
                    sims[m] = sim
                    m += 1
            cand, sims = _best(cand[:m], sims[:m], keep)
            m = len(cand)
            out_idx[r, :m] = cand
            out_sim[r, :m] = sims
            counts[r] = m
    return counts, out_idx, out_sim


def neighbour_block_slow(indptr, indices, values, t_indptr, t_indices, t_values, start, stop,
                         kind, shrinkage, min_support, keep, n_chunks=1):
    """Dense NumPy twin of `neighbour_block` (same arguments and result), for small data only."""
    n_ent = len(indptr) - 1
    n_other = len(t_indptr) - 1
    a = sp.csr_matrix((values, indices, indptr), shape=(n_ent, n_other)).toarray().astype(np.float64)
    mask = sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(n_ent, n_other)).toarray()
    rows = slice(start, stop)
    cnt = mask[rows] @ mask.T
    num = a[rows] @ a.T
    sa, sb = a[rows] @ mask.T, mask[rows] @ a.T
    sqa, sqb = (a[rows] ** 2) @ mask.T, mask[rows] @ (a.T ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == DOT:
            sim = num.copy()
        elif kind == COSINE:
            sim = num / np.sqrt(sqa * sqb)
        else:
            sim = (cnt * num - sa * sb) / np.sqrt((cnt * sqa - sa ** 2) * (cnt * sqb - sb ** 2))
        if shrinkage > 0:
            sim = sim * (cnt - 1.0) / (cnt - 1.0 + shrinkage)
    sim[~np.isfinite(sim) | (cnt < max(min_support, 1))] = 0.0
    n_rows = stop - start
    sim[np.arange(n_rows), np.arange(start, stop)] = 0.0  # never your own neighbour
    counts = np.zeros(n_rows, np.int64)
    out_idx = np.full((n_rows, keep), -1, np.int32)
    out_sim = np.zeros((n_rows, keep), np.float32)
    for r in range(n_rows):
        order = np.lexsort((np.arange(n_ent), -sim[r]))
        order = order[sim[r, order] > 0][:keep]
        counts[r] = len(order)
        out_idx[r, :len(order)] = order
        out_sim[r, :len(order)] = sim[r, order]
    return counts, out_idx, out_sim


def top_neighbours(a: sp.csr_matrix, kind: int, shrinkage: float, min_support: int, keep: int,
                   block_elements: int = 1 << 22, slow: bool = False,
                   desc: str = "neighbours") -> sp.csr_matrix:
    """(n, n) sparse matrix whose row e holds e's best `keep` positive neighbours, best first.

    a: (n, m) CSR whose rows are compared over common columns. Rows are processed in blocks
    of at most `block_elements` // keep rows (and at most about n / 50, so that the progress bar
    `desc` moves), so memory is O(n·keep + block), never O(n²).
    """
    a = sp.csr_matrix(a, dtype=np.float64)
    a.sort_indices()
    t = a.T.tocsr()
    t.sort_indices()
    n = a.shape[0]
    keep = max(1, min(keep, n - 1)) if n > 1 else 1
    rows_per_block = max(1, min(block_elements // keep, max(256, -(-n // 50))))
    fn = neighbour_block_slow if slow else neighbour_block
    counts, idx, sims = [], [], []
    bar = Bar(desc, total=n)
    for start in range(0, n, rows_per_block):
        stop = min(n, start + rows_per_block)
        c, i, s = fn(a.indptr.astype(np.int64), a.indices.astype(np.int64), a.data,
                     t.indptr.astype(np.int64), t.indices.astype(np.int64), t.data,
                     start, stop, kind, float(shrinkage), int(min_support), keep, n_chunks())
        valid = np.arange(keep)[None, :] < c[:, None]
        counts.append(c)
        idx.append(i[valid])
        sims.append(s[valid])
        bar.update(stop - start)
    bar.close()
    indptr = np.r_[0, np.cumsum(np.concatenate(counts))].astype(np.int64)
    out = sp.csr_matrix((np.concatenate(sims), np.concatenate(idx), indptr), shape=(n, n))
    out.has_sorted_indices = False  # rows are ordered by similarity, not by index
    return out


# ---- rating estimates -----------------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def _estimate(x, y, nb_indptr, nb_indices, nb_sims, marked, k, min_k, estimator,
              mu, bias_x, bias_y, mean_x):  # pragma: no cover - numba
    """One estimate: neighbours of x (best first) that y rated; `marked[j]` = y's rating of j or NaN."""
    sum_sim = 0.0
    sum_r = 0.0
    used = 0
    for p in range(nb_indptr[x], nb_indptr[x + 1]):
        if used >= k:
            break
        j = nb_indices[p]
        r = marked[j]
        if r != r:  # NaN: y did not rate j
            continue
        s = nb_sims[p]
        if estimator == PLAIN:
            sum_r += s * r
        elif estimator == MEANS:
            sum_r += s * (r - mean_x[j])
        else:
            sum_r += s * (r - (mu + bias_y[y] + bias_x[j]))
        sum_sim += s
        used += 1
    if estimator == PLAIN:
        if used < min_k or sum_sim <= 0:
            return mu  # impossible: the global mean, as Surprise's default prediction
        return sum_r / sum_sim
    base = mean_x[x] if estimator == MEANS else mu + bias_y[y] + bias_x[x]
    if used < min_k or sum_sim <= 0:
        return base
    return base + sum_r / sum_sim


@numba.njit(cache=True, parallel=True, nogil=True)
def estimate_pairs(xs, ys, bounds, nb_indptr, nb_indices, nb_sims, y_indptr, y_indices, y_values,
                   k, min_k, estimator, mu, bias_x, bias_y, mean_x, lo, hi, n_chunks):  # pragma: no cover - numba
    """Clipped estimates for (x, y) pairs sorted by y; bounds[g]..bounds[g+1] is one y's group.

    Item-based: x = item, y = user, y-lists = users' rated items. User-based: the reverse.
    Returns (n_pairs,) float64.
    """
    n_groups = len(bounds) - 1
    n_x = len(nb_indptr) - 1
    out = np.empty(len(xs))
    n_chunks = max(1, min(n_groups, n_chunks))
    size = (n_groups + n_chunks - 1) // max(n_chunks, 1)
    for c in numba.prange(n_chunks):
        marked = np.full(n_x, np.nan)
        for g in range(c * size, min((c + 1) * size, n_groups)):
            y = ys[bounds[g]]
            for p in range(y_indptr[y], y_indptr[y + 1]):
                marked[y_indices[p]] = y_values[p]
            for q in range(bounds[g], bounds[g + 1]):
                est = _estimate(xs[q], y, nb_indptr, nb_indices, nb_sims, marked, k, min_k, estimator,
                                mu, bias_x, bias_y, mean_x)
                out[q] = min(max(est, lo), hi)
            for p in range(y_indptr[y], y_indptr[y + 1]):
                marked[y_indices[p]] = np.nan
    return out


def estimate_pairs_slow(xs, ys, bounds, nb_indptr, nb_indices, nb_sims, y_indptr, y_indices, y_values,
                        k, min_k, estimator, mu, bias_x, bias_y, mean_x, lo, hi, n_chunks=1):
    """Plain twin of `estimate_pairs`: per pair, the top-k neighbours of x among y's items."""
    out = np.empty(len(xs))
    for q in range(len(xs)):
        x, y = xs[q], ys[q]
        rated = dict(zip(y_indices[y_indptr[y]:y_indptr[y + 1]].tolist(),
                         y_values[y_indptr[y]:y_indptr[y + 1]].tolist()))
        nbrs = nb_indices[nb_indptr[x]:nb_indptr[x + 1]]
        sims = nb_sims[nb_indptr[x]:nb_indptr[x + 1]]
        chosen = [(j, s) for j, s in zip(nbrs.tolist(), sims.tolist()) if j in rated][:k]
        if estimator == PLAIN:
            dev = [rated[j] for j, _ in chosen]
            base = 0.0
        elif estimator == MEANS:
            dev = [rated[j] - mean_x[j] for j, _ in chosen]
            base = mean_x[x]
        else:
            dev = [rated[j] - (mu + bias_y[y] + bias_x[j]) for j, _ in chosen]
            base = mu + bias_y[y] + bias_x[x]
        w = np.array([s for _, s in chosen])
        if len(chosen) < min_k or w.sum() <= 0:
            est = mu if estimator == PLAIN else base
        else:
            est = base + float(np.dot(w, dev) / w.sum())
        out[q] = min(max(est, lo), hi)
    return out


# ---- incremental updates --------------------------------------------------------------------
# A new rating (e, o) changes only the similarities of pairs that contain entity e (its sums
# over common columns, its norm), so `partial_fit` recomputes the rows of the touched entities
# exactly from the data and patches their column in every other row — a row re-ranks its old
# neighbours with the new values and is recomputed from the data only when a neighbour it lost
# could have been replaced by one it never stored (its list was full and the new last entry
# ranks below the old last one).
@numba.njit(cache=True, nogil=True)
def entity_sims(rows, indptr, indices, values, t_indptr, t_indices, t_values, kind, shrinkage,
                min_support):  # pragma: no cover - numba
    """(len(rows), n) dense similarities of the given rows of A with every row (0 where not positive).

    Same sums and `_finish` as `neighbour_block`, serial, without pruning."""
    n_ent = len(indptr) - 1
    out = np.zeros((len(rows), n_ent), np.float64)
    acc = np.zeros((n_ent, 6))
    touched = np.empty(n_ent, np.int64)
    for q in range(len(rows)):
        e = rows[q]
        nt = pair_sums(e, indptr, indices, values, t_indptr, t_indices, t_values, acc, touched)
        for t in range(nt):
            f = touched[t]
            sim = _finish(acc[f, 0], acc[f, 1], acc[f, 2], acc[f, 3], acc[f, 4], acc[f, 5],
                          kind, shrinkage, min_support)
            acc[f, :] = 0.0
            if sim > 0:
                out[q, f] = float(np.float32(sim))  # as `neighbour_block` ranks them
    return out


@numba.njit(cache=True, nogil=True)
def _before(s1, i1, s2, i2):  # pragma: no cover - numba
    """Whether (s1, i1) ranks at or before (s2, i2) in (similarity desc, index asc) order."""
    return s1 > s2 or (s1 == s2 and i1 <= i2)


@numba.njit(cache=True, nogil=True)
def _store(j, cand, sims, keep, reserve, bs, bi, counts, idx, sim, rcounts, ridx, rsim, out_bs,
           out_bi, presorted=False):  # pragma: no cover - numba
    """Write row j's ranked candidates: the first `keep` as neighbours, the next `reserve` as its
    reserve; the first one dropped (if any) becomes the bound when it ranks before (bs, bi)."""
    if not presorted:
        cand, sims = _best(cand, sims, keep + reserve + 1)
    m = min(len(cand), keep)
    counts[j] = m
    idx[j, :m] = cand[:m]
    sim[j, :m] = sims[:m]
    r = max(0, min(len(cand) - keep, reserve))
    rcounts[j] = r
    ridx[j, :r] = cand[keep:keep + r]
    rsim[j, :r] = sims[keep:keep + r]
    out_bs[j], out_bi[j] = bs, bi
    if len(cand) > keep + reserve and _before(sims[-1], cand[-1], bs, bi):
        out_bs[j], out_bi[j] = sims[-1], cand[-1]


@numba.njit(cache=True, nogil=True)
def patch_neighbours(nb_indptr, nb_indices, nb_sims, rs_indptr, rs_indices, rs_sims, bound_s, bound_i,
                     n, slot, fresh, keep, reserve):  # pragma: no cover - numba
    """New neighbour rows (top `keep`) and reserves (the next `reserve`) after the entities with
    slot[e] ≥ 0 changed. Rows past the old ends are new, empty entities.

    nb_* / rs_*: the old neighbours and reserves (CSR, rows best first); bound_s, bound_i: per
    row, the best-ranked (similarity, index) any candidate it does not store can have — (0, n)
    when it stores every positive one. fresh (n_touched, n): exact new similarities of the
    touched rows (`entity_sims`), by symmetry also their new values in every other row. A row
    keeps its exact top `keep` when at least `keep` of its known candidates rank before its
    bound; otherwise redo[j] is set and the row must be recomputed from the data.
    Returns (counts, idx, sims, rcounts, ridx, rsims, bound_s, bound_i, redo)."""
    counts = np.zeros(n, np.int64)
    idx = np.full((n, keep), -1, np.int64)
    sim = np.zeros((n, keep), np.float64)
    rcounts = np.zeros(n, np.int64)
    ridx = np.full((n, max(reserve, 1)), -1, np.int64)
    rsim = np.zeros((n, max(reserve, 1)), np.float64)
    out_bs = np.zeros(n)
    out_bi = np.full(n, n, np.int64)
    redo = np.zeros(n, np.bool_)
    n_old = len(nb_indptr) - 1
    touched = np.flatnonzero(slot >= 0)
    fresh_t = np.empty((n, len(touched)))  # fresh_t[j, q]: touched[q]'s new similarity with j
    for q in range(len(touched)):
        fresh_t[:, q] = fresh[slot[touched[q]]]
    for j in range(n):
        if slot[j] >= 0:
            cand = np.flatnonzero(fresh[slot[j]] > 0)
            _store(j, cand, fresh[slot[j]][cand], keep, reserve, 0.0, n, counts, idx, sim, rcounts, ridx, rsim,
                   out_bs, out_bi)
            continue
        bs, bi = (bound_s[j], bound_i[j]) if j < n_old else (0.0, n)
        # A: stored entries of untouched entities, already in rank order (neighbours, then reserve)
        size = 0
        if j < n_old:
            size = nb_indptr[j + 1] - nb_indptr[j] + rs_indptr[j + 1] - rs_indptr[j]
        a_idx = np.empty(size, np.int64)
        a_sim = np.empty(size)
        na = 0
        if j < n_old:
            for p in range(nb_indptr[j], nb_indptr[j + 1]):
                if slot[nb_indices[p]] < 0:
                    a_idx[na] = nb_indices[p]
                    a_sim[na] = nb_sims[p]
                    na += 1
            for p in range(rs_indptr[j], rs_indptr[j + 1]):
                if slot[rs_indices[p]] < 0:
                    a_idx[na] = rs_indices[p]
                    a_sim[na] = rs_sims[p]
                    na += 1
        # B: the touched entities' new values, ranked
        b_idx = np.empty(len(touched), np.int64)
        b_sim = np.empty(len(touched))
        nb = 0
        col = fresh_t[j]
        for q in range(len(touched)):
            if col[q] > 0:
                b_idx[nb] = touched[q]
                b_sim[nb] = col[q]
                nb += 1
        order = np.argsort(-b_sim[:nb], kind="mergesort")  # stable: ties keep ascending index
        b_idx, b_sim = b_idx[:nb][order], b_sim[:nb][order]
        # merge, up to keep + reserve + 1 entries
        total = min(na + nb, keep + reserve + 1)
        cand = np.empty(total, np.int64)
        sims = np.empty(total)
        x = y = 0
        for c in range(total):
            if y >= nb or (x < na and _before(a_sim[x], a_idx[x], b_sim[y], b_idx[y])):
                cand[c], sims[c] = a_idx[x], a_sim[x]
                x += 1
            else:
                cand[c], sims[c] = b_idx[y], b_sim[y]
                y += 1
        certified = 0
        for q in range(total):
            if _before(sims[q], cand[q], bs, bi):
                certified += 1
        if certified < keep and bs > 0.0:  # bound 0: the row stores every positive candidate
            redo[j] = True
            continue
        _store(j, cand, sims, keep, reserve, bs, bi, counts, idx, sim, rcounts, ridx, rsim, out_bs, out_bi,
               True)
    return counts, idx, sim, rcounts, ridx, rsim, out_bs, out_bi, redo


@numba.njit(cache=True, nogil=True)
def store_rows(rows, fresh, keep, reserve, counts, idx, sim, rcounts, ridx, rsim, out_bs, out_bi):  # pragma: no cover
    """Fill rows recomputed from the data (`entity_sims` of `rows`) into `patch_neighbours`' output."""
    n = len(out_bs)
    for q in range(len(rows)):
        cand = np.flatnonzero(fresh[q] > 0)
        _store(rows[q], cand, fresh[q][cand], keep, reserve, 0.0, n, counts, idx, sim, rcounts, ridx, rsim,
               out_bs, out_bi)


# ---- co-rating state (ranking-mode cosine) ----------------------------------------------------
# Ranking-mode cosine is C[e, f] / (‖e‖·‖f‖) with C = A·Aᵀ the co-rating sums of the raw rows
# (0/1 when binary) and ‖e‖² = C[e, e]. When the n×n matrix C is small enough, the model keeps
# it (`corating_`): a new rating (o, e) adds v·v_f to C[e, f] and C[f, e] for the o's other
# entries f — O(|row of o|), no data pass — and the neighbour lists are re-selected from C
# only where they can change. Sums of products of binary, integer or half-point ratings are
# exact in float64 in any order, so the kept C equals a fresh A·Aᵀ and the lists a full refit's.
@numba.njit(cache=True, nogil=True)
def corating_build(o_indptr, o_indices, o_values, c):  # pragma: no cover - numba
    """Add C = A·Aᵀ into the (n_ent, n_ent) zeros `c`, from Aᵀ as CSR (rows: the other side,
    columns: entities). `c` may be float32 where every sum is an integer below 2²⁴ (binary
    values: counts), exact as in float64."""
    for o in range(len(o_indptr) - 1):
        for p in range(o_indptr[o], o_indptr[o + 1]):
            e = o_indices[p]
            a = o_values[p]
            for q in range(o_indptr[o], o_indptr[o + 1]):
                c[e, o_indices[q]] += a * o_values[q]


@numba.njit(cache=True, nogil=True)
def corating_add(c, ev_o, ev_e, ev_new, ev_old, o_indptr, o_indices, o_values, binary):  # pragma: no cover
    """Apply changed entries (ev_o, ev_e): old value ev_old (0 if new) → ev_new, to C in place.

    Events sorted by ev_o, one per (o, e); o_* = Aᵀ as CSR after the change (rows: the other side;
    with `binary` every stored value counts as 1)."""
    n = c.shape[0]
    stamp = np.full(n, -1, np.int64)
    old_of = np.zeros(n)
    q = 0
    while q < len(ev_o):
        o = ev_o[q]
        r = q
        while r < len(ev_o) and ev_o[r] == o:
            stamp[ev_e[r]] = o
            old_of[ev_e[r]] = ev_old[r]
            r += 1
        for s in range(q, r):
            e, nv, ov = ev_e[s], ev_new[s], ev_old[s]
            for p in range(o_indptr[o], o_indptr[o + 1]):
                f = o_indices[p]
                vf = 1.0 if binary else float(o_values[p])
                if stamp[f] == o:  # both changed (e itself too): this pair's term once per order
                    c[e, f] += nv * vf - ov * old_of[f]
                else:
                    d = (nv - ov) * vf
                    c[e, f] += d
                    c[f, e] += d
        for s in range(q, r):
            stamp[ev_e[s]] = -1
        q = r


@numba.njit(cache=True, nogil=True)
def _corating_sim(c, norms, e, f):  # pragma: no cover - numba
    """As `corating_row` computes it."""
    return float(np.float32(c[e, f] / (norms[e] * norms[f])))


@numba.njit(cache=True, nogil=True)
def corating_row(c, norms, e, keep):  # pragma: no cover - numba
    """Row e's best `keep` positive neighbours from C, ordered by (similarity desc, index asc).

    One pass in index order with a sorted top list: a candidate enters only when it beats the
    current last one (an equal similarity seen later has the larger index, so it ranks after)."""
    n = c.shape[0]
    cand = np.empty(keep, np.int64)
    sims = np.empty(keep)
    m = 0
    ne = norms[e]
    row = c[e]
    floor = 0.0  # below floor·‖e‖ a candidate cannot enter (divisions only for the rest)
    for f in range(n):
        v = row[f]
        if v <= 0.0 or f == e or v < floor * norms[f]:
            continue
        s = float(np.float32(v / (ne * norms[f])))
        if s <= 0.0 or (m == keep and s <= sims[keep - 1]):
            continue
        p = m if m < keep else keep - 1
        while p > 0 and sims[p - 1] < s:
            if p < keep:
                cand[p] = cand[p - 1]
                sims[p] = sims[p - 1]
            p -= 1
        if m < keep:
            m += 1
        cand[p] = f
        sims[p] = s
        if m == keep:  # v/(‖e‖‖f‖) < last·(1 − 1e-6) rounds to a float32 below last: cannot enter
            floor = sims[keep - 1] * (1.0 - 1e-6) * ne
    return cand[:m], sims[:m]


@numba.njit(cache=True, parallel=True, nogil=True)
def corating_neighbours(c, norms, keep, n_chunks):  # pragma: no cover - numba
    """(counts (n,), idx (n, keep), sims (n, keep)) of every row's best neighbours from C."""
    n = c.shape[0]
    counts = np.zeros(n, np.int64)
    idx = np.full((n, keep), -1, np.int64)
    out = np.zeros((n, keep))
    n_chunks = max(1, min(n, n_chunks))
    size = (n + n_chunks - 1) // n_chunks
    for ch in numba.prange(n_chunks):
        for e in range(ch * size, min((ch + 1) * size, n)):
            cand, sims = corating_row(c, norms, e, keep)
            m = len(cand)
            counts[e] = m
            idx[e, :m] = cand
            out[e, :m] = sims
    return counts, idx, out


@numba.njit(cache=True, nogil=True)
def _rank(cand, csim, m):  # pragma: no cover - numba
    """Sort the first m (cand, csim) pairs in place by (similarity desc, index asc)."""
    for a in range(1, m):
        f, s = cand[a], csim[a]
        p = a
        while p > 0 and not _before(csim[p - 1], cand[p - 1], s, f):
            cand[p] = cand[p - 1]
            csim[p] = csim[p - 1]
            p -= 1
        cand[p] = f
        csim[p] = s


@numba.njit(cache=True, nogil=True)
def _corating_wide(c, norms, e, width, counts, idx, sims, bs, bi, n):  # pragma: no cover - numba
    """Re-select row e from C: its best `width` candidates, and the next one as its bound."""
    got, s = corating_row(c, norms, e, width + 1)
    _store_wide(e, got, s, len(got), width, counts, idx, sims, bs, bi, n)


@numba.njit(cache=True, nogil=True)
def _store_wide(e, cand, csim, m, width, counts, idx, sims, bs, bi, n):  # pragma: no cover - numba
    """Row e := the first min(m, width) ranked (cand, csim); the next one, if any, is its bound."""
    k = min(m, width)
    counts[e] = k
    idx[e, :k] = cand[:k]
    sims[e, :k] = csim[:k]
    bs[e], bi[e] = (csim[width], cand[width]) if m > width else (0.0, n)


@numba.njit(cache=True, nogil=True)
def corating_patch(c, norms, touched, counts, idx, sims, bs, bi, keep, old_norms):  # pragma: no cover - numba
    """Bring the ranked lists (counts (n,), idx and sims (n, width), width ≥ keep: the neighbours
    and then the reserve) and bounds (bs, bi) up to date after C changed in the `touched` rows
    and columns (and their norms), in place. Returns how many untouched rows were re-selected.

    Invariant: every candidate a row does not store ranks after its bound (bound 0: the row
    stores every positive one). Touched rows are re-selected from C. Another row re-ranks its
    stored candidates with the touched ones' new similarities and adds the touched ones that
    now rank before its bound (only touched similarities moved); it keeps those still before
    the bound (at most `width`; the first one dropped becomes the bound) and is re-selected
    from C only when fewer than `keep` remain. C may be larger than the n = len(counts)
    entities (a buffer whose extra rows and columns are 0).

    One contiguous pass over each touched row f of C (C is symmetric: row f is column f) does
    both jobs. (1) For every untouched row j, C[j, f] is tested against j's floor
    bound_j·(1 − 1e-6)·‖j‖·‖f‖ (as in `corating_row`: below it the similarity rounds to a
    float32 below the bound) without a division; survivors are queued per row with their value.
    A touched neighbour of j that is not queued now ranks after j's bound: it is dropped. (2) Row
    f's own candidates at or above a guess — 0.97 × its previous bound scaled by ‖f‖ before /
    after the change (`old_norms`: the norms before; f's untouched candidates scale by exactly
    that) — are collected and ranked; when fewer than width + 1 reach the guess the row is
    ranked in full (`corating_row`). A row with no
    touched neighbour and nothing queued is left as it is; a changed one merges its untouched
    entries (still in order) with the few moved or new ones."""
    n = len(counts)
    width = idx.shape[1]
    is_t = np.zeros(n, np.bool_)
    is_t[touched] = True
    floor = np.empty(n)
    for j in range(n):
        floor[j] = bs[j] * (1.0 - 1e-6) * norms[j]
    head = np.full(n, -1, np.int64)  # queued (row j, touched f, C[j, f]) as per-row linked lists
    nxt = np.empty(4096, np.int64)
    qf = np.empty(4096, np.int64)
    qv = np.empty(4096)
    nq = 0
    cand = np.empty(n, np.int64)
    csim = np.empty(n)
    hits = np.empty(n, np.int64)
    flags = np.empty(n, np.uint8)
    for f in touched:
        row = c[f]
        nf = norms[f]
        guess = 0.97 * bs[f] * (old_norms[f] / nf)  # the old bound, scaled as f's norm grew
        gfloor = guess * (1.0 - 1e-6) * nf
        if nq + n > len(nxt):  # room for a whole row: no test in the loop
            grown = max(2 * len(nxt), nq + n)
            nxt = np.concatenate((nxt, np.empty(grown - len(nxt), np.int64)))
            qf = np.concatenate((qf, np.empty(grown - len(qf), np.int64)))
            qv = np.concatenate((qv, np.empty(grown - len(qv))))
        for j in range(n):  # a branch-free (vectorised) pass first: the few j that can pass a test below
            v = np.float64(row[j])
            flags[j] = (v > 0.0) & ((v >= floor[j] * nf) | (v >= gfloor * norms[j]))
        n_hit = 0
        for j in range(n):
            hits[n_hit] = j
            n_hit += flags[j]
        m = 0
        for h in range(n_hit):
            j = hits[h]
            v = row[j]
            if v >= floor[j] * nf and not is_t[j]:
                nxt[nq] = head[j]
                qf[nq] = f
                qv[nq] = v
                head[j] = nq
                nq += 1
            if v >= gfloor * norms[j] and guess > 0.0 and j != f:
                s = float(np.float32(v / (nf * norms[j])))
                if s > 0.0 and s >= guess:
                    cand[m] = j
                    csim[m] = s
                    m += 1
        if m > width:  # every candidate not collected ranks after the guess
            if m <= 4 * width:
                _rank(cand, csim, m)
            else:  # many near the guess: a stable sort (index order on ties)
                order = np.argsort(-csim[:m], kind="mergesort")[:width + 1]
                cand[:width + 1], csim[:width + 1] = cand[:m][order], csim[:m][order]
                m = width + 1
            _store_wide(f, cand, csim, m, width, counts, idx, sims, bs, bi, n)
        else:
            _corating_wide(c, norms, f, width, counts, idx, sims, bs, bi, n)
    stamp = np.full(n, -1, np.int64)  # stamp[f] = j: f is queued for row j, at slot[f]
    slot = np.empty(n, np.int64)
    inlist = np.full(n, -1, np.int64)
    a_idx = np.empty(width, np.int64)
    a_sim = np.empty(width)
    b_idx = np.empty(width + len(touched), np.int64)
    b_sim = np.empty(width + len(touched))
    redone = 0
    for j in range(n):
        if is_t[j]:
            continue
        changed = head[j] >= 0
        if not changed:
            for p in range(counts[j]):
                if is_t[idx[j, p]]:
                    changed = True
                    break
        if not changed:
            continue
        b_s, b_i = bs[j], bi[j]
        nj = norms[j]
        q = head[j]
        while q >= 0:
            stamp[qf[q]] = j
            slot[qf[q]] = q
            q = nxt[q]
        na = nb = 0
        for p in range(counts[j]):  # A: untouched entries, in order; B: touched ones, re-valued
            f = idx[j, p]
            inlist[f] = j
            if not is_t[f]:
                a_idx[na] = f
                a_sim[na] = sims[j, p]
                na += 1
            elif stamp[f] == j:
                s = float(np.float32(qv[slot[f]] / (nj * norms[f])))  # as `_corating_sim`
                if s > 0 and _before(s, f, b_s, b_i):
                    b_idx[nb] = f
                    b_sim[nb] = s
                    nb += 1
        q = head[j]
        while q >= 0:  # B: touched candidates it did not store that now rank before its bound
            f = qf[q]
            if inlist[f] != j:
                s = float(np.float32(qv[q] / (nj * norms[f])))
                if s > 0 and _before(s, f, b_s, b_i):
                    b_idx[nb] = f
                    b_sim[nb] = s
                    nb += 1
            q = nxt[q]
        m = na + nb
        if m < keep and b_s > 0.0:
            _corating_wide(c, norms, j, width, counts, idx, sims, bs, bi, n)
            redone += 1
            continue
        _rank(b_idx, b_sim, nb)
        x = y = 0
        out = min(m, width)
        for p in range(out):
            if y >= nb or (x < na and _before(a_sim[x], a_idx[x], b_sim[y], b_idx[y])):
                idx[j, p], sims[j, p] = a_idx[x], a_sim[x]
                x += 1
            else:
                idx[j, p], sims[j, p] = b_idx[y], b_sim[y]
                y += 1
        if m > width:  # the first one dropped becomes the bound
            if y >= nb or (x < na and _before(a_sim[x], a_idx[x], b_sim[y], b_idx[y])):
                bs[j], bi[j] = a_sim[x], a_idx[x]
            else:
                bs[j], bi[j] = b_sim[y], b_idx[y]
        counts[j] = out
    return redone


@numba.njit(cache=True, nogil=True)
def lists_padded(nb_indptr, nb_indices, nb_sims, rs_indptr, rs_indices, rs_sims, bound_s, bound_i, n,
                 width):  # pragma: no cover - numba
    """Stored neighbours then reserve as ranked (n, width) lists: (counts, idx, sims, bs, bi).
    Rows past the old ends are new and empty, with no bound (0, n); so is an old bound index
    past the old ends."""
    n_old = len(nb_indptr) - 1
    counts = np.zeros(n, np.int64)
    idx = np.full((n, width), -1, np.int64)
    sims = np.zeros((n, width))
    bs = np.zeros(n)
    bi = np.full(n, n, np.int64)
    for j in range(n_old):
        m = 0
        for p in range(nb_indptr[j], nb_indptr[j + 1]):
            idx[j, m] = nb_indices[p]
            sims[j, m] = nb_sims[p]
            m += 1
        for p in range(rs_indptr[j], rs_indptr[j + 1]):
            idx[j, m] = rs_indices[p]
            sims[j, m] = rs_sims[p]
            m += 1
        counts[j] = m
        bs[j] = bound_s[j]
        if bound_i[j] < n_old:
            bi[j] = bound_i[j]
    return counts, idx, sims, bs, bi


@numba.njit(cache=True, nogil=True)
def lists_split(counts, idx, sims, keep):  # pragma: no cover - numba
    """Ranked (n, width) lists as CSR: the first `keep` of each row as neighbours (float32
    similarities), the rest as its reserve (float64)."""
    n = len(counts)
    nb_indptr = np.zeros(n + 1, np.int64)
    rs_indptr = np.zeros(n + 1, np.int64)
    for j in range(n):
        k = min(counts[j], keep)
        nb_indptr[j + 1] = nb_indptr[j] + k
        rs_indptr[j + 1] = rs_indptr[j] + counts[j] - k
    nb_indices = np.empty(nb_indptr[n], np.int64)
    nb_sims = np.empty(nb_indptr[n], np.float32)
    rs_indices = np.empty(rs_indptr[n], np.int64)
    rs_sims = np.empty(rs_indptr[n])
    for j in range(n):
        k = min(counts[j], keep)
        a = nb_indptr[j]
        for p in range(k):
            nb_indices[a + p] = idx[j, p]
            nb_sims[a + p] = sims[j, p]
        a = rs_indptr[j] - k
        for p in range(k, counts[j]):
            rs_indices[a + p] = idx[j, p]
            rs_sims[a + p] = sims[j, p]
    return nb_indptr, nb_indices, nb_sims, rs_indptr, rs_indices, rs_sims


@numba.njit(cache=True, nogil=True)
def row_means_at(indptr, values, rows, means, default):  # pragma: no cover - numba
    """means[r] = the mean of CSR row r's stored values (`default` when empty), for r in rows."""
    for r in rows:
        lo, hi = indptr[r], indptr[r + 1]
        total = 0.0
        for p in range(lo, hi):
            total += values[p]
        means[r] = total / (hi - lo) if hi > lo else default


def corating_norms(c: np.ndarray) -> np.ndarray:
    """(n,) row norms ‖e‖ = sqrt(C[e, e]), floored as `_l2_rows` floors them."""
    return np.maximum(np.sqrt(np.diag(c).astype(np.float64)), 1e-12)

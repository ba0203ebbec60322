"""Rating, ranking and beyond-accuracy metrics as plain functions over arrays.

Ranking metrics see lists, not models: `recommended` is a (n_users, K) int array of item
indices in rank order (-1 marks an empty slot), `relevant` gives each row's relevant items.
Every ranking metric returns the mean over users that have at least one relevant item.

Definitions (binary relevance):
- precision@K = hits in top-K / K
- recall@K = hits in top-K / #relevant
- ndcg@K = DCG / IDCG, DCG = sum over hit ranks r (1-based) of 1 / log2(r + 1),
  IDCG over min(K, #relevant) hits
- map (Microsoft Recommenders' definition) = sum of precision@r at each hit rank r ≤ K,
  divided by #relevant
- map@K = the same sum divided by min(K, #relevant)
- hr@K = 1 when the top-K holds any relevant item
- mrr@K = 1 / rank of the first hit in the top-K (0 when none)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp


# ---- rating metrics -----------------------------------------------------------------------
def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared error over (n,) arrays."""
    d = np.asarray(y_true, np.float64) - np.asarray(y_pred, np.float64)
    return float(np.sqrt(np.mean(d * d)))


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute error over (n,) arrays."""
    return float(np.mean(np.abs(np.asarray(y_true, np.float64) - np.asarray(y_pred, np.float64))))


# ---- hits -------------------------------------------------------------------------------------
def hit_matrix(
    recommended: np.ndarray, relevant: sp.csr_matrix | Sequence[Sequence[int]]
) -> tuple[np.ndarray, np.ndarray]:
    """(hits (n_users, K) bool, n_relevant (n_users,)) for recommended lists against relevant sets.

    `relevant` is a CSR matrix with one row per recommended row (nonzeros = relevant items) or a
    sequence of item-index sequences.
    """
    rec = np.asarray(recommended, np.int64)
    if rec.ndim != 2:
        raise ValueError(f"recommended must be 2-d (n_users, K), got shape {rec.shape}")
    if not sp.issparse(relevant):
        rows = [np.unique(np.asarray(r, np.int64)) for r in relevant]
        n_cols = max([int(rec.max(initial=-1)) + 1] + [int(r.max()) + 1 for r in rows if len(r)])
        relevant = sp.csr_matrix(
            (np.ones(sum(len(r) for r in rows)),
             (np.repeat(np.arange(len(rows)), [len(r) for r in rows]), np.concatenate(rows + [np.empty(0, np.int64)]))),
            shape=(len(rows), max(n_cols, 1)),
        )
    rel = sp.csr_matrix(relevant)
    if rel.shape[0] != rec.shape[0]:
        raise ValueError(f"{rec.shape[0]} recommended rows but {rel.shape[0]} relevant rows")
    rows = np.repeat(np.arange(rec.shape[0]), rec.shape[1])
    cols = np.clip(rec.reshape(-1), 0, rel.shape[1] - 1)
    found = np.asarray(rel[rows, cols]).reshape(rec.shape) != 0
    hits = found & (rec >= 0) & (rec < rel.shape[1])
    n_rel = np.diff(rel.indptr)
    return hits, n_rel


def _mean(values: np.ndarray, n_rel: np.ndarray) -> float:
    mask = n_rel > 0
    return float(values[mask].mean()) if mask.any() else 0.0


def _top(hits: np.ndarray, k: int | None) -> np.ndarray:
    return hits if k is None else hits[:, :k]


# ---- ranking metrics (each: mean over users with a relevant item) -------------------------
def precision_at_k(hits: np.ndarray, n_rel: np.ndarray, k: int | None = None) -> float:
    h = _top(hits, k)
    return _mean(h.sum(1) / h.shape[1], n_rel)


def recall_at_k(hits: np.ndarray, n_rel: np.ndarray, k: int | None = None) -> float:
    h = _top(hits, k)
    return _mean(h.sum(1) / np.maximum(n_rel, 1), n_rel)


def ndcg_at_k(hits: np.ndarray, n_rel: np.ndarray, k: int | None = None) -> float:
    h = _top(hits, k)
    kk = h.shape[1]
    disc = 1.0 / np.log2(np.arange(2, kk + 2))
    dcg = (h * disc).sum(1)
    ideal_n = np.minimum(n_rel, kk)
    idcg = np.concatenate([[0.0], np.cumsum(disc)])[ideal_n]
    return _mean(np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0), n_rel)


def _precision_sum(h: np.ndarray) -> np.ndarray:
    ranks = np.arange(1, h.shape[1] + 1)
    return (np.cumsum(h, axis=1) / ranks * h).sum(1)


def map_msr(hits: np.ndarray, n_rel: np.ndarray, k: int | None = None) -> float:
    """Microsoft Recommenders' MAP: precision summed at hit ranks ≤ K, divided by #relevant."""
    h = _top(hits, k)
    return _mean(_precision_sum(h) / np.maximum(n_rel, 1), n_rel)


def map_at_k(hits: np.ndarray, n_rel: np.ndarray, k: int | None = None) -> float:
    """MAP@K: precision summed at hit ranks ≤ K, divided by min(K, #relevant)."""
    h = _top(hits, k)
    return _mean(_precision_sum(h) / np.maximum(np.minimum(n_rel, h.shape[1]), 1), n_rel)


def hr_at_k(hits: np.ndarray, n_rel: np.ndarray, k: int | None = None) -> float:
    return _mean(_top(hits, k).any(1).astype(np.float64), n_rel)


def mrr_at_k(hits: np.ndarray, n_rel: np.ndarray, k: int | None = None) -> float:
    h = _top(hits, k)
    first = np.argmax(h, axis=1)
    rr = np.where(h.any(1), 1.0 / (first + 1), 0.0)
    return _mean(rr, n_rel)


def ranking_metrics(hits: np.ndarray, n_rel: np.ndarray, k: int) -> dict[str, float]:
    """All ranking metrics at one K, keyed as in result records."""
    return {
        f"precision@{k}": precision_at_k(hits, n_rel, k),
        f"recall@{k}": recall_at_k(hits, n_rel, k),
        f"ndcg@{k}": ndcg_at_k(hits, n_rel, k),
        "map": map_msr(hits, n_rel, k),
        f"map@{k}": map_at_k(hits, n_rel, k),
        f"hr@{k}": hr_at_k(hits, n_rel, k),
        f"mrr@{k}": mrr_at_k(hits, n_rel, k),
    }


# ---- beyond accuracy --------------------------------------------------------------------------
def coverage(recommended: np.ndarray, n_items: int) -> float:
    """Catalogue coverage: distinct recommended items / n_items."""
    rec = np.asarray(recommended)
    return float(len(np.unique(rec[rec >= 0])) / n_items) if n_items else 0.0


def novelty(recommended: np.ndarray, item_popularity: np.ndarray, n_users: int) -> float:
    """Mean self-information -log2(p(i)) of recommended items, p(i) = users with i / n_users.

    Items nobody interacted with count as seen once (so their information is finite).
    """
    rec = np.asarray(recommended)
    items = rec[rec >= 0]
    if not len(items):
        return 0.0
    p = np.maximum(np.asarray(item_popularity, np.float64)[items], 1.0) / max(n_users, 1)
    return float(np.mean(-np.log2(p)))


def diversity(recommended: np.ndarray, item_vectors: np.ndarray | sp.spmatrix) -> float:
    """Intra-list diversity: mean pairwise cosine distance between item feature vectors
    (e.g. genre indicators) within each list, averaged over lists with ≥ 2 items."""
    rec = np.asarray(recommended)
    vec = item_vectors.toarray() if sp.issparse(item_vectors) else np.asarray(item_vectors, np.float64)
    norms = np.linalg.norm(vec, axis=1, keepdims=True)
    unit = np.divide(vec, norms, out=np.zeros_like(vec, dtype=np.float64), where=norms > 0)
    out = []
    for row in rec:
        row = row[row >= 0]
        if len(row) < 2:
            continue
        v = unit[row]
        sim = v @ v.T
        n = len(row)
        out.append(1.0 - (sim.sum() - np.trace(sim)) / (n * (n - 1)))
    return float(np.mean(out)) if out else 0.0

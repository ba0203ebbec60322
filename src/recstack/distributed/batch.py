"""Batch inference: top-k for every user of a saved model, seen items excluded, as Parquet.

Output columns: `user`, `item` (external ids; integers when every id is a plain integer),
`rank` (1..k), `score` (float32). Users with fewer than k unseen items get fewer rows.

- engine "local": the in-process reference. Blocks of users are scored (float32 matrix
  products) and reduced to their top k by the numba kernel, two blocks at a time on two
  threads (both release the GIL), so the score matrix never exists in full. Factor models
  (mf, biased-mf, als) score into one reused buffer per thread, x_u · y_i with b_i as an extra
  factor column, μ + b_u added to the k kept scores.
- engine "spark": the same on Spark (`spark.spark_top_k`), for factor models (`user_factors_`,
  `item_factors_`: MF, biased MF, ALS).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recstack.data.interactions import Interactions
from recstack.errors import RecstackError
from recstack.models.base import Model
from recstack.recommend import recommend
from recstack.topk import top_k_rows_serial


def local_top_k(model: Model, seen: sp.csr_matrix | None, k: int, users: np.ndarray | None = None,
                block: int = 1024, threads: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k (indices, float32 scores) for `users` (default all) with `seen`'s nonzeros removed.

    Returns (users (n,), items (n, k) int64 with -1 padding, scores (n, k) float32).
    """
    users = np.arange(model.n_users_) if users is None else np.asarray(users, np.int64)
    threads = threads or min(2, os.cpu_count() or 1)
    blocks = [users[s:s + block] for s in range(0, len(users), block)]
    items = np.empty((len(users), k), np.int64)
    scores = np.empty((len(users), k), np.float32)
    factors = _dot_factors(model) if len(users) and 0 <= users.min() and users.max() < model.n_users_ else None
    local = threading.local()

    def run(b: int) -> None:
        if factors is None:
            idx, val = recommend(model, blocks[b], k, exclude=seen, batch_size=block)
        else:  # one score buffer per thread, filled in place: no fresh block of pages per block
            X, YT = factors
            if getattr(local, "buf", None) is None:
                local.buf = np.empty((block, YT.shape[1]), np.float32)
            ub = blocks[b]
            s = local.buf[:len(ub)]
            np.matmul(X[ub], YT, out=s)
            if seen is not None:
                sub = seen[ub].tocoo()
                s[sub.row, sub.col] = -np.inf
            idx, val = top_k_rows_serial(s, k)
            val += score_offset(model, ub)
        items[b * block:b * block + len(blocks[b])] = idx
        scores[b * block:b * block + len(blocks[b])] = val

    if threads == 1:
        for b in range(len(blocks)):
            run(b)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(run, range(len(blocks))))
    return users, items, scores


def _dot_factors(model: Model) -> tuple[np.ndarray, np.ndarray] | None:
    """(X, Yᵀ) when `model` scores x_u · y_i (+ what `score_offset` adds): the MF family with
    its own `_score` (mf, biased-mf, als); None for every other model."""
    from recstack.models.mf import MF

    if not (isinstance(model, MF) and type(model)._score is MF._score):
        return None
    X, Y = factor_arrays(model)
    return X, np.ascontiguousarray(Y.T)


def seen_matrix(model_train: Interactions, data: Interactions | None) -> sp.csr_matrix:
    """(n_users, n_items) matrix of what each model user has seen: the model's own training data,
    or `data` (another table, mapped onto the model's vocabularies; unknown ids are ignored)."""
    if data is None:
        return model_train.csr
    import pandas as pd

    umap = pd.Index(model_train.user_ids).get_indexer(data.user_ids)
    imap = pd.Index(model_train.item_ids).get_indexer(data.item_ids)
    u, i = umap[data.user], imap[data.item]
    ok = (u >= 0) & (i >= 0)
    m = sp.csr_matrix((np.ones(int(ok.sum()), np.float32), (u[ok], i[ok])),
                      shape=(model_train.n_users, model_train.n_items))
    m.sum_duplicates()
    return m


def seen_interactions(model_train: Interactions, data: Interactions | None) -> Interactions:
    """`seen_matrix` as index `Interactions` over the model's vocabularies (for Spark)."""
    if data is None:
        return model_train
    m = seen_matrix(model_train, data).tocoo()
    return Interactions(model_train.user_ids, model_train.item_ids, m.row.astype(np.int32),
                        m.col.astype(np.int32), np.ones(m.nnz, np.float32), np.zeros(m.nnz, np.int64))


def write_top_k(path: str | Path, train: Interactions, users: np.ndarray, items: np.ndarray,
                scores: np.ndarray) -> Path:
    """Write top-k arrays (model indices) as Parquet rows user, item, rank, score (external ids)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from recstack.data.parquet import _int_ids

    k = items.shape[1]
    keep = items.reshape(-1) >= 0
    u = np.repeat(users, k)[keep]
    i = items.reshape(-1)[keep]
    rank = np.tile(np.arange(1, k + 1, dtype=np.int32), len(users))[keep]
    cols = {}
    for name, vocab, codes in (("user", train.user_ids, u), ("item", train.item_ids, i)):
        ints = _int_ids(vocab)
        cols[name] = pa.array(ints[codes]) if ints is not None else pa.array(vocab[codes].tolist())
    cols["rank"] = pa.array(rank)
    cols["score"] = pa.array(scores.reshape(-1)[keep].astype(np.float32))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), out, row_group_size=1 << 20)
    return out


def factor_arrays(model: Model) -> tuple[np.ndarray, np.ndarray]:
    """(user factors, item factors) of a factor model whose score is their dot product."""
    if not (hasattr(model, "user_factors_") and hasattr(model, "item_factors_")):
        raise RecstackError(f"the spark engine ranks factor models (user_factors_ · item_factors_); "
                            f"{model.name!r} has none — use --engine local")
    X = np.asarray(model.user_factors_, np.float32)
    Y = np.asarray(model.item_factors_, np.float32)
    if getattr(model, "biased", False):  # μ + b_u drop out of a ranking; b_i rides along as a column
        X = np.hstack([X, np.ones((len(X), 1), np.float32)])
        Y = np.hstack([Y, np.asarray(model.item_bias_, np.float32)[:, None]])
    return X, Y


def score_offset(model: Model, users: np.ndarray) -> np.ndarray:
    """(len(users), 1) what `model.score` adds to x_u · y_i: μ, plus b_u for biased models."""
    off = np.full(len(users), float(getattr(model, "global_mean_", 0.0)), np.float32)
    if getattr(model, "biased", False):
        off += np.asarray(model.user_bias_, np.float32)[users]
    return off[:, None]

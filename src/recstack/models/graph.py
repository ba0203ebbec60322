"""RP3beta: item-item similarities from a popularity-penalised 3-step random walk.

Christoffel, Paudel, Newell & Bernstein, "Blockbusters and Wallflowers: Accurate, Diverse, and
Scalable Recommendations with Random Walks" (RecSys 2015) and Paudel, Christoffel, Newell &
Bernstein, "Updatable, Accurate, Diverse, and Scalable Recommendations for Interactive
Applications" (TiiS 2016). With X the (n_users, n_items) training matrix (binary, or ratings as
edge weights), P_ui = X row-normalised (user → item transition probabilities), P_iu = Xᵀ
row-normalised (item → user), both raised element-wise to the power α:

    W[i, j] = (P_iu^α · P_ui^α)[i, j] / deg(j)^β,   W[i, i] = 0,

keeping the `k` largest entries of each row i (optionally each row then rescaled to sum 1),
and scores = X · W (the walk user → item → user → item, with the last step penalised by
popularity). With `side_weight` w > 0, item metadata joins the graph as pseudo-users (one per
genre and release-year bucket, edges of weight w), as EASE's side information in `ease.py`;
they only shape W, scores come from real users. W is built `block` rows at a time into a
dense (block, n_items) buffer, so memory is O(block · n_items + n_items · k), never n_items².
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from recstack.data.interactions import Interactions
from recstack.models.config import Config, require
from recstack.models.ease import side_matrix
from recstack.models.itemitem import ItemItemModel


@dataclass(frozen=True)
class RP3BetaConfig(Config):
    """`alpha`: power on the transition probabilities; `beta`: popularity penalty exponent on
    the destination item's degree; `k`: neighbours kept per item (0: all); `normalize`: rescale
    each kept row of W to sum 1; `binary`: unit edge weights instead of ratings; `side_weight`:
    edge weight of genre / release-year pseudo-users joining the walk (0: none; as in `ease`)."""

    alpha: float = 1.0  # power on the transition probabilities
    beta: float = 0.6  # popularity penalty: divide by the destination item's degree^beta
    k: int = 100  # neighbours kept per item (0: all)
    normalize: bool = False  # rescale each kept row of W to sum 1
    binary: bool = True
    side_weight: float = 0.0
    side_year_bucket: int = 2

    def check(self) -> None:
        require(self.alpha > 0, "alpha", self.alpha, "must be > 0")
        require(self.beta >= 0, "beta", self.beta, "must be ≥ 0")
        require(self.k >= 0, "k", self.k, "must be ≥ 0 (0 keeps every neighbour)")
        require(self.side_weight >= 0, "side_weight", self.side_weight, "must be ≥ 0")
        require(self.side_year_bucket >= 1, "side_year_bucket", self.side_year_bucket, "must be ≥ 1")


def _row_stochastic(x: sp.csr_matrix, alpha: float) -> sp.csr_matrix:
    """Rows rescaled to sum 1 (empty rows stay empty), then each entry raised to `alpha`."""
    x = sp.csr_matrix(x, dtype=np.float64, copy=True)
    sums = np.asarray(x.sum(axis=1)).ravel()
    rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))
    x.data = (x.data / np.maximum(sums[rows], 1e-300)) ** alpha
    return x


def _top_k_rows(dense: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of (b, n) `dense`, the column indices and values of its `k` largest positive
    entries (ties broken by lower column index), flattened with their per-row counts."""
    b, n = dense.shape
    if 0 < k < n:
        # stable order: by value desc, then column asc
        part = np.argsort(-dense, axis=1, kind="stable")[:, :k]
    else:
        part = np.broadcast_to(np.arange(n), (b, n))
    vals = np.take_along_axis(dense, part, axis=1)
    keep = vals > 0
    return part[keep], vals[keep], keep.sum(axis=1)


def rp3beta_weights(x: sp.csr_matrix, alpha: float, beta: float, k: int, normalize: bool,
                    block: int | None = None) -> sp.csr_matrix:
    """(n_items, n_items) sparse RP3beta weights W from (n_users, n_items) CSR `x`; diag(W) = 0."""
    x = sp.csr_matrix(x, dtype=np.float64)
    n_items = x.shape[1]
    p_ui = _row_stochastic(x, alpha)
    p_iu = _row_stochastic(x.T.tocsr(), alpha)
    degree = np.bincount(x.indices, minlength=n_items).astype(np.float64)
    penalty = np.zeros(n_items)
    penalty[degree > 0] = degree[degree > 0] ** -beta
    if block is None:
        block = max(1, min(n_items, (1 << 23) // max(n_items, 1)))
    indptr = [np.zeros(1, np.int64)]
    indices, data = [], []
    for lo in range(0, n_items, block):
        hi = min(lo + block, n_items)
        dense = (p_iu[lo:hi] @ p_ui).toarray()
        dense *= penalty[None, :]
        dense[np.arange(hi - lo), np.arange(lo, hi)] = 0.0
        cols, vals, counts = _top_k_rows(dense, k)
        if normalize:
            rows = np.repeat(np.arange(len(counts)), counts)
            vals = vals / np.bincount(rows, vals, minlength=len(counts))[rows]
        indices.append(cols.astype(np.int64))
        data.append(vals)
        indptr.append(indptr[-1][-1] + np.cumsum(counts))
    return sp.csr_matrix((np.concatenate(data), np.concatenate(indices), np.concatenate(indptr)),
                         shape=(n_items, n_items))


def rp3beta_weights_slow(x: np.ndarray, alpha: float, beta: float, k: int, normalize: bool) -> np.ndarray:
    """Dense twin of `rp3beta_weights` straight from the formula, for tests."""
    x = np.asarray(x, np.float64)
    ru = x.sum(axis=1, keepdims=True)
    ri = x.sum(axis=0, keepdims=True)
    p_ui = np.divide(x, ru, out=np.zeros_like(x), where=ru > 0) ** alpha
    p_iu = np.divide(x, ri, out=np.zeros_like(x), where=ri > 0).T ** alpha
    degree = (x > 0).sum(axis=0).astype(np.float64)
    w = p_iu @ p_ui
    w = np.where(degree[None, :] > 0, w / np.maximum(degree, 1)[None, :] ** beta, 0.0)
    np.fill_diagonal(w, 0.0)
    out = np.zeros_like(w)
    for i in range(len(w)):
        order = np.argsort(-w[i], kind="stable")
        top = order[:k] if k else order
        top = top[w[i, top] > 0]
        out[i, top] = w[i, top]
        if normalize and out[i].sum() > 0:
            out[i] /= out[i].sum()
    return out


class RP3Beta(ItemItemModel):
    """Graph-based item-item model: score(u) = x_u · W, W the RP3beta walk weights.

    State: W as CSR arrays `weights_indptr_`, `weights_indices_`, `weights_data_` (≤ k per row);
    the training matrix as `train_indptr_`, `train_indices_`, `train_values_` (walk weights).
    """

    name = "rp3beta"
    config_class = RP3BetaConfig

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        return {
            "alpha": trial.suggest_float("alpha", 0.2, 2.0),
            "beta": trial.suggest_float("beta", 0.0, 1.0),
            "k": trial.suggest_int("k", 10, 500, log=True),
            "normalize": trial.suggest_categorical("normalize", [True, False]),
            "side_weight": trial.suggest_categorical("side_weight", [0.0, 0.5, 1.0, 2.0]),
        }

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        c = self.config
        x = train.csr.astype(np.float64)
        if c.binary:
            x.data[:] = 1.0
        graph = x
        if c.side_weight > 0:
            f = side_matrix(train.item_features, c.side_year_bucket)
            graph = sp.vstack([x, sp.csr_matrix(c.side_weight * f.T)]).tocsr()
        w = rp3beta_weights(graph, c.alpha, c.beta, c.k, c.normalize)
        self._store(x, w)

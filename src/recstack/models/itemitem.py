"""Shared scoring for models that learn a sparse item-item weight matrix W (rp3beta, slim).

A subclass fits W and hands it with the training matrix X to `_store`; scores are X[users] · W,
a new user is scored from their own row, and similar items are a row of W.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recstack.models.base import Explanation, Model, item_parts


class ItemItemModel(Model):
    """Base for ranking models scoring with X · W, W (n_items, n_items) sparse.

    State: W as CSR arrays `weights_indptr_` / `weights_indices_` / `weights_data_` and the
    training matrix X as `train_indptr_` / `train_indices_` / `train_values_`. The config must
    have a `binary` field (X holds ones instead of ratings).
    """

    explicit = False

    def _store(self, x: sp.csr_matrix, w: sp.csr_matrix) -> None:
        w = sp.csr_matrix(w)
        self.weights_indptr_ = w.indptr.astype(np.int64)
        self.weights_indices_ = w.indices.astype(np.int64)
        self.weights_data_ = w.data.astype(np.float32)
        self.train_indptr_ = x.indptr.astype(np.int64)
        self.train_indices_ = x.indices.astype(np.int64)
        self.train_values_ = x.data.astype(np.float32)

    def weights(self) -> sp.csr_matrix:
        """(n_items, n_items) sparse W."""
        return sp.csr_matrix((self.weights_data_, self.weights_indices_, self.weights_indptr_),
                             shape=(self.n_items_, self.n_items_))

    def _score(self, users: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        x = sp.csr_matrix((self.train_values_, self.train_indices_, self.train_indptr_),
                          shape=(self.n_users_, self.n_items_))
        w = self.weights() if items is None else self.weights()[:, items]
        return np.asarray((x[users] @ w).toarray(), dtype=np.float32)

    def score_new_user(self, items: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        """(n_items,) scores for a user known only by `ratings` of `items` (no refit needed)."""
        x = np.ones(len(items)) if self.config.binary else np.asarray(ratings, np.float64)
        rows = self.weights()[np.asarray(items, np.int64)]
        return np.asarray(rows.T @ x, dtype=np.float32).ravel()

    def explain(self, user: int, item: int, history: object = None) -> Explanation:
        """score(u, i) = Σ_j x_uj · W[j, i]: one exact part per history item j with W[j, i] ≠ 0."""
        lo, hi = self.train_indptr_[user], self.train_indptr_[user + 1]
        js, xs = self.train_indices_[lo:hi], self.train_values_[lo:hi].astype(np.float64)
        col = np.asarray(self.weights()[:, [item]].toarray()).ravel()[js].astype(np.float64)
        return item_parts(js, xs * col)

    def similar_items(self, item: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The k items j with the largest weight W[item, j] (the item itself excluded)."""
        lo, hi = self.weights_indptr_[item], self.weights_indptr_[item + 1]
        cols, vals = self.weights_indices_[lo:hi], self.weights_data_[lo:hi]
        keep = cols != item
        cols, vals = cols[keep], vals[keep]
        order = np.lexsort((cols, -vals))[:k]
        return cols[order], vals[order]


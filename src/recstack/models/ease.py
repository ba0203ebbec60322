"""EASE: a shallow linear item-item autoencoder with a closed-form solution.

Steck, "Embarrassingly Shallow Autoencoders for Sparse Data" (WWW 2019):
    G = XᵀX + λI,  P = G⁻¹,  B = I − P·diag(1 / diag(P))   (so diag(B) = 0)
and scores = X·B. `variant="dlae"` is the dropout-emphasis variant without the zero-diagonal
constraint (Steck, "Autoencoders that don't overfit towards the Identity", NeurIPS 2020):
    Λ = λI + p/(1−p)·diag(XᵀX),  B = (XᵀX + Λ)⁻¹ XᵀX.
X is the (n_users, n_items) training matrix, binary or raw ratings. With `side_weight` w > 0,
item metadata joins as pseudo-users (Jeunen, Van Balen & Goethals, "Closed-form models for
collaborative filtering with side-information", RecSys 2020): one row per genre and per
release-year bucket, weight w, stacked under X, so G = XᵀX + w²·FFᵀ with F the
(n_items, n_features) one-hot metadata. Memory is dense n_items², so this suits catalogues up
to a few tens of thousands of items.

No `partial_fit`: EASE's weights B = I − P·diag(1/diag(P)), P = (XᵀX + λI)⁻¹, depend on the
whole inverse. A new rating (u, i) changes row and column i of the Gram matrix XᵀX by
r·x_u (a rank-2 update per touched item, and a user with n ratings touches n items), so a
Woodbury update of P costs O(n_items² · rank) per event and leaves every column of B changed
— about the cost of a full refit (one dense inverse) for any daily batch of real size, with
accumulated rounding besides. A full refit is the honest update; `Recommender.update` says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.sparse as sp

from recstack.data.interactions import Interactions
from recstack.errors import DataError
from recstack.models.base import Explanation, Model, item_parts
from recstack.models.config import Config, require
from recstack.progress import Bar


@dataclass(frozen=True)
class EASEConfig(Config):
    """`lambda_` (alias `lambda`): L2 weight λ; `binary`: use 1 for every interaction instead of
    its rating; `variant`: "ease" (zero diagonal) or "dlae" with `dropout` p; `side_weight`:
    weight of the genre / release-year pseudo-users (0: none), years bucketed by `side_year_bucket`."""

    aliases = {"lambda": "lambda_"}

    lambda_: float = 500.0
    binary: bool = True
    variant: Literal["ease", "dlae"] = "ease"  # ease: zero-diagonal closed form; dlae: dropout emphasis, diagonal free
    dropout: float = 0.25  # dlae only: p in Λ = λI + p/(1−p)·diag(XᵀX)
    side_weight: float = 0.0
    side_year_bucket: int = 2

    def check(self) -> None:
        require(self.lambda_ > 0, "lambda_", self.lambda_, "must be > 0")
        require(self.side_weight >= 0, "side_weight", self.side_weight, "must be ≥ 0")
        require(self.side_year_bucket >= 1, "side_year_bucket", self.side_year_bucket, "must be ≥ 1")
        require(0 <= self.dropout < 1, "dropout", self.dropout, "must be in [0, 1)")


def ease_weights(gram: np.ndarray, lam: float) -> np.ndarray:
    """(n_items, n_items) EASE weights B from the Gram matrix XᵀX (n_items, n_items); diag(B) = 0."""
    g = np.array(gram, dtype=np.float64, copy=True)
    g[np.diag_indices_from(g)] += lam
    p = _spd_inverse(g)
    b = p / (-np.diag(p))[None, :]
    b[np.diag_indices_from(b)] = 0.0
    return b


def dlae_weights(gram: np.ndarray, lam: float, dropout: float) -> np.ndarray:
    """(n_items, n_items) DLAE weights B = (G + Λ)⁻¹ G, Λ = λI + p/(1−p)·diag(G)."""
    g = np.asarray(gram, dtype=np.float64)
    reg = lam + dropout / (1.0 - dropout) * np.diag(g)
    a = g.copy()
    a[np.diag_indices_from(a)] += reg
    return scipy.linalg.solve(a, g, assume_a="pos")


def side_matrix(features: pd.DataFrame | None, year_bucket: int) -> np.ndarray:
    """(n_items, n_features) 0/1 matrix: one column per genre and per release-year bucket."""
    if features is None or not {"genres", "year"} & set(features.columns):
        raise DataError("side_weight > 0 needs item features (genres or year); this data set has none")
    rows = [[] for _ in range(len(features))]
    if "genres" in features:
        for i, gs in enumerate(features["genres"]):
            rows[i] += [f"genre:{g}" for g in (gs if isinstance(gs, (list, tuple, np.ndarray)) else [])]
    if "year" in features:
        years = pd.to_numeric(features["year"], errors="coerce")
        for i, y in enumerate(years):
            if not pd.isna(y):
                rows[i].append(f"year:{int(y) // year_bucket * year_bucket}")
    names = sorted({v for r in rows for v in r})
    col = {v: j for j, v in enumerate(names)}
    out = np.zeros((len(rows), len(names)))
    for i, r in enumerate(rows):
        out[i, [col[v] for v in r]] = 1.0
    return out


def _spd_inverse(a: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive-definite matrix through its Cholesky factor."""
    c, low = scipy.linalg.cho_factor(a, lower=True, overwrite_a=True)
    return scipy.linalg.cho_solve((c, low), np.eye(len(a)), overwrite_b=True)


class EASE(Model):
    """Item-item linear model: score(u) = x_u · B.

    State: `weights_` (n_items, n_items) float32 B; the training matrix as CSR arrays
    `train_indptr_`, `train_indices_`, `train_values_` (the values scored against B).
    """

    name = "ease"
    config_class = EASEConfig
    matrix_only = True
    explicit = False

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        return {
            "lambda_": trial.suggest_float("lambda_", 10.0, 5000.0, log=True),
            "binary": trial.suggest_categorical("binary", [True, False]),
            "side_weight": trial.suggest_categorical("side_weight", [0.0, 1.0, 2.0, 3.0, 5.0]),
        }

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        c = self.config
        bar = Bar(f"{self.name} fit (gram, inverse)", total=2)  # two BLAS/LAPACK calls: stages
        x = train.csr.astype(np.float64)
        if c.binary:
            x.data[:] = 1.0
        gram = (x.T @ x).toarray()
        if c.side_weight > 0:
            f = side_matrix(train.item_features, c.side_year_bucket)
            gram += c.side_weight ** 2 * (f @ f.T)
        bar.update()
        if c.variant == "ease":
            b = ease_weights(gram, c.lambda_)
        else:
            b = dlae_weights(gram, c.lambda_, c.dropout)
        bar.update()
        bar.close()
        self.weights_ = b.astype(np.float32)
        self.train_indptr_ = x.indptr.astype(np.int64)
        self.train_indices_ = x.indices.astype(np.int32)
        self.train_values_ = x.data.astype(np.float32)

    def _matrix(self) -> sp.csr_matrix:
        return sp.csr_matrix((self.train_values_, self.train_indices_, self.train_indptr_),
                             shape=(self.n_users_, self.n_items_))

    def _score(self, users: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        b = self.weights_ if items is None else self.weights_[:, items]
        return np.asarray(self._matrix()[users] @ b, dtype=np.float32)

    def score_new_user(self, items: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        """(n_items,) scores for a user known only by `ratings` of `items` (EASE needs no fit)."""
        x = np.ones(len(items)) if self.config.binary else np.asarray(ratings, np.float64)
        return (x @ self.weights_[np.asarray(items, np.int64)]).astype(np.float32)

    def explain(self, user: int, item: int, history: object = None) -> Explanation:
        """score(u, i) = Σ_j x_uj · B[j, i]: one exact part per history item."""
        lo, hi = self.train_indptr_[user], self.train_indptr_[user + 1]
        js = self.train_indices_[lo:hi].astype(np.int64)
        xs = self.train_values_[lo:hi].astype(np.float64)
        return item_parts(js, xs * self.weights_[js, item].astype(np.float64))

    def similar_items(self, item: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The k items with the largest weight B[item, j] (item itself excluded)."""
        w = self.weights_[item].astype(np.float64).copy()
        w[item] = -np.inf
        top = np.argsort(-w, kind="stable")[:k]
        return top, w[top].astype(np.float32)

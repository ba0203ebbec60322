"""Neighbourhood models: item-based and user-based k-nearest-neighbours.

Rating mode follows Koren (2010, "Factor in the neighbors", sec. 2.2) and Surprise's
KNNBasic / KNNWithMeans / KNNBaseline: to estimate r(u, i) (item-based) take the k items
most similar to i among the items u rated, keep those with positive similarity, and return
    plain     Σ s·r_uj / Σ s
    means     μ_i + Σ s·(r_uj − μ_j) / Σ s
    baseline  b_ui + Σ s·(r_uj − b_uj) / Σ s,   b_ui = μ + b_u + b_i (ALS baselines)
falling back to the global mean (plain) or the first term (means, baseline) when fewer than
`min_k` neighbours qualify. User-based swaps the roles of users and items.

Ranking mode is implicit's item-kNN (CosineRecommender / BM25Recommender): similarities of
L2-normalised or BM25-weighted vectors, each row pruned to its top k, and
scores = user row · S (item-based) or S[u] · X (user-based).

Similarities are computed in blocks of rows and pruned to the best `max_neighbours` positive
ones per row (rating mode; 0 keeps every positive one) or the best `k` (ranking mode), so the
stored state is a sparse neighbour matrix and no dense n×n matrix is ever built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Self

import numpy as np
import scipy.sparse as sp

from recstack.data.interactions import Interactions
from recstack.errors import RecstackError
from recstack.models.base import Explanation, Model, item_parts
from recstack.models.baseline import als_biases
from recstack.models.config import Config, require
from recstack.models.incremental import grow, keep_ratings, upsert_ratings
from recstack.models.similarity import (
    BASELINE,
    COSINE,
    DOT,
    MEANS,
    PEARSON,
    PLAIN,
    corating_add,
    corating_build,
    corating_neighbours,
    corating_norms,
    corating_patch,
    entity_sims,
    estimate_pairs,
    lists_padded,
    lists_split,
    n_chunks,
    patch_neighbours,
    row_means_at,
    store_rows,
    top_neighbours,
)

_ESTIMATORS = {"plain": PLAIN, "means": MEANS, "baseline": BASELINE}


@dataclass(frozen=True)
class KNNConfig(Config):
    """Hyperparameters of the kNN models (defaults: Surprise's KNNBaseline, item-based).

    similarity: cosine | pearson | pearson_baseline (rating mode); cosine | bm25 (ranking mode);
        None: pearson_baseline (rating) or bm25 (ranking).
    shrinkage: similarities × (n−1)/(n−1+shrinkage), n = common raters (0: none); None means
        Surprise's default: 100 for pearson_baseline, 0 for the others.
    reg_user, reg_item, baseline_epochs: the ALS baselines (Surprise's bsl_options).
    bm25_k1, bm25_b: BM25 weights (ranking mode); binary: score 0/1 rows instead of ratings.
    """

    k: int = 40
    min_k: int = 1
    similarity: Literal["cosine", "pearson", "pearson_baseline", "bm25"] | None = None
    shrinkage: float | None = None
    min_support: int = 1
    estimator: Literal["plain", "means", "baseline"] = "baseline"
    mode: Literal["rating", "ranking"] = "rating"
    user_based: bool = False
    max_neighbours: int = 0
    reg_user: float = 15.0
    reg_item: float = 10.0
    baseline_epochs: int = 10
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    binary: bool = False

    def check(self) -> None:
        require(self.k >= 1, "k", self.k, "must be ≥ 1")
        require(self.min_k >= 0, "min_k", self.min_k, "must be ≥ 0")
        require(self.min_k <= self.k, "min_k", self.min_k, f"must be ≤ k = {self.k}")
        require(self.shrinkage is None or self.shrinkage >= 0, "shrinkage", self.shrinkage, "must be ≥ 0")
        require(self.min_support >= 1, "min_support", self.min_support, "must be ≥ 1")
        require(self.max_neighbours == 0 or self.max_neighbours >= self.k, "max_neighbours",
                self.max_neighbours, f"must be 0 (keep all) or ≥ k = {self.k}")
        require(self.reg_user >= 0, "reg_user", self.reg_user, "must be ≥ 0")
        require(self.reg_item >= 0, "reg_item", self.reg_item, "must be ≥ 0")
        require(self.baseline_epochs >= 1, "baseline_epochs", self.baseline_epochs, "must be ≥ 1")
        require(self.bm25_k1 >= 0, "bm25_k1", self.bm25_k1, "must be ≥ 0")
        require(0 <= self.bm25_b <= 1, "bm25_b", self.bm25_b, "must be in [0, 1]")
        if self.mode == "rating":
            require(self.sim != "bm25", "similarity", self.similarity,
                    "bm25 is for mode=ranking; use cosine, pearson or pearson_baseline")
        else:
            require(self.sim in ("cosine", "bm25"), "similarity", self.similarity,
                    "mode=ranking uses cosine or bm25")


    @property
    def sim(self) -> str:
        """The similarity in use (`similarity`, or the mode's default when None)."""
        if self.similarity is not None:
            return self.similarity
        return "pearson_baseline" if self.mode == "rating" else "bm25"


def bm25_weight(x: sp.csr_matrix, k1: float, b: float) -> sp.csr_matrix:
    """BM25-weighted copy of (n_docs, n_terms) CSR `x` (implicit's `bm25_weight`, same formula)."""
    x = sp.csr_matrix(x, dtype=np.float64, copy=True)
    n = float(x.shape[0])
    idf = np.log(n) - np.log1p(np.bincount(x.indices, minlength=x.shape[1]))
    lengths = np.asarray(x.sum(axis=1)).ravel()
    norm = (1.0 - b) + b * lengths / max(lengths.mean(), 1e-12)
    rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))
    x.data = x.data * (k1 + 1.0) / (k1 * norm[rows] + x.data) * idf[x.indices]
    return x


def _l2_rows(x: sp.csr_matrix) -> sp.csr_matrix:
    x = sp.csr_matrix(x, dtype=np.float64, copy=True)
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))
    x.data = x.data / np.maximum(norms[rows], 1e-12)
    return x


class ItemKNN(Model):
    """Item-based k-nearest-neighbours (set `user_based=True` for user-based).

    State: the neighbour matrix as CSR arrays `neighbour_indptr_`, `neighbour_indices_`,
    `neighbour_sims_` (rows ordered best first, ≤ max_neighbours or k per row); the training
    ratings `train_indptr_`, `train_indices_`, `train_values_` (user-major CSR); baselines
    `global_mean_`, `user_bias_`, `item_bias_`; means `user_mean_`, `item_mean_`. Ranking-mode
    cosine also keeps the co-rating sums C = A·Aᵀ as `corating_` (n×n float64 — float32 counts
    when binary — when n²·8 bytes
    ≤ `corating_max_bytes` and the values are binary or on a half-point grid; else None) and,
    after a fit from C or a `partial_fit`, each row's reserve and bound (`reserve_*_`, `bound_*_`).
    """

    name = "item-knn"
    config_class = KNNConfig
    matrix_only = True
    default_user_based = False

    def __init__(self, config: Config | dict[str, Any] | None = None, **params: Any) -> None:
        given = config.to_dict() if isinstance(config, Config) else {**(config or {}), **params}
        if "user_based" not in given:
            params["user_based"] = self.default_user_based
        super().__init__(config, **params)

    @property
    def explicit(self) -> bool:  # type: ignore[override]
        """Rating mode estimates ratings (RMSE applies); ranking mode only ranks."""
        return self.config.mode == "rating"

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        """Rating-mode space unless `mode=ranking` is fixed (`--param mode=ranking`)."""
        mode = trial.suggest_categorical("mode", ["rating"])
        if mode == "rating":
            return {
                "mode": mode,
                "k": trial.suggest_int("k", 10, 100, log=True),
                "min_k": trial.suggest_int("min_k", 1, 10),
                "similarity": trial.suggest_categorical("similarity", ["cosine", "pearson", "pearson_baseline"]),
                "shrinkage": trial.suggest_float("shrinkage", 0.0, 300.0),
                "estimator": trial.suggest_categorical("estimator", ["plain", "means", "baseline"]),
                "reg_user": trial.suggest_float("reg_user", 1.0, 30.0, log=True),
                "reg_item": trial.suggest_float("reg_item", 1.0, 30.0, log=True),
            }
        return {
            "mode": mode,
            "k": trial.suggest_int("k", 10, 400, log=True),
            "similarity": trial.suggest_categorical("similarity", ["cosine", "bm25"]),
            "shrinkage": trial.suggest_float("shrinkage", 0.0, 50.0),
            "bm25_k1": trial.suggest_float("bm25_k1", 0.1, 100.0, log=True),
            "bm25_b": trial.suggest_float("bm25_b", 0.0, 1.0),
            "binary": trial.suggest_categorical("binary", [True, False]),
        }

    # ---- training ----------------------------------------------------------------------
    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        c = self.config
        x = train.csr.astype(np.float64)
        self.train_indptr_ = x.indptr.astype(np.int64)
        self.train_indices_ = x.indices.astype(np.int64)
        self.train_values_ = x.data.astype(np.float64)
        # baselines b_ui = μ + b_u + b_i by ALS (Koren 2010, sec. 2.1)
        mu = float(np.mean(train.rating, dtype=np.float64))
        bu, bi = als_biases(train.user, train.item, train.rating.astype(np.float64), train.n_users,
                            train.n_items, mu, c.baseline_epochs, c.reg_user, c.reg_item)
        self.global_mean_, self.user_bias_, self.item_bias_ = mu, bu, bi
        self.user_mean_ = _row_means(x, mu)
        self.item_mean_ = _row_means(x.T.tocsr(), mu)
        self.min_rating_ = float(train.rating.min())
        self.max_rating_ = float(train.rating.max())
        # rows to compare: items (item-based, A = Xᵀ) or users (user-based, A = X)
        a = x if c.user_based else x.T.tocsr()
        self.corating_ = None  # the co-rating sums, when kept (ranking cosine, `_keeps_corating`)
        if c.mode == "ranking":
            if c.binary:
                a.data[:] = 1.0
            if c.sim == "cosine" and self._keeps_corating(a.shape[0], a.data):
                self._fit_corating(a)
                return
            a = bm25_weight(a, c.bm25_k1, c.bm25_b) if c.sim == "bm25" else _l2_rows(a)
            kind, keep = DOT, c.k
        else:
            kind = {"cosine": COSINE, "pearson": PEARSON, "pearson_baseline": COSINE}[c.sim]
            if c.sim == "pearson_baseline":
                a = a.tocoo()
                u, i = (a.row, a.col) if c.user_based else (a.col, a.row)
                resid = a.data - (mu + bu[u] + bi[i])
                a = sp.csr_matrix((resid, (a.row, a.col)), shape=a.shape)
            keep = c.max_neighbours or a.shape[0]
        shrinkage = c.shrinkage
        if shrinkage is None:
            shrinkage = 100.0 if c.sim == "pearson_baseline" else 0.0
        nb = top_neighbours(a, kind, shrinkage, c.min_support, keep, desc=f"{self.name} neighbours")
        self.neighbour_indptr_ = nb.indptr.astype(np.int64)
        self.neighbour_indices_ = nb.indices.astype(np.int64)
        self.neighbour_sims_ = nb.data.astype(np.float32)

    # ---- co-rating state (ranking-mode cosine, `similarity.corating_*`) ------------------
    corating_max_bytes = 1 << 28  # keep the dense n×n co-rating sums only up to 256 MB (n ≤ 5,792)

    def _keeps_corating(self, n: int, values: np.ndarray) -> bool:
        """Whether to keep C = A·Aᵀ: it fits `corating_max_bytes`, and its sums are exact in any
        order (values on a half-point grid: binary, integer or half-star ratings)."""
        return n * n * 8 <= self.corating_max_bytes and _on_grid(values)

    def _fit_corating(self, a: sp.csr_matrix) -> None:
        """Neighbours from the co-rating sums of `a` (raw rows, 0/1 when binary), kept as `corating_`,
        with each row's reserve and bound (the ranked candidates after the neighbours, as
        `partial_fit` keeps them) selected at once."""
        b = a.T.tocsr()
        b.sort_indices()
        n = a.shape[0]
        self.corating_ = np.zeros((n, n), self._corating_dtype(a.shape[1]))
        corating_build(b.indptr.astype(np.int64), b.indices.astype(np.int64), b.data.astype(np.float64),
                       self.corating_)
        width = self._width(n)
        counts, idx, sims = corating_neighbours(self.corating_, corating_norms(self.corating_), width + 1,
                                                n_chunks())
        over = counts > width
        bs = np.where(over, sims[:, width], 0.0)
        bi = np.where(over, idx[:, width], n).astype(np.int64)
        self._set_lists(np.minimum(counts, width), idx[:, :width], sims[:, :width], bs, bi, self._keep(n))

    def _corating_dtype(self, n_other: int) -> type:
        """C's dtype: float32 for binary sums (counts, exact below 2²⁴ — half the memory
        traffic of the updates), float64 for rating products on the half-point grid."""
        return np.float32 if self.config.binary and n_other < 1 << 24 else np.float64

    def _keep(self, n: int) -> int:
        c = self.config
        keep = c.k if c.mode == "ranking" else (c.max_neighbours or n)
        return max(1, min(keep, n - 1)) if n > 1 else 1

    def _width(self, n: int) -> int:
        """Neighbours plus reserve per row (`reserve_size`, default as many as the neighbours)."""
        keep = self._keep(n)
        return keep + (keep if self.reserve_size is None else self.reserve_size)

    def _set_lists(self, counts: np.ndarray, idx: np.ndarray, sims: np.ndarray, bs: np.ndarray,
                   bi: np.ndarray, keep: int) -> None:
        """Store ranked (n, width) lists: the first `keep` as neighbours, the rest as reserve."""
        split = lists_split(np.asarray(counts, np.int64), np.ascontiguousarray(idx, np.int64),
                            np.ascontiguousarray(sims, np.float64), keep)
        (self.neighbour_indptr_, self.neighbour_indices_, self.neighbour_sims_,
         self.reserve_indptr_, self.reserve_indices_, self.reserve_sims_) = split
        self.bound_sims_, self.bound_indices_ = bs.astype(np.float64), bi.astype(np.int64)

    def _padded_lists(self, n: int, width: int) -> tuple[np.ndarray, ...]:
        """Neighbours then reserve as (counts (n,), idx (n, width), sims (n, width), bs, bi); new rows
        empty, with no bound."""
        return lists_padded(self.neighbour_indptr_, self.neighbour_indices_, self.neighbour_sims_,
                            self.reserve_indptr_, self.reserve_indices_, self.reserve_sims_,
                            self.bound_sims_, self.bound_indices_, n, width)

    def _partial_fit_corating(self, up: Any) -> None:
        """`partial_fit` on the kept co-rating sums: add the changed ratings' terms to C, then
        patch the neighbour lists (`corating_patch`); equal to a refit (see the module notes).
        Reads the kept CSR arrays as they are (no copy of the history)."""
        c = self.config
        if c.user_based:  # entities: users; the other side: items (rows of the item-major CSR)
            order = np.lexsort((up.users, up.items))
            ev_e, ev_o, new, old = up.users[order], up.items[order], up.ratings[order], up.old[order]
            o_indptr, o_indices, o_values, n = (self.train_t_indptr_, self.train_t_indices_,
                                                self.train_t_values_, self.n_users_)
        else:
            ev_e, ev_o, new, old = up.items, up.users, up.ratings, up.old
            o_indptr, o_indices, o_values, n = (self.train_indptr_, self.train_indices_,
                                                self.train_values_, self.n_items_)
        old = np.where(np.isnan(old), 0.0, old)
        binary = bool(c.binary)
        if binary:
            new, old = np.ones_like(new), (old != 0).astype(np.float64)
        n_old = self.corating_.shape[0]
        if self.corating_.shape != (n_old, n_old) or n_old != len(self.neighbour_indptr_) - 1:
            raise RecstackError(f"item-knn state: corating_ has shape {self.corating_.shape}; expected "
                                f"({len(self.neighbour_indptr_) - 1}, {len(self.neighbour_indptr_) - 1})")
        # C lives in a square buffer with room for 25% more entities (amortised growth); the
        # kernels take the whole buffer (its unused rows and columns are 0), `corating_` is its
        # (n, n) corner — the array that is saved.
        buf = self.corating_ if self.corating_.flags.c_contiguous else self.corating_.base
        dtype = np.promote_types(buf.dtype, self._corating_dtype(len(o_indptr) - 1))
        if buf.shape[0] < n or buf.dtype != dtype:  # grown (or counts past float32's exact range)
            size = max(n, n_old + n_old // 4) if buf.shape[0] < n else buf.shape[0]
            grown = np.zeros((size, size), dtype)
            grown[:n_old, :n_old] = self.corating_
            buf = grown
        self.corating_ = buf[:n, :n]
        old_norms = corating_norms(buf)
        corating_add(buf, ev_o.astype(np.int64), ev_e.astype(np.int64), new, old, o_indptr, o_indices,
                     o_values, binary)
        keep, width = self._keep(n), self._width(n)
        touched = np.unique(ev_e[new != old]).astype(np.int64)
        if width != self._width(n_old):  # a catalogue smaller than k grew: every row anew
            touched = np.arange(n, dtype=np.int64)
        counts, idx, sims, bs, bi = self._padded_lists(n, width)
        self.redone_rows_ = int(corating_patch(buf, corating_norms(buf), touched, counts, idx, sims, bs, bi,
                                               keep, old_norms))
        self._set_lists(counts, idx, sims, bs, bi, keep)

    # ---- state views -------------------------------------------------------------------
    def neighbours(self) -> sp.csr_matrix:
        """(n, n) sparse neighbour matrix (items or users), rows ordered best first."""
        n = self.n_users_ if self.config.user_based else self.n_items_
        m = sp.csr_matrix((self.neighbour_sims_, self.neighbour_indices_, self.neighbour_indptr_),
                          shape=(n, n))
        m.has_sorted_indices = False
        return m

    def _ratings(self) -> sp.csr_matrix:
        return sp.csr_matrix((self.train_values_, self.train_indices_, self.train_indptr_),
                             shape=(self.n_users_, self.n_items_))

    # ---- scoring -------------------------------------------------------------------------
    def _score(self, users: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        cols = np.arange(self.n_items_) if items is None else items
        if self.config.mode == "ranking":
            return self._rank_scores(users, cols)
        uu = np.repeat(users, len(cols))
        ii = np.tile(cols, len(users))
        return self._estimate(uu, ii).reshape(len(users), len(cols))

    def _rank_scores(self, users: np.ndarray, cols: np.ndarray) -> np.ndarray:
        x = self._ratings()
        if self.config.binary:
            x.data = np.ones_like(x.data)
        s = self.neighbours()
        out = s[users] @ x if self.config.user_based else x[users] @ s
        return np.asarray(out[:, cols].toarray(), dtype=np.float32)

    def _estimate(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        c = self.config
        x = self._ratings()
        if c.user_based:
            xs, ys, lists = users, items, x.T.tocsr()
            bias_x, bias_y, mean_x = self.user_bias_, self.item_bias_, self.user_mean_
        else:
            xs, ys, lists = items, users, x
            bias_x, bias_y, mean_x = self.item_bias_, self.user_bias_, self.item_mean_
        order = np.argsort(ys, kind="stable")
        ys_sorted = ys[order]
        bounds = np.r_[0, np.flatnonzero(np.diff(ys_sorted)) + 1, len(ys_sorted)].astype(np.int64)
        est = estimate_pairs(xs[order].astype(np.int64), ys_sorted.astype(np.int64), bounds,
                             self.neighbour_indptr_, self.neighbour_indices_,
                             self.neighbour_sims_.astype(np.float64),
                             lists.indptr.astype(np.int64), lists.indices.astype(np.int64),
                             lists.data.astype(np.float64), c.k, c.min_k, _ESTIMATORS[c.estimator],
                             self.global_mean_, bias_x, bias_y, mean_x,
                             self.min_rating_, self.max_rating_, n_chunks())
        out = np.empty(len(est), np.float64)
        out[order] = est
        return out

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(n,) clipped rating estimates for (user, item) pairs (rating mode); NaN for unknown users."""
        if not self.explicit:
            return super().predict(users, items)  # raises: ranking mode
        users = np.asarray(users, np.int64)
        items = np.asarray(items, np.int64)
        known = (users >= 0) & (users < self.n_users_) & (items >= 0) & (items < self.n_items_)
        out = np.full(len(users), np.nan, np.float32)
        if known.any():
            out[known] = self._estimate(users[known], items[known])
        return out

    @property
    def has_folds_in_users(self) -> bool:
        """Only the item-based model folds in a new user (user-based needs the user's neighbours)."""
        return not self.config.user_based

    @property
    def has_similar_items(self) -> bool:
        return not self.config.user_based

    def score_new_user(self, items: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        """(n_items,) scores for a user known only by `ratings` of `items` (item-based only).

        Ranking mode: x · S. Rating mode: the same estimates as for a trained user, with the new
        user's bias from one ALS step, b_u = Σ(r − μ − b_i) / (reg_user + n).
        """
        c = self.config
        if c.user_based:
            raise RecstackError("user-knn cannot fold in a new user without refitting; use item-knn")
        items = np.asarray(items, np.int64)
        r = np.asarray(ratings, np.float64)
        row = sp.csr_matrix((np.ones_like(r) if c.binary else r, (np.zeros(len(items), np.int64), items)),
                            shape=(1, self.n_items_))
        if c.mode == "ranking":
            return np.asarray((row @ self.neighbours()).toarray()[0], dtype=np.float32)
        row = sp.csr_matrix((r, (np.zeros(len(items), np.int64), items)), shape=(1, self.n_items_))
        row.sort_indices()
        bu = np.array([np.sum(r - self.global_mean_ - self.item_bias_[items]) / (c.reg_user + len(r))])
        xs = np.arange(self.n_items_, dtype=np.int64)
        est = estimate_pairs(xs, np.zeros(len(xs), np.int64), np.array([0, len(xs)], np.int64),
                             self.neighbour_indptr_, self.neighbour_indices_,
                             self.neighbour_sims_.astype(np.float64), row.indptr.astype(np.int64),
                             row.indices.astype(np.int64), row.data.astype(np.float64), c.k, c.min_k,
                             _ESTIMATORS[c.estimator], self.global_mean_, self.item_bias_, bu,
                             self.item_mean_, self.min_rating_, self.max_rating_, 1)
        return est.astype(np.float32)

    @property
    def has_explains(self) -> bool:
        return not self.config.user_based

    def explain(self, user: int, item: int, history: object = None) -> Explanation:
        """The user's rated neighbours of `item` and their contributions (item-based only).

        Ranking mode: score = Σ_j x_uj · S[j, i], exact. Rating mode: the estimate before
        clipping, base (μ + b_u + b_i, the item mean, or 0 by estimator) plus, for each of the
        k most similar rated items j, s_ij · dev_uj / Σ s — the same neighbours the estimate uses.
        """
        c = self.config
        if c.user_based:
            raise RecstackError("user-knn explains nothing per item; use item-knn")
        x = self._ratings()
        lo, hi = x.indptr[user], x.indptr[user + 1]
        rated = dict(zip(x.indices[lo:hi].tolist(), x.data[lo:hi].tolist()))
        a, b = self.neighbour_indptr_[item], self.neighbour_indptr_[item + 1]
        nbrs, sims = self.neighbour_indices_[a:b], self.neighbour_sims_[a:b].astype(np.float64)
        if c.mode == "ranking":
            # S is stored row-wise: score(u, i) = Σ_j x_uj S[j, i]; column i of S
            col = np.asarray(self.neighbours()[:, [item]].toarray()).ravel()
            js = np.fromiter(rated, np.int64, len(rated))
            xs = np.ones(len(js)) if c.binary else np.array([rated[j] for j in js.tolist()])
            return item_parts(js, xs * col[js])
        chosen = [(j, s) for j, s in zip(nbrs.tolist(), sims.tolist()) if j in rated][:c.k]
        mu, bu, bi = self.global_mean_, self.user_bias_[user], self.item_bias_
        if c.estimator == "plain":
            base, dev = {}, [rated[j] for j, _ in chosen]
        elif c.estimator == "means":
            base, dev = {"item mean": self.item_mean_[item]}, [rated[j] - self.item_mean_[j] for j, _ in chosen]
        else:
            base = {"global mean": mu, "user bias": bu, "item bias": bi[item]}
            dev = [rated[j] - (mu + bu + bi[j]) for j, _ in chosen]
        w = np.array([s for _, s in chosen])
        if len(chosen) < c.min_k or w.sum() <= 0:
            return item_parts(np.empty(0, np.int64), np.empty(0), biases=base or {"global mean": mu})
        return item_parts(np.array([j for j, _ in chosen]), w * np.array(dev) / w.sum(), biases=base)

    def similar_items(self, item: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The k stored neighbours of `item`, best first (item-based only)."""
        if self.config.user_based:
            raise RecstackError("user-knn stores user neighbours; use item-knn for similar items")
        lo, hi = self.neighbour_indptr_[item], self.neighbour_indptr_[item + 1]
        hi = min(hi, lo + k)
        return self.neighbour_indices_[lo:hi].copy(), self.neighbour_sims_[lo:hi].copy()

    # ---- incremental updates (partial_fit) --------------------------------------------------
    def fit(self, train: Interactions, valid: Interactions | None = None) -> Self:
        """`Model.fit`, then keep the ratings item-major too (`incremental.keep_ratings`)."""
        super().fit(train, valid)
        keep_ratings(self, train)
        return self

    @property
    def has_partial_fit(self) -> bool:
        """Every similarity but BM25, whose weights (idf, mean length) every new rating changes."""
        return not (self.config.mode == "ranking" and self.config.sim == "bm25")

    def partial_fit(self, events: Interactions) -> Self:
        """Learn from `events` by updating the touched similarity rows and columns, exactly.

        A new or changed rating (u, i) changes only the similarities of pairs containing i
        (item-based; u for user-based): their co-rating sums and i's norm. The touched rows are
        recomputed from the kept ratings (`entity_sims`), and their column is patched into every
        other row (`patch_neighbours`), which is recomputed from the data only when a lost
        neighbour could be replaced by one it never stored. The result equals a full refit's
        neighbour matrix on the same ratings. The baselines μ, b_u, b_i (`pearson_baseline`
        similarities, the `baseline` estimator, the `plain` fallback μ) stay as last fitted —
        new users and items start at b = 0, new ratings' residuals use them — and are
        re-estimated only by a full `fit`. User and item means are recomputed.

        Ranking cosine with the co-rating state (`corating_`) never reads the data: the changed
        ratings' products are added to C (O(history of the rating's user) each), the touched
        rows are re-selected from C, and every other row only re-ranks its stored candidates
        against the touched columns (`similarity.corating_patch`) — the same lists as a refit.
        """
        c = self.config
        if not self.has_partial_fit:
            raise RecstackError("item-knn with similarity bm25 cannot learn incrementally: BM25 weights "
                                "(idf, mean row length) change with every rating; refit, or use cosine")
        up = upsert_ratings(self, events)
        n_u, n_i = self.n_users_, self.n_items_
        self.user_bias_ = grow(self.user_bias_, n_u)
        self.item_bias_ = grow(self.item_bias_, n_i)
        # user and item means: only the touched rows' change
        mu = self.global_mean_
        self.user_mean_ = grow(self.user_mean_, n_u, fill=mu)
        self.item_mean_ = grow(self.item_mean_, n_i, fill=mu)
        row_means_at(self.train_indptr_, self.train_values_, up.touched_users, self.user_mean_, mu)
        row_means_at(self.train_t_indptr_, self.train_t_values_, up.touched_items, self.item_mean_, mu)
        self.min_rating_ = min(self.min_rating_, float(up.ratings.min()))
        self.max_rating_ = max(self.max_rating_, float(up.ratings.max()))
        if getattr(self, "corating_", None) is not None:
            if _on_grid(up.ratings if not c.binary else None):
                self._partial_fit_corating(up)
                return self
            self.corating_ = None  # off the exact grid: the general path from here on
        x = self._ratings()
        t = sp.csr_matrix((self.train_t_values_, self.train_t_indices_, self.train_t_indptr_), shape=(n_i, n_u))
        ent, oth = (x, t) if c.user_based else (t, x)
        touched = up.touched_users if c.user_based else up.touched_items
        a_vals, t_vals, kind = self._similarity_values(ent, oth)
        n = ent.shape[0]
        keep = c.k if c.mode == "ranking" else (c.max_neighbours or n)
        keep = max(1, min(keep, n - 1)) if n > 1 else 1
        shrinkage = c.shrinkage if c.shrinkage is not None else (100.0 if c.sim == "pearson_baseline" else 0.0)
        args = (ent.indptr.astype(np.int64), ent.indices.astype(np.int64), a_vals,
                oth.indptr.astype(np.int64), oth.indices.astype(np.int64), t_vals, kind,
                float(shrinkage), int(c.min_support))
        self._init_reserve(keep)
        slot = np.full(n, -1, np.int64)
        slot[touched] = np.arange(len(touched))
        fresh = entity_sims(touched.astype(np.int64), *args)
        reserve = keep if self.reserve_size is None else self.reserve_size
        out = patch_neighbours(self.neighbour_indptr_, self.neighbour_indices_,
                               self.neighbour_sims_.astype(np.float64), self.reserve_indptr_,
                               self.reserve_indices_, self.reserve_sims_, self.bound_sims_,
                               self.bound_indices_, n, slot, fresh, keep, reserve)
        counts, idx, sims, rcounts, ridx, rsims, bs, bi, redo = out
        rows = np.flatnonzero(redo)
        if len(rows):
            store_rows(rows, entity_sims(rows, *args), keep, reserve, counts, idx, sims, rcounts, ridx,
                       rsims, bs, bi)
        valid = np.arange(idx.shape[1])[None, :] < counts[:, None]
        self.neighbour_indptr_ = np.r_[0, np.cumsum(counts)].astype(np.int64)
        self.neighbour_indices_ = idx[valid].astype(np.int64)
        self.neighbour_sims_ = sims[valid].astype(np.float32)
        valid = np.arange(ridx.shape[1])[None, :] < rcounts[:, None]
        self.reserve_indptr_ = np.r_[0, np.cumsum(rcounts)].astype(np.int64)
        self.reserve_indices_ = ridx[valid].astype(np.int64)
        self.reserve_sims_ = rsims[valid].astype(np.float32).astype(np.float64)
        self.bound_sims_, self.bound_indices_ = bs, bi
        self.redone_rows_ = int(len(rows))
        return self

    reserve_size: int | None = None  # reserve entries per row; None: as many as the neighbours

    def _init_reserve(self, keep: int) -> None:
        """After a fit: an empty reserve, and each full row's last neighbour as its bound (a
        candidate it does not store ranks after it); rows holding every positive one: (0, n)."""
        if getattr(self, "bound_sims_", None) is not None:
            return
        n = len(self.neighbour_indptr_) - 1
        counts = np.diff(self.neighbour_indptr_)
        self.reserve_indptr_ = np.zeros(n + 1, np.int64)
        self.reserve_indices_ = np.zeros(0, np.int64)
        self.reserve_sims_ = np.zeros(0, np.float64)
        self.bound_sims_ = np.zeros(n)
        self.bound_indices_ = np.full(n, n, np.int64)
        full = np.flatnonzero(counts >= keep)
        last = self.neighbour_indptr_[full + 1] - 1
        self.bound_sims_[full] = self.neighbour_sims_[last]
        self.bound_indices_[full] = self.neighbour_indices_[last]

    def _similarity_values(self, ent: sp.csr_matrix, oth: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, int]:
        """(values of `ent`, values of `oth`, kernel kind) as `fit` compares them: raw ratings,
        baseline residuals (pearson_baseline) or L2-normalised rows (ranking cosine)."""
        c = self.config
        a = ent.data.astype(np.float64)
        b = oth.data.astype(np.float64)
        ent_of_a = np.repeat(np.arange(ent.shape[0]), np.diff(ent.indptr))
        ent_of_b = oth.indices
        if c.mode == "ranking":
            if c.binary:
                a, b = np.ones_like(a), np.ones_like(b)
            sq = sp.csr_matrix((a * a, ent.indices, ent.indptr), shape=ent.shape)
            norms = np.maximum(np.sqrt(np.asarray(sq.sum(axis=1)).ravel()), 1e-12)  # as `_l2_rows`
            return a / norms[ent_of_a], b / norms[ent_of_b], DOT
        if c.sim == "pearson_baseline":
            oth_of_b = np.repeat(np.arange(oth.shape[0]), np.diff(oth.indptr))
            bu, bi = self.user_bias_, self.item_bias_
            if c.user_based:  # ent = users, oth = items
                a = a - (self.global_mean_ + bu[ent_of_a] + bi[ent.indices])
                b = b - (self.global_mean_ + bu[ent_of_b] + bi[oth_of_b])
            else:
                a = a - (self.global_mean_ + bi[ent_of_a] + bu[ent.indices])
                b = b - (self.global_mean_ + bi[ent_of_b] + bu[oth_of_b])
            return a, b, COSINE
        return a, b, {"cosine": COSINE, "pearson": PEARSON}[c.sim]


class UserKNN(ItemKNN):
    """User-based k-nearest-neighbours: `ItemKNN` with `user_based=True` by default."""

    name = "user-knn"
    default_user_based = True


def _row_means(x: sp.csr_matrix, default: float) -> np.ndarray:
    """(n_rows,) mean of each row's stored values; `default` for empty rows."""
    counts = np.diff(x.indptr)
    sums = np.asarray(x.sum(axis=1)).ravel()
    return np.where(counts > 0, sums / np.maximum(counts, 1), default)


def _on_grid(values: np.ndarray | None) -> bool:
    """Whether every value is a multiple of ½ and small (None: binary, always), so that sums of
    products are exact in float64 whatever their order."""
    if values is None or len(values) == 0:
        return True
    v = 2.0 * np.asarray(values, np.float64)
    return bool(np.all(v == np.round(v)) and np.abs(v).max() <= 1 << 20)

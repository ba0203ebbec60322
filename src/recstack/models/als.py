"""Alternating least squares, for explicit ratings or implicit feedback.

Each half-step solves every user's (then every item's) factor vector with the other side fixed,
as one ridge regression per row, in parallel over rows (numba `prange`).

- `mode="explicit"`: weighted-λ regularisation (Zhou, Wilkinson, Schreiber & Pan 2008, ALS-WR):
  x_u = (Σ_{i∈I(u)} y_i y_iᵀ + λ·n_u·I)⁻¹ Σ_{i∈I(u)} (r_ui - μ) y_i; r̂(u, i) = μ + x_u · y_i.
  Solved exactly (`als_solve`).
- `mode="implicit"`: Hu, Koren & Volinsky 2008. Every (u, i) counts, with preference p_ui = 1 if
  u interacted with i, else 0, and confidence c_ui = 1 + alpha·r_ui (r = the rating, or 1 with
  `confidence="binary"`): x_u = (YᵀY + Σ_{i∈I(u)} (c_ui - 1) y_i y_iᵀ + λI)⁻¹ Σ_{i∈I(u)} c_ui y_i.
  Solved by a few conjugate-gradient steps warm-started from the previous x_u (`als_cg`, the
  method of Takács, Pilászy & Tikk 2011 as used by the `implicit` library), or exactly
  (`solver="exact"`). Scores rank items; they are not rating estimates.

Kernels: `als_solve` (exact, numba) and `als_cg` (CG, numba), both run on float32 arrays (one
compiled signature each; sums and solves in float64); `als_solve_slow` is the plain NumPy twin
of the exact solve, the reference both are tested against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

import numba
import numpy as np
import scipy.sparse as sp

from recstack.data.interactions import Interactions
from recstack.errors import RecstackError
from recstack.models.config import Config, require
from recstack.models.incremental import (
    cholesky_solve,
    gram_add,
    gram_delta,
    gram_stats,
    grow,
    item_rows,
    packed_size,
    solve_from_stats,
    solve_rows,
    upsert_ratings,
    user_rows,
)
from recstack.models.mf import MF, numba_threads
from recstack.progress import Bar

CHUNK = 64  # rows per parallel task: scratch arrays are allocated once per chunk
EXPLICIT_REG = 0.1  # λ per rating (ALS-WR)
IMPLICIT_REG = 30.0  # λ (Hu et al.)
BINARY = np.ones(1, np.float32)  # the one rating every entry of binary data reads (`als_cg`, step 0)


@numba.njit(cache=True, parallel=True, fastmath=True, error_model="numpy")
def als_solve(indptr, indices, weight, target, X, Y, base, reg, reg_per_count):  # pragma: no cover - numba
    """Exact solve of every row: X[u] = (base + Σ_j w_uj y_j y_jᵀ + λ_u I)⁻¹ Σ_j t_uj y_j, in place.

    indptr, indices (CSR rows of X over rows of Y), weight, target: (nnz,) per entry;
    X (n, f), Y (m, f), base (f, f) positive semi-definite; λ_u = reg + reg_per_count·n_u (a row
    whose system is then singular — no entries and λ_u = 0 — gets 0). Cholesky per row.
    """
    n, k = X.shape
    for c in numba.prange((n + CHUNK - 1) // CHUNK):
        A = np.empty((k, k))
        b = np.empty(k)
        x = np.empty(k)
        for u in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            start, end = indptr[u], indptr[u + 1]
            for a in range(k):
                b[a] = 0.0
                for e in range(k):
                    A[a, e] = base[a, e]
            for jj in range(start, end):
                j = indices[jj]
                w = weight[jj]
                t = target[jj]
                for a in range(k):
                    ya = Y[j, a]
                    b[a] += t * ya
                    wa = w * ya
                    for e in range(k):
                        A[a, e] += wa * Y[j, e]
            lam = reg + reg_per_count * (end - start)
            for a in range(k):
                A[a, a] += lam
            if end == start and lam == 0.0:
                X[u, :] = 0.0
            else:
                cholesky_solve(A, b, x)
                for a in range(k):
                    X[u, a] = x[a]


def als_solve_slow(indptr, indices, weight, target, X, Y, base, reg, reg_per_count):
    """Plain NumPy twin of `als_solve`: one `np.linalg.solve` per row."""
    k = X.shape[1]
    for u in range(X.shape[0]):
        rows = slice(indptr[u], indptr[u + 1])
        Yu = Y[indices[rows]].astype(np.float64)
        n = len(Yu)
        lam = reg + reg_per_count * n
        if n == 0 and lam == 0.0:
            X[u] = 0.0
            continue
        A = base + (Yu * weight[rows][:, None]).T @ Yu + lam * np.eye(k)
        X[u] = np.linalg.solve(A, Yu.T @ target[rows])


@numba.njit(cache=True, parallel=True, fastmath=True, error_model="numpy")
def als_cg(indptr, indices, values, X, Y, YtY, cg_steps, alpha, step=1,
           reg_per_count=0.0):  # pragma: no cover - numba
    """Implicit-feedback half-step by conjugate gradient, warm-started from X, in place.

    Solves (YtY + λ_u I + Σ_j (c_uj - 1) y_j y_jᵀ) x_u = Σ_j c_uj y_j for every row u, `cg_steps`
    steps; YtY (f, f) must already hold YᵀY + λI, and λ_u = reg_per_count·n_u adds a count-scaled
    part (0: none). indptr, indices: the CSR (int32 or int64 indices); entry jj's rating is
    values[jj * step]: step 1 reads the CSR's own values, step 0 reads values[0] for every entry
    (binary data: values = [1]). The confidence c_uj = 1 + alpha·r_uj is computed here, so no
    confidence array as large as the data is made (and no branch in the inner loops).
    Arithmetic in float32, as `implicit`: twice the SIMD width of float64 and no conversions.
    """
    n, k = X.shape
    one = np.float32(1.0)
    zero = np.float32(0.0)
    tiny = np.float32(1e-20)
    a32 = np.float32(alpha)
    for c in numba.prange((n + CHUNK - 1) // CHUNK):
        r = np.empty(k, np.float32)
        p = np.empty(k, np.float32)
        Ap = np.empty(k, np.float32)
        x = np.empty(k, np.float32)
        for u in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            start, end = indptr[u], indptr[u + 1]
            lam = np.float32(reg_per_count * (end - start))
            for a in range(k):
                x[a] = X[u, a]
            # residual r = b - A x
            for a in range(k):
                s = -lam * x[a]
                for e in range(k):
                    s -= YtY[a, e] * x[e]
                r[a] = s
            for jj in range(start, end):
                j = indices[jj]
                cj = one + a32 * values[jj * step]
                yx = zero
                for a in range(k):
                    yx += Y[j, a] * x[a]
                coef = cj - (cj - one) * yx
                for a in range(k):
                    r[a] += coef * Y[j, a]
            rs_old = zero
            for a in range(k):
                p[a] = r[a]
                rs_old += r[a] * r[a]
            if rs_old < tiny:
                continue
            for _ in range(cg_steps):
                for a in range(k):
                    s = lam * p[a]
                    for e in range(k):
                        s += YtY[a, e] * p[e]
                    Ap[a] = s
                for jj in range(start, end):
                    j = indices[jj]
                    yp = zero
                    for a in range(k):
                        yp += Y[j, a] * p[a]
                    yp *= a32 * values[jj * step]
                    for a in range(k):
                        Ap[a] += yp * Y[j, a]
                pAp = zero
                for a in range(k):
                    pAp += p[a] * Ap[a]
                alpha = rs_old / pAp
                rs_new = zero
                for a in range(k):
                    x[a] += alpha * p[a]
                    r[a] -= alpha * Ap[a]
                    rs_new += r[a] * r[a]
                if rs_new < tiny:
                    break
                beta = rs_new / rs_old
                for a in range(k):
                    p[a] = r[a] + beta * p[a]
                rs_old = rs_new
            for a in range(k):
                X[u, a] = x[a]


@dataclass(frozen=True)
class ALSConfig(Config):
    """Hyperparameters of `als`. `alpha` and `confidence` only matter in implicit mode, `cg_steps`
    only with solver "cg"; `cg_steps` = 3 as in `implicit`.

    `reg` is λ: per rating in explicit mode (ALS-WR, λ·n_u), absolute in implicit mode unless
    `reg_scaling="count"` (λ·n_u per user and λ·n_i per item, as Spark MLlib does). Left at
    None it becomes the mode's default when the config is built (explicit 0.1, implicit 30).
    Implicit defaults were chosen on a stratified 75/25 validation split (seed 7) of msr-75's
    training part: factors {8…128} × reg {0.1…200} × alpha {0.3…30} × confidence × epochs
    {15, 30}; validation NDCG@10 0.286.
    """

    mode: Literal["explicit", "implicit"] = "implicit"
    factors: int = 16
    epochs: int = 30
    reg: float | None = None
    alpha: float = 1.0
    confidence: Literal["rating", "binary"] = "rating"
    solver: Literal["cg", "exact"] = "cg"
    cg_steps: int = 3
    reg_scaling: Literal["absolute", "count"] = "absolute"
    init_std: float = 0.01
    threads: int = 0  # solver threads: 0 = numba's (NUMBA_NUM_THREADS, all cores by default)
    seed: int = 0

    def check(self) -> None:
        require(self.factors >= 1, "factors", self.factors, "must be ≥ 1")
        require(self.threads >= 0, "threads", self.threads, "must be ≥ 0 (0: numba's default)")
        require(self.epochs >= 1, "epochs", self.epochs, "must be ≥ 1")
        if self.reg is None:  # resolved once, so to_dict() and saved configs carry the number
            object.__setattr__(self, "reg", EXPLICIT_REG if self.mode == "explicit" else IMPLICIT_REG)
        require(self.reg > 0, "reg", self.reg, "must be > 0 (keeps every solve positive definite)")
        require(self.alpha >= 0, "alpha", self.alpha, "must be ≥ 0")
        require(self.cg_steps >= 1, "cg_steps", self.cg_steps, "must be ≥ 1")
        require(self.init_std > 0, "init_std", self.init_std, "must be > 0")


class ALS(MF):
    """ALS in explicit (ALS-WR) or implicit (Hu et al.) mode. State: `user_factors_` (n_users, f),
    `item_factors_` (n_items, f) float32, `global_mean_` (μ in explicit mode, else 0)."""

    name = "als"
    config_class = ALSConfig
    biased = False
    matrix_only = True  # fits from csr / csr_t; no replay buffer (replay_size 0)

    @property
    def explicit(self) -> bool:  # type: ignore[override]
        """Rating estimates only in explicit mode; implicit mode ranks."""
        return self.config.mode == "explicit"

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        return {
            "factors": trial.suggest_categorical("factors", [16, 32, 64, 128]),
            "epochs": trial.suggest_int("epochs", 5, 30),
            "reg": trial.suggest_float("reg", 1e-3, 100.0, log=True),
            "alpha": trial.suggest_float("alpha", 0.1, 50.0, log=True),
            "confidence": trial.suggest_categorical("confidence", ["rating", "binary"]),
        }

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        c = self.config
        rng = np.random.default_rng(c.seed)
        mu = train.global_mean if self.explicit else 0.0
        if not self.explicit and train.rating.min() < 0:
            raise RecstackError("implicit ALS needs non-negative ratings (confidence 1 + alpha·r)")
        # float32 throughout (as `implicit`): half the memory traffic, one compiled kernel signature
        X, Y = (_normal32(rng, c.init_std, n, c.factors) for n in (train.n_users, train.n_items))
        # users / items of the vocabulary with no training row (one shared with a test file) start
        # and stay at zero — as partial_fit starts new ones — instead of keeping a random start that
        # no solve moves (CG from zero with a zero right-hand side stops at once) and that would
        # enter everyone's Gram matrix
        X[train.user_activity == 0] = 0.0
        Y[train.item_popularity == 0] = 0.0
        # both orientations are the data's own `csr` and `csr_t`; the CG kernel computes the
        # confidences as it goes, so the implicit fit makes no array as large as the data
        if self.explicit or c.solver == "exact":
            ui, iu = (sp.csr_matrix((self._values(m.data, mu), m.indices, m.indptr), shape=m.shape)
                      for m in (train.csr, train.csr_t))
        else:
            ui, iu = train.csr, train.csr_t
        parts = [(_csr_arrays(ui), X, Y), (_csr_arrays(iu), Y, X)]
        bar = Bar(f"{self.name} epochs", total=c.epochs)
        with numba_threads(c.threads or numba.get_num_threads()):
            for _ in range(c.epochs):
                for (indptr, indices, data), solve, fixed in parts:
                    self._half_step(indptr, indices, data, solve, fixed)
                bar.update()
        bar.close()
        self.epochs_ = c.epochs
        self.user_factors_ = X  # float32 already: no copy
        self.item_factors_ = Y
        self.global_mean_ = float(mu)
        self.min_rating_ = float(train.rating.min())
        self.max_rating_ = float(train.rating.max())

    def _values(self, ratings: np.ndarray, mu: float) -> np.ndarray:
        """float32 solve targets: r − μ (explicit) or confidences (implicit)."""
        values = ratings.astype(np.float32, copy=False)
        return (values - np.float32(mu)) if self.explicit else self._confidence(values)

    def _confidence(self, values: np.ndarray) -> np.ndarray:
        if self.config.confidence == "binary":
            return np.full(values.shape, 1.0 + self.config.alpha, values.dtype)
        return (1.0 + self.config.alpha * values).astype(values.dtype)

    def _half_step(self, indptr, indices, data, X, Y) -> None:
        c = self.config
        k = X.shape[1]
        if self.explicit:
            als_solve(indptr, indices, np.ones_like(data), data, X, Y, np.zeros((k, k), np.float32), 0.0,
                      c.reg)
            return
        YtY = _gram64(Y)
        fixed, per_count = (0.0, c.reg) if c.reg_scaling == "count" else (c.reg, 0.0)
        if c.solver == "exact":
            als_solve(indptr, indices, data - 1, data, X, Y, YtY.astype(np.float32), fixed, per_count)
        else:
            values, step = (BINARY, 0) if c.confidence == "binary" else (data, 1)
            als_cg(indptr, indices, values, X, Y, (YtY + fixed * np.eye(k)).astype(np.float32), c.cg_steps,
                   float(c.alpha), step, float(per_count))

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Rating estimates (explicit mode only); implicit mode raises `RecstackError`."""
        if not self.explicit:
            raise RecstackError("als in implicit mode ranks items but does not estimate ratings")
        return super().predict(users, items)

    def _history_system(self, items: np.ndarray, ratings: np.ndarray,
                        item: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(A, w, H, t) of the user's row solve (see `MF._history_system`): implicit
        A = YᵀY + Σ_j (c_j − 1) y_j y_jᵀ + λI, w_j = c_j (Hu et al. 2008); explicit (ALS-WR)
        A = Σ_j y_j y_jᵀ + λ·n·I, w_j = r_j − μ; h_j = y_j, t = y_i."""
        Y = self.item_factors_.astype(np.float64)
        H = Y[items]
        r = np.asarray(ratings, np.float64)
        k = Y.shape[1]
        if self.explicit:
            return H.T @ H + self.config.reg * len(items) * np.eye(k), r - self.global_mean_, H, Y[item]
        conf = self._confidence(r)
        A = Y.T @ Y + (H * (conf - 1)[:, None]).T @ H + self.config.reg * np.eye(k)
        return A, conf, H, Y[item]

    def fold_in(self, items: np.ndarray, ratings: np.ndarray) -> tuple[np.ndarray, float]:
        """A new user's factor vector from their ratings, item factors fixed: one exact row solve."""
        items = np.asarray(items, np.int64)
        r = np.asarray(ratings, np.float64)
        Y = self.item_factors_.astype(np.float64)
        k = Y.shape[1]
        x = np.zeros((1, k))
        indptr = np.array([0, len(items)])
        if self.explicit:
            als_solve_slow(indptr, items, np.ones(len(items)), r - self.global_mean_, x, Y,
                           np.zeros((k, k)), 0.0, self.config.reg)
        else:
            conf = self._confidence(r)
            fixed, per_count = ((0.0, self.config.reg) if self.config.reg_scaling == "count"
                                else (self.config.reg, 0.0))
            als_solve_slow(indptr, items, conf - 1, conf, x, Y, Y.T @ Y, fixed, per_count)
        return x[0], 0.0

    # ---- incremental updates (partial_fit) --------------------------------------------------
    replay_size: ClassVar[int] = 0  # ALS re-solves rows exactly; it replays nothing
    @property
    def keeps_item_major(self) -> bool:  # type: ignore[override]
        """Whether `fit` keeps the ratings item-major too: only when items are re-solved from their
        raters, i.e. when the item statistics would exceed `stats_budget` (otherwise the items
        are solved from the statistics, and an item-major copy would only cost its upkeep)."""
        return not self._stats_fit()

    def _stats_fit(self) -> bool:
        k = self.config.factors
        return self.n_items_ * (packed_size(k) + k) <= self.stats_budget

    stats_budget: ClassVar[int] = 50_000_000  # most floats kept for per-item Gram statistics

    def partial_fit(self, events: Interactions) -> Self:
        """Learn from `events` (vocabularies extending the model's) by exact row re-solves.

        New users and items start at zero. The touched users are solved exactly with the item
        factors fixed, then the touched items with the user factors fixed, then the touched
        users once more, so each touched user ends at the exact `fold_in` solve against the
        final item factors. Users are solved from their kept ratings (`solve_rows`). Items are
        solved from per-item Gram statistics kept as state, `item_gram_` (n_items, f(f+1)/2: packed) =
        Σ_u w_ui x_u x_uᵀ and `item_rhs_` (n_items, f) = Σ_u t_ui x_u (spare rows at the end; w, t: 1 and r − μ in
        explicit mode; c − 1 and c in implicit mode), which are corrected whenever a user's
        vector or a rating changes — so an item's solve costs O(f³), not O(f² · its raters).
        The two user solves share one extraction of the users' ratings, and the statistics
        follow the users' two moves in one pass over their histories plus a pass over the
        touched items' entries (see the comments below). Models whose statistics would exceed
        `stats_budget` floats solve items from their ratings instead — they alone keep the
        ratings item-major too (`keeps_item_major`). Implicit mode uses the full YᵀY (XᵀX)
        Gram, as the training solve does.
        """
        stats = self._item_stats_ready()
        up = upsert_ratings(self, events)
        self._grow_state(self.n_users_, self.n_items_)
        if stats:
            self.item_gram_ = grow(self.item_gram_, self.n_items_, spare=0.25)  # spare rows: amortised
            self.item_rhs_ = grow(self.item_rhs_, self.n_items_, spare=0.25)
            old_w, old_t = self._weights(np.where(np.isnan(up.old), 0.0, up.old))
            new_w, new_t = self._weights(up.ratings)
            gone = np.isnan(up.old)
            old_w[gone], old_t[gone] = 0.0, 0.0
            gram_add(up.items, self.user_factors_, up.users, new_w - old_w, new_t - old_t,
                     self.item_gram_, self.item_rhs_)
            self.item_count_ = grow(self.item_count_, self.n_items_, spare=0.25)
            np.add.at(self.item_count_, up.items[gone], 1)
        users, items = up.touched_users, up.touched_items
        if not stats:
            if getattr(self, "train_t_indptr_", None) is None:  # grown past the budget: keep it from now on
                self.train_t_indptr_, self.train_t_indices_, self.train_t_values_ = self._item_major()
            self._resolve(users, item_side=False)
            self._resolve(items, item_side=True)
            self._resolve(users, item_side=False)
            self.updates_ += 1
            return self
        # The item statistics must follow the users' vectors: x₀ → x₁ (first solve) → x₂ (second).
        # Only the touched items are solved in between, so only their entries take the step
        # x₀ → x₁ before it; afterwards they take x₁ → x₂ and every other item of those users
        # x₀ → x₂ in one step — one pass over the users' histories instead of two.
        x0 = self.user_factors_[users].astype(np.float64)
        rows = self._resolve(users, item_side=False)
        x1 = self.user_factors_[users].astype(np.float64)
        picked = np.zeros(self.n_items_, np.bool_)
        picked[items] = True
        if rows is not None:
            gram_delta(users, *rows, x0, x1, self.item_gram_, self.item_rhs_, picked, True)
        k = self.user_factors_.shape[1]
        X = self.user_factors_
        if self.explicit:
            base = np.zeros((k, k))
            lam = self.config.reg * self.item_count_[items].astype(np.float64)
        else:
            base = _gram64(X)
            lam = np.full(len(items), float(self.config.reg))
        out = np.zeros((len(items), k))
        solve_from_stats(items, self.item_gram_, self.item_rhs_, base, lam, out)
        self.item_factors_[items] = out
        if rows is not None:
            self._resolve(users, item_side=False, sub=rows)
            x2 = self.user_factors_[users].astype(np.float64)
            gram_delta(users, *rows, x1, x2, self.item_gram_, self.item_rhs_, picked, True)
            gram_delta(users, *rows, x0, x2, self.item_gram_, self.item_rhs_, picked, False)
        self.updates_ += 1
        return self

    def _weights(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(w, t) per rating: (1, r − μ) explicit; (c − 1, c) implicit."""
        values = np.asarray(values, np.float64)
        if self.explicit:
            return np.ones_like(values), values - self.global_mean_
        conf = self._confidence(values)
        return conf - 1.0, conf

    def _item_stats_ready(self) -> bool:
        """Build the per-item Gram statistics from the current state if missing; False: over budget.

        Also brings state saved by an earlier version up to date: full k×k statistics are packed,
        missing `item_count_` is counted, and a kept item-major copy is dropped (items are solved
        from the statistics, so it would only cost its upkeep)."""
        k = self.user_factors_.shape[1]
        if not self._stats_fit():
            return False
        gram = getattr(self, "item_gram_", None)
        if gram is not None and gram.ndim == 3:  # saved by an earlier version: full k×k matrices
            lower, upper = np.tril_indices(k)
            self.item_gram_ = np.ascontiguousarray(gram[:, lower, upper])
        if getattr(self, "item_gram_", None) is None or len(self.item_gram_) < self.n_items_:
            indptr, indices, values = self._item_major()
            w, t = self._weights(values)
            self.item_gram_ = np.zeros((self.n_items_, packed_size(k)))
            self.item_rhs_ = np.zeros((self.n_items_, k))
            gram_stats(indptr, indices, w, t, self.user_factors_.astype(np.float64), self.item_gram_, self.item_rhs_)
            self.item_count_ = np.diff(indptr).astype(np.int64)
        elif getattr(self, "item_count_", None) is None:  # statistics saved by an earlier version
            self.item_count_ = np.bincount(self.train_indices_, minlength=len(self.item_gram_)).astype(np.int64)
        for name in ("train_t_indptr_", "train_t_indices_", "train_t_values_"):
            self.__dict__.pop(name, None)
        return True

    def _item_major(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The kept ratings item-major (indptr, user indices, ratings): the kept copy when there is
        one, else a transpose of the user-major ratings."""
        if getattr(self, "train_t_indptr_", None) is not None:
            return self.train_t_indptr_, self.train_t_indices_, self.train_t_values_
        m = sp.csr_matrix((self.train_values_, self.train_indices_, self.train_indptr_),
                          shape=(len(self.train_indptr_) - 1, self.n_items_)).T.tocsr()
        m.sort_indices()
        return m.indptr.astype(np.int64), m.indices.astype(np.int32), m.data.astype(np.float32)

    def resolve_users(self, users: np.ndarray) -> None:
        """Solve `users`' vectors exactly over their kept ratings, item factors fixed."""
        self._resolve(np.asarray(users, np.int64), item_side=False)

    def _resolve(self, rows: np.ndarray, item_side: bool,
                 sub: tuple[np.ndarray, ...] | None = None) -> tuple[np.ndarray, ...] | None:
        """Solve `rows` exactly over their kept ratings, the other side fixed; returns the rows'
        sub-CSR and solve weights (indptr, cols, w, t) — pass them back as `sub` to solve the
        same rows again — or None when there are no rows."""
        if not len(rows):
            return None
        X, Y = (self.item_factors_, self.user_factors_) if item_side else (self.user_factors_, self.item_factors_)
        if sub is None:
            indptr, cols, values = (item_rows if item_side else user_rows)(self, rows)
            w, t = self._weights(values)
        else:
            indptr, cols, w, t = sub
        k = X.shape[1]
        out = np.zeros((len(rows), k))
        if self.explicit:
            solve_rows(indptr, cols, w, t, Y, np.zeros((k, k)), 0.0, float(self.config.reg), out)
        else:
            gram = _gram64(Y)
            solve_rows(indptr, cols, w, t, Y, gram, float(self.config.reg), 0.0, out)
        X[rows] = out
        return indptr, cols, w, t


def _normal32(rng: np.random.Generator, std: float, n: int, k: int) -> np.ndarray:
    """`rng.normal(0, std, (n, k)).astype(float32)` drawn in row blocks: the same numbers (the
    generator's stream is sequential) without the whole float64 table."""
    out = np.empty((n, k), np.float32)
    for lo in range(0, n, 1 << 14):
        hi = min(n, lo + (1 << 14))
        out[lo:hi] = rng.normal(0.0, std, (hi - lo, k))
    return out


def _gram64(Y: np.ndarray, block: int = 1 << 14) -> np.ndarray:
    """YᵀY summed in float64 over row blocks: no float64 copy of the whole table (at 162k
    users × 64 factors, two such copies would be 0.17 GB for a 64 × 64 result)."""
    k = Y.shape[1]
    G = np.zeros((k, k))
    for lo in range(0, len(Y), block):
        B = Y[lo:lo + block].astype(np.float64)
        G += B.T @ B
    return G


def _csr_arrays(m: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """indptr as int64 (nnz may pass 2³¹), indices as they are (int32 from scipy: no 8-byte copy)."""
    return m.indptr.astype(np.int64), m.indices, m.data

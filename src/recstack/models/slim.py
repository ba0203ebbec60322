"""SLIM: a sparse, non-negative item-item linear model learned by ElasticNet per item.

Ning & Karypis, "SLIM: Sparse Linear Methods for Top-N Recommender Systems" (ICDM 2011). For
each item j, with X the (n_users, n_items) training matrix and n its number of rows,

    w_j = argmin_{w ≥ 0, w_j = 0}  1/(2n)·||x_j − X w||² + α·ρ·||w||₁ + α(1−ρ)/2·||w||²

(scikit-learn's `ElasticNet(alpha=α, l1_ratio=ρ, positive=True, fit_intercept=False)`, the
setting used by Ferrari Dacrema et al. 2019), solved by cyclic coordinate descent on the Gram
matrix G = XᵀX (numba kernel `slim_columns`, one column per task, parallel over columns;
`slim_columns_slow` is its plain NumPy twin working on X). Only items that co-occur with j can
get a positive weight, so each column's descent runs over those alone. The `k` largest
weights of each column are kept; scores = X·W. With `side_weight` w > 0 item metadata joins
as pseudo-users, G += w²·FFᵀ (as in `ease.py`). G is dense n_items², so this suits
catalogues up to a few tens of thousands of items.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import scipy.sparse as sp

from recstack.data.interactions import Interactions
from recstack.errors import DataError
from recstack.models.config import Config, require
from recstack.models.ease import side_matrix
from recstack.models.itemitem import ItemItemModel
from recstack.progress import Bar


@dataclass(frozen=True)
class SLIMConfig(Config):
    """`alpha`: total penalty α; `l1_ratio`: its L1 share ρ; `k`: weights kept per item column
    (0: all); `max_iter`/`tol`: coordinate-descent sweeps and stopping tolerance (largest
    weight change relative to the largest weight); `binary`: 1 for every interaction;
    `side_weight`/`side_year_bucket`: genre / release-year pseudo-users as in `ease`."""

    alpha: float = 1e-3  # total ElasticNet penalty α
    l1_ratio: float = 0.1  # L1 share of the penalty (1: lasso, 0: ridge)
    k: int = 100  # weights kept per item column (0: all)
    max_iter: int = 100  # coordinate-descent sweeps per item column at most
    tol: float = 1e-4  # stop when no weight moves more than tol × the largest weight
    binary: bool = True
    side_weight: float = 0.0
    side_year_bucket: int = 2

    def check(self) -> None:
        require(self.alpha > 0, "alpha", self.alpha, "must be > 0")
        require(0 <= self.l1_ratio <= 1, "l1_ratio", self.l1_ratio, "must be in [0, 1]")
        require(self.k >= 0, "k", self.k, "must be ≥ 0 (0 keeps every weight)")
        require(self.max_iter >= 1, "max_iter", self.max_iter, "must be ≥ 1")
        require(self.tol >= 0, "tol", self.tol, "must be ≥ 0")
        require(self.side_weight >= 0, "side_weight", self.side_weight, "must be ≥ 0")
        require(self.side_year_bucket >= 1, "side_year_bucket", self.side_year_bucket, "must be ≥ 1")


@numba.njit(cache=True, nogil=True)
def _sweep(gram, j, l1, l2, coords, active, n_active, w):  # pragma: no cover - numba
    """One cyclic pass over `coords`; ρ_k = G[k, j] − Σ_{l active} G[k, l]·w_l + G[k, k]·w_k.
    Newly positive weights join `active`. Returns (largest change, largest weight, n_active)."""
    max_delta = 0.0
    max_w = 0.0
    for k in coords:
        gkk = gram[k, k]
        old = w[k]
        rho = gram[k, j] + gkk * old
        for t in range(n_active):
            rho -= gram[k, active[t]] * w[active[t]]
        new = max(rho - l1, 0.0) / (gkk + l2)
        if new != old:
            if old == 0.0:
                active[n_active] = k
                n_active += 1
            w[k] = new
            max_delta = max(max_delta, abs(new - old))
        max_w = max(max_w, new)
    return max_delta, max_w, n_active


@numba.njit(cache=True, nogil=True)
def _descend(gram, j, l1, l2, max_iter, tol, w):  # pragma: no cover - numba
    """Coordinate descent for column j, filling `w` (n_items,) in place: a full sweep over the
    items co-occurring with j, then sweeps over the positive weights alone until they settle,
    repeated until a full sweep changes nothing by more than tol·max(w) (or max_iter sweeps)."""
    n = gram.shape[0]
    cand = np.array([k for k in range(n) if k != j and gram[k, k] > 0 and gram[k, j] > 0], np.int64)
    active = np.empty(n, np.int64)
    n_active = 0
    sweeps = 0
    while sweeps < max_iter:
        max_delta, max_w, n_active = _sweep(gram, j, l1, l2, cand, active, n_active, w)
        sweeps += 1
        if max_w == 0.0 or max_delta <= tol * max_w:
            break
        while sweeps < max_iter:
            pos = np.flatnonzero(w > 0)  # the active set, in index order, zeros dropped
            n_active = len(pos)
            active[:n_active] = pos
            max_delta, max_w, n_active = _sweep(gram, j, l1, l2, pos, active, n_active, w)
            sweeps += 1
            if max_w == 0.0 or max_delta <= tol * max_w:
                break
        pos = np.flatnonzero(w > 0)
        n_active = len(pos)
        active[:n_active] = pos


@numba.njit(cache=True, parallel=True)
def slim_columns(gram, l1, l2, max_iter, tol, keep, start=0, stop=-1):  # pragma: no cover - numba
    """Per column j of W (j in start..stop-1; stop −1: to the last), its `keep` largest positive
    weights: (stop − start, keep) rows and values (row −1 pads). l1, l2: the unnormalised
    penalties n·α·ρ and n·α·(1−ρ)."""
    n = gram.shape[0]
    if stop < 0:
        stop = n
    rows = np.full((stop - start, keep), -1, np.int64)
    vals = np.zeros((stop - start, keep), np.float64)
    for jj in numba.prange(stop - start):
        j = start + jj
        w = np.zeros(n)
        _descend(gram, j, l1, l2, max_iter, tol, w)
        pos = np.flatnonzero(w > 0)
        # by weight desc, then row asc
        order = np.argsort(-w[pos], kind="mergesort")[:keep]
        for t in range(len(order)):
            rows[jj, t] = pos[order[t]]
            vals[jj, t] = w[pos[order[t]]]
    return rows, vals


def slim_columns_slow(x: np.ndarray, l1: float, l2: float, max_iter: int, tol: float) -> np.ndarray:
    """Dense twin: (n_items, n_items) W, column j by coordinate descent on the residual
    x_j − X w (the same sweep schedule and stopping rule as `slim_columns`, no top-k)."""
    x = np.asarray(x, np.float64)
    n = x.shape[1]
    sq = (x * x).sum(axis=0)
    out = np.zeros((n, n))

    def sweep(coords, w, resid):
        max_delta = max_w = 0.0
        for k in coords:
            new = max(x[:, k] @ resid + sq[k] * w[k] - l1, 0.0) / (sq[k] + l2)
            if new != w[k]:
                resid -= x[:, k] * (new - w[k])
                max_delta = max(max_delta, abs(new - w[k]))
                w[k] = new
            max_w = max(max_w, new)
        return max_w == 0.0 or max_delta <= tol * max_w

    for j in range(n):
        w = np.zeros(n)
        resid = x[:, j].copy()
        cand = [k for k in range(n) if k != j and sq[k] > 0 and x[:, k] @ x[:, j] > 0]
        sweeps = 0
        while sweeps < max_iter:
            sweeps += 1
            if sweep(cand, w, resid):
                break
            while sweeps < max_iter:
                sweeps += 1
                if sweep(np.flatnonzero(w > 0), w, resid):
                    break
        out[:, j] = w
    return out


class SLIM(ItemItemModel):
    """Sparse linear item-item model: score(u) = x_u · W, W ≥ 0, diag(W) = 0.

    State: W as CSR arrays `weights_indptr_`, `weights_indices_`, `weights_data_` (row k,
    column j: weight of item k in item j's regression, ≤ k per column); the training matrix as
    `train_indptr_`, `train_indices_`, `train_values_`.
    """

    name = "slim"
    config_class = SLIMConfig

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        return {
            "alpha": trial.suggest_float("alpha", 1e-3, 3.0, log=True),
            "l1_ratio": trial.suggest_float("l1_ratio", 1e-4, 1.0, log=True),
            "k": trial.suggest_categorical("k", [0, 50, 200, 500]),
            "side_weight": trial.suggest_categorical("side_weight", [0.0, 1.0, 3.0]),
        }

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        c = self.config
        x = train.csr.astype(np.float64)
        if c.binary:
            x.data[:] = 1.0
        elif len(x.data) and x.data.min() < 0:
            raise DataError("slim needs non-negative ratings (or binary=True); "
                            f"the smallest rating is {x.data.min():g}")
        gram = (x.T @ x).toarray()
        n_rows = x.shape[0]
        if c.side_weight > 0:
            f = side_matrix(train.item_features, c.side_year_bucket)
            gram += c.side_weight ** 2 * (f @ f.T)
            n_rows += f.shape[1]
        l1 = n_rows * c.alpha * c.l1_ratio
        l2 = n_rows * c.alpha * (1.0 - c.l1_ratio)
        keep = c.k if c.k else x.shape[1]
        gram = np.ascontiguousarray(gram)
        n = x.shape[1]
        step = max(64, -(-n // 50))  # about 50 kernel calls: the bar moves, the threads stay busy
        parts = []
        with Bar(f"{self.name} columns", total=n) as bar:
            for start in range(0, n, step):
                stop = min(n, start + step)
                parts.append(slim_columns(gram, l1, l2, c.max_iter, c.tol, keep, start, stop))
                bar.update(stop - start)
        rows = np.concatenate([p[0] for p in parts])
        vals = np.concatenate([p[1] for p in parts])
        cols = np.repeat(np.arange(x.shape[1]), keep).reshape(rows.shape)
        ok = rows >= 0
        w = sp.csr_matrix((vals[ok], (rows[ok], cols[ok])), shape=(x.shape[1], x.shape[1]))
        self._store(x, w)

"""First-order Markov next-item baseline (`markov`).

Counts transitions item a → item b between consecutive interactions of each user, in the
order (timestamp, input row order). A user is scored by the transition row of their last
training item, smoothed towards item popularity with a Dirichlet prior of strength `smoothing`:

    s(u, i) = (c(last_u → i) + smoothing · p_pop(i)) / (n(last_u) + smoothing)

(the posterior-mean estimate of P(next = i | last_u) under that prior; with smoothing = 0,
a last item never followed by anything falls back to popularity). This is the "MC" baseline of
Rendle, Freudenthaler & Schmidt-Thieme, *Factorizing Personalized Markov Chains for Next-Basket
Recommendation* (WWW 2010), without the factorization. Users with no training items get popularity alone.

The counts are built with vectorised NumPy (one sort, one sparse matrix), so there is no
hot loop and no numba kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from recstack.data.interactions import Interactions
from recstack.models.base import Model
from recstack.models.config import Config, require
from recstack.models.incremental import check_extends, grow


def sequence_order(data: Interactions) -> np.ndarray:
    """Row indices sorted by (user, timestamp, input row order): each user's history in time order."""
    return np.lexsort((np.arange(len(data)), data.timestamp, data.user))


def last_items(data: Interactions, extra: Interactions | None = None) -> np.ndarray:
    """(n_users,) int64 index of each user's last item in (timestamp, row order); -1 if none.

    `extra` (e.g. the validation part of leave-last-out) continues the histories: at equal
    timestamps its rows count as later than `data`'s.
    """
    parts = [data] if extra is None else [data, extra]
    user = np.concatenate([p.user for p in parts]).astype(np.int64)
    item = np.concatenate([p.item for p in parts]).astype(np.int64)
    ts = np.concatenate([p.timestamp for p in parts])
    order = np.lexsort((np.arange(len(user)), ts, user))
    last = np.full(data.n_users, -1, np.int64)
    last[user[order]] = item[order]  # later rows overwrite earlier ones: the last one wins
    return last


def transition_counts(data: Interactions) -> tuple[sp.csr_matrix, np.ndarray]:
    """(n_items, n_items) CSR counts of a → b between consecutive items of each user, and
    the (n_users,) int64 index of each user's last item (-1 for users without interactions)."""
    order = sequence_order(data)
    u = data.user[order].astype(np.int64)
    i = data.item[order].astype(np.int64)
    same = u[1:] == u[:-1]
    src, dst = i[:-1][same], i[1:][same]
    counts = sp.csr_matrix((np.ones(len(src), np.float64), (src, dst)),
                           shape=(data.n_items, data.n_items))
    counts.sum_duplicates()
    counts.sort_indices()
    return counts, last_items(data)


def transition_counts_slow(data: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """Obviously-correct twin of `transition_counts`: a Python loop per user, dense counts."""
    counts = np.zeros((data.n_items, data.n_items))
    last = np.full(data.n_users, -1, np.int64)
    for user in range(data.n_users):
        rows = np.flatnonzero(data.user == user)
        rows = sorted(rows, key=lambda r: (data.timestamp[r], r))
        items = [int(data.item[r]) for r in rows]
        for a, b in zip(items[:-1], items[1:], strict=False):
            counts[a, b] += 1
        if items:
            last[user] = items[-1]
    return counts, last


@dataclass(frozen=True)
class MarkovConfig(Config):
    """Hyperparameters of `markov`.

    `smoothing`: the Dirichlet prior's weight on popularity. `valid_history`: when `fit` gets a
    validation part, its items extend each user's history for scoring (as in SASRec's
    leave-last-out protocol, where the test step follows the validation item); they never
    enter the counts.
    """

    smoothing: float = 1.0  # weight of the Dirichlet prior towards popularity (0: counts alone)
    valid_history: bool = True

    def check(self) -> None:
        require(self.smoothing >= 0, "smoothing", self.smoothing, "must be ≥ 0")


class Markov(Model):
    """First-order Markov chain over items; scores = P(next item | user's last training item).

    State: `last_item_` (n_users,) int64 (-1: none), `popularity_` (n_items,) float64 shares,
    and the transition counts as CSR arrays `trans_indptr_`, `trans_indices_`, `trans_data_`.
    """

    name = "markov"
    config_class = MarkovConfig

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        return {"smoothing": trial.suggest_float("smoothing", 1e-3, 100.0, log=True)}

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        counts, last = transition_counts(train)
        if valid is not None and self.config.valid_history:
            last = last_items(train, valid)
        pop = train.item_popularity.astype(np.float64)
        self.popularity_ = pop / pop.sum()
        self.last_item_ = last
        self.trans_indptr_ = counts.indptr.astype(np.int64)
        self.trans_indices_ = counts.indices.astype(np.int64)
        self.trans_data_ = counts.data.astype(np.float64)

    @property
    def transitions(self) -> sp.csr_matrix:
        """(n_items, n_items) transition counts, rebuilt from the saved CSR arrays."""
        n = self.n_items_
        return sp.csr_matrix((self.trans_data_, self.trans_indices_, self.trans_indptr_), shape=(n, n))

    def _score(self, users: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        last = self.last_item_[users]
        has = last >= 0
        alpha = self.config.smoothing
        pop = self.popularity_
        out = np.tile(pop, (len(users), 1))
        if has.any():
            rows = self.transitions[last[has]]
            totals = np.asarray(rows.sum(axis=1)).ravel()
            denom = totals + alpha
            ok = denom > 0  # a last item with no outgoing transition and no prior: popularity
            s = alpha * out[has] + rows.toarray()
            s[ok] /= denom[ok, None]
            s[~ok] = out[has][~ok]
            out[has] = s
        if items is not None:
            out = out[:, items]
        return out.astype(np.float32)

    def next_item_scores(self, item: int) -> np.ndarray:
        """(n_items,) smoothed P(next | item) for any item, e.g. for a session without a user."""
        row = self.transitions[[int(item)]].toarray()[0]
        alpha = self.config.smoothing
        denom = row.sum() + alpha
        if denom <= 0:
            return self.popularity_.astype(np.float32)
        return ((row + alpha * self.popularity_) / denom).astype(np.float32)

    # ---- incremental updates (partial_fit) --------------------------------------------------
    def fit(self, train: Interactions, valid: Interactions | None = None) -> Self:
        """`Model.fit`, then keep the item counts that `popularity_` is made of."""
        super().fit(train, valid)
        self.item_counts_ = train.item_popularity.astype(np.float64)
        return self

    def partial_fit(self, events: Interactions) -> Self:
        """Extend each user's history with the events, in (timestamp, row) order: every event
        adds the transition last item → its item and becomes the user's last item; item counts
        (popularity) grow. Events are a sequence: a repeated item is a new step, and a late event
        (older than the user's latest) counts as arriving now."""
        check_extends(self, events)
        n_items = events.n_items
        order = sequence_order(events)
        u = events.user[order].astype(np.int64)
        i = events.item[order].astype(np.int64)
        last = grow(self.last_item_, events.n_users, fill=-1)
        prev = np.empty_like(i)
        if len(i):
            first = np.r_[True, u[1:] != u[:-1]]
            prev[1:] = i[:-1]
            prev[first] = last[u[first]]
        has = prev >= 0
        old = sp.csr_matrix((self.trans_data_, self.trans_indices_, self.trans_indptr_),
                            shape=(self.n_items_, self.n_items_))
        old.resize((n_items, n_items))
        add = sp.csr_matrix((np.ones(int(has.sum())), (prev[has], i[has])), shape=(n_items, n_items))
        counts = (old + add).tocsr()
        counts.sort_indices()
        last[u] = i  # rows are in time order per user: the last one wins
        self.last_item_ = last
        self.trans_indptr_ = counts.indptr.astype(np.int64)
        self.trans_indices_ = counts.indices.astype(np.int64)
        self.trans_data_ = counts.data.astype(np.float64)
        self.item_counts_ = grow(self.item_counts_, n_items) + np.bincount(i, minlength=n_items)
        self.popularity_ = self.item_counts_ / self.item_counts_.sum()
        self.n_users_, self.n_items_ = events.n_users, n_items
        return self


"""Top-k recommendation from any model's `score`, batched, with seen items removed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recstack.errors import RecstackError, UnknownIdError
from recstack.models.base import Model
from recstack.topk import top_k_rows

if TYPE_CHECKING:
    from recstack.persist import SavedModel


def top_k_from_scores(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k best finite scores per row, best first.

    scores: (n_users, n_items) float; -inf and NaN never rank. Returns (n_users, k) int64
    indices (-1 where a row has fewer than k rankable items) and float32 scores (NaN there).
    Ties break by lower item index.
    """
    scores = np.asarray(scores)
    if scores.dtype not in (np.float32, np.float64):
        scores = scores.astype(np.float64)
    if k <= 0:
        return np.empty((scores.shape[0], 0), np.int64), np.empty((scores.shape[0], 0), np.float32)
    return top_k_rows(np.ascontiguousarray(scores), int(k))


def recommend(
    model: Model,
    users: np.ndarray | list[int],
    k: int = 10,
    exclude: sp.csr_matrix | None = None,
    candidates: np.ndarray | None = None,
    batch_size: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k item indices and scores for user indices, best first.

    exclude: (n_users, n_items) sparse matrix whose nonzeros are never recommended (usually the
    training matrix: seen items). candidates: optional bool mask (n_items,) of allowed items.
    """
    users = np.asarray(users, np.int64).reshape(-1)
    all_idx, all_val = [], []
    for start in range(0, len(users), batch_size):
        batch = users[start:start + batch_size]
        scores = model.score(batch)  # float32: -inf masks as well, at half the memory traffic
        if not (scores.flags.owndata and scores.flags.writeable):  # never write into a model's arrays
            scores = scores.copy()
        if exclude is not None:
            known = batch < exclude.shape[0]
            sub = exclude[batch[known]].tocoo()
            rows = np.flatnonzero(known)[sub.row]
            scores[rows, sub.col] = -np.inf
        if candidates is not None:
            scores[:, ~np.asarray(candidates, bool)] = -np.inf
        idx, val = top_k_from_scores(scores, k)
        all_idx.append(idx)
        all_val.append(val)
    if not all_idx:
        return np.empty((0, k), np.int64), np.empty((0, k), np.float32)
    return np.vstack(all_idx), np.vstack(all_val)


def popular_items(item_popularity: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """The k most popular item indices (ties by lower index), skipping `exclude` indices."""
    pop = np.asarray(item_popularity, np.float64).copy()
    if exclude is not None and len(exclude):
        pop[np.asarray(exclude, np.int64)] = -np.inf
    order = np.lexsort((np.arange(len(pop)), -pop))
    order = order[np.isfinite(pop[order])]
    return order[:k]


class Recommender:
    """Recommendation logic over a saved model and its training data, in external ids.

    The CLI, the web page and the HTTP service all answer through this one class:
    personalised top-k (seen items removed) → popular fallback for unknown users;
    new users folded in from a few ratings; similar items.
    """

    def __init__(self, saved: SavedModel) -> None:
        self.model = saved.model
        self.train = saved.train
        self.info = saved.info
        self.labels = self.train.item_titles()

    # ---- rows -----------------------------------------------------------------------------
    def item_row(self, index: int, rank: int | None = None, score: float | None = None) -> dict[str, Any]:
        f = self.train.item_features
        row: dict[str, Any] = {"item": str(self.train.item_ids[index]), "label": self.labels[index]}
        if f is not None:
            if "title" in f:
                row["title"] = str(f["title"].iloc[index])
            if "year" in f:
                y = f["year"].iloc[index]
                row["year"] = None if pd.isna(y) else int(y)
            if "genres" in f:
                row["genres"] = list(f["genres"].iloc[index])
        if rank is not None:
            row["rank"] = rank
        if score is not None:
            row["score"] = None if np.isnan(score) else round(float(score), 4)
        return row

    def _rows(self, idx: np.ndarray, scores: np.ndarray | None) -> list[dict[str, Any]]:
        if scores is not None and self.model.explicit and len(self.train):
            # explicit models: a score is a rating estimate, shown on the rating scale
            scores = np.clip(scores, self.train.rating.min(), self.train.rating.max())
        return [self.item_row(int(i), r + 1, None if scores is None else float(scores[r]))
                for r, i in enumerate(idx) if i >= 0]

    # ---- answers --------------------------------------------------------------------------
    def for_user(self, user_id: object, k: int = 10, fallback: str = "none") -> dict[str, Any]:
        """Top-k unseen items for a known user; popular items for an unknown one when asked."""
        if str(user_id) not in self.train.user_index:
            if fallback != "popular":
                raise UnknownIdError(f"unknown user id {user_id!r} (this model knows "
                                     f"{self.train.n_users:,} users; use --fallback popular)")
            idx = popular_items(self.train.item_popularity, k)
            return {"user": str(user_id), "fallback": "popular", "items": self._rows(idx, None)}
        u = self.train.user_of(user_id)
        idx, val = recommend(self.model, [u], k, exclude=self.train.csr)
        return {"user": str(user_id), "fallback": None, "items": self._rows(idx[0], val[0])}

    def rated_by(self, user_id: object, k: int = 10) -> list[dict[str, Any]]:
        """The user's highest-rated training items (ties: most recent first)."""
        u = self.train.user_of(user_id)
        rows = np.flatnonzero(self.train.user == u)
        order = np.lexsort((-self.train.timestamp[rows], -self.train.rating[rows]))[:k]
        return self._rows(self.train.item[rows[order]], self.train.rating[rows[order]])

    def for_new_user(self, ratings: dict[object, float], k: int = 10) -> dict[str, Any]:
        """Top-k for someone known only by {item id: rating}, folded in without retraining."""
        if not ratings:
            raise RecstackError("rate at least one item to get recommendations")
        if not hasattr(self.model, "score_new_user"):
            raise RecstackError(f"model {self.model.name!r} cannot fold in new users")
        items = np.array([self.train.item_of(i) for i in ratings], np.int64)
        values = np.array([float(r) for r in ratings.values()], np.float64)
        scores = self.model.score_new_user(items, values).astype(np.float64)
        scores[items] = -np.inf
        idx, val = top_k_from_scores(scores[None, :], k)
        return {"user": None, "fallback": None, "items": self._rows(idx[0], val[0])}

    def similar(self, item_id: object, k: int = 10) -> dict[str, Any]:
        """Items nearest to `item_id` (the model's own notion, e.g. embedding cosine)."""
        i = self.train.item_of(item_id)
        if not hasattr(self.model, "similar_items"):
            raise RecstackError(f"model {self.model.name!r} cannot find similar items")
        idx, sims = self.model.similar_items(i, k)
        return {"item": self.item_row(i), "items": self._rows(idx, sims)}

    def search(self, query: str, limit: int = 20) -> list[dict[str, Any]]:
        """Items whose label contains every word of `query` (case-insensitive), most popular first."""
        words = [w for w in query.lower().split() if w]
        if not words:
            return []
        hits = [i for i, label in enumerate(self.labels) if all(w in label.lower() for w in words)]
        hits.sort(key=lambda i: (-self.train.item_popularity[i], i))
        return [self.item_row(i) for i in hits[:limit]]

"""Most-popular baseline: every user gets the items with the most training interactions.

The non-personalised reference of every top-N benchmark (e.g. Microsoft Recommenders'
MovieLens table). Score of item i = its interaction count c_i plus a tie-break fraction in
[0, 1): among the t items sharing a count, the one with the q-th lowest index (q = 0..t-1)
gets (t - q) / (t + 1). So `floor(score) == count`, every score is distinct, and ties go to
the lower item index — top-k is deterministic however the scores are cut.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Self

import numpy as np

from recstack.data.interactions import Interactions
from recstack.models.base import Model
from recstack.models.config import Config, require
from recstack.models.incremental import grow, keep_ratings, upsert_ratings


@dataclass(frozen=True)
class PopularConfig(Config):
    """`weight`: "count" counts interactions; "rating" sums their ratings.

    `min_rating`: interactions with a lower rating are ignored (0 keeps all).
    """

    weight: Literal["count", "rating"] = "count"  # count: interactions; rating: sum of their ratings
    min_rating: float = 0.0

    def check(self) -> None:
        require(self.min_rating >= 0, "min_rating", self.min_rating, "must be ≥ 0")


def popularity_scores(counts: np.ndarray) -> np.ndarray:
    """(n_items,) float64 strictly ordered scores from (n_items,) counts: count + tie fraction."""
    counts = np.asarray(counts, np.float64)
    n = len(counts)
    order = np.lexsort((np.arange(n), counts))  # by count, then index
    sorted_counts = counts[order]
    starts = np.flatnonzero(np.r_[True, sorted_counts[1:] != sorted_counts[:-1]])
    sizes = np.diff(np.r_[starts, n])
    q = np.arange(n) - np.repeat(starts, sizes)  # position among ties, lower index first
    t = np.repeat(sizes, sizes)
    out = np.empty(n, np.float64)
    out[order] = sorted_counts + (t - q) / (t + 1.0)
    return out


class Popular(Model):
    """Scores every item by its training popularity; the same list for every user.

    State: `item_counts_` (n_items,) float64 popularity, `item_scores_` (n_items,) float64.
    """

    name = "popular"
    config_class = PopularConfig
    explicit = False

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        return {
            "weight": trial.suggest_categorical("weight", ["count", "rating"]),
            "min_rating": trial.suggest_categorical("min_rating", [0.0, 3.0, 4.0]),
        }

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        c = self.config
        keep = train.rating >= c.min_rating
        weights = train.rating[keep].astype(np.float64) if c.weight == "rating" else None
        self.item_counts_ = np.bincount(train.item[keep], weights=weights, minlength=train.n_items)
        self.item_counts_ = self.item_counts_.astype(np.float64)
        self.item_scores_ = popularity_scores(self.item_counts_)

    def _score(self, users: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        s = self.item_scores_ if items is None else self.item_scores_[items]
        return np.broadcast_to(s.astype(np.float32), (len(users), len(s))).copy()

    # ---- incremental updates (partial_fit) --------------------------------------------------
    def fit(self, train: Interactions, valid: Interactions | None = None) -> Self:
        """`Model.fit`, then keep the training ratings (so a repeated rating replaces, not adds)."""
        super().fit(train, valid)
        keep_ratings(self, train)
        return self

    def partial_fit(self, events: Interactions) -> Self:
        """Add the events to the counts (a repeated (user, item) replaces its earlier rating)."""
        up = upsert_ratings(self, events)
        c = self.config

        def weight(r: np.ndarray) -> np.ndarray:
            w = r if c.weight == "rating" else np.ones_like(r)
            return np.where(np.isfinite(r) & (r >= c.min_rating), w, 0.0)

        delta = weight(up.ratings) - weight(np.where(np.isnan(up.old), -np.inf, up.old))
        counts = grow(self.item_counts_, self.n_items_)
        self.item_counts_ = counts + np.bincount(up.items, weights=delta, minlength=self.n_items_)
        self.item_scores_ = popularity_scores(self.item_counts_)
        return self

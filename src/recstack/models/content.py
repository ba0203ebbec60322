"""Content-based filtering from item metadata: genres, release year and title words.

Each item becomes a feature vector (Lops, de Gemmis & Semeraro, "Content-based recommender
systems", 2011): one-hot genres, a one-hot release-year bucket and TF-IDF title words, each
block L2-normalised and weighted, the whole row L2-normalised. A user's profile is the sum of
the vectors of the items they rated, weighted by rating minus the user's mean rating; scores
are cosine similarities between profile and items. Items nobody has rated yet score like any
other (cold start): only their metadata is needed.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recstack.data.interactions import Interactions
from recstack.errors import DataError
from recstack.models.base import Model
from recstack.models.config import Config, require

STOPWORDS = frozenset("a an and the of in on to for with from at by is it its la le les de der die das el".split())


@dataclass(frozen=True)
class ContentConfig(Config):
    """Block weights of the item vector; `year_bucket` years per bucket; title words need
    `min_df` titles; `centered`: weight rated items by rating − user mean (else by rating)."""

    genre_weight: float = 1.0  # weight of the one-hot genre block of the item vectors
    year_weight: float = 0.5  # weight of the release-year bucket block
    title_weight: float = 0.5  # weight of the TF-IDF title-word block
    year_bucket: int = 10
    min_df: int = 2  # title words kept when they appear in at least this many titles
    centered: bool = True  # weight rated items by rating − user mean (false: by rating)

    def check(self) -> None:
        for name in ("genre_weight", "year_weight", "title_weight"):
            require(getattr(self, name) >= 0, name, getattr(self, name), "must be ≥ 0")
        require(self.genre_weight + self.year_weight + self.title_weight > 0, "genre_weight",
                self.genre_weight, "at least one block weight must be > 0")
        require(self.year_bucket >= 1, "year_bucket", self.year_bucket, "must be ≥ 1")
        require(self.min_df >= 1, "min_df", self.min_df, "must be ≥ 1")


def tokenize(title: str) -> list[str]:
    """Lower-case words of a title, stop words removed."""
    return [w for w in re.findall(r"[a-z0-9]+", str(title).lower()) if w not in STOPWORDS]


def _l2_rows(m: sp.csr_matrix) -> sp.csr_matrix:
    m = sp.csr_matrix(m, dtype=np.float64, copy=True)
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    m.data /= np.repeat(np.where(norms > 0, norms, 1.0), np.diff(m.indptr))
    return m


def _one_hot(rows: list[list[str]], names: list[str]) -> sp.csr_matrix:
    col = {n: j for j, n in enumerate(names)}
    r = [i for i, row in enumerate(rows) for v in row if v in col]
    c = [col[v] for row in rows for v in row if v in col]
    return sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(len(rows), len(names)))


def item_feature_matrix(features: pd.DataFrame, config: ContentConfig) -> tuple[sp.csr_matrix, list[str]]:
    """(n_items, n_features) L2-normalised CSR item vectors and the feature names.

    features: one row per item index with any of `genres` (list of str), `year`, `title`.
    """
    blocks, names = [], []
    n = len(features)
    if "genres" in features and config.genre_weight > 0:
        genres = [list(g) if isinstance(g, (list, tuple, np.ndarray)) else [] for g in features["genres"]]
        vocab = sorted({g for gs in genres for g in gs})
        blocks.append(config.genre_weight * _l2_rows(_one_hot(genres, vocab)))
        names += [f"genre:{g}" for g in vocab]
    if "year" in features and config.year_weight > 0:
        years = pd.to_numeric(features["year"], errors="coerce")
        buckets = [[] if pd.isna(y) else [str(int(y) // config.year_bucket * config.year_bucket)] for y in years]
        vocab = sorted({b for bs in buckets for b in bs})
        blocks.append(config.year_weight * _one_hot(buckets, vocab))
        names += [f"year:{b}s" for b in vocab]
    if "title" in features and config.title_weight > 0:
        words = [tokenize(t) for t in features["title"]]
        df = Counter(w for ws in words for w in set(ws))
        vocab = sorted(w for w, c in df.items() if c >= config.min_df)
        tf = _one_hot(words, vocab)  # counts: repeated words add up
        idf = np.log((1.0 + n) / (1.0 + np.array([df[w] for w in vocab], np.float64))) + 1.0
        blocks.append(config.title_weight * _l2_rows(tf @ sp.diags(idf)))
        names += [f"word:{w}" for w in vocab]
    if not blocks:
        raise DataError("content model needs item features (genres, year or title) with a weight > 0; "
                        "this data set has none")
    return _l2_rows(sp.hstack(blocks, format="csr")), names


class ContentBased(Model):
    """Cosine between a user's rating-weighted profile and item metadata vectors.

    State: item vectors as CSR arrays `feature_indptr_`, `feature_indices_`, `feature_values_`
    (n_items, n_features); user profiles `profile_indptr_`, `profile_indices_`,
    `profile_values_` (n_users, n_features), L2-normalised; `feature_names_` (n_features,).
    """

    name = "content"
    config_class = ContentConfig
    explicit = False

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        return {
            "genre_weight": trial.suggest_float("genre_weight", 0.0, 1.0),
            "year_weight": trial.suggest_float("year_weight", 0.0, 1.0),
            "title_weight": trial.suggest_float("title_weight", 0.0, 1.0),
            "year_bucket": trial.suggest_categorical("year_bucket", [5, 10, 20]),
            "centered": trial.suggest_categorical("centered", [True, False]),
        }

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        if train.item_features is None:
            raise DataError(f"content model needs item features; data set {train.name!r} has none")
        if len(train.item_features) != train.n_items:
            raise DataError(f"item features have {len(train.item_features)} rows for {train.n_items} items")
        f, names = item_feature_matrix(train.item_features, self.config)
        self.feature_names_ = np.asarray(names, dtype=str)
        self.feature_indptr_, self.feature_indices_, self.feature_values_ = _csr_arrays(f)
        x = train.csr.astype(np.float64)
        profiles = _l2_rows(self._weights(x) @ f)
        self.profile_indptr_, self.profile_indices_, self.profile_values_ = _csr_arrays(profiles)

    def _weights(self, x: sp.csr_matrix) -> sp.csr_matrix:
        """Per-rating weights: rating − user mean (centered) or the rating; a user whose weights
        are all zero (every rating equal) weighs each rated item 1."""
        w = x.copy()
        counts = np.diff(w.indptr)
        if self.config.centered:
            means = np.asarray(w.sum(axis=1)).ravel() / np.maximum(counts, 1)
            w.data = w.data - np.repeat(means, counts)
        flat = np.asarray(abs(w).sum(axis=1)).ravel() == 0
        w.data[np.repeat(flat, counts)] = 1.0
        return w

    def features(self) -> sp.csr_matrix:
        """(n_items, n_features) item vectors."""
        return sp.csr_matrix((self.feature_values_, self.feature_indices_, self.feature_indptr_),
                             shape=(self.n_items_, len(self.feature_names_)))

    def _score(self, users: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        p = sp.csr_matrix((self.profile_values_, self.profile_indices_, self.profile_indptr_),
                          shape=(self.n_users_, len(self.feature_names_)))
        f = self.features() if items is None else self.features()[items]
        return np.asarray((p[users] @ f.T).toarray(), dtype=np.float32)

    def score_new_user(self, items: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        """(n_items,) scores for a user known only by `ratings` of `items`."""
        items = np.asarray(items, np.int64)
        x = sp.csr_matrix((np.asarray(ratings, np.float64), (np.zeros(len(items), int), items)),
                          shape=(1, self.n_items_))
        p = _l2_rows(self._weights(x) @ self.features())
        return np.asarray((p @ self.features().T).toarray()[0], dtype=np.float32)

    def similar_items(self, item: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The k items with the most similar metadata (cosine), the item itself excluded."""
        f = self.features()
        sims = np.asarray((f @ f[item].T).toarray()).ravel()
        sims[item] = -np.inf
        top = np.argsort(-sims, kind="stable")[:k]
        return top, sims[top].astype(np.float32)


def _csr_arrays(m: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m = sp.csr_matrix(m)
    m.sort_indices()
    return m.indptr.astype(np.int64), m.indices.astype(np.int64), m.data.astype(np.float32)

"""Re-ranking a model's candidates: diversity (MMR), novelty (a popularity penalty), genre filters.

Diversity follows Maximal Marginal Relevance (Carbonell & Goldstein 1998) with λ turned round so
that "more" means more: λ = 0 ranks by relevance only, λ = 1 by diversity only. Each step picks

    argmax_i  (1 − λ) · rel(i) − λ · max_{j chosen} sim(i, j)

where rel is the model's score min-max scaled to [0, 1] over the candidates (so λ means the same
for every model) and sim is the cosine of item genre vectors or of the model's item vectors.
Novelty ν subtracts ν · log(1 + pop(i)) / log(1 + max pop) from rel before MMR: ν = 0 leaves the
ranking alone, larger ν favours less-rated items. Excluded genres drop candidates outright.

The same `Rerank` is used offline (`recstack recommend|evaluate --diversity λ --novelty ν`) and by
the service for users' stored preferences.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from recstack.data.interactions import Interactions
from recstack.errors import ConfigError

# how many candidates a re-ranked list of k items is chosen from
CANDIDATE_FACTOR, MIN_CANDIDATES = 10, 100


@dataclass(frozen=True)
class Rerank:
    """Re-ranking settings. diversity λ ∈ [0, 1]; novelty ν ≥ 0; genres never to show."""

    diversity: float = 0.0
    novelty: float = 0.0
    exclude_genres: tuple[str, ...] = field(default_factory=tuple)
    similarity: str = "genre"  # "genre": cosine of genre vectors; "embedding": of the model's item vectors

    def __post_init__(self) -> None:
        if self.similarity not in ("genre", "embedding"):
            raise ConfigError(f"similarity={self.similarity!r}: must be 'genre' or 'embedding'")
        if not 0.0 <= self.diversity <= 1.0:
            raise ConfigError(f"diversity={self.diversity!r}: must be in [0, 1] (0: relevance only)")
        if not (self.novelty >= 0.0 and np.isfinite(self.novelty)):
            raise ConfigError(f"novelty={self.novelty!r}: must be a finite number ≥ 0")
        object.__setattr__(self, "exclude_genres", tuple(self.exclude_genres))

    @property
    def active(self) -> bool:
        return self.diversity > 0 or self.novelty > 0 or bool(self.exclude_genres)

    def n_candidates(self, k: int) -> int:
        """How many of the model's best items to re-rank for a list of k."""
        return max(MIN_CANDIDATES, CANDIDATE_FACTOR * k) if self.active else k


def genre_matrix(data: Interactions) -> np.ndarray | None:
    """(n_items, n_genres) 0/1 matrix from the `genres` item feature, or None."""
    f = data.item_features
    if f is None or "genres" not in f:
        return None
    names = sorted({g for gs in f["genres"] for g in gs})
    col = {g: j for j, g in enumerate(names)}
    mat = np.zeros((data.n_items, len(names)), np.float32)
    for i, gs in enumerate(f["genres"]):
        for g in gs:
            mat[i, col[g]] = 1.0
    return mat


def item_genres(data: Interactions) -> list[set[str]] | None:
    """Each item's genres as a set, or None when the data has none."""
    f = data.item_features
    if f is None or "genres" not in f:
        return None
    return [set(gs) for gs in f["genres"]]


def unit_rows(vectors: np.ndarray | sp.spmatrix) -> np.ndarray:
    """(n, d) float32 rows scaled to unit length (zero rows stay zero)."""
    v = vectors.toarray() if sp.issparse(vectors) else np.asarray(vectors, np.float32)
    v = v.astype(np.float32, copy=False)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)


def mmr(relevance: np.ndarray, unit: np.ndarray, k: int, diversity: float) -> np.ndarray:
    """Positions (≤ k,) into the candidate list, in MMR order.

    relevance: (n,) in [0, 1]; unit: (n, d) unit vectors of the candidates (cosine = dot).
    Ties go to the earlier candidate (the model's better one).
    """
    n = len(relevance)
    k = min(k, n)
    if k == 0:
        return np.empty(0, np.int64)
    if diversity <= 0:
        return np.argsort(-relevance, kind="stable")[:k]
    chosen = np.empty(k, np.int64)
    max_sim = np.zeros(n, np.float64)
    free = np.ones(n, bool)
    rel = relevance.astype(np.float64)
    for step in range(k):
        gain = np.where(free, (1.0 - diversity) * rel - diversity * max_sim, -np.inf)
        best = int(np.argmax(gain))
        if diversity >= 1.0:  # pure diversity: among the least similar, the most relevant
            ties = np.flatnonzero(free & (max_sim <= max_sim[best] + 1e-12))
            best = int(ties[np.argmax(rel[ties])])
        chosen[step] = best
        free[best] = False
        np.maximum(max_sim, unit @ unit[best], out=max_sim)
    return chosen


def rerank_candidates(candidates: np.ndarray, scores: np.ndarray, k: int, settings: Rerank,
                      item_unit: np.ndarray | None, popularity: np.ndarray | None,
                      item_genres: list[set[str]] | None = None) -> np.ndarray:
    """The k item indices to show, from (n,) candidate indices with their (n,) model scores.

    item_unit: (n_items, d) unit item vectors for similarity (needed when diversity > 0);
    popularity: (n_items,) interaction counts (needed when novelty > 0); item_genres: each item's
    genres (needed when genres are excluded). Candidates with a non-finite score are dropped.
    """
    cand = np.asarray(candidates, np.int64)
    s = np.asarray(scores, np.float64)
    keep = (cand >= 0) & np.isfinite(s)
    if settings.exclude_genres:
        if item_genres is None:
            raise ConfigError("genres can only be excluded when the items have genres")
        banned = set(settings.exclude_genres)
        keep &= np.array([not (item_genres[i] & banned) if i >= 0 else False for i in cand], bool)
    cand, s = cand[keep], s[keep]
    if len(cand) == 0:
        return cand
    span = s.max() - s.min()
    rel = (s - s.min()) / span if span > 0 else np.ones_like(s)
    if settings.novelty > 0:
        if popularity is None:
            raise ConfigError("novelty needs item popularity")
        pop = np.log1p(np.asarray(popularity, np.float64))
        rel = rel - settings.novelty * pop[cand] / max(pop.max(), 1e-12)
    if settings.diversity > 0 and item_unit is None:
        raise ConfigError("diversity needs item vectors (genres or the model's item vectors)")
    unit = item_unit[cand] if item_unit is not None else np.zeros((len(cand), 1), np.float32)
    return cand[mmr(rel, unit, k, settings.diversity)]

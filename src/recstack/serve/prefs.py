"""Users' stored re-ranking preferences in the service: excluded genres, diversity λ, novelty ν.

A user's preferences are one JSON object in the store's `preferences` table, set by
`PUT /users/{id}/preferences`. Each worker keeps every stored preference in memory as a `Rerank`
(`recstack.rerank`), loaded once at start and refreshed user by user when a "prefs" control event
arrives on the event sequence (the store writes one with each PUT) — so a change made through any
worker reaches every worker's next answer, and a user without preferences costs one dict lookup.

Excluded genres become part of the request's allowed-items mask (so fallback lists obey them
too); diversity and novelty re-rank the model's best `n_candidates(k)` items with the same MMR and
popularity penalty as `recstack recommend --diversity --novelty`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recstack.errors import ConfigError
from recstack.rerank import Rerank, rerank_candidates

DEFAULTS: dict[str, Any] = {"exclude_genres": [], "diversity": 0.0, "novelty": 0.0, "similarity": "genre"}


def to_rerank(data: dict[str, Any]) -> Rerank | None:
    """The `Rerank` for a stored preferences object; None when it changes nothing (or is unreadable)."""
    try:
        r = Rerank(float(data.get("diversity", 0.0)), float(data.get("novelty", 0.0)),
                   tuple(str(g).lower() for g in data.get("exclude_genres") or ()),
                   str(data.get("similarity", "genre")))
    except (ConfigError, TypeError, ValueError):
        return None
    return r if r.active else None


def reorder(idx: np.ndarray, vals: np.ndarray | None, k: int, pref: Rerank | None, unit: np.ndarray | None,
            popularity: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The k items to show from ranked candidates `idx` (scores `vals`, None for a popularity list),
    re-ranked by the user's diversity and novelty; excluded genres are already masked out."""
    if pref is None or not (pref.diversity > 0 or pref.novelty > 0):
        return idx[:k], None if vals is None else vals[:k]
    idx = np.asarray(idx, np.int64)
    idx = idx[idx >= 0]
    rel = (np.asarray(popularity, np.float64)[idx] if vals is None
           else np.asarray(vals, np.float64)[: len(idx)])
    settings = Rerank(pref.diversity if unit is not None else 0.0, pref.novelty, (), "genre")
    chosen = rerank_candidates(idx, rel, k, settings, unit, popularity)
    if vals is None:
        return chosen, None
    score_of = dict(zip(idx.tolist(), np.asarray(vals, np.float64).tolist()))
    return chosen, np.array([score_of[i] for i in chosen.tolist()], np.float32)


def wide_k(k: int, pref: Rerank | None) -> int:
    """How many candidates to fetch for a list of k: more only when diversity or novelty re-rank."""
    if pref is None or not (pref.diversity > 0 or pref.novelty > 0):
        return k
    return pref.n_candidates(k)


class PreferenceError(ValueError):
    """A preference the current model cannot honour; `field` names it as in a 422's `loc`."""

    def __init__(self, field: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.field = field


def validate(data: dict[str, Any], genre_names: dict[str, str], has_embeddings: bool) -> dict[str, Any]:
    """Checked preferences to store: genres known (spelled as the data spells them, no repeats),
    a similarity the model can give. `genre_names` maps lower-case genres to their spelling."""
    genres: list[str] = []
    for n, g in enumerate(data.get("exclude_genres") or []):
        name = genre_names.get(str(g).strip().lower())
        if name is None:
            known = ", ".join(sorted(genre_names.values())) or "none (the items have no genres)"
            raise PreferenceError(("exclude_genres", n), f"unknown genre {g!r}; known genres: {known}")
        if name not in genres:
            genres.append(name)
    similarity = data.get("similarity", "genre")
    if similarity == "embedding" and not has_embeddings:
        raise PreferenceError(("similarity",), "'embedding': this model has no item vectors; use 'genre'")
    if similarity == "genre" and not genre_names and data.get("diversity", 0.0) > 0 and not has_embeddings:
        raise PreferenceError(("diversity",), "diversity needs item genres or item vectors; this model has neither")
    return {"exclude_genres": genres, "diversity": float(data.get("diversity", 0.0)),
            "novelty": float(data.get("novelty", 0.0)), "similarity": similarity}

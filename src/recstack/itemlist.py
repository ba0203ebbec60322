"""`ItemList`: the one typed answer of recommending — ids, scores, ranks and what the scores are.

Every answer that leaves `recommend.Recommender` is an `ItemList`; the CLI, the web page and the
HTTP service render the same object. A score carries its **kind**, so that clipping and display
depend on what a number means (LensKit's `ItemList` is the model for this):

| kind          | what the number is                                   | shown as           |
|---------------|------------------------------------------------------|--------------------|
| `rating`      | a rating estimate on the data's rating scale         | clipped to `scale` |
| `ranking`     | a score that only orders items (EASE, ALS, BPR, ...)  | as is              |
| `similarity`  | a similarity between two items (e.g. cosine)         | as is              |
| `probability` | a probability in [0, 1]                              | clipped to [0, 1]  |

`scores` always hold the raw numbers the ranking used; `display_scores()` is what a person sees.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

ScoreKind = Literal["rating", "ranking", "similarity", "probability"]
SCORE_KINDS: tuple[str, ...] = ("rating", "ranking", "similarity", "probability")

# the column heading a page or table gives each kind of score
KIND_LABELS: dict[str, str] = {
    "rating": "predicted rating",
    "ranking": "score",
    "similarity": "similarity",
    "probability": "probability",
}


@dataclass(frozen=True)
class ItemList:
    """A ranked list of items in external ids, best first.

    ids: (n,) str external item ids. scores: (n,) float32 raw scores the ranking used (NaN where
    an item carries no score, e.g. a popularity fallback). ranks: (n,) int 1-based. kind: what
    the scores are (see the module table). scale: (min, max) of the rating scale, for `rating`
    scores. meta: one mapping per item (label, title, year, genres, ...). user / item: whom or
    what the list is for. fallback: None for a personalised list, else the name of the ranking
    shown instead ("popular", ...) with `fallback_reason` saying why.
    """

    ids: np.ndarray
    scores: np.ndarray
    kind: ScoreKind
    ranks: np.ndarray | None = None
    meta: tuple[Mapping[str, Any], ...] = ()
    scale: tuple[float, float] | None = None
    user: str | None = None
    item: Mapping[str, Any] | None = None
    fallback: str | None = None
    fallback_reason: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids).astype(str).reshape(-1)
        scores = np.asarray(self.scores, np.float32).reshape(-1)
        if len(scores) != len(ids):
            raise ValueError(f"ItemList: {len(ids)} ids but {len(scores)} scores")
        if self.kind not in SCORE_KINDS:
            raise ValueError(f"ItemList: unknown score kind {self.kind!r}; known: {', '.join(SCORE_KINDS)}")
        ranks = np.arange(1, len(ids) + 1) if self.ranks is None else np.asarray(self.ranks).reshape(-1)
        if len(ranks) != len(ids):
            raise ValueError(f"ItemList: {len(ids)} ids but {len(ranks)} ranks")
        if self.meta and len(self.meta) != len(ids):
            raise ValueError(f"ItemList: {len(ids)} ids but {len(self.meta)} meta rows")
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "ranks", ranks.astype(np.int64))
        object.__setattr__(self, "meta", tuple(self.meta))

    # ---- sequence -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows())

    @property
    def label(self) -> str:
        """The heading for this list's scores ("predicted rating", "similarity", ...)."""
        return KIND_LABELS[self.kind]

    # ---- display --------------------------------------------------------------------------
    def display_scores(self) -> np.ndarray:
        """(n,) float32 scores as a person should see them: ratings clipped to the scale,
        probabilities to [0, 1], rankings and similarities unchanged. NaN stays NaN."""
        s = self.scores.copy()
        if self.kind == "rating" and self.scale is not None:
            s = np.clip(s, self.scale[0], self.scale[1])
        elif self.kind == "probability":
            s = np.clip(s, 0.0, 1.0)
        return s

    def rows(self, digits: int = 4) -> list[dict[str, Any]]:
        """One dict per item — item id, metadata, rank, display score (None when absent)."""
        shown = self.display_scores().tolist()  # Python floats: no per-item NumPy scalars
        ranks = self.ranks.tolist()
        meta = self.meta
        out = []
        for n, item_id in enumerate(self.ids.tolist()):
            row: dict[str, Any] = {"item": item_id}
            if meta:
                row.update(meta[n])
            if "label" not in row:
                row["label"] = item_id
            row["rank"] = ranks[n]
            value = shown[n]
            row["score"] = None if value != value else round(value, digits)  # NaN: no score
            out.append(row)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON form shared by the CLI (`--json`) and the service."""
        out: dict[str, Any] = {}
        if self.item is not None:
            out["item"] = dict(self.item)
        else:
            out["user"] = self.user
        out["score_kind"] = self.kind
        out["fallback"] = self.fallback
        if self.fallback_reason:
            out["fallback_reason"] = self.fallback_reason
        out.update(self.extra)
        out["items"] = self.rows()
        return out

    def with_extra(self, **extra: Any) -> ItemList:
        """A copy with more top-level fields in `to_dict` (e.g. a model version)."""
        from dataclasses import replace

        return replace(self, extra={**self.extra, **extra})

    @classmethod
    def empty(cls, kind: ScoreKind = "ranking", **kw: Any) -> ItemList:
        return cls(np.empty(0, str), np.empty(0, np.float32), kind, **kw)

    @classmethod
    def from_rows(cls, rows: Sequence[Mapping[str, Any]], kind: ScoreKind, **kw: Any) -> ItemList:
        """Build from dicts holding `item` and `score` (and any metadata)."""
        ids = [str(r["item"]) for r in rows]
        scores = [np.nan if r.get("score") is None else float(r["score"]) for r in rows]
        meta = tuple({k: v for k, v in r.items() if k not in ("item", "score", "rank")} for r in rows)
        return cls(np.asarray(ids, str), np.asarray(scores, np.float32), kind, meta=meta, **kw)

"""Composite models built from any registered models: `blend` (weighted sum) and `chain` (fallback).

`blend` is Burke's "weighted" hybrid (UMUAI 2002): each part's scores are put on one scale per
user — standardised over the items that user has not interacted with, z = (s − mean_u) / sd_u,
as `ease-als` does — and summed with the configured weights:

    score_ui = Σ_k weight_k · z_k(u, i)

`chain` is Burke's "switching" hybrid / Gorse's fallback chain: part 1 scores a user when it
can (a finite row, and the user has at least the part's `min_history` training interactions),
else part 2, …, else `popular`, which is always last. Both are configured by JSON:

    {"parts": [{"model": "ease", "weight": 1.0, "config": {"lambda": 900}},
               {"model": "als",  "weight": 2.0, "config": {"mode": "implicit"}}]}

(`chain` parts take `min_history` instead of `weight`). A saved composite stores every part's
state under the prefix `p<k>.`, so it loads like any model, with no pickle. Shapes: scores
(len(users), n_items).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from recstack.data.interactions import Interactions
from recstack.errors import ConfigError, RecstackError
from recstack.models.base import Model, make_model
from recstack.models.config import Config, require
from recstack.models.ease_als import standardize_unseen


def _parts(raw: Any, kind: str) -> list[dict[str, Any]]:
    """Validate and complete the `parts` list: each part's config is built (and checked) by its model."""
    if isinstance(raw, str):
        import json

        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"parameter parts: invalid JSON ({exc.msg})") from None
    require(isinstance(raw, (list, tuple)) and len(raw) > 0, "parts", raw, "must be a non-empty list of parts")
    out = []
    for k, part in enumerate(raw):
        require(isinstance(part, Mapping) and "model" in part, f"parts[{k}]", part, "must be an object with 'model'")
        extra = set(part) - {"model", "config", "weight", "min_history"}
        require(not extra, f"parts[{k}]", sorted(extra), "unknown key(s); known: model, config, weight, min_history")
        model = make_model(str(part["model"]), dict(part.get("config") or {}))
        entry: dict[str, Any] = {"model": str(part["model"]), "config": model.config.to_dict()}
        if kind == "blend":
            w = part.get("weight", 1.0)
            require(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0, f"parts[{k}].weight", w,
                    "must be a number ≥ 0")
            entry["weight"] = float(w)
        else:
            h = part.get("min_history", 1)
            require(isinstance(h, int) and not isinstance(h, bool) and h >= 0, f"parts[{k}].min_history", h,
                    "must be an integer ≥ 0")
            entry["min_history"] = h
        out.append(entry)
    return out


@dataclass(frozen=True)
class BlendConfig(Config):
    """`parts`: list of {"model", "weight", "config"}; `standardize`: z-score each part per user
    over unseen items before weighting (false: raw scores)."""

    parts: list = field(default_factory=lambda: [{"model": "popular"}])
    standardize: bool = True

    def check(self) -> None:
        object.__setattr__(self, "parts", _parts(self.parts, "blend"))


@dataclass(frozen=True)
class ChainConfig(Config):
    """`parts`: list of {"model", "min_history", "config"} tried in order; `popular` ends every chain."""

    parts: list = field(default_factory=lambda: [{"model": "popular"}])

    def check(self) -> None:
        object.__setattr__(self, "parts", _parts(self.parts, "chain"))


def _new_user_scores(part: Model, items: np.ndarray, ratings: np.ndarray, user: int | None) -> np.ndarray | None:
    fn = getattr(part, "score_new_user", None)
    if fn is None:
        return None
    if "user" in inspect.signature(fn).parameters:
        return np.asarray(fn(items, ratings, user=user), np.float64)
    return np.asarray(fn(items, ratings), np.float64)


class _Composite(Model):
    """Shared fitting and persistence: parts fitted on the same data, state under `p<k>.`."""

    explicit = False

    def _make_parts(self) -> list[Model]:
        return [make_model(p["model"], p["config"]) for p in self.config.parts]

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        self._models = [m.fit(train, valid) for m in self._make_parts()]
        seen = train.csr.copy()
        seen.sort_indices()
        self.seen_indptr_, self.seen_indices_ = seen.indptr.astype(np.int64), seen.indices.astype(np.int32)

    def _seen(self, users: np.ndarray) -> sp.csr_matrix:
        m = sp.csr_matrix((np.ones(len(self.seen_indices_), np.float32), self.seen_indices_, self.seen_indptr_),
                          shape=(self.n_users_, self.n_items_))
        return m[users]

    def similar_items(self, item: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The first part's notion of similar items (the first part that has one)."""
        for m in self._models:
            if hasattr(m, "similar_items"):
                return m.similar_items(item, k)
        raise RecstackError(f"no part of this {self.name} can find similar items")

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays, scalars = super().get_state()
        for k, part in enumerate(self._models):
            a, s = part.get_state()
            arrays.update({f"p{k}.{key}": v for key, v in a.items()})
            scalars.update({f"p{k}.{key}": v for key, v in s.items()})
        return arrays, scalars

    def set_state(self, arrays: Mapping[str, np.ndarray], scalars: Mapping[str, Any]) -> None:
        def split(d: Mapping[str, Any], k: int | None) -> dict[str, Any]:
            if k is None:
                return {key: v for key, v in d.items() if "." not in key}
            pre = f"p{k}."
            return {key[len(pre):]: v for key, v in d.items() if key.startswith(pre)}

        super().set_state(split(arrays, None), split(scalars, None))
        self._models = self._make_parts()
        for k, part in enumerate(self._models):
            part.set_state(split(arrays, k), split(scalars, k))


class Blend(_Composite):
    """score = Σ_k weight_k · z_k, z_k the k-th part's scores standardised per user over unseen items.

    State: each part's under `p<k>.`; the training matrix's pattern `seen_indptr_`, `seen_indices_`.
    """

    name = "blend"
    config_class = BlendConfig

    def _combine(self, rows: list[np.ndarray], seen: sp.csr_matrix) -> np.ndarray:
        total = np.zeros(rows[0].shape, np.float64)
        for part, s in zip(self.config.parts, rows):
            if part["weight"] == 0:
                continue
            z = standardize_unseen(s, seen) if self.config.standardize else np.asarray(s, np.float64)
            total += part["weight"] * z
        return total

    def _score(self, users: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        seen = self._seen(users)
        rows = [m.score(users) for m in self._models]
        total = self._combine(rows, seen)
        return (total if items is None else total[:, items]).astype(np.float32)

    def score_new_user(self, items: np.ndarray, ratings: np.ndarray, user: int | None = None) -> np.ndarray:
        """(n_items,) blend of each part's fold-in (a part without one must be able to score `user`)."""
        items = np.asarray(items, np.int64)
        seen = sp.csr_matrix((np.ones(len(items)), (np.zeros(len(items), np.int64), items)), shape=(1, self.n_items_))
        rows = []
        for part, m in zip(self.config.parts, self._models):
            s = _new_user_scores(m, items, ratings, user)
            if s is None and hasattr(m, "item_scores_"):  # popularity: the same row for anyone
                s = np.asarray(m.item_scores_, np.float64)
            if s is None:
                if user is None:
                    raise RecstackError(f"blend part {part['model']!r} cannot fold in a new user")
                s = m.score([user])[0].astype(np.float64)
            rows.append(s[None, :])
        return self._combine(rows, seen)[0].astype(np.float32)


class Chain(_Composite):
    """Per user, the first part that can score them (finite row, ≥ its `min_history` training
    interactions), else `popular`. State: each part's under `p<k>.` (popular last), the training
    matrix's pattern `seen_indptr_`, `seen_indices_`; `source_` is not stored — see `sources`."""

    name = "chain"
    config_class = ChainConfig

    def _make_parts(self) -> list[Model]:
        return [*super()._make_parts(), make_model("popular")]

    def _history(self) -> list[int]:
        return [p["min_history"] for p in self.config.parts] + [0]

    def sources(self, users: np.ndarray) -> np.ndarray:
        """(len(users),) index of the part that scores each user (len(parts) = popular)."""
        users = np.asarray(users, np.int64)
        return self._route(users)[1]

    def _route(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        counts = np.diff(self.seen_indptr_)[users]
        out = np.full((len(users), self.n_items_), np.nan)
        source = np.full(len(users), -1)
        for k, (m, need) in enumerate(zip(self._models, self._history())):
            todo = np.flatnonzero((source < 0) & (counts >= need))
            if not len(todo):
                continue
            s = m.score(users[todo]).astype(np.float64)
            ok = np.isfinite(s).all(axis=1)
            out[todo[ok]] = s[ok]
            source[todo[ok]] = k
        return out, source

    def _score(self, users: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        out, _ = self._route(users)
        return (out if items is None else out[:, items]).astype(np.float32)

    def score_new_user(self, items: np.ndarray, ratings: np.ndarray, user: int | None = None) -> np.ndarray:
        """(n_items,) fold-in by the first part that has one and whose `min_history` the given
        ratings meet; popular otherwise."""
        items = np.asarray(items, np.int64)
        for m, need in zip(self._models, self._history()):
            if len(np.unique(items)) >= need:
                s = _new_user_scores(m, items, ratings, user)
                if s is not None and np.isfinite(s).all():
                    return s.astype(np.float32)
        return self._models[-1].item_scores_.astype(np.float32)

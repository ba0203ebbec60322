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
from recstack.models.base import Explanation, Model, has_ability, make_model, require_ability
from recstack.models.config import Config, require
from recstack.models.ease_als import standardize_unseen, unseen_moments


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

    parts: list = field(default_factory=lambda: [{"model": "popular"}])  # blended models: {model, weight, config}
    standardize: bool = True  # z-score each part per user over unseen items (false: raw scores)

    def check(self) -> None:
        object.__setattr__(self, "parts", _parts(self.parts, "blend"))


@dataclass(frozen=True)
class ChainConfig(Config):
    """`parts`: list of {"model", "min_history", "config"} tried in order; `popular` ends every chain."""

    parts: list = field(  # models tried in order: {model, min_history, config}
        default_factory=lambda: [{"model": "popular"}])

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


    # ---- explanations ------------------------------------------------------------------------
    @property
    def has_explains(self) -> bool:
        """Explains when every part with a non-zero weight does."""
        models = getattr(self, "_models", None) or self._make_parts()
        return all(has_ability(m, "explains") for p, m in zip(self.config.parts, models) if p["weight"] != 0)

    def explain(self, user: int, item: int, history: Any = None) -> Explanation:
        """The blend's score as the weighted, standardised sum of its parts' explanations.

        With s_k = Σ part k's contributions, score = Σ_k w_k (s_k − μ_k) / σ_k (μ_k, σ_k: the
        user's mean and sd of part k's scores over unseen items): every contribution c of part k
        becomes w_k c / σ_k — history items summed over the parts — and −Σ_k w_k μ_k / σ_k is one
        bias part, so the parts sum to the blend's score. Exact when every part is exact; a part
        whose explanation does not sum to its own score (a clipped estimate) adds the gap as a
        `rest` part."""
        require_ability(self, "explains")
        users = np.array([user], np.int64)
        seen = self._seen(users)
        by_item: dict[int, float] = {}
        others: list[dict[str, Any]] = []
        offset, exact, methods = 0.0, True, []
        for k, (part, m) in enumerate(zip(self.config.parts, self._models)):
            w = part["weight"]
            if w == 0:
                continue
            row = m.score(users).astype(np.float64)
            scale = w
            if self.config.standardize:
                mean, sd = unseen_moments(row, seen)
                scale = w / float(sd[0, 0])
                offset -= scale * float(mean[0, 0])
            e = m.explain(user, item, history)
            exact = exact and e.exact
            if e.method:
                methods.append(f"{part['model']}: {e.method}")
            name = f"{part['model']} (part {k + 1})"
            for p in e.parts:
                c = scale * p["contribution"]
                if p["kind"] == "item":
                    by_item[int(p["key"])] = by_item.get(int(p["key"]), 0.0) + c
                else:
                    others.append({"kind": p["kind"], "key": f"{name}: {p['key']}", "contribution": c})
            gap = float(row[0, item]) - float(e.score)
            if abs(gap) > 1e-6 * max(1.0, abs(float(row[0, item]))):
                others.append({"kind": "rest", "key": f"{name}: beyond its explanation", "contribution": scale * gap})
        parts: list[dict[str, Any]] = []
        if self.config.standardize:
            parts.append({"kind": "bias", "key": "blend: the parts' per-user means", "contribution": offset})
        items = sorted(by_item.items(), key=lambda kv: -abs(kv[1]))
        parts += [{"kind": "item", "key": i, "contribution": c} for i, c in items if c != 0]
        parts += others
        return Explanation(float(sum(p["contribution"] for p in parts)), parts, exact, "; ".join(methods))


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

    # ---- explanations ------------------------------------------------------------------------
    @property
    def has_explains(self) -> bool:
        """Explains when every configured part does (the closing `popular` explains as one bias part)."""
        models = getattr(self, "_models", None) or self._make_parts()
        return all(has_ability(m, "explains") for m in models[:-1])

    def explain(self, user: int, item: int, history: Any = None) -> Explanation:
        """The explanation of the part that scores `user` (see `sources`); when that is the
        closing `popular`, one bias part: the item's popularity score."""
        require_ability(self, "explains")
        k = int(self.sources(np.array([user]))[0])
        if k < 0:
            raise RecstackError(f"no part of this chain can score user index {user}")
        m = self._models[k]
        if k == len(self._models) - 1 and not has_ability(m, "explains"):
            score = float(m.score([user], [item])[0, 0])
            return Explanation(score, [{"kind": "bias", "key": "popularity (the chain's fallback)",
                                        "contribution": score}])
        return m.explain(user, item, history)

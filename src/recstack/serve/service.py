"""Recommendation logic of the service: one loaded model version, its ANN index, and the users'
online state kept in step with the event store (Gorse's "logics" layer; no HTTP here).

Every worker process keeps `applied_seq`, the highest event sequence number it has applied.
Before it answers, it reads the store's highest sequence number (one indexed query) and applies
the newer events in order — so a rating stored through any worker, or any host sharing one
PostgreSQL, is reflected by every worker's next answer. Applying means: models with
`partial_fit` learn the ratings through `Recommender.update`; otherwise the user's events are kept
and the user is folded in again from their training ratings plus their stored ratings
(`score_new_user`) at their next request. Clicks and views count as seen items. Control events
("deleted" for a user, "item" for an item's metadata, "prefs" for a user's preferences, see
prefs.py) travel on the same sequence.
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recstack.errors import RecstackError, UnknownIdError
from recstack.itemlist import ItemList
from recstack.models.base import has_ability
from recstack.recommend import Recommender, popular_items, top_k_from_scores
from recstack.rerank import Rerank, unit_rows
from recstack.serve import prefs as P
from recstack.serve.store import EVENT_TYPES, Event, Store

log = logging.getLogger("recstack.serve")

SEEN_TYPES = ("rating", "click", "view")
EXACT_BELOW = int(os.environ.get("RECSTACK_EXACT_BELOW", "4096"))  # smaller catalogues: exact scoring is faster
_NONE = np.empty(0, np.int64)  # no item indices (read-only, shared)
_NONE.flags.writeable = False
EVENTS_FILE = "events.json"  # written into a model folder trained on stored events: {"max_seq": N}


@dataclass
class UserView:
    """What one request needs about a user: seen item indices and, when folded in, their scores."""

    seen: np.ndarray  # (n_seen,) int64 item indices
    scores: np.ndarray | None = None  # (n_items,) scores from a fold-in; None: use the model
    known: bool = False  # the model has the user (index `index`)
    index: int = -1
    n_events: int = 0


@dataclass(frozen=True)
class RecRequest:
    """What a recommendation request asks for (the GET route's parameters, ids already split)."""

    user: str
    k: int = 10
    exclude_seen: bool = True
    exclude: tuple[str, ...] = ()
    genres: tuple[str, ...] = ()
    year_from: int | None = None
    year_to: int | None = None


@dataclass
class ModelState:
    """One loaded model version: recommender, index, filter masks, online state. Immutable once
    published, except for the online part, which only the event loop touches."""

    version: int | None
    model_dir: Path
    rec: Recommender
    index: Any = None  # ItemIndex for models with item embeddings
    trained_seq: int = 0
    applied_seq: int = 0
    events: dict[str, list[Event]] = field(default_factory=lambda: defaultdict(list))
    views: dict[str, UserView] = field(default_factory=dict)
    item_meta: dict[str, dict[str, Any]] = field(default_factory=dict)  # PUT /items overrides
    genre_masks: dict[str, np.ndarray] = field(default_factory=dict)
    meta_rows: list[dict[str, Any]] = field(default_factory=list)
    years: np.ndarray | None = None
    updates_model: bool = False
    items_loaded: bool = False
    fold_in_users: set[str] = field(default_factory=set)  # users whose ratings partial_fit refused
    forgotten: set[str] = field(default_factory=set)  # users deleted since the model was trained
    base_users: int = 0  # users in the saved model's own training data
    store_token: Any = None  # the store's change token when its events were last all applied
    prefs: dict[str, Rerank] = field(default_factory=dict)  # users' stored preferences (see prefs.py)
    prefs_loaded: bool = False
    prefs_dirty: set[str] = field(default_factory=set)  # users whose preferences changed ("prefs" events)
    genre_names: dict[str, str] = field(default_factory=dict)  # lower-case genre → as the data spells it
    unit: dict[str, np.ndarray | None] = field(default_factory=dict)  # unit item vectors by similarity kind

    # ---- loading -------------------------------------------------------------------------
    @classmethod
    def load(cls, model_dir: str | Path, version: int | None, use_index: bool = True) -> ModelState:
        """Load a saved model folder, build its ANN index when it has item embeddings."""
        from recstack.persist import load_model

        folder = Path(model_dir)
        saved = load_model(folder)
        rec = Recommender(saved)
        trained_seq = 0
        if (folder / EVENTS_FILE).exists():
            trained_seq = int(json.loads((folder / EVENTS_FILE).read_text()).get("max_seq", 0))
        index = None
        if use_index and has_ability(rec.model, "item_embeddings"):
            from recstack.serve.index import ItemIndex

            index = ItemIndex(rec.model.item_vectors(), exact_below=EXACT_BELOW)
        state = cls(version, folder, rec, index, trained_seq, trained_seq, base_users=rec.train.n_users)
        state.updates_model = has_ability(rec.model, "partial_fit") and callable(getattr(rec, "update", None))
        state._build_masks()
        return state

    def warm_up(self) -> None:
        """Answer once before serving: the scoring kernels compile or load from numba's cache now,
        not in the first request (and before `_settle_heap` freezes what they allocate)."""
        train = self.rec.train
        if train.n_users:
            user = str(train.user_ids[0])
            self.for_user(user, 10)
            self.views.pop(user, None)
        self.popular(10)

    def _build_rows(self) -> None:
        """Display metadata for every item, computed once (the same fields as `Recommender.item_meta`)."""
        f = self.rec.item_features
        n = self.rec.n_items
        labels = self.rec.labels
        cols: dict[str, list] = {}
        if f is not None:
            if "title" in f:
                cols["title"] = [str(t) for t in f["title"].tolist()]
            if "year" in f:
                cols["year"] = [None if pd.isna(y) else int(y) for y in f["year"].tolist()]
            if "genres" in f:
                cols["genres"] = [list(g) if isinstance(g, (list, tuple, np.ndarray)) else []
                                  for g in f["genres"].tolist()]
        rows = []
        for i in range(n):
            row: dict[str, Any] = {"label": labels[i]}
            for key, values in cols.items():
                row[key] = values[i]
            item_id = str(self.rec.item_ids[i])
            if item_id in self.item_meta:
                row.update(_display(self.item_meta[item_id]))
            rows.append(row)
        self.meta_rows = rows

    def _build_masks(self) -> None:
        self._build_rows()
        f = self.rec.item_features
        n = self.rec.n_items
        genres: dict[str, np.ndarray] = {}
        years = np.full(n, np.nan)
        self.genre_names = {}
        if f is not None and "genres" in f:
            for i, gs in enumerate(f["genres"].tolist()):
                for g in gs if isinstance(gs, list) else []:
                    genres.setdefault(str(g).lower(), np.zeros(n, bool))[i] = True
                    self.genre_names.setdefault(str(g).lower(), str(g))
        if f is not None and "year" in f:
            years = np.array(pd.to_numeric(f["year"], errors="coerce").astype(float), dtype=np.float64)
        for item_id, data in self.item_meta.items():
            i = self.rec.item_index.get(item_id)
            if i is None:
                continue
            if "genres" in data:
                for mask in genres.values():
                    mask[i] = False
                for g in data.get("genres") or []:
                    genres.setdefault(str(g).lower(), np.zeros(n, bool))[i] = True
                    self.genre_names.setdefault(str(g).lower(), str(g))
            if "year" in data:
                years[i] = np.nan if data["year"] is None else float(data["year"])
        self.genre_masks, self.years = genres, years
        self.unit = {}

    # ---- events --------------------------------------------------------------------------
    def sync(self, store: Store) -> int:
        """Apply stored events newer than `applied_seq`, in order; returns how many were applied."""
        token = store.change_token()  # read first: a commit after this changes the next token
        if token == self.store_token and self.items_loaded and self.prefs_loaded:
            return 0  # nothing committed since the last look (the cheap check on every request)
        if not self.items_loaded:
            self.item_meta = store.items()
            self.items_loaded = True
            self._build_masks()
        if not self.prefs_loaded:
            self.prefs = {u: r for u, d in store.preferences().items() if (r := P.to_rerank(d)) is not None}
            self.prefs_loaded = True
        if store.max_seq() <= self.applied_seq:
            self.store_token = token
            return 0
        total = 0
        while True:
            batch = store.events_after(self.applied_seq, 50_000)
            if not batch:
                self.store_token = token
                return total
            if self.apply(batch):
                self.item_meta = store.items()
                self._build_masks()
            if self.prefs_dirty:
                self.reload_prefs(store)
            total += len(batch)

    def reload_prefs(self, store: Store) -> None:
        """Read the stored preferences of the users whose "prefs" events were applied."""
        users = sorted(self.prefs_dirty)
        found = store.preferences(users)
        for user in users:
            r = P.to_rerank(found[user]) if user in found else None
            if r is None:
                self.prefs.pop(user, None)
            else:
                self.prefs[user] = r
        self.prefs_dirty.clear()

    def apply(self, events: list[Event]) -> bool:
        """Apply events (in sequence order) to the online state."""
        ratings: list[tuple[str, str, float, int]] = []
        items_changed = False
        for e in events:
            if e.type == "deleted":
                self.events.pop(e.user, None)
                self.forgotten.add(e.user)
                self.prefs.pop(e.user, None)
            elif e.type == "prefs":
                self.prefs_dirty.add(e.user)
            elif e.type == "item":
                items_changed = True
            elif e.type in EVENT_TYPES:
                self.events[e.user].append(e)
                self.forgotten.discard(e.user)
                if e.type == "rating" and e.value is not None:
                    ratings.append((e.user, e.item, float(e.value), int(e.timestamp or 0)))
            self.views.pop(e.user, None)
            self.applied_seq = max(self.applied_seq, e.seq)
        if ratings and self.updates_model:
            n_items = self.rec.n_items
            try:  # partial_fit: every worker applies the same rows in the same order
                self.rec.update(ratings)
            except RecstackError:  # e.g. a rating off the model's scale (refused before anything changed)
                self._update_per_user(ratings)
            self.unit.pop("embedding", None)  # the item vectors moved
            if self.rec.n_items != n_items:  # new items: rows, masks and the index grow
                self._build_masks()
                if self.index is not None:
                    from recstack.serve.index import ItemIndex

                    self.index = ItemIndex(self.rec.model.item_vectors(), exact_below=EXACT_BELOW)
        return items_changed

    def _update_per_user(self, ratings: list[tuple[str, str, float, int]]) -> None:
        """Apply a refused batch user by user, so one user's bad ratings do not hold back the
        others'; users whose own ratings are refused are folded in from their stored events."""
        by_user: dict[str, list[tuple[str, str, float, int]]] = {}
        for row in ratings:
            by_user.setdefault(row[0], []).append(row)
        for user, rows in by_user.items():
            try:
                self.rec.update(rows)
            except RecstackError as exc:
                log.warning("partial_fit refused %d stored ratings of user %r (%s); folding the user in",
                            len(rows), user, exc)
                self.fold_in_users.add(user)

    def user_view(self, user: str) -> UserView:
        """The user's seen items and (for a fold-in) scores, rebuilt when their events changed."""
        view = self.views.get(user)
        if view is not None:
            return view
        rec = self.rec  # its non-merging views: reading `rec.train` would merge the update log
        u = rec.user_index.get(user, -1)
        if user in self.forgotten and u >= self.base_users:
            u = -1  # learned online, then deleted: the model's state for them is not used
        model = rec.model
        known = 0 <= u < getattr(model, "n_users_", rec.n_users)
        if u >= 0:
            items, values = rec.user_rows(u)
            rated = dict(zip(items.tolist(), values.tolist()))
            seen = set(rated)
        else:
            rated, seen = {}, set()
        new_ratings = 0
        events = self.events.get(user, [])
        item_index = rec.item_index
        for e in events:
            i = item_index.get(e.item)
            if i is None:
                continue
            if e.type in SEEN_TYPES:
                seen.add(i)
            if e.type == "rating" and e.value is not None:
                rated[i] = float(e.value)
                new_ratings += 1
        scores = None
        fold = not self.updates_model or user in self.fold_in_users
        if new_ratings and fold and has_ability(model, "folds_in_users"):
            items = np.fromiter(rated, np.int64, len(rated))
            values = np.fromiter(rated.values(), np.float64, len(rated))
            scores = np.asarray(model.score_new_user(items, values), np.float64)
        view = UserView(np.fromiter(seen, np.int64, len(seen)), scores, bool(known), u, len(events))
        if len(self.views) > 100_000:
            self.views.clear()
        self.views[user] = view
        return view

    # ---- answers -------------------------------------------------------------------------
    def allowed_mask(self, view: UserView | None, exclude_seen: bool, exclude: list[str],
                     genres: list[str], year_from: int | None, year_to: int | None) -> np.ndarray | None:
        """(n_items,) bool mask of items a request may get, or None when nothing is filtered."""
        n = self.rec.n_items
        mask = None

        def start() -> np.ndarray:
            return np.ones(n, bool) if mask is None else mask

        if genres:
            g = np.zeros(n, bool)
            for name in genres:
                m = self.genre_masks.get(name.lower())
                if m is not None:
                    g |= m
            mask = start() & g
        if (year_from is not None or year_to is not None) and self.years is not None:
            y = self.years
            ok = ~np.isnan(y)
            if year_from is not None:
                ok &= np.nan_to_num(y, nan=-1e9) >= year_from
            if year_to is not None:
                ok &= np.nan_to_num(y, nan=1e9) <= year_to
            mask = start() & ok
        drop = self._dropped(view, exclude_seen, exclude)
        if len(drop):
            mask = start().copy() if mask is None else mask
            mask[drop] = False
        return mask

    def for_user(self, user: str, k: int, exclude_seen: bool = True, exclude: list[str] | None = None,
                 genres: list[str] | None = None, year_from: int | None = None,
                 year_to: int | None = None) -> ItemList:
        """Top-k for a user with filters; a defined fallback (popular) for a user the model cannot score."""
        view = self.user_view(user)
        model = self.rec.model
        kind = model.score_kind
        pref = self.prefs.get(user)  # None for users without stored preferences: nothing more to do
        wide = P.wide_k(k, pref)
        exact = self.index is None or self.index.exact_only
        if view.scores is not None or (view.known and exact):
            # exact scoring (the hot path): disallowed items get -inf in a copy of the scores
            raw = view.scores if view.scores is not None else model.score(np.array([view.index]))[0]
            s = np.array(raw, np.float64)
            if genres or year_from is not None or year_to is not None or (pref is not None and pref.exclude_genres):
                allowed = self.allowed_mask(None, False, [], genres or [], year_from, year_to)
                if pref is not None:
                    allowed = self.without_genres(allowed, pref.exclude_genres)
                if allowed is not None:
                    s[~allowed] = -np.inf
            drop = self._dropped(view, exclude_seen, exclude)
            if len(drop):
                s[drop] = -np.inf
            idx, vals = top_k_from_scores(s[None, :], wide)
            return self._list(*self._personal(idx[0], vals[0], k, pref), kind, user=user)
        allowed = self.allowed_mask(view, exclude_seen, exclude or [], genres or [], year_from, year_to)
        if pref is not None:
            allowed = self.without_genres(allowed, pref.exclude_genres)
        if view.known:
            qv = model.user_vectors(np.array([view.index]))[0]
            idx, _ = self.index.search(qv, wide, allowed)
            vals = model.score(np.array([view.index]), idx)[0] if len(idx) else np.empty(0, np.float32)
            return self._list(*self._personal(idx, vals, k, pref), kind, user=user)
        if view.n_events:
            reason = (f"user {user!r} has events but model {model.name!r} cannot fold in users: "
                      "the most popular items")
        else:
            reason = f"unknown user {user!r} (no training data, no stored ratings): the most popular items"
        return self.popular(k, allowed, pref, user=user, fallback="popular", fallback_reason=reason)

    def _dropped(self, view: UserView | None, exclude_seen: bool, exclude: list[str] | None) -> np.ndarray:
        """Item indices a request excludes: the user's seen items (when asked) and `exclude` ids."""
        seen = view.seen if exclude_seen and view is not None else _NONE
        if not exclude:
            return seen
        index = self.rec.item_index
        extra = np.fromiter((index[i] for i in exclude if i in index), np.int64)
        return np.concatenate([seen, extra]) if len(seen) else extra

    def popular(self, k: int, allowed: np.ndarray | None = None, pref: Rerank | None = None, **kw: Any) -> ItemList:
        """The k most popular allowed items, by training interactions (re-ranked by `pref`)."""
        excluded = None if allowed is None else np.flatnonzero(~allowed)
        idx = popular_items(self.rec.item_popularity, P.wide_k(k, pref), excluded)
        idx, _ = self._personal(idx, None, k, pref)
        return self._list(idx, None, "ranking", **kw)

    # ---- preferences ---------------------------------------------------------------------
    def without_genres(self, allowed: np.ndarray | None, genres: tuple[str, ...]) -> np.ndarray | None:
        """`allowed` (None: all) less the items of any of `genres` (lower-case names)."""
        masks = [self.genre_masks[g] for g in genres if g in self.genre_masks]
        if not masks:
            return allowed
        out = np.ones(self.rec.n_items, bool) if allowed is None else allowed.copy()
        for m in masks:
            out &= ~m
        return out

    def _personal(self, idx: np.ndarray, vals: np.ndarray | None, k: int,
                  pref: Rerank | None) -> tuple[np.ndarray, np.ndarray | None]:
        if pref is None or not (pref.diversity > 0 or pref.novelty > 0):
            return idx[:k], None if vals is None else vals[:k]
        unit = self.unit_vectors(pref.similarity) if pref.diversity > 0 else None
        return P.reorder(idx, vals, k, pref, unit, self.rec.item_popularity)

    def unit_vectors(self, similarity: str) -> np.ndarray | None:
        """Unit item vectors for diversity: of genres, or of the model's item vectors (falling back
        to the other kind when this model or catalogue lacks one); None when neither exists."""
        if similarity not in self.unit:
            if similarity == "embedding" and has_ability(self.rec.model, "item_embeddings"):
                self.unit[similarity] = unit_rows(self.rec.model.item_vectors())
            elif self.genre_masks:
                names = sorted(self.genre_masks)
                self.unit[similarity] = unit_rows(np.stack([self.genre_masks[g] for g in names], 1)
                                                  .astype(np.float32))
            elif has_ability(self.rec.model, "item_embeddings"):
                self.unit[similarity] = unit_rows(self.rec.model.item_vectors())
            else:
                self.unit[similarity] = None
        return self.unit[similarity]

    def explain(self, user: str, item: str, top: int | None = 10) -> dict[str, Any]:
        """`Recommender.explain` for a user the model has (trained or learned online); the
        `because` field names the (at most two) rated items that raise the score most."""
        if not has_ability(self.rec.model, "explains"):
            raise RecstackError(f"model {self.rec.model.name!r} cannot explain its scores")
        if user not in self.rec.user_index or user in self.forgotten and \
                self.rec.user_index[user] >= self.base_users:
            raise UnknownIdError(f"user {user!r} is not in the model: only users it has learned can be explained")
        out = self.rec.explain(user, item)
        out["because"] = [p["label"] for p in out["parts"] if "item" in p and p["contribution"] > 0][:2]
        if top is not None:
            out["parts"] = out["parts"][:top]
        return out

    def similar(self, item: str, k: int) -> ItemList:
        """Items similar to `item`; a popular fallback for an item the model does not know."""
        i = self.rec.item_index.get(item)
        if i is None:
            reason = f" {item!r} is not in the model (added later or unknown): the most popular items"
            return self.popular(k, item={"item": item, **self.item_meta.get(item, {})}, fallback="popular",
                                fallback_reason=reason)
        if not has_ability(self.rec.model, "similar_items"):
            allowed = np.ones(self.rec.n_items, bool)
            allowed[i] = False
            return self.popular(k, allowed, item=self.rec.item_row(i), fallback="popular",
                                fallback_reason=f"model {self.rec.model.name!r} has no similar items")
        idx, sims = self.rec.model.similar_items(i, k)
        return self._list(np.asarray(idx), np.asarray(sims), "similarity", item=self.rec.item_row(i))

    def _list(self, idx: np.ndarray, vals: np.ndarray | None, kind: str, **kw: Any) -> ItemList:
        idx = np.asarray(idx, np.int64).reshape(-1)
        values = (np.full(len(idx), np.nan, np.float32) if vals is None
                  else np.asarray(vals, np.float32).reshape(-1))
        keep = idx >= 0
        idx, values = idx[keep], values[keep]
        scale = self.rec.scale if kind == "rating" else None
        return ItemList(self.rec.item_ids[idx], values, kind,  # type: ignore[arg-type]
                        meta=tuple(self.meta_rows[i] for i in idx.tolist()), scale=scale,
                        extra={"model_version": self.version}, **kw)

    def known_item(self, item: str) -> bool:
        return item in self.rec.item_index or item in self.item_meta


def _display(data: dict[str, Any]) -> dict[str, Any]:
    """The fields of a stored item record shown in rows (title, year, genres and label)."""
    out = {k: data[k] for k in ("title", "year", "genres") if k in data}
    if "title" in data:
        out["label"] = f"{data['title']} ({data['year']})" if data.get("year") else str(data["title"])
    return out

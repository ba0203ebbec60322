"""Top-k recommendation from any model's `score`, batched, with seen items removed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recstack.data.interactions import Interactions
from recstack.errors import ConfigError, DataError, RecstackError, UnknownIdError
from recstack.itemlist import ItemList, ScoreKind
from recstack.models.base import Model, has_ability, require_ability
from recstack.rerank import Rerank, genre_matrix, item_genres, rerank_candidates, unit_rows
from recstack.topk import top_k_rows, top_k_rows_serial

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
    kernel = top_k_rows_serial if scores.shape[0] <= 4 else top_k_rows
    return kernel(np.ascontiguousarray(scores), int(k))


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

    The CLI, the web page and the HTTP service all answer through this one class, and every
    answer is an `ItemList` (ids, scores, ranks and the kind of score): personalised top-k (seen
    items removed) → popular fallback for unknown users; new users folded in from a few ratings
    (popular fallback for models that cannot); similar items.
    """

    # `update` appends each batch of events to `_pending` (O(batch) work) instead of merging it
    # into the training log (O(log)); `train` merges them when something reads it. Learning one
    # rating and answering that user's top-k therefore never touch the whole log: the answer
    # needs the vocabularies (`_head`'s ids, `_user_index`, `_item_index`, kept current by
    # `update`), the user's seen items (the log's CSR row plus `_pending_rated`), item
    # popularity (counted as rows arrive) and the model. The public views below (`user_index`,
    # `item_index`, `item_ids`, `item_popularity`, `user_rows`) read that state: a service
    # answering between updates uses them, never `train`.
    MAX_PENDING: int = 4096  # batches held before `update` merges them into the log itself

    def __init__(self, saved: SavedModel) -> None:
        self.model = saved.model
        self.info = saved.info
        self._set_train(saved.train)
        self.labels = saved.train.item_titles()
        self.scale = ((float(saved.train.rating.min()), float(saved.train.rating.max()))
                      if len(saved.train) else None)
        self._cache: dict[str, Any] = {}  # derived from train and model; `update` drops what changes

    def _set_train(self, train: Interactions) -> None:
        self._train = train
        self._pending: list[Interactions] = []  # update batches not yet merged into _train
        self._pending_rated: dict[int, dict[int, float]] = {}  # user index → {item: rating} in _pending
        self._popularity = train.item_popularity.copy()  # interactions per item, kept current by `update`
        self._head = train  # the newest vocabularies and feature frames (the last batch's)
        self._user_index = dict(train.user_index)  # a copy: `update` extends it
        self._item_index = dict(train.item_index)

    @property
    def train(self) -> Interactions:
        """The training log with every update applied (a repeated (user, item) keeps the last)."""
        if self._pending:
            from recstack.data.updates import concat_events, merge

            self._set_train(merge(self._train, concat_events(self._pending)))
        return self._train

    @property
    def n_users(self) -> int:
        """Users known now (after every update), without merging the pending log."""
        return self._head.n_users

    @property
    def n_items(self) -> int:
        """Items known now (after every update), without merging the pending log."""
        return self._head.n_items

    @property
    def user_index(self) -> dict[str, int]:
        """External user id → index, every update included (read it, do not change it)."""
        return self._user_index

    @property
    def item_index(self) -> dict[str, int]:
        """External item id → index, every update included (read it, do not change it)."""
        return self._item_index

    @property
    def item_ids(self) -> np.ndarray:
        """External item ids by index, every update included."""
        return self._head.item_ids

    @property
    def item_features(self) -> Any:
        """The item feature frame (one row per item index), every update included; None without one."""
        return self._head.item_features

    @property
    def item_popularity(self) -> np.ndarray:
        """(n_items,) interactions per item, every update included (a repeated (user, item) counts once)."""
        return self._popularity

    def _log_row(self, u: int) -> tuple[np.ndarray, np.ndarray]:
        """(items, ratings) of user `u` in the log as last merged (empty for users added since)."""
        x = self._train.csr
        if u >= x.shape[0]:
            return np.empty(0, np.int32), np.empty(0, np.float32)
        lo, hi = x.indptr[u], x.indptr[u + 1]
        return x.indices[lo:hi], x.data[lo:hi]

    def user_rows(self, u: int) -> tuple[np.ndarray, np.ndarray]:
        """(item indices, ratings) of user index `u`, every update included (a repeated item keeps
        the last rating), without merging the pending log."""
        items, ratings = self._log_row(u)
        items, ratings = items.astype(np.int64), ratings.astype(np.float64)
        extra = self._pending_rated.get(u)
        if not extra:
            return items, ratings
        keep = ~np.isin(items, np.fromiter(extra, np.int64, len(extra)))
        return (np.concatenate([items[keep], np.fromiter(extra, np.int64, len(extra))]),
                np.concatenate([ratings[keep], np.fromiter(extra.values(), np.float64, len(extra))]))

    def _seen_items(self, u: int) -> np.ndarray:
        """Item indices user `u` has interacted with (log and pending updates; may repeat)."""
        items = self._log_row(u)[0]
        extra = self._pending_rated.get(u)
        if extra:
            return np.concatenate([items.astype(np.int64), np.fromiter(extra, np.int64, len(extra))])
        return items

    # ---- rows -----------------------------------------------------------------------------
    def item_meta(self, index: int) -> dict[str, Any]:
        """Display metadata of item `index`: label, and title, year, genres where known (cached)."""
        cache = self._cache.setdefault("meta", {})
        if index not in cache:
            cache[index] = self._item_meta(index)
        return dict(cache[index])

    def _item_meta(self, index: int) -> dict[str, Any]:
        f = self._head.item_features
        row: dict[str, Any] = {"label": self.labels[index]}
        if f is not None:
            if "title" in f:
                row["title"] = str(f["title"].iloc[index])
            if "year" in f:
                y = f["year"].iloc[index]
                row["year"] = None if pd.isna(y) else int(y)
            if "genres" in f:
                row["genres"] = list(f["genres"].iloc[index])
        return row

    def item_row(self, index: int) -> dict[str, Any]:
        """{"item": external id, **item_meta}."""
        return {"item": str(self._head.item_ids[index]), **self.item_meta(index)}

    def item_list(self, idx: np.ndarray, scores: np.ndarray | None, kind: ScoreKind, **kw: Any) -> ItemList:
        """An `ItemList` from item indices (−1 entries dropped) and their raw scores."""
        idx = np.asarray(idx, np.int64).reshape(-1)
        keep = idx >= 0
        vals = (np.full(len(idx), np.nan, np.float32) if scores is None
                else np.asarray(scores, np.float32).reshape(-1))
        idx, vals = idx[keep], vals[keep]
        scale = self.scale if kind == "rating" else None
        return ItemList(self._head.item_ids[idx], vals, kind, meta=tuple(self.item_meta(int(i)) for i in idx),
                        scale=scale, **kw)

    # ---- answers --------------------------------------------------------------------------
    def popular(self, k: int = 10, exclude: np.ndarray | None = None, **kw: Any) -> ItemList:
        """The k most-rated items (no score: popularity is an order, not a prediction)."""
        _check_k(k)
        return self.item_list(popular_items(self._popularity, k, exclude), None, "ranking", **kw)

    def for_user(self, user_id: object, k: int = 10, fallback: str = "none",
                 rerank: Rerank | None = None) -> ItemList:
        """Top-k unseen items for a known user; popular items for an unknown one when asked.

        `rerank` re-ranks the model's best candidates (diversity, novelty, excluded genres; see
        `recstack.rerank`); scores stay the model's own."""
        _check_k(k)
        u = self._user_index.get(str(user_id))
        if u is None:
            if fallback != "popular":
                raise UnknownIdError(f"unknown user id {user_id!r} (this model knows "
                                     f"{self._head.n_users:,} users; use --fallback popular)")
            return self.popular(k, user=str(user_id), fallback="popular",
                                fallback_reason=f"unknown user id {str(user_id)!r}: the most popular items")
        wide = k if rerank is None else rerank.n_candidates(k)
        scores = self.model.score([u]).astype(np.float64)
        scores[0, self._seen_items(u)] = -np.inf
        idx, val = top_k_from_scores(scores, wide)
        idx, val = self._reranked(idx[0], val[0], k, rerank)
        return self.item_list(idx, val, self.model.score_kind, user=str(user_id))

    def _reranked(self, idx: np.ndarray, val: np.ndarray, k: int,
                  rerank: Rerank | None) -> tuple[np.ndarray, np.ndarray]:
        """The k items to show from ranked candidates (idx, val), re-ranked when asked."""
        if rerank is None or not rerank.active:
            return idx[:k], val[:k]
        chosen = rerank_candidates(idx, val, k, rerank, self._rerank_vectors(rerank),
                                   self._popularity, self._item_genres())
        score_of = dict(zip(idx.tolist(), val.tolist()))
        return chosen, np.array([score_of[i] for i in chosen.tolist()], np.float32)

    def _item_genres(self) -> list[set[str]] | None:
        if "genres" not in self._cache:
            self._cache["genres"] = item_genres(self._head)
        return self._cache["genres"]

    def _rerank_vectors(self, rerank: Rerank) -> np.ndarray | None:
        """Unit item vectors for the diversity similarity (cached per kind)."""
        if rerank.diversity <= 0:
            return None
        cache = self._cache.setdefault("unit_vectors", {})
        if rerank.similarity not in cache:
            if rerank.similarity == "embedding":
                require_ability(self.model, "item_embeddings")
                cache["embedding"] = unit_rows(self.model.item_vectors())
            else:
                g = genre_matrix(self._head)
                if g is None:
                    raise RecstackError("diversity by genre needs item genres; use similarity='embedding'")
                cache["genre"] = unit_rows(g)
        return cache[rerank.similarity]

    def rated_by(self, user_id: object, k: int = 10) -> ItemList:
        """The user's highest-rated training items (ties: most recent first); scores are their ratings."""
        _check_k(k)
        u = self.train.user_of(user_id)
        rows = np.flatnonzero(self.train.user == u)
        order = np.lexsort((-self.train.timestamp[rows], -self.train.rating[rows]))[:k]
        return self.item_list(self.train.item[rows[order]], self.train.rating[rows[order]], "rating",
                              user=str(user_id))

    def for_new_user(self, ratings: dict[object, float], k: int = 10, fallback: str = "popular") -> ItemList:
        """Top-k for someone known only by {item id: rating}, folded in without retraining.

        A model without the fold-in ability gives the most popular unrated items instead when
        `fallback` is "popular" (the list says so), else a `RecstackError`.
        """
        _check_k(k)
        if not ratings:
            raise RecstackError("rate at least one item to get recommendations")
        items = np.array([self._item_of(i) for i in ratings], np.int64)
        values = np.array([float(r) for r in ratings.values()], np.float64)
        if not has_ability(self.model, "folds_in_users"):
            if fallback != "popular":
                require_ability(self.model, "folds_in_users")
            return self.popular(k, exclude=items, fallback="popular",
                                fallback_reason=f"model {self.model.name!r} cannot fold in new users: "
                                                "the most popular items you have not rated")
        scores = self.model.score_new_user(items, values).astype(np.float64)
        scores[items] = -np.inf
        idx, val = top_k_from_scores(scores[None, :], k)
        return self.item_list(idx[0], val[0], self.model.score_kind)

    def similar(self, item_id: object, k: int = 10) -> ItemList:
        """Items nearest to `item_id` (the model's own notion, e.g. embedding cosine)."""
        _check_k(k)
        i = self._item_of(item_id)
        require_ability(self.model, "similar_items")
        idx, sims = self.model.similar_items(i, k)
        return self.item_list(idx, sims, "similarity", item=self.item_row(i))

    def history(self, user_id: object) -> tuple[np.ndarray, np.ndarray]:
        """(item indices, ratings) of the user's training rows, every update included."""
        return self.user_rows(self._user_of(user_id))

    def _user_of(self, user_id: object) -> int:
        """Index of an external user id, every update included; `UnknownIdError` names it when absent."""
        u = self._user_index.get(str(user_id))
        if u is None:
            raise UnknownIdError(f"unknown user id {user_id!r}")
        return u

    def _item_of(self, item_id: object) -> int:
        i = self._item_index.get(str(item_id))
        if i is None:
            raise UnknownIdError(f"unknown item id {item_id!r}")
        return i

    def explain(self, user_id: object, item_id: object, top: int | None = None) -> dict[str, Any]:
        """Why `item_id` scores what it does for `user_id`: {"score": the unclipped score the
        ranking used, "parts": [{"item", "label", "contribution"} | {"feature"/"bias", ...}], "exact"}.

        For exact models the parts sum to the score; `top` keeps the largest parts only (the
        sum then leaves out the rest, so `score` is unchanged). When `exact` is False the parts
        are a hint (e.g. a sequence model's attention over the history, scaled to sum to the
        score); "method" names how it was made and "hint" says so in words. Needs the model's
        `explains` ability."""
        require_ability(self.model, "explains")
        u, i = self._user_of(user_id), self._item_of(item_id)
        e = self.model.explain(u, i, history=self.user_rows(u))
        parts = []
        for p in e.parts:
            if p["kind"] == "item":
                parts.append({"item": str(self._head.item_ids[p["key"]]), "label": self.labels[p["key"]],
                              "contribution": p["contribution"]})
            else:
                parts.append({p["kind"]: str(p["key"]), "contribution": p["contribution"]})
        out = {"user": str(user_id), "item": self.item_row(i), "score": e.score, "score_kind": self.model.score_kind,
               "exact": e.exact, "parts": parts if top is None else parts[:top]}
        if not e.exact:  # a hint (attention, occlusion): say so, and how it was made
            out["method"] = e.method or "approximate"
            out["hint"] = (f"a hint, not an exact attribution: {out['method']}, "
                           "scaled so that the parts sum to the score")
        return out

    def because(self, user_id: object, item_id: object, n: int = 2) -> list[str]:
        """Labels of the (at most n) history items that raise `item_id`'s score the most."""
        parts = self.explain(user_id, item_id)["parts"]
        return [p["label"] for p in parts if "item" in p and p["contribution"] > 0][:n]

    def search(self, query: str, limit: int = 20) -> list[dict[str, Any]]:
        """Items whose label contains every word of `query` (case-insensitive), most popular first."""
        words = [w for w in query.lower().split() if w]
        if not words:
            return []
        hits = [i for i, label in enumerate(self.labels) if all(w in label.lower() for w in words)]
        hits.sort(key=lambda i: (-self._popularity[i], i))
        return [self.item_row(i) for i in hits[:limit]]

    # ---- learning from new events --------------------------------------------------------
    def update(self, rows: Any, now: int | None = None) -> dict[str, int]:
        """Learn from rows `(user, item, rating[, timestamp])` in external ids, without a refit.

        Every row is validated first (a bad one raises a `DataError` naming the row and field and
        nothing is applied; for a rating model that includes a rating outside the training scale,
        which would throw its SGD steps far off); new users and items extend the vocabularies; the model learns
        through `partial_fit`, and the training log takes the rows (a repeated (user, item)
        replaces the earlier rating), so seen items, popularity and fallbacks follow. Late events
        (older than the user's latest) are accepted. Returns counts of rows, new users, new items.
        """
        from recstack.data.updates import extend, parse_rows

        require_ability(self.model, "partial_fit")
        users, items, ratings, stamps = parse_rows(rows, now)
        if getattr(self.model, "explicit", False):  # rating estimates: a rating off the scale is refused
            lo, hi = self.scale
            off = np.flatnonzero((ratings < lo) | (ratings > hi))
            if len(off):
                n = int(off[0])
                raise DataError(f"update row {n + 1}: field 'rating' = {float(ratings[n]):g} is outside the "
                                f"model's rating scale {lo:g}..{hi:g}")
        head = self._head
        u_idx = [self._user_index.get(x) for x in users]
        i_idx = [self._item_index.get(x) for x in items]
        if None in u_idx or None in i_idx:  # new ids: the vocabularies (and feature frames) grow
            events = extend(head, users, items, ratings, stamps)
        else:  # known ids only: the events share the current vocabularies as they are
            events = Interactions(head.user_ids, head.item_ids, np.asarray(u_idx, np.int32),
                                  np.asarray(i_idx, np.int32), ratings, stamps, head.item_features,
                                  head.user_features, head.name)
        new_users = events.n_users - head.n_users
        new_items = events.n_items - head.n_items
        self.model.partial_fit(events)
        if len(self._pending) >= self.MAX_PENDING:
            _ = self.train  # merge what is pending, so the list stays short
        self._pending.append(events)
        self._head = events
        for k, name in enumerate(events.user_ids[head.n_users:].tolist()):
            self._user_index[name] = head.n_users + k
        for k, name in enumerate(events.item_ids[head.n_items:].tolist()):
            self._item_index[name] = head.n_items + k
        if new_items:
            self._popularity = np.concatenate([self._popularity, np.zeros(new_items, self._popularity.dtype)])
        rows_of: dict[int, set[int]] = {}
        for u, i, r in zip(events.user.tolist(), events.item.tolist(), events.rating.tolist()):
            pending = self._pending_rated.setdefault(u, {})
            if i not in pending:
                logged = rows_of.get(u)
                if logged is None:
                    logged = rows_of[u] = set(self._log_row(u)[0].tolist())
                if i not in logged:
                    self._popularity[i] += 1
            pending[i] = r
        self._cache.pop("unit_vectors", None)  # item vectors moved; per-item metadata did not
        if new_items:
            self._cache.pop("genres", None)
            self.labels = events.item_titles()
        # the rating scale only widens here (a replaced extreme rating narrows it on the next load)
        lo, hi = float(ratings.min()), float(ratings.max())
        self.scale = (lo, hi) if self.scale is None else (min(self.scale[0], lo), max(self.scale[1], hi))
        return {"rows": len(events), "new_users": new_users, "new_items": new_items}

    def save(self, path: Any) -> Any:
        """Write the (updated) model and its training log to folder `path` (`persist.save_model`)."""
        from recstack.persist import save_model

        return save_model(path, self.model, self.train, metrics=self.info.get("metrics"))


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k={k!r}: must be an integer ≥ 1")

"""The `stream` protocol: prequential evaluation over time (Vinagre, Jorge & Gama, UMAP 2014).

Replay timestamped data in time order (`split.stream_split`): fit on the first half of the
events, then for each following UTC day first RECOMMEND — for every user active that day, the
top-k over items seen so far that the user has not interacted with so far, scored against the
items the user interacts with that day — then UPDATE the model with that day's events:

- `none`: never; users the model does not know get its unknown-user fallback (most popular
  items of what the model learned from);
- `incremental`: `partial_fit(day's events)`;
- `retrain`: a full refit from scratch on everything seen so far, every `retrain_every` days.

Metrics (HR@k, NDCG@k with binary gains and ideal over min(k, #relevant), recall@k) are
averaged over user-days. The record also holds the total and per-batch update seconds and a
per-day series.

Update seconds count the steady-state cost of an update, not the one-time loading of compiled
kernels: `retrain` runs the same fit as the initial fit (untimed), so its kernels are loaded
before the first timed day; for `incremental` the first day's `partial_fit` is run once,
untimed, on a throwaway copy of the fitted model (`warmup_seconds` in the record), so its
kernels are loaded too. The replay itself is unchanged.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
import scipy.sparse as sp

from recstack.data.interactions import Interactions
from recstack.errors import ConfigError
from recstack.evaluate import peak_memory_mb
from recstack.models.base import Model, get_model_class, require_ability
from recstack.models.popular import popularity_scores
from recstack.recommend import top_k_from_scores
from recstack.split import stream_split

UPDATES = ("none", "incremental", "retrain")


def user_day_metrics(rec: np.ndarray, relevant: sp.csr_matrix, k: int) -> dict[str, np.ndarray]:
    """Per-row hr@k, ndcg@k, recall@k of (n, k) recommended indices against (n, m) relevant rows."""
    n_rel = np.diff(relevant.indptr)
    hits = np.zeros(rec.shape, bool)
    for r in range(len(rec)):
        items = relevant.indices[relevant.indptr[r]:relevant.indptr[r + 1]]
        hits[r] = np.isin(rec[r], items) & (rec[r] >= 0)
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.array([disc[:min(k, m)].sum() for m in n_rel])
    return {f"hr@{k}": hits.any(axis=1).astype(float),
            f"ndcg@{k}": (hits * disc).sum(axis=1) / np.maximum(ideal, 1e-12),
            f"recall@{k}": hits.sum(axis=1) / np.maximum(n_rel, 1)}


def _concat(parts: list[Interactions]) -> Interactions:
    """One `Interactions` of the rows of `parts` over the last part's (largest) vocabularies."""
    last = parts[-1]
    return Interactions(last.user_ids, last.item_ids,
                        np.concatenate([p.user for p in parts]), np.concatenate([p.item for p in parts]),
                        np.concatenate([p.rating for p in parts]),
                        np.concatenate([p.timestamp for p in parts]),
                        last.item_features, last.user_features, last.name)


def recommend_day(model: Model, users: np.ndarray, seen: sp.csr_matrix, n_items: int,
                  popularity: np.ndarray, k: int) -> np.ndarray:
    """(len(users), k) top-k over the n_items seen so far, minus each user's `seen` items;
    users the model does not know get the most popular items (`popularity` over its items)."""
    scores = np.full((len(users), n_items), -np.inf)
    known = users < model.n_users_
    width = min(model.n_items_, n_items)
    if known.any():
        s = model.score(users[known]).astype(np.float64)[:, :width]
        scores[np.flatnonzero(known)[:, None], np.arange(width)[None, :]] = np.where(np.isnan(s), -np.inf, s)
    if (~known).any():
        pop = popularity_scores(popularity)[:width]
        scores[np.flatnonzero(~known), :width] = pop
    sub = seen[users].tocoo()
    keep = sub.col < n_items
    scores[sub.row[keep], sub.col[keep]] = -np.inf
    return top_k_from_scores(scores, k)[0]


def run_stream(model_name: str, data: Interactions, params: Mapping[str, Any] | None = None,
               update: str = "incremental", retrain_every: int = 1, k: int = 10, fraction: float = 0.5,
               seed: int = 0, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Replay `data` with `model_name` under one update mode; returns the result record."""
    if update not in UPDATES:
        raise ConfigError(f"update must be one of {', '.join(UPDATES)}, got {update!r}")
    if retrain_every < 1:
        raise ConfigError(f"retrain_every={retrain_every}: must be ≥ 1")
    cls = get_model_class(model_name)
    params = dict(params or {})
    if "seed" in cls.config_class.field_names():
        params.setdefault("seed", seed)
    config = cls(params).config
    initial, days = stream_split(data, fraction)
    model = cls(config)
    t0 = time.perf_counter()
    model.fit(initial)
    fit_seconds = time.perf_counter() - t0
    warmup_seconds = 0.0
    if update == "incremental":
        require_ability(model, "partial_fit")
        if days:  # load partial_fit's compiled kernels on a throwaway copy (see the module notes)
            t0 = time.perf_counter()
            copy.deepcopy(model).partial_fit(days[0][1])
            warmup_seconds = time.perf_counter() - t0
    log = [initial]
    learned_pop = initial.item_popularity.astype(np.float64)
    per_metric: dict[str, list[np.ndarray]] = {}
    series, batch_seconds = [], []
    predict_seconds = 0.0
    for n_day, (day, batch) in enumerate(days, 1):
        seen_log = _concat(log)
        seen = sp.csr_matrix((np.ones(len(seen_log)), (seen_log.user, seen_log.item)),
                             shape=(batch.n_users, batch.n_items))
        truth = sp.csr_matrix((np.ones(len(batch)), (batch.user, batch.item)),
                              shape=(batch.n_users, batch.n_items)).tocsr()
        truth = (truth - truth.multiply(seen > 0)).tocsr()  # only items new to the user count
        truth.eliminate_zeros()
        users = np.unique(batch.user).astype(np.int64)
        users = users[np.diff(truth.indptr)[users] > 0]
        t0 = time.perf_counter()
        rec = recommend_day(model, users, seen.tocsr(), seen_log.n_items, learned_pop, k)
        predict_seconds += time.perf_counter() - t0
        m = user_day_metrics(rec, truth[users], k)
        for key, values in m.items():
            per_metric.setdefault(key, []).append(values)
        log.append(batch)
        t0 = time.perf_counter()
        updated = False
        if update == "incremental":
            model.partial_fit(batch)
            updated = True
        elif update == "retrain" and n_day % retrain_every == 0:
            model = cls(config).fit(_concat(log))
            updated = True
        seconds = time.perf_counter() - t0
        if updated:
            batch_seconds.append(round(seconds, 6))
            learned_pop = _concat(log).item_popularity.astype(np.float64)
        series.append({"day": datetime.fromtimestamp(day * 86400, UTC).strftime("%Y-%m-%d"),
                       "user_days": len(users), "events": len(batch),
                       **{key: float(v.mean()) if len(v) else None for key, v in m.items()},
                       "update_seconds": round(seconds, 6) if updated else 0.0})
        if progress and (n_day % 20 == 0 or n_day == len(days)):
            progress(f"day {n_day}/{len(days)}: {len(users)} users, update {seconds:.3f}s")
    metrics = {key: float(np.concatenate(v).mean()) for key, v in per_metric.items()}
    return {
        "protocol": "stream", "model": model_name, "config": config.to_dict(),
        "data": {"name": data.name, "sha256": data.fingerprint()}, "seed": seed, "task": "topn", "k": k,
        "update": update, "retrain_every": retrain_every if update == "retrain" else None,
        "fraction": fraction, "initial_rows": len(initial), "days": len(days),
        "user_days": int(sum(len(v) for v in per_metric.get(f"hr@{k}", []))),
        "metrics": metrics, "metrics_sd": {},
        "update_seconds": round(float(sum(batch_seconds)), 4), "update_batch_seconds": batch_seconds,
        "series": series, "fit_seconds": round(fit_seconds, 4),
        "warmup_seconds": round(warmup_seconds, 4), "predict_seconds": round(predict_seconds, 4),
        "peak_memory_mb": peak_memory_mb(),
    }

"""Named evaluation protocols: each runs a model and returns one result record (a dict).

| protocol        | task   | split                                                          |
|-----------------|--------|----------------------------------------------------------------|
| ml100k-folds    | rating | GroupLens u1..u5 from file order; mean ± sd over folds, u1 too |
| random-80-20    | rating | one seeded shuffle, 80% train                                  |
| msr-75          | top-N  | Microsoft Recommenders' stratified 75/25 by item, seed 42, k=10 |
| leave-last-out  | top-N  | per user last → test, second-to-last → valid; full ranking     |
| cold-items      | top-N  | 10% of items (by popularity decile) with all their rows → test; rank only them |
| cold-users      | top-N  | 10% of users held out; first `given` (1/3/5) ratings are their history, rest test |
| stream          | top-N  | first 50% by time → train; then recommend → update per UTC day (`recstack.stream`) |
| custom          | either | the user's own train and test files                            |

Models never see a test part while choosing hyperparameters: early stopping carves its
validation part from the training part (or gets the protocol's validation part), and the SGD and
torch models then refit on the whole training part (`refit`). A per-fold config (nested tuning,
`recstack.tune`) gives each fold the choice made on a carve of that fold's own training part.
"""

from __future__ import annotations

import inspect
import resource
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from recstack import metrics as M
from recstack.data.interactions import Interactions
from recstack.errors import ConfigError, RecstackError
from recstack.models.base import Model, get_model_class
from recstack.recommend import recommend, top_k_from_scores
from recstack.rerank import Rerank, genre_matrix, item_genres, rerank_candidates, unit_rows
from recstack.split import (
    cold_items_split,
    cold_users_split,
    leave_last_out,
    ml100k_folds,
    random_split,
    stratified_split,
    stream_halves,
)


@dataclass
class Fold:
    """One train/test pair of a protocol (valid is given to `fit` when the protocol has one)."""

    name: str
    train: Interactions
    test: Interactions
    valid: Interactions | None = None


@dataclass(frozen=True)
class Protocol:
    name: str
    task: str  # "rating" | "topn"
    make_folds: Callable[[Interactions, int], list[Fold]]
    k: int = 10
    default_data: str = "ml-100k"
    candidates: str = "all"  # "all" | "train" (items seen in train)
    exclude_valid: bool = False  # also remove the validation items from the ranking
    fold_metrics: Callable[[Model, Fold, int], tuple[dict[str, float], float]] | None = None  # own scoring


def _folds_ml100k(data: Interactions, seed: int) -> list[Fold]:
    return [Fold(n, tr, te) for n, tr, te in ml100k_folds(data)]


def _folds_random(data: Interactions, seed: int) -> list[Fold]:
    tr, te = random_split(data, 0.8, seed)
    return [Fold("random-80-20", tr, te)]


def _folds_msr(data: Interactions, seed: int) -> list[Fold]:
    tr, te = stratified_split(data, 0.75, "item", 42)
    return [Fold("msr-75", tr, te)]


def _folds_llo(data: Interactions, seed: int) -> list[Fold]:
    tr, va, te = leave_last_out(data)
    return [Fold("leave-last-out", tr, te, va)]


def _folds_stream(data: Interactions, seed: int) -> list[Fold]:
    """The stream protocol's parts as one fold: the first 50% by time (what the model is fitted
    on) and the rest (replayed day by day by `recstack.stream.run_stream`, its test)."""
    train, test = stream_halves(data, 0.5)
    return [Fold("stream", train, test)]


def _stream_metrics(model: Model, fold: Fold, k: int = 10) -> tuple[dict[str, float], float]:
    raise ConfigError("the stream protocol replays its test part day by day: run it with "
                      "`recstack evaluate MODEL --protocol stream --update none|incremental|retrain` "
                      "(recstack.stream.run_stream)")


# ---- cold start -----------------------------------------------------------------------------------
COLD_FRACTION = 0.1


def _folds_cold_items(data: Interactions, seed: int) -> list[Fold]:
    train, test, cold = cold_items_split(data, COLD_FRACTION, seed)
    test.meta["cold_items"] = cold
    return [Fold("cold-items", train, test)]


def _folds_cold_users(given: int) -> Callable[[Interactions, int], list[Fold]]:
    def make(data: Interactions, seed: int) -> list[Fold]:
        train, given_part, test, _ = cold_users_split(data, COLD_FRACTION, given, seed)
        test.meta["given"] = given_part
        return [Fold(f"cold-users-given{given}", train, test)]

    return make


def cold_start_carve(protocol: str, train: Interactions, seed: int = 0) -> Fold:
    """A validation `Fold` carved from a cold-start protocol's training part by the same rule
    (for tuning; the protocol's test part is never an argument)."""
    fold = get_protocol(protocol).make_folds(train, seed)[0]
    return Fold(fold.name + "-valid", fold.train, fold.test)


def cold_item_metrics(model: Model, fold: Fold, k: int = 10) -> tuple[dict[str, float], float]:
    """Each test user (with training rows) ranks only the cold items; every test row is relevant."""
    train, test = fold.train, fold.test
    mask = np.zeros(train.n_items, bool)
    mask[test.meta["cold_items"]] = True
    users = np.intersect1d(np.unique(train.user), np.unique(test.user))
    t0 = time.perf_counter()
    rec, _ = recommend(model, users, k, exclude=train.csr, candidates=mask)
    seconds = time.perf_counter() - t0
    hits, n_rel = M.hit_matrix(rec, test.csr[users])
    out = {f"ndcg@{k}": M.ndcg_at_k(hits, n_rel, k), f"hr@{k}": M.hr_at_k(hits, n_rel, k),
           f"recall@{k}": M.recall_at_k(hits, n_rel, k), f"precision@{k}": M.precision_at_k(hits, n_rel, k),
           "coverage": float(len(np.unique(rec[rec >= 0])) / max(mask.sum(), 1))}
    return out, seconds


def fold_in_scores(model: Model, user: int, items: np.ndarray, ratings: np.ndarray) -> np.ndarray:
    """(n_items,) scores for a user known only by a few ratings, without refitting: the model's
    `score_new_user` (given the user's index when it takes one, for its features), else its
    `score` row (e.g. `popular`). NaN where it cannot score."""
    fn = getattr(model, "score_new_user", None)
    if fn is None:
        return np.asarray(model.score([user])[0], np.float64)
    if "user" in inspect.signature(fn).parameters:
        return np.asarray(fn(items, ratings, user=user), np.float64)
    return np.asarray(fn(items, ratings), np.float64)


def cold_user_metrics(model: Model, fold: Fold, k: int = 10) -> tuple[dict[str, float], float]:
    """Each held-out user is folded in from their given ratings and ranks every other item."""
    test, given = fold.test, fold.test.meta["given"]
    users = np.unique(test.user)
    g = given.csr
    t0 = time.perf_counter()
    rows = []
    for u in users:
        items = g.indices[g.indptr[u]:g.indptr[u + 1]].astype(np.int64)
        s = fold_in_scores(model, int(u), items, g.data[g.indptr[u]:g.indptr[u + 1]].astype(np.float64))
        s[items] = -np.inf
        rows.append(s)
    rec, _ = top_k_from_scores(np.vstack(rows), k)
    seconds = time.perf_counter() - t0
    hits, n_rel = M.hit_matrix(rec, test.csr[users])
    out = {f"ndcg@{k}": M.ndcg_at_k(hits, n_rel, k), f"hr@{k}": M.hr_at_k(hits, n_rel, k),
           f"recall@{k}": M.recall_at_k(hits, n_rel, k), f"precision@{k}": M.precision_at_k(hits, n_rel, k),
           "coverage": M.coverage(rec, fold.train.n_items)}
    return out, seconds


PROTOCOLS: dict[str, Protocol] = {
    "ml100k-folds": Protocol("ml100k-folds", "rating", _folds_ml100k),
    "random-80-20": Protocol("random-80-20", "rating", _folds_random),
    "msr-75": Protocol("msr-75", "topn", _folds_msr, candidates="train"),
    "leave-last-out": Protocol("leave-last-out", "topn", _folds_llo, exclude_valid=True),
    "stream": Protocol("stream", "topn", _folds_stream, fold_metrics=_stream_metrics),
    "cold-items": Protocol("cold-items", "topn", _folds_cold_items, fold_metrics=cold_item_metrics),
    "cold-users": Protocol("cold-users", "topn", _folds_cold_users(5), fold_metrics=cold_user_metrics),
    "cold-users-given1": Protocol("cold-users-given1", "topn", _folds_cold_users(1), fold_metrics=cold_user_metrics),
    "cold-users-given3": Protocol("cold-users-given3", "topn", _folds_cold_users(3), fold_metrics=cold_user_metrics),
}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {name!r}; known: {', '.join(sorted(PROTOCOLS))}, custom")
    return PROTOCOLS[name]


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


# ---- one fold ---------------------------------------------------------------------------------
def rating_metrics(model: Model, train: Interactions, test: Interactions) -> tuple[dict[str, float], float]:
    """RMSE and MAE on `test`; NaN estimates fall back to the training mean. Returns (metrics, seconds)."""
    if not model.explicit:
        raise RecstackError(f"model {model.name!r} does not estimate ratings; use a top-N protocol")
    t0 = time.perf_counter()
    if getattr(model, "uses_time", False):  # time-aware models read each rating's own date
        pred = model.predict(test.user, test.item, timestamps=test.timestamp).astype(np.float64)
    else:
        pred = model.predict(test.user, test.item).astype(np.float64)
    seconds = time.perf_counter() - t0
    missing = np.isnan(pred)
    pred[missing] = train.global_mean
    out = {"rmse": M.rmse(test.rating, pred), "mae": M.mae(test.rating, pred)}
    if missing.any():
        out["fallback_predictions"] = int(missing.sum())
    return out, seconds


def topn_metrics(model: Model, train: Interactions, test: Interactions, k: int = 10,
                 candidates: str = "all", extra_exclude: Interactions | None = None,
                 rerank: Rerank | None = None) -> tuple[dict[str, float], float]:
    """Ranking metrics at k for users present in both train and test; every test row is relevant.

    Each user's training items (and `extra_exclude`'s) are removed; with candidates="train"
    only items seen in train can be recommended. Returns (metrics, seconds).
    """
    users = np.intersect1d(np.unique(train.user), np.unique(test.user))
    exclude = train.csr
    if extra_exclude is not None:
        exclude = (exclude + extra_exclude.csr).tocsr()
    mask = train.item_popularity > 0 if candidates == "train" else None
    t0 = time.perf_counter()
    if rerank is None or not rerank.active:
        rec, _ = recommend(model, users, k, exclude=exclude, candidates=mask)
    else:
        rec = reranked_lists(model, train, users, k, exclude, mask, rerank)
    seconds = time.perf_counter() - t0
    hits, n_rel = M.hit_matrix(rec, test.csr[users])
    out = M.ranking_metrics(hits, n_rel, k)
    out["coverage"] = M.coverage(rec, train.n_items)
    out["novelty"] = M.novelty(rec, train.item_popularity, train.n_users)
    genres = genre_matrix(train)
    if genres is not None:
        out["diversity"] = M.diversity(rec, genres)
    return out, seconds


def reranked_lists(model: Model, train: Interactions, users: np.ndarray, k: int, exclude, mask,
                   rerank: Rerank) -> np.ndarray:
    """(len(users), k) item indices: each user's best candidates re-ranked (`recstack.rerank`)."""
    wide, vals = recommend(model, users, rerank.n_candidates(k), exclude=exclude, candidates=mask)
    unit = None
    if rerank.diversity > 0:
        if rerank.similarity == "embedding":
            unit = unit_rows(model.item_vectors())
        else:
            g = genre_matrix(train)
            if g is None:
                raise RecstackError("diversity by genre needs item genres")
            unit = unit_rows(g)
    genres = item_genres(train)
    out = np.full((len(users), k), -1, np.int64)
    for row in range(len(users)):
        chosen = rerank_candidates(wide[row], vals[row], k, rerank, unit, train.item_popularity, genres)
        out[row, :len(chosen)] = chosen
    return out


def sampled_topn_metrics(model: Model, train: Interactions, test: Interactions, n_negatives: int = 100,
                         k: int = 10, seed: int = 0, extra_exclude: Interactions | None = None,
                         ) -> tuple[dict[str, float], float]:
    """Sampled-negative ranking metrics — an EXTRA, never comparable with full-ranking figures.

    Each test row (user, item) is ranked among `n_negatives` items drawn uniformly (seeded,
    without replacement) from those the user never interacted with in train, test or
    `extra_exclude` (as in NCF, He et al. 2017, and SASRec's paper). Ties count against the
    held-out item. Keys are prefixed `sampled{n}_`, e.g. `sampled100_ndcg@10`. Returns (metrics, seconds).
    """
    rng = np.random.default_rng(seed)
    seen = (train.csr + test.csr) if extra_exclude is None else (train.csr + test.csr + extra_exclude.csr)
    seen = seen.tocsr()
    keep = np.isin(test.user, np.unique(train.user))
    t_user, t_item = test.user[keep].astype(np.int64), test.item[keep].astype(np.int64)
    ranks = np.empty(len(t_user), np.int64)
    t0 = time.perf_counter()
    order = np.argsort(t_user, kind="stable")
    users = np.unique(t_user)
    for start in range(0, len(users), 256):
        batch = users[start:start + 256]
        scores = np.nan_to_num(model.score(batch).astype(np.float64), nan=-np.inf)
        rows = order[np.searchsorted(t_user[order], batch[0]):np.searchsorted(t_user[order], batch[-1], "right")]
        for r in rows:
            u = t_user[r]
            s = scores[np.searchsorted(batch, u)]
            allowed = np.setdiff1d(np.arange(train.n_items), seen.indices[seen.indptr[u]:seen.indptr[u + 1]])
            neg = rng.choice(allowed, min(n_negatives, len(allowed)), replace=False)
            pos = s[t_item[r]]
            ranks[r] = len(neg) if not np.isfinite(pos) else int(np.sum(s[neg] >= pos))
    seconds = time.perf_counter() - t0
    hit = ranks < k
    p = f"sampled{n_negatives}_"
    out = {f"{p}hr@{k}": float(hit.mean()),
           f"{p}ndcg@{k}": float(np.mean(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0))),
           f"{p}mrr@{k}": float(np.mean(np.where(hit, 1.0 / (ranks + 1.0), 0.0)))}
    return out, seconds


# ---- a whole protocol ---------------------------------------------------------------------------
def run_protocol(
    model_name: str,
    protocol: str,
    data: Interactions | None = None,
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
    folds: list[Fold] | None = None,
    task: str | None = None,
    k: int | None = None,
    fold_limit: int | None = None,
    progress: Callable[[str], None] | None = None,
    fit: Callable[[Model, Interactions, Interactions | None], Model] | None = None,
    rerank: Rerank | None = None,
    fold_params: Mapping[str, Mapping[str, Any]] | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Fit `model_name` with `params` on each fold of `protocol` and return the result record.

    `data` defaults to the protocol's data set; `folds` (with `task`) runs a custom protocol.
    `fit(model, train, valid)` replaces `model.fit` (another engine, e.g. Spark) and returns the
    fitted model.
    `rerank` re-ranks each top-N list (diversity/novelty, `recstack.rerank`); the record says so.
    `fold_params` (a per-fold config: fold name → hyperparameters) gives each fold its own
    choice, `params` overriding it; the record's `config` is then `{"folds": {name: config}}`.
    `seed` always sets the model's seed (a `seed` in `params` or `fold_params` is overridden).
    `provenance` (a config file's `chosen` record) is copied to `config_provenance`.
    """
    cls = get_model_class(model_name)
    params = dict(params or {})
    seeded = "seed" in cls.config_class.field_names()
    if seeded:
        params["seed"] = seed
    if folds is None:
        proto = get_protocol(protocol)
        if data is None:
            from recstack.data.movielens import load_dataset

            data = load_dataset(proto.default_data)
        folds = proto.make_folds(data, seed)
        task, k = proto.task, k or proto.k
        candidates, exclude_valid = proto.candidates, proto.exclude_valid
        fold_metrics = proto.fold_metrics
    else:
        fold_metrics = None
        if task not in ("rating", "topn"):
            raise ConfigError(f"task must be 'rating' or 'topn', got {task!r}")
        k, candidates, exclude_valid = k or 10, "all", False
        data = folds[0].train
    if fold_limit:
        folds = folds[:fold_limit]
    configs = {fold.name: cls(params).config for fold in folds} if not fold_params else {}
    if fold_params:
        missing = [fold.name for fold in folds if fold.name not in fold_params]
        if missing:
            raise ConfigError(f"the per-fold config has folds {', '.join(fold_params)}, not "
                              f"{', '.join(missing)} of protocol {protocol}")
        configs = {fold.name: cls({**fold_params[fold.name], **params}).config for fold in folds}
    records = []
    for fold in folds:
        model = cls(configs[fold.name])
        t0, c0 = time.perf_counter(), time.process_time()
        model = fit(model, fold.train, fold.valid) if fit else model.fit(fold.train, fold.valid)
        fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
        if fold_metrics is not None:
            m, pred_s = fold_metrics(model, fold, k)
        elif task == "rating":
            m, pred_s = rating_metrics(model, fold.train, fold.test)
        else:
            extra = fold.valid if exclude_valid else None
            m, pred_s = topn_metrics(model, fold.train, fold.test, k, candidates, extra, rerank)
        fold_rec = {"name": fold.name, "metrics": m, "fit_seconds": round(fit_s, 4),
                    "fit_cpu_seconds": round(fit_cpu, 4), "predict_seconds": round(pred_s, 4)}
        for key in ("epochs_", "best_epoch_"):
            if hasattr(model, key):
                fold_rec[key.rstrip("_")] = int(getattr(model, key))
        records.append(fold_rec)
        if progress:
            shown = ", ".join(f"{a}={b:.4f}" for a, b in m.items() if isinstance(b, float))
            progress(f"{fold.name}: {shown} (fit {fit_s:.2f}s)")
    keys = [key for key in records[0]["metrics"] if key != "fallback_predictions"]
    agg = {key: float(np.mean([r["metrics"][key] for r in records])) for key in keys}
    sd = ({key: float(np.std([r["metrics"][key] for r in records], ddof=1)) for key in keys}
          if len(records) > 1 else {})
    return {
        "protocol": protocol,
        "model": model_name,
        "config": ({"folds": {name: c.to_dict() for name, c in configs.items()}} if fold_params
                   else configs[folds[0].name].to_dict()),
        **({"config_provenance": dict(provenance)} if provenance else {}),
        "data": {"name": data.name, "sha256": data.fingerprint()},
        "seed": seed,
        "task": task,
        "k": k if task == "topn" else None,
        "metrics": agg,
        "metrics_sd": sd,
        "folds": records,
        "fit_seconds": round(sum(r["fit_seconds"] for r in records), 4),
        "fit_cpu_seconds": round(sum(r["fit_cpu_seconds"] for r in records), 4),
        "predict_seconds": round(sum(r["predict_seconds"] for r in records), 4),
        "peak_memory_mb": peak_memory_mb(),
        **({"rerank": {"diversity": rerank.diversity, "novelty": rerank.novelty,
                       "similarity": rerank.similarity}} if rerank is not None and rerank.active else {}),
    }

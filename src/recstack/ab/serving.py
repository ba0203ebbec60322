"""The A/B hook of the recommendation path: which variant a user gets, the list it serves, the exposure log.

`Experiments.arm(user)` answers from the running experiment (re-read from the store at most once
per `refresh_s`, so every worker of a service follows a start or stop within that time). The
variant's list comes from `serve_list`: the variant's model state (the service passes the state
of the variant's model version) and its re-ranking. `Experiments.expose` queues the served items;
`ExposureLog` writes queued exposures in batches, in one transaction per batch, from a background
thread: when `max_rows` are queued, every `max_delay` seconds, and at shutdown (`close`).

Durability: a request does not wait for its exposure to reach the disk. A process killed hard
(kill -9, power loss) loses at most the exposures of the last `max_delay` seconds (or `max_rows`
rows); a normal shutdown flushes them. Exposures are analysis data, and a loss of that size is
spread across variants at random, so it does not bias the comparison (the SRM check watches for
losses that do). Events (clicks, ratings) stay durable before their 2xx.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recstack.ab import experiments as E
from recstack.itemlist import ItemList
from recstack.rerank import Rerank, rerank_candidates
from recstack.serve.store import Store

log = logging.getLogger("recstack.ab")


@dataclass(frozen=True)
class Arm:
    """A user's place in the running experiment: the experiment, the variant, forced or hashed."""

    experiment: E.Experiment
    variant: E.Variant
    forced: bool = False


def write_exposures(store: Store, rows: Sequence[tuple[int, str, str, str, str, float]]) -> int:
    """Insert (experiment id, variant, user, items JSON, positions JSON, time) rows in one transaction."""
    if not rows:
        return 0
    with store._tx() as cur:
        cur.executemany(store._sql("INSERT INTO exposures (experiment_id, variant, user_id, items, positions, at) "
                                   "VALUES (?, ?, ?, ?, ?, ?)"), list(rows))
    return len(rows)


class ExposureLog:
    """A buffered exposure writer (see the module docstring for the durability trade-off).

    background=False: nothing is written until `flush` (for in-process simulations)."""

    def __init__(self, store: Store, max_rows: int = 500, max_delay: float = 0.25, background: bool = True) -> None:
        self.store, self.max_rows, self.max_delay = store, max_rows, max_delay
        self._rows: list[tuple[int, str, str, Sequence[str], Sequence[int], float]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self.written = 0
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name="recstack-exposures", daemon=True)
            self._thread.start()

    def add(self, experiment_id: int, variant: str, user: str, items: Sequence[str],
            positions: Sequence[int], at: float | None = None) -> None:
        row = (experiment_id, variant, user, items, positions, time.time() if at is None else at)
        with self._lock:  # JSON encoding waits for the flush (off the request path)
            self._rows.append(row)
            full = len(self._rows) >= self.max_rows
        if full and self._thread is not None:
            self._wake.set()

    def pending(self) -> int:
        with self._lock:
            return len(self._rows)

    def flush(self) -> int:
        """Write every queued exposure now; returns how many were written."""
        with self._lock:
            rows, self._rows = self._rows, []
        try:
            n = write_exposures(self.store, [(e, v, u, json.dumps(list(items)), json.dumps([int(p) for p in pos]), at)
                                             for e, v, u, items, pos, at in rows])
        except Exception:
            log.exception("could not write %d exposures; they are kept for the next flush", len(rows))
            with self._lock:
                self._rows[:0] = rows
            return 0
        self.written += n
        return n

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.max_delay)
            self._wake.clear()
            if self.pending():
                self.flush()

    def close(self) -> None:
        """Stop the background thread and write what is queued."""
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()


class Experiments:
    """The running experiment as the service sees it: arms for users, exposures for served lists."""

    def __init__(self, store: Store, exposures: ExposureLog | None = None, refresh_s: float = 1.0) -> None:
        self.store = store
        self.exposures = exposures or ExposureLog(store)
        self.refresh_s = refresh_s
        self._current: E.Experiment | None = None
        self._alloc: Any = None
        self._loaded_at = -float("inf")
        self._lock = threading.Lock()

    def refresh(self) -> E.Experiment | None:
        """Re-read the running experiment from the store now."""
        exp = E.running(self.store)
        with self._lock:
            self._current, self._alloc = exp, (exp.allocation() if exp else None)
            self._loaded_at = time.monotonic()
        return exp

    def due(self) -> bool:
        """Whether the next `current` would re-read the store (an async caller re-reads in a thread first)."""
        return time.monotonic() - self._loaded_at > self.refresh_s

    def current(self) -> E.Experiment | None:
        if self.due():
            try:
                self.refresh()
            except Exception:  # the store being briefly away must not fail recommendations
                log.exception("could not read the running experiment; keeping the last one")
        return self._current

    def arm(self, user: str) -> Arm | None:
        """The user's variant in the running experiment, or None (no experiment, or outside its traffic)."""
        exp = self.current()
        if exp is None:
            return None
        name = self._alloc.variant_of(user)
        if name is None:
            return None
        return Arm(exp, exp.variant(name), forced=str(user) in exp.forced)

    def expose(self, arm: Arm, user: str, served: ItemList, at: float | None = None) -> None:
        """Queue the exposure of a served list (forced QA users are not logged)."""
        if arm.forced:
            return
        self.exposures.add(arm.experiment.id, arm.variant.name, str(user), served.ids.tolist(),
                           served.ranks.tolist(), at)

    def close(self) -> None:
        self.exposures.close()


def serve_list(state: Any, user: str, k: int, arm: Arm | None = None, **filters: Any) -> ItemList:
    """The list a user is served: `state.for_user` (a `ModelState`; the variant's model version is the
    caller's choice), re-ranked by the variant's setting, labelled with experiment and variant."""
    rerank = arm.variant.rerank if arm is not None else None
    if rerank is None:
        out = state.for_user(user, k, **filters)
    else:
        out = rerank_served(state, state.for_user(user, rerank.n_candidates(k), **filters), k, rerank)
    if arm is not None:
        out = out.with_extra(experiment=arm.experiment.id, variant=arm.variant.name)
    return out


def rerank_served(state: Any, wide: ItemList, k: int, rerank: Rerank) -> ItemList:
    """The best k of a served candidate list after re-ranking (on top of the user's own stored
    preferences, which the candidate list already follows). A list without scores (the popular
    fallback) is re-ranked by its order (rank-based relevance)."""
    rec = state.rec
    idx = np.array([rec.item_index[i] for i in wide.ids.tolist()], np.int64)
    raw = np.asarray(wide.scores, np.float64)
    rel = raw if np.isfinite(raw).all() else (len(raw) - np.arange(len(raw))).astype(np.float64)
    unit = None
    if rerank.diversity > 0:  # the service's unit vectors (genres or item embeddings) where it has them
        unit = state.unit_vectors(rerank.similarity) if hasattr(state, "unit_vectors") else rec._rerank_vectors(rerank)
    chosen = rerank_candidates(idx, rel, k, rerank, unit, rec.item_popularity,
                               rec._item_genres() if rerank.exclude_genres else None)
    score_of = dict(zip(idx.tolist(), raw.tolist()))
    vals = np.array([score_of[i] for i in chosen.tolist()], np.float64)
    keep = {"user": wide.user, "fallback": wide.fallback, "fallback_reason": wide.fallback_reason}
    return state._list(chosen, vals, wide.kind, **keep)

"""New events in external ids → an `Interactions` over extended vocabularies, and the merged log.

`Recommender.update` validates every row first (`parse_rows`), then builds the events over the
training vocabularies extended with new ids (known ids keep their indices, new ones are
appended in order of first appearance: `extend`), so a model's `partial_fit` sees indices only.
`merge` returns the training log with the events applied: a repeated (user, item) replaces the
earlier row; `concat_events` joins successive batches first (`Recommender` merges lazily).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from recstack.data.interactions import Interactions
from recstack.errors import DataError

FIELDS = ("user", "item", "rating", "timestamp")


def _number(value: Any, row: int, name: str) -> float:
    if isinstance(value, bool) or value is None or (isinstance(value, str) and not value.strip()):
        raise DataError(f"update row {row}: field {name!r} = {value!r} is not a number")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise DataError(f"update row {row}: field {name!r} = {value!r} is not a number") from None
    if not math.isfinite(out):
        raise DataError(f"update row {row}: field {name!r} = {value!r} is not a finite number")
    return out


def _id(value: Any, row: int, name: str) -> str:
    if value is None or isinstance(value, (bool, float)) or not str(value).strip():
        raise DataError(f"update row {row}: field {name!r} = {value!r} is not a valid id")
    return str(value).strip()


def parse_rows(rows: Iterable[Sequence[Any] | Mapping[str, Any]], now: int | None = None
               ) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Validate rows `(user, item, rating[, timestamp])` (tuples or dicts with those keys).

    Returns (user ids, item ids, ratings (n,) float32, timestamps (n,) int64); a missing
    timestamp is `now` (default: the current time). Any bad row raises `DataError` naming the
    row (1-based) and the field, before anything is applied."""
    now = int(time.time()) if now is None else now
    users, items, ratings, stamps = [], [], [], []
    for n, row in enumerate(rows, 1):
        if isinstance(row, Mapping):
            missing = [f for f in FIELDS[:3] if f not in row]
            values = [row.get(f) for f in FIELDS]
            has_ts = row.get("timestamp") is not None
        elif isinstance(row, (list, tuple)):
            missing = list(FIELDS[len(row):3])
            if len(row) > 4:
                raise DataError(f"update row {n}: {len(row)} fields; expected (user, item, rating[, timestamp])")
            values = [*row, *([None] * (4 - len(row)))]
            has_ts = len(row) == 4 and row[3] is not None
        else:
            raise DataError(f"update row {n}: expected a (user, item, rating[, timestamp]) row, "
                            f"got {type(row).__name__}")
        if missing:
            raise DataError(f"update row {n}: missing field {missing[0]!r}")
        users.append(_id(values[0], n, "user"))
        items.append(_id(values[1], n, "item"))
        ratings.append(_number(values[2], n, "rating"))
        if has_ts:
            ts = _number(values[3], n, "timestamp")
            if ts != int(ts):
                raise DataError(f"update row {n}: field 'timestamp' = {values[3]!r} is not a whole number")
            stamps.append(int(ts))
        else:
            stamps.append(now)
    if not users:
        raise DataError("no update rows given")
    return users, items, np.asarray(ratings, np.float32), np.asarray(stamps, np.int64)


def _extended(vocab: np.ndarray, ids: list[str]) -> np.ndarray:
    """`vocab` with the ids it lacks appended in first-seen order. NumPy picks the string width
    of the concatenation, so a new id longer than every known one is never truncated."""
    known = set(vocab.tolist())
    new = list(dict.fromkeys(i for i in ids if i not in known))
    return np.concatenate([vocab.astype(str), np.asarray(new, dtype=str)])


def _grow_frame(frame: pd.DataFrame | None, ids: np.ndarray) -> pd.DataFrame | None:
    """Feature rows for appended ids: missing values (a title = the id, no genres)."""
    if frame is None or len(frame) >= len(ids):
        return frame
    extra = pd.DataFrame(index=range(len(frame), len(ids)))
    out = pd.concat([frame, extra], ignore_index=True)
    new = np.arange(len(frame), len(ids))
    if "title" in out:
        out.loc[new, "title"] = ids[new]
    if "genres" in out:
        out["genres"] = out["genres"].map(lambda g: g if isinstance(g, list) else [])
    for col in ("year", "age"):
        if col in out:
            out[col] = pd.to_numeric(out[col], errors="coerce").astype("Int64")
    return out


def extend(train: Interactions, users: list[str], items: list[str], ratings: np.ndarray,
           timestamps: np.ndarray) -> Interactions:
    """The events as an `Interactions` over `train`'s vocabularies extended with their new ids."""
    uvocab = _extended(train.user_ids, users)
    ivocab = _extended(train.item_ids, items)
    return Interactions.from_arrays(users, items, ratings, timestamps, user_ids=uvocab, item_ids=ivocab,
                                    name=train.name,
                                    item_features=_grow_frame(train.item_features, ivocab),
                                    user_features=_grow_frame(train.user_features, uvocab))


def concat_events(batches: Sequence[Interactions]) -> Interactions:
    """Successive update batches as one, in order, over the last (largest) batch's vocabularies."""
    last = batches[-1]
    if len(batches) == 1:
        return last
    return replace(last, user=np.concatenate([b.user for b in batches]),
                   item=np.concatenate([b.item for b in batches]),
                   rating=np.concatenate([b.rating for b in batches]),
                   timestamp=np.concatenate([b.timestamp for b in batches]), meta={})


def merge(train: Interactions, events: Interactions) -> Interactions:
    """`train`'s rows (re-indexed onto `events`' vocabularies, which extend them) plus the events;
    a (user, item) pair present in both keeps only the event (the last event when repeated).

    Only the rows of the events' users are searched for repeats, so a small batch costs
    O(len(train)) vectorised work, not a sort of the whole log."""
    n_items = events.n_items
    ev_key = events.user.astype(np.int64) * n_items + events.item
    _, last = np.unique(ev_key[::-1], return_index=True)
    ev_rows = np.sort(len(ev_key) - 1 - last)  # the last event of each pair, in log order
    cand = np.flatnonzero(np.isin(train.user, np.unique(events.user)))
    tr_key = train.user[cand].astype(np.int64) * n_items + train.item[cand]
    keep = np.ones(len(train), bool)
    keep[cand[np.isin(tr_key, ev_key)]] = False

    def join(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.concatenate([a[keep], b[ev_rows]])

    return replace(events, user=join(train.user, events.user), item=join(train.item, events.item),
                   rating=join(train.rating, events.rating), timestamp=join(train.timestamp, events.timestamp),
                   meta=dict(train.meta))

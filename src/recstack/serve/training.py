"""Training data from the event store: `recstack train MODEL --db URL` (optionally plus the base data).

Rating models learn from rating events (a user's latest rating of an item wins). Ranking models
also learn from clicks and views, each event type with a weight (`event_weights`, default
rating=1 click=0.5 view=0.25 impression=0); a (user, item) pair keeps its largest weight.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from recstack.data.interactions import Interactions
from recstack.errors import ConfigError, RecstackError
from recstack.serve.store import EVENT_TYPES, Store

DEFAULT_WEIGHTS: dict[str, float] = {"rating": 1.0, "click": 0.5, "view": 0.25, "impression": 0.0}


def parse_event_weights(text: str | None) -> dict[str, float]:
    """"click=0.5,view=0.2" → weights per event type (unnamed types keep their defaults)."""
    weights = dict(DEFAULT_WEIGHTS)
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in EVENT_TYPES:
            raise ConfigError(f"event_weights: {part.strip()!r}: expected TYPE=WEIGHT with TYPE one of "
                              f"{', '.join(EVENT_TYPES)}")
        try:
            weights[name] = float(value)
        except ValueError:
            raise ConfigError(f"event_weights: {name}={value!r} is not a number") from None
    return weights


def events_frame(store: Store) -> tuple[pd.DataFrame, int]:
    """(frame of stored events: user, item, type, value, timestamp, seq; the highest seq read)."""
    rows = [e for batch in store.iter_events() for e in batch if e.type in EVENT_TYPES]
    frame = pd.DataFrame({"user": [e.user for e in rows], "item": [e.item for e in rows],
                          "type": [e.type for e in rows],
                          "value": [np.nan if e.value is None else e.value for e in rows],
                          "timestamp": [e.timestamp or 0 for e in rows], "seq": [e.seq for e in rows]})
    return frame, (max(frame["seq"]) if len(frame) else 0)


def training_data(store: Store, explicit: bool, base: Interactions | None = None,
                  weights: dict[str, float] | None = None) -> tuple[Interactions, int]:
    """Interactions for training from stored events (plus `base` rows, which stored events override).

    Returns the data and the highest event sequence number it includes (written next to the model
    as events.json, so a service applies only newer events on top of it)."""
    frame, max_seq = events_frame(store)
    w = weights or DEFAULT_WEIGHTS
    if explicit:
        frame = frame[(frame["type"] == "rating") & frame["value"].notna()].copy()
        frame["rating"] = frame["value"]
    else:
        frame = frame.copy()
        frame["rating"] = frame["type"].map(w).astype(float)
        frame = frame[frame["rating"] > 0]
    frame = frame.sort_values("seq")
    if explicit:
        frame = frame.drop_duplicates(["user", "item"], keep="last")
    else:
        frame = frame.sort_values(["rating", "seq"]).drop_duplicates(["user", "item"], keep="last")
    parts = [frame[["user", "item", "rating", "timestamp"]]]
    if base is not None:
        b = base.to_frame()
        if not explicit:
            b["rating"] = w["rating"]
        keys = set(zip(frame["user"], frame["item"]))
        keep = [(u, i) not in keys for u, i in zip(b["user"], b["item"])]
        parts.insert(0, b[keep])
    data = pd.concat(parts, ignore_index=True)
    if data.empty:
        raise RecstackError(f"{store.url}: no stored events to train on")
    item_ids = None
    item_features = None
    if base is not None:
        extra = [i for i in pd.unique(frame["item"]) if i not in base.item_index]
        item_ids = np.concatenate([base.item_ids, np.asarray(extra, str)])
        if base.item_features is not None and not extra:
            item_features = base.item_features
    out = Interactions.from_arrays(data["user"].to_numpy(str), data["item"].to_numpy(str),
                                   data["rating"].to_numpy(np.float32), data["timestamp"].to_numpy(np.int64),
                                   item_ids=item_ids, name=f"{base.name}+events" if base is not None else "events",
                                   item_features=item_features)
    return out, int(max_seq)


def write_events_marker(model_dir: str | Path, max_seq: int, url: str) -> None:
    """Record in a model folder which stored events its training data included."""
    from recstack.serve.service import EVENTS_FILE

    safe_url = url.split("@")[-1] if "://" in url else url  # no credentials in the folder
    (Path(model_dir) / EVENTS_FILE).write_text(json.dumps({"max_seq": max_seq, "db": safe_url}))

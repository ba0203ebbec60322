"""The event store on SQLite and on a real PostgreSQL server: schema, idempotency, verbatim ids."""

from __future__ import annotations

import pandas as pd
import pytest

from recstack.errors import ConfigError
from recstack.serve.store import SCHEMA_VERSION, open_store

INJECTIONS = ["1'; DROP TABLE events; --", "x\" OR \"1\"=\"1", "Robert'); DELETE FROM users;--", "%s ? $1 \\"]


def test_store_round_trip(db_url, tmp_path):
    store = open_store(db_url)
    try:
        assert store.schema_version() == SCHEMA_VERSION
        assert store.migrate() == SCHEMA_VERSION  # migrating again is a no-op
        batch = [{"event_id": "e1", "item": "50", "type": "rating", "value": 4.5, "timestamp": 1700000000},
                 {"event_id": "e2", "item": "51", "type": "click", "value": None, "timestamp": None}]
        assert store.add_events("u1", batch) == (2, 0)
        assert store.add_events("u1", batch) == (0, 2)  # a retried batch is stored once
        assert store.add_events("u2", batch[:1]) == (1, 0)  # event ids are per user
        events = store.user_events("u1")
        assert [(e.event_id, e.item, e.type, e.value, e.timestamp) for e in events] == [
            ("e1", "50", "rating", 4.5, 1700000000), ("e2", "51", "click", None, None)]
        seqs = [e.seq for e in store.events_after(0)]
        assert seqs == sorted(seqs) and store.max_seq() == seqs[-1]
        assert store.count_events() == 3
        assert store.delete_user("u1") == 2
        assert store.count_events() == 1 and store.user_events("u1")[0].type == "deleted"
        assert store.events_after(seqs[-1])[-1].type == "deleted"  # workers learn of deletions
        out = tmp_path / "events.parquet"
        assert store.export_parquet(out) == 1
        frame = pd.read_parquet(out)
        assert frame[["event_id", "user", "item", "type"]].values.tolist() == [["e1", "u2", "50", "rating"]]
    finally:
        store.close()


def test_injection_strings_are_stored_verbatim(db_url):
    store = open_store(db_url)
    try:
        for n, text in enumerate(INJECTIONS):
            store.add_events(text, [{"event_id": text, "item": text, "type": "rating", "value": float(n)}])
            store.put_item(text, {"title": text})
        for n, text in enumerate(INJECTIONS):
            (e,) = [e for e in store.user_events(text) if e.type == "rating"]
            assert (e.user, e.item, e.event_id, e.value) == (text, text, text, float(n))
        assert store.items()[INJECTIONS[0]] == {"title": INJECTIONS[0]}
        assert store.count_events() == len(INJECTIONS)  # nothing dropped, nothing harmed
    finally:
        store.close()


def test_bad_urls_are_named():
    with pytest.raises(ConfigError, match="mysql://x"):
        open_store("mysql://x")
    with pytest.raises(ConfigError, match="names a file"):
        open_store("sqlite:///")


def test_preferences_round_trip(db_url):
    store = open_store(db_url)
    try:
        assert store.preferences() == {} and store.preferences(["u1"]) == {}
        before = store.max_seq()
        store.put_preferences("u1", {"exclude_genres": ["Horror"], "diversity": 0.5})
        store.put_preferences("u1", {"exclude_genres": ["Comedy"], "diversity": 0.25})  # replaces
        store.put_preferences("u2", {"novelty": 1.0})
        assert store.preferences(["u1", "nobody"]) == {"u1": {"exclude_genres": ["Comedy"], "diversity": 0.25}}
        assert set(store.preferences()) == {"u1", "u2"}
        # each change is a control event on the sequence (workers reload that user's preferences)
        changes = [(e.user, e.type) for e in store.events_after(before)]
        assert changes == [("u1", "prefs"), ("u1", "prefs"), ("u2", "prefs")]
        assert store.count_events() == 0  # not a real event: not counted, exported or trained on
        store.delete_user("u1")
        assert set(store.preferences()) == {"u2"}
    finally:
        store.close()

"""The event store: one small interface (events, users, items) over SQLite or PostgreSQL.

`open_store(url)` picks the backend by URL, SQLAlchemy-style:

    sqlite:////abs/path/events.db      embedded default; WAL journal, synchronous=FULL (durable commits)
    postgresql://USER@HOST:PORT/DB     psycopg 3 with a connection pool (the [serve] extra)

Both run the same parameterised SQL (written with `?` placeholders; PostgreSQL gets `%s`). The
project creates and migrates its own schema: `schema_version` holds the applied version and
`MIGRATIONS[n]` takes a database from version n to n+1. Every event gets a sequence number
(`seq`, increasing in commit order per connection) so that each worker of a service can apply the
events it has not seen yet, in order. `(user_id, event_id)` is unique: a retried event is stored
once.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from recstack.errors import ConfigError, MissingExtraError

EVENT_TYPES: tuple[str, ...] = ("rating", "click", "view", "impression")

# each entry takes the schema from version n to n+1; {serial} and {float} differ per backend
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE events (
            seq {serial},
            event_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            item_id TEXT NOT NULL,
            type TEXT NOT NULL,
            value {float},
            ts BIGINT,
            stored_at {float} NOT NULL,
            UNIQUE (user_id, event_id))""",
        "CREATE INDEX events_user ON events (user_id, seq)",
        "CREATE TABLE users (user_id TEXT PRIMARY KEY, created_at {float} NOT NULL)",
        "CREATE TABLE items (item_id TEXT PRIMARY KEY, data TEXT NOT NULL, updated_at {float} NOT NULL)",
    ],
    [  # per-user re-ranking preferences (excluded genres, diversity λ, novelty ν, similarity kind)
        "CREATE TABLE preferences (user_id TEXT PRIMARY KEY, data TEXT NOT NULL, updated_at {float} NOT NULL)",
    ],
    [  # A/B experiments (recstack.ab): definitions, forced (QA) users, logged exposures
        """CREATE TABLE experiments (
            id {serial},
            name TEXT NOT NULL UNIQUE,
            salt TEXT NOT NULL,
            variants TEXT NOT NULL,
            metric TEXT NOT NULL,
            window_s {float} NOT NULL,
            planned_users INTEGER NOT NULL,
            status TEXT NOT NULL,
            created_at {float} NOT NULL,
            started_at {float},
            stopped_at {float})""",
        """CREATE TABLE experiment_forced (
            experiment_id BIGINT NOT NULL,
            user_id TEXT NOT NULL,
            variant TEXT NOT NULL,
            PRIMARY KEY (experiment_id, user_id))""",
        """CREATE TABLE exposures (
            seq {serial},
            experiment_id BIGINT NOT NULL,
            variant TEXT NOT NULL,
            user_id TEXT NOT NULL,
            items TEXT NOT NULL,
            positions TEXT NOT NULL,
            at {float} NOT NULL)""",
        "CREATE INDEX exposures_experiment ON exposures (experiment_id, user_id)",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class Event:
    """One stored event: its sequence number, ids, type, value (rating or weight) and timestamp."""

    seq: int
    event_id: str
    user: str
    item: str
    type: str
    value: float | None
    timestamp: int | None


class Store:
    """Events, users and items behind one interface; subclasses supply connections and dialect."""

    url: str
    dialect: str = "sqlite"
    serial: str = "INTEGER PRIMARY KEY AUTOINCREMENT"
    float_type: str = "REAL"

    # ---- backend hooks -------------------------------------------------------------------
    @contextmanager
    def _tx(self, write: bool = True) -> Iterator[Any]:  # pragma: no cover - overridden
        raise NotImplementedError
        yield

    def _serialise_writes(self, cur: Any) -> None:
        """Make event sequence numbers follow commit order (PostgreSQL: a transaction lock)."""

    def _sql(self, sql: str) -> str:
        return sql

    def close(self) -> None:
        """Release connections."""

    # ---- schema --------------------------------------------------------------------------
    def migrate(self) -> int:
        """Create or upgrade the schema to `SCHEMA_VERSION`; returns the version found before."""
        with self._tx() as cur:
            self._serialise_writes(cur)
            cur.execute(self._sql("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"))
            cur.execute(self._sql("SELECT version FROM schema_version"))
            row = cur.fetchone()
            if row is None:
                cur.execute(self._sql("INSERT INTO schema_version (version) VALUES (0)"))
                found = 0
            else:
                found = int(row[0])
            if found > SCHEMA_VERSION:
                raise ConfigError(f"{self.url}: schema version {found} is newer than this recstack "
                                  f"({SCHEMA_VERSION}); upgrade recstack")
            for version in range(found, SCHEMA_VERSION):
                for statement in MIGRATIONS[version]:
                    cur.execute(self._sql(statement.format(serial=self.serial, float=self.float_type)))
                cur.execute(self._sql("UPDATE schema_version SET version = ?"), (version + 1,))
        return found

    def schema_version(self) -> int:
        with self._tx(write=False) as cur:
            cur.execute(self._sql("SELECT version FROM schema_version"))
            return int(cur.fetchone()[0])

    # ---- events --------------------------------------------------------------------------
    def add_events(self, user: str, events: Sequence[dict[str, Any]]) -> tuple[int, int]:
        """Store a user's events in one durable transaction; (stored, duplicates) counts.

        Each event: event_id, item, type, value (may be None), timestamp (may be None). An
        (user, event_id) already stored is skipped, so a retried batch is harmless.
        """
        (result,) = self.add_event_groups([(user, events)])
        if isinstance(result, Exception):
            raise result
        return result

    def add_event_groups(self, batches: Sequence[tuple[str, Sequence[dict[str, Any]]]]
                         ) -> list[tuple[int, int] | Exception]:
        """Several users' batches in one durable transaction: one commit (one fsync) for all of
        them, which is what lets concurrent event posts share the cost (group commit, see
        `GroupCommit`). Per batch (stored, duplicates), as `add_events`; with several batches each
        is stored whole or not at all (a savepoint each), and one that fails gets its exception in
        its place while the others are stored."""
        now = time.time()
        results: list[tuple[int, int] | Exception] = []
        isolate = len(batches) > 1
        add_user = self._sql("INSERT INTO users (user_id, created_at) VALUES (?, ?) ON CONFLICT (user_id) DO NOTHING")
        add_event = self._sql("INSERT INTO events (event_id, user_id, item_id, type, value, ts, stored_at) "
                              "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, event_id) DO NOTHING")
        with self._tx() as cur:
            self._serialise_writes(cur)
            for user, events in batches:
                if isolate:
                    cur.execute("SAVEPOINT batch")
                try:
                    cur.execute(add_user, (user, now))
                    stored = 0
                    for e in events:
                        cur.execute(add_event, (e["event_id"], user, e["item"], e["type"], e.get("value"),
                                                e.get("timestamp"), now))
                        stored += max(cur.rowcount, 0)
                except Exception as exc:
                    if not isolate:
                        raise
                    cur.execute("ROLLBACK TO SAVEPOINT batch")
                    cur.execute("RELEASE SAVEPOINT batch")
                    results.append(exc)
                    continue
                if isolate:
                    cur.execute("RELEASE SAVEPOINT batch")
                results.append((stored, len(events) - stored))
        return results

    def max_seq(self) -> int:
        """The highest event sequence number stored (0 when none)."""
        with self._tx(write=False) as cur:
            cur.execute("SELECT COALESCE(MAX(seq), 0) FROM events")
            return int(cur.fetchone()[0])

    def change_token(self) -> Any:
        """A value that differs whenever events were committed (by any process) since it was last
        read on this thread: the cheap check a worker makes before every answer. This default is
        the highest sequence number; SQLite answers from its shared-memory WAL index instead."""
        return self.max_seq()

    def events_after(self, seq: int, limit: int = 100_000) -> list[Event]:
        """Events with sequence number > `seq`, in order (at most `limit`)."""
        return self._events("WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit))

    def user_events(self, user: str) -> list[Event]:
        """All stored events of `user`, in order."""
        return self._events("WHERE user_id = ? ORDER BY seq", (user,))

    def _events(self, where: str, params: tuple[Any, ...]) -> list[Event]:
        with self._tx(write=False) as cur:
            cur.execute(self._sql("SELECT seq, event_id, user_id, item_id, type, value, ts FROM events " + where),
                        params)
            return [Event(int(r[0]), r[1], r[2], r[3], r[4], None if r[5] is None else float(r[5]),
                          None if r[6] is None else int(r[6])) for r in cur.fetchall()]

    def count_events(self, user: str | None = None) -> int:
        """How many events (of the four real types) are stored, for everyone or one user."""
        real = "type IN ('rating', 'click', 'view', 'impression')"
        with self._tx(write=False) as cur:
            if user is None:
                cur.execute(self._sql(f"SELECT COUNT(*) FROM events WHERE {real}"))
            else:
                cur.execute(self._sql(f"SELECT COUNT(*) FROM events WHERE user_id = ? AND {real}"), (user,))
            return int(cur.fetchone()[0])

    def iter_events(self, batch: int = 50_000) -> Iterator[list[Event]]:
        """Every stored event in sequence order, in batches (for export and training)."""
        last = 0
        while True:
            rows = self.events_after(last, batch)
            if not rows:
                return
            yield rows
            last = rows[-1].seq

    # ---- users ---------------------------------------------------------------------------
    def add_user(self, user: str) -> bool:
        """Record a user; False when it was already there."""
        with self._tx() as cur:
            cur.execute(self._sql("INSERT INTO users (user_id, created_at) VALUES (?, ?) "
                                  "ON CONFLICT (user_id) DO NOTHING"), (user, time.time()))
            return cur.rowcount > 0

    def has_user(self, user: str) -> bool:
        with self._tx(write=False) as cur:
            cur.execute(self._sql("SELECT 1 FROM users WHERE user_id = ?"), (user,))
            return cur.fetchone() is not None

    def delete_user(self, user: str) -> int:
        """Remove a user and all their events; returns how many events were removed.

        A tombstone event (type "deleted") takes the next sequence number, so every worker of a
        service learns of the deletion the way it learns of new events."""
        with self._tx() as cur:
            self._serialise_writes(cur)
            cur.execute(self._sql("DELETE FROM events WHERE user_id = ?"), (user,))
            removed = max(cur.rowcount, 0)
            cur.execute(self._sql("DELETE FROM users WHERE user_id = ?"), (user,))
            cur.execute(self._sql("DELETE FROM preferences WHERE user_id = ?"), (user,))
            cur.execute(self._sql(
                "INSERT INTO events (event_id, user_id, item_id, type, value, ts, stored_at) "
                "VALUES (?, ?, '', 'deleted', NULL, NULL, ?)"), (f"deleted-{time.time_ns()}", user, time.time()))
        return removed

    # ---- items ---------------------------------------------------------------------------
    def put_item(self, item: str, data: dict[str, Any]) -> bool:
        """Add or replace an item's metadata (title, genres, year, feature columns); True if new."""
        text = json.dumps(data, sort_keys=True)
        with self._tx() as cur:
            self._serialise_writes(cur)
            cur.execute(self._sql("SELECT 1 FROM items WHERE item_id = ?"), (item,))
            new = cur.fetchone() is None
            cur.execute(self._sql("INSERT INTO items (item_id, data, updated_at) VALUES (?, ?, ?) "
                                  "ON CONFLICT (item_id) DO UPDATE SET data = excluded.data, "
                                  "updated_at = excluded.updated_at"), (item, text, time.time()))
            # a control event tells every worker to reload item metadata
            cur.execute(self._sql(
                "INSERT INTO events (event_id, user_id, item_id, type, value, ts, stored_at) "
                "VALUES (?, '', ?, 'item', NULL, NULL, ?)"), (f"item-{time.time_ns()}", item, time.time()))
        return new

    def items(self) -> dict[str, dict[str, Any]]:
        """Every stored item's metadata, by item id."""
        with self._tx(write=False) as cur:
            cur.execute(self._sql("SELECT item_id, data FROM items"))
            return {r[0]: json.loads(r[1]) for r in cur.fetchall()}

    # ---- preferences ---------------------------------------------------------------------
    def put_preferences(self, user: str, data: dict[str, Any]) -> None:
        """Replace a user's re-ranking preferences (a JSON object). A control event ("prefs") takes
        the next sequence number, so every worker of a service reloads them as it applies events."""
        text = json.dumps(data, sort_keys=True)
        now = time.time()
        with self._tx() as cur:
            self._serialise_writes(cur)
            cur.execute(self._sql("INSERT INTO preferences (user_id, data, updated_at) VALUES (?, ?, ?) "
                                  "ON CONFLICT (user_id) DO UPDATE SET data = excluded.data, "
                                  "updated_at = excluded.updated_at"), (user, text, now))
            cur.execute(self._sql(
                "INSERT INTO events (event_id, user_id, item_id, type, value, ts, stored_at) "
                "VALUES (?, ?, '', 'prefs', NULL, NULL, ?)"), (f"prefs-{time.time_ns()}", user, now))

    def preferences(self, users: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        """Stored preferences by user id: of every user, or of `users` only (absent ones are left out)."""
        with self._tx(write=False) as cur:
            if users is None:
                cur.execute(self._sql("SELECT user_id, data FROM preferences"))
                rows = cur.fetchall()
            else:
                rows = []
                for user in users:
                    cur.execute(self._sql("SELECT user_id, data FROM preferences WHERE user_id = ?"), (user,))
                    rows.extend(cur.fetchall())
            return {r[0]: json.loads(r[1]) for r in rows}

    # ---- export --------------------------------------------------------------------------
    def export_parquet(self, path: str | Path) -> int:
        """Write one row per stored event (seq, event_id, user, item, type, value, timestamp)."""
        import pandas as pd

        rows = [e for batch in self.iter_events() for e in batch if e.type in EVENT_TYPES]
        frame = pd.DataFrame({
            "seq": pd.array([e.seq for e in rows], "int64"),
            "event_id": pd.array([e.event_id for e in rows], "string"),
            "user": pd.array([e.user for e in rows], "string"),
            "item": pd.array([e.item for e in rows], "string"),
            "type": pd.array([e.type for e in rows], "string"),
            "value": pd.array([e.value for e in rows], "Float64"),
            "timestamp": pd.array([e.timestamp for e in rows], "Int64"),
        })
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(path, index=False)
        return len(frame)


class SQLiteStore(Store):
    """SQLite in WAL mode with synchronous=FULL: a commit is on disk before it returns."""

    dialect = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._writes = 0  # write transactions committed through this store object

    def change_token(self) -> tuple[int, int, int]:
        # PRAGMA data_version changes when another connection (any process) commits; our own
        # writes are counted as well. A token from another thread's connection never compares equal.
        conn = self._conn()
        return id(conn), conn.execute("PRAGMA data_version").fetchone()[0], self._writes

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def _tx(self, write: bool = True) -> Iterator[sqlite3.Cursor]:
        conn = self._conn()
        cur = conn.cursor()
        if write:
            cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
        except BaseException:
            conn.rollback()
            raise
        else:
            conn.commit()
            if write:
                with self._lock:
                    self._writes += 1
        finally:
            cur.close()

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()


class PostgresStore(Store):
    """PostgreSQL through psycopg 3 and a connection pool; each call is one transaction."""

    dialect = "postgresql"
    serial = "BIGSERIAL PRIMARY KEY"
    float_type = "DOUBLE PRECISION"

    def __init__(self, url: str, min_size: int = 1, max_size: int = 8) -> None:
        try:
            from psycopg_pool import ConnectionPool
        except ImportError:
            raise MissingExtraError("PostgreSQL needs the [serve] extra: pip install -e '.[serve]'") from None
        self.url = url
        self.pool = ConnectionPool(url, min_size=min_size, max_size=max_size, open=True,
                                   kwargs={"autocommit": False})
        self.pool.wait(timeout=30.0)

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s")

    def _serialise_writes(self, cur: Any) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(7240311)")

    @contextmanager
    def _tx(self, write: bool = True) -> Iterator[Any]:
        with self.pool.connection() as conn:  # commits on success, rolls back on error
            with conn.cursor() as cur:
                yield cur

    def close(self) -> None:
        self.pool.close()


class GroupCommit:
    """Event batches from concurrent requests, committed together by one writer thread.

    `await add(user, events)` returns once that batch is durably committed, like
    `Store.add_events`. While a commit is running, newly arriving batches wait and then go in the
    next transaction together (at most `max_batches` at a time): under load one fsync serves many
    requests instead of each paying its own, one after another; a lone request commits at once."""

    def __init__(self, store: Store, max_batches: int = 256) -> None:
        self.store, self.max_batches = store, max_batches
        self._pending: list[tuple[str, Sequence[dict[str, Any]], asyncio.Future]] = []
        self._writer: asyncio.Task | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="recstack-commit")

    async def add(self, user: str, events: Sequence[dict[str, Any]]) -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._pending.append((user, events, done))
        if self._writer is None:
            self._writer = loop.create_task(self._write())
        return await done

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                group = self._pending[:self.max_batches]
                del self._pending[:self.max_batches]
                try:
                    results = await loop.run_in_executor(self._thread, self.store.add_event_groups,
                                                         [(user, events) for user, events, _ in group])
                except Exception as exc:  # the transaction failed: nobody's batch is stored
                    results = [exc] * len(group)
                for (_, _, done), result in zip(group, results):
                    if done.done():  # the request went away; its batch is stored all the same
                        continue
                    if isinstance(result, Exception):
                        done.set_exception(result)
                    else:
                        done.set_result(result)
        finally:
            self._writer = None

    def close(self) -> None:
        self._thread.shutdown(wait=True)


def open_store(url: str) -> Store:
    """A migrated store for `url` (sqlite:////abs/path.db or postgresql://user@host:port/db)."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        raw = unquote(url[len("sqlite:///"):]) if url.startswith("sqlite:///") else ""
        if not raw or raw == "/":
            raise ConfigError(f"--db {url!r}: a SQLite URL names a file: sqlite:////abs/path/events.db")
        store: Store = SQLiteStore(raw)
    elif parsed.scheme in ("postgresql", "postgres"):
        store = PostgresStore(url)
    else:
        raise ConfigError(f"--db {url!r}: unknown database URL; use sqlite:////abs/path/events.db "
                          "or postgresql://USER@HOST:PORT/DB")
    store.migrate()
    return store

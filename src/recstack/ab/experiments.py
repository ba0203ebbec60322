"""Experiments in the store: definitions, their life cycle (draft → running → stopped), forced users.

An experiment has a name, a hashing salt, two or more variants and a primary metric:

- a variant has a name, a traffic share, and what it serves: a registered model version
  (`model_version`, None = whatever version is active) and/or a re-ranking setting (`rerank`:
  diversity λ, novelty ν, excluded genres; see `recstack.rerank`). The first variant is the
  control the others are compared with.
- the metric is `ctr` (did the user click an item they were shown, within `window_s` of being
  shown it), `mean_rating` (the user's mean rating of items they were shown, rated within the
  window) or `conversion:<event type>` (did the user send an event of that type within the
  window after an exposure).
- `planned_users`: users per variant the experiment was planned for (`recstack ab plan`); the
  report gives no verdict before every variant has them (the peeking policy).

At most one experiment runs at a time, so that a user's list is decided by one experiment. All
SQL is parameterised and runs on both store backends.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from recstack.ab.assign import Allocation
from recstack.errors import ConfigError, UnknownIdError
from recstack.rerank import Rerank
from recstack.serve.store import EVENT_TYPES, Store

STATUSES = ("draft", "running", "stopped")
DEFAULT_WINDOW_S = 24 * 3600.0


@dataclass(frozen=True)
class Variant:
    """One arm: name, traffic share, model version (None: the active one), re-ranking (None: none)."""

    name: str
    share: float
    model_version: int | None = None
    rerank: Rerank | None = None

    def to_dict(self) -> dict[str, Any]:
        rr = None
        if self.rerank is not None:
            rr = {"diversity": self.rerank.diversity, "novelty": self.rerank.novelty,
                  "exclude_genres": list(self.rerank.exclude_genres), "similarity": self.rerank.similarity}
        return {"name": self.name, "share": self.share, "model_version": self.model_version, "rerank": rr}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Variant:
        where = f"variant {d.get('name')!r}"
        unknown = set(d) - {"name", "share", "model_version", "rerank"}
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}; known: name, share, model_version, rerank")
        name = d.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            raise ConfigError(f"variant name {name!r}: must be a non-empty string of at most 100 characters")
        share = d.get("share")
        if not isinstance(share, (int, float)) or isinstance(share, bool) or not 0 < float(share) <= 1:
            raise ConfigError(f"{where}: share={share!r} must be a number in (0, 1]")
        version = d.get("model_version")
        if version is not None and (not isinstance(version, int) or isinstance(version, bool) or version < 1):
            raise ConfigError(f"{where}: model_version={version!r} must be a registered version number (≥ 1)")
        rr = d.get("rerank")
        rerank = None
        if rr is not None:
            if not isinstance(rr, Mapping):
                raise ConfigError(f"{where}: rerank must be an object (diversity, novelty, exclude_genres)")
            bad = set(rr) - {"diversity", "novelty", "exclude_genres", "similarity"}
            if bad:
                raise ConfigError(f"{where}: unknown rerank field(s) {sorted(bad)}")
            try:
                rerank = Rerank(float(rr.get("diversity", 0.0)), float(rr.get("novelty", 0.0)),
                                tuple(str(g) for g in rr.get("exclude_genres") or ()),
                                str(rr.get("similarity", "genre")))
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{where}: rerank {dict(rr)!r}: {exc}") from None
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            if not rerank.active:
                rerank = None
        return cls(name.strip(), float(share), version, rerank)


@dataclass(frozen=True)
class Experiment:
    """A stored experiment (see the module docstring)."""

    id: int
    name: str
    salt: str
    variants: tuple[Variant, ...]
    metric: str
    window_s: float
    planned_users: int
    status: str
    created_at: float
    started_at: float | None = None
    stopped_at: float | None = None
    forced: Mapping[str, str] = field(default_factory=dict)

    def allocation(self) -> Allocation:
        return Allocation(self.salt, tuple((v.name, v.share) for v in self.variants), dict(self.forced))

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise UnknownIdError(f"experiment {self.name!r} has no variant {name!r}; "
                             f"variants: {[v.name for v in self.variants]}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["variants"] = [v.to_dict() for v in self.variants]
        d["forced"] = dict(self.forced)
        return d


def check_metric(metric: str) -> str:
    """`ctr`, `mean_rating` or `conversion:<event type>`; a clear error otherwise."""
    if metric in ("ctr", "mean_rating"):
        return metric
    kind, _, event = metric.partition(":")
    if kind == "conversion" and event in EVENT_TYPES:
        return metric
    raise ConfigError(f"metric {metric!r}: use ctr, mean_rating or conversion:<event type> "
                      f"(event types: {', '.join(EVENT_TYPES)})")


def parse_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Validate an experiment definition (the admin API's and the CLI's body) into stored columns."""
    known = {"name", "variants", "metric", "window_hours", "planned_users", "salt"}
    unknown = set(spec) - known
    if unknown:
        raise ConfigError(f"unknown experiment field(s) {sorted(unknown)}; known: {sorted(known)}")
    name = spec.get("name")
    numeric = isinstance(name, str) and name.strip().isascii() and name.strip().isdigit()
    if not isinstance(name, str) or not name.strip() or len(name) > 200 or numeric:
        raise ConfigError(f"experiment name {name!r}: must be a non-empty string (not a number), ≤ 200 characters")
    raw = spec.get("variants")
    if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)) or len(raw) < 2:
        raise ConfigError("variants: an experiment needs a list of at least two variants")
    variants = tuple(Variant.from_dict(v if isinstance(v, Mapping) else {"name": v}) for v in raw)
    salt = spec.get("salt") or secrets.token_hex(8)
    if not isinstance(salt, str) or len(salt) > 100:
        raise ConfigError(f"salt {salt!r}: must be a string of at most 100 characters")
    Allocation(salt, tuple((v.name, v.share) for v in variants))  # shares and names checked there
    metric = check_metric(str(spec.get("metric", "ctr")))
    hours = spec.get("window_hours", DEFAULT_WINDOW_S / 3600)
    if not isinstance(hours, (int, float)) or isinstance(hours, bool) or not 0 < float(hours) <= 24 * 365:
        raise ConfigError(f"window_hours={hours!r}: must be a number of hours in (0, 8760]")
    planned = spec.get("planned_users")
    if not isinstance(planned, int) or isinstance(planned, bool) or planned < 1:
        raise ConfigError(f"planned_users={planned!r}: users per variant the experiment is planned for "
                          "(an integer ≥ 1; `recstack ab plan` computes it)")
    return {"name": name.strip(), "salt": salt, "variants": variants, "metric": metric,
            "window_s": float(hours) * 3600.0, "planned_users": planned}


_COLUMNS = "id, name, salt, variants, metric, window_s, planned_users, status, created_at, started_at, stopped_at"


def _row(r: Sequence[Any], forced: Mapping[str, str]) -> Experiment:
    variants = tuple(Variant.from_dict(v) for v in json.loads(r[3]))
    return Experiment(int(r[0]), r[1], r[2], variants, r[4], float(r[5]), int(r[6]), r[7], float(r[8]),
                      None if r[9] is None else float(r[9]), None if r[10] is None else float(r[10]), forced)


def create(store: Store, spec: Mapping[str, Any]) -> Experiment:
    """Store a new experiment (status draft); its name must be new."""
    cols = parse_spec(spec)
    with store._tx() as cur:
        cur.execute(store._sql("SELECT id FROM experiments WHERE name = ?"), (cols["name"],))
        if cur.fetchone() is not None:
            raise ConfigError(f"an experiment named {cols['name']!r} exists already")
        cur.execute(store._sql(
            "INSERT INTO experiments (name, salt, variants, metric, window_s, planned_users, status, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, 'draft', ?) RETURNING id"),
            (cols["name"], cols["salt"], json.dumps([v.to_dict() for v in cols["variants"]]), cols["metric"],
             cols["window_s"], cols["planned_users"], time.time()))
        new_id = int(cur.fetchone()[0])
    return get(store, new_id)


def get(store: Store, ref: int | str) -> Experiment:
    """An experiment by id (a number) or by name."""
    text = str(ref).strip()
    with store._tx(write=False) as cur:
        if text.isascii() and text.isdigit() and len(text) <= 18:  # an id (names are never all digits)
            cur.execute(store._sql(f"SELECT {_COLUMNS} FROM experiments WHERE id = ?"), (int(text),))
        else:
            cur.execute(store._sql(f"SELECT {_COLUMNS} FROM experiments WHERE name = ?"), (text,))
        r = cur.fetchone()
        if r is None:
            raise UnknownIdError(f"no experiment {text!r} (give its id or name; `recstack ab list` shows them)")
        cur.execute(store._sql("SELECT user_id, variant FROM experiment_forced WHERE experiment_id = ?"),
                    (int(r[0]),))
        forced = {u: v for u, v in cur.fetchall()}
    return _row(r, forced)


def list_all(store: Store) -> list[Experiment]:
    """Every experiment, newest first (forced users not loaded)."""
    with store._tx(write=False) as cur:
        cur.execute(store._sql(f"SELECT {_COLUMNS} FROM experiments ORDER BY id DESC"))
        return [_row(r, {}) for r in cur.fetchall()]


def running(store: Store) -> Experiment | None:
    """The running experiment with its forced users, or None."""
    with store._tx(write=False) as cur:
        cur.execute(store._sql("SELECT id FROM experiments WHERE status = 'running' ORDER BY id LIMIT 1"))
        r = cur.fetchone()
    return None if r is None else get(store, int(r[0]))


def start(store: Store, ref: int | str, available_versions: Sequence[int] | None = None) -> Experiment:
    """draft → running. Refused when another experiment runs, or when a variant names a model
    version that is not in `available_versions` (when given)."""
    exp = get(store, ref)
    if exp.status != "draft":
        raise ConfigError(f"experiment {exp.name!r} is {exp.status}; only a draft can start")
    if available_versions is not None:
        for v in exp.variants:
            if v.model_version is not None and v.model_version not in available_versions:
                raise ConfigError(f"variant {v.name!r} serves model version {v.model_version}, which the "
                                  f"registry does not hold (versions: {list(available_versions)})")
    with store._tx() as cur:
        store._serialise_writes(cur)
        cur.execute(store._sql("SELECT name FROM experiments WHERE status = 'running'"))
        other = cur.fetchone()
        if other is not None:
            raise ConfigError(f"experiment {other[0]!r} is running; stop it first (one experiment runs at a time)")
        cur.execute(store._sql("UPDATE experiments SET status = 'running', started_at = ? WHERE id = ?"),
                    (time.time(), exp.id))
    return get(store, exp.id)


def stop(store: Store, ref: int | str) -> Experiment:
    """running → stopped (serving returns to the default; the data stays for the report)."""
    exp = get(store, ref)
    if exp.status != "running":
        raise ConfigError(f"experiment {exp.name!r} is {exp.status}; only a running experiment can stop")
    with store._tx() as cur:
        cur.execute(store._sql("UPDATE experiments SET status = 'stopped', stopped_at = ? WHERE id = ?"),
                    (time.time(), exp.id))
    return get(store, exp.id)


def force(store: Store, ref: int | str, user: str, variant: str | None) -> Experiment:
    """Force `user` into `variant` (QA); None removes the forcing. A forced user is served the
    variant but no exposure is logged for them: QA traffic stays out of the analysis."""
    exp = get(store, ref)
    if not user or len(user) > 200:
        raise ConfigError(f"user {user!r}: a user id of 1 to 200 characters")
    with store._tx() as cur:
        cur.execute(store._sql("DELETE FROM experiment_forced WHERE experiment_id = ? AND user_id = ?"),
                    (exp.id, user))
        if variant is not None:
            exp.variant(variant)
            cur.execute(store._sql("INSERT INTO experiment_forced (experiment_id, user_id, variant) VALUES (?, ?, ?)"),
                        (exp.id, user, variant))
    return get(store, exp.id)


def summary(exp: Experiment) -> dict[str, Any]:
    """The short record `GET /experiments` and `recstack ab list` show."""
    return {"id": exp.id, "name": exp.name, "status": exp.status, "metric": exp.metric,
            "variants": [v.to_dict() for v in exp.variants], "planned_users": exp.planned_users,
            "window_hours": exp.window_s / 3600, "created_at": exp.created_at, "started_at": exp.started_at,
            "stopped_at": exp.stopped_at}


def finite(x: float | None) -> float | None:
    """None for NaN/inf (JSON has no NaN)."""
    return None if x is None or not math.isfinite(x) else float(x)

"""Splits: GroupLens folds, random, stratified (per user or item), leave-last-out, time cutoff,
cold items and cold users.

Every split returns `Interactions` parts that share the input's vocabularies, so indices
agree between parts. Row order inside a part follows the input's row order.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from recstack.data.interactions import Interactions
from recstack.errors import DataError


def ml100k_folds(data: Interactions, n_folds: int = 5) -> list[tuple[str, Interactions, Interactions]]:
    """GroupLens u1..u5: fold i tests rows (i-1)·n/5 … i·n/5 - 1 in file order, trains on the rest.

    For ML-100K (100,000 rows in `u.data` order) this is exactly `u{i}.base` / `u{i}.test`.
    """
    n = len(data)
    if n % n_folds:
        raise DataError(f"{n} rows do not divide into {n_folds} equal folds")
    size = n // n_folds
    out = []
    for f in range(n_folds):
        test = np.zeros(n, bool)
        test[f * size:(f + 1) * size] = True
        out.append((f"u{f + 1}", data.subset(~test), data.subset(test)))
    return out


def random_split(data: Interactions, ratio: float = 0.8, seed: int = 0) -> tuple[Interactions, Interactions]:
    """One seeded shuffle of all rows; the first `round(ratio·n)` go to train."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(data))
    n_train = int(round(ratio * len(data)))
    train = np.zeros(len(data), bool)
    train[perm[:n_train]] = True
    return data.subset(train), data.subset(~train)


def stratified_split(
    data: Interactions, ratio: float = 0.75, filter_by: Literal["user", "item"] = "item", seed: int = 42
) -> tuple[Interactions, Interactions]:
    """Microsoft Recommenders' `python_stratified_split`, row for row.

    The rule: MSR's `np.random.seed(seed)` draws, taken here from a local
    `np.random.RandomState(seed)` (the same legacy Mersenne-Twister stream, so the same draws,
    without reading or changing NumPy's global state); one uniform draw per row in input order; within each
    group (user or item) rows are ranked by their draw (ascending, 1-based); a row goes to
    train when rank ≤ round(ratio · group size), with NumPy's round (half to even).
    """
    if filter_by not in ("user", "item"):
        raise DataError(f"filter_by must be 'user' or 'item', got {filter_by!r}")
    group = data.user if filter_by == "user" else data.item
    draw = np.random.RandomState(seed).random_sample(len(data))
    order = np.lexsort((draw, group))  # by group, then draw
    sorted_group = group[order]
    starts = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]])
    counts = np.diff(np.r_[starts, len(order)])
    rank_sorted = np.arange(len(order)) - np.repeat(starts, counts) + 1
    limit_sorted = np.repeat(np.round(ratio * counts), counts)
    train = np.zeros(len(data), bool)
    train[order] = rank_sorted <= limit_sorted
    return data.subset(train), data.subset(~train)


def leave_last_out(data: Interactions, min_train: int = 1) -> tuple[Interactions, Interactions, Interactions]:
    """Per user, ordered by (timestamp, input order): last → test, second-to-last → validation.

    A user with fewer than `min_train + 2` interactions keeps them all in train.
    Returns (train, valid, test).
    """
    order = np.lexsort((np.arange(len(data)), data.timestamp, data.user))
    u = data.user[order]
    counts = np.bincount(u, minlength=data.n_users)
    ends = np.cumsum(counts)
    pos_from_end = ends[u] - np.arange(len(order))  # 1 for a user's last row
    enough = counts[u] >= min_train + 2
    part = np.zeros(len(data), np.int8)  # 0 train, 1 valid, 2 test
    part[order[(pos_from_end == 1) & enough]] = 2
    part[order[(pos_from_end == 2) & enough]] = 1
    return data.subset(part == 0), data.subset(part == 1), data.subset(part == 2)


def time_split(data: Interactions, cutoff: int) -> tuple[Interactions, Interactions]:
    """Rows with timestamp < cutoff train; the rest test."""
    train = data.timestamp < cutoff
    return data.subset(train), data.subset(~train)


def validation_split(train: Interactions, fraction: float = 0.1, seed: int = 0) -> tuple[Interactions, Interactions]:
    """Carve a validation part out of a training part (for early stopping and tuning only)."""
    if not 0 < fraction < 1:
        raise DataError(f"validation fraction must be in (0, 1), got {fraction}")
    return random_split(train, 1.0 - fraction, seed)


def cold_items_split(data: Interactions, fraction: float = 0.1, seed: int = 0,
                     ) -> tuple[Interactions, Interactions, np.ndarray]:
    """Cold items: a seeded `fraction` of the items, stratified by popularity decile, go to test
    with all their interactions; train has none of them. Returns (train, test, cold item indices).

    The rule: items with at least one interaction are ordered by (count, index) and cut into ten
    deciles by rank (item at rank r of n goes to decile floor(10·r/n)); from each decile,
    `round(fraction · size)` items are drawn uniformly without replacement with
    `np.random.default_rng(seed)`, deciles taken in order 0..9.
    """
    if not 0 < fraction < 1:
        raise DataError(f"cold fraction must be in (0, 1), got {fraction}")
    counts = data.item_popularity
    active = np.flatnonzero(counts > 0)
    order = active[np.lexsort((active, counts[active]))]
    decile = (10 * np.arange(len(order))) // max(len(order), 1)
    rng = np.random.default_rng(seed)
    cold = []
    for d in range(10):
        members = order[decile == d]
        take = int(round(fraction * len(members)))
        if take:
            cold.append(rng.choice(members, take, replace=False))
    cold_items = np.sort(np.concatenate(cold)) if cold else np.empty(0, np.int64)
    in_test = np.isin(data.item, cold_items)
    if not in_test.any():
        raise DataError("too few items for a cold-item split")
    return data.subset(~in_test), data.subset(in_test), cold_items.astype(np.int64)


def cold_users_split(data: Interactions, fraction: float = 0.1, given: int = 5, seed: int = 0,
                     ) -> tuple[Interactions, Interactions, Interactions, np.ndarray]:
    """Cold users: a seeded `fraction` of the users are held out of train; each one's first `given`
    interactions by (timestamp, input order) are their only history, the rest is test.

    The rule: users with more than `given` interactions are eligible; `round(fraction · n)` of
    them are drawn uniformly without replacement with `np.random.default_rng(seed)`. Returns
    (train: every other user's rows, given part, test part, cold user indices sorted).
    """
    if not 0 < fraction < 1:
        raise DataError(f"cold fraction must be in (0, 1), got {fraction}")
    if given < 1:
        raise DataError(f"given must be ≥ 1, got {given}")
    eligible = np.flatnonzero(data.user_activity > given)
    take = int(round(fraction * len(eligible)))
    if take == 0:
        raise DataError(f"no user has more than {given} interactions to hold out")
    rng = np.random.default_rng(seed)
    cold = np.sort(rng.choice(eligible, take, replace=False)).astype(np.int64)
    is_cold = np.isin(data.user, cold)
    order = np.lexsort((np.arange(len(data)), data.timestamp, data.user))
    u = data.user[order]
    starts = np.r_[0, np.flatnonzero(np.diff(u)) + 1]
    pos = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    position = np.empty(len(data), np.int64)
    position[order] = pos  # 0 for a user's first interaction
    given_rows = is_cold & (position < given)
    return (data.subset(~is_cold), data.subset(given_rows), data.subset(is_cold & ~given_rows), cold)


def stream_halves(data: Interactions, fraction: float = 0.5) -> tuple[Interactions, Interactions]:
    """(before, after): `data`'s rows split where `stream_split` cuts its initial part (the rows
    before the timestamp of the row at position ⌊fraction·n⌋ in time order), both over `data`'s
    own vocabularies. The `stream` protocol's training half, and the tuning carve inside it
    (`stream_halves(train, 0.5)`: fit on its first half, replay its second)."""
    if not 0 < fraction < 1:
        raise DataError(f"stream fraction must be in (0, 1), got {fraction}")
    order = np.lexsort((np.arange(len(data)), data.timestamp))
    ts = data.timestamp[order]
    cut = int(np.searchsorted(ts, ts[int(fraction * len(ts))], side="left")) if len(ts) else 0
    return data.subset(np.sort(order[:cut])), data.subset(np.sort(order[cut:]))


def stream_split(data: Interactions, fraction: float = 0.5, day_seconds: int = 86400
                 ) -> tuple[Interactions, list[tuple[int, Interactions]]]:
    """The `stream` protocol's replay (prequential evaluation, Vinagre, Jorge & Gama 2014).

    Rows are ordered by (timestamp, input order) and the vocabularies re-ordered by first
    appearance in that order, so the users and items seen up to any moment are a prefix of
    them. Returns (initial, days): `initial` holds the rows before the timestamp of the row at
    position ⌊fraction·n⌋ (vocabularies: what those rows use); `days` lists, per following UTC
    day (timestamp // day_seconds), that day's rows over the vocabularies seen up to its end —
    each batch's vocabularies extend the previous ones, as `partial_fit` expects.
    """
    if not 0 < fraction < 1:
        raise DataError(f"stream fraction must be in (0, 1), got {fraction}")
    if len(data) < 2:
        raise DataError("the stream protocol needs at least two rows")
    order = np.lexsort((np.arange(len(data)), data.timestamp))
    u, i = data.user[order], data.item[order]
    _, first_u = np.unique(u, return_index=True)
    _, first_i = np.unique(i, return_index=True)
    uorder = np.unique(u)[np.argsort(first_u, kind="stable")]  # old user index by first appearance
    iorder = np.unique(i)[np.argsort(first_i, kind="stable")]
    unew = np.empty(data.n_users, np.int64)
    unew[uorder] = np.arange(len(uorder))
    inew = np.empty(data.n_items, np.int64)
    inew[iorder] = np.arange(len(iorder))
    uid, iid = data.user_ids[uorder], data.item_ids[iorder]
    u, i = unew[u].astype(np.int32), inew[i].astype(np.int32)
    rating, ts = data.rating[order], data.timestamp[order]
    nu = np.maximum.accumulate(u.astype(np.int64)) + 1  # vocabulary sizes after each row
    ni = np.maximum.accumulate(i.astype(np.int64)) + 1
    ifeat = None if data.item_features is None else data.item_features.iloc[iorder].reset_index(drop=True)
    ufeat = None if data.user_features is None else data.user_features.iloc[uorder].reset_index(drop=True)

    def part(lo: int, hi: int) -> Interactions:
        n_u, n_i = int(nu[hi - 1]), int(ni[hi - 1])
        return Interactions(uid[:n_u], iid[:n_i], u[lo:hi], i[lo:hi], rating[lo:hi], ts[lo:hi],
                            None if ifeat is None else ifeat.iloc[:n_i].reset_index(drop=True),
                            None if ufeat is None else ufeat.iloc[:n_u].reset_index(drop=True),
                            data.name)

    cut = int(np.searchsorted(ts, ts[int(fraction * len(ts))], side="left"))
    if cut == 0:
        raise DataError("the stream protocol's initial part is empty (all rows share one timestamp)")
    day = ts // day_seconds
    bounds = np.r_[cut, cut + np.flatnonzero(np.diff(day[cut:])) + 1, len(ts)]
    days = [(int(day[lo]), part(int(lo), int(hi))) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]
    return part(0, cut), days

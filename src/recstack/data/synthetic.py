"""Synthetic interaction data: known-answer blocks for tests, MovieLens-like logs at any size."""

from __future__ import annotations

import numpy as np

from recstack.data.interactions import Interactions
from recstack.errors import ConfigError


def block_data(n_users: int = 60, n_items: int = 40, n_blocks: int = 2, density: float = 0.5,
               seed: int = 0, noise: float = 0.0) -> Interactions:
    """Users and items split into `n_blocks` taste groups; a user rates a sampled `density`
    share of the catalogue: 5 inside their own block, 1 outside (± uniform `noise`).

    Known answer: a model that learned the structure ranks a user's unseen in-block items
    above every unseen out-of-block item. Timestamps follow row order.
    """
    rng = np.random.default_rng(seed)
    ublock = np.arange(n_users) % n_blocks
    iblock = np.arange(n_items) % n_blocks
    mask = rng.random((n_users, n_items)) < density
    users, items = np.nonzero(mask)
    inside = ublock[users] == iblock[items]
    ratings = np.where(inside, 5.0, 1.0) + rng.uniform(-noise, noise, len(users))
    order = rng.permutation(len(users))
    users, items, ratings = users[order], items[order], ratings[order]
    return Interactions.from_arrays(
        users, items, np.clip(ratings, 1, 5), np.arange(len(users)),
        user_ids=np.arange(n_users).astype(str), item_ids=np.arange(n_items).astype(str),
        name=f"blocks-{n_blocks}",
    )


def block_of(index: np.ndarray, n_blocks: int = 2) -> np.ndarray:
    """The taste group of user or item indices made by `block_data`."""
    return np.asarray(index) % n_blocks


# ---- MovieLens-like data at any size ---------------------------------------------------------
T_START = 946_684_800  # 2000-01-01
T_END = 1_577_836_800  # 2020-01-01


def synthetic_interactions(
    n_users: int = 1000,
    n_items: int = 500,
    n_ratings: int = 50_000,
    seed: int = 0,
    *,
    factors: int = 8,
    noise: float = 0.7,
    min_user_ratings: int = 20,
    user_sigma: float = 1.0,
    item_exponent: float = 1.2,
    item_offset: float | None = None,
    half_stars: bool = False,
) -> Interactions:
    """MovieLens-shaped explicit ratings with long-tailed user and item popularity.

    - users: `min_user_ratings` each plus a lognormal(0, `user_sigma`) share of the rest
      (MovieLens keeps users with ≥ 20 ratings); never more than `n_items`;
    - items: popularity ∝ (rank + offset)^-`item_exponent` over a random ranking of items
      (a Zipf law with a flattened head; offset defaults to n_items / 300);
    - each user's items are a weighted sample *without replacement* (no duplicate pairs);
    - ratings: μ + b_u + b_i + p_u·q_i (rank `factors`) + N(0, `noise`²), rounded to 1..5
      (halves with `half_stars`);
    - timestamps: each user is active over a lognormal span inside 2000-2020, their ratings in
      sampling order; rows are returned in timestamp order (a time-ordered log).

    At ML-25M shape (162,541 users, 59,047 items, 25,000,095 ratings): ~20 s of CPU, 2.2 GB peak.
    Same arguments, same data. Returns `Interactions` with ids "0".."n-1".
    """
    m = min(min_user_ratings, n_items)
    if n_users < 1 or n_items < 1:
        raise ConfigError(f"need at least one user and one item, got {n_users} × {n_items}")
    if not n_users * m <= n_ratings <= n_users * n_items:
        raise ConfigError(f"n_ratings={n_ratings:,} must lie between n_users·min_user_ratings="
                          f"{n_users * m:,} and n_users·n_items={n_users * n_items:,}")
    rng = np.random.default_rng(seed)
    counts = m + _allocate(n_ratings - n_users * m, rng.lognormal(0.0, user_sigma, n_users), n_items - m)
    offset = n_items / 300 if item_offset is None else item_offset
    pop = (rng.permutation(n_items) + 1 + offset) ** -item_exponent
    users, items, order = _sample_without_replacement(counts, pop / pop.sum(), rng)
    rating = _low_rank_ratings(users, items, n_users, n_items, pop, factors, noise, half_stars, rng)
    # timestamps: user u's k-th pick at start_u + span_u·(k + jitter)/count_u
    span = np.minimum(np.exp(rng.normal(np.log(200 * 86_400), 1.5, n_users)), (T_END - T_START) * 0.9)
    start = T_START + rng.random(n_users) * (T_END - T_START - span)
    frac = (order + rng.random(len(users))) / counts[users]
    ts = (start[users] + span[users] * frac).astype(np.int64)
    by_time = np.argsort(ts, kind="stable")
    return Interactions(
        np.arange(n_users).astype(str), np.arange(n_items).astype(str),
        users[by_time], items[by_time], rating[by_time], ts[by_time],
        name=f"synthetic-{n_users}x{n_items}-{n_ratings}-seed{seed}",
        meta={"generator": "synthetic_interactions", "seed": seed},
    )


def _allocate(total: int, weights: np.ndarray, cap: int) -> np.ndarray:
    """Split `total` into integer shares ∝ `weights`, none above `cap` (overflow moves on)."""
    out = np.zeros(len(weights), np.int64)
    remaining = total
    while remaining > 0:
        room = cap - out
        w = np.where(room > 0, weights, 0.0)
        share = remaining * w / w.sum()
        add = np.minimum(np.floor(share).astype(np.int64), room)
        left = remaining - int(add.sum())
        if left > 0:  # largest remainders first, among users with room left
            frac = np.where(room > add, share - np.floor(share), -1.0)
            top = np.argsort(-frac, kind="stable")[:left]
            add[top[frac[top] >= 0]] += 1
        out += add
        remaining -= int(add.sum())
    return out


def _sample_without_replacement(counts: np.ndarray, p: np.ndarray, rng: np.random.Generator,
                                heavy_share: float = 0.05, max_rounds: int = 8
                                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each user u, `counts[u]` distinct items drawn successively with probabilities `p`.

    Light users: draw with replacement from `p` and keep the first `counts[u]` distinct items
    (exactly successive sampling without replacement), topping up in rounds. Heavy users
    (and any still short after `max_rounds`): Gumbel top-k over the whole catalogue.
    Returns (user int32, item int32, pick order within the user int64), grouped by user.
    """
    n_users, n_items = len(counts), len(p)
    cdf = np.cumsum(p)
    cdf /= cdf[-1]
    heavy = counts > heavy_share * n_items
    parts: list[np.ndarray] = []  # keys user·n_items + item, in pick order per round
    need = np.where(heavy, 0, counts)
    factor = 1.3
    for _ in range(max_rounds):
        todo = np.flatnonzero(need > 0)
        if not len(todo):
            break
        draws = np.ceil(need[todo] * factor).astype(np.int64) + 4
        uu = np.repeat(todo.astype(np.int64), draws)
        ii = np.minimum(np.searchsorted(cdf, rng.random(len(uu)), side="right"), n_items - 1)
        keys = uu * n_items + ii
        _, first = np.unique(keys, return_index=True)
        keys = keys[np.sort(first)]  # distinct, in draw order, still grouped by user
        if parts:
            in_todo = np.zeros(n_users, bool)
            in_todo[todo] = True
            prev = np.concatenate(parts)
            prev = prev[in_todo[prev // n_items]]
            keys = keys[~np.isin(keys, prev)]
        ku = keys // n_items
        starts = np.searchsorted(ku, todo)
        rank = np.arange(len(keys)) - np.repeat(starts, np.diff(np.r_[starts, len(keys)]))
        keys = keys[rank < need[ku]]
        parts.append(keys)
        need -= np.bincount(keys // n_items, minlength=n_users)
        factor *= 2
    # Gumbel top-k for heavy users and stragglers, excluding what they already have
    short = need > 0
    rest = np.flatnonzero(heavy | short)
    if len(rest):
        have = np.concatenate(parts) if parts else np.empty(0, np.int64)
        have = have[short[have // n_items]]  # what the stragglers already hold
        logp = np.log(p)
        for u in rest.tolist():
            mine = have[have // n_items == u] % n_items if short[u] else []
            key = logp + rng.gumbel(size=n_items)
            key[mine] = -np.inf
            k = int(need[u]) if not heavy[u] else int(counts[u])
            top = np.argpartition(-key, k - 1)[:k]
            top = top[np.argsort(-key[top], kind="stable")]
            parts.append(u * np.int64(n_items) + top)
            need[u] = 0
    keys = np.concatenate(parts)
    order = np.argsort(keys // n_items, kind="stable")  # group by user, keep pick order
    keys = keys[order]
    users = (keys // n_items).astype(np.int32)
    starts = np.searchsorted(users, np.arange(n_users))
    pick = np.arange(len(keys)) - starts[users]
    return users, (keys % n_items).astype(np.int32), pick


def _low_rank_ratings(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int, pop: np.ndarray,
                      factors: int, noise: float, half_stars: bool, rng: np.random.Generator,
                      chunk: int = 1 << 21) -> np.ndarray:
    """μ + b_u + b_i + p_u·q_i + noise, rounded and clipped to 1..5; popular items rate higher."""
    bu = rng.normal(0.0, 0.45, n_users)
    z = np.log(pop)
    bi = rng.normal(0.0, 0.4, n_items) + 0.15 * (z - z.mean()) / (z.std() + 1e-12)
    P = rng.normal(0.0, 0.7 / np.sqrt(np.sqrt(factors)), (n_users, factors)).astype(np.float32)
    Q = rng.normal(0.0, 0.7 / np.sqrt(np.sqrt(factors)), (n_items, factors)).astype(np.float32)
    out = np.empty(len(users), np.float32)
    step = 0.5 if half_stars else 1.0
    for s in range(0, len(users), chunk):
        u, i = users[s:s + chunk], items[s:s + chunk]
        r = 3.5 + bu[u] + bi[i] + np.einsum("nf,nf->n", P[u], Q[i]) + rng.normal(0.0, noise, len(u))
        out[s:s + chunk] = np.clip(np.round(r / step) * step, 1.0, 5.0)
    return out

"""The factorization machine's design: one sparse row block per user and one per item.

A rating's FM input row is the concatenation [user block row u | item block row i] (Rendle
2013, "Scaling factorization machines to relational data": features that depend only on the
user, or only on the item, are stored once per user / item, not once per rating). Groups:

    user block: user (one-hot), age (bucket), gender, occupation, zip (first digit of a US zip
                code, "other" for the rest), history (items the user rated in train, 1/sqrt(n))
    item block: item (one-hot), genres (multi-hot), year (5-year bucket), raters (users who rated
                the item in train, 1/sqrt(n); the mirror of history)
    context:    date (the rating's day, one-hot over the days seen in train) and userday (the
                rating's (user, day) pair: a day-specific user effect, as timeSVD++'s b_{u,t});
                each a block of its own whose entity is the day / the pair (Rendle 2019, "On
                the difficulty of evaluating baselines", treats dates the same way)

Built from `Interactions.item_features` (year, genres) and `Interactions.user_features` (age,
gender, occupation, zip_code) of the training data only; `history` and `raters` come from the
training rows, so no test pair enters the design.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recstack.data.interactions import Interactions
from recstack.errors import ConfigError

USER_GROUPS = ("age", "gender", "occupation", "zip", "history")
ITEM_GROUPS = ("genres", "year", "raters")
CONTEXT_GROUPS = ("date", "userday")
ALL_GROUPS = USER_GROUPS + ITEM_GROUPS + CONTEXT_GROUPS
DAY = 86400
_AGE_EDGES = (18, 25, 35, 45, 50, 56)
_AGE_LABELS = ("<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")


@dataclass(frozen=True)
class Block:
    """One side's design: `X` (n_rows, n_features) CSR float64, `group` (n_features,) int index
    into `groups`, `names` (n_features,) str labels such as "genre:Comedy"."""

    X: sp.csr_matrix
    group: np.ndarray
    names: np.ndarray
    groups: tuple[str, ...]


def parse_groups(spec: str, train: Interactions, context: bool = True) -> tuple[str, ...]:
    """The chosen groups: "auto" = every group the data can supply (the date only when
    `context`), "" = ids only, else a comma list of `ALL_GROUPS` names (an unknown name, one the
    data lacks, or a context group where `context` is false, is an error)."""
    spec = spec.strip()
    if spec == "auto":
        return tuple(g for g in ALL_GROUPS if _available(g, train) and (context or g not in CONTEXT_GROUPS))
    chosen = tuple(s.strip() for s in spec.split(",") if s.strip())
    for g in chosen:
        if g not in ALL_GROUPS:
            raise ConfigError(f"parameter features={spec!r}: unknown group {g!r}; known: "
                              f"{', '.join(ALL_GROUPS)}, or auto")
        if g in CONTEXT_GROUPS and not context:
            raise ConfigError(f"parameter features={spec!r}: group {g!r} needs learner=mcmc")
        if g in CONTEXT_GROUPS and not _available(g, train):
            raise ConfigError(f"parameter features={spec!r}: group {g!r} needs rating timestamps, "
                              "which the data does not have")
        if not _available(g, train):
            table = "user_features" if g in USER_GROUPS else "item_features"
            raise ConfigError(f"parameter features={spec!r}: group {g!r} needs the data's {table}, "
                              "which it does not have")
    return chosen


def _available(group: str, train: Interactions) -> bool:
    if group in CONTEXT_GROUPS:
        return bool(len(train) and train.timestamp.max() > 0)
    if group in ("history", "raters"):
        return True
    table = train.user_features if group in USER_GROUPS else train.item_features
    column = {"zip": "zip_code"}.get(group, group)
    return table is not None and column in table and table[column].notna().any()


def _one_hot(labels: list[str | None], prefix: str) -> tuple[sp.csr_matrix, list[str]]:
    """(n, n_labels) one-hot of string labels (None → an all-zero row), and the feature names."""
    vocab = sorted({lab for lab in labels if lab is not None})
    pos = {lab: k for k, lab in enumerate(vocab)}
    rows = [r for r, lab in enumerate(labels) if lab is not None]
    cols = [pos[labels[r]] for r in rows]
    m = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(labels), len(vocab)))
    return m, [f"{prefix}:{lab}" for lab in vocab]


def _normalised(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """Binary (rows, cols) pattern, each row scaled by 1/sqrt(its count)."""
    m = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=shape)
    m.sum_duplicates()
    m.data[:] = 1.0
    n = np.diff(m.indptr)
    m.data *= np.repeat(1.0 / np.sqrt(np.maximum(n, 1)), n)
    return m


def _user_part(group: str, train: Interactions) -> tuple[sp.csr_matrix, list[str]]:
    f = train.user_features
    if group == "history":
        m = _normalised(train.user, train.item, (train.n_users, train.n_items))
        return m, [f"history:{i}" for i in train.item_ids]
    if group == "age":
        ages = pd.to_numeric(f["age"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        labels = [None if a != a else _AGE_LABELS[int(np.searchsorted(_AGE_EDGES, a, side="right"))]
                  for a in ages]
        return _one_hot(labels, "age")
    if group == "zip":
        labels = [z[0] if isinstance(z, str) and z[:1].isdigit() else "other" for z in f["zip_code"]]
        return _one_hot(labels, "zip")
    return _one_hot([None if pd.isna(v) else str(v) for v in f[group]], group)


def _item_part(group: str, train: Interactions) -> tuple[sp.csr_matrix, list[str]]:
    f = train.item_features
    if group == "raters":
        m = _normalised(train.item, train.user, (train.n_items, train.n_users))
        return m, [f"raters:{u}" for u in train.user_ids]
    if group == "year":
        years = pd.to_numeric(f["year"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        labels = [None if y != y else f"{int(y) // 5 * 5}-{int(y) // 5 * 5 + 4}" for y in years]
        return _one_hot(labels, "year")
    lists = [list(g) if isinstance(g, (list, tuple, np.ndarray)) else [] for g in f["genres"]]
    vocab = sorted({g for gs in lists for g in gs})
    pos = {g: k for k, g in enumerate(vocab)}
    rows = [r for r, gs in enumerate(lists) for _ in gs]
    cols = [pos[g] for gs in lists for g in gs]
    m = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(lists), len(vocab)))
    return m, [f"genre:{g}" for g in vocab]


def build_blocks(train: Interactions, groups: tuple[str, ...]) -> tuple[Block, Block]:
    """(user block (n_users, Fu), item block (n_items, Fi)) for the chosen groups; ids first."""
    sides = []
    for side, ids, own, part in (("user", train.user_ids, USER_GROUPS, _user_part),
                                 ("item", train.item_ids, ITEM_GROUPS, _item_part)):
        mats = [sp.identity(len(ids), format="csr")]
        names = [f"{side}:{x}" for x in ids]
        labels = [side]
        group = [np.zeros(len(ids), np.int64)]
        for g in (g for g in groups if g in own):
            m, n = part(g, train)
            group.append(np.full(m.shape[1], len(labels), np.int64))
            labels.append(g)
            mats.append(m)
            names += n
        X = sp.hstack(mats, format="csr").astype(np.float64)
        X.sort_indices()
        sides.append(Block(X, np.concatenate(group), np.asarray(names, dtype=str), tuple(labels)))
    return sides[0], sides[1]


def day_of(timestamps: np.ndarray) -> np.ndarray:
    """(n,) int64 day number (UTC) of Unix timestamps in seconds."""
    return np.asarray(timestamps, np.int64) // DAY


def context_keys(group: str, users: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """(n,) int64 key of each rating's context entity: its day (`date`) or its (user, day)
    pair (`userday`, user·2³² + day)."""
    day = day_of(timestamps)
    return day if group == "date" else np.asarray(users, np.int64) * (1 << 32) + day


def context_block(group: str, train: Interactions) -> tuple[Block, np.ndarray]:
    """(the context block: identity over the keys seen in train, those keys (n_keys,) sorted)."""
    keys = np.unique(context_keys(group, train.user, train.timestamp))
    if group == "date":
        names = [f"date:{np.datetime64(int(d), 'D')}" for d in keys]
    else:
        names = [f"userday:{train.user_ids[int(k >> 32)]}@{np.datetime64(int(k & 0xFFFFFFFF), 'D')}"
                 for k in keys]
    X = sp.identity(len(keys), format="csr", dtype=np.float64)
    return Block(X, np.zeros(len(keys), np.int64), np.asarray(names, dtype=str), (group,)), keys


def key_index(keys: np.ndarray, query: np.ndarray) -> np.ndarray:
    """(n,) position of each query key in sorted `keys`, −1 where absent (a context not seen in train)."""
    query = np.asarray(query, np.int64)
    if not len(keys):
        return np.full(len(query), -1, np.int64)
    at = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return np.where(keys[at] == query, at, -1).astype(np.int64)

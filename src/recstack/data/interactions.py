"""`Interactions`: the one data object that flows from loaders to models.

External user/item ids live in two vocabularies (the position of an id is its dense index);
the interaction arrays hold indices only. Splits return new `Interactions` that share the
vocabularies, so indices agree between a training part and a test part.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from recstack.errors import DataError, UnknownIdError

if TYPE_CHECKING:  # pandas is imported where frames are made: reading and training need none
    import pandas as pd


@dataclass(frozen=True, eq=False)
class Interactions:
    """Interaction log over fixed user and item vocabularies.

    Arrays (all of length n): `user`, `item` (int32 indices), `rating` (float32),
    `timestamp` (int64, 0 when unknown). `user_ids` / `item_ids` are string arrays whose
    position is the index. `item_features` / `user_features` are optional frames with one row
    per index (row i describes item i), e.g. `title`, `year`, `genres` for MovieLens items.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    item_features: pd.DataFrame | None = None
    user_features: pd.DataFrame | None = None
    name: str = "custom"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.user)
        for label, arr in (("item", self.item), ("rating", self.rating), ("timestamp", self.timestamp)):
            if len(arr) != n:
                raise DataError(f"array '{label}' has length {len(arr)}, expected {n}")
        if n:
            if self.user.min() < 0 or self.user.max() >= len(self.user_ids):
                raise DataError("user index out of the user vocabulary")
            if self.item.min() < 0 or self.item.max() >= len(self.item_ids):
                raise DataError("item index out of the item vocabulary")

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        users: np.ndarray | list,
        items: np.ndarray | list,
        ratings: np.ndarray | list | None = None,
        timestamps: np.ndarray | list | None = None,
        *,
        user_ids: np.ndarray | list | None = None,
        item_ids: np.ndarray | list | None = None,
        name: str = "custom",
        item_features: pd.DataFrame | None = None,
        user_features: pd.DataFrame | None = None,
    ) -> Interactions:
        """Build from external ids; vocabularies are given or made in order of first appearance."""
        users = np.asarray(users).astype(str)
        items = np.asarray(items).astype(str)
        uvocab = _vocab(users, user_ids)
        ivocab = _vocab(items, item_ids)
        u = _encode(users, uvocab, "user")
        i = _encode(items, ivocab, "item")
        n = len(u)
        r = np.ones(n, np.float32) if ratings is None else np.asarray(ratings, np.float32)
        t = np.zeros(n, np.int64) if timestamps is None else np.asarray(timestamps, np.int64)
        return cls(uvocab, ivocab, u, i, r, t, item_features, user_features, name)

    @classmethod
    def from_csr(cls, m: sp.csr_matrix, user_ids: np.ndarray, item_ids: np.ndarray,
                 timestamps: np.ndarray | None = None, **fields: Any) -> Interactions:
        """Rows in the order of `m` ((n_users, n_items) float32 ratings, sorted indices): by user,
        then by item. `m` becomes `csr` itself, so `item` and `rating` are its arrays, not copies
        (25M rows: 0.2 GB less than rows in another order beside their CSR). `timestamps`, if
        given, are in the same order; other keyword arguments are the dataclass's fields."""
        if not (m.dtype == np.float32 and m.indices.dtype == np.int32 and m.has_sorted_indices):
            raise DataError("from_csr needs float32 values and sorted int32 indices")
        user = np.repeat(np.arange(m.shape[0], dtype=np.int32), np.diff(m.indptr))
        t = np.zeros(m.nnz, np.int64) if timestamps is None else np.asarray(timestamps, np.int64)
        out = cls(np.asarray(user_ids), np.asarray(item_ids), user, m.indices, m.data, t, **fields)
        out.__dict__["csr"] = m  # the cached `csr`: the matrix itself
        return out

    # ---- shape ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.user)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def __repr__(self) -> str:
        return (
            f"Interactions(name={self.name!r}, n={len(self)}, users={self.n_users}, "
            f"items={self.n_items})"
        )

    @cached_property
    def csr(self) -> sp.csr_matrix:
        """(n_users, n_items) float32 rating matrix; duplicates would be summed (loaders forbid them)."""
        m = sp.csr_matrix(
            (self.rating, (self.user, self.item)), shape=(self.n_users, self.n_items), dtype=np.float32
        )
        m.sort_indices()
        return m

    @cached_property
    def csr_t(self) -> sp.csr_matrix:
        """`csr` item-major: (n_items, n_users) float32, made once (ALS's item half-step and the
        incremental state of partial_fit share it)."""
        t = self.csr.T.tocsr()  # a counting sort: each row's indices come out sorted
        t.sort_indices()
        return t

    @cached_property
    def user_index(self) -> dict[str, int]:
        return {u: k for k, u in enumerate(self.user_ids.tolist())}

    @cached_property
    def item_index(self) -> dict[str, int]:
        return {i: k for k, i in enumerate(self.item_ids.tolist())}

    def user_of(self, user_id: object) -> int:
        """Index of an external user id; `UnknownIdError` names the id when absent."""
        try:
            return self.user_index[str(user_id)]
        except KeyError:
            raise UnknownIdError(f"unknown user id {user_id!r}") from None

    def item_of(self, item_id: object) -> int:
        try:
            return self.item_index[str(item_id)]
        except KeyError:
            raise UnknownIdError(f"unknown item id {item_id!r}") from None

    @cached_property
    def global_mean(self) -> float:
        return float(self.rating.mean()) if len(self) else 0.0

    @cached_property
    def item_popularity(self) -> np.ndarray:
        """(n_items,) number of interactions per item."""
        return np.bincount(self.item, minlength=self.n_items)

    @cached_property
    def user_activity(self) -> np.ndarray:
        """(n_users,) number of interactions per user."""
        return np.bincount(self.user, minlength=self.n_users)

    # ---- derived parts ---------------------------------------------------------------------
    def subset(self, rows: np.ndarray) -> Interactions:
        """A new `Interactions` with the chosen rows (bool mask or indices), same vocabularies."""
        return replace(
            self,
            user=self.user[rows],
            item=self.item[rows],
            rating=self.rating[rows],
            timestamp=self.timestamp[rows],
            meta=dict(self.meta),
        )

    def to_frame(self) -> pd.DataFrame:
        """Rows as a frame with external ids: user, item, rating, timestamp."""
        import pandas as pd

        return pd.DataFrame(
            {
                "user": self.user_ids[self.user],
                "item": self.item_ids[self.item],
                "rating": self.rating,
                "timestamp": self.timestamp,
            }
        )

    def fingerprint(self) -> str:
        """sha256 over vocabularies and arrays: the same data gives the same hex digest."""
        h = hashlib.sha256()
        for arr in (self.user, self.item, self.rating, self.timestamp):
            h.update(np.ascontiguousarray(arr))  # the array's own buffer: no bytes copy of the data
        h.update("\x1f".join(self.user_ids.tolist()).encode())
        h.update("\x1e".join(self.item_ids.tolist()).encode())
        return h.hexdigest()

    def item_titles(self) -> list[str]:
        """A display label per item index (title with year where known, else the id)."""
        f = self.item_features
        if f is None or "title" not in f:
            return [str(i) for i in self.item_ids]
        import pandas as pd

        years = f["year"] if "year" in f else pd.Series([None] * len(f))
        out = []
        for title, year in zip(f["title"].tolist(), years.tolist()):
            out.append(str(title) if year is None or pd.isna(year) else f"{title} ({int(year)})")
        return out


def _vocab(values: np.ndarray, given: np.ndarray | list | None) -> np.ndarray:
    if given is not None:
        return np.asarray(given).astype(str)
    _, first = np.unique(values, return_index=True)
    return values[np.sort(first)]


def _encode(values: np.ndarray, vocab: np.ndarray, what: str) -> np.ndarray:
    order = np.argsort(vocab, kind="stable")
    pos = np.searchsorted(vocab[order], values)
    pos = np.clip(pos, 0, max(len(vocab) - 1, 0))
    if len(values) and (len(vocab) == 0 or np.any(vocab[order][pos] != values)):
        bad = values[vocab[order][pos] != values][0] if len(vocab) else values[0]
        raise UnknownIdError(f"{what} id {bad!r} is not in the given {what} vocabulary")
    return order[pos].astype(np.int32)

"""Deterministic, sticky assignment of users to experiment variants.

A user's position is u = first 64 bits of sha256("salt:user id") / 2⁶⁴ ∈ [0, 1), the same in every
process and on every host. Variants own consecutive ranges of [0, 1) in their listed order, each
as wide as its traffic share; shares may sum to less than 1, and users past the last range are
not in the experiment. Growing the last variant's share (the usual ramp: treatment from 10% to
50%) moves only users from the shrinking neighbour's edge, never a user whose range still holds
them. A forced variant (for QA) wins over the hash.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from recstack.errors import ConfigError


def position(salt: str, user_id: object) -> float:
    """u ∈ [0, 1) for (experiment salt, user id)."""
    digest = hashlib.sha256(f"{salt}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


@dataclass(frozen=True)
class Allocation:
    """Variants with their traffic shares, the hashing salt and forced users."""

    salt: str
    variants: tuple[tuple[str, float], ...]
    forced: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [n for n, _ in self.variants]
        if len(names) < 2 or len(set(names)) != len(names):
            raise ConfigError(f"an experiment needs at least two distinct variants, got {names}")
        shares = [s for _, s in self.variants]
        if any(not 0 <= s <= 1 for s in shares) or sum(shares) > 1 + 1e-9:
            raise ConfigError(f"traffic shares {shares} must each be in [0, 1] and sum to at most 1")
        for user, variant in self.forced.items():
            if variant not in names:
                raise ConfigError(f"user {user!r} forced into unknown variant {variant!r}; known: {names}")
        edges = [0.0]
        for s in shares:
            edges.append(edges[-1] + float(s))
        object.__setattr__(self, "_edges", edges)  # range edges, computed once (variant_of is per request)

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.variants]

    def bounds(self) -> np.ndarray:
        """(V+1,) range edges: variant v owns [bounds[v], bounds[v+1])."""
        return np.concatenate([[0.0], np.cumsum([s for _, s in self.variants])])

    def variant_of(self, user_id: object) -> str | None:
        """The user's variant, or None when the user is outside the experiment's traffic."""
        forced = self.forced.get(str(user_id))
        if forced is not None:
            return forced
        u = position(self.salt, user_id)
        v = bisect.bisect_right(self._edges, u) - 1  # type: ignore[attr-defined]
        return self.variants[v][0] if v < len(self.variants) else None

    def variants_of(self, user_ids: Sequence[object]) -> list[str | None]:
        return [self.variant_of(u) for u in user_ids]

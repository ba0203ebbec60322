"""Synthetic interaction data with known structure, for tests and scale runs."""

from __future__ import annotations

import numpy as np

from recstack.data.interactions import Interactions


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

"""Cache-aware SGD order (`tile`): the same blocks, rows grouped by sub-block, same quality."""

from __future__ import annotations

import numpy as np
import pytest

from recstack.errors import ConfigError
from recstack.models.mf import BiasedMF, Strata, tile_key


def test_tiled_strata_keep_each_block_and_group_its_sub_blocks():
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 100, 5000), rng.integers(0, 60, 5000)
    plain = Strata(users, items, 100, 60, 2)
    tiled = Strata(users, items, 100, 60, 2, tile=16)
    np.testing.assert_array_equal(plain.bounds, tiled.bounds)  # same g × g blocks, same sizes
    for j in range(4):
        a = np.sort(plain.order[plain.bounds[j]:plain.bounds[j + 1]])
        b = tiled.order[tiled.bounds[j]:tiled.bounds[j + 1]]
        np.testing.assert_array_equal(a, np.sort(b))  # the same rows in each block
        keys = tile_key(users[b], items[b], 60, 16)
        assert (np.diff(keys) >= 0).all()  # visited sub-block by sub-block


def test_tiled_order_keeps_the_quality(ml100k_u1):
    train, test = ml100k_u1
    rmse = []
    for tile in (0, 128):
        m = BiasedMF(epochs=20, threads=2, tile=tile, early_stopping=False, seed=0).fit(train)
        rmse.append(float(np.sqrt(np.mean((m.predict(test.user, test.item) - test.rating) ** 2))))
    assert rmse[1] < 0.95 and abs(rmse[1] - rmse[0]) < 0.01


def test_tile_needs_a_fixed_order():
    with pytest.raises(ConfigError, match="shuffle='once'"):
        BiasedMF(tile=64, shuffle="epoch")

"""Cache-aware SGD order (`tile`): the same blocks, rows grouped by sub-block, same quality."""

from __future__ import annotations

import numpy as np

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


def test_arrange_groups_rows_by_sub_block_and_shuffles_inside_each():
    from recstack.models.mf import shuffle_groups, shuffle_rows

    rng = np.random.default_rng(1)
    users, items = rng.integers(0, 100, 5000), rng.integers(0, 60, 5000)
    ratings = rng.random(5000).astype(np.float32)
    st = Strata(users, items, 100, 60, 2, tile=16)
    u, i, r = st.arrange(users, items, ratings, seed=7)
    # the same rows as the plain stable order, each sub-block a shuffle of its own rows
    o = st.order
    assert st.per_block > 1 and st.sub_bounds[-1] == 5000
    np.testing.assert_array_equal(np.sort(st.keys[o]), st.keys[o])
    for lo, hi in zip(st.sub_bounds[:-1], st.sub_bounds[1:]):
        got = sorted(zip(u[lo:hi].tolist(), i[lo:hi].tolist()))
        assert got == sorted(zip(users[o[lo:hi]].tolist(), items[o[lo:hi]].tolist()))
    assert not np.array_equal(u, users[o])  # shuffled inside the sub-blocks
    # a reshuffle (shuffle="epoch") keeps every row in its sub-block
    before = st.keys[o].copy()
    shuffle_groups(3, st.sub_bounds, u, i, r)
    keys_after = Strata(u, i, 100, 60, 2, tile=16).keys
    np.testing.assert_array_equal(keys_after, before)
    # one sub-block: exactly shuffle_rows on copies (so small data trains as before)
    one = Strata(users, items, 100, 60, 1)
    u1, i1, r1 = one.arrange(users, items, ratings, seed=11)
    u2, i2, r2 = users.copy(), items.copy(), ratings.copy()
    shuffle_rows(11, u2, i2, r2)
    np.testing.assert_array_equal(u1, u2)
    np.testing.assert_array_equal(r1, r2)


def test_tile_with_a_reshuffle_every_epoch_trains(ml100k_u1):
    train, test = ml100k_u1
    m = BiasedMF(epochs=10, threads=2, tile=256, shuffle="epoch", early_stopping=False, seed=0).fit(train)
    assert np.sqrt(np.mean((m.predict(test.user, test.item) - test.rating) ** 2)) < 0.97

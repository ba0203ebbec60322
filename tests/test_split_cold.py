"""Cold-start splits exactly as documented, and their protocols end to end."""

from __future__ import annotations

import numpy as np
import pytest

from recstack.data.interactions import Interactions
from recstack.errors import DataError
from recstack.evaluate import cold_start_carve, get_protocol, run_protocol
from recstack.split import cold_items_split, cold_users_split


def test_cold_items_by_the_rule(ml100k):
    train, test, cold = cold_items_split(ml100k, 0.1, seed=0)
    counts = ml100k.item_popularity
    active = np.flatnonzero(counts > 0)
    order = active[np.lexsort((active, counts[active]))]
    rng = np.random.default_rng(0)
    expected = []
    for d in range(10):
        members = order[(10 * np.arange(len(order))) // len(order) == d]
        expected += rng.choice(members, int(round(0.1 * len(members))), replace=False).tolist()
    assert cold.tolist() == sorted(expected)
    assert len(cold) == 170  # 1,682 items: deciles of 168-169, round(16.8) = 17 from each
    assert not np.isin(train.item, cold).any()
    assert np.isin(test.item, cold).all()
    assert len(train) + len(test) == len(ml100k)
    assert len(test) == int(counts[cold].sum())
    # stratified: every popularity decile gives its tenth
    rank = np.empty(ml100k.n_items, int)
    rank[order] = np.arange(len(order))
    per_decile = np.bincount((10 * rank[cold]) // len(order), minlength=10)
    assert per_decile.tolist() == [17] * 10
    again = cold_items_split(ml100k, 0.1, seed=0)[2]
    other = cold_items_split(ml100k, 0.1, seed=1)[2]
    assert again.tolist() == cold.tolist() and other.tolist() != cold.tolist()


def test_cold_users_by_the_rule():
    # user a: 6 rows, b: 2 rows, c: 7 rows; timestamps out of order; a tie on a's first time
    users = ["a"] * 6 + ["b"] * 2 + ["c"] * 7
    items = [f"i{k}" for k in range(6)] + ["i0", "i1"] + [f"i{k}" for k in range(7)]
    ts = [50, 10, 10, 40, 30, 20] + [1, 2] + [7, 6, 5, 4, 3, 2, 1]
    data = Interactions.from_arrays(users, items, np.ones(15), ts)
    train, given, test, cold = cold_users_split(data, 0.5, given=3, seed=0)
    # eligible: a (6 > 3) and c (7 > 3); round(0.5 * 2) = 1 drawn
    expected = np.sort(np.random.default_rng(0).choice([0, 2], 1, replace=False))
    assert cold.tolist() == expected.tolist()
    u = int(cold[0])
    rows_of = lambda part: sorted(zip(part.user.tolist(), part.item_ids[part.item].tolist()))  # noqa: E731
    if u == 0:  # a: by (time, input order): i1 (10, row 1), i2 (10, row 2), i5 (20)
        assert rows_of(given) == [(0, "i1"), (0, "i2"), (0, "i5")]
        assert rows_of(test) == [(0, "i0"), (0, "i3"), (0, "i4")]
    else:  # c: i6 (1), i5 (2), i4 (3)
        assert rows_of(given) == [(2, "i4"), (2, "i5"), (2, "i6")]
        assert len(test) == 4
    assert not np.isin(train.user, cold).any() and len(train) + len(given) + len(test) == 15


def test_cold_users_ml100k(ml100k):
    train, given, test, cold = cold_users_split(ml100k, 0.1, given=5, seed=0)
    assert len(cold) == 94 and set(np.unique(test.user)) == set(cold)
    assert (np.bincount(given.user, minlength=ml100k.n_users)[cold] == 5).all()
    for u in cold[:10]:  # every given rating is no later than any test rating of that user
        assert given.timestamp[given.user == u].max() <= test.timestamp[test.user == u].min()
    same = cold_users_split(ml100k, 0.1, given=1, seed=0)[3]
    assert same.tolist() == cold.tolist()  # the same users at 1, 3 and 5 given (all have > 5)


def test_bad_fractions():
    d = Interactions.from_arrays(["a", "b"], ["x", "y"])
    with pytest.raises(DataError, match="fraction"):
        cold_items_split(d, 1.5)
    with pytest.raises(DataError, match="given"):
        cold_users_split(d, 0.5, given=0)


def test_validation_carves_come_from_train_only(ml100k):
    fold = get_protocol("cold-items").make_folds(ml100k, 0)[0]
    carve = cold_start_carve("cold-items", fold.train)
    assert len(carve.train) + len(carve.test) == len(fold.train)
    cold_valid = carve.test.meta["cold_items"]
    assert not np.isin(cold_valid, fold.test.meta["cold_items"]).any()
    ufold = get_protocol("cold-users").make_folds(ml100k, 0)[0]
    ucarve = cold_start_carve("cold-users", ufold.train)
    assert not np.isin(ucarve.test.user, ufold.test.user).any()
    assert len(ucarve.train) + len(ucarve.test) + len(ucarve.test.meta["given"]) == len(ufold.train)


def test_popular_on_cold_users_matches_the_known_figures(ml100k):
    got = [run_protocol("popular", p, data=ml100k)["metrics"]["ndcg@10"]
           for p in ("cold-users-given1", "cold-users-given3", "cold-users")]
    np.testing.assert_allclose(got, [0.523, 0.490, 0.468], atol=0.001)

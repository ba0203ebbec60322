"""The MovieLens-like synthetic generator: shape, no duplicates, long tails, low-rank signal."""

from __future__ import annotations

import numpy as np
import pytest

from recstack.data.synthetic import _allocate, _sample_without_replacement, synthetic_interactions
from recstack.errors import ConfigError


@pytest.fixture(scope="module")
def ml100k_shaped():
    return synthetic_interactions(943, 1682, 100_000, seed=3)


def test_shape_ids_and_no_duplicate_pairs(ml100k_shaped):
    d = ml100k_shaped
    assert (len(d), d.n_users, d.n_items) == (100_000, 943, 1682)
    assert d.user_ids[:3].tolist() == ["0", "1", "2"]
    key = d.user.astype(np.int64) * d.n_items + d.item
    assert len(np.unique(key)) == len(d)
    assert d.csr.nnz == len(d)


def test_ratings_are_whole_stars_centred_like_movielens(ml100k_shaped):
    r = ml100k_shaped.rating
    assert set(np.unique(r).tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert 3.3 < r.mean() < 3.9  # ML-100K: 3.53
    counts = np.bincount(r.astype(int), minlength=6)[1:]
    assert counts.argmax() == 3  # 4 stars is the most common rating, as in MovieLens


def test_popularity_is_long_tailed(ml100k_shaped):
    d = ml100k_shaped
    per_user = np.bincount(d.user, minlength=d.n_users)
    per_item = np.sort(d.item_popularity)[::-1]
    assert per_user.min() >= 20  # MovieLens keeps users with ≥ 20 ratings
    assert per_user.max() > 8 * np.median(per_user)
    top10 = per_item[: d.n_items // 10].sum() / len(d)
    assert 0.35 < top10 < 0.8  # ML-100K: 0.43 of ratings go to the top 10% of items
    assert per_item[0] > 10 * np.median(per_item)


def test_timestamps_increase_along_rows(ml100k_shaped):
    ts = ml100k_shaped.timestamp
    assert np.all(np.diff(ts) >= 0)
    assert 946_684_800 <= ts.min() and ts.max() < 1_577_836_800


def test_same_seed_same_data_other_seed_other_data():
    a = synthetic_interactions(50, 80, 2000, seed=1)
    b = synthetic_interactions(50, 80, 2000, seed=1)
    c = synthetic_interactions(50, 80, 2000, seed=2)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_ratings_carry_a_learnable_signal():
    """Per-user and per-item means explain ratings better than the global mean (known biases)."""
    d = synthetic_interactions(300, 200, 20_000, seed=0, noise=0.3)
    rng = np.random.default_rng(0)
    test = rng.random(len(d)) < 0.2
    tr = ~test
    mu = d.rating[tr].mean()
    def mean_by(index, values, n):
        return np.bincount(index, values, n) / np.maximum(np.bincount(index, minlength=n), 1)

    bi = mean_by(d.item[tr], d.rating[tr] - mu, d.n_items)
    bu = mean_by(d.user[tr], d.rating[tr] - mu - bi[d.item[tr]], d.n_users)
    pred = mu + bi[d.item[test]] + bu[d.user[test]]
    rmse_bias = np.sqrt(np.mean((d.rating[test] - pred) ** 2))
    rmse_mean = np.sqrt(np.mean((d.rating[test] - mu) ** 2))
    assert rmse_bias < 0.9 * rmse_mean


def test_dense_corner_cases():
    full = synthetic_interactions(5, 20, 100, seed=0)  # every user rates every item
    assert len(full) == 100 and full.csr.nnz == 100
    small = synthetic_interactions(4, 10, 40, seed=0, min_user_ratings=20)  # floor capped at n_items
    assert np.all(np.bincount(small.user) == 10)
    half = synthetic_interactions(30, 40, 600, seed=0, half_stars=True, min_user_ratings=5)
    assert np.all(half.rating * 2 == np.round(half.rating * 2)) and (half.rating % 1 == 0.5).any()


@pytest.mark.parametrize("args", [(10, 10, 101), (10, 30, 100), (0, 5, 0)])
def test_impossible_sizes_are_refused(args):
    with pytest.raises(ConfigError):
        synthetic_interactions(*args)


def test_allocate_respects_total_and_cap():
    w = np.array([100.0, 1.0, 1.0, 1.0])
    out = _allocate(30, w, cap=12)
    assert out.sum() == 30 and out.max() <= 12 and out[0] == 12
    assert _allocate(7, np.ones(3), cap=7).tolist() == [3, 2, 2]


def test_sampler_draws_distinct_items_and_follows_popularity():
    rng = np.random.default_rng(0)
    p = np.r_[np.full(5, 0.15), np.full(95, 0.25 / 95)]
    counts = np.r_[np.full(2000, 3), [60, 100]]  # many light users, two heavy ones (Gumbel path)
    users, items, pick = _sample_without_replacement(counts, p, rng)
    assert np.array_equal(np.bincount(users), counts)
    key = users.astype(np.int64) * 100 + items
    assert len(np.unique(key)) == len(key)
    assert np.array_equal(pick[:6], [0, 1, 2, 0, 1, 2])
    light = users < 2000
    # the 5 heavy items (75% of the mass) fill most of the light users' picks; their first pick
    # is a head item with probability 0.75
    assert 0.7 < np.mean(items[light & (pick == 0)] < 5) < 0.8
    heavy = items[users == 2001]
    assert set(range(5)) <= set(heavy.tolist())


def test_ratings_have_low_rank_structure_beyond_biases():
    """Known answer: biased MF with the generator's rank (8) beats rank 1 clearly on held-out rows."""
    from recstack.metrics import rmse
    from recstack.models.base import make_model
    from recstack.split import random_split

    d = synthetic_interactions(300, 200, 30_000, seed=0, noise=0.3)
    train, test = random_split(d, 0.8, 0)
    errors = {}
    for factors in (1, 8):
        model = make_model("biased-mf", factors=factors, epochs=40, learning_rate=0.02, reg=0.02,
                           early_stopping=False, seed=0).fit(train)
        errors[factors] = rmse(test.rating, model.predict(test.user, test.item))
    assert errors[8] < 0.85 * errors[1]  # measured: 0.455 vs 0.607


def test_sampler_tops_up_stragglers_without_repeating_items():
    # 9 of 10 items from a very skewed p in one round: most users fall short, and the Gumbel
    # top-up must add only items they do not hold yet
    p = np.r_[np.full(3, 0.33), np.full(7, 0.01 / 7)]
    users, items, _ = _sample_without_replacement(np.full(50, 9), p, np.random.default_rng(0),
                                                  heavy_share=1.0, max_rounds=1)
    assert np.array_equal(np.bincount(users), np.full(50, 9))
    assert len(np.unique(users.astype(np.int64) * 10 + items)) == 450

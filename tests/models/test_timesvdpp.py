"""`timesvdpp`: conformance, the kernel against its slow twin, the time terms, a floor on u1."""

from __future__ import annotations

import numpy as np
import pytest

from recstack.data.interactions import Interactions
from recstack.evaluate import rating_metrics
from recstack.models.svdpp import shuffled_positions
from recstack.models.timesvdpp import DAY, TimeSVDpp, timesvdpp_epoch, timesvdpp_epoch_slow
from tests.models.conformance import ModelConformance


class TestTimeSVDpp(ModelConformance):
    model_name = "timesvdpp"
    params = {"factors": 8, "epochs": 40, "early_stopping": False, "learning_rate": 0.02}


def test_kernel_matches_slow_twin(blocks):
    rng = np.random.default_rng(1)
    csr = blocks.csr
    indptr, indices = csr.indptr.astype(np.int64), csr.indices.astype(np.int64)
    r = csr.data.astype(np.float64)
    nnz, k, bins = len(r), 5, 4
    dev = rng.normal(0, 2, nnz)
    tbin = rng.integers(0, bins, nnz)
    slot = rng.integers(0, 30, nnz)
    state = [rng.normal(0, 0.1, (blocks.n_users, k)), rng.normal(0, 0.1, (blocks.n_items, k)),
             rng.normal(0, 0.1, (blocks.n_items, k)), np.zeros(blocks.n_users), np.zeros(blocks.n_items),
             np.zeros(blocks.n_users), np.zeros((blocks.n_items, bins)), np.zeros(30)]
    twin = [a.copy() for a in state]
    for _ in range(2):
        order, pos = rng.permutation(blocks.n_users), shuffled_positions(indptr, rng)
        args = (3.0, 0.01, 0.02, 0.03, 0.04, 0.005, 1.0, 0.1, 0.05)
        a = timesvdpp_epoch(indptr, indices, r, dev, tbin, slot, order, pos, *state, *args)
        b = timesvdpp_epoch_slow(indptr, indices, r, dev, tbin, slot, order, pos, *twin, *args)
        assert a == pytest.approx(b, rel=1e-9)
    for x, y in zip(state, twin):
        np.testing.assert_allclose(x, y, rtol=1e-8, atol=1e-10)


def test_time_terms_learn_a_drifting_user():
    """A user whose ratings rise by one star over 100 days: the drift α_u·dev_u(t) follows them."""
    rng = np.random.default_rng(0)
    days = np.arange(200) % 100
    users = np.r_[np.zeros(200, int), rng.integers(1, 20, 2000)]
    items = np.r_[rng.integers(0, 50, 200), rng.integers(0, 50, 2000)]
    ratings = np.r_[2.5 + days / 100.0, rng.normal(3.0, 0.3, 2000)].clip(1, 5)
    times = np.r_[days, rng.integers(0, 100, 2000)] * DAY + 10 * DAY
    data = Interactions.from_arrays(users.astype(str), items.astype(str), ratings, times)
    m = TimeSVDpp(factors=2, epochs=30, early_stopping=False, lr_time=0.01, reg_alpha=0.01).fit(data)
    u = data.user_of("0")
    early, late = m.predict([u, u], [0, 0], timestamps=np.array([12, 105]) * DAY)
    assert late - early > 0.5


@pytest.mark.slow
def test_quality_floor_u1(ml100k_u1):
    """With svdpp's u1 config, the time terms lower the test RMSE below SVD++'s (0.9113 here)."""
    train, test = ml100k_u1
    config = {"factors": 200, "epochs": 40, "learning_rate": 0.005, "reg": 0.02, "reg_bias": 0.05,
              "init_std": 0.01, "early_stopping": False, "seed": 0}
    timed, _ = rating_metrics(TimeSVDpp(config).fit(train), train, test)  # evaluate passes each date
    frozen, _ = rating_metrics(TimeSVDpp(config, lr_time=0.0).fit(train), train, test)  # = svdpp
    assert timed["rmse"] <= 0.915, timed
    assert timed["rmse"] < frozen["rmse"], (timed, frozen)

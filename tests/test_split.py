"""Splits: GroupLens folds, random, MSR's stratified split (by hand and against pandas), leave-last-out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recstack.data.interactions import Interactions
from recstack.errors import DataError
from recstack.split import (
    leave_last_out,
    ml100k_folds,
    random_split,
    stratified_split,
    time_split,
    validation_split,
)


def rows(part: Interactions) -> list[int]:
    """The tiny cases below store each row's input position in its timestamp."""
    return part.timestamp.tolist()


def test_ml100k_folds_are_groupLens_u1_to_u5(ml100k):
    folds = ml100k_folds(ml100k)
    assert [name for name, _, _ in folds] == ["u1", "u2", "u3", "u4", "u5"]
    for f, (_, train, test) in enumerate(folds):
        lo, hi = f * 20_000, (f + 1) * 20_000
        assert len(test) == 20_000 and len(train) == 80_000
        for attr in ("user", "item", "rating", "timestamp"):
            full = getattr(ml100k, attr)
            assert np.array_equal(getattr(test, attr), full[lo:hi])
            assert np.array_equal(getattr(train, attr), np.r_[full[:lo], full[hi:]])
        assert train.user_ids is ml100k.user_ids and test.item_ids is ml100k.item_ids
    first = folds[0][2].to_frame().iloc[0].tolist()
    assert first == ["196", "242", 3.0, 881250949]  # u1.test starts with u.data's first row
    last = folds[4][2].to_frame().iloc[-1]
    assert last.tolist() == ml100k.to_frame().iloc[-1].tolist()


def test_ml100k_folds_need_equal_folds():
    d = Interactions.from_arrays(list("abc"), list("xyz"), timestamps=[0, 1, 2])
    with pytest.raises(DataError, match="3 rows do not divide into 5"):
        ml100k_folds(d)


def test_random_split_is_a_seeded_partition(ml100k):
    a_train, a_test = random_split(ml100k, 0.8, seed=7)
    b_train, b_test = random_split(ml100k, 0.8, seed=7)
    c_train, _ = random_split(ml100k, 0.8, seed=8)
    assert len(a_train) == 80_000 and len(a_test) == 20_000
    assert a_train.fingerprint() == b_train.fingerprint() and a_test.fingerprint() == b_test.fingerprint()
    assert a_train.fingerprint() != c_train.fingerprint()
    keys = lambda d: set((d.user.astype(np.int64) * 10_000 + d.item).tolist())  # noqa: E731
    assert not keys(a_train) & keys(a_test)
    assert keys(a_train) | keys(a_test) == keys(ml100k)
    assert np.all(np.diff(np.flatnonzero(np.isin(ml100k.timestamp, a_train.timestamp))) > 0)


def test_random_split_row_order_follows_input():
    d = Interactions.from_arrays(np.arange(10), np.arange(10), timestamps=np.arange(10))
    train, test = random_split(d, 0.7, seed=0)
    assert len(train) == 7 and rows(train) == sorted(rows(train)) and rows(test) == sorted(rows(test))
    assert sorted(rows(train) + rows(test)) == list(range(10))


# ---- stratified split, by hand -------------------------------------------------------------
# np.random.seed(42); np.random.rand(12), one draw per row in input order:
DRAWS = [0.37454012, 0.95071431, 0.73199394, 0.59865848, 0.15601864, 0.15599452,
         0.05808361, 0.86617615, 0.60111501, 0.70807258, 0.02058449, 0.96990985]
ITEMS = ["X", "Y", "X", "Z", "X", "X", "Z", "X", "Y", "Z", "X", "Z"]
USERS = ["a", "a", "b", "a", "b", "c", "c", "b", "c", "a", "c", "b"]


@pytest.fixture
def tiny():
    return Interactions.from_arrays(USERS, ITEMS, np.arange(12) % 5 + 1, np.arange(12))


def test_the_draws_are_numpy_seed_42():
    np.random.seed(42)
    assert np.allclose(np.random.rand(12), DRAWS, atol=1e-8)


def test_stratified_by_item_by_hand(tiny):
    # X: rows 0 2 4 5 7 10, six rows → round(4.5) = 4 train (NumPy rounds half to even);
    #    by draw: 10 (.021) 5 (.15599) 4 (.15602) 0 (.375) | 2 (.732) 7 (.866)
    # Y: rows 1 8, two rows → round(1.5) = 2 train: both
    # Z: rows 3 6 9 11, four rows → 3 train; by draw: 6 (.058) 3 (.599) 9 (.708) | 11 (.970)
    train, test = stratified_split(tiny, 0.75, "item", seed=42)
    assert rows(train) == [0, 1, 3, 4, 5, 6, 8, 9, 10]
    assert rows(test) == [2, 7, 11]
    assert train.item_ids is tiny.item_ids and test.user_ids is tiny.user_ids


def test_stratified_by_user_by_hand(tiny):
    # a: rows 0 1 3 9 → 3 train; by draw: 0 (.375) 3 (.599) 9 (.708) | 1 (.951)
    # b: rows 2 4 7 11 → 3 train; by draw: 4 (.156) 2 (.732) 7 (.866) | 11 (.970)
    # c: rows 5 6 8 10 → 3 train; by draw: 10 (.021) 6 (.058) 5 (.156) | 8 (.601)
    train, test = stratified_split(tiny, 0.75, "user", seed=42)
    assert rows(train) == [0, 2, 3, 4, 5, 6, 7, 9, 10]
    assert rows(test) == [1, 8, 11]


def test_stratified_split_neither_reads_nor_moves_global_random_state(tiny):
    np.random.seed(7)
    np.random.rand(3)  # disturb the global stream
    before = np.random.get_state()[1].copy()
    train, test = stratified_split(tiny, 0.75, "item", seed=42)
    assert rows(train) == [0, 1, 3, 4, 5, 6, 8, 9, 10]  # the seed-42 answer all the same
    assert np.array_equal(np.random.get_state()[1], before)  # and the caller's stream is untouched


def test_stratified_refuses_other_groupings(tiny):
    with pytest.raises(DataError, match="filter_by must be 'user' or 'item'"):
        stratified_split(tiny, filter_by="time")


def pandas_stratified(data: Interactions, ratio: float, by: str, seed: int) -> np.ndarray:
    """An independent reading of the rule: train mask from sort/groupby/cumcount in pandas."""
    frame = pd.DataFrame({"group": data.user if by == "user" else data.item})
    np.random.seed(seed)
    frame["draw"] = np.random.rand(len(frame))
    frame = frame.sort_values(["group", "draw"])
    frame["rank"] = frame.groupby("group").cumcount() + 1
    frame["count"] = frame.groupby("group")["draw"].transform("size")
    frame["train"] = frame["rank"] <= np.round(ratio * frame["count"])
    return frame.sort_index()["train"].to_numpy()


@pytest.mark.parametrize("by", ["item", "user"])
def test_stratified_matches_pandas_on_ml100k_row_for_row(ml100k, by):
    mask = pandas_stratified(ml100k, 0.75, by, 42)
    train, test = stratified_split(ml100k, 0.75, by, 42)
    expect_train, expect_test = ml100k.subset(mask), ml100k.subset(~mask)
    for attr in ("user", "item", "rating", "timestamp"):
        assert np.array_equal(getattr(train, attr), getattr(expect_train, attr))
        assert np.array_equal(getattr(test, attr), getattr(expect_test, attr))
    assert 0.74 < len(train) / len(ml100k) < 0.77


def test_msr_fixture_is_the_item_split(ml100k_msr, ml100k):
    train, test = ml100k_msr
    assert len(train) + len(test) == len(ml100k)
    assert pandas_stratified(ml100k, 0.75, "item", 42).sum() == len(train)


# ---- leave-last-out, time, validation --------------------------------------------------------
def test_leave_last_out_orders_ties_by_file_order():
    # user u: rows 0..4 with timestamps 5 3 5 1 9 → order 3 1 0 2 4 → test 4, valid 2, train 3 1 0
    # user v: rows 5 6 8 all at time 7 → file order → test 8, valid 6, train 5
    # user w: two rows (< min_train + 2) → both train
    users = ["u", "u", "u", "u", "u", "v", "v", "w", "v", "w"]
    items = ["a", "b", "c", "d", "e", "a", "b", "a", "c", "b"]
    ts = [5, 3, 5, 1, 9, 7, 7, 2, 7, 1]
    d = Interactions.from_arrays(users, items, None, ts)
    train, valid, test = leave_last_out(d)
    assert test.to_frame()[["user", "item"]].values.tolist() == [["u", "e"], ["v", "c"]]
    assert valid.to_frame()[["user", "item"]].values.tolist() == [["u", "c"], ["v", "b"]]
    assert train.to_frame()[["user", "item"]].values.tolist() == [
        ["u", "a"], ["u", "b"], ["u", "d"], ["v", "a"], ["w", "a"], ["w", "b"]]
    assert train.user_ids is valid.user_ids is test.user_ids is d.user_ids
    # ties in time: the later row in the file is the later interaction
    d2 = Interactions.from_arrays(["u"] * 4, ["a", "b", "c", "d"], None, [1, 1, 1, 1])
    _, v2, t2 = leave_last_out(d2)
    assert t2.item_ids[t2.item].tolist() == ["d"] and v2.item_ids[v2.item].tolist() == ["c"]


def test_leave_last_out_on_ml100k(ml100k):
    train, valid, test = leave_last_out(ml100k)
    assert len(test) == len(valid) == 943 and len(train) == 100_000 - 2 * 943
    last = pd.DataFrame({"u": ml100k.user, "t": ml100k.timestamp, "row": np.arange(len(ml100k))})
    last = last.sort_values(["u", "t", "row"]).groupby("u").tail(1).sort_values("row")
    assert np.array_equal(test.item, ml100k.item[last["row"].to_numpy()])


def test_time_split_and_validation_split():
    d = Interactions.from_arrays(np.arange(10), np.arange(10), None, np.arange(10) * 10)
    early, late = time_split(d, 45)
    assert rows(early) == [0, 10, 20, 30, 40] and rows(late) == [50, 60, 70, 80, 90]
    tr, va = validation_split(d, 0.2, seed=1)
    assert len(tr) == 8 and len(va) == 2 and tr.user_ids is d.user_ids
    with pytest.raises(DataError, match="validation fraction"):
        validation_split(d, 1.0)

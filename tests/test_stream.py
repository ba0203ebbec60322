"""The stream protocol (prequential replay) and `Recommender.update`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recstack.cli import main
from recstack.data.interactions import Interactions
from recstack.data.synthetic import block_data, block_of
from recstack.errors import DataError, RecstackError
from recstack.models.base import make_model
from recstack.persist import SavedModel, load_model, save_model
from recstack.recommend import Recommender
from recstack.split import stream_split
from recstack.stream import run_stream

DAY = 86400


def flip_stream() -> Interactions:
    """Known answers. Items: even = block 0, odd = block 1. Days 0-9: 30 block-1 users and 10
    block-0 users rate 6 items of their block (odd items are the popular ones). Then each day
    d = 10..19 two new block-0 users rate 3 even items, and rate 3 other even items on day d + 1."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(40):
        block = 1 if u < 30 else 0
        for n, i in enumerate(rng.choice(np.arange(block, 20, 2), 6, replace=False)):
            rows.append((f"u{u}", f"i{i}", 5.0, (u % 10) * DAY + n))
    for d in range(10, 20):
        for v in range(2):
            items = rng.choice(np.arange(0, 20, 2), 6, replace=False)
            for n, i in enumerate(items):
                rows.append((f"n{d}-{v}", f"i{i}", 5.0, (d + n // 3) * DAY + 100 + n))
    users, items, ratings, ts = zip(*rows)
    return Interactions.from_arrays(users, items, ratings, ts, name="flip")


def test_stream_split_vocabularies_extend():
    data = flip_stream()
    initial, days = stream_split(data, 0.5)
    assert initial.timestamp.max() < days[0][1].timestamp.min()
    sizes = [initial.n_users] + [b.n_users for _, b in days]
    assert sizes == sorted(sizes) and sizes[-1] == data.n_users
    for _, b in days:  # a prefix of the full vocabulary, in order of first appearance
        assert b.user_ids.tolist() == days[-1][1].user_ids[:b.n_users].tolist()
        assert len(np.unique(b.timestamp // DAY)) == 1
    assert len(initial) + sum(len(b) for _, b in days) == len(data)


@pytest.mark.parametrize("name,params", [("item-knn", {"mode": "ranking", "similarity": "cosine", "k": 10}),
                                         ("als", {"factors": 4, "epochs": 10, "reg": 1.0, "alpha": 5.0})])
def test_stream_known_answer(name, params):
    """A returning new user: `none` still shows the (wrong-block) popular items — a miss — while
    `incremental` and `retrain` learned the user's first day and hit."""
    data = flip_stream()
    frac = float(np.mean(data.timestamp < 10 * DAY)) + 1e-9
    recs = {u: run_stream(name, data, params, update=u, fraction=frac) for u in ("none", "incremental", "retrain")}
    for rec in recs.values():
        assert rec["user_days"] == 40 and len(rec["series"]) == 11
        assert set(rec["metrics"]) == {"hr@10", "ndcg@10", "recall@10"}
    day_hr = {u: [d["hr@10"] for d in r["series"][1:-1]] for u, r in recs.items()}
    assert recs["none"]["update_seconds"] == 0.0
    assert len(recs["incremental"]["update_batch_seconds"]) == 11
    # the untimed warm-up runs on a copy: only incremental has one, and the replay is unchanged by it
    assert recs["incremental"]["warmup_seconds"] > 0.0 == recs["retrain"]["warmup_seconds"]
    # days 11..19 each have 2 returning users (miss under none, hit when updated) and 2 new ones
    # (popular fallback: a miss under none; once updated, popularity follows the new even items)
    assert day_hr["none"] == [0.0] * 9
    assert min(day_hr["incremental"]) >= 0.5 and min(day_hr["retrain"]) >= 0.5
    assert recs["none"]["metrics"]["hr@10"] == 0.0 < recs["incremental"]["metrics"]["hr@10"]


def test_stream_retrain_every():
    data = flip_stream()
    frac = float(np.mean(data.timestamp < 10 * DAY)) + 1e-9
    rec = run_stream("popular", data, {}, update="retrain", retrain_every=3, fraction=frac)
    assert len(rec["update_batch_seconds"]) == 11 // 3


def test_cli_stream_json(capsys):
    assert main(["evaluate", "popular", "--protocol", "stream", "--update", "incremental", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["protocol"] == "stream" and rec["user_days"] == 1415 and rec["days"] == len(rec["series"])
    assert 0.1 < rec["metrics"]["hr@10"] < 1.0


# ---- Recommender.update -------------------------------------------------------------------------
@pytest.fixture
def rec():
    data = block_data(40, 30, 2, 0.5, 0)
    data = data.subset(block_of(data.user) == block_of(data.item))  # implicit feedback: in-block only
    return Recommender(SavedModel(make_model("als", {"factors": 4, "epochs": 10, "reg": 1.0}).fit(data), data))


@pytest.mark.parametrize("rows,match", [
    ([("0", "1", 5.0), ("1", "2")], "row 2: missing field 'rating'"),
    ([("0", "1", "five")], r"row 1: field 'rating' = 'five' is not a number"),
    ([("0", "1", 4.0, "yesterday")], r"row 1: field 'timestamp' = 'yesterday' is not a number"),
    ([{"user": "0", "item": "1"}], "row 1: missing field 'rating'"),
    ([("0", None, 4.0)], "row 1: field 'item' = None is not a valid id"),
    ([("0", "1", float("nan"))], "row 1: field 'rating'"),
])
def test_update_malformed_rows_change_nothing(rec, rows, match):
    before = rec.train.fingerprint()
    scores = rec.model.score(np.arange(5)).copy()
    with pytest.raises(DataError, match=match):
        rec.update(rows)
    assert rec.train.fingerprint() == before
    np.testing.assert_array_equal(rec.model.score(np.arange(5)), scores)


def test_update_rating_off_the_scale_changes_nothing():
    """A rating model refuses a rating outside its training scale before its SGD steps run (a
    rating of 10^6 would throw the factors to inf and every user's answer with them)."""
    data = block_data(30, 20, 2, 0.5, 0)  # ratings 1..5
    r = Recommender(SavedModel(make_model("biased-mf", {"factors": 4, "epochs": 5}).fit(data), data))
    scores = r.model.score(np.arange(30)).copy()
    with pytest.raises(DataError, match=r"row 2: field 'rating' = 1e\+06 is outside the model's rating scale 1\.\.5"):
        r.update([("0", "1", 4.0), ("x", "new-item", 1e6)])
    np.testing.assert_array_equal(r.model.score(np.arange(30)), scores)
    assert r.train.n_users == 30 and r.train.n_items == 20
    r.update([("x", "new-item", 5.0)])  # on the scale: learned
    assert np.isfinite(r.model.score(np.arange(31))).all()


def test_update_without_partial_fit_says_so():
    data = block_data(20, 10, 2, 0.5, 0)
    r = Recommender(SavedModel(make_model("ease").fit(data), data))
    with pytest.raises(RecstackError, match="has no incremental updates"):
        r.update([("0", "1", 5.0)])


def test_update_new_user_and_item_then_save_load(rec, tmp_path):
    counts = rec.update([("new-user", "0", 5.0, 10), ("new-user", "2", 5.0, 11), ("0", "new-item", 5.0, 12),
                         ("2", "new-item", 5.0), ("new-user", "4", 5.0, 5)])  # the last one is late
    assert counts == {"rows": 5, "new_users": 1, "new_items": 1}
    assert (rec.n_users, rec.n_items) == (41, 31)  # known before the pending rows are merged
    assert rec.model.n_users_ == rec.train.n_users == 41 and rec.train.n_items == 31
    top = rec.for_user("new-user", k=5)
    assert not {"0", "2", "4"} & set(top.ids.tolist())
    assert sum(i != "new-item" and int(i) % 2 == 0 for i in top.ids.tolist()) >= 4  # block 0, like the items it rated
    assert "new-item" in rec.popular(31).ids.tolist()
    rec.save(tmp_path / "m")
    loaded = Recommender(load_model(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.model.score(np.arange(41)), rec.model.score(np.arange(41)))
    assert loaded.for_user("new-user", k=5).ids.tolist() == top.ids.tolist()
    loaded.update([("new-user", "6", 1.0)])  # a loaded, updated model keeps learning


def test_update_repeated_rating_replaces(rec):
    rec.update([("0", "1", 1.0, 1), ("0", "1", 4.0, 2)])
    rows = (rec.train.user == rec.train.user_of("0")) & (rec.train.item == rec.train.item_of("1"))
    assert rows.sum() == 1 and rec.train.rating[rows][0] == 4.0


def test_updates_are_merged_lazily_and_answers_follow_each_one(rec):
    """Many single-row updates (some repeated, one new user, one new item) interleaved with answers:
    each answer already excludes what was just rated, and the log read afterwards equals one merge
    of all the rows — also when the pending batches are merged early (MAX_PENDING)."""
    from recstack.data.updates import extend, merge, parse_rows

    rows = [("0", "1", 2.0, 5), ("0", "3", 5.0, 6), ("new-user", "5", 5.0, 7), ("0", "1", 4.0, 8),
            ("1", "new-item", 3.0, 9), ("new-user", "7", 1.0, 10), ("2", "4", 5.0, 11)]
    base = rec.train
    expected = merge(base, extend(base, *parse_rows(rows)))
    rec.MAX_PENDING = 3
    for row in rows:
        rec.update([row])
        top = rec.for_user(row[0], k=10)
        assert row[1] not in top.ids.tolist()
    got = rec.train
    assert got.fingerprint() == expected.fingerprint()
    assert got.user_ids.tolist() == expected.user_ids.tolist() and got.item_ids.tolist() == expected.item_ids.tolist()
    assert rec.for_user("new-user", k=30).ids.tolist() == Recommender(SavedModel(rec.model, got)).for_user(
        "new-user", k=30).ids.tolist()


def test_views_between_updates_agree_with_the_merged_log(rec):
    """`item_popularity`, `user_rows`, the id maps and `history` read between updates (no merge:
    what a service answering after each event uses) equal what the merged log says."""
    rows = [("0", "1", 2.0, 5), ("0", "3", 5.0, 6), ("new-user", "5", 5.0, 7), ("0", "1", 4.0, 8),
            ("1", "new-item", 3.0, 9), ("new-user", "new-item", 1.0, 10), ("2", "4", 5.0, 11)]
    for row in rows:
        rec.update([row])
    assert rec._pending  # nothing above merged the log
    pop = rec.item_popularity.copy()
    rows_of = {u: rec.user_rows(rec.user_index[u]) for u in ("0", "1", "2", "new-user")}
    ids, history = rec.item_ids.tolist(), rec.history("0")
    merged = rec.train
    assert not rec._pending
    assert pop.tolist() == merged.item_popularity.tolist()
    assert ids == merged.item_ids.tolist() and rec.item_index == merged.item_index
    for user, (items, ratings) in rows_of.items():
        lo, hi = merged.csr.indptr[merged.user_of(user)], merged.csr.indptr[merged.user_of(user) + 1]
        want = dict(zip(merged.csr.indices[lo:hi].tolist(), merged.csr.data[lo:hi].tolist()))
        assert dict(zip(items.tolist(), ratings.tolist())) == want and len(items) == len(want)
    assert dict(zip(*(a.tolist() for a in history))) == dict(zip(*(a.tolist() for a in rec.history("0"))))
    assert dict(zip(*(a.tolist() for a in history)))[merged.item_of("1")] == 4.0


def test_save_model_after_update_roundtrip(tmp_path):
    data = block_data(30, 20, 2, 0.5, 0)
    model = make_model("biased-mf", {"factors": 4, "epochs": 5}).fit(data)
    r = Recommender(SavedModel(model, data))
    r.update([("x", "3", 5.0), ("x", "5", 4.0)])
    save_model(tmp_path / "m", r.model, r.train)
    again = load_model(tmp_path / "m")
    np.testing.assert_array_equal(again.model.score(np.arange(31)), model.score(np.arange(31)))


def test_update_with_new_items_keeps_reranking_consistent(ml100k):
    """Derived caches (metadata, genres, item vectors) follow the grown vocabulary after an update."""
    from recstack.models.base import make_model
    from recstack.persist import SavedModel
    from recstack.recommend import Recommender
    from recstack.rerank import Rerank

    rec = Recommender(SavedModel(make_model("als", factors=8).fit(ml100k), ml100k, {}))
    settings = Rerank(0.5, similarity="embedding")
    before = rec.for_user("196", k=5, rerank=settings)
    rec.update([("196", "brand-new-item", 5.0)])
    after = rec.for_user("196", k=5, rerank=Rerank(0.5, similarity="embedding"))
    assert len(before) == len(after) == 5
    assert rec._cache.get("unit_vectors", {}).get("embedding").shape[0] == rec.train.n_items

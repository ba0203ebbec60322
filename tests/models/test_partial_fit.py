"""partial_fit against from-scratch answers: fold-in solves (MF, ALS), full kNN recomputation."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from recstack.data.movielens import load_dataset
from recstack.models.base import has_ability, make_model
from recstack.models.incremental import csr_upsert, dedupe_last, grow_rows
from recstack.split import stream_split
from recstack.stream import _concat


@pytest.fixture(scope="module")
def stream():
    initial, days = stream_split(load_dataset("ml-100k"), 0.5)
    return initial, days[:6]


def test_csr_upsert_replaces_and_inserts():
    indptr, indices, values = np.array([0, 2, 3]), np.array([1, 3, 0]), np.array([1.0, 2.0, 3.0])
    u, i, r = dedupe_last(np.array([0, 2, 0, 0]), np.array([3, 1, 2, 3]), np.array([9.0, 4.0, 5.0, 7.0]), 4)
    p, ind, val, old = csr_upsert(indptr, indices, values, 3, u, i, r)
    assert p.tolist() == [0, 3, 4, 5] and ind.tolist() == [1, 2, 3, 0, 1]
    assert val.tolist() == [1.0, 5.0, 7.0, 3.0, 4.0]  # the later of the two (0, 3) rows wins
    assert np.isnan(old[[0, 2]]).all() and old[1] == 2.0


def test_csr_upsert_matches_a_dense_reference():
    """Random batches (replacements, inserts anywhere, new rows) against the same edit of a dense matrix."""
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    for _ in range(100):
        n_rows, n_cols = int(rng.integers(1, 30)), int(rng.integers(1, 40))
        dense = (rng.random((n_rows, n_cols)) < 0.3) * rng.integers(1, 6, (n_rows, n_cols)).astype(float)
        x = sp.csr_matrix(dense)
        x.sort_indices()
        grown = n_rows + int(rng.integers(0, 3))
        k = int(rng.integers(1, 20))
        u, i, r = dedupe_last(rng.integers(0, grown, k), rng.integers(0, n_cols, k),
                              rng.integers(1, 6, k).astype(float), n_cols)
        p, ind, val, old = csr_upsert(x.indptr.astype(np.int64), x.indices.astype(np.int64), x.data.copy(),
                                      grown, u, i, r)
        want = np.zeros((grown, n_cols))
        want[:n_rows] = dense
        np.testing.assert_array_equal(old, np.where(want[u, i] != 0, want[u, i], np.nan))
        want[u, i] = r
        np.testing.assert_array_equal(sp.csr_matrix((val, ind, p), shape=(grown, n_cols)).toarray(), want)
        assert all((np.diff(ind[p[q]:p[q + 1]]) > 0).all() for q in range(grown))


def test_grow_rows_keeps_rows_and_reuses_its_buffer():
    """A state array grows to exactly n rows (old rows kept, new ones `fill`), into a buffer that
    doubles: small growths after the first reuse it; an array replaced from outside starts anew."""
    import types

    owner = types.SimpleNamespace(f_=np.arange(6, dtype=np.float32).reshape(3, 2))
    grow_rows(owner, "f_", 5, fill=-1.0)
    assert owner.f_.shape == (5, 2) and owner.f_[:3].ravel().tolist() == list(range(6))
    assert (owner.f_[3:] == -1.0).all()
    buf = owner._capacity["f_"]
    owner.f_[4] = 7.0  # in-place writes land in the buffer
    grow_rows(owner, "f_", 6)
    assert owner.f_.base is buf and owner.f_.shape == (6, 2)
    assert owner.f_[4].tolist() == [7.0, 7.0] and owner.f_[5].tolist() == [0.0, 0.0]
    grow_rows(owner, "f_", 4)  # never shrinks
    assert owner.f_.shape == (6, 2)
    owner.f_ = np.ones((2, 2), np.float32)  # replaced: a new buffer, the old one untouched
    grow_rows(owner, "f_", 3)
    assert owner._capacity["f_"] is not buf and owner.f_[:2].tolist() == [[1.0, 1.0]] * 2


def test_pending_log_rows_and_merge_match_upserts():
    """Random batches (re-rates inside a batch and across batches, new users) go to the pending
    log: every user's `merged_row` and the CSR after `merge_into` equal the same batches upserted
    one by one into the CSR, with merges at random points in between."""
    import types

    import scipy.sparse as sp

    from recstack.models.incremental import PendingRatings, merged_row

    rng = np.random.default_rng(1)
    for _ in range(30):
        n_users, n_items = int(rng.integers(2, 20)), int(rng.integers(2, 30))
        dense = (rng.random((n_users, n_items)) < 0.3) * rng.integers(1, 6, (n_users, n_items))
        x = sp.csr_matrix(dense.astype(np.float32))
        x.sort_indices()
        model = types.SimpleNamespace(train_indptr_=x.indptr.astype(np.int64),
                                      train_indices_=x.indices.astype(np.int32),
                                      train_values_=x.data.astype(np.float32), n_users_=n_users, n_items_=n_items)
        ref = [x.indptr.astype(np.int64), x.indices.astype(np.int32), x.data.astype(np.float32)]
        log = PendingRatings()
        for _ in range(int(rng.integers(1, 6))):
            n_users += int(rng.integers(0, 3))
            m = int(rng.integers(1, 40))
            u, i = rng.integers(0, n_users, m), rng.integers(0, n_items, m)
            r = rng.integers(1, 6, m).astype(np.float32)
            log.reserve(m, n_users)
            for q in range(m):  # appended in event order: a later entry for a pair wins
                log.users[log.n], log.items[log.n], log.ratings[log.n] = u[q], i[q], r[q]
                log.prev[log.n], log.head[u[q]] = log.head[u[q]], log.n
                log.n += 1
            du, di, dr = dedupe_last(u, i, r, n_items)
            ref[0], ref[1], ref[2], _ = csr_upsert(ref[0], ref[1], ref[2], n_users, du, di, dr)
            model.n_users_ = n_users
            stamp = np.full(n_items, -1, np.int64)
            for user in range(n_users):
                room = n_items + log.n
                items, ratings = np.empty(room, np.int32), np.empty(room, np.float32)
                k = merged_row(user, model.train_indptr_, model.train_indices_, model.train_values_, log.head,
                               log.prev, log.items, log.ratings, stamp, items, ratings)
                lo, hi = ref[0][user], ref[0][user + 1]
                assert items[:k].tolist() == ref[1][lo:hi].tolist() and ratings[:k].tolist() == ref[2][lo:hi].tolist()
                assert (stamp == -1).all()
            if rng.random() < 0.4:
                log.merge_into(model)
                assert log.n == 0 and (log.head == -1).all()
        log.merge_into(model)
        for a, b in zip((model.train_indptr_, model.train_indices_, model.train_values_), ref):
            np.testing.assert_array_equal(a, b)
    # one user with many log entries (sorted by a full sort, not insertion): 90 events over 60 items
    log = PendingRatings()
    log.reserve(90, 1)
    items_in = rng.permutation(np.r_[np.arange(60), rng.integers(0, 60, 30)]).astype(np.int32)
    for q, j in enumerate(items_in):
        log.users[q], log.items[q], log.ratings[q] = 0, j, q
        log.prev[q], log.head[0] = log.head[0], q
    log.n = 90
    out_i, out_r = np.empty(90, np.int32), np.empty(90, np.float32)
    empty = np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32)
    k = merged_row(0, *empty, log.head, log.prev, log.items, log.ratings, np.full(60, -1, np.int64), out_i, out_r)
    last = {int(j): float(q) for q, j in enumerate(items_in)}
    assert k == 60 and out_i[:k].tolist() == list(range(60)) and out_r[:k].tolist() == [last[j] for j in range(60)]


def test_stream_seed_is_a_distinct_63_bit_seed_per_model_seed_and_update():
    """Update seeds: deterministic, below 2⁶³, different for every (model seed, update) pair of a
    grid, and changing in about half of their bits from one update to the next."""
    from recstack.models.mf import stream_seed

    seeds = [0, 1, 2, 42, 2**31 + 5, 2**32, 2**63 + 11]
    got = {(a, b): stream_seed(a, b) for a in seeds for b in range(200)}
    assert len(set(got.values())) == len(got)
    assert all(0 <= v < 1 << 63 for v in got.values())
    assert stream_seed(42, 7) == got[(42, 7)]
    flips = [bin(got[(a, b)] ^ got[(a, b + 1)]).count("1") for a in seeds for b in range(199)]
    assert 28 <= np.mean(flips) <= 35


def test_mf_pending_log_merges_keep_updates_exact(stream, tmp_path, monkeypatch):
    """biased-mf with the log merged into the kept CSR every few batches (a tiny merge share)
    learns exactly what it learns with the log merged only when saved; the saved CSR is every
    rating seen, and save → load → more updates equals updating without the save."""
    from recstack.models.incremental import PendingRatings
    from recstack.persist import load_model, save_model

    initial, days = stream
    params = {"factors": 8, "epochs": 2, "replay_size": 200}
    a = make_model("biased-mf", params).fit(initial)
    b = make_model("biased-mf", params).fit(initial)
    for _, batch in days[:4]:
        a.partial_fit(batch)
        b.partial_fit(batch)
        b._pending.merge_into(b)  # after every batch
    assert a._pending.n > 0 and b._pending.n == 0
    for key in ("user_factors_", "item_factors_", "user_bias_", "item_bias_", "replay_users_", "replay_ratings_"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    seen = _concat([initial] + [bt for _, bt in days[:4]])
    save_model(tmp_path / "m", a, seen)
    u, i, r = dedupe_last(seen.user, seen.item, seen.rating, seen.n_items)
    want = np.zeros((seen.n_users, seen.n_items), np.float32)
    want[u, i] = r
    import scipy.sparse as sp

    got = sp.csr_matrix((a.train_values_, a.train_indices_, a.train_indptr_), shape=want.shape).toarray()
    np.testing.assert_array_equal(got, want)
    loaded = load_model(tmp_path / "m").model
    for _, batch in days[4:]:
        a.partial_fit(batch)
        with monkeypatch.context() as m:  # the loaded model merges its log before every batch
            m.setattr(PendingRatings, "merge_floor", 0)
            m.setattr(PendingRatings, "merge_share", 0.0)
            loaded.partial_fit(batch)
            assert loaded._pending.n == len(np.unique(batch.user * batch.n_items + batch.item))
    for key in ("user_factors_", "item_factors_", "user_bias_", "item_bias_"):
        np.testing.assert_array_equal(getattr(a, key), getattr(loaded, key))


@pytest.mark.parametrize("name,params", [
    ("mf", {"factors": 8, "epochs": 3}),
    ("biased-mf", {"factors": 16, "epochs": 3}),
    ("svdpp", {"factors": 8, "epochs": 2}),
    ("als", {"factors": 8, "epochs": 5}),
    ("als", {"mode": "explicit", "factors": 8, "epochs": 5}),
])
def test_partial_fit_user_equals_fold_in(stream, name, params):
    """After partial_fit, every touched user's vector is the fold-in solve over all their ratings."""
    initial, days = stream
    model = make_model(name, params).fit(initial)
    for _, batch in days[:3]:
        model.partial_fit(batch)
    assert model.n_users_ == days[2][1].n_users and model.n_items_ == days[2][1].n_items
    log = _concat([initial] + [b for _, b in days[:3]])
    for u in np.unique(days[2][1].user)[:10]:
        rows = log.user == u
        x, b = model.fold_in(log.item[rows], log.rating[rows])
        np.testing.assert_allclose(model.user_factors_[u], x, atol=1e-5)
        if model.biased:
            assert abs(float(model.user_bias_[u]) - b) < 1e-5


@pytest.mark.parametrize("mode", ["implicit", "explicit"])
def test_als_item_statistics_match_direct_solves(stream, mode):
    """Items solved from the kept Gram statistics equal items solved from their ratings, and
    the statistics carried through the updates equal ones computed afresh from the final state."""
    from recstack.models.incremental import gram_stats

    initial, days = stream
    a = make_model("als", {"mode": mode, "factors": 8, "epochs": 5}).fit(initial)
    b = make_model("als", {"mode": mode, "factors": 8, "epochs": 5}).fit(initial)
    b.stats_budget = 0
    for _, batch in days:
        a.partial_fit(batch)
        b.partial_fit(batch)
    np.testing.assert_allclose(a.item_factors_, b.item_factors_, atol=1e-4)
    n, k = a.n_items_, a.user_factors_.shape[1]
    M, rhs = np.zeros((n, k * (k + 1) // 2)), np.zeros((n, k))
    assert getattr(a, "train_t_indptr_", None) is None  # solved from the statistics: no item-major copy kept
    indptr, users, values = a._item_major()
    w, t = a._weights(values)
    gram_stats(indptr, users, w, t, a.user_factors_.astype(np.float64), M, rhs)
    np.testing.assert_array_equal(a.item_count_[:n], np.diff(indptr))
    scale = np.abs(M).max()
    np.testing.assert_allclose(a.item_gram_[:n], M, atol=1e-9 * scale)
    np.testing.assert_allclose(a.item_rhs_[:n], rhs, atol=1e-9 * np.abs(rhs).max())


def test_als_reads_full_item_statistics_saved_by_an_earlier_version(stream):
    """item_gram_ saved as full (n, k, k) matrices (before the packed layout) is converted on the
    next update, which then equals the update from the packed statistics."""
    initial, days = stream
    a = make_model("als", {"factors": 8, "epochs": 5}).fit(initial).partial_fit(days[0][1])
    b = copy.deepcopy(a)
    n, k = len(b.item_gram_), b.user_factors_.shape[1]
    full = np.zeros((n, k, k))
    lower, upper = np.tril_indices(k)
    full[:, lower, upper] = b.item_gram_
    full[:, upper, lower] = b.item_gram_
    b.item_gram_ = full
    a.partial_fit(days[1][1])
    b.partial_fit(days[1][1])
    assert b.item_gram_.shape == a.item_gram_.shape
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)


@pytest.mark.parametrize("name,params", [
    ("item-knn", {"mode": "ranking", "similarity": "cosine", "k": 50}),
    ("item-knn", {"similarity": "pearson", "max_neighbours": 40, "estimator": "means"}),
    ("item-knn", {"similarity": "cosine", "shrinkage": 10.0, "estimator": "means"}),
    ("user-knn", {"similarity": "cosine", "max_neighbours": 40, "estimator": "means"}),
    ("user-knn", {"mode": "ranking", "similarity": "cosine", "k": 30, "binary": True}),
])
def test_knn_incremental_equals_full_recomputation(stream, name, params):
    """Neighbours and scores equal a full refit (the baseline estimator is left out: partial_fit
    keeps the fitted baselines and global mean, a refit re-estimates them)."""
    initial, days = stream
    model = make_model(name, params).fit(initial)
    for _, batch in days:
        model.partial_fit(batch)
    full = make_model(name, params).fit(_concat([initial] + [b for _, b in days]))
    assert model.neighbours().shape == full.neighbours().shape
    np.testing.assert_array_equal(model.neighbours().toarray(), full.neighbours().toarray())
    users = np.arange(0, full.n_users_, 50)
    np.testing.assert_allclose(model.score(users), full.score(users), rtol=1e-6, atol=1e-6)


def test_bm25_has_no_partial_fit():
    assert not has_ability(make_model("item-knn", {"mode": "ranking", "similarity": "bm25"}), "partial_fit")
    assert has_ability(make_model("item-knn", {"mode": "ranking", "similarity": "cosine"}), "partial_fit")
    assert not has_ability(make_model("ease"), "partial_fit")


@pytest.mark.parametrize("name,params", [
    ("item-knn", {"mode": "ranking", "similarity": "cosine", "k": 20, "binary": True}),
    ("user-knn", {"mode": "ranking", "similarity": "cosine", "k": 10}),
])
def test_knn_corating_state_survives_save_load(stream, name, params, tmp_path):
    """Ranking cosine keeps C = A·Aᵀ (`corating_`): after updates and a save → load it still equals
    the refit's C, and further updates on the loaded model equal a full refit; without the state
    (a catalogue over `corating_max_bytes`) the general path gives the same neighbours."""
    from recstack.persist import load_model, save_model

    initial, days = stream
    model = make_model(name, params).fit(initial)
    for _, batch in days[:3]:
        model.partial_fit(batch)
    seen = _concat([initial] + [b for _, b in days[:3]])
    save_model(tmp_path / "m", model, seen)
    loaded = load_model(tmp_path / "m").model
    n = loaded.n_users_ if params.get("user_based", name == "user-knn") else loaded.n_items_
    assert loaded.corating_.shape == (n, n)
    np.testing.assert_array_equal(loaded.corating_, make_model(name, params).fit(seen).corating_)
    for _, batch in days[3:]:
        loaded.partial_fit(batch)
    everything = _concat([initial] + [b for _, b in days])
    full = make_model(name, params).fit(everything)
    np.testing.assert_array_equal(loaded.corating_, full.corating_)
    np.testing.assert_array_equal(loaded.neighbours().toarray(), full.neighbours().toarray())
    general = make_model(name, params)
    general.corating_max_bytes = 0
    general.fit(initial)
    assert general.corating_ is None
    for _, batch in days:
        general.partial_fit(batch)
    np.testing.assert_allclose(general.neighbours().toarray(), full.neighbours().toarray(), atol=1e-6)


@pytest.mark.parametrize("params", [{"k": 3, "binary": True}, {"k": 4}, {"k": 2, "user_based": True}])
def test_knn_corating_updates_equal_refits_with_ties_and_rerates(params):
    """Small catalogue, tiny k and small integer ratings (many tied similarities), re-rated pairs
    and new users and items every day: after each day the updated lists equal a refit's."""
    from recstack.data.interactions import Interactions

    rng = np.random.default_rng(3)
    n = 1500
    users = rng.integers(0, 80, n) ** 2 // 80  # skewed activity
    items = rng.integers(0, 50, n) ** 2 // 50
    day = 86400
    _, first = np.unique(users * 50 + items, return_index=True)
    users, items = users[first], items[first]  # distinct pairs, then 60 re-rated in the last week
    again = rng.choice(len(users), 60, replace=False)
    users, items = np.r_[users, users[again]], np.r_[items, items[again]]
    ts = np.r_[rng.integers(0, 30 * day, len(first)), rng.integers(23 * day, 30 * day, 60)]
    order = np.argsort(ts, kind="stable")
    data = Interactions.from_arrays(users[order], items[order], rng.integers(1, 4, len(ts)).astype(float)[order],
                                    ts[order])
    initial, days = stream_split(data, 0.4)
    params = {"mode": "ranking", "similarity": "cosine", **params}
    model = make_model("item-knn", params).fit(initial)
    assert model.corating_ is not None
    log = [initial]
    for _, batch in days:
        model.partial_fit(batch)
        log.append(batch)
        seen = _concat(log)  # the refit sees each re-rated pair once, with its last rating
        u, i, r = dedupe_last(seen.user, seen.item, seen.rating, seen.n_items)
        seen = Interactions.from_arrays(seen.user_ids[u], seen.item_ids[i], r, user_ids=seen.user_ids,
                                        item_ids=seen.item_ids)
        full = make_model("item-knn", params).fit(seen)
        np.testing.assert_array_equal(model.corating_, full.corating_)
        np.testing.assert_array_equal(model.neighbours().toarray(), full.neighbours().toarray())

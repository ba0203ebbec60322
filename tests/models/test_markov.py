"""`markov`: conformance, counts against the slow twin, an exact sequential answer, a floor on ML-100K."""

from __future__ import annotations

import numpy as np
import pytest

from recstack.data.interactions import Interactions
from recstack.evaluate import topn_metrics
from recstack.models.markov import Markov, last_items, transition_counts, transition_counts_slow
from recstack.recommend import recommend
from recstack.split import leave_last_out
from tests.models.conformance import ModelConformance


def chain_data(n_users: int = 80, n_items: int = 30, min_len: int = 5, max_len: int = 15,
               seed: int = 0) -> Interactions:
    """Sequences where item i is always followed by item i+1 (mod n_items).

    User u starts at a random item and walks `min_len..max_len` steps; rows are shuffled so
    that only the timestamps carry the order. Known answer: the next item is last + 1.
    """
    rng = np.random.default_rng(seed)
    users, items, times = [], [], []
    for u in range(n_users):
        start = int(rng.integers(n_items))
        length = int(rng.integers(min_len, max_len + 1))
        t0 = int(rng.integers(1_000_000))
        for step in range(length):
            users.append(u)
            items.append((start + step) % n_items)
            times.append(t0 + 10 * step)
    perm = rng.permutation(len(users))
    return Interactions.from_arrays(
        np.asarray(users)[perm], np.asarray(items)[perm], np.ones(len(users)), np.asarray(times)[perm],
        user_ids=np.arange(n_users).astype(str), item_ids=np.arange(n_items).astype(str), name="chain",
    )


def next_item_hit_rate(model, seen: list[Interactions], target: Interactions, k: int = 1) -> float:
    """Share of `target` rows (one per user) whose item is in the user's top k (`seen` items removed)."""
    idx, _ = recommend(model, target.user, k, exclude=sum(p.csr for p in seen).tocsr())
    return float(np.mean([t in row for t, row in zip(target.item, idx, strict=True)]))


class TestMarkov(ModelConformance):
    model_name = "markov"
    params = {"smoothing": 1.0}

    def test_known_answer(self, fitted, data):
        """Two-block data has random order; the sequential known answer lives in `chain_data`."""
        chain = chain_data()
        train, valid, test = leave_last_out(chain)
        m = Markov().fit(train)
        assert next_item_hit_rate(m, [train], valid) == 1.0
        m = Markov().fit(train, valid)  # valid extends the histories: the next step is the test item
        assert next_item_hit_rate(m, [train, valid], test) == 1.0


def test_counts_match_slow_twin():
    rng = np.random.default_rng(3)
    n = 400
    data = Interactions.from_arrays(
        rng.integers(0, 25, n), rng.integers(0, 40, n), np.ones(n), rng.integers(0, 6, n),  # many ties
        user_ids=np.arange(25).astype(str), item_ids=np.arange(40).astype(str),
    )
    counts, last = transition_counts(data)
    dense, last_slow = transition_counts_slow(data)
    np.testing.assert_array_equal(counts.toarray(), dense)
    np.testing.assert_array_equal(last, last_slow)
    assert counts.sum() == n - len(np.unique(data.user))


def test_ties_follow_row_order():
    data = Interactions.from_arrays([0, 0, 0], [2, 0, 1], np.ones(3), [5, 5, 5],
                                    user_ids=["0"], item_ids=["0", "1", "2"])
    counts, last = transition_counts(data)
    assert counts[2, 0] == 1 and counts[0, 1] == 1 and counts.nnz == 2
    assert last[0] == 1


def test_scores_are_smoothed_probabilities():
    chain = chain_data(n_users=20, n_items=12)
    m = Markov(smoothing=2.0).fit(chain)
    s = m.score(np.arange(20)).astype(np.float64)
    np.testing.assert_allclose(s.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(s[3], m.next_item_scores(int(m.last_item_[3])), rtol=1e-6)
    # a user with no training rows is scored by popularity alone
    lonely = chain.subset(chain.user != 0)
    m2 = Markov().fit(lonely)
    np.testing.assert_allclose(m2.score([0])[0], m2.popularity_, rtol=1e-6)


def test_valid_history_extends_last_item():
    chain = chain_data()
    train, valid, _ = leave_last_out(chain)
    last = last_items(train, valid)
    np.testing.assert_array_equal(last[valid.user], valid.item)
    assert (Markov(valid_history=False).fit(train, valid).last_item_ == last_items(train)).all()


def test_markov_floor_leave_last_out(ml100k):
    """Floor on ML-100K leave-last-out, full ranking: measured NDCG@10 0.0766, most-popular ≈ 0.04."""
    train, valid, test = leave_last_out(ml100k)
    m = Markov().fit(train, valid)
    metrics, _ = topn_metrics(m, train, test, 10, "all", valid)
    assert metrics["ndcg@10"] > 0.06
    assert metrics["hr@10"] > 0.12


@pytest.mark.parametrize("bad", [-1.0, "x"])
def test_bad_smoothing_refused(bad):
    from recstack.errors import ConfigError

    with pytest.raises(ConfigError, match="smoothing"):
        Markov(smoothing=bad)


def test_sampled_negative_metrics_extra():
    """`sampled_topn_metrics` (the sampled-negative extra): exact on the chain, ties count as misses."""
    from recstack.evaluate import sampled_topn_metrics
    from recstack.models.base import Model

    class Constant(Model):
        name = "constant"

        def _fit(self, train, valid):
            pass

        def _score(self, users, items):
            return np.zeros((len(users), self.n_items_ if items is None else len(items)), np.float32)

    train, valid, test = leave_last_out(chain_data())
    m = Markov().fit(train, valid)
    out, _ = sampled_topn_metrics(m, train, test, n_negatives=10, k=1, seed=0, extra_exclude=valid)
    assert out == {"sampled10_hr@1": 1.0, "sampled10_ndcg@1": 1.0, "sampled10_mrr@1": 1.0}
    out, _ = sampled_topn_metrics(Constant().fit(train), train, test, n_negatives=10, k=5)
    assert out["sampled10_hr@5"] == 0.0
    again, _ = sampled_topn_metrics(m, train, test, 8, 3, seed=3)
    assert again == sampled_topn_metrics(m, train, test, 8, 3, seed=3)[0]

"""`popular`: conformance, a known answer on data with known popularity, the MSR benchmark figure."""

from __future__ import annotations

import numpy as np
import pytest

from recstack.data.interactions import Interactions
from recstack.evaluate import topn_metrics
from recstack.models.popular import Popular, popularity_scores
from recstack.recommend import recommend
from tests.models.conformance import ModelConformance


def _known_popularity() -> tuple[Interactions, np.ndarray]:
    """12 items; item j is rated by counts[j] of 20 users (ties at 5 and 3); user 19 rates only item 11."""
    counts = np.array([3, 9, 5, 12, 5, 1, 3, 7, 5, 0, 2, 1])
    users, items = [], []
    for j, c in enumerate(counts):
        users += list(range(c))
        items += [j] * c
    users.append(19)
    items.append(11)
    counts = counts.copy()
    counts[11] += 1
    data = Interactions.from_arrays(users, items, user_ids=np.arange(20).astype(str),
                                    item_ids=np.arange(12).astype(str))
    return data, counts


class TestPopular(ModelConformance):
    model_name = "popular"
    params = {}

    def test_known_answer(self, fitted, data):
        """Popular cannot know per-user blocks; instead: the exact ranking of known popularities."""
        train, counts = _known_popularity()
        m = Popular().fit(train)
        idx, _ = recommend(m, [19], k=11, exclude=train.csr)
        # by count desc, ties by lower index; item 11 is excluded (seen), item 9 (count 0) last
        expected = [3, 1, 7, 2, 4, 8, 0, 6, 10, 5, 9]
        assert idx[0].tolist() == expected
        np.testing.assert_array_equal(np.floor(m.item_scores_), counts)


def test_scores_strictly_ordered():
    counts = np.array([4, 4, 0, 7, 4, 0, 1])
    s = popularity_scores(counts)
    np.testing.assert_array_equal(np.floor(s), counts)
    assert len(np.unique(s)) == len(s)
    order = np.argsort(-s)
    assert order.tolist() == [3, 0, 1, 4, 6, 2, 5]


def test_rating_weight_and_min_rating(blocks):
    m = Popular(weight="rating").fit(blocks)
    sums = np.bincount(blocks.item, weights=blocks.rating, minlength=blocks.n_items)
    np.testing.assert_allclose(m.item_counts_, sums, rtol=1e-6)
    liked = Popular(min_rating=4).fit(blocks)
    np.testing.assert_array_equal(liked.item_counts_,
                                  np.bincount(blocks.item[blocks.rating >= 4], minlength=blocks.n_items))


def test_msr_benchmark_figure(ml100k_msr):
    """Microsoft Recommenders' MovieLens-100K top-k table: most-popular NDCG@10 = 0.2524."""
    train, test = ml100k_msr
    metrics, _ = topn_metrics(Popular().fit(train), train, test, k=10, candidates="train")
    assert metrics["ndcg@10"] == pytest.approx(0.2524, abs=0.002)

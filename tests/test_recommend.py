"""Top-k selection, seen-item removal, popularity fallback and the `Recommender` answers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import scipy.sparse as sp

from recstack.data.interactions import Interactions
from recstack.errors import ConfigError, RecstackError, UnknownIdError
from recstack.itemlist import ItemList
from recstack.models.base import Model, has_ability, make_model
from recstack.models.config import Config
from recstack.persist import SavedModel
from recstack.recommend import Recommender, popular_items, recommend, top_k_from_scores


def test_top_k_orders_scores_and_breaks_ties_by_index():
    s = np.array([[1.0, 3.0, 3.0, np.nan, -np.inf, 2.0]])
    idx, val = top_k_from_scores(s, 3)
    assert idx.tolist() == [[1, 2, 5]] and val.tolist() == [[3.0, 3.0, 2.0]]
    assert idx.dtype == np.int64 and val.dtype == np.float32


def test_top_k_never_ranks_nan_or_minus_inf_and_pads():
    s = np.array([[1.0, 3.0, 3.0, np.nan, -np.inf, 2.0], [np.nan] * 6])
    idx, val = top_k_from_scores(s, 5)
    assert idx.tolist() == [[1, 2, 5, 0, -1], [-1] * 5]
    assert np.isnan(val[0, 4]) and np.isnan(val[1]).all()
    idx, val = top_k_from_scores(s[:1], 9)  # k > n_items
    assert idx.shape == (1, 9) and idx[0].tolist() == [1, 2, 5, 0, -1, -1, -1, -1, -1]
    assert np.isnan(val[0, 4:]).all()
    idx, _ = top_k_from_scores(np.zeros((2, 0)), 3)
    assert idx.tolist() == [[-1] * 3] * 2


def test_top_k_matches_a_full_sort():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, (40, 30)).astype(float)  # many ties
    idx, val = top_k_from_scores(s, 7)
    for row in range(40):
        expect = sorted(range(30), key=lambda j: (-s[row, j], j))[:7]
        assert idx[row].tolist() == expect


@dataclass(frozen=True)
class FixedConfig(Config):
    pass


class Fixed(Model):
    """Scores are a fixed matrix handed in before fit: a model with known answers."""

    name = "fixed"
    config_class = FixedConfig
    matrix = np.zeros((1, 1))

    def _fit(self, train, valid):
        self.scores_ = self.matrix.astype(np.float32)

    def _score(self, users, items):
        s = self.scores_[users]
        return s if items is None else s[:, items]


@pytest.fixture
def fixed():
    train = Interactions.from_arrays([0, 0, 1, 2], [0, 3, 1, 2], user_ids=["0", "1", "2"],
                                     item_ids=["0", "1", "2", "3", "4"])
    model = Fixed()
    model.matrix = np.array([[5, 4, 3, 2, 1], [1, 2, 3, 4, 5], [3, 3, 3, 3, 3]], float)
    return model.fit(train), train


def test_recommend_excludes_seen_items(fixed):
    model, train = fixed
    idx, val = recommend(model, [0, 1, 2], 3, exclude=train.csr)
    assert idx.tolist() == [[1, 2, 4], [4, 3, 2], [0, 1, 3]]
    assert val[0].tolist() == [4, 3, 1]
    same, _ = recommend(model, [0, 1, 2], 3, exclude=train.csr, batch_size=1)
    assert np.array_equal(same, idx)


def test_recommend_candidates_and_unknown_users(fixed):
    model, train = fixed
    mask = np.array([True, True, False, True, False])
    idx, _ = recommend(model, [0, 1], 5, exclude=train.csr, candidates=mask)
    assert idx.tolist() == [[1, -1, -1, -1, -1], [3, 0, -1, -1, -1]]  # user 1 has seen item 1
    idx, val = recommend(model, [7], 2)  # a user index the model never saw: NaN scores
    assert idx.tolist() == [[-1, -1]] and np.isnan(val).all()
    idx, _ = recommend(model, [], 2)
    assert idx.shape == (0, 2)
    exclude_all = sp.csr_matrix(np.ones((3, 5)))
    assert (recommend(model, [0], 3, exclude=exclude_all)[0] == -1).all()


def test_popular_items():
    pop = np.array([5, 9, 9, 1, 0])
    assert popular_items(pop, 3).tolist() == [1, 2, 0]
    assert popular_items(pop, 3, exclude=np.array([1])).tolist() == [2, 0, 3]
    assert popular_items(pop, 10).tolist() == [1, 2, 0, 3, 4]
    assert popular_items(pop, 10, exclude=np.arange(5)).tolist() == []


# ---- the Recommender over a small biased-mf fitted on ML-100K --------------------------------------
@pytest.fixture(scope="module")
def rec(ml100k):
    model = make_model("biased-mf", factors=8, epochs=5, early_stopping=False, seed=0).fit(ml100k)
    return Recommender(SavedModel(model, ml100k, {}))


def test_for_user_returns_unseen_items_best_first(rec, ml100k):
    out = rec.for_user("196", k=10)
    assert isinstance(out, ItemList) and out.kind == "rating" and out.scale == (1.0, 5.0)
    assert out.user == "196" and out.fallback is None and len(out) == 10
    rows = out.rows()
    seen = set(ml100k.item_ids[ml100k.item[ml100k.user == ml100k.user_of("196")]].tolist())
    assert not seen & {row["item"] for row in rows}
    assert [row["rank"] for row in rows] == list(range(1, 11))
    assert out.scores.tolist() == sorted(out.scores.tolist(), reverse=True)
    first = rows[0]
    assert first["label"] == f"{first['title']} ({first['year']})" and isinstance(first["genres"], list)
    as_json = out.to_dict()
    assert as_json["score_kind"] == "rating" and as_json["items"] == rows and as_json["user"] == "196"


def test_rating_scores_are_clipped_for_display_only(rec):
    """A rating estimate above the scale is shown as 5 but kept raw in `scores`."""
    out = rec.for_user("196", k=50)
    raw = out.scores
    shown = out.display_scores()
    np.testing.assert_array_equal(shown, np.clip(raw, 1, 5))
    assert [r["score"] for r in out.rows()] == [round(float(v), 4) for v in shown]


def test_unknown_user_is_refused_or_gets_popular_items(rec):
    with pytest.raises(UnknownIdError, match="unknown user id 'nobody'.*943 users.*--fallback popular"):
        rec.for_user("nobody")
    out = rec.for_user("nobody", k=3, fallback="popular")
    assert out.fallback == "popular" and "unknown user id 'nobody'" in out.fallback_reason
    assert [row["label"] for row in out.rows()] == ["Star Wars (1977)", "Contact (1997)", "Fargo (1996)"]
    assert all(row["score"] is None for row in out.rows())


def test_bad_k_is_refused(rec):
    for k in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match="k="):
            rec.for_user("196", k=k)


def test_rated_by_lists_highest_rated_most_recent_first(rec, ml100k):
    out = rec.rated_by("196", k=5)
    assert out.kind == "rating"
    rows = out.rows()
    u = ml100k.user_of("196")
    mine = np.flatnonzero(ml100k.user == u)
    order = sorted(mine.tolist(), key=lambda r: (-ml100k.rating[r], -ml100k.timestamp[r]))[:5]
    assert [r["item"] for r in rows] == ml100k.item_ids[ml100k.item[order]].tolist()
    assert [r["score"] for r in rows] == ml100k.rating[order].tolist()


def test_for_new_user_folds_in_and_excludes_rated(rec):
    liked = {"50": 5, "172": 5, "181": 5}  # the Star Wars trilogy
    out = rec.for_new_user(liked, k=10)
    assert len(out) == 10 and out.fallback is None and not set(liked) & set(out.ids.tolist())
    with pytest.raises(RecstackError, match="rate at least one item"):
        rec.for_new_user({})
    with pytest.raises(UnknownIdError, match="unknown item id 'nope'"):
        rec.for_new_user({"nope": 4})


def test_new_user_falls_back_to_popular_for_models_without_fold_in(ml100k):
    model = make_model("baseline").fit(ml100k)
    assert not has_ability(model, "folds_in_users")
    r = Recommender(SavedModel(model, ml100k, {}))
    out = r.for_new_user({"50": 5}, k=3)
    assert out.fallback == "popular" and "cannot fold in new users" in out.fallback_reason
    assert "50" not in out.ids.tolist() and out.rows()[0]["label"] == "Contact (1997)"
    with pytest.raises(RecstackError, match="no fold-in of new users"):
        r.for_new_user({"50": 5}, k=3, fallback="none")


def test_similar_items_are_similarities_not_clipped_ratings(rec):
    """A rating model's similar items carry cosines in [-1, 1], shown as they are (the old page
    clipped them to the rating scale, so every one read 1.00)."""
    out = rec.similar("50", k=5)
    assert out.kind == "similarity" and out.item["label"] == "Star Wars (1977)" and len(out) == 5
    assert "50" not in set(out.ids.tolist())
    sims = [r["score"] for r in out.rows()]
    assert sims == sorted(sims, reverse=True) and all(-1 <= s <= 1 for s in sims)
    assert len(set(sims)) > 1 and max(sims) < 1.0
    idx, raw = rec.model.similar_items(rec.train.item_of("50"), 5)
    np.testing.assert_allclose(out.scores, raw)


def test_similar_needs_the_ability(ml100k):
    r = Recommender(SavedModel(make_model("popular").fit(ml100k), ml100k, {}))
    with pytest.raises(RecstackError, match="'popular' has no similar items"):
        r.similar("50")


def test_search_matches_every_word_most_popular_first(rec):
    hits = rec.search("star wars")
    assert hits[0]["label"] == "Star Wars (1977)"
    assert all("star" in h["label"].lower() and "wars" in h["label"].lower() for h in hits)
    assert [h["label"] for h in rec.search("STAR trek")][:1] == ["Star Trek: First Contact (1996)"]
    assert rec.search("   ") == [] and rec.search("zzzzqqq") == []

"""Re-ranking: MMR diversity with λ turned round (0 relevance … 1 diversity), novelty, genre filters."""

from __future__ import annotations

import numpy as np
import pytest

from recstack import metrics as M
from recstack.errors import ConfigError
from recstack.evaluate import reranked_lists, topn_metrics
from recstack.models.base import make_model
from recstack.persist import SavedModel
from recstack.recommend import Recommender, recommend
from recstack.rerank import Rerank, genre_matrix, mmr, rerank_candidates, unit_rows


def test_mmr_extremes_on_a_known_case():
    # items 0 and 1 are the same direction, 2 is orthogonal; relevance 1.0, 0.9, 0.1
    unit = unit_rows(np.array([[1, 0], [1, 0], [0, 1]], np.float32))
    rel = np.array([1.0, 0.9, 0.1])
    assert mmr(rel, unit, 3, 0.0).tolist() == [0, 1, 2]  # relevance only
    assert mmr(rel, unit, 3, 1.0).tolist() == [0, 2, 1]  # diversity only: the orthogonal item second
    assert mmr(rel, unit, 2, 0.5).tolist() == [0, 2]  # 0.5·0.1 − 0 beats 0.5·0.9 − 0.5·1
    assert mmr(rel, unit, 0, 0.5).tolist() == []


def test_settings_are_validated():
    for bad in ({"diversity": -0.1}, {"diversity": 1.5}, {"novelty": -1}, {"similarity": "colour"}):
        with pytest.raises(ConfigError):
            Rerank(**bad)
    assert not Rerank().active and Rerank(novelty=0.1).active and Rerank().n_candidates(10) == 10


@pytest.fixture(scope="module")
def ease_msr(ml100k_msr):
    train, test = ml100k_msr
    return make_model("ease", lambda_=500.0).fit(train), train, test


def test_diversity_rises_with_lambda_on_real_users(ease_msr):
    """Intra-list genre diversity rises monotonically over λ ∈ {0, .25, .5, .75, 1} (300 real users)."""
    model, train, test = ease_msr
    users = np.unique(test.user)[:300]
    mask = train.item_popularity > 0
    genres = genre_matrix(train)
    div = []
    for lam in (0.0, 0.25, 0.5, 0.75, 1.0):
        if lam == 0:
            rec, _ = recommend(model, users, 10, exclude=train.csr, candidates=mask)
        else:
            rec = reranked_lists(model, train, users, 10, train.csr, mask, Rerank(lam))
        div.append(M.diversity(rec, genres))
    assert all(b > a for a, b in zip(div, div[1:])), div
    assert div[-1] - div[0] > 0.1


def test_novelty_favours_less_rated_items(ease_msr):
    model, train, test = ease_msr
    base, _ = topn_metrics(model, train, test, 10, "train")
    novel, _ = topn_metrics(model, train, test, 10, "train", rerank=Rerank(novelty=1.0))
    assert novel["novelty"] > base["novelty"] + 0.05 and novel["coverage"] > base["coverage"]


def test_excluded_genres_never_appear(ease_msr):
    model, train, _ = ease_msr
    rec = Recommender(SavedModel(model, train, {}))
    banned = ("Drama", "Comedy")
    for user in ("1", "196", "405"):
        out = rec.for_user(user, k=20, rerank=Rerank(0.3, exclude_genres=banned))
        assert len(out) == 20
        assert not any(set(row["genres"]) & set(banned) for row in out.rows())
        plain = rec.for_user(user, k=20)
        assert any(set(row["genres"]) & set(banned) for row in plain.rows())
        # the scores shown are still the model's own scores for those items
        u = train.user_of(user)
        np.testing.assert_allclose(out.scores, model.score([u])[0][[train.item_of(i) for i in out.ids]])


def test_rerank_candidates_drops_unscorable_and_needs_inputs():
    cand = np.array([3, 1, 2, -1])
    s = np.array([0.9, np.nan, 0.1, 0.5])
    unit = unit_rows(np.eye(4, dtype=np.float32))
    out = rerank_candidates(cand, s, 5, Rerank(0.5), unit, np.ones(4))
    assert out.tolist() == [3, 2]
    with pytest.raises(ConfigError, match="needs item vectors"):
        rerank_candidates(cand, s, 2, Rerank(0.5), None, None)
    with pytest.raises(ConfigError, match="genres"):
        rerank_candidates(cand, s, 2, Rerank(exclude_genres=("Drama",)), unit, None, None)

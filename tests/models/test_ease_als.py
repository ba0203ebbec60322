"""`ease-als`: conformance, the blend rebuilt from its two parts, standardisation, a quality floor."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recstack.errors import ConfigError
from recstack.evaluate import topn_metrics
from recstack.models.als import ALS
from recstack.models.base import make_model
from recstack.models.ease import EASE
from recstack.models.ease_als import EASEALS, standardize_unseen
from tests.models.conformance import ModelConformance

TINY = {"lambda": 5.0, "binary": False, "factors": 4, "epochs": 5, "reg": 1.0, "weight": 0.5}


class TestEASEALS(ModelConformance):
    model_name = "ease-als"
    params = TINY


def test_standardize_unseen_known_answer():
    """Mean and sd come from the unseen columns only; a row with constant unseen scores is only centred."""
    scores = np.array([[1.0, 2.0, 3.0, 100.0], [5.0, 5.0, 5.0, 9.0]])
    seen = sp.csr_matrix(np.array([[0, 0, 0, 1], [0, 0, 0, 1]]))
    z = standardize_unseen(scores, seen)
    sd = np.sqrt(2.0 / 3.0)
    np.testing.assert_allclose(z[0], [-1 / sd, 0.0, 1 / sd, 98.0 / sd])
    np.testing.assert_allclose(z[1], [0.0, 0.0, 0.0, 4.0])


def test_blend_is_standardised_sum_of_parts(blocks):
    """score = z(EASE) + weight·z(ALS) with each part fitted alone under the same config."""
    m = EASEALS(TINY, weight=0.7).fit(blocks)
    ease = EASE(lambda_=5.0, binary=False).fit(blocks)
    als = ALS(factors=4, epochs=5, reg=1.0, alpha=2.0, seed=0).fit(blocks)
    users = np.arange(blocks.n_users)
    want = (standardize_unseen(ease.score(users), blocks.csr)
            + 0.7 * standardize_unseen(als.score(users), blocks.csr))
    np.testing.assert_allclose(m.score(users), want, rtol=1e-4, atol=1e-4)


def test_weight_zero_ranks_as_ease(blocks):
    """With weight 0 the per-user affine map leaves EASE's ranking of unseen items unchanged."""
    blend = EASEALS(TINY, weight=0.0).fit(blocks).score(np.arange(blocks.n_users)).astype(np.float64)
    ease = EASE(lambda_=5.0, binary=False).fit(blocks).score(np.arange(blocks.n_users)).astype(np.float64)
    unseen = blocks.csr.toarray() == 0
    for u in range(blocks.n_users):
        np.testing.assert_array_equal(np.argsort(-blend[u, unseen[u]], kind="stable"),
                                      np.argsort(-ease[u, unseen[u]], kind="stable"))


def test_new_user_scores_like_a_trained_user(blocks):
    """Folding in a trained user's own row: exactly its EASE part, and with the ALS fold-in the
    same ranking as the trained user up to the fold-in's small difference."""
    row = blocks.csr[3]
    for weight, tol in ((0.0, 1e-5), (0.5, None)):
        m = EASEALS(TINY, weight=weight).fit(blocks)
        got, want = m.score_new_user(row.indices, row.data), m.score([3])[0]
        if tol is not None:
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
        else:
            unseen = np.setdiff1d(np.arange(blocks.n_items), row.indices)
            assert np.corrcoef(got[unseen], want[unseen])[0, 1] > 0.95


def test_config_checks_each_part():
    with pytest.raises(ConfigError, match="weight"):
        make_model("ease-als", weight=-1.0)
    with pytest.raises(ConfigError, match="factors"):
        make_model("ease-als", factors=0)
    with pytest.raises(ConfigError, match="lambda_"):
        make_model("ease-als", {"lambda": 0.0})


def test_quality_floor_msr(ml100k_msr):
    """The msr-75 config (configs/ease-als.msr-75.json, chosen on validation carves) scores
    NDCG@10 0.497, P@10 0.433 on the test part; floors 0.49 / 0.425, and it beats EASE alone."""
    train, test = ml100k_msr
    cfg = {"lambda": 900.0, "side_weight": 3.0, "factors": 24, "reg": 50.0, "alpha": 2.0, "weight": 2.0}
    blend, _ = topn_metrics(EASEALS(cfg).fit(train), train, test, k=10, candidates="train")
    ease, _ = topn_metrics(EASEALS(cfg, weight=0.0).fit(train), train, test, k=10, candidates="train")
    assert blend["ndcg@10"] > 0.49 and blend["precision@10"] > 0.425
    assert blend["ndcg@10"] > ease["ndcg@10"] + 0.005


def test_similar_items_are_the_ease_parts(blocks):
    m = EASEALS(TINY).fit(blocks)
    got, _ = m.similar_items(3, k=5)
    want, _ = EASE(lambda_=5.0, binary=False).fit(blocks).similar_items(3, k=5)
    np.testing.assert_array_equal(got, want)

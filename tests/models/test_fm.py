"""`fm`: conformance (MCMC, SGD, BPR), kernels against their slow twins, the biased-MF reduction,
the design blocks, explanations that add up, quality floors on ML-100K u1."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recstack.data.synthetic import block_of
from recstack.errors import ConfigError, RecstackError
from recstack.evaluate import rating_metrics
from recstack.models.base import has_ability, make_model
from recstack.models.fm import FM, _caches, _csr_parts, _predict_rows, _rows_by
from recstack.models.fm_design import build_blocks, parse_groups
from recstack.models.fm_kernels import (
    GibbsBlock,
    bpr_epoch,
    bpr_epoch_slow,
    fm_predict_slow,
    gibbs_sweep,
    gibbs_sweep_slow,
    sgd_epoch,
    sgd_epoch_slow,
)
from recstack.models.mf import sgd_epoch_slow as mf_sgd_epoch_slow
from recstack.persist import SavedModel
from recstack.recommend import Recommender, recommend
from tests.models.conformance import ModelConformance


class TestFMMCMC(ModelConformance):
    model_name = "fm"
    params = {"factors": 4, "burn_in": 5, "samples": 20}


class TestFMSGD(ModelConformance):
    model_name = "fm"
    params = {"learner": "sgd", "factors": 8, "epochs": 40, "early_stopping": False,
              "learning_rate": 0.02, "features": "history"}


class TestFMBPR(ModelConformance):
    model_name = "fm"
    params = {"learner": "sgd", "loss": "bpr", "factors": 8, "epochs": 30, "learning_rate": 0.05,
              "reg": 0.01, "features": ""}

    def test_predict_matches_explicit(self, fitted, data):
        with pytest.raises(RecstackError, match="does not estimate ratings"):
            fitted.predict(data.user[:3], data.item[:3])

    def test_known_answer(self, fitted, data):
        """BPR learns which items a user touched, not the rating: on the in-block interactions only,
        each user's top unseen items are in their block."""
        inside = data.subset(block_of(data.user) == block_of(data.item))
        users = np.arange(inside.n_users)
        idx, _ = recommend(self.make().fit(inside), users, k=self.known_answer_k, exclude=inside.csr)
        assert (block_of(idx) == block_of(users)[:, None]).mean() >= 0.95


# ---- kernels against their twins ---------------------------------------------------------------
def _three_blocks(seed: int = 0, k: int = 3):
    """User, item and date blocks of a small random FM problem with 40 rows."""
    rng = np.random.default_rng(seed)
    Xs = [sp.hstack([sp.identity(7), sp.random(7, 5, density=0.5, random_state=seed + 1)], format="csr"),
          sp.hstack([sp.identity(9), sp.random(9, 4, density=0.5, random_state=seed + 2)], format="csr"),
          sp.identity(4, format="csr")]
    ents = [rng.integers(0, X.shape[0], 40) for X in Xs]
    groups = [np.r_[np.zeros(7, np.int64), np.ones(5, np.int64)], np.r_[np.full(9, 2), np.full(4, 3)],
              np.full(4, 4)]
    ws = [rng.normal(0, 0.1, X.shape[1]) for X in Xs]
    Vs = [rng.normal(0, 0.3, (X.shape[1], k)) for X in Xs]
    prior = [rng.normal(0, 0.1, 5), rng.gamma(2, 1, 5), rng.normal(0, 0.1, (5, k)), rng.gamma(2, 1, (5, k))]
    return rng, Xs, ents, rng.normal(3, 1, 40), groups, ws, Vs, prior


def test_block_caches_match_the_fm_formula():
    _, Xs, ents, _, groups, ws, Vs, _ = _three_blocks()
    blocks = [GibbsBlock(e, *_rows_by(e, X.shape[0]), _csr_parts(X.T.tocsr()), g, w, V, *_caches(X, w, V))
              for X, e, g, w, V in zip(Xs, ents, groups, ws, Vs)]
    np.testing.assert_allclose(_predict_rows(blocks, ents, 0.7), fm_predict_slow(Xs, ents, 0.7, ws, Vs),
                               atol=1e-12)


def test_gibbs_sweep_matches_slow_twin():
    rng, Xs, ents, y, groups, ws, Vs, prior = _three_blocks()
    tw, tV = [w.copy() for w in ws], [V.copy() for V in Vs]
    w0 = w0_twin = 3.0
    for _ in range(2):
        blocks = [GibbsBlock(e, *_rows_by(e, X.shape[0]), _csr_parts(X.T.tocsr()), g, w, V, *_caches(X, w, V))
                  for X, e, g, w, V in zip(Xs, ents, groups, ws, Vs)]
        e = y - fm_predict_slow(Xs, ents, w0, ws, Vs)
        z = rng.standard_normal(1 + sum(X.shape[1] for X in Xs) * 4)
        w0 = gibbs_sweep(blocks, e, w0, *prior, 1.5, 1e-3, z)
        w0_twin = gibbs_sweep_slow(Xs, ents, y, groups, w0_twin, tw, tV, *prior, 1.5, 1e-3, z)
        assert w0 == pytest.approx(w0_twin, abs=1e-10)
        for a, b in zip(ws + Vs, tw + tV):
            np.testing.assert_allclose(a, b, atol=1e-10)
        # the kernel's residuals and caches stay exact
        np.testing.assert_allclose(e, y - fm_predict_slow(Xs, ents, w0, ws, Vs), atol=1e-10)
        for b, X in zip(blocks, Xs):
            np.testing.assert_allclose(b.B, _caches(X, b.w, b.V)[1], atol=1e-10)


def test_sgd_and_bpr_epochs_match_slow_twins():
    rng, Xs, ents, y, _, ws, Vs, _ = _three_blocks(3)
    Xu, Xi, ru, ri = Xs[0], Xs[1], ents[0], ents[1]
    params = [ws[0], ws[1], Vs[0], Vs[1]]
    twin = [a.copy() for a in params]
    a = sgd_epoch(ru, ri, y, _csr_parts(Xu), _csr_parts(Xi), 3.0, *params, 0.05, 0.02, 0.01)
    b = sgd_epoch_slow(ru, ri, y, Xu, Xi, 3.0, *twin, 0.05, 0.02, 0.01)
    assert a == pytest.approx(b, rel=1e-12)
    for x, t in zip(params, twin):
        np.testing.assert_allclose(x, t, atol=1e-12)
    neg = rng.integers(0, Xi.shape[0], len(ru))
    wi, Vu, Vi = params[1], params[2], params[3]
    twin = [wi.copy(), Vu.copy(), Vi.copy()]
    a = bpr_epoch(ru, ri, neg, _csr_parts(Xu), _csr_parts(Xi), wi, Vu, Vi, 0.05, 0.02, 0.01)
    b = bpr_epoch_slow(ru, ri, neg, Xu, Xi, *twin, 0.05, 0.02, 0.01)
    assert a == pytest.approx(b, rel=1e-12)
    for x, t in zip((wi, Vu, Vi), twin):
        np.testing.assert_allclose(x, t, atol=1e-12)


# ---- with ids only, FM is biased MF ----------------------------------------------------------------
def test_ids_only_sgd_is_biased_mf_update(blocks):
    """One-hot user and item only: the FM SGD epoch is `BiasedMF`'s (w0 = μ, w = b, v = p, q)."""
    ublock, iblock = build_blocks(blocks, ())
    assert ublock.X.shape == (blocks.n_users, blocks.n_users) and iblock.X.shape == (blocks.n_items, blocks.n_items)
    rng = np.random.default_rng(0)
    P, Q = rng.normal(0, 0.1, (blocks.n_users, 5)), rng.normal(0, 0.1, (blocks.n_items, 5))
    bu, bi = rng.normal(0, 0.1, blocks.n_users), rng.normal(0, 0.1, blocks.n_items)
    fm = [bu.copy(), bi.copy(), P.copy(), Q.copy()]
    mu = blocks.global_mean
    r = blocks.rating.astype(np.float64)
    a = sgd_epoch(blocks.user.astype(np.int64), blocks.item.astype(np.int64), r, _csr_parts(ublock.X),
                  _csr_parts(iblock.X), mu, *fm, 0.01, 0.05, 0.02)
    b = mf_sgd_epoch_slow(blocks.user, blocks.item, r, P, Q, bu, bi, mu, 0.01, 0.05, 0.02, True)
    assert a == pytest.approx(b, rel=1e-12)
    for x, t in zip(fm, (bu, bi, P, Q)):
        np.testing.assert_allclose(x, t, atol=1e-12)


def test_ids_only_model_predicts_biased_mf_formula(blocks):
    m = FM(features="", learner="sgd", factors=4, epochs=10, early_stopping=False).fit(blocks)
    mu = m.w0_samples_[0]
    bu, bi = m.user_weight_samples_[0], m.item_weight_samples_[0]
    P, Q = m.user_factor_samples_[0], m.item_factor_samples_[0]
    u, i = blocks.user[:30], blocks.item[:30]
    expect = mu + bu[u] + bi[i] + np.einsum("nf,nf->n", P[u], Q[i])
    np.testing.assert_allclose(m.score(u, i).diagonal(), expect, rtol=1e-5, atol=1e-5)


# ---- design --------------------------------------------------------------------------------------
def test_design_blocks_hold_known_features(ml100k_u1):
    train, test = ml100k_u1
    groups = parse_groups("auto", train)
    assert groups == ("age", "gender", "occupation", "zip", "history", "genres", "year", "raters", "date",
                      "userday")
    assert "date" not in parse_groups("auto", train, context=False)
    ublock, iblock = build_blocks(train, groups)
    u = train.user_of("1")  # GroupLens user 1: 24, M, technician, zip 85711
    names = set(ublock.names[ublock.X[u].indices])
    assert {"user:1", "age:18-24", "gender:M", "occupation:technician", "zip:8"} <= names
    i = train.item_of("1")  # Toy Story (1995): Animation, Children's, Comedy
    names = set(iblock.names[iblock.X[i].indices])
    assert {"item:1", "genre:Animation", "genre:Children's", "genre:Comedy", "year:1995-1999"} <= names
    # history holds the training items only, each weighted 1/sqrt(n): no test pair enters
    hist = ublock.X[u].toarray().ravel()[ublock.group == ublock.groups.index("history")]
    rated = np.flatnonzero(hist)
    assert set(rated) == set(train.item[train.user == u])
    assert not set(test.item[test.user == u]) & set(rated)
    np.testing.assert_allclose(hist[rated], 1 / np.sqrt(len(rated)))


def test_missing_feature_group_is_a_config_error(blocks):
    with pytest.raises(ConfigError, match="genres"):
        FM(features="genres").fit(blocks)
    with pytest.raises(ConfigError, match="unknown group"):
        FM(features="colour").fit(blocks)
    with pytest.raises(ConfigError, match="bpr"):
        FM(loss="bpr")


def test_date_block_uses_the_rating_day(ml100k_u1):
    train, test = ml100k_u1
    valid = test.subset(np.arange(500))
    m = FM(features="date,userday", factors=4, burn_in=2, samples=5).fit(train, valid)
    # predict's context terms agree with the sampler's row formula (its running validation RMSE)
    est = m.predict(valid.user, valid.item, timestamps=valid.timestamp)
    assert np.sqrt(np.mean((est - valid.rating) ** 2)) == pytest.approx(m.valid_rmse_history_[-1], abs=1e-5)
    assert set(m.groups_) == {"user", "item", "date", "userday"} and len(m.date_keys_) > 100
    assert len(m.userday_keys_) > len(m.date_keys_)
    u, i, t = test.user[:200], test.item[:200], test.timestamp[:200]
    timed, plain = m.predict(u, i, timestamps=t), m.predict(u, i)
    assert not np.allclose(timed, plain)
    # a day never seen in training adds nothing: the pair scores as without a date
    np.testing.assert_allclose(m.predict(u, i, timestamps=np.zeros_like(t)), plain, atol=1e-6)
    with pytest.raises(ConfigError, match="mcmc"):
        FM(features="date", learner="sgd").fit(train)


# ---- explanations -------------------------------------------------------------------------------
@pytest.mark.parametrize("learner", ["mcmc", "sgd"])
def test_explain_parts_sum_to_score(ml100k_u1, learner):
    train, _ = ml100k_u1
    m = FM(learner=learner, factors=4, burn_in=2, samples=5, epochs=3, early_stopping=False).fit(train)
    assert has_ability(m, "explains")
    for user, item in ((0, 0), (5, 100), (300, 1200)):
        e = m.explain(user, item)
        assert sum(p["contribution"] for p in e.parts) == pytest.approx(e.score, abs=1e-5)
        assert e.score == pytest.approx(float(m.score([user], [item])[0, 0]), abs=1e-4)
        features = {p["key"] for p in e.parts if p["kind"] == "feature"}
        assert any(f.startswith("genre:") for f in features) and any(f.startswith("occupation:") for f in features)
        # one part per history item: exactly the user's training items
        hist = {p["key"] for p in e.parts if p["kind"] == "item"}
        assert hist <= set(train.item[train.user == user].tolist()) and len(hist) > 0


def test_recommender_explains_fm(ml100k_u1):
    train, _ = ml100k_u1
    rec = Recommender(SavedModel(FM(factors=4, burn_in=2, samples=5).fit(train), train, {}))
    e = rec.explain("1", "50")
    assert sum(p["contribution"] for p in e["parts"]) == pytest.approx(e["score"], abs=1e-5)
    assert any("item" in p for p in e["parts"]) and any(p.get("feature", "").startswith("genre:") for p in e["parts"])


# ---- quality on real data ----------------------------------------------------------------------
@pytest.mark.slow
def test_mcmc_quality_floor_u1(ml100k_u1):
    """Bayesian FM with side features and implicit groups beats bpmf's u1 RMSE (about 0.89)."""
    train, test = ml100k_u1
    m = make_model("fm", factors=10, burn_in=10, samples=100).fit(train)
    metrics, _ = rating_metrics(m, train, test)
    assert metrics["rmse"] <= 0.890, metrics


@pytest.mark.slow
def test_sgd_quality_floor_u1(ml100k_u1):
    train, test = ml100k_u1
    m = make_model("fm", learner="sgd", features="age,gender,occupation,zip,genres,year").fit(train)
    metrics, _ = rating_metrics(m, train, test)
    assert metrics["rmse"] <= 0.935, metrics

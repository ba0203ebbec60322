"""Explanations of the composites: `blend` as the weighted, standardised sum of its parts'
explanations (exact when every part is), `chain` as the explanation of the part that scored the
user; the `explains` ability follows the parts."""

from __future__ import annotations

import numpy as np
import pytest

from recstack.models.base import has_ability, make_model
from recstack.persist import SavedModel
from recstack.recommend import Recommender
from tests.test_explain import faithfulness

EASE = {"model": "ease", "weight": 1.0, "config": {"lambda_": 500.0}}
ALS = {"model": "als", "weight": 2.0, "config": {"factors": 32}}


@pytest.fixture(scope="module")
def blend(ml100k_u1):
    train, _ = ml100k_u1
    return Recommender(SavedModel(make_model("blend", {"parts": [EASE, ALS]}).fit(train), train, {}))


def _cases(rec: Recommender, n_users: int = 40):
    users = rec.train.user_ids[np.argsort(-rec.train.user_activity, kind="stable")[5:5 + n_users]]
    for user in users:
        for item in rec.for_user(user, k=2).ids:
            yield str(user), str(item)


def test_explains_follows_the_parts():
    assert has_ability(make_model("blend", {"parts": [EASE, ALS]}), "explains")
    assert not has_ability(make_model("blend", {"parts": [EASE, {"model": "popular"}]}), "explains")
    assert has_ability(make_model("blend", {"parts": [EASE, {"model": "popular", "weight": 0}]}), "explains")
    assert has_ability(make_model("blend", {"parts": [EASE, {"model": "sasrec"}]}), "explains")
    assert has_ability(make_model("chain", {"parts": [{"model": "ease"}]}), "explains")  # popular closes it
    assert not has_ability(make_model("chain", {"parts": [{"model": "ease"}, {"model": "markov"}]}), "explains")


def test_blend_parts_sum_to_the_blend_score(blend):
    rec = blend
    for user, item in _cases(rec, 15):
        e = rec.explain(user, item)
        raw = float(rec.model.score([rec.train.user_of(user)], [rec.train.item_of(item)])[0, 0])
        assert e["exact"] is True and "hint" not in e
        assert sum(p["contribution"] for p in e["parts"]) == pytest.approx(e["score"], rel=1e-12, abs=1e-12)
        assert e["score"] == pytest.approx(raw, rel=1e-5, abs=1e-5)
        assert e["parts"][0]["bias"] == "blend: the parts' per-user means"
        history = {rec.train.item_ids[j] for j in rec.history(user)[0]}
        assert {p["item"] for p in e["parts"] if "item" in p} <= history


def test_blend_item_parts_are_the_parts_scaled(blend):
    """Each history item's blend contribution is Σ_k w_k c_k / σ_k of the parts' own contributions."""
    from recstack.models.ease_als import unseen_moments

    rec = blend
    user, item = next(_cases(rec, 1))
    u, i = rec.train.user_of(user), rec.train.item_of(item)
    seen = rec.model._seen(np.array([u]))
    expected: dict[int, float] = {}
    for part, m in zip(rec.model.config.parts, rec.model._models):
        _, sd = unseen_moments(m.score([u]).astype(np.float64), seen)
        for p in m.explain(u, i, rec.history(user)).parts:
            if p["kind"] == "item":
                expected[p["key"]] = expected.get(p["key"], 0.0) + part["weight"] * p["contribution"] / sd[0, 0]
    got = {p["key"]: p["contribution"] for p in rec.model.explain(u, i, rec.history(user)).parts
           if p["kind"] == "item"}
    assert got.keys() == {k for k, v in expected.items() if v != 0}
    for k, v in got.items():
        assert v == pytest.approx(expected[k], rel=1e-9, abs=1e-12)


def test_blend_removing_the_top_history_item_lowers_the_score(blend):
    """Faithfulness on ML-100K: drop the largest positive history part, fold the rest in again."""
    lowered, total = faithfulness(blend, _cases(blend))
    assert total >= 50 and lowered / total >= 0.9, f"{lowered}/{total}"


def test_blend_without_standardising_and_with_a_hint_part(ml100k_u1):
    train, _ = ml100k_u1
    train = train.subset(train.user < 60)
    parts = [EASE, {"model": "gru4rec", "weight": 0.5,
                    "config": {"factors": 8, "max_len": 10, "epochs": 1, "early_stopping": False, "threads": 1}}]
    for standardize in (True, False):
        m = make_model("blend", {"parts": parts, "standardize": standardize}).fit(train)
        for u in (0, 7, 30):
            for i in (1, 50, 171):
                e = m.explain(u, i)
                assert e.exact is False and e.method.startswith("gru4rec: occlusion")
                assert e.score == pytest.approx(float(m.score([u], [i])[0, 0]), rel=1e-5, abs=1e-5)
                assert sum(p["contribution"] for p in e.parts) == pytest.approx(e.score, rel=1e-12, abs=1e-12)


def test_chain_explains_with_the_part_that_scored_the_user(ml100k_u1):
    train, _ = ml100k_u1
    chain = make_model("chain", {"parts": [{"model": "ease", "min_history": 100,
                                            "config": {"lambda_": 500.0}}]}).fit(train)
    source = chain.sources(np.arange(train.n_users))
    heavy, light = int(np.flatnonzero(source == 0)[0]), int(np.flatnonzero(source == 1)[0])
    e, own = chain.explain(heavy, 50), chain._models[0].explain(heavy, 50)
    assert e.parts == own.parts and e.score == pytest.approx(float(chain.score([heavy], [50])[0, 0]), abs=1e-5)
    e = chain.explain(light, 50)
    assert [p["kind"] for p in e.parts] == ["bias"]
    assert e.score == pytest.approx(float(chain.score([light], [50])[0, 0]), abs=1e-6)

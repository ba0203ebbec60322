"""`blend` and `chain`: conformance, ease-als as a configured blend, fallback routing, persistence."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recstack.errors import ConfigError
from recstack.models.base import make_model
from recstack.persist import load_model, save_model
from tests.models.conformance import ModelConformance

EASE_ALS = {"lambda": 5.0, "binary": False, "factors": 4, "epochs": 5, "reg": 1.0, "weight": 0.5}
BLEND = {"parts": [{"model": "ease", "weight": 1.0, "config": {"lambda": 5.0, "binary": False}},
                   {"model": "als", "weight": 0.5,
                    "config": {"mode": "implicit", "factors": 4, "epochs": 5, "reg": 1.0}}]}


class TestBlend(ModelConformance):
    model_name = "blend"
    params = BLEND


class TestChain(ModelConformance):
    model_name = "chain"
    params = {"parts": [{"model": "ease", "min_history": 5, "config": {"lambda": 5.0, "binary": False}},
                        {"model": "hybrid", "min_history": 0,
                         "config": {"factors": 8, "epochs": 15, "learning_rate": 0.1, "min_rating": 3.0}}]}


def test_ease_als_is_a_configured_blend(blocks):
    """z(EASE) + w·z(ALS) rebuilt from registered parts gives ease-als' scores."""
    ours = make_model("ease-als", EASE_ALS).fit(blocks)
    parts = ours.config.ease_config(), ours.config.als_config()
    blend = make_model("blend", {"parts": [{"model": "ease", "weight": 1.0, "config": parts[0]},
                                           {"model": "als", "weight": 0.5, "config": parts[1]}]}).fit(blocks)
    users = np.arange(blocks.n_users)
    np.testing.assert_allclose(blend.score(users), ours.score(users), rtol=1e-5, atol=1e-5)
    items = np.array([2, 0]), np.array([5.0, 4.0])
    np.testing.assert_allclose(blend.score_new_user(*items), ours.score_new_user(*items), rtol=1e-5, atol=1e-5)


def test_weights_rank_as_expected(blocks):
    only_ease = make_model("blend", {"parts": [{"model": "ease", "weight": 1.0},
                                               {"model": "popular", "weight": 0.0}]}).fit(blocks)
    ease = make_model("ease").fit(blocks)
    users = np.arange(10)
    s, e = only_ease.score(users), ease.score(users)
    seen = blocks.csr[users].toarray() > 0
    for u in range(10):  # a per-user affine map: the order of unseen items is EASE's
        np.testing.assert_array_equal(np.argsort(-s[u][~seen[u]], kind="stable"),
                                      np.argsort(-e[u][~seen[u]], kind="stable"))


def test_chain_routes_by_history_and_falls_back_to_popular(blocks):
    chain = make_model("chain", {"parts": [{"model": "ease", "min_history": 25}]}).fit(blocks)
    users = np.arange(blocks.n_users)
    src = chain.sources(users)
    heavy = blocks.user_activity >= 25
    assert heavy.any() and (~heavy).any()
    np.testing.assert_array_equal(src, np.where(heavy, 0, 1))
    pop = make_model("popular").fit(blocks).score(users)
    s = chain.score(users)
    np.testing.assert_array_equal(s[~heavy], pop[~heavy])
    ease = make_model("ease").fit(blocks).score(users)
    np.testing.assert_array_equal(s[heavy], ease[heavy])
    new = chain.score_new_user(np.array([1, 2]), np.array([5.0, 5.0]))  # 2 < 25 given: popular
    np.testing.assert_array_equal(new, pop[0])


def test_save_load_identical_nested(blocks, tmp_path):
    cfg = {"parts": [{"model": "blend", "min_history": 1, "config": BLEND}, {"model": "content", "min_history": 0,
                                                                              "config": {}}]}
    from tests.models.test_hybrid import with_block_features

    data = with_block_features(blocks)
    m = make_model("chain", cfg).fit(data)
    save_model(tmp_path / "m", m, data)
    info = json.loads((tmp_path / "m" / "model.json").read_text())
    assert info["config"]["parts"][0]["config"]["parts"][1]["model"] == "als"
    loaded = load_model(tmp_path / "m").model
    users = np.arange(data.n_users)
    np.testing.assert_array_equal(loaded.score(users), m.score(users))


@pytest.mark.parametrize("parts, match", [
    ([], "non-empty list"),
    ([{"model": "nope"}], "unknown model 'nope'"),
    ([{"model": "ease", "weight": -1}], r"parts\[0\].weight"),
    ([{"model": "ease", "config": {"lambda": -1}}], "lambda_"),
    ([{"model": "ease", "colour": 1}], "unknown key"),
])
def test_bad_configs_are_named(parts, match):
    with pytest.raises(ConfigError, match=match):
        make_model("blend", {"parts": parts})


def test_config_file_with_provenance(tmp_path):
    from recstack.models.config import read_config_file

    p = tmp_path / "blend.json"
    p.write_text(json.dumps({**BLEND, "chosen": {"protocol": "msr-75", "metric": "ndcg@10", "value": 0.5}}))
    m = make_model("blend", read_config_file(p))
    assert [part["model"] for part in m.config.parts] == ["ease", "als"]


def test_cli_train_and_recommend_a_blend(blocks, tmp_path, capsys):
    from recstack.cli import main

    frame = blocks.to_frame()
    frame.to_csv(tmp_path / "r.csv", index=False)
    cfg = tmp_path / "blend.json"
    cfg.write_text(json.dumps({**BLEND, "chosen": {"protocol": "demo"}}))
    assert main(["train", "blend", "--train", str(tmp_path / "r.csv"), "--config", str(cfg),
                 "--out", str(tmp_path / "m")]) == 0
    capsys.readouterr()
    assert main(["recommend", str(tmp_path / "m"), "--user", "0", "-k", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    from recstack.recommend import Recommender

    assert out == json.loads(json.dumps(Recommender(load_model(tmp_path / "m")).for_user("0", k=3).to_dict()))
    assert sum(int(row["item"]) % 2 == 0 for row in out["items"]) >= 2  # mostly user 0's own block

"""The web page's answers without a browser: each must equal what `Recommender` says, and bad
input must come back as a message, never an exception."""

from __future__ import annotations

import sys

import pytest

from recstack.errors import MissingExtraError
from recstack.persist import load_model
from recstack.recommend import Recommender
from recstack.web import app as web


@pytest.fixture(scope="module")
def rec(mf_folder):
    return Recommender(load_model(mf_folder))


def titles(table) -> list[str]:
    return table["title"].tolist()


def test_known_user_matches_recommender(rec):
    msg, recs, rated = web.answer_user(rec, " 196 ", 10)
    expected = rec.for_user("196", k=10)
    assert titles(recs) == [r["title"] for r in expected.rows()]
    shown = [f"{v:.2f}" for v in expected.display_scores()]
    assert recs["predicted rating"].tolist() == shown
    assert all(1.0 <= float(v) <= 5.0 for v in shown)
    assert titles(rated) == [r["title"] for r in rec.rated_by("196", k=10).rows()]
    assert set(rated["rating"]) <= {"4", "5"}  # user 196 rated 39 movies, many 4s and 5s
    assert msg.startswith("User **196**") and "rated 39 movies" in msg
    # the explanation column names movies from the user's own history
    rated_titles = set(rec.rated_by("196", k=1000).rows()[i]["label"] for i in range(39))
    assert recs["because you rated"].tolist() == [" and ".join(rec.because("196", i)) for i in expected.ids]
    assert all(set(rec.because("196", i)) <= rated_titles for i in expected.ids)
    # seen movies are never recommended
    seen = {r["title"] for r in rec.rated_by("196", k=1000).rows()}
    assert not seen & set(titles(recs))


def test_unknown_and_empty_user_give_messages(rec):
    msg, recs, rated = web.answer_user(rec, "99999", 5)
    assert "Unknown user id **99999**" in msg and "most popular" in msg
    assert titles(recs) == [r["title"] for r in rec.for_user("x", k=5, fallback="popular").rows()]
    assert titles(recs)[0] == "Star Wars"  # the most rated movie of ML-100K
    assert rated.empty
    for empty in (None, "", "   "):
        msg, recs, rated = web.answer_user(rec, empty, 10)
        assert msg == "Type a user id first." and recs.empty and rated.empty


def test_k_is_clamped_on_the_server(rec):
    assert web.clamp_k(0) == 1 and web.clamp_k(10_000) == web.K_MAX and web.clamp_k("7") == 7
    assert web.clamp_k(None) == 10 and web.clamp_k("abc") == 10
    _, recs, _ = web.answer_user(rec, "196", 10_000)
    assert len(recs) == web.K_MAX
    _, recs, _ = web.answer_user(rec, "196", -5)
    assert len(recs) == 1


def test_page_opens_on_the_most_active_user(rec):
    user = web.sample_user(rec)
    assert int(rec.train.user_activity[rec.train.user_of(user)]) == int(rec.train.user_activity.max())


def test_new_user_flow_matches_fold_in(rec):
    msg, choices, first = web.answer_search(rec, "star wars")
    assert choices[0] == ("Star Wars (1977)", first) and "1 movies match" in msg
    _, _, toy = web.answer_search(rec, "Toy Story")
    ratings: dict[str, float] = {}
    msg, ratings, table = web.answer_add(rec, ratings, first, 5)
    assert "Rated **Star Wars (1977)** 5" in msg
    msg, ratings, table = web.answer_add(rec, ratings, toy, 2)
    msg, ratings, table = web.answer_add(rec, ratings, toy, 3)  # re-rating replaces
    assert ratings == {first: 5.0, toy: 3.0} and titles(table) == ["Star Wars", "Toy Story"]
    msg, recs = web.answer_new_user(rec, ratings, 10)
    expected = rec.for_new_user(ratings, k=10)
    assert titles(recs) == [r["title"] for r in expected.rows()]
    assert recs["predicted rating"].tolist() == [f"{v:.2f}" for v in expected.display_scores()]
    assert "2 ratings" in msg and not {"Star Wars", "Toy Story"} & set(titles(recs))


def test_new_user_bad_input_gives_messages(rec):
    assert web.answer_search(rec, "  ") == ("Type part of a movie title to search.", [], None)
    msg, choices, first = web.answer_search(rec, "no such film xyzzy")
    assert "No movie title contains" in msg and choices == [] and first is None
    msg, ratings, _ = web.answer_add(rec, {}, None, 4)
    assert "pick it before adding" in msg and ratings == {}
    msg, ratings, _ = web.answer_add(rec, {}, "no-such-item", 4)
    assert "unknown item id" in msg and ratings == {}
    msg, recs = web.answer_new_user(rec, {}, 10)
    assert msg.startswith("Rate at least one movie first") and recs.empty


def test_similar_matches_recommender(rec):
    item = rec.search("Star Wars")[0]["item"]
    msg, table = web.answer_similar(rec, item, 10)
    expected = rec.similar(item, k=10)
    assert titles(table) == [r["title"] for r in expected.rows()]
    # similarities are shown as they are — cosines below 1, not ratings clipped to 1.00
    assert table["similarity"].tolist() == [f"{v:.2f}" for v in expected.scores]
    assert len(set(table["similarity"])) > 1 and "1.00" not in table["similarity"].tolist()[1:]
    assert "Return of the Jedi" in titles(table) or "Empire Strikes Back, The" in titles(table)
    assert web.answer_similar(rec, None, 10)[0] == "Choose a movie first."
    assert "unknown item id" in web.answer_similar(rec, "nope", 10)[0]


def test_new_user_tab_falls_back_for_models_without_fold_in(ml100k):
    from recstack.models.base import make_model
    from recstack.persist import SavedModel

    rec = Recommender(SavedModel(make_model("popular").fit(ml100k), ml100k, {}))
    msg, recs = web.answer_new_user(rec, {"50": 5.0}, 5)
    assert "cannot fold in a new user" in msg and "most popular movies" in msg
    assert len(recs) == 5 and "Star Wars" not in titles(recs)
    msg, table = web.answer_similar(rec, "50", 5)
    assert msg.startswith("Cannot find similar movies") and table.empty


def test_build_app_has_stable_ids(mf_folder):
    pytest.importorskip("gradio")
    app = web.build_app(load_model(mf_folder))
    ids = {c.get("props", {}).get("elem_id") for c in app.config["components"]}
    for needed in ("user-id", "user-go", "user-msg", "user-recs", "user-rated", "new-search", "new-pick",
                   "new-rating", "new-add", "new-go", "new-recs", "sim-search", "sim-search-go", "sim-pick",
                   "sim-go", "sim-recs", "k"):
        assert needed in ids


def test_missing_gradio_names_the_extra(mf_folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)  # makes `import gradio` raise ImportError
    with pytest.raises(MissingExtraError, match=r"\[web\] extra"):
        web.build_app(load_model(mf_folder))

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
    expected = rec.for_user("196", k=10)["items"]
    assert titles(recs) == [r["title"] for r in expected]
    assert recs["predicted rating"].tolist() == [f"{r['score']:.2f}" for r in expected]
    assert titles(rated) == [r["title"] for r in rec.rated_by("196", k=10)]
    assert set(rated["rating"]) <= {"4", "5"}  # user 196 rated 39 movies, many 4s and 5s
    assert msg.startswith("User **196**") and "rated 39 movies" in msg
    # seen movies are never recommended
    seen = {r["title"] for r in rec.rated_by("196", k=1000)}
    assert not seen & set(titles(recs))


def test_unknown_and_empty_user_give_messages(rec):
    msg, recs, rated = web.answer_user(rec, "99999", 5)
    assert "Unknown user id **99999**" in msg and "most popular" in msg
    assert titles(recs) == [r["title"] for r in rec.for_user("x", k=5, fallback="popular")["items"]]
    assert titles(recs)[0] == "Star Wars"  # the most rated movie of ML-100K
    assert rated.empty
    for empty in (None, "", "   "):
        msg, recs, rated = web.answer_user(rec, empty, 10)
        assert msg == "Choose or type a user id first." and recs.empty and rated.empty


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
    assert titles(recs) == [r["title"] for r in rec.for_new_user(ratings, k=10)["items"]]
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
    assert titles(table) == [r["title"] for r in rec.similar(item, k=10)["items"]]
    assert "Return of the Jedi" in titles(table) or "Empire Strikes Back, The" in titles(table)
    assert web.answer_similar(rec, None, 10)[0] == "Choose a movie first."
    assert "unknown item id" in web.answer_similar(rec, "nope", 10)[0]


def test_build_app_has_stable_ids(mf_folder):
    pytest.importorskip("gradio")
    app = web.build_app(load_model(mf_folder))
    ids = {c.get("props", {}).get("elem_id") for c in app.config["components"]}
    for needed in ("user-id", "user-go", "user-msg", "user-recs", "user-rated", "new-search", "new-pick",
                   "new-rating", "new-add", "new-go", "new-recs", "sim-pick", "sim-go", "sim-recs", "k"):
        assert needed in ids


def test_missing_gradio_names_the_extra(mf_folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)  # makes `import gradio` raise ImportError
    with pytest.raises(MissingExtraError, match=r"\[web\] extra"):
        web.build_app(load_model(mf_folder))

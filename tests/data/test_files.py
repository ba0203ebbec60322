"""User-supplied rating files: separators, headers, every refusal names file, line and value."""

from __future__ import annotations

import numpy as np
import pytest

from recstack.data.files import read_interactions_file, read_train_test
from recstack.errors import DataError


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("text", [
    "u1\ti1\t4\t100\nu2\ti1\t3.5\t101\nu1\ti2\t5\t102\n",
    "u1,i1,4,100\nu2,i1,3.5,101\nu1,i2,5,102\n",
    "u1;i1;4;100\nu2;i1;3.5;101\nu1;i2;5;102\n",
    "u1 i1 4 100\nu2   i1\t3.5 101\n  u1 i2 5 102  \n",
    "user,item,rating,timestamp\nu1,i1,4,100\n\nu2,i1,3.5,101\nu1,i2,5,102\n",
    "userId\tmovieId\trating\ttimestamp\r\nu1\ti1\t4\t100\r\nu2\ti1\t3.5\t101\r\nu1\ti2\t5\t102\r\n",
    "\ufeffuser;item;rating;timestamp\nu1;i1;4;100\nu2;i1;3.5;101\nu1;i2;5;102\n",
], ids=["tsv", "csv", "semicolon", "whitespace", "csv-header-blank-line", "tsv-header-crlf", "bom-header"])
def test_separators_and_headers_give_the_same_rows(tmp_path, text):
    d = read_interactions_file(write(tmp_path, "r.txt", text))
    assert d.user_ids.tolist() == ["u1", "u2"] and d.item_ids.tolist() == ["i1", "i2"]
    assert d.user.tolist() == [0, 1, 0] and d.item.tolist() == [0, 0, 1]
    assert d.rating.tolist() == [4.0, 3.5, 5.0] and d.timestamp.tolist() == [100, 101, 102]
    assert d.name == "r"


@pytest.mark.parametrize("text", [
    "u1\ti1\nu2\ti1\nu1\ti2\n",
    "user,item\nu1,i1\nu2,i1\nu1,i2\n",
    "UserId;MovieId\nu1;i1\n\nu2;i1\nu1;i2\n",
    "u1 i1\n  u2   i1 \nu1 i2\n",
], ids=["tsv", "csv-header", "semicolon-header-blank-line", "whitespace"])
def test_two_column_files_are_implicit_feedback(tmp_path, text):
    d = read_interactions_file(write(tmp_path, "clicks.txt", text))
    assert d.user_ids.tolist() == ["u1", "u2"] and d.item_ids.tolist() == ["i1", "i2"]
    assert d.user.tolist() == [0, 1, 0] and d.item.tolist() == [0, 0, 1]
    assert d.rating.tolist() == [1.0, 1.0, 1.0] and d.timestamp.tolist() == [0, 0, 0]
    assert d.meta["implicit"] is True


def test_two_column_header_over_numeric_ids_and_ids_that_look_like_words(tmp_path):
    d = read_interactions_file(write(tmp_path, "a.csv", "who,what\n1,10\n2,10\n"))
    assert d.user_ids.tolist() == ["1", "2"] and len(d) == 2  # words over numbers: a header
    d = read_interactions_file(write(tmp_path, "b.csv", "alice,book\nbob,book\n"))
    assert d.user_ids.tolist() == ["alice", "bob"] and len(d) == 2  # words over words: data
    ratings = read_interactions_file(write(tmp_path, "c.csv", "1,10,4\n"))
    assert ratings.meta["implicit"] is False


def test_implicit_file_trains_a_ranking_model(tmp_path):
    """Two blocks of users; u0 has not clicked c, the one item its block shares: it ranks first."""
    from recstack.models.base import make_model

    pairs = [(f"u{u}", i) for u in range(4) for i in "abc"] + [(f"u{u}", i) for u in range(4, 8) for i in "xyz"]
    pairs.remove(("u0", "c"))
    d = read_interactions_file(write(tmp_path, "pairs.tsv", "".join(f"{u}\t{i}\n" for u, i in pairs)))
    scores = make_model("item-knn").fit(d).score([d.user_of("u0")])[0]
    scores[d.csr[d.user_of("u0")].indices] = -np.inf  # seen items
    assert d.item_ids[int(np.nanargmax(scores))] == "c"


def test_three_columns_give_zero_timestamps(tmp_path):
    d = read_interactions_file(write(tmp_path, "r.csv", "user,item,rating\n1,10,4\n2,10,2\n"), name="mine")
    assert d.timestamp.tolist() == [0, 0] and d.rating.tolist() == [4, 2] and d.name == "mine"


@pytest.mark.parametrize("text, line, message", [
    ("1,10,4,100\n1,11,x,101\n", 2, "rating 'x' is not a finite number"),
    ("1,10,4,100\n1,11,nan,101\n", 2, "rating 'nan' is not a finite number"),
    ("1,10,4\n1,11,-inf\n", 2, "rating '-inf' is not a finite number"),
    ("user,item,rating,timestamp\n1,10,4,100\n\n1,11,3,1.5\n", 4, "timestamp '1.5' is not an integer"),
    ("1,10,4,100\n1,11,3,noon\n", 2, "timestamp 'noon' is not an integer"),
    ("1,10,4,100\n1,11\n", 2, "missing column 'rating'"),
    ("1,10,4,100\n2,11,3\n", 2, "missing column 'timestamp'"),
    ("1,10,4,100\n1,,3,5\n", 2, "missing column 'item'"),
    ("1\n2\n", 1, "found 1 field"),
    ("1,10\n2,10\n3\n", 3, "missing column 'item' \\(expected 2 fields: user item\\)"),
    ("1,10\n2,10,4\n", 2, "too many fields: expected 2 \\(user item\\)"),
    ("1,10,4\n1,11,4,5\n", 2, "too many fields: expected 3"),
    ("1,10,4,100,7\n", 1, "too many fields"),
    ("1,10,4,100\n1,11,4,100,7,8\n", 2, "too many fields"),
    ("user,item,rating,timestamp,extra\n1,10,4,5\n", 1, "header .* should name 2, 3 or 4 columns"),
    ("1\t10\t4\n2\t10\t3\n1\t10\t5\n", 3, r"duplicate \(user, item\) pair \(1, 10\), first on line 1"),
])
def test_bad_rows_name_file_line_and_value(tmp_path, text, line, message):
    p = write(tmp_path, "bad.csv", text)
    with pytest.raises(DataError, match=message) as err:
        read_interactions_file(p)
    assert str(err.value).startswith(f"{p}, line {line}: ")
    assert err.value.line == line


@pytest.mark.parametrize("text", ["", "\n\n  \n", "user,item,rating\n"])
def test_empty_files_are_refused(tmp_path, text):
    p = write(tmp_path, "empty.tsv", text)
    with pytest.raises(DataError, match="empty file") as err:
        read_interactions_file(p)
    assert str(p) in str(err.value)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_interactions_file(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="is a folder"):
        read_interactions_file(tmp_path)


def test_keep_last_keeps_the_last_row_of_each_pair(tmp_path, caplog):
    p = write(tmp_path, "d.tsv", "1\t10\t4\t1\n2\t10\t3\t2\n1\t10\t5\t3\n1\t10\t2\t4\n1\t11\t1\t5\n")
    d = read_interactions_file(p, duplicates="keep-last")
    assert d.to_frame().values.tolist() == [["2", "10", 3.0, 2], ["1", "10", 2.0, 4], ["1", "11", 1.0, 5]]
    assert d.meta["duplicates_dropped"] == 2
    assert "dropped 2 rows" in caplog.text
    assert d.csr[d.user_of("1"), d.item_of("10")] == 2.0  # no summing of duplicates
    with pytest.raises(DataError, match="duplicates must be"):
        read_interactions_file(p, duplicates="first")


def test_latin1_ids_are_read(tmp_path):
    p = tmp_path / "l.csv"
    p.write_bytes("caf\xe9,film,4\n".encode("latin-1"))
    assert read_interactions_file(p).user_ids.tolist() == ["café"]


def test_train_test_share_one_vocabulary_train_first(tmp_path):
    tr = write(tmp_path, "train.tsv", "a\tx\t4\nb\ty\t3\na\ty\t5\n")
    te = write(tmp_path, "test.tsv", "c\tz\t2\nb\tx\t4\n")
    train, test = read_train_test(tr, te)
    assert train.user_ids.tolist() == test.user_ids.tolist() == ["a", "b", "c"]
    assert train.item_ids.tolist() == test.item_ids.tolist() == ["x", "y", "z"]
    assert train.to_frame()["user"].tolist() == ["a", "b", "a"]
    assert test.to_frame().values.tolist() == [["c", "z", 2.0, 0], ["b", "x", 4.0, 0]]
    assert np.array_equal(test.user, [2, 1]) and np.array_equal(test.item, [2, 0])
    assert train.csr.shape == test.csr.shape == (3, 3)


def test_train_test_errors_name_the_right_file(tmp_path):
    tr = write(tmp_path, "train.tsv", "a\tx\t4\n")
    te = write(tmp_path, "test.tsv", "a\tx\t4\na\tx\t5\n")
    with pytest.raises(DataError, match=r"test.tsv, line 2: duplicate"):
        read_train_test(tr, te)
    assert len(read_train_test(tr, te, duplicates="keep-last")[1]) == 1


def test_fast_and_careful_readers_agree(tmp_path):
    from recstack.data.files import _read_fast

    clean = write(tmp_path, "clean.csv", "user,item,rating,timestamp\nu1, i1,4,100\nu2,i1 ,3.5,101\n")
    blank = write(tmp_path, "blank.csv", "user,item,rating,timestamp\nu1, i1,4,100\n\nu2,i1 ,3.5,101\n")
    assert _read_fast(clean) is not None and _read_fast(blank) is None  # a blank line: careful reader
    a, b = read_interactions_file(clean), read_interactions_file(blank)
    assert a.fingerprint() == b.fingerprint() and a.item_ids.tolist() == ["i1"]

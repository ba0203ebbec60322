"""Parquet interactions: round trips, id encodings, clear errors, and the CLI's --data paths."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recstack.data.parquet import encode_ids, read_parquet, write_parquet
from recstack.data.synthetic import synthetic_interactions
from recstack.errors import DataError


@pytest.fixture(scope="module")
def synth():
    return synthetic_interactions(300, 200, 12_000, seed=3)


def test_round_trip_keeps_every_row(tmp_path, synth):
    path = write_parquet(synth, tmp_path / "d")
    assert path == tmp_path / "d" / "ratings.parquet"
    assert pq.read_schema(path).field("user").type == pa.int32()  # integer ids stay integers
    back = read_parquet(tmp_path / "d")
    assert len(back) == len(synth) and back.n_users == synth.n_users and back.n_items == synth.n_items
    # same (user id, item id, rating, timestamp) rows, in the same order
    np.testing.assert_array_equal(back.user_ids[back.user], synth.user_ids[synth.user])
    np.testing.assert_array_equal(back.item_ids[back.item], synth.item_ids[synth.item])
    np.testing.assert_array_equal(back.rating, synth.rating)
    np.testing.assert_array_equal(back.timestamp, synth.timestamp)
    assert list(back.user_ids) == sorted(back.user_ids, key=int)  # integer ids: numeric order


def test_string_ids_are_dictionary_encoded_in_first_appearance_order(tmp_path):
    table = pa.table({"user": ["b", "a", "b", "c"], "item": ["x", "y", "y", "x"],
                      "rating": [4.0, 3.0, 5.0, 1.0]})
    pq.write_table(table, tmp_path / "s.parquet")
    d = read_parquet(tmp_path / "s.parquet")
    assert list(d.user_ids) == ["b", "a", "c"] and list(d.item_ids) == ["x", "y"]
    assert d.user.tolist() == [0, 1, 0, 2] and d.item.tolist() == [0, 1, 1, 0]
    assert d.timestamp.tolist() == [0, 0, 0, 0]
    # and back out: string ids are written as dictionary columns and read the same
    d2 = read_parquet(write_parquet(d, tmp_path / "again.parquet"))
    assert list(d2.user_ids) == ["b", "a", "c"] and d2.user.tolist() == d.user.tolist()


def test_encode_ids_large_and_negative_integers_and_extra_ids():
    codes, vocab = encode_ids(np.array([10**12, 5, 10**12, -3]))
    assert vocab.tolist() == ["-3", "5", "1000000000000"] and codes.tolist() == [2, 1, 2, 0]
    codes, vocab = encode_ids(np.array([7, 2, 7]), also=np.array([4]))
    assert vocab.tolist() == ["2", "4", "7"] and codes.tolist() == [2, 0, 2]


@pytest.mark.parametrize("table, needle", [
    (pa.table({"user": [1, 2], "rating": [1.0, 2.0]}), "missing column(s) item"),
    (pa.table({"user": [1, None], "item": [1, 2]}), "column 'user' is null at row 1"),
    (pa.table({"user": [1, 2], "item": [1, 2], "rating": [1.0, float("nan")]}), "'rating' holds nan at row 1"),
    (pa.table({"user": [1, 2, 1], "item": [1, 2, 1]}), "duplicate (user, item) pair (1, 1) at row 2, first at row 0"),
    (pa.table({"user": [1.5, 2.0], "item": [1, 2]}), "column 'user' has type double"),
    (pa.table({"user": [1, 2], "item": [1, 2], "timestamp": [1.0, 2.5]}), "'timestamp' holds 2.5 at row 1"),
])
def test_bad_tables_name_file_column_and_row(tmp_path, table, needle):
    pq.write_table(table, tmp_path / "bad.parquet")
    with pytest.raises(DataError) as exc:
        read_parquet(tmp_path / "bad.parquet")
    assert needle in str(exc.value) and "bad.parquet" in str(exc.value)


def test_keep_last_drops_earlier_duplicates(tmp_path):
    pq.write_table(pa.table({"user": [1, 2, 1], "item": [1, 2, 1], "rating": [1.0, 2.0, 5.0]}),
                   tmp_path / "d.parquet")
    d = read_parquet(tmp_path / "d.parquet", duplicates="keep-last")
    assert len(d) == 2 and d.rating.tolist() == [2.0, 5.0] and d.meta["duplicates_dropped"] == 1


def test_a_folder_of_part_files_is_one_table(tmp_path, synth):
    frame = synth.to_frame().astype({"user": np.int64, "item": np.int64})
    (tmp_path / "parts").mkdir()
    for k, part in enumerate(np.array_split(np.arange(len(frame)), 3)):
        pq.write_table(pa.Table.from_pandas(frame.iloc[part], preserve_index=False),
                       tmp_path / "parts" / f"part-{k}.parquet")
    d = read_parquet(tmp_path / "parts")
    assert len(d) == len(synth) and d.n_users == synth.n_users


def test_missing_path_and_empty_folder_are_named(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_parquet(tmp_path / "nope.parquet")
    with pytest.raises(DataError, match="no ratings.parquet"):
        read_parquet(tmp_path)


def test_columns_stream_in_pieces_and_name_the_row(tmp_path, synth, monkeypatch):
    """Numeric columns are read piece by piece (a file's row groups, a folder's batches) into
    one array: the rows and the row numbers in errors are those of the whole table."""
    import recstack.data.parquet as parquet

    monkeypatch.setattr(parquet, "BATCH_ROWS", 1000)
    table = pq.read_table(write_parquet(synth, tmp_path / "d"))
    pq.write_table(table, tmp_path / "groups.parquet", row_group_size=777)
    (tmp_path / "parts").mkdir()
    for k, lo in enumerate(range(0, len(table), 5000)):
        pq.write_table(table.slice(lo, 5000), tmp_path / "parts" / f"part-{k:02d}.parquet")
    for source in (tmp_path / "groups.parquet", tmp_path / "parts"):
        back = read_parquet(source)
        np.testing.assert_array_equal(back.rating, synth.rating)
        np.testing.assert_array_equal(back.timestamp, synth.timestamp)
        np.testing.assert_array_equal(back.item_ids[back.item], synth.item_ids[synth.item])
    users = pa.array([1] * 2500 + [None] + [2] * 10, pa.int64())
    pq.write_table(pa.table({"user": users, "item": list(range(2511))}), tmp_path / "n.parquet",
                   row_group_size=700)
    with pytest.raises(DataError, match="column 'user' is null at row 2500"):
        read_parquet(tmp_path / "n.parquet")
    stamps = [float(k) for k in range(2511)]
    stamps[2222] = 0.5
    pq.write_table(pa.table({"user": list(range(2511)), "item": list(range(2511)), "timestamp": stamps}),
                   tmp_path / "t.parquet", row_group_size=700)
    with pytest.raises(DataError, match="'timestamp' holds 0.5 at row 2222"):
        read_parquet(tmp_path / "t.parquet")


def test_timestamp_columns_and_leaving_them_unread(tmp_path):
    seconds = np.array([946684800, 1577836800, 1000000000])
    table = pa.table({"user": [1, 2, 3], "item": [4, 5, 6],
                      "timestamp": pa.array(seconds * 1000, pa.timestamp("ms"))})
    pq.write_table(table, tmp_path / "t.parquet")
    assert read_parquet(tmp_path / "t.parquet").timestamp.tolist() == seconds.tolist()
    untimed = read_parquet(tmp_path / "t.parquet", timestamps=False)
    assert untimed.timestamp.tolist() == [0, 0, 0] and untimed.timestamp.dtype == np.int64
    assert untimed.user.tolist() == [0, 1, 2]


def test_reading_a_file_does_not_import_pandas(tmp_path, synth):
    """pandas costs 75 MB resident: the Parquet path to `Interactions` (and its CSR) stays without it."""
    import subprocess
    import sys

    write_parquet(synth, tmp_path / "d")
    code = ("import sys; from recstack.data.parquet import read_parquet; "
            f"d = read_parquet({str(tmp_path / 'd')!r}); d.csr; d.csr_t; d.fingerprint(); "
            "print(len(d), 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(len(synth)), "False"]


def test_user_order_is_the_csr_order_and_shares_its_arrays(tmp_path, synth):
    write_parquet(synth, tmp_path / "d")
    lean = read_parquet(tmp_path / "d", order="user")
    order = np.lexsort((synth.item, synth.user))  # integer ids: the vocabularies keep index order
    assert list(lean.user_ids) == list(synth.user_ids) and list(lean.item_ids) == list(synth.item_ids)
    for field in ("user", "item", "rating", "timestamp"):
        np.testing.assert_array_equal(getattr(lean, field), getattr(synth, field)[order])
    assert lean.csr.indices is lean.item and lean.csr.data is lean.rating
    assert (lean.csr != synth.csr).nnz == 0 and (lean.csr_t != synth.csr_t).nnz == 0
    untimed = read_parquet(tmp_path / "d", order="user", timestamps=False)
    assert not untimed.timestamp.any() and untimed.fingerprint() != lean.fingerprint()
    # duplicates: named, or the last one kept, as in file order
    pq.write_table(pa.table({"user": [1, 2, 1, 0], "item": [1, 2, 1, 5], "rating": [1.0, 2.0, 5.0, 3.0]}),
                   tmp_path / "dup.parquet")
    with pytest.raises(DataError, match=r"duplicate \(user, item\) pair \(1, 1\) at row 2, first at row 0"):
        read_parquet(tmp_path / "dup.parquet", order="user")
    d = read_parquet(tmp_path / "dup.parquet", order="user", duplicates="keep-last")
    assert d.user_ids[d.user].tolist() == ["0", "1", "2"] and d.rating.tolist() == [3.0, 5.0, 2.0]
    assert d.meta["duplicates_dropped"] == 1 and d.csr.data is d.rating

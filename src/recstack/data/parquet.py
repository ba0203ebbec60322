"""Interactions as Parquet, at any size: `user, item, rating, timestamp` columns, read without
Python loops over rows (pyarrow → NumPy; ids dictionary-encoded or, when integer, mapped
through a presence table).

- `read_parquet(path)`: a `.parquet` file, or a folder holding `ratings.parquet` (what
  `recstack data synth` writes) or a Parquet dataset of part files (what Spark writes).
  `user` and `item` may be integer or string columns; `rating` (float) and `timestamp`
  (integer or a Parquet timestamp) are optional (1 and 0 when absent). A null, a non-finite
  rating or a repeated (user, item) pair raises `DataError` naming the file, column, row and value.
- `write_parquet(data, path)`: integer id columns when every id is a plain integer (Spark's ALS
  wants integers), string columns otherwise.

Memory: each numeric column is read a row group (a folder: a batch) at a time straight into
its NumPy array, so Arrow never holds more than one piece, and nothing imports pandas (75 MB
resident). At 25M rows: the arrays of `Interactions` (0.5 GB with int32 ids, float32 ratings,
int64 timestamps) and the (user, item) CSR the duplicate check builds (0.2 GB). For a fit that
looks neither at time nor at row order (`timestamps=False, order="user"`, what `recstack train`
does for `als`, `item-knn` and `ease`): 0.3 GB of rows whose item and rating arrays are the
CSR's own, 0.56 GB at the peak of the read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from recstack.data.interactions import Interactions
from recstack.errors import DataError

COLUMNS = ("user", "item", "rating", "timestamp")
FILE_NAME = "ratings.parquet"
Duplicates = Literal["error", "keep-last"]


def _pa():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow comes with the base install
        raise DataError("reading Parquet needs pyarrow (pip install pyarrow)") from None
    return pa, pq


def parquet_path(path: str | Path) -> Path:
    """The Parquet file or dataset folder that `path` names (a folder's `ratings.parquet` first)."""
    p = Path(path).expanduser()
    if p.is_dir() and (p / FILE_NAME).exists():
        return p / FILE_NAME
    if p.is_dir() and any(p.glob("*.parquet")):
        return p
    if p.is_file():
        return p
    if p.is_dir():
        raise DataError(f"no {FILE_NAME} nor any *.parquet part files in this folder", path=p)
    raise DataError("no such file or folder", path=p)


def encode_ids(values: np.ndarray, also: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Dense int32 codes and the vocabulary (a str array, position = code) of an id column.

    Integer ids: the vocabulary is the sorted distinct ids (plus `also`, ids to keep even when
    absent from `values`), found through a presence table when the ids are small non-negative
    numbers (O(n), no sort), else by `np.unique`. Other ids: order of first appearance
    (`pd.factorize`, hashed; `also` is not supported there).
    """
    values = np.asarray(values)
    if values.dtype.kind in "iu":
        v = values  # indexes as it is: no 8-byte copy of a 4-byte column
        extra = np.empty(0, np.int64) if also is None else np.asarray(also, np.int64)
        lo = min(int(v.min()) if len(v) else 0, int(extra.min()) if len(extra) else 0)
        hi = max(int(v.max()) if len(v) else 0, int(extra.max()) if len(extra) else 0)
        if lo >= 0 and hi < max(4 * (len(v) + len(extra)), 1 << 20):
            present = np.zeros(hi + 1, bool)
            present[v] = True
            present[extra] = True
            vocab = np.flatnonzero(present)
            code_of = np.cumsum(present, dtype=np.int32) - 1  # < 2³¹ distinct ids
            codes = code_of[v]
        else:
            v = v.astype(np.int64, copy=False)
            vocab = np.union1d(np.unique(v), extra)
            codes = np.searchsorted(vocab, v).astype(np.int32)
        return codes, vocab.astype(str)
    if also is not None:
        raise DataError("extra ids are supported for integer id columns only")
    import pandas as pd

    codes, vocab = pd.factorize(values)
    return codes.astype(np.int32), np.asarray(vocab, dtype=str)


def _ids(cols: _Columns, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Codes and vocabulary of an id column: integers streamed into one NumPy array, strings
    by dictionary (the whole column at once)."""
    pa, _ = _pa()
    import pyarrow.compute as pc

    kind = cols.type(column)
    if pa.types.is_integer(kind):
        return encode_ids(cols.numpy(column, kind.to_pandas_dtype()))
    col = cols.whole(column)
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise DataError(f"column '{column}' has type {col.type}; expected integer or string ids", path=cols.where)
    enc = pc.dictionary_encode(col.combine_chunks() if hasattr(col, "combine_chunks") else col)
    vocab = np.asarray(enc.dictionary.to_numpy(zero_copy_only=False), dtype=str)
    return enc.indices.to_numpy(zero_copy_only=False).astype(np.int32, copy=False), vocab


def read_parquet(path: str | Path, *, duplicates: Duplicates = "error", name: str | None = None,
                 timestamps: bool = True, order: Literal["file", "user"] = "file") -> Interactions:
    """Read a Parquet table of interactions (see the module docstring) into `Interactions`.

    For fitting alone (no split by row, no row numbers): `timestamps=False` leaves the timestamp
    column unread (every timestamp 0, an array that takes no memory until written), and
    `order="user"` sorts the rows by user, then item — the order of `data.csr`, which then
    shares the `item` and `rating` arrays (`Interactions.from_csr`). At 25M rows each saves 0.2 GB.
    """
    pa, _ = _pa()
    if duplicates not in ("error", "keep-last"):
        raise DataError(f"duplicates must be 'error' or 'keep-last', got {duplicates!r}")
    if order not in ("file", "user"):
        raise DataError(f"order must be 'file' or 'user', got {order!r}")
    where = parquet_path(path)
    cols = _Columns(where)
    names = set(cols.schema.names)
    missing = [c for c in ("user", "item") if c not in names]
    if missing:
        raise DataError(f"missing column(s) {', '.join(missing)}; found {', '.join(cols.schema.names)} "
                        f"(need user, item and optionally rating, timestamp)", path=where)
    n = cols.rows
    if n == 0:
        raise DataError("no rows", path=where)
    ucodes, uvocab = _ids(cols, "user")
    icodes, ivocab = _ids(cols, "item")
    if "rating" not in names:
        rating = np.ones(n, np.float32)
    else:
        kind = cols.type("rating")
        if not (pa.types.is_floating(kind) or pa.types.is_integer(kind)):
            raise DataError(f"column 'rating' has type {kind}; expected a number", path=where)
        rating = cols.numpy("rating", np.float32)
        if not np.isfinite(rating).all():
            row = int(np.flatnonzero(~np.isfinite(rating))[0])
            raise DataError(f"column 'rating' holds {rating[row]} at row {row}; expected a finite number",
                            path=where)
    timestamp = np.zeros(n, np.int64)  # untouched zero pages: no resident memory while unwritten
    if timestamps and "timestamp" in names:
        timestamp = _timestamps(cols)
    stem = where.parent.name if where.name == FILE_NAME else where.stem
    meta = {"path": str(where), "duplicates_dropped": 0}
    if order == "user":  # handed over in a list, so that the file-order arrays can be let go there
        arrays = [ucodes, icodes, rating, timestamp if timestamps else None]
        del ucodes, icodes, rating, timestamp
        return _user_major(arrays, uvocab, ivocab, where, duplicates, name=name or stem, meta=meta)
    data = Interactions(uvocab, ivocab, ucodes, icodes, rating, timestamp, name=name or stem, meta=meta)
    # duplicates: the CSR matrix (which every model uses, cached on `data`) sums repeated pairs,
    # so fewer stored entries than rows means a repeat; only then are the rows searched
    keep = None if data.csr.nnz == n else _check_duplicates(ucodes, icodes, uvocab, ivocab, where, duplicates)
    if keep is not None:
        meta["duplicates_dropped"] = int(len(keep) - keep.sum())
        data = data.subset(keep)
    return data


BATCH_ROWS = 1 << 20  # rows per Arrow batch when a folder's column is streamed into NumPy


def _batch_pool():
    """The Arrow memory pool for a folder's streamed batches: jemalloc with freed pages purged
    at once (`jemalloc_set_decay_ms(0)`), when pyarrow has it. The system allocator keeps freed
    batch buffers in per-thread arenas (at 25M rows, 0.1 GB more resident after a read);
    jemalloc's default decay keeps them for a while. None (the default pool) without jemalloc."""
    pa, _ = _pa()
    try:
        pa.jemalloc_set_decay_ms(0)
        return pa.jemalloc_memory_pool()
    except NotImplementedError:  # pyarrow built without jemalloc (ArrowNotImplementedError is one)
        return None


def _values(col) -> np.ndarray:
    """A fixed-width Arrow array's values (no nulls) as a NumPy view of its data buffer.
    (`Array.to_numpy` would import pandas, 75 MB resident, which reading does not otherwise need.)"""
    dtype = np.dtype(col.type.to_pandas_dtype())
    return np.frombuffer(col.buffers()[1], dtype, len(col), col.offset * dtype.itemsize)


class _Columns:
    """The Parquet file (or folder of part files) read one column at a time.

    `numpy(name, dtype)` fills one preallocated NumPy array piece by piece, in row order: a
    file row group by row group (one thread), a folder batch by batch (`pyarrow.dataset`,
    which Spark's part files and hive partitions need). Arrow never holds more than one piece,
    so the peak is the NumPy array itself. `whole(name)` reads a column at once (string ids).
    Both check for nulls, naming the first null row.
    """

    def __init__(self, where: Path) -> None:
        pa, pq = _pa()
        self.where = where
        try:
            if where.is_file():
                self.file, self.dataset = pq.ParquetFile(where), None
                self.schema = self.file.schema_arrow
                self.rows = self.file.metadata.num_rows
            else:  # as `pq.read_table`: hive partitions; files starting with "_" or "." ignored
                import pyarrow.dataset as ds

                self.file, self.dataset = None, ds.dataset(where, format="parquet", partitioning="hive")
                self.schema = self.dataset.schema
                self.rows = self.dataset.count_rows()
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"not a readable Parquet file ({exc})", path=where) from None

    def type(self, name: str):
        return self.schema.field(name).type

    def _pieces(self, name: str):
        """The column's Arrow arrays in row order."""
        pa, _ = _pa()
        try:
            if self.file is not None:
                for group in range(self.file.num_row_groups):
                    yield from self.file.read_row_group(group, columns=[name], use_threads=False)[name].chunks
            else:
                for batch in self.dataset.to_batches(columns=[name], batch_size=BATCH_ROWS, use_threads=False,
                                                     memory_pool=_batch_pool()):
                    yield batch.column(0)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"cannot read ({exc})", path=self.where) from None

    def _check_nulls(self, col, name: str, offset: int) -> None:
        if col.null_count:
            row = offset + int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataError(f"column '{name}' is null at row {row}", path=self.where)

    def numpy(self, name: str, dtype, convert=None) -> np.ndarray:
        """The column as one NumPy array of `dtype`; `convert(arrow_array, offset)` maps each
        piece to NumPy values first (default: its own values)."""
        out = np.empty(self.rows, dtype)
        lo = 0
        for col in self._pieces(name):
            self._check_nulls(col, name, lo)
            hi = lo + len(col)
            if hi > self.rows:  # pragma: no cover - the row count comes from the same metadata
                raise DataError(f"column '{name}' has more rows than the {self.rows} counted", path=self.where)
            out[lo:hi] = _values(col) if convert is None else convert(col, lo)
            lo = hi
        if lo != self.rows:  # pragma: no cover - likewise
            raise DataError(f"column '{name}' has {lo} rows, not {self.rows}", path=self.where)
        return out

    def whole(self, name: str):
        pa, _ = _pa()
        try:
            table = self.file.read(columns=[name]) if self.file is not None else \
                self.dataset.to_table(columns=[name])
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"cannot read ({exc})", path=self.where) from None
        self._check_nulls(table[name], name, 0)
        return table[name]


def _timestamps(cols: _Columns) -> np.ndarray:
    pa, _ = _pa()
    kind = cols.type("timestamp")
    if pa.types.is_timestamp(kind):
        return cols.numpy("timestamp", np.int64,
                          lambda col, _: _values(col.cast(pa.timestamp("s")).cast(pa.int64())))
    if pa.types.is_integer(kind):
        return cols.numpy("timestamp", np.int64)
    if pa.types.is_floating(kind):
        def whole_seconds(col, offset: int) -> np.ndarray:
            values = _values(col)
            bad = ~np.isfinite(values) | (values != np.round(values))
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise DataError(f"column 'timestamp' holds {values[row]} at row {offset + row}; expected "
                                "an integer", path=cols.where)
            return values

        return cols.numpy("timestamp", np.int64, whole_seconds)
    raise DataError(f"column 'timestamp' has type {kind}; expected integer seconds", path=cols.where)


def _user_major(arrays: list, uvocab: np.ndarray, ivocab: np.ndarray, where: Path, duplicates: str,
                **fields) -> Interactions:
    """`Interactions.from_csr` of the rows `arrays` = [user codes, item codes, ratings, timestamps
    or None] (emptied here): the (user, item) CSR of row numbers (scipy's counting sort, then
    each row's items sorted) gives the order; the file-order arrays are let go as their sorted
    copies are made, so the peak is the rows plus that CSR (25M rows: 0.56 GB)."""
    import scipy.sparse as sp

    ucodes, icodes, rating, timestamp = arrays
    arrays.clear()
    shape = (len(uvocab), len(ivocab))
    rows = sp.csr_matrix((np.arange(len(ucodes), dtype=np.int32), (ucodes, icodes)), shape=shape)
    if rows.nnz != len(ucodes):  # a repeated pair (its row numbers were summed): drop or name it
        keep = _check_duplicates(ucodes, icodes, uvocab, ivocab, where, duplicates)
        fields["meta"]["duplicates_dropped"] = int(len(keep) - keep.sum())
        ucodes, icodes, rating = ucodes[keep], icodes[keep], rating[keep]
        timestamp = None if timestamp is None else timestamp[keep]
        rows = sp.csr_matrix((np.arange(len(ucodes), dtype=np.int32), (ucodes, icodes)), shape=shape)
    del ucodes, icodes  # the CSR's indices are the items, in their new order
    rows.sort_indices()
    order = rows.data
    rating = rating[order]
    timestamp = None if timestamp is None else timestamp[order]
    del order
    m = sp.csr_matrix((rating, rows.indices, rows.indptr), shape=shape)
    m.has_sorted_indices = True
    del rows
    return Interactions.from_csr(m, uvocab, ivocab, timestamp, **fields)


def _check_duplicates(ucodes: np.ndarray, icodes: np.ndarray, uvocab: np.ndarray, ivocab: np.ndarray,
                      where: Path, policy: str) -> np.ndarray:
    """The rows to keep ("keep-last") or an error naming the first repeat (called when there is one)."""
    if policy not in ("error", "keep-last"):
        raise DataError(f"duplicates must be 'error' or 'keep-last', got {policy!r}")
    import pandas as pd

    key = ucodes.astype(np.int64) * max(len(ivocab), 1) + icodes
    series = pd.Series(key)
    if policy == "keep-last":
        return ~series.duplicated(keep="last").to_numpy()
    row = int(np.flatnonzero(series.duplicated(keep="first").to_numpy())[0])
    first = int(np.flatnonzero(key == key[row])[0])
    raise DataError(f"duplicate (user, item) pair ({uvocab[ucodes[row]]}, {ivocab[icodes[row]]}) at "
                    f"row {row}, first at row {first}; pass duplicates='keep-last' (--duplicates "
                    "keep-last) to keep the last row", path=where)


def _int_ids(vocab: np.ndarray) -> np.ndarray | None:
    """The ids as int64 when every one is a plain decimal integer (no sign, no leading zero)."""
    import pandas as pd

    s = pd.Series(vocab, dtype=object).astype(str)
    if not s.str.fullmatch(r"0|[1-9]\d{0,17}").all():
        return None
    return s.astype(np.int64).to_numpy()


def write_parquet(data: Interactions, path: str | Path) -> Path:
    """Write `data` as Parquet (`path` a folder → `path/ratings.parquet`); returns the file."""
    pa, pq = _pa()
    out = Path(path)
    if out.suffix != ".parquet":
        out.mkdir(parents=True, exist_ok=True)
        out = out / FILE_NAME
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
    cols = {}
    for column, vocab, codes in (("user", data.user_ids, data.user), ("item", data.item_ids, data.item)):
        ints = _int_ids(vocab)
        if ints is not None:
            dtype = np.int32 if len(ints) == 0 or ints.max() < 2**31 else np.int64
            cols[column] = pa.array(ints.astype(dtype)[codes])
        else:
            cols[column] = pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(vocab.tolist()))
    cols["rating"] = pa.array(data.rating.astype(np.float32, copy=False))
    cols["timestamp"] = pa.array(data.timestamp.astype(np.int64, copy=False))
    tmp = out.with_name(f".{out.name}.tmp")
    pq.write_table(pa.table(cols), tmp, row_group_size=1 << 20)
    tmp.replace(out)
    return out

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

Memory: columns are read one at a time, so reading 25M rows holds the NumPy arrays of
`Interactions` (0.5 GB with int32 ids, float32 ratings, int64 timestamps) plus one column's
Arrow copy (at most 0.2 GB) and the (user, item) CSR the duplicate check builds (0.2 GB).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

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
    codes, vocab = pd.factorize(values)
    return codes.astype(np.int32), np.asarray(vocab, dtype=str)


def _ids(col, column: str, where: Path) -> tuple[np.ndarray, np.ndarray]:
    """Codes and vocabulary of an Arrow id column: integers directly, strings by dictionary."""
    pa, _ = _pa()
    import pyarrow.compute as pc

    if pa.types.is_integer(col.type):
        return encode_ids(col.to_numpy())
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise DataError(f"column '{column}' has type {col.type}; expected integer or string ids", path=where)
    enc = pc.dictionary_encode(col.combine_chunks() if hasattr(col, "combine_chunks") else col)
    vocab = np.asarray(enc.dictionary.to_numpy(zero_copy_only=False), dtype=str)
    return enc.indices.to_numpy(zero_copy_only=False).astype(np.int32, copy=False), vocab


def read_parquet(path: str | Path, *, duplicates: Duplicates = "error", name: str | None = None) -> Interactions:
    """Read a Parquet table of interactions (see the module docstring) into `Interactions`."""
    pa, pq = _pa()
    if duplicates not in ("error", "keep-last"):
        raise DataError(f"duplicates must be 'error' or 'keep-last', got {duplicates!r}")
    where = parquet_path(path)
    try:
        schema = pq.read_schema(where) if where.is_file() else pq.ParquetDataset(where).schema
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"not a readable Parquet file ({exc})", path=where) from None
    names = set(schema.names)
    missing = [c for c in ("user", "item") if c not in names]
    if missing:
        raise DataError(f"missing column(s) {', '.join(missing)}; found {', '.join(schema.names)} "
                        f"(need user, item and optionally rating, timestamp)", path=where)
    # one column at a time, read when it is converted: at most one column exists twice (Arrow
    # and NumPy), never the whole table (25M rows: 0.2 GB at a time instead of 0.5 GB)
    cols = _Columns(pq, pa, where, [c for c in COLUMNS if c in names])
    n = cols.rows
    if n == 0:
        raise DataError("no rows", path=where)
    ucodes, uvocab = _ids(cols.pop("user"), "user", where)
    icodes, ivocab = _ids(cols.pop("item"), "item", where)
    rating = np.ones(n, np.float32)
    if "rating" in cols:
        col = cols.pop("rating")
        if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
            raise DataError(f"column 'rating' has type {col.type}; expected a number", path=where)
        rating = col.to_numpy().astype(np.float32, copy=False)
        del col
        bad = ~np.isfinite(rating)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(f"column 'rating' holds {rating[row]} at row {row}; expected a finite number",
                            path=where)
    timestamp = np.zeros(n, np.int64)
    if "timestamp" in cols:
        timestamp = _timestamps(cols.pop("timestamp"), where)
    stem = where.parent.name if where.name == FILE_NAME else where.stem
    meta = {"path": str(where), "duplicates_dropped": 0}
    data = Interactions(uvocab, ivocab, ucodes, icodes, rating, timestamp, name=name or stem, meta=meta)
    # duplicates: the CSR matrix (which every model uses, cached on `data`) sums repeated pairs,
    # so fewer stored entries than rows means a repeat; only then are the rows searched
    keep = None if data.csr.nnz == n else _check_duplicates(ucodes, icodes, uvocab, ivocab, where, duplicates)
    if keep is not None:
        meta["duplicates_dropped"] = int(len(keep) - keep.sum())
        data = data.subset(keep)
    return data


class _Columns:
    """The Parquet columns to convert, each read (and checked for nulls) when popped."""

    def __init__(self, pq, pa, where: Path, names: list[str]) -> None:
        self.pq, self.pa, self.where, self.names = pq, pa, where, list(names)
        first = self._read(self.names[0])
        self.rows = len(first)
        self.cache = {self.names[0]: first}

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def _read(self, name: str):
        try:
            col = self.pq.read_table(self.where, columns=[name])[name]
        except (OSError, self.pa.ArrowException) as exc:
            raise DataError(f"cannot read ({exc})", path=self.where) from None
        if col.null_count:
            row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataError(f"column '{name}' is null at row {row}", path=self.where)
        return col

    def pop(self, name: str):
        self.names.remove(name)
        col = self.cache.pop(name, None)
        col = self._read(name) if col is None else col
        if len(col) != self.rows:  # pragma: no cover - Parquet columns share their row count
            raise DataError(f"column '{name}' has {len(col)} rows, not {self.rows}", path=self.where)
        return col


def _timestamps(col, where: Path) -> np.ndarray:
    pa, _ = _pa()
    if pa.types.is_timestamp(col.type):
        return col.cast(pa.timestamp("s")).cast(pa.int64()).to_numpy()
    if pa.types.is_integer(col.type):
        return col.to_numpy().astype(np.int64, copy=False)
    if pa.types.is_floating(col.type):
        values = col.to_numpy()
        bad = ~np.isfinite(values) | (values != np.round(values))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(f"column 'timestamp' holds {values[row]} at row {row}; expected an integer",
                            path=where)
        return values.astype(np.int64)
    raise DataError(f"column 'timestamp' has type {col.type}; expected integer seconds", path=where)


def _check_duplicates(ucodes: np.ndarray, icodes: np.ndarray, uvocab: np.ndarray, ivocab: np.ndarray,
                      where: Path, policy: str) -> np.ndarray:
    """The rows to keep ("keep-last") or an error naming the first repeat (called when there is one)."""
    if policy not in ("error", "keep-last"):
        raise DataError(f"duplicates must be 'error' or 'keep-last', got {policy!r}")
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

"""Your own side information: item/user feature files and dense item vectors.

Feature file (`--item-features F`, `--user-features F`): CSV, TSV or `;`-separated text with a
header line. The first column holds the ids, whatever its name; every other column is a
feature. A column with `|` in any cell is multi-valued (`Comedy|Drama`, like genres or tags);
a column whose cells all read as numbers is numeric; a mostly numeric column (≥ 90% of its
non-empty cells) keeps its numbers and treats the rest as missing, and says how many; anything
else is a category. Empty cells are missing. A user column called `zip`, `zipcode` or
`postcode` is read as `zip_code` (mapped to state and region). Problems name the file and line:
a row with the wrong number of fields, an empty or repeated id.

Item vectors (`--item-vectors F`): Parquet with an id column (the first) and one list-of-numbers
column (or several numeric columns, taken in order as the vector), or a `.npy` (n, d) array
plus a text file of n ids, one per line (`--item-vector-ids`, default `F` with `.ids.txt`).
"""

from __future__ import annotations

import csv
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from recstack.data.interactions import Interactions
from recstack.errors import DataError

log = logging.getLogger(__name__)

MOSTLY_NUMERIC = 0.9
ZIP_ALIASES = ("zip", "zipcode", "zip_code", "postcode", "postal_code")


def _sniff(head: str) -> str:
    return next((c for c in ("\t", ",", ";") if c in head), ",")


def read_feature_file(path: str | Path, kind: str = "item") -> pd.DataFrame:
    """Frame indexed by id (str) with one typed column per feature; `attrs["notes"]` lists what
    was coerced (e.g. unparseable cells in a numeric column). Raises `DataError` with file:line."""
    path = Path(path)
    if not path.is_file():
        raise DataError("no such file" if not path.exists() else "is a folder, expected a feature file", path=path)
    text = None
    for enc in ("utf-8-sig", "latin-1"):
        try:
            text = path.read_text(encoding=enc)
            break
        except UnicodeDecodeError:
            continue
    assert text is not None
    lines = text.splitlines()
    first = next((k for k, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise DataError(f"empty file: expected a header line (id, then {kind} feature columns)", path=path)
    sep = _sniff(lines[first])
    rows = list(csv.reader(lines, delimiter=sep))
    header = [h.strip() for h in rows[first]]
    if len(header) < 2:
        raise DataError(f"header {header} names no feature column (expected id{sep}feature…)", path=path,
                        line=first + 1)
    if "" in header or len(set(header)) != len(header):
        dup = next(h for h in header if h == "" or header.count(h) > 1)
        raise DataError(f"header has an {'empty' if dup == '' else 'repeated'} column name {dup!r}",
                        path=path, line=first + 1)
    ids, cells, line_no = [], [], []
    seen: dict[str, int] = {}
    for k in range(first + 1, len(rows)):
        row = rows[k]
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise DataError(f"{len(row)} fields, the header has {len(header)} ({sep.join(header)})",
                            path=path, line=k + 1)
        rid = row[0].strip()
        if not rid:
            raise DataError(f"empty id in column {header[0]!r}", path=path, line=k + 1)
        if rid in seen:
            raise DataError(f"repeated id {rid!r}, first on line {seen[rid]}", path=path, line=k + 1)
        seen[rid] = k + 1
        ids.append(rid)
        cells.append([c.strip() for c in row[1:]])
        line_no.append(k + 1)
    if not ids:
        raise DataError("a header line but no rows", path=path)
    notes: list[str] = []
    columns = {}
    raw = list(zip(*cells))
    for name, col in zip(header[1:], raw):
        out_name = "zip_code" if kind == "user" and name.lower() in ZIP_ALIASES else name
        columns[out_name] = _typed_column(list(col), name, line_no, path, notes)
    index = pd.Index(ids, name="id")
    frame = pd.DataFrame({k: v.set_axis(index) for k, v in columns.items()}, index=index)
    frame.attrs["notes"] = notes
    for note in notes:
        log.warning("%s", note)
    return frame


def _typed_column(col: list[str], name: str, line_no: list[int], path: Path, notes: list[str]) -> pd.Series:
    if name.lower() in ZIP_ALIASES:
        return pd.Series([c or None for c in col], dtype=object)
    if any("|" in c for c in col):
        return pd.Series([[v.strip() for v in c.split("|") if v.strip()] for c in col], dtype=object)
    filled = [k for k, c in enumerate(col) if c != ""]
    nums = pd.to_numeric(pd.Series(col, dtype=object).replace("", None), errors="coerce")
    bad = [k for k in filled if pd.isna(nums.iloc[k])]
    if filled and len(bad) <= (1 - MOSTLY_NUMERIC) * len(filled) and len(bad) < len(filled):
        if bad:
            notes.append(f"{path}: column {name!r}: {len(bad)} of {len(filled)} cells are not numbers "
                         f"(first on line {line_no[bad[0]]}: {col[bad[0]]!r}); treated as missing")
        values = nums.astype("float64")
        ok = values.dropna()
        if len(ok) and (ok == ok.round()).all() and (ok.abs() < 2**53).all():
            return values.astype("Int64")
        return values
    return pd.Series([c if c != "" else None for c in col], dtype=object)


def read_item_vectors(path: str | Path, ids_path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ids (n,) str, vectors (n, d) float32) from Parquet, or from `.npy` plus an id list."""
    path = Path(path)
    if not path.is_file():
        raise DataError("no such file", path=path)
    if path.suffix == ".npy":
        try:
            vectors = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise DataError(f"not a plain .npy array ({exc})", path=path) from None
        ids_file = Path(ids_path) if ids_path else path.with_suffix(".ids.txt")
        if not ids_file.is_file():
            raise DataError(f"a .npy needs its id list: one id per line in {ids_file} "
                            "(or pass --item-vector-ids FILE)", path=path)
        ids = [line.strip() for line in ids_file.read_text().splitlines()]
        if ids and ids[-1] == "":
            ids = ids[:-1]
        if vectors.ndim != 2 or vectors.shape[0] != len(ids):
            raise DataError(f"array shape {vectors.shape} does not match {len(ids)} ids in {ids_file}", path=path)
        for k, i in enumerate(ids):
            if not i:
                raise DataError("empty id", path=ids_file, line=k + 1)
        rows_desc = "row"
    else:
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several kinds for a damaged file
            raise DataError(f"cannot read Parquet ({type(exc).__name__}: {exc})", path=path) from None
        if frame.shape[1] < 2:
            raise DataError("expected an id column and a vector column", path=path)
        ids = frame.iloc[:, 0].astype(str).tolist()
        rest = frame.iloc[:, 1:]
        list_cols = [c for c in rest.columns if rest[c].map(lambda v: isinstance(v, (list, np.ndarray))).any()]
        if list_cols:
            col = rest[list_cols[0]]
            lengths = col.map(lambda v: len(v) if isinstance(v, (list, np.ndarray)) else -1).to_numpy()
            bad = np.flatnonzero(lengths != lengths.max())
            if len(bad):
                raise DataError(f"row {bad[0] + 1} (id {ids[bad[0]]!r}): vector of length {lengths[bad[0]]}, "
                                f"others have {lengths.max()}", path=path)
            vectors = np.vstack([np.asarray(v, np.float64) for v in col])
        else:
            vectors = rest.apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
        rows_desc = "row"
    vectors = np.asarray(vectors, np.float64)
    if vectors.ndim != 2:
        raise DataError(f"expected a 2-d array of vectors, got shape {vectors.shape}", path=path)
    bad_rows = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if len(bad_rows):
        raise DataError(f"{rows_desc} {bad_rows[0] + 1} (id {ids[bad_rows[0]]!r}): non-finite or missing "
                        "vector value", path=path)
    dup = pd.Index(ids).duplicated()
    if dup.any():
        k = int(np.flatnonzero(dup)[0])
        raise DataError(f"{rows_desc} {k + 1}: repeated id {ids[k]!r}", path=path)
    return np.asarray(ids, dtype=str), vectors.astype(np.float32)


def with_features(data: Interactions, items: pd.DataFrame | None = None, users: pd.DataFrame | None = None,
                  vectors: tuple[np.ndarray, np.ndarray] | None = None) -> Interactions:
    """`data` with feature frames (indexed by external id) aligned to its vocabularies.

    A file's columns join the data's own (a column of the same name replaces it); ids the data
    does not know are ignored and ids the file lacks get missing values — both counted in
    `meta["feature_notes"]`, which also carries each file's coercion notes.
    """
    notes = list(data.meta.get("feature_notes", []))
    item_f, user_f = data.item_features, data.user_features
    if items is not None:
        item_f = _join(item_f, items, data.item_ids, "item", notes)
    if vectors is not None:
        ids, vec = vectors
        frame = pd.DataFrame({"vector": list(vec)}, index=pd.Index(ids, name="id"))
        item_f = _join(item_f, frame, data.item_ids, "item vector", notes)
        item_f["vector"] = [v if isinstance(v, np.ndarray) else None for v in item_f["vector"]]
    if users is not None:
        user_f = _join(user_f, users, data.user_ids, "user", notes)
    return replace(data, item_features=item_f, user_features=user_f,
                   meta={**data.meta, "feature_notes": notes})


def _join(own: pd.DataFrame | None, new: pd.DataFrame, vocab: np.ndarray, what: str, notes: list[str]) -> pd.DataFrame:
    notes += list(new.attrs.get("notes", []))
    index = pd.Index(np.asarray(vocab).astype(str))
    unknown = int((~new.index.isin(index)).sum())
    missing = int((~index.isin(new.index)).sum())
    if unknown:
        notes.append(f"{what} features: {unknown} ids are not in the data and were ignored")
    if missing:
        notes.append(f"{what} features: {missing} of {len(index)} ids in the data have no row (missing values)")
    aligned = new.reindex(index).reset_index(drop=True)
    aligned.attrs = {}
    for col in aligned.columns:  # multi-valued cells of absent ids: empty lists, not NaN
        if aligned[col].map(lambda v: isinstance(v, list)).any():
            aligned[col] = aligned[col].map(lambda v: v if isinstance(v, list) else [])
    if own is None:
        return aligned
    base = own.reset_index(drop=True).drop(columns=[c for c in aligned.columns if c in own.columns])
    return pd.concat([base, aligned], axis=1)

"""User-supplied rating files: `user item rating [timestamp]` as TSV, CSV or whitespace text,
or implicit feedback: `user item` pairs, each read as an interaction with rating 1.

The separator is detected from the first non-blank line (tab, then comma, then semicolon, else
runs of whitespace). A header line is recognised when the first row's rating field is not a
number; in a two-column file, when it names the columns (`user`, `user_id`, `userId`, `uid`;
`item`, `item_id`, `movieId`, …) or when both its fields are words over numeric ids. Blank
lines are skipped. Anything else that cannot be read exactly — a missing field, a
non-numeric or infinite rating, a non-integer timestamp, a duplicate (user, item) pair, an empty
file — raises `DataError` naming the file, the line number and the value: no row is dropped
silently.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from recstack.data.interactions import Interactions
from recstack.errors import DataError

log = logging.getLogger(__name__)

FIELDS = ("user", "item", "rating", "timestamp")
# column names that mark the first line of a two-column (implicit) file as a header
USER_NAMES = frozenset({"user", "users", "userid", "uid", "u", "customer", "customerid", "visitor"})
ITEM_NAMES = frozenset({"item", "items", "itemid", "iid", "i", "movie", "movieid", "product",
                        "productid", "track", "trackid", "artist", "book", "isbn"})
_WIDTH = 5  # one more column than the widest valid row, so an extra field is seen, not merged

Duplicates = Literal["error", "keep-last"]


def read_interactions_file(path: str | Path, *, duplicates: Duplicates = "error",
                           name: str | None = None) -> Interactions:
    """Read one `user item rating [timestamp]` file into `Interactions` (rows in file order).

    A two-column `user item` file is implicit feedback: every row gets rating 1 and
    `meta["implicit"]` is True. Vocabularies follow the order of first appearance. Without a timestamp column every
    timestamp is 0. `duplicates="error"` (default) refuses a repeated (user, item) pair and
    names both lines; `duplicates="keep-last"` keeps only the last row of each repeated pair
    (a later rating overrides an earlier one), logs how many rows it dropped and records the
    count in `meta["duplicates_dropped"]`.
    """
    path = Path(path)
    fast = _read_fast(path)
    if fast is not None:
        user, item, rating, timestamp, lines = fast
        implicit = rating is None
        if implicit:
            rating = np.ones(len(user), np.float32)
    else:  # the careful reader: finds and names the first problem, or reads odd-but-valid files
        frame, lines = _read_rows(path)
        ncols = _check_shape(frame, lines, path)
        implicit = ncols == 2
        user = frame[0].to_numpy()
        item = frame[1].to_numpy()
        rating = (_ratings(frame[2], lines, path) if ncols >= 3
                  else np.ones(len(frame), np.float32))
        timestamp = (_timestamps(frame[3], lines, path) if ncols == 4
                     else np.zeros(len(frame), np.int64))
    ucodes, uvocab = pd.factorize(user)
    icodes, ivocab = pd.factorize(item)
    keep = _duplicates(ucodes, icodes, uvocab, ivocab, lines, path, duplicates)
    dropped = int(len(keep) - keep.sum())
    if dropped:
        log.warning("%s: kept the last of each repeated (user, item) pair; dropped %d rows", path, dropped)
    data = Interactions(
        np.asarray(uvocab, dtype=str), np.asarray(ivocab, dtype=str),
        ucodes[keep].astype(np.int32), icodes[keep].astype(np.int32),
        rating[keep], timestamp[keep], name=name or path.stem,
        meta={"path": str(path), "duplicates_dropped": dropped, "implicit": bool(implicit)},
    )
    return data


def read_train_test(train_path: str | Path, test_path: str | Path, *,
                    duplicates: Duplicates = "error") -> tuple[Interactions, Interactions]:
    """Read a training and a test file into two `Interactions` over one shared vocabulary.

    The vocabulary is the union of ids: the training file's ids first (in its order of first
    appearance), then ids seen only in the test file. Indices therefore agree between parts.
    """
    train = read_interactions_file(train_path, duplicates=duplicates)
    test = read_interactions_file(test_path, duplicates=duplicates)
    return share_vocabularies(train, test)


def share_vocabularies(train: Interactions, test: Interactions) -> tuple[Interactions, Interactions]:
    """Re-index two `Interactions` over one vocabulary: `train`'s ids first, then ids only in `test`."""
    uvocab = _union(train.user_ids, test.user_ids)
    ivocab = _union(train.item_ids, test.item_ids)
    parts = []
    for part in (train, test):
        umap = pd.Index(uvocab).get_indexer(part.user_ids).astype(np.int32)
        imap = pd.Index(ivocab).get_indexer(part.item_ids).astype(np.int32)
        parts.append(Interactions(uvocab, ivocab, umap[part.user], imap[part.item], part.rating,
                                  part.timestamp, name=part.name, meta=dict(part.meta)))
    return parts[0], parts[1]


# ---- reading ----------------------------------------------------------------------------------
def _read_fast(path: Path) -> tuple[pd.Series, pd.Series, np.ndarray | None, np.ndarray, np.ndarray] | None:
    """(user, item, rating (None for a two-column file), timestamp, line numbers) with typed
    columns and no per-row Python work, or None whenever the file is not plainly valid (then
    the careful reader decides)."""
    if not path.is_file():
        return None
    try:
        with open(path, encoding="utf-8-sig") as f:
            head = [f.readline() for _ in range(2)]
    except UnicodeDecodeError:
        return None
    if not head[0].strip():
        return None
    sep = next((c for c in ("\t", ",", ";") if c in head[0]), None)
    first = [v.strip() for v in (head[0].split(sep) if sep else head[0].split())]
    second = [v.strip() for v in (head[1].split(sep) if sep else head[1].split())]
    header = _is_header(first, second)
    if header and len(first) not in (2, 3, 4):
        return None
    row = second if header else first
    ncols = len(row)
    if ncols not in (2, 3, 4):
        return None
    names = list(FIELDS[:ncols])
    dtypes = {"user": str, "item": str, "rating": np.float64, "timestamp": np.int64}
    try:
        frame = pd.read_csv(path, sep=sep or r"\s+", header=None, skiprows=int(header), names=names,
                            dtype={n: dtypes[n] for n in names}, keep_default_na=False,
                            na_values={"rating": [""]}, skip_blank_lines=False,
                            skipinitialspace=True, index_col=False, encoding="utf-8-sig", engine="c")
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return None
    if not len(frame):
        return None
    user, item = frame["user"].str.strip(), frame["item"].str.strip()
    rating = frame["rating"].to_numpy(np.float64) if ncols >= 3 else np.ones(len(frame))
    if (user == "").any() or (item == "").any() or not np.isfinite(rating).all():
        return None
    timestamp = frame["timestamp"].to_numpy(np.int64) if ncols == 4 else np.zeros(len(frame), np.int64)
    lines = np.arange(1, len(frame) + 1) + int(header)
    return user, item, (rating.astype(np.float32) if ncols >= 3 else None), timestamp, lines


def _read_rows(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """Data rows as strings (columns 0..4, "" where absent) and their 1-based line numbers."""
    if not path.exists():
        raise DataError("no such file", path=path)
    if path.is_dir():
        raise DataError("is a folder, expected a ratings file", path=path)
    raw = None
    for encoding in ("utf-8-sig", "latin-1"):
        try:
            raw = _parse(path, encoding)
            break
        except UnicodeDecodeError:
            continue
    assert raw is not None
    raw = raw.apply(lambda col: col.str.strip())
    lines = np.arange(1, len(raw) + 1)
    nonblank = (raw != "").any(axis=1).to_numpy()
    raw, lines = raw[nonblank].reset_index(drop=True), lines[nonblank]
    if not len(raw):
        raise DataError("empty file: expected rows of `user item rating [timestamp]`", path=path)
    first = [str(v) for v in raw.iloc[0]]
    second = [str(v) for v in raw.iloc[1] if v != ""] if len(raw) > 1 else []
    two = first[0] != "" and first[1] != "" and not any(first[2:])  # exactly `user item`
    if _is_header(first if first[2] != "" else first[:2] if two else [], second):
        first = [v for v in first if v != ""]
        if not 2 <= len(first) <= 4:
            raise DataError(f"header {first} should name 2, 3 or 4 columns "
                            f"(user item [rating [timestamp]])", path=path, line=int(lines[0]))
        raw, lines = raw.iloc[1:].reset_index(drop=True), lines[1:]
        if not len(raw):
            raise DataError("empty file: a header line but no rows", path=path)
    return raw, lines


def _parse(path: Path, encoding: str) -> pd.DataFrame:
    with open(path, encoding=encoding) as f:
        head = ""
        for line in f:
            if line.strip():
                head = line
                break
    if not head:
        raise DataError("empty file: expected rows of `user item rating [timestamp]`", path=path)
    sep = next((s for s in ("\t", ",", ";") if s in head), r"\s+")
    try:
        with warnings.catch_warnings():  # a too-wide first row is reported by _check_shape
            warnings.simplefilter("ignore", pd.errors.ParserWarning)
            return pd.read_csv(path, sep=sep, header=None, names=range(_WIDTH), dtype=str,
                               keep_default_na=False, skip_blank_lines=False, encoding=encoding,
                               engine="c", index_col=False)
    except pd.errors.ParserError as exc:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if m:
            raise DataError(f"too many fields ({m.group(3)}); expected user item rating [timestamp]",
                            path=path, line=int(m.group(2))) from None
        raise DataError(f"cannot parse: {exc}", path=path) from None
    except pd.errors.EmptyDataError:
        raise DataError("empty file", path=path) from None


def _check_shape(frame: pd.DataFrame, lines: np.ndarray, path: Path) -> int:
    """Number of columns (2, 3 or 4, from the first data row); every row must have exactly that."""
    present = (frame != "").to_numpy()
    ncols = int(present[0].sum())
    if present[0, 4]:
        raise DataError("too many fields (5 or more); expected user item rating [timestamp]",
                        path=path, line=int(lines[0]))
    if ncols < 2 or not present[0, :ncols].all():
        raise DataError(f"expected user item [rating [timestamp]], found {ncols} field(s): "
                        f"{[v for v in frame.iloc[0] if v != '']}", path=path, line=int(lines[0]))
    missing = ~present[:, :ncols]
    if missing.any():
        row, col = np.argwhere(missing)[0]
        raise DataError(f"missing column '{FIELDS[col]}' (expected {ncols} fields: "
                        f"{' '.join(FIELDS[:ncols])})", path=path, line=int(lines[row]))
    extra = present[:, ncols:]
    if extra.any():
        row = int(np.flatnonzero(extra.any(axis=1))[0])
        raise DataError(f"too many fields: expected {ncols} ({' '.join(FIELDS[:ncols])}) as on "
                        f"the first row, found {int(present[row].sum())}", path=path, line=int(lines[row]))
    return ncols


def _ratings(col: pd.Series, lines: np.ndarray, path: Path) -> np.ndarray:
    values = pd.to_numeric(col, errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"rating {col.iloc[row]!r} is not a finite number", path=path, line=int(lines[row]))
    return values.astype(np.float32)


def _timestamps(col: pd.Series, lines: np.ndarray, path: Path) -> np.ndarray:
    values = pd.to_numeric(col, errors="coerce")
    if values.dtype.kind in "iu":
        return values.to_numpy(np.int64)
    arr = values.to_numpy(np.float64)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(arr) | (arr != np.round(arr)) | (np.abs(arr) >= 2.0**63)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"timestamp {col.iloc[row]!r} is not an integer", path=path, line=int(lines[row]))
    return arr.astype(np.int64)


def _duplicates(ucodes: np.ndarray, icodes: np.ndarray, uvocab: np.ndarray, ivocab: np.ndarray,
                lines: np.ndarray, path: Path, policy: str) -> np.ndarray:
    """Bool mask of rows to keep; raises on the first repeated pair under policy "error"."""
    if policy not in ("error", "keep-last"):
        raise DataError(f"duplicates must be 'error' or 'keep-last', got {policy!r}")
    key = pd.Series(ucodes.astype(np.int64) * max(len(ivocab), 1) + icodes)
    if policy == "keep-last":
        return ~key.duplicated(keep="last").to_numpy()
    repeated = key.duplicated(keep="first").to_numpy()
    if repeated.any():
        row = int(np.flatnonzero(repeated)[0])
        first = int(np.flatnonzero(key.to_numpy() == key.iloc[row])[0])
        raise DataError(f"duplicate (user, item) pair ({uvocab[ucodes[row]]!s}, "
                        f"{ivocab[icodes[row]]!s}), first on line {lines[first]}; "
                        "pass duplicates='keep-last' (--duplicates keep-last) to keep the last row",
                        path=path, line=int(lines[row]))
    return np.ones(len(key), bool)


def _union(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    extra = second[~np.isin(second, first)]
    return np.concatenate([first, extra]).astype(str)


def _is_header(first: list[str], second: list[str]) -> bool:
    """Is the first row (its fields) a header? See the module docstring for the rule."""
    if len(first) > 2:
        return first[2] != "" and not _is_number(first[2])
    if len(first) != 2:
        return False
    names = [re.sub(r"[\s_.-]", "", v.lower()) for v in first]
    if names[0] in USER_NAMES and names[1] in ITEM_NAMES:
        return True
    words = not any(_is_number(v) for v in first)
    return words and len(second) == 2 and all(_is_number(v) for v in second)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True

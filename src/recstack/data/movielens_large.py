"""The larger MovieLens sets: ML-1M, ML-10M, ML-20M, ML-25M, ML-32M from GroupLens' zips.

Formats (Harper & Konstan 2015, "The MovieLens Datasets: History and Context"):
- ML-1M, ML-10M: `::`-separated `.dat` files — `ratings.dat` (UserID::MovieID::Rating::Timestamp),
  `movies.dat` (MovieID::Title (Year)::Genre|Genre), ML-1M also `users.dat`
  (UserID::Gender::Age::Occupation::Zip-code). ML-10M's zip holds the folder `ml-10M100K`.
- ML-20M, ML-25M, ML-32M: CSV with a header — `ratings.csv` (userId,movieId,rating,timestamp),
  `movies.csv` (movieId,title,genres; titles quoted when they hold commas).

Where the files come from (`fetch_large`):
- `path=None`: the cache (`$RECSTACK_DATA` or ~/.cache/recstack), else the official zip,
  downloaded and checked against GroupLens' published MD5 before anything reaches the cache;
- `path=<a .zip file>`: the same check on a zip you downloaded yourself (pass `md5=` to check
  against another digest, e.g. a repackaged zip), then extracted into the cache atomically;
- `path=<a folder>`: files you already extracted, used in place and not checked.
A zip that fails its checksum, cannot be opened or lacks a member leaves nothing in the cache.
"""

from __future__ import annotations

import io
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recstack.data.fetch import download, materialise, verify
from recstack.data.interactions import Interactions
from recstack.data.parquet import encode_ids
from recstack.errors import DataError

BASE_URL = "https://files.grouplens.org/datasets/movielens/"


@dataclass(frozen=True)
class Spec:
    """One GroupLens archive: `<name>.zip` holding `folder/` with `members`."""

    name: str
    folder: str
    md5: str
    members: tuple[str, ...]

    @property
    def url(self) -> str:
        return f"{BASE_URL}{self.name}.zip"

    @property
    def csv(self) -> bool:
        return self.members[0].endswith(".csv")


# MD5s as published by GroupLens beside each zip; ml-32m's (d472be…) is the content of the
# official `ml-32m.zip.md5` as quoted by several independent projects (zip of 238,950,008 bytes).
SPECS: dict[str, Spec] = {
    "ml-1m": Spec("ml-1m", "ml-1m", "c4d9eecfca2ab87c1945afe126590906",
                  ("ratings.dat", "movies.dat", "users.dat")),
    "ml-10m": Spec("ml-10m", "ml-10M100K", "ce571fd55effeba0271552578f2648bd",
                   ("ratings.dat", "movies.dat")),
    "ml-20m": Spec("ml-20m", "ml-20m", "cd245b17a1ae2cc31bb14903e1204af3", ("ratings.csv", "movies.csv")),
    "ml-25m": Spec("ml-25m", "ml-25m", "6b51fb2759a8657d3bfcbfc42b592ada", ("ratings.csv", "movies.csv")),
    "ml-32m": Spec("ml-32m", "ml-32m", "d472be332d4daa821edc399621853b57", ("ratings.csv", "movies.csv")),
}

# ML-1M users.dat occupation codes (its README)
OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)
NO_GENRES = "(no genres listed)"
RATING_COLUMNS = ["user", "item", "rating", "timestamp"]


# ---- fetching -----------------------------------------------------------------------------
def fetch_large(name: str, path: str | Path | None = None, md5: str | None = None) -> Path:
    """Folder holding the verified member files of `name` (see the module docstring)."""
    spec = SPECS[name]
    if path is None:
        def from_official(tmp: Path) -> None:
            z = download(spec.url, tmp / f"{spec.name}.zip", timeout=30)
            verify(z, md5 or spec.md5, "md5")
            extract(spec, z, tmp)
            z.unlink()

        return materialise(name, [("official zip", from_official)])
    p = Path(path).expanduser()
    if p.is_dir():
        for folder in (p, p / spec.folder):
            if all((folder / m).exists() for m in spec.members):
                return folder
        raise DataError(f"no {', '.join(spec.members)} in this folder (nor in {spec.folder}/)", path=p)
    if not p.is_file():
        raise DataError("no such file or folder", path=p)
    verify(p, md5 or spec.md5, "md5")
    return materialise(name, [(f"local zip {p}", lambda tmp: extract(spec, p, tmp))])


def extract(spec: Spec, zip_path: Path, dest: Path) -> None:
    """Copy `spec.members` out of the zip into `dest`; a damaged or incomplete zip is a DataError."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            names = set(zf.namelist())
            for member in spec.members:
                inner = f"{spec.folder}/{member}"
                if inner not in names:
                    raise DataError(f"the zip has no {inner}", path=zip_path)
                with zf.open(inner) as src, open(dest / member, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise DataError(f"damaged zip: {exc}", path=zip_path) from None


# ---- parsing ------------------------------------------------------------------------------
def load_large(name: str, path: str | Path | None = None, md5: str | None = None) -> Interactions:
    """`name` as `Interactions`, ratings in file order, vocabularies sorted by numeric id.

    Item features: `title` (year removed), `year` (Int64, NA when the title has none), `genres`
    (list of str). ML-1M also has user features: `age` (bucket's lower bound), `gender`,
    `occupation` (name), `zip_code`.
    """
    spec = SPECS[name]
    folder = fetch_large(name, path, md5)
    if spec.csv:
        ratings = _read_ratings(folder / "ratings.csv", sep=",", header=True)
        items = _read_csv_movies(folder / "movies.csv")
    else:
        ratings = _read_ratings(folder / "ratings.dat", sep="::", header=False)
        items = _read_dat_movies(folder / "movies.dat")
    users = _read_dat_users(folder / "users.dat") if "users.dat" in spec.members else None
    return _assemble_numeric(ratings, items, users, name)


def _read_ratings(path: Path, *, sep: str, header: bool) -> pd.DataFrame:
    """user, item (int64), rating (float64), timestamp (int64) with the C parser; a bad row is
    reported with its file and line number."""
    dtypes = {"user": np.int64, "item": np.int64, "rating": np.float64, "timestamp": np.int64}
    source: Path | io.BytesIO = path
    c_sep = sep
    if sep == "::":  # the C parser takes one-character separators only
        source = io.BytesIO(path.read_bytes().replace(b"::", b"\t"))
        c_sep = "\t"
    try:
        frame = pd.read_csv(source, sep=c_sep, header=0 if header else None, names=RATING_COLUMNS,
                            dtype=dtypes, engine="c")
    except (ValueError, pd.errors.ParserError) as exc:
        raise _locate(path, sep, header, exc) from None
    bad = ~np.isfinite(frame["rating"].to_numpy())
    if bad.any():
        raise _locate(path, sep, header, ValueError("a rating is not a finite number"))
    return frame


def _locate(path: Path, sep: str, header: bool, exc: Exception) -> DataError:
    """The first line that is not `user item rating timestamp` (integers, a finite rating), as
    a DataError naming the file and line. Runs only once a fast read has failed."""
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            text = raw.decode("latin-1").strip()
            if (n == 1 and header) or not text:
                continue
            fields = text.split(sep)
            if len(fields) != 4:
                return DataError(f"{len(fields)} field(s), expected 4 (user item rating timestamp): "
                                 f"{fields}", path=path, line=n)
            for name, value in zip(RATING_COLUMNS, fields):
                value = value.strip()
                if name == "rating":
                    if not _finite(value):
                        return DataError(f"rating {value!r} is not a finite number", path=path, line=n)
                elif not value.lstrip("-").isdigit():
                    return DataError(f"{name} {value!r} is not an integer", path=path, line=n)
    return DataError(f"cannot parse: {exc}", path=path)


def _finite(text: str) -> bool:
    try:
        return np.isfinite(float(text))
    except ValueError:
        return False


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _read_dat_movies(path: Path) -> pd.DataFrame:
    rows, lines = [], []
    for n, line in enumerate(_decode(path).splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("::")
        if len(parts) != 3:
            raise DataError(f"expected MovieID::Title::Genres, found {line!r}", path=path, line=n)
        rows.append(parts)
        lines.append(n)
    frame = pd.DataFrame(rows, columns=["item", "title", "genres"], index=lines)
    return _movie_features(frame, path)


def _read_csv_movies(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (ValueError, pd.errors.ParserError) as exc:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if m:
            raise DataError(f"{m.group(3)} fields, expected 3 (movieId,title,genres)", path=path,
                            line=int(m.group(2))) from None
        raise DataError(f"cannot parse: {exc}", path=path) from None
    if list(frame.columns) != ["movieId", "title", "genres"]:
        raise DataError(f"expected the header movieId,title,genres, found {list(frame.columns)}",
                        path=path, line=1)
    # line numbers: row i is on line i + 2 unless a quoted title spans lines (then approximate)
    frame.index = np.arange(2, len(frame) + 2)
    return _movie_features(frame.set_axis(["item", "title", "genres"], axis=1), path)


def _movie_features(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Title, year and genres from a movies table whose index holds each row's line number."""
    parts = frame["title"].str.strip().str.extract(r"^(.*?)\s*\((\d{4})\)$")
    title = parts[0].fillna(frame["title"].str.strip())
    genres = frame["genres"].map(lambda g: [] if g in ("", NO_GENRES) else g.split("|"))
    bad = ~frame["item"].str.fullmatch(r"\d+").to_numpy(bool)
    if bad.any():
        raise DataError(f"movie id {frame['item'][bad].iloc[0]!r} is not an integer", path=path,
                        line=int(frame.index[bad][0]))
    return pd.DataFrame({"item": frame["item"].astype(np.int64), "title": title,
                         "year": pd.to_numeric(parts[1]).astype("Int64"),
                         "genres": genres}).reset_index(drop=True)


def _read_dat_users(path: Path) -> pd.DataFrame:
    rows = []
    for n, line in enumerate(_decode(path).splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("::")
        if len(parts) != 5 or not (parts[0].isdigit() and parts[2].isdigit() and parts[3].isdigit()):
            raise DataError(f"expected UserID::Gender::Age::Occupation::Zip-code, found {line!r}",
                            path=path, line=n)
        occ = int(parts[3])
        rows.append((int(parts[0]), int(parts[2]), parts[1],
                     OCCUPATIONS[occ] if occ < len(OCCUPATIONS) else str(occ), parts[4]))
    frame = pd.DataFrame(rows, columns=["user", "age", "gender", "occupation", "zip_code"])
    frame["age"] = frame["age"].astype("Int64")
    return frame


def _assemble_numeric(ratings: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame | None,
                      name: str) -> Interactions:
    """Interactions over numeric ids via `parquet.encode_ids` (the Parquet reader's vectorised path)."""
    ucodes, uvocab = encode_ids(ratings["user"].to_numpy(), None if users is None else users["user"].to_numpy())
    icodes, ivocab = encode_ids(ratings["item"].to_numpy(), items["item"].to_numpy())
    ivals, uvals = ivocab.astype(np.int64), uvocab.astype(np.int64)
    item_features = items.drop_duplicates("item").set_index("item").reindex(ivals).reset_index(drop=True)
    item_features["genres"] = item_features["genres"].map(lambda g: g if isinstance(g, list) else [])
    user_features = None
    if users is not None:
        user_features = users.drop_duplicates("user").set_index("user").reindex(uvals).reset_index(drop=True)
    return Interactions(
        uvocab, ivocab, ucodes, icodes,
        ratings["rating"].to_numpy(np.float32), ratings["timestamp"].to_numpy(np.int64),
        item_features=item_features, user_features=user_features, name=name,
    )


def _registry() -> dict[str, tuple]:
    """name -> (fetch(path, md5), load(path, md5)) entries for `movielens.DATASETS`."""
    def entry(name: str) -> tuple:
        return (lambda path=None, md5=None: fetch_large(name, path, md5),
                lambda path=None, md5=None: load_large(name, path, md5))

    return {name: entry(name) for name in SPECS}


LARGE_DATASETS = _registry()

"""Item and user side information as sparse matrices aligned with an `Interactions`' vocabularies.

Row i of `item_feature_matrix(data)` describes item index i, row u of `user_feature_matrix(data)`
user index u, so a model multiplies them straight into its own per-index arrays. Each column
has a name `group=value` (a category: `genre=Comedy`, `occupation=student`, `kg:film.film.directed_by=m.0bxtg`)
or `group:j` (dimension j of a dense block: `text:3`, `vector:17`), and the group it belongs to.

Item groups: `genres` (multi-hot), `year` (release year bucketed by `year_bucket`), `title`
(title words seen in ≥ `title_min_df` titles), `kg` (knowledge-graph facts, ML-100K only),
`text` (title embeddings reduced to `text_dims` principal components; the `[text]` extra),
`vectors` (your own `--item-vectors`), `columns` (every other column of your feature file).
User groups: `age` (MovieLens' buckets), `gender`, `occupation`, `region` (ZIP → state and
Census region), `columns` (every other column). Numeric own columns become `numeric_bins`
quantile bins (`col=q2/5`); a missing value gives no feature.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recstack.data.interactions import Interactions
from recstack.errors import DataError
from recstack.features.zip_regions import UNKNOWN, zip_region

ITEM_GROUPS = ("genres", "year", "title", "kg", "text", "vectors", "columns")
USER_GROUPS = ("age", "gender", "occupation", "region", "columns")
DEFAULT_ITEM_GROUPS = ("genres", "year", "vectors", "columns")
DEFAULT_USER_GROUPS = USER_GROUPS
ITEM_BUILTIN_COLUMNS = ("title", "year", "genres", "vector")
USER_BUILTIN_COLUMNS = ("age", "gender", "occupation", "zip_code")
AGE_BUCKETS = ((0, 17, "<18"), (18, 24, "18-24"), (25, 34, "25-34"), (35, 44, "35-44"),
               (45, 49, "45-49"), (50, 55, "50-55"), (56, 200, "56+"))


@dataclass(frozen=True)
class FeatureMatrix:
    """(n_rows, n_features) float32 CSR `matrix`, its column `names` and each column's `groups`."""

    matrix: sp.csr_matrix
    names: np.ndarray
    groups: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape

    def select(self, groups: Sequence[str]) -> FeatureMatrix:
        """Only the columns of the given groups."""
        keep = np.flatnonzero(np.isin(self.groups, list(groups)))
        return FeatureMatrix(self.matrix[:, keep].tocsr(), self.names[keep], self.groups[keep])

    def column(self, name: str) -> int:
        """Index of the column called `name`; `DataError` when absent."""
        hits = np.flatnonzero(self.names == name)
        if not len(hits):
            raise DataError(f"no feature named {name!r}")
        return int(hits[0])


def _block(rows: list[list[str]], group: str, n: int) -> tuple[sp.csr_matrix, list[str], list[str]]:
    """Multi-hot block from per-row lists of values; names `group=value`, sorted."""
    vocab = sorted({v for r in rows for v in r})
    col = {v: j for j, v in enumerate(vocab)}
    r_idx = [i for i, r in enumerate(rows) for v in dict.fromkeys(r)]
    c_idx = [col[v] for r in rows for v in dict.fromkeys(r)]
    m = sp.csr_matrix((np.ones(len(r_idx), np.float32), (r_idx, c_idx)), shape=(n, len(vocab)))
    return m, [f"{group}={v}" for v in vocab], [group] * len(vocab)


def _dense_block(x: np.ndarray, group: str) -> tuple[sp.csr_matrix, list[str], list[str]]:
    x = np.nan_to_num(np.asarray(x, np.float32))
    return sp.csr_matrix(x), [f"{group}:{j}" for j in range(x.shape[1])], [group] * x.shape[1]


def _as_list(v: object) -> list[str]:
    if isinstance(v, (list, tuple, np.ndarray)):
        return [str(x) for x in v if x is not None and str(x) != ""]
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA or str(v) == "":
        return []
    return [str(v)]


def _column_blocks(frame: pd.DataFrame, builtin: Sequence[str], n: int, numeric_bins: int):
    """Blocks for every non-built-in column: lists multi-hot, numbers quantile bins, text categories."""
    out = []
    for name in frame.columns:
        if name in builtin:
            continue
        col = frame[name]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            values = pd.to_numeric(col, errors="coerce").astype("float64")
            ok = values.notna().to_numpy()
            rows: list[list[str]] = [[] for _ in range(n)]
            if ok.any():
                bins = min(numeric_bins, int(values[ok].nunique()))
                codes = pd.qcut(values[ok].rank(method="first"), bins, labels=False) if bins > 1 else \
                    np.zeros(int(ok.sum()), int)
                for i, c in zip(np.flatnonzero(ok), np.asarray(codes)):
                    rows[i] = [f"q{int(c) + 1}/{bins}"]
            out.append(_block(rows, str(name), n))
        else:
            out.append(_block([_as_list(v) for v in col], str(name), n))
    return out


def _stack(blocks: list, n: int) -> FeatureMatrix:
    if not blocks:
        return FeatureMatrix(sp.csr_matrix((n, 0), dtype=np.float32), np.array([], str), np.array([], str))
    m = sp.hstack([b[0] for b in blocks], format="csr", dtype=np.float32)
    names = np.array([x for b in blocks for x in b[1]], dtype=str)
    groups = np.array([x for b in blocks for x in b[2]], dtype=str)
    return FeatureMatrix(m, names, groups)


def _frame(data: Interactions, which: str) -> pd.DataFrame:
    f = data.item_features if which == "item" else data.user_features
    n = data.n_items if which == "item" else data.n_users
    if f is None:
        return pd.DataFrame(index=range(n))
    if len(f) != n:
        raise DataError(f"{which} features have {len(f)} rows for {n} {which}s")
    return f.reset_index(drop=True)


def item_feature_matrix(data: Interactions, groups: Sequence[str] | None = None, *, year_bucket: int = 5,
                        title_min_df: int = 2, kg_min_items: int = 2, text_dims: int = 32,
                        numeric_bins: int = 5) -> FeatureMatrix:
    """(n_items, n_features) item side information for the chosen groups (module docstring).

    `groups=None` takes every default group the data has (genres, year, vectors, columns);
    `kg` and `text` must be asked for. A group asked for that the data lacks is a `DataError`.
    """
    f = _frame(data, "item")
    n = data.n_items
    wanted = [g for g in DEFAULT_ITEM_GROUPS if _has_item_group(f, g)] if groups is None else list(groups)
    blocks = []
    for g in wanted:
        if g not in ITEM_GROUPS:
            raise DataError(f"unknown item feature group {g!r}; known: {', '.join(ITEM_GROUPS)}")
        if g in ("genres", "year", "title", "vectors") and not _has_item_group(f, g):
            raise DataError(f"item feature group {g!r} needs a {_COLUMN_OF[g]!r} item column; "
                            f"data set {data.name!r} has {list(f.columns) or 'no item features'}")
        if g == "genres":
            blocks.append(_block([_as_list(v) for v in f["genres"]], "genre", n))
        elif g == "year":
            years = pd.to_numeric(f["year"], errors="coerce")
            rows = [[] if pd.isna(y) else [_bucket(int(y), year_bucket)] for y in years]
            blocks.append(_block(rows, "year", n))
        elif g == "title":
            from recstack.models.content import tokenize

            words = [tokenize(t) for t in f["title"].fillna("")]
            df = Counter(w for ws in words for w in set(ws))
            blocks.append(_block([[w for w in ws if df[w] >= title_min_df] for ws in words], "title", n))
        elif g == "kg":
            blocks.append(_kg_block(data, kg_min_items))
        elif g == "text":
            from recstack.features.text import embed_texts, reduce_dims

            if "title" not in f:
                raise DataError(f"item feature group 'text' needs a 'title' item column; data set "
                                f"{data.name!r} has none")
            emb = embed_texts(f["title"].fillna("").astype(str).tolist())
            blocks.append(_dense_block(reduce_dims(emb, text_dims), "text"))
        elif g == "vectors":
            blocks.append(_dense_block(np.vstack([_vector(v, f) for v in f["vector"]]), "vector"))
        elif g == "columns":
            blocks += _column_blocks(f, ITEM_BUILTIN_COLUMNS, n, numeric_bins)
    return _stack(blocks, n)


_COLUMN_OF = {"genres": "genres", "year": "year", "title": "title", "vectors": "vector"}


def _has_item_group(f: pd.DataFrame, g: str) -> bool:
    if g == "columns":
        return any(c not in ITEM_BUILTIN_COLUMNS for c in f.columns)
    return _COLUMN_OF.get(g, g) in f.columns


def _vector(v: object, f: pd.DataFrame) -> np.ndarray:
    dims = next((len(x) for x in f["vector"] if isinstance(x, (list, tuple, np.ndarray))), 0)
    if isinstance(v, (list, tuple, np.ndarray)):
        return np.asarray(v, np.float32)
    return np.zeros(dims, np.float32)  # an item without a vector: all zeros (no contribution)


def _bucket(year: int, width: int) -> str:
    lo = year // width * width
    return str(lo) if width == 1 else f"{lo}-{lo + width - 1}"


def _kg_block(data: Interactions, min_items: int):
    from recstack.data.movielens import fetch_ml100k_kg
    from recstack.features.kg import kg_item_matrix, read_kg

    if data.name != "ml-100k":
        raise DataError(f"item feature group 'kg' exists for ml-100k only (data set {data.name!r})")
    links, triples = read_kg(fetch_ml100k_kg())
    m, names = kg_item_matrix(data.item_ids, links, triples, min_items)
    return m, names, ["kg"] * len(names)


def age_bucket(age: object) -> str:
    """MovieLens' age bucket of an age in years ("25-34"); "unknown" when missing."""
    try:
        a = int(age)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return UNKNOWN
    return next((label for lo, hi, label in AGE_BUCKETS if lo <= a <= hi), UNKNOWN)


def user_feature_matrix(data: Interactions, groups: Sequence[str] | None = None, *,
                        numeric_bins: int = 5) -> FeatureMatrix:
    """(n_users, n_features) user side information for the chosen groups (module docstring).

    `groups=None` takes every group the data has columns for. `region` gives two features per
    user, `state=XX` and `region=Name` (both "unknown" for non-US or malformed codes).
    """
    f = _frame(data, "user")
    n = data.n_users
    have = {"age": "age", "gender": "gender", "occupation": "occupation", "region": "zip_code"}
    if groups is None:
        wanted = [g for g in USER_GROUPS if (g == "columns" and any(c not in USER_BUILTIN_COLUMNS
                                                                     for c in f.columns)) or have.get(g) in f]
    else:
        wanted = list(groups)
    blocks = []
    for g in wanted:
        if g not in USER_GROUPS:
            raise DataError(f"unknown user feature group {g!r}; known: {', '.join(USER_GROUPS)}")
        if g in have and have[g] not in f:
            raise DataError(f"user feature group {g!r} needs a {have[g]!r} user column; data set "
                            f"{data.name!r} has {list(f.columns) or 'no user features'}")
        if g == "age":
            blocks.append(_block([[age_bucket(a)] for a in f["age"]], "age", n))
        elif g in ("gender", "occupation"):
            blocks.append(_block([_as_list(v) or [UNKNOWN] for v in f[g]], g, n))
        elif g == "region":
            places = [zip_region(z) for z in f["zip_code"]]
            blocks.append(_block([[s] for s, _ in places], "state", n))
            blocks.append(_block([[r] for _, r in places], "region", n))
        elif g == "columns":
            blocks += _column_blocks(f, USER_BUILTIN_COLUMNS, n, numeric_bins)
    return _stack(blocks, n)

"""ML-100K's knowledge graph as item features: a sparse item × (relation, entity) matrix.

The verified `recbole==1.2.1` wheel ships `ml-100k.link` (item id → Freebase entity) and
`ml-100k.kg` (head, relation, tail triples). Each linked item gets one binary feature per
triple whose head is its entity: `kg:<relation>=<tail>` (e.g. `kg:film.film.directed_by=m.0bxtg`).
The graph states most facts twice (`film.film.directed_by` and its inverse `film.director.film`);
reading the film-as-head side keeps each fact once. Features shared by fewer than `min_items`
items carry no information between items and are dropped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recstack.errors import DataError


def read_kg(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(links with columns item, entity; triples with head, relation, tail) from `folder`."""
    out = []
    for fname, names in (("ml-100k.link", ["item", "entity"]), ("ml-100k.kg", ["head", "relation", "tail"])):
        path = folder / fname
        try:
            frame = pd.read_csv(path, sep="\t", header=0, names=names, dtype=str, keep_default_na=False,
                                quoting=3, encoding="utf-8")
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read the knowledge graph: {exc}", path=path) from None
        bad = (frame == "").any(axis=1).to_numpy()
        if bad.any():
            raise DataError(f"missing field in {frame.iloc[int(np.flatnonzero(bad)[0])].tolist()}",
                            path=path, line=int(np.flatnonzero(bad)[0]) + 2)
        out.append(frame)
    return out[0], out[1]


def kg_item_matrix(item_ids: np.ndarray, links: pd.DataFrame, triples: pd.DataFrame,
                   min_items: int = 2) -> tuple[sp.csr_matrix, list[str]]:
    """(n_items, n_features) binary CSR over `item_ids` (external ids) and the feature names.

    An item without a link, or whose entity heads no triple, has an empty row.
    """
    ent_of_item = dict(zip(links["item"], links["entity"]))
    row_of_entity: dict[str, list[int]] = {}
    for i, item in enumerate(np.asarray(item_ids).astype(str).tolist()):
        e = ent_of_item.get(item)
        if e is not None:
            row_of_entity.setdefault(e, []).append(i)
    heads = triples[triples["head"].isin(row_of_entity)]
    feats = ("kg:" + heads["relation"] + "=" + heads["tail"]).to_numpy()
    rows, cols_names = [], []
    for head, feat in zip(heads["head"].tolist(), feats.tolist()):
        for r in row_of_entity[head]:
            rows.append(r)
            cols_names.append(feat)
    if not rows:
        return sp.csr_matrix((len(item_ids), 0), dtype=np.float32), []
    codes, names = pd.factorize(pd.Series(cols_names), sort=True)
    m = sp.csr_matrix((np.ones(len(rows), np.float32), (np.asarray(rows), codes)),
                      shape=(len(item_ids), len(names)))
    m.data[:] = 1.0  # a fact stated twice is still one feature
    m.sum_duplicates()
    m.data[:] = 1.0
    keep = np.flatnonzero(np.diff(m.tocsc().indptr) >= min_items)
    return m[:, keep].tocsr(), [str(names[j]) for j in keep]

"""benchmarks/own_files.py writes ML-100K's random 80/20 split and its features as custom files;
read back the way `evaluate --protocol custom --item-features --user-features` reads them, they
give `fm` the same design rows as the built-in features (the "same information" the target asks)."""

from __future__ import annotations

import pandas as pd
from benchmarks.own_files import load_train, write_files

from recstack.models.fm_design import build_blocks
from recstack.split import random_split

GROUPS = ("age", "gender", "occupation", "zip", "genres", "year")


def _rows(block, ids) -> dict[str, set[str]]:
    """External id → the names of its row's side features (the id one-hot itself left out)."""
    X = block.X.tocsr()
    return {str(e): {n for n in block.names[X.indices[X.indptr[r]:X.indptr[r + 1]]]
                     if not n.startswith(("user:", "item:"))} for r, e in enumerate(ids)}


def test_files_hold_the_built_in_features(ml100k, tmp_path):
    paths = write_files(ml100k, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"train.csv", "test.csv", "items.csv", "users.csv"}
    from_files = load_train(paths)
    built_in, test = random_split(ml100k, 0.8, 0)
    assert len(from_files) == len(built_in) and len(pd.read_csv(paths["test"])) == len(test)
    fu, fi = build_blocks(from_files, GROUPS)
    bu, bi = build_blocks(built_in, GROUPS)
    files_users, built_users = _rows(fu, from_files.user_ids), _rows(bu, built_in.user_ids)
    files_items, built_items = _rows(fi, from_files.item_ids), _rows(bi, built_in.item_ids)
    assert files_users == {u: built_users[u] for u in files_users}
    assert files_items == {i: built_items[i] for i in files_items}
    assert files_users["1"] == {"age:18-24", "gender:M", "occupation:technician", "zip:8"}
    assert {"genre:Animation", "genre:Children's", "genre:Comedy", "year:1995-1999"} == files_items["1"]


def test_sideinfo_summary_judges_the_targets():
    from benchmarks.sideinfo import markdown, summarise_fm_folds

    folds = [{"name": f"u{k}", "metrics": {"rmse": r, "mae": 0.69}, "fit_seconds": 50.0 + k, "fit_cpu_seconds": 30.0}
             for k, r in zip(range(1, 6), (0.8803, 0.8723, 0.8723, 0.8798, 0.8793))]
    rec = {"folds": folds, "metrics": {"rmse": 0.8768, "mae": 0.69}}
    got = summarise_fm_folds(rec, "configs/fm.ml100k-folds.json")
    assert got["u1_rmse"] == 0.8803 and got["mean_rmse"] == 0.8768 and not got["met_rmse"]
    assert got["max_fit_seconds"] == 55.0 and got["max_fit_cpu_seconds"] == 30.0
    table = markdown({"fm-folds": got})
    assert "u1 RMSE 0.8803, mean 0.8768" in table and "| ≤ 120 s | yes |" in table
    del folds[0]["fit_cpu_seconds"]
    assert "CPU not recorded" in markdown({"fm-folds": summarise_fm_folds(rec, "c")})

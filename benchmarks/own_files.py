"""`python -m benchmarks.own_files [--tune GRID] [--out FILE]`: side information from your own files.

ML-100K's random 80/20 split (the `random-80-20` protocol's rows, seed 0) is written as `custom`
files into a temporary folder — `train.csv` and `test.csv` (user, item, rating, timestamp),
`items.csv` (item, year, genres with `|` between genres) and `users.csv` (user, age, gender,
occupation, zip) — the same information as the built-in features, nothing more. Then `fm`
(`configs/fm.random-80-20.json`) and `biased-mf` (`configs/biased-mf.random-80-20.json`) are
evaluated side by side through the command line's own path:

    recstack evaluate MODEL --protocol custom --train train.csv --test test.csv --task rating \\
        --item-features items.csv --user-features users.csv --config configs/MODEL.random-80-20.json

With `--tune '[{...}, ...]'`, every candidate fm config is first fitted on a validation carve of
the custom training file (`validation_split(train, 0.1, seed 0)`, features from the files) and
the one with the lowest validation RMSE is written to `configs/fm.random-80-20.json` with its
`chosen` record; the test file is not read while choosing. The MovieLens files stay in the
temporary folder (never in the repository). Output: one JSON record (default
benchmarks/results/own_files.json).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from recstack.data.interactions import Interactions  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FM_CONFIG = ROOT / "configs" / "fm.random-80-20.json"
MF_CONFIG = ROOT / "configs" / "biased-mf.random-80-20.json"
TARGET_RMSE, TARGET_MARGIN = 0.890, 0.01


def write_files(data: Interactions, folder: Path, seed: int = 0) -> dict[str, Path]:
    """Write the random-80-20 split of `data` and its item/user features as plain files."""
    from recstack.split import random_split

    folder.mkdir(parents=True, exist_ok=True)
    train, test = random_split(data, 0.8, seed)
    paths = {"train": folder / "train.csv", "test": folder / "test.csv",
             "items": folder / "items.csv", "users": folder / "users.csv"}
    for part, path in ((train, paths["train"]), (test, paths["test"])):
        pd.DataFrame({"user": part.user_ids[part.user], "item": part.item_ids[part.item],
                      "rating": part.rating, "timestamp": part.timestamp}).to_csv(path, index=False)
    items = data.item_features
    years = items["year"].astype("Int64").astype(str).replace("<NA>", "")
    genres = ["|".join(g) if isinstance(g, (list, tuple, np.ndarray)) else "" for g in items["genres"]]
    pd.DataFrame({"item": data.item_ids, "year": years.to_numpy(), "genres": genres}).to_csv(
        paths["items"], index=False)
    users = data.user_features
    pd.DataFrame({"user": data.user_ids, "age": users["age"].astype("Int64").astype(str).to_numpy(),
                  "gender": users["gender"].to_numpy(), "occupation": users["occupation"].to_numpy(),
                  "zip": users["zip_code"].to_numpy()}).to_csv(paths["users"], index=False)
    return paths


def load_train(paths: dict[str, Path]) -> Interactions:
    """The custom training file with the two feature files attached, as `evaluate` reads them."""
    from recstack.data.files import read_interactions_file
    from recstack.features import read_feature_file, with_features

    train = read_interactions_file(paths["train"])
    return with_features(train, read_feature_file(paths["items"], "item"), read_feature_file(paths["users"], "user"))


def tune(paths: dict[str, Path], grid: list[dict[str, Any]], out: Path) -> dict[str, Any]:
    """Fit each candidate on the carve of the custom training file; write the best to `out`."""
    from recstack.evaluate import rating_metrics
    from recstack.models.base import make_model
    from recstack.split import validation_split

    fit_part, valid = validation_split(load_train(paths), 0.1, 0)
    trials = []
    for params in grid:
        t0 = time.perf_counter()
        model = make_model("fm", params).fit(fit_part, valid if params.get("learner", "mcmc") == "mcmc" else None)
        rmse = float(rating_metrics(model, fit_part, valid)[0]["rmse"])
        trials.append({"config": params, "validation_rmse": round(rmse, 5)})
        print(f"  fm {params}: validation rmse {rmse:.4f} ({time.perf_counter() - t0:.0f} s)",
              file=sys.stderr, flush=True)
    best = min(trials, key=lambda t: t["validation_rmse"])
    config = make_model("fm", best["config"]).config.to_dict()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    config["chosen"] = {
        "protocol": "random-80-20",
        "carve": "validation_split(fold train, 0.1, seed 0)",
        "method": "grid over chosen.candidates, fitted on the carve of the custom training file with "
                  "the item/user feature files (benchmarks/own_files.py --tune)",
        "trials": len(trials), "seed": 0, "metric": "validation rmse", "value": best["validation_rmse"],
        "commit": commit, "command": "python -m benchmarks.own_files --tune '<grid>'", "candidates": trials,
    }
    out.write_text(json.dumps(config, indent=2) + "\n")
    return config


def evaluate(model: str, config: Path, paths: dict[str, Path]) -> dict[str, Any]:
    """The `recstack evaluate … --protocol custom` record of `model` with the feature files."""
    from recstack.cli import main as cli

    with tempfile.TemporaryDirectory() as tmp:
        record_path = Path(tmp) / "record.json"
        args = ["evaluate", model, "--protocol", "custom", "--train", str(paths["train"]),
                "--test", str(paths["test"]), "--task", "rating", "--item-features", str(paths["items"]),
                "--user-features", str(paths["users"]), "--config", str(config), "--json",
                "--out", str(record_path)]
        with contextlib.redirect_stdout(io.StringIO()):
            rc = cli(args)
        if rc != 0:
            raise SystemExit(f"recstack {' '.join(args)} exited {rc}")
        return json.loads(record_path.read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tune", metavar="GRID", help="JSON list of fm candidate configs; rewrites " + str(FM_CONFIG))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "own_files.json")
    ap.add_argument("--keep", type=Path, help="write the files here instead of a temporary folder")
    args = ap.parse_args(argv)
    from recstack.data.movielens import load_dataset

    with tempfile.TemporaryDirectory() as tmp:
        paths = write_files(load_dataset("ml-100k"), args.keep or Path(tmp))
        if args.tune:
            tune(paths, json.loads(args.tune), FM_CONFIG)
        rows = {}
        for model, config in (("fm", FM_CONFIG), ("biased-mf", MF_CONFIG)):
            rec = evaluate(model, config, paths)
            rows[model] = {"rmse": round(rec["metrics"]["rmse"], 5), "mae": round(rec["metrics"]["mae"], 5),
                           "fit_seconds": rec["fit_seconds"], "fit_cpu_seconds": rec.get("fit_cpu_seconds"),
                           "config": str(config.relative_to(ROOT)), "record": rec}
            print(f"{model}: rmse {rows[model]['rmse']:.4f} (fit {rec['fit_seconds']:.1f} s)", file=sys.stderr)
    gap = rows["biased-mf"]["rmse"] - rows["fm"]["rmse"]
    result = {
        "what": "ML-100K random 80/20 (seed 0) given as custom files with --item-features (year, genres) "
                "and --user-features (age, gender, occupation, zip)",
        "command": "python -m benchmarks.own_files",
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "fm_rmse": rows["fm"]["rmse"], "biased_mf_rmse": rows["biased-mf"]["rmse"], "gap": round(gap, 5),
        "target": f"fm rmse ≤ {TARGET_RMSE} and ≥ {TARGET_MARGIN} below biased-mf",
        "met": bool(rows["fm"]["rmse"] <= TARGET_RMSE and gap >= TARGET_MARGIN),
        "models": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"fm {rows['fm']['rmse']:.4f} vs biased-mf {rows['biased-mf']['rmse']:.4f} (gap {gap:.4f}); "
          f"target {'met' if result['met'] else 'NOT met'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Per-fold configs for `fm` (and `timesvdpp`) on ml100k-folds, chosen on carves of each fold's
training part only — never on a test row, nor on which test pairs exist.

    python -m benchmarks.tune_fm fm '[{"factors": 10}, {"factors": 20}]' --out configs/fm.ml100k-folds.json

For each fold u1..u5: carve = validation_split(fold train, 0.1, seed 0); every candidate config is
fitted on the carve's training part with the carve's validation part as `valid`, and the one with
the lowest validation RMSE (for MCMC: of the averaged prediction after all samples) is kept.
Runs add up: every candidate tried for a fold stays listed under chosen.candidates.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from recstack.data.movielens import load_dataset
from recstack.evaluate import rating_metrics
from recstack.models.base import make_model
from recstack.split import ml100k_folds, validation_split


def validation_rmse(model_name: str, params: dict[str, Any], train: Any, valid: Any) -> float:
    """RMSE on `valid` of `model_name` fitted on `train` (valid passed for MCMC's running average)."""
    model = make_model(model_name, params)
    if model_name == "fm" and params.get("learner", "mcmc") == "mcmc":
        model.fit(train, valid)
        curve = model.valid_rmse_history_
        marks = ", ".join(f"{n}: {curve[n - 1]:.4f}" for n in (50, 100, 200, 300, 400, 500) if n <= len(curve))
        print(f"    running validation rmse by samples kept: {marks}", file=sys.stderr, flush=True)
        return float(curve[-1])
    model.fit(train)
    return float(rating_metrics(model, train, valid)[0]["rmse"])


def write_config(out: dict[str, Any], trials: dict[str, list], model: str, path: Path) -> None:
    """Write the per-fold choices and the `chosen` record (with every candidate tried) to `path`."""
    values = [min(t["validation_rmse"] for t in trials[f]) for f in out["folds"]]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    out["chosen"] = {
        "protocol": "ml100k-folds",
        "carve": "validation_split(fold train, 0.1, seed 0), per fold",
        "method": "grid over chosen.candidates, each fitted on the carve (benchmarks/tune_fm.py)",
        "trials": sum(len(t) for t in trials.values()),
        "seed": 0,
        "metric": "validation rmse",
        "value": round(float(np.mean(values)), 5),
        "commit": commit,
        "command": f"python -m benchmarks.tune_fm {model} '<grid>' --out {path}",
        "candidates": trials,
    }
    path.write_text(json.dumps(out, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("grid", help="JSON list of candidate configs")
    p.add_argument("--folds", default="u1,u2,u3,u4,u5")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    grid = json.loads(args.grid)
    data = load_dataset("ml-100k")
    out = json.loads(args.out.read_text()) if args.out.exists() else {"folds": {}}
    trials: dict[str, list] = out.get("chosen", {}).get("candidates", {})
    for name, train, _ in ml100k_folds(data):
        if name not in args.folds.split(","):
            continue
        fit_part, valid = validation_split(train, 0.1, 0)
        scored = []
        for params in grid:
            t0 = time.perf_counter()
            rmse = validation_rmse(args.model, params, fit_part, valid)
            scored.append((rmse, params))
            print(f"{name} {params} validation rmse {rmse:.4f} ({time.perf_counter() - t0:.0f}s)",
                  file=sys.stderr, flush=True)
        best = min(scored, key=lambda s: s[0])
        previous = trials.get(name, [])
        trials[name] = previous + [{"config": p, "validation_rmse": round(r, 5)} for r, p in scored]
        winner = min(trials[name], key=lambda t: t["validation_rmse"])
        out["folds"][name] = make_model(args.model, winner["config"]).config.to_dict()
        print(f"{name}: chose {winner['config']} ({best[0]:.4f} this round)", file=sys.stderr, flush=True)
        write_config(out, trials, args.model, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

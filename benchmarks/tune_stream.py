"""`python -m benchmarks.tune_stream MODEL [--write]`: choose a model's `stream` config on the
stream protocol's own tuning carve, never on its test days.

The carve (`tune.carve_rule("stream")` = `stream_split(fold train, 0.5)`): the stream protocol
fits on the first 50% of ML-100K by time and replays the rest; its tuning replays the same
protocol inside that first half only — fit on its first half (the first 25% of the data), then
recommend → update day by day over its second half. A small grid per model, scored by HR@10
over the carve's user-days under the update mode the choice is for:

- `item-knn`: cosine similarity in ranking mode (where `partial_fit` is exact) × k × binary,
  scored under `incremental` (for an exact update the same as a daily refit, at a fraction of
  its time);
- `biased-mf`: stage 1 picks the fit (factors, learning rate, fixed epoch count, reg) under
  `retrain` every `--retrain-every` days (default daily);
  stage 2 picks the `partial_fit` knobs (SGD passes, replay size, learning rate) under
  `incremental` with the stage-1 fit.

Prints one line per trial; `--write` writes configs/MODEL.stream.json with its `chosen` record.
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
METRIC = "hr@10"


def carve(data: Any) -> tuple[Any, str]:
    """The stream protocol's training half (its only fold's train) and the carve rule."""
    from recstack.evaluate import get_protocol
    from recstack.tune import carve_rule

    fold = get_protocol("stream").make_folds(data, 0)[0]
    return fold.train, carve_rule("stream")


def replay(model: str, half: Any, params: dict[str, Any], update: str, retrain_every: int = 1) -> dict[str, Any]:
    """One replay of the carve (fit on the first half of `half`, replay its second half)."""
    from recstack.stream import run_stream

    t0 = time.perf_counter()
    rec = run_stream(model, half, params, update=update, retrain_every=retrain_every, fraction=0.5)
    return {"params": params, "update": update, METRIC: rec["metrics"][METRIC],
            "ndcg@10": rec["metrics"]["ndcg@10"], "update_seconds": rec["update_seconds"],
            "seconds": round(time.perf_counter() - t0, 2), "user_days": rec["user_days"]}


def grid(space: dict[str, list[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(space, values)) for values in itertools.product(*space.values())]


def search(model: str, half: Any, fixed: dict[str, Any], space: dict[str, list[Any]], update: str,
           retrain_every: int = 1) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Every point of `space` (over `fixed`); returns (best trial, all trials)."""
    trials = []
    for point in grid(space):
        t = replay(model, half, {**fixed, **point}, update, retrain_every)
        print(f"[{model} {update}] {point}: {METRIC} {t[METRIC]:.4f} ndcg@10 {t['ndcg@10']:.4f} "
              f"(update {t['update_seconds']:.1f}s, {t['seconds']:.0f}s)", file=sys.stderr, flush=True)
        trials.append(t)
    return max(trials, key=lambda t: t[METRIC]), trials


ITEM_KNN = {"fixed": {"mode": "ranking", "similarity": "cosine"},
            "space": {"k": [20, 50, 100, 200, 400], "binary": [False, True]}}
BIASED_MF_FIT = {"fixed": {"early_stopping": False},
                 "space": {"factors": [16, 64], "learning_rate": [0.001, 0.003, 0.01],
                           "epochs": [3, 10, 30], "reg": [0.02, 0.12], "init_std": [0.01, 0.1]}}
BIASED_MF_PARTIAL = {"partial_epochs": [1, 3, 10], "replay_size": [0, 1000, 5000],
                     "partial_learning_rate": [0.0, 0.02]}


def tune(model: str, half: Any, retrain_every: int) -> tuple[dict[str, Any], dict[str, Any], str, int]:
    """(params, best trial, method, trials) for `model`."""
    if model == "item-knn":
        best, trials = search(model, half, ITEM_KNN["fixed"], ITEM_KNN["space"], "incremental")
        method = (f"grid on the carve: similarity cosine, mode ranking × k {ITEM_KNN['space']['k']} × binary "
                  "{false, true}, scored under --update incremental (exact)")
        return best["params"], best, method, len(trials)
    if model == "biased-mf":
        fit, fit_trials = search(model, half, BIASED_MF_FIT["fixed"], BIASED_MF_FIT["space"], "retrain", retrain_every)
        best, trials = search(model, half, fit["params"], BIASED_MF_PARTIAL, "incremental")
        s = BIASED_MF_FIT["space"]
        method = (f"grid on the carve, two stages: (1) early_stopping off × factors {s['factors']} × learning_rate "
                  f"{s['learning_rate']} × epochs {s['epochs']} × reg {s['reg']} × init_std {s['init_std']}, "
                  "scored under --update retrain "
                  f"every {retrain_every} days (best {fit[METRIC]:.4f}); (2) partial_epochs "
                  f"{BIASED_MF_PARTIAL['partial_epochs']} × replay_size {BIASED_MF_PARTIAL['replay_size']} × "
                  f"partial_learning_rate {BIASED_MF_PARTIAL['partial_learning_rate']} (0: learning_rate), "
                  "scored under --update incremental")
        return best["params"], best, method, len(fit_trials) + len(trials)
    raise SystemExit(f"no stream search for {model!r}; known: item-knn, biased-mf")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.tune_stream", description=__doc__)
    p.add_argument("model", choices=["item-knn", "biased-mf"])
    p.add_argument("--retrain-every", type=int, default=1)
    p.add_argument("--write", action="store_true", help="write configs/MODEL.stream.json")
    args = p.parse_args(argv)
    from recstack.data.movielens import load_dataset
    from recstack.tune import code_commit

    half, rule = carve(load_dataset("ml-100k"))
    params, best, method, n_trials = tune(args.model, half, args.retrain_every)
    chosen = {"protocol": "stream", "carve": rule, "method": method, "trials": n_trials, "seed": 0,
              "metric": f"validation {METRIC} ({best['update']}, {best['user_days']} user-days)",
              "value": round(best[METRIC], 6), "commit": code_commit()}
    print(json.dumps({**params, "chosen": chosen}, indent=2))
    if args.write:
        path = ROOT / "configs" / f"{args.model}.stream.json"
        path.write_text(json.dumps({**params, "chosen": chosen}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

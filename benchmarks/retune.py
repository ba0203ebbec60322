"""Re-tune the rating configs in configs/ exactly as they were chosen: `python -m benchmarks.retune MODEL PROTOCOL`.

Each entry below is the search behind one file: the trials, the fixed parameters, and — for the
slow models — a space narrowed around the earlier choice (the models' own `search_space` for the
rest). `ml100k-folds` is tuned nested: one search per fold on a carve of THAT fold's training
part (`recstack.tune.tuning_splits`), written as `{"folds": {...}, "chosen": {...}}`.
`random-80-20` is tuned on a carve of its own training part. The file's `chosen` record names
the carve, trials, seed, validation metric and values, the commit and this command.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from recstack.tune import chosen_record, tune, tuning_splits

ROOT = Path(__file__).resolve().parent.parent

# a narrowed space: name -> ["float", low, high, "log"|"lin"] or ["cat", [choices]]
Space = dict[str, list[Any]]

PLANS: dict[tuple[str, str], dict[str, Any]] = {
    ("baseline", "ml100k-folds"): {"trials": 25},
    ("item-knn", "ml100k-folds"): {"trials": 25},
    ("user-knn", "ml100k-folds"): {"trials": 25},
    ("biased-mf", "ml100k-folds"): {"trials": 20},
    ("mf", "random-80-20"): {"trials": 25},
    ("biased-mf", "random-80-20"): {"trials": 25},
    ("bpmf", "ml100k-folds"): {"trials": 15, "space": {
        "factors": ["cat", [5, 10, 20]], "burn_in": ["cat", [20, 30, 50]], "samples": ["cat", [100, 200]],
        "alpha": ["float", 1.0, 4.0, "log"], "beta0": ["float", 0.5, 8.0, "log"],
        "w0": ["float", 0.3, 3.0, "log"]},
        "fixed": {"keep": 100, "sample_alpha": True, "init_std": 0.1}},
    ("svdpp", "ml100k-folds"): {"trials": 15, "space": {
        "factors": ["cat", [100, 200]], "learning_rate": ["float", 0.003, 0.01, "log"],
        "reg": ["float", 0.01, 0.08, "log"], "reg_bias": ["float", 0.01, 0.12, "log"]},
        "fixed": {"epochs": 40, "early_stopping": False, "init_std": 0.01}},
    ("nmf", "ml100k-folds"): {"trials": 10, "space": {
        "reg": ["float", 0.03, 0.12, "log"], "learning_rate": ["float", 0.003, 0.008, "log"],
        "reg_bias": ["float", 0.005, 0.05, "log"]},
        "fixed": {"factors": 300, "epochs": 200, "biased": True}},
}


def space_fn(space: Space):
    """A `space(trial)` for `recstack.tune.tune` from a narrowed-space description."""
    def suggest(trial: Any) -> dict[str, Any]:
        out = {}
        for name, spec in space.items():
            if spec[0] == "cat":
                out[name] = trial.suggest_categorical(name, spec[1])
            else:
                out[name] = trial.suggest_float(name, spec[1], spec[2], log=spec[3] == "log")
        return out
    return suggest


def retune(model: str, protocol: str, seed: int = 0, out: Path | None = None) -> dict[str, Any]:
    """Run the plan for (model, protocol); write and return the config file's content."""
    plan = PLANS[(model, protocol)]
    splits = tuning_splits(protocol, seed=seed)
    fixed = dict(plan.get("fixed", {}))
    space = plan.get("space")
    results = {}
    for name, split in splits.items():
        results[name] = tune(model, split, plan["trials"], fixed=fixed, seed=seed,
                             space=space_fn(space) if space else None,
                             progress=lambda line, n=name: print(f"[{model} {n}] {line}", file=sys.stderr, flush=True))
    chosen = chosen_record(results, splits, plan["trials"], seed, fixed)
    chosen["space"] = space or "the model's search_space"
    chosen["command"] = f"python -m benchmarks.retune {model} {protocol}"
    if len(results) > 1:
        content: dict[str, Any] = {"folds": {n: r.config for n, r in results.items()}, "chosen": chosen}
    else:
        content = {**next(iter(results.values())).config, "chosen": chosen}
    path = out or ROOT / "configs" / f"{model}.{protocol}.json"
    path.write_text(json.dumps(content, indent=2) + "\n")
    return content


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.retune", description=__doc__)
    p.add_argument("model")
    p.add_argument("protocol")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="write here instead of configs/MODEL.PROTOCOL.json")
    args = p.parse_args(argv)
    if (args.model, args.protocol) not in PLANS:
        print(f"no plan for {args.model} on {args.protocol}; known: "
              f"{', '.join(f'{m} {p}' for m, p in PLANS)}", file=sys.stderr)
        return 2
    content = retune(args.model, args.protocol, args.seed, args.out)
    print(json.dumps(content["chosen"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

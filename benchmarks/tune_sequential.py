"""`python -m benchmarks.tune_sequential MODEL [--only NAME ...] [--write]`: choose a sequential
model's `leave-last-out` config on the protocol's validation part, never on its test items.

The carve (`tune.carve_rule("leave-last-out")` = `leave_last_out(fold valid)`): the model fits on
the protocol's training part (every user's items but the last two) and early stopping watches
NDCG@10 on each user's second-to-last item — the fit `benchmarks.sequential` makes, stopped
before the test items are read. A trial's value is its best validation NDCG@10 (the epoch early
stopping keeps), for one seed (`--seed`, default 0).

Each plan below is a named list of trials, each a few changes to the plan's base config (the
model's current configs/<model>.leave-last-out.json params when the plan was written). Every
trial is appended to benchmarks/results/records/sequential_tuning/<model>.jsonl (params, best
validation NDCG@10, best epoch, per-epoch validation NDCG@10, fit seconds); a trial whose params
and seed are already there is read back, so an interrupted search resumes. `--write` writes the
best trial's config to configs/<model>.leave-last-out.json with a `chosen` record naming the
carve, the trials, the seed, the value and this command.

One seed's validation NDCG@10 moves by about 0.005 from epoch to epoch and seed to seed, as much
as trials differ, so the best of many trials on one seed overstates its test figure. With several
seeds (`--seed 0 1 2`), each trial is fitted once per seed and `--write` chooses by the mean over
those seeds, among the trials measured on all of them; the `chosen` record then lists the seeds,
the mean (`value`) and each seed's value (`values`).

`--refit-check TRIAL` measures, one step back and still on validation items only, whether
retraining on the training + validation parts for the chosen epoch count (`refit_valid`) helps
(see `refit_check`). Without it, the test step is two steps past the trained items (the newest
input, the validation item, was never trained on) while the validation step is one: a trial's
validation figure then overstates its test figure, the more so the less it is regularised.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = "leave-last-out"
RECORDS = ROOT / "benchmarks" / "results" / "records" / "sequential_tuning"

# base config per model and the trials tried, in order: name -> changes to the base
PLANS: dict[str, dict[str, Any]] = {
    "sasrec": {
        "base": {"factors": 64, "blocks": 2, "heads": 1, "dropout": 0.2, "max_len": 50, "loss": "ce",
                 "valid_history": True, "batch_size": 128, "learning_rate": 0.002, "reg": 0.0,
                 "epochs": 60, "early_stopping": True, "patience": 3, "threads": 1},
        "trials": {
            "base": {},
            "len200": {"max_len": 200},
            "len200-d0.3": {"max_len": 200, "dropout": 0.3},
            "len200-d0.5": {"max_len": 200, "dropout": 0.5},
            # dropout 0.2 stays (0.3 and 0.5 were lower on validation)
            "len200-d0.1": {"max_len": 200, "dropout": 0.1},
            "len200-b3": {"max_len": 200, "blocks": 3},
            "len200-bs64": {"max_len": 200, "batch_size": 64},
            "len200-lr1e-3": {"max_len": 200, "learning_rate": 0.001},
            "len200-f128": {"max_len": 200, "factors": 128},
            "len200-h2": {"max_len": 200, "heads": 2},
            # dropout 0.1 is the best so far: around it
            "len200-d0": {"max_len": 200, "dropout": 0.0},
            "len200-d0.1-ls0.1": {"max_len": 200, "dropout": 0.1, "label_smoothing": 0.1},
            "len200-d0.1-b3": {"max_len": 200, "dropout": 0.1, "blocks": 3},
            "len200-d0.1-b4": {"max_len": 200, "dropout": 0.1, "blocks": 4},
        },
    },
    "tisasrec": {
        # the hand-set config the model was first benchmarked with (seed 0 validation 0.1156)
        "base": {"factors": 64, "blocks": 2, "heads": 1, "dropout": 0.5, "max_len": 200, "batch_size": 128,
                 "learning_rate": 0.002, "epochs": 40, "patience": 4, "threads": 1, "intervals": "log"},
        "trials": {
            "base": {},
            # sasrec's max_len 50 / dropout 0.2 config tested above its max_len 200 ones
            "len50-d0.2": {"max_len": 50, "dropout": 0.2},
            "d0.3": {"dropout": 0.3},
            # the paper's bucketing (per-user smallest gap, time_span 256) with its dropout and window
            "user-len50-d0.2": {"max_len": 50, "dropout": 0.2, "intervals": "user"},
        },
    },
    "gru4rec": {
        "base": {"factors": 128, "layers": 1, "dropout": 0.3, "max_len": 200, "batch_size": 128,
                 "learning_rate": 0.002, "epochs": 40, "patience": 4, "threads": 1},
        "trials": {
            "base": {},
            # patience 4 ended seeds 1 and 2 on an early plateau (best epochs 13 and 3, seed 0: 30);
            # the same fit watched longer, so its best validation figure can only rise
            "p10": {"patience": 10},
            # p10's best epoch was the 39th of 40 on two seeds: the same fits with a higher cap
            "p10-e80": {"patience": 10, "epochs": 80},
        },
    },
    "bert4rec": {
        "base": {"factors": 64, "blocks": 2, "heads": 2, "dropout": 0.2, "max_len": 100, "batch_size": 128,
                 "learning_rate": 0.002, "epochs": 40, "patience": 5, "mask_prob": 0.2, "last_share": 0.2,
                 "threads": 1},
        "trials": {
            # the cloze objective predicts mask_prob of the items per epoch (sasrec: all of them), so
            # more masks, more steps and a longer patience before anything else
            "m0.4-bs64-p10": {"mask_prob": 0.4, "batch_size": 64, "epochs": 100, "patience": 10},
        },
    },
}


def trial_params(model: str, name: str) -> dict[str, Any]:
    plan = PLANS[model]
    return {**plan["base"], **plan["trials"][name]}


def log_path(model: str) -> Path:
    return RECORDS / f"{model}.jsonl"


def stored(model: str) -> list[dict[str, Any]]:
    path = log_path(model)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def fit_trial(model: str, params: dict[str, Any], fold: Any) -> dict[str, Any]:
    """Fit on the fold's training part, early stopping on its validation part; no test item is read."""
    from recstack.models.base import get_model_class

    m = get_model_class(model)(params)
    t0 = time.perf_counter()
    m.fit(fold.train, fold.valid)
    history = [round(float(v), 6) for v in m.valid_ndcg_history_]
    return {"valid_ndcg@10": max(history), "best_epoch": int(m.best_epoch_), "epochs": int(m.epochs_),
            "valid_history": history, "fit_seconds": round(time.perf_counter() - t0, 1)}


def run(model: str, names: list[str], seed: int) -> list[dict[str, Any]]:
    from recstack.data.movielens import load_dataset
    from recstack.evaluate import get_protocol

    fold = get_protocol(PROTOCOL).make_folds(load_dataset("ml-100k"), seed)[0]
    done = stored(model)
    out = []
    for name in names:
        params = {**trial_params(model, name), "seed": seed}
        old = next((t for t in done if t["params"] == params and "/" not in t["trial"]), None)
        if old is not None:
            print(f"{model} {name}: read back, valid ndcg@10 {old['valid_ndcg@10']:.4f}", file=sys.stderr)
            out.append(old)
            continue
        print(f"{model} {name} …", file=sys.stderr, flush=True)
        rec = {"trial": name, "params": params, **fit_trial(model, params, fold),
               "measured_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        log_path(model).parent.mkdir(parents=True, exist_ok=True)
        with log_path(model).open("a") as f:
            f.write(json.dumps(rec) + "\n")
        print(f"{model} {name}: valid ndcg@10 {rec['valid_ndcg@10']:.4f} (best epoch {rec['best_epoch']}, "
              f"{rec['fit_seconds']:.0f} s)", file=sys.stderr, flush=True)
        out.append(rec)
    return out


def refit_check(model: str, name: str, seed: int) -> dict[str, Any]:
    """Whether `refit_valid` helps, measured one step back on the validation items only.

    Inner split: `leave_last_out` of the protocol's training + validation parts (no test item),
    so the inner test is each user's validation item, the inner validation the item before.
    Two fits of trial `name`: early stopping on the inner validation part, then scored on the
    inner test (full ranking, the inner validation item in the history and excluded) — without
    and with `refit_valid`. Appended to the trial log as `<name>/refit-check`.
    """
    from recstack.data.movielens import load_dataset
    from recstack.evaluate import get_protocol, topn_metrics
    from recstack.models.base import get_model_class
    from recstack.models.sequential import with_rows
    from recstack.split import leave_last_out

    fold = get_protocol(PROTOCOL).make_folds(load_dataset("ml-100k"), seed)[0]
    train, valid, test = leave_last_out(with_rows(fold.train, fold.valid))
    params = {**trial_params(model, name), "seed": seed}
    rec: dict[str, Any] = {"trial": f"{name}/refit-check", "params": params,
                           "carve": "leave_last_out(fold train + fold valid): inner test = fold valid"}
    old = next((t for t in stored(model) if t["trial"] == rec["trial"] and t["params"] == params), None)
    if old is not None:
        return old
    for refit in (False, True):
        t0 = time.perf_counter()
        m = get_model_class(model)({**params, "refit_valid": refit}).fit(train, valid)
        metrics, _ = topn_metrics(m, train, test, 10, "all", valid)
        key = "refit" if refit else "no_refit"
        rec[key] = {"inner_test_ndcg@10": round(metrics["ndcg@10"], 6), "best_epoch": int(m.best_epoch_),
                    "fit_seconds": round(time.perf_counter() - t0, 1)}
        print(f"{model} {name} refit_valid={refit}: inner test (= validation items) ndcg@10 "
              f"{metrics['ndcg@10']:.4f}", file=sys.stderr, flush=True)
    rec["measured_utc"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with log_path(model).open("a") as f:
        f.write(json.dumps(rec) + "\n")
    return rec


def table(trials: list[dict[str, Any]]) -> list[str]:
    lines = ["| trial | validation NDCG@10 | best epoch | fit s |", "|---|---|---|---|"]
    for t in trials:
        lines.append(f"| {t['trial']} | {t['valid_ndcg@10']:.4f} | {t['best_epoch']} | {t['fit_seconds']:.0f} |")
    return lines


def by_mean(trials: list[dict[str, Any]], seeds: list[int]) -> list[dict[str, Any]]:
    """One row per trial measured on every seed of `seeds`: its params (seed aside), per-seed values
    and best epochs, and `valid_ndcg@10` = their mean (the trial order kept)."""
    rows: dict[str, dict[str, Any]] = {}
    for t in trials:
        if t["params"].get("seed") not in seeds:
            continue
        row = rows.setdefault(t["trial"], {"trial": t["trial"], "values": {}, "best_epochs": {}, "fit_seconds": 0.0,
                                           "params": {k: v for k, v in t["params"].items() if k != "seed"}})
        row["values"][t["params"]["seed"]] = t["valid_ndcg@10"]
        row["best_epochs"][t["params"]["seed"]] = t["best_epoch"]
        row["fit_seconds"] += t["fit_seconds"] / len(seeds)
    out = []
    for row in rows.values():
        if set(row["values"]) == set(seeds):
            row["values"] = [row["values"][s] for s in seeds]
            row["best_epochs"] = [row["best_epochs"][s] for s in seeds]
            row["valid_ndcg@10"] = round(sum(row["values"]) / len(seeds), 6)
            row["best_epoch"] = " / ".join(map(str, row["best_epochs"]))
            out.append(row)
    return out


def write(model: str, trials: list[dict[str, Any]], seed: int | list[int], note: str,
          refit_valid: bool = False) -> dict[str, Any]:
    """configs/<model>.leave-last-out.json from the best of `trials`: one seed's trials, or with a
    list of seeds, the `by_mean` rows over them; `refit_valid` adds the retraining on training +
    validation rows (see `refit_check`)."""
    from recstack.tune import carve_rule, code_commit

    seeds = seed if isinstance(seed, list) else None
    if seeds is not None:
        trials = by_mean(trials, seeds)
        if not trials:
            raise SystemExit(f"no trial of {model!r} is measured on every seed of {seeds}")
    best = max(trials, key=lambda t: t["valid_ndcg@10"])
    params = {k: v for k, v in best["params"].items() if k != "seed"}
    if refit_valid:
        params["refit_valid"] = True
        check = next((t for t in stored(model) if t["trial"] == f"{best['trial']}/refit-check"), None)
        if check is None:
            raise SystemExit(f"no refit check of {best['trial']!r}: run --refit-check {best['trial']} first")
        note = (f"refit_valid from the refit check one step back (inner test = the validation items): "
                f"ndcg@10 {check['no_refit']['inner_test_ndcg@10']:.4f} without, "
                f"{check['refit']['inner_test_ndcg@10']:.4f} with" + (f"; {note}" if note else ""))
    chosen = {
        "protocol": PROTOCOL,
        "carve": carve_rule(PROTOCOL),
        "method": f"a hand-written list of trials (benchmarks/tune_sequential.py PLANS[{model!r}]), "
                  "each a full fit with early stopping on the validation part",
        "trials": len(trials),
        "seed": seed,
        "metric": "validation ndcg@10" + (f", mean over seeds {', '.join(map(str, seeds))}" if seeds else ""),
        "value": best["valid_ndcg@10"],
        **({"values": best["values"]} if seeds else {}),
        "commit": code_commit(),
        "note": f"best trial {best['trial']!r} (best epoch {best['best_epoch']}); every trial in "
                f"benchmarks/results/records/sequential_tuning/{model}.jsonl" + (f"; {note}" if note else ""),
        "command": f"python -m benchmarks.tune_sequential {model} --write"
                   + (f" --seed {' '.join(map(str, seeds))}" if seeds else "")
                   + (" --refit-valid" if refit_valid else ""),
    }
    content = {**params, "chosen": chosen}
    (ROOT / "configs" / f"{model}.{PROTOCOL}.json").write_text(json.dumps(content, indent=2) + "\n")
    return content


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.tune_sequential", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", choices=sorted(PLANS))
    p.add_argument("--only", nargs="+", help="run only these trials of the plan")
    p.add_argument("--seed", type=int, nargs="+", default=[0], help="one seed, or several: each trial "
                   "is fitted once per seed and --write chooses by the mean over them")
    p.add_argument("--write", action="store_true", help="write the best trial's config file")
    p.add_argument("--note", default="", help="appended to the chosen record's note")
    p.add_argument("--refit-valid", action="store_true", help="with --write: set refit_valid (needs a "
                   "--refit-check of the best trial)")
    p.add_argument("--refit-check", metavar="TRIAL", help="only measure `refit_valid` for this trial "
                   "one step back (see refit_check)")
    args = p.parse_args(argv)
    if args.refit_check:
        for seed in args.seed:
            print(json.dumps(refit_check(args.model, args.refit_check, seed), indent=2))
        return 0
    names = list(PLANS[args.model]["trials"])
    unknown = [n for n in args.only or [] if n not in names]
    if unknown:
        print(f"unknown trials {', '.join(unknown)}; the plan has {', '.join(names)}", file=sys.stderr)
        return 2
    trials = [t for seed in args.seed for t in run(args.model, args.only or names, seed) if "/" not in t["trial"]]
    if len(args.seed) > 1:
        print(f"mean over seeds {', '.join(map(str, args.seed))}:")
    print("\n".join(table(by_mean(trials, args.seed) if len(args.seed) > 1 else trials)))
    if args.write:
        if args.only:
            trials = [t for t in stored(args.model) if t["params"].get("seed") in args.seed and t["trial"] in names
                      and t["params"] == {**trial_params(args.model, t["trial"]), "seed": t["params"]["seed"]}]
        seed = args.seed if len(args.seed) > 1 else args.seed[0]
        print(json.dumps(write(args.model, trials, seed, args.note, args.refit_valid)["chosen"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

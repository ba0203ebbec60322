"""The sequential models on `leave-last-out` over several seeds: `python -m benchmarks.sequential`.

Each model (`gru4rec`, `bert4rec`, `tisasrec`, `sasrec`) runs with its
configs/<model>.leave-last-out.json for each seed (default 0, 1, 2), scored by
`recstack.evaluate.run_protocol` (full ranking over all items, the validation item excluded).
A (model, seed) whose record already exists under `--out`/records/sequential is read back
instead of refitted (`--force` refits), so an interrupted run resumes. Writes
records/sequential/leave-last-out__<model>__seed<S>.json, sequential.json (per seed and mean
NDCG@10 / HR@10 / fit seconds per model, and whether the issue's target — the best model's mean
NDCG@10 ≥ 0.105 — is met) and sequential.md (the same as a Markdown table).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = "leave-last-out"
MODELS = ["gru4rec", "tisasrec", "sasrec", "bert4rec"]
SEEDS = [0, 1, 2]
TARGET_NDCG = 0.105


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def record_path(out: Path, model: str, seed: int) -> Path:
    return out / "records" / "sequential" / f"{PROTOCOL}__{model}__seed{seed}.json"


def run(data: Any, out: Path, models: Sequence[str], seeds: Sequence[int], config_dir: Path,
        force: bool = False) -> list[dict[str, Any]]:
    """One result record per (model, seed), fitted now or read back from an earlier run."""
    from recstack.evaluate import run_protocol
    from recstack.models.config import load_config_file

    records = []
    for model in models:
        path = config_dir / f"{model}.{PROTOCOL}.json"
        cf = load_config_file(path)
        source = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
        for seed in seeds:
            target = record_path(out, model, seed)
            if target.exists() and not force:
                record = json.loads(target.read_text())
                if record.get("config_source") == source and _same_config(record, cf.params):
                    _err(f"{model} seed {seed}: read {target.relative_to(out)}")
                    records.append(record)
                    continue
            _err(f"{model} seed {seed} ({source}) …")
            record = run_protocol(model, PROTOCOL, data=data, params=cf.params, seed=seed,
                                  provenance=cf.chosen, progress=lambda line: _err(f"    {line}"))
            record.update({"side": "recstack", "library": "recstack", "config_source": source,
                           "measured_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(record, indent=2))
            records.append(record)
    return records


def _same_config(record: dict[str, Any], params: dict[str, Any]) -> bool:
    """Whether a stored record was fitted with `params` (the seed aside)."""
    stored = record.get("config", {})
    return all(stored.get(k) == v for k, v in params.items() if k != "seed")


def summary(records: list[dict[str, Any]], required_seeds: Sequence[int] = SEEDS) -> dict[str, Any]:
    """Per model: per-seed and mean NDCG@10 / HR@10 / fit seconds; the best model and the target
    (met only when the best model's mean covers every seed of `required_seeds`)."""
    by_model: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_model.setdefault(r["model"], []).append(r)
    rows = []
    for model, recs in by_model.items():
        recs = sorted(recs, key=lambda r: r["seed"])
        per_seed = [{"seed": r["seed"], "ndcg@10": r["metrics"]["ndcg@10"], "hr@10": r["metrics"]["hr@10"],
                     "fit_seconds": r["fit_seconds"], "best_epoch": r["folds"][0].get("best_epoch"),
                     "epochs": r["folds"][0].get("epochs")} for r in recs]
        n = len(per_seed)
        rows.append({
            "model": model,
            "config_source": recs[0].get("config_source"),
            "seeds": per_seed,
            "mean": {key: sum(s[key] for s in per_seed) / n for key in ("ndcg@10", "hr@10", "fit_seconds")},
        })
    best = max(rows, key=lambda row: row["mean"]["ndcg@10"]) if rows else None
    return {
        "protocol": PROTOCOL,
        "target": f"best sequential model's mean NDCG@10 over seeds ≥ {TARGET_NDCG}",
        "rows": rows,
        "best": best and best["model"],
        "best_mean_ndcg@10": best and best["mean"]["ndcg@10"],
        "required_seeds": list(required_seeds),
        "met": bool(best and best["mean"]["ndcg@10"] >= TARGET_NDCG
                    and set(required_seeds) <= {s["seed"] for s in best["seeds"]}),
    }


def markdown(summ: dict[str, Any]) -> list[str]:
    """The summary as a Markdown table: one row per model, per-seed NDCG@10 and the means."""
    lines = ["| model | NDCG@10 per seed | seeds | mean NDCG@10 | mean HR@10 | fit s (mean) | best epochs | config |",
             "|---|---|---|---|---|---|---|---|"]
    for row in sorted(summ["rows"], key=lambda r: -r["mean"]["ndcg@10"]):
        seeds = " / ".join(f"{s['ndcg@10']:.4f}" for s in row["seeds"])
        epochs = " / ".join(str(s["best_epoch"]) for s in row["seeds"])
        m = row["mean"]
        which = ", ".join(str(s["seed"]) for s in row["seeds"])
        lines.append(f"| `{row['model']}` | {seeds} | {which} | {m['ndcg@10']:.4f} | {m['hr@10']:.4f} | "
                     f"{m['fit_seconds']:.0f} | {epochs} | {row['config_source']} |")
    verdict = "met" if summ["met"] else "not met"
    seeds = ", ".join(map(str, summ["required_seeds"]))
    lines += ["", f"Target (best mean NDCG@10 over seeds {seeds} ≥ {TARGET_NDCG}): **{verdict}** — best "
                  f"`{summ['best']}` {summ['best_mean_ndcg@10']:.4f}."]
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sequential", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    p.add_argument("--seeds", nargs="+", type=int, default=SEEDS)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--configs", type=Path, default=ROOT / "configs", help="folder of <model>.<protocol>.json")
    p.add_argument("--force", action="store_true", help="refit even where a record exists")
    p.add_argument("--summary-only", action="store_true", help="only summarise the stored records")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress bars on stderr")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.quiet:
        from recstack import progress

        progress.enable()
    if args.summary_only:
        records = [json.loads(record_path(args.out, m, s).read_text()) for m in args.models for s in args.seeds
                   if record_path(args.out, m, s).exists()]
    else:
        from recstack.data.movielens import load_dataset

        records = run(load_dataset("ml-100k"), args.out, args.models, args.seeds, args.configs, args.force)
    summ = summary(records)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sequential.json").write_text(json.dumps(summ, indent=2))
    table = markdown(summ)
    (args.out / "sequential.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())

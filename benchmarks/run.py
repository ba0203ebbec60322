"""`python -m benchmarks.run [--quick] [--only NAME ...]`: recstack and reference libraries side by side.

Every recstack model of levels 1–2 (and 3 when its module exists) runs on the protocols that
fit it, next to Surprise (rating, `ml100k-folds`) and implicit / cornac (top-N, `msr-75`), all
in this one process and all scored by `recstack.evaluate.run_protocol`. A recstack model's
config comes from `configs/<model>.<protocol>.json` when present, else its defaults. Output
under `--out` (default benchmarks/results): `records/<protocol>__<model>.json` (result
records), `speed.json`, `README.md` (the table) and PNG plots.
"""

from __future__ import annotations

import os

# thread counts before numba / BLAS / implicit are imported: the speed rows compare 2 threads
os.environ.setdefault("NUMBA_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from benchmarks import references, report, speed  # noqa: E402
from benchmarks import stream as stream_bench  # noqa: E402
from recstack.errors import ConfigError, MissingExtraError, RecstackError  # noqa: E402
from recstack.evaluate import run_protocol  # noqa: E402
from recstack.models.base import get_model_class  # noqa: E402
from recstack.models.config import ConfigFile, load_config_file  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LEVEL3 = {"ncf", "cdae", "multvae", "multdae", "lightgcn", "sasrec", "markov", "gru4rec", "bert4rec", "tisasrec"}

# protocol -> recstack models run on it (rating lists keep only models that estimate ratings)
PLAN: dict[str, list[str]] = {
    "ml100k-folds": ["mf", "biased-mf", "baseline", "svdpp", "nmf", "item-knn", "user-knn", "bpmf", "fm",
                     "timesvdpp"],
    "msr-75": ["popular", "mf", "biased-mf", "svdpp", "nmf", "als", "item-knn", "user-knn", "ease",
               "ease-als", "rp3beta", "slim", "content", "ncf", "cdae", "multvae", "multdae", "lightgcn",
               "hybrid", "blend"],
    "leave-last-out": ["popular", "item-knn", "als", "ease", "markov", "sasrec", "gru4rec", "bert4rec",
                       "tisasrec"],
    # level 4: cold start (hybrid's defaults: genres + year items, demographic users, 20 epochs)
    "cold-items": ["popular", "content", "hybrid", "kg"],
    "cold-users-given1": ["popular", "ease", "als", "ease-als", "content", "hybrid"],
    "cold-users-given3": ["popular", "ease", "als", "ease-als", "content", "hybrid"],
    "cold-users": ["popular", "ease", "als", "ease-als", "content", "hybrid"],
}
QUICK_PLAN: dict[str, list[str]] = {
    "ml100k-folds": ["mf", "biased-mf", "baseline"],
    "msr-75": ["popular", "als", "ease"],
    "leave-last-out": ["popular", "markov"],
}
# protocol -> reference adapters (see benchmarks/references.py)
REFERENCE_PLAN: dict[str, list[str]] = {
    "ml100k-folds": ["surprise-svd", "surprise-svdpp", "surprise-nmf", "surprise-knnbaseline",
                     "surprise-baselineonly", "surprise-slopeone", "myfm"],
    "msr-75": ["implicit-als", "implicit-bm25", "cornac-ease"],
}
QUICK_REFERENCES: dict[str, list[str]] = {
    "ml100k-folds": ["surprise-svd", "surprise-baselineonly"],
    "msr-75": ["implicit-als", "cornac-ease"],
}
# references fitted with the paired recstack model's hyperparameters (the others: library defaults)
MIRRORED = {"implicit-als", "cornac-ease", "implicit-bm25", "myfm"}


@dataclass
class Job:
    model: str
    protocol: str
    side: str  # "recstack" | library name
    params: dict[str, Any]
    config_source: str
    fold_params: dict[str, dict[str, Any]] | None = None  # a per-fold config (ml100k-folds)
    provenance: dict[str, Any] | None = None  # the config's `chosen` record


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def config_for(model: str, protocol: str, config_dir: Path) -> tuple[ConfigFile, str]:
    """(config, source): configs/<model>.<protocol>.json when it exists, else the defaults."""
    path = config_dir / f"{model}.{protocol}.json"
    if path.exists():
        return load_config_file(path), str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return ConfigFile({}, {}), "defaults"


def missing_reason(model: str) -> str | None:
    """None when the model's class loads; else why it is skipped."""
    try:
        get_model_class(model)
    except MissingExtraError as exc:
        return str(exc)
    except ConfigError as exc:
        return "not implemented yet" if "is missing" in str(exc) else str(exc)
    return None


def build_plan(args: argparse.Namespace, config_dir: Path) -> tuple[list[Job], list[dict[str, Any]]]:
    """The jobs to run and the notes for models skipped (missing module, wrong task, no library)."""
    plan = QUICK_PLAN if args.quick else PLAN
    refs = QUICK_REFERENCES if args.quick else REFERENCE_PLAN
    only = set(args.only or [])
    jobs, notes = [], []
    for protocol, models in plan.items():
        for model in models:
            if only and model not in only:
                continue
            if model in LEVEL3 and 3 not in args.levels:
                continue
            reason = missing_reason(model)
            cf, source = config_for(model, protocol, config_dir)
            params = next(iter(cf.folds.values())) if cf.folds else cf.params
            if reason is None and protocol == "ml100k-folds" and not get_model_class(model)(params).explicit:
                reason = "ranks items, does not estimate ratings"
            if reason:
                notes.append({"model": model, "protocol": protocol, "side": "recstack", "note": reason})
                continue
            jobs.append(Job(model, protocol, "recstack", cf.params, source, cf.folds or None, cf.chosen))
        for ref in refs.get(protocol, []):
            paired = references.REFERENCES[ref][1]
            if only and ref not in only and paired not in only:
                continue
            cls = references.REFERENCES[ref][0]
            reason = references.available(ref)
            if reason:
                notes.append({"model": ref, "protocol": protocol, "side": cls.library, "note": reason})
                continue
            params, source = {}, "library defaults"
            if ref in MIRRORED and paired and missing_reason(paired) is None:
                ours_cf, ours_source = config_for(paired, protocol, config_dir)
                # a per-fold config: mirror the first fold's choice
                ours_params = next(iter(ours_cf.folds.values())) if ours_cf.folds else ours_cf.params
                ours = get_model_class(paired)(ours_params).config.to_dict()
                params = references.mirror_params(ref, ours)
                source = f"same {', '.join(sorted(params))} as {paired} ({ours_source})" if params else source
            jobs.append(Job(ref, protocol, cls.library, params, source))
    return jobs, notes


def warm_up(job: Job, data: Any) -> None:
    """Compile a recstack model's numba kernels on a small slice so fit times exclude JIT."""
    from recstack.evaluate import get_protocol

    fold = get_protocol(job.protocol).make_folds(data, 0)[0]
    params = job.fold_params[fold.name] if job.fold_params else job.params
    get_model_class(job.model)(params).fit(speed.warm_slice(fold.train), None)


def run_jobs(jobs: list[Job], data: Any, folds: int | None, out: Path) -> tuple[list[dict], list[dict]]:
    records, failures = [], []
    (out / "records").mkdir(parents=True, exist_ok=True)
    for n, job in enumerate(jobs, 1):
        _err(f"[{n}/{len(jobs)}] {job.model} on {job.protocol} ({job.side}, {job.config_source}) …")
        try:
            if job.side == "recstack":
                warm_up(job, data)
            record = run_protocol(job.model, job.protocol, data=data, params=job.params, seed=0,
                                  fold_limit=folds, progress=lambda line: _err(f"    {line}"),
                                  fold_params=job.fold_params, provenance=job.provenance)
        except Exception as exc:  # one broken model must not stop the whole benchmark
            _err(traceback.format_exc(limit=3))
            failures.append({"model": job.model, "protocol": job.protocol, "side": job.side,
                             "note": f"failed: {type(exc).__name__}: {exc}"[:200]})
            continue
        record.update({"side": job.side, "library": _library(job.side), "config_source": job.config_source})
        (out / "records" / f"{job.protocol}__{job.model}.json").write_text(json.dumps(record, indent=2))
        records.append(record)
    return records, failures


def _library(side: str) -> str:
    if side == "recstack":
        return "recstack"
    from importlib.metadata import PackageNotFoundError, version

    dist = {"surprise": "scikit-surprise"}.get(side, side)
    try:
        return f"{side} {version(dist)}"
    except PackageNotFoundError:
        return side


def run_speed(args: argparse.Namespace, data: Any, config_dir: Path) -> list[dict[str, Any]]:
    rows = []
    cases = speed.CASES[:1] if args.quick else speed.CASES
    only = set(args.only or [])
    for case in cases:
        if only and case.ours not in only and case.reference not in only:
            continue
        reason = missing_reason(case.ours) or references.available(case.reference)
        if reason:
            rows.append({"name": case.name, "error": reason, "target_text": case.describe_target()})
            continue
        ours_config = config_for(case.ours, case.protocol, config_dir)[0].params if case.mirror else None
        _err(f"[speed] {case.name} …")
        try:
            n = 1 if args.quick else 3
            row = speed.run_case(case, data, repeats=n, reference_repeats=n, ours_config=ours_config,
                                 fresh=not args.quick)
        except RecstackError as exc:
            rows.append({"name": case.name, "error": str(exc), "target_text": case.describe_target()})
            continue
        _err(f"    fit {row['recstack']['fit_seconds']:.3f}s vs {row['reference_side']['fit_seconds']:.3f}s "
             f"(ratio {row['fit_ratio']:.3f}); {row['metric']} {row['recstack']['metric']:.4f} vs "
             f"{row['reference_side']['metric']:.4f}; target {'met' if row['met'] else 'NOT met'}")
        first = row["recstack"].get("first_fit", {})
        if "first_fit_seconds" in first:
            _err(f"    first fit in a new process {first['first_fit_seconds']:.3f}s, then "
                 f"{first['later_fit_seconds'][0]:.3f}s")
        rows.append(row)
    return rows


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="one fold, fewer models, one speed row (~2–3 min)")
    p.add_argument("--only", nargs="+", metavar="NAME",
                   help="run only these models (a recstack name also selects its references and speed row)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default benchmarks/results, "
                                                          "or benchmarks/results/quick with --quick)")
    p.add_argument("--configs", type=Path, default=ROOT / "configs", help="folder of <model>.<protocol>.json")
    p.add_argument("--folds", type=int, default=None, help="ml100k-folds: run only the first N folds")
    p.add_argument("--levels", type=int, nargs="+", default=[1, 2, 3], help="levels to include (default 1 2 3)")
    p.add_argument("--no-speed", action="store_true", help="skip the timed speed rows")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--speed-only", action="store_true", help="only the timed speed rows, no accuracy runs")
    p.add_argument("--no-stream", action="store_true",
                   help="skip the stream protocol rows (none / incremental / retrain; ~15 min; off with --quick)")
    args = p.parse_args(argv)
    if args.quick and args.folds is None:
        args.folds = 1
    if args.out is None:
        args.out = ROOT / "benchmarks" / "results" / ("quick" if args.quick else "")
    return args


def _with_earlier(out: Path, records: list[dict[str, Any]],
                  speed_rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """This run's records and speed rows, plus those already in `out` that it did not redo."""
    fresh = {(r["protocol"], r["model"]) for r in records}
    kept = [json.loads(f.read_text()) for f in sorted((out / "records").glob("*.json"))
            if not f.name.startswith("stream__")]  # the stream rows have their own table
    records = [r for r in kept if (r.get("protocol"), r.get("model")) not in fresh] + records
    path = out / "speed.json"
    earlier = json.loads(path.read_text()) if path.exists() else []
    redone = {r["name"] for r in speed_rows}
    return records, [r for r in earlier if r.get("name") not in redone] + speed_rows


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    references.register()
    known = set(sum(PLAN.values(), [])) | set(references.REFERENCES)
    unknown = sorted(set(args.only or []) - known)
    if unknown:
        _err(f"error: unknown name(s) for --only: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return 2
    try:
        from threadpoolctl import threadpool_limits

        limits: Any = threadpool_limits(1, user_api="blas")
    except ModuleNotFoundError:
        limits = None
    from recstack.data.movielens import load_dataset

    t0 = time.perf_counter()
    data = load_dataset("ml-100k")
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    jobs, notes = ([], []) if args.speed_only else build_plan(args, args.configs)
    records, failures = run_jobs(jobs, data, args.folds, out)
    speed_rows = [] if args.no_speed else run_speed(args, data, args.configs)
    stream_records = []
    if not (args.no_stream or args.quick or args.speed_only):
        models = [m for m in stream_bench.MODELS if not args.only or m in args.only]
        stream_records = stream_bench.run(data, out, models, args.configs)
        stream_rows = stream_bench.summary(stream_records)
        (out / "stream.json").write_text(json.dumps(stream_rows, indent=2))
    partial = bool(args.only) or args.speed_only or args.no_speed
    if partial:  # the table and speed.json keep every row this run did not measure again
        records, speed_rows = _with_earlier(out, records, speed_rows)
    (out / "speed.json").write_text(json.dumps(speed_rows, indent=2))
    seconds = time.perf_counter() - t0
    header = [f"`python -m benchmarks.run {' '.join(argv if argv is not None else sys.argv[1:])}` — "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {seconds / 60:.1f} min in one process on "
              f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), Python "
              f"{platform.python_version()}, NUMBA_NUM_THREADS={os.environ['NUMBA_NUM_THREADS']}, "
              f"BLAS limited to 1 thread.",
              "",
              "Every row is scored by `recstack.evaluate.run_protocol` on the same folds; reference "
              "libraries are fitted on the same rows through the adapters in `benchmarks/references.py`. "
              "Fit seconds of recstack models exclude numba compile time (one warm-up fit on a small slice "
              "first); a reference's fit seconds here include building its input (e.g. a Surprise `Trainset`, "
              "~0.3 s) — the speed rows time the library's own `fit` alone. `config` says where the "
              "hyperparameters came from; `peak_memory_mb` in the records is the whole process's peak so far."]
    report.write_markdown(out / "README.md", records, notes + failures, speed_rows, header)
    if stream_records:
        with (out / "README.md").open("a") as fh:
            fh.write("\n" + "\n".join(stream_bench.markdown(stream_bench.summary(stream_records))))
    plots = [] if args.no_plots else report.write_plots(out, records)
    if stream_records and not args.no_plots:
        plots.append(stream_bench.plot(out, stream_records))
    if limits is not None:
        limits.restore_original_limits()
    _err(f"wrote {len(records)} records, {len(speed_rows)} speed rows, {len(plots)} plots to {out} "
         f"in {seconds:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`recstack ...`: the command line. `--json` prints exactly one JSON object on stdout;
progress and logs go to stderr. Errors print one line naming the problem and exit 2."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from recstack.errors import RecstackError

log = logging.getLogger("recstack")


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, indent=None, default=str))


# ---- data ---------------------------------------------------------------------------------
def cmd_data_fetch(args: argparse.Namespace) -> int:
    from recstack.data.movielens import fetch_dataset, load_dataset

    folder = fetch_dataset(args.name, args.path)
    data = load_dataset(args.name, args.path)
    info = {"name": args.name, "path": str(folder), "n": len(data), "n_users": data.n_users,
            "n_items": data.n_items, "sha256": data.fingerprint()}
    if args.json:
        _emit(info)
    else:
        print(folder)
        _err(f"{args.name}: {len(data):,} interactions, {data.n_users:,} users, {data.n_items:,} items; "
             f"fingerprint {info['sha256'][:16]}…")
    return 0


def cmd_data_synth(args: argparse.Namespace) -> int:
    import time

    from recstack.data.parquet import write_parquet
    from recstack.data.synthetic import synthetic_interactions

    t0 = time.perf_counter()
    data = synthetic_interactions(args.users, args.items, args.ratings, args.seed)
    out = write_parquet(data, args.out)
    info = {"path": str(out), "n": len(data), "n_users": data.n_users, "n_items": data.n_items,
            "seed": args.seed, "seconds": round(time.perf_counter() - t0, 2)}
    if args.json:
        _emit(info)
    else:
        _err(f"{len(data):,} ratings, {data.n_users:,} users, {data.n_items:,} items in {info['seconds']}s")
        print(out)
    return 0


# ---- shared model options ------------------------------------------------------------------------
def _params(args: argparse.Namespace) -> dict[str, Any]:
    from recstack.models.config import parse_params, read_config_file

    params: dict[str, Any] = {}
    if getattr(args, "config", None):
        params.update(read_config_file(args.config))
    params.update(parse_params(args.param or []))
    return params


def _read_any(path: str, duplicates: str = "error"):
    """A ratings file: Parquet (a .parquet file or a folder of them) or delimited text."""
    p = Path(path)
    if p.suffix == ".parquet" or p.is_dir():
        from recstack.data.parquet import read_parquet

        return read_parquet(p, duplicates=duplicates)
    from recstack.data.files import read_interactions_file

    return read_interactions_file(p, duplicates=duplicates)


def _load_data(args: argparse.Namespace):
    from recstack.data.movielens import load_dataset

    if getattr(args, "data", None):
        return _read_any(args.data, getattr(args, "duplicates", "error"))
    if getattr(args, "train_file", None):
        from recstack.data.files import read_interactions_file

        return read_interactions_file(args.train_file, duplicates=args.duplicates)
    return load_dataset(args.dataset, getattr(args, "data_path", None))


def _engine_fit(args: argparse.Namespace) -> Callable | None:
    """`fit(model, train, valid)` for `--engine spark` (MLlib ALS), None for in-process fitting."""
    if getattr(args, "engine", "local") != "spark":
        return None
    if args.model != "als":
        raise RecstackError(f"--engine spark trains als only (MLlib ALS), not {args.model!r}")
    from recstack.distributed.spark import fit_als_spark, spark_session

    spark = spark_session(args.master)
    return lambda model, train, valid: fit_als_spark(spark, train, model.config, staging=args.staging)


def _add_engine_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=["local", "spark"], default="local",
                   help="spark: fit with Spark MLlib ALS (als only); the model folder is the same")
    p.add_argument("--master", default="local[*]", help="Spark master: local[*], local[N] or spark://HOST:7077")
    p.add_argument("--staging", metavar="DIR",
                   help="folder for files handed to Spark (default: a temporary one; on a cluster: "
                        "a path every worker can read)")


def _rerank(args: argparse.Namespace):
    """`--diversity λ --novelty ν [--exclude-genre G …]` as a `Rerank`, or None when not asked."""
    from recstack.rerank import Rerank

    settings = Rerank(getattr(args, "diversity", 0.0) or 0.0, getattr(args, "novelty", 0.0) or 0.0,
                      tuple(getattr(args, "exclude_genre", None) or ()),
                      getattr(args, "similarity", None) or "genre")
    return settings if settings.active else None


def _add_rerank_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--diversity", type=float, default=0.0, metavar="λ",
                   help="MMR re-ranking: 0 relevance only (default) … 1 diversity only")
    p.add_argument("--novelty", type=float, default=0.0, metavar="ν", help="popularity penalty (0: none)")
    p.add_argument("--exclude-genre", action="append", metavar="GENRE", help="never show this genre; repeatable")
    p.add_argument("--similarity", choices=["genre", "embedding"], default="genre",
                   help="what diversity measures: genre vectors or the model's item vectors")


def _add_model_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model name (see `recstack models`)")
    p.add_argument("--param", "-p", action="append", metavar="NAME=VALUE", help="hyperparameter; repeatable")
    p.add_argument("--config", metavar="FILE", help="JSON file of hyperparameters (or a result record)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def cmd_models(args: argparse.Namespace) -> int:
    from recstack.models.base import describe_model, model_names

    described = [describe_model(name) for name in model_names()]
    if args.json:
        _emit({"models": described})
        return 0
    for d in described:
        if "error" in d:
            print(f"{d['name']}  ({d['error']})\n")
            continue
        print(f"{d['name']}  —  {d['summary']}")
        print(f"    abilities: {', '.join(d['ability_text']) or 'fit and score only'}")
        for p in d["params"]:
            text = f"  {p['help']}" if p["help"] else ""
            print(f"    {p['name']}: {p['type']} = {p['default']!r}{text}")
        print()
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import time

    from recstack.models.base import make_model
    from recstack.persist import export_seed_layout, load_model, save_model

    data = _load_data(args)
    model = make_model(args.model, _params(args))
    _err(f"training {args.model} on {data.name} ({len(data):,} interactions) …")
    fit = _engine_fit(args)
    t0 = time.perf_counter()
    model = fit(model, data, None) if fit else model.fit(data)
    seconds = time.perf_counter() - t0
    info: dict[str, Any] = {"fit_seconds": round(seconds, 3)}
    for key in ("epochs_", "best_epoch_"):
        if hasattr(model, key):
            info[key.rstrip("_")] = int(getattr(model, key))
    hist = getattr(model, "valid_rmse_history_", None)
    if hist is not None and len(hist):
        info["valid_rmse"] = float(hist.min())
        info["train_rmse"] = float(model.train_rmse_history_[info.get("best_epoch", len(hist)) - 1])
    out = save_model(args.out, model, data, metrics=info)
    if args.export_seed:
        export_seed_layout(args.export_seed, load_model(out))
    record = {"model": args.model, "config": model.config.to_dict(), "out": str(out), **info}
    if args.json:
        _emit(record)
    else:
        _err(", ".join(f"{k}={v}" for k, v in info.items()))
        print(out)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from recstack.evaluate import Fold, run_protocol

    progress: Callable[[str], None] | None = None if args.json else _err
    if args.protocol == "custom":
        if not (args.train_file and args.test_file):
            raise RecstackError("protocol custom needs --train FILE and --test FILE")
        from recstack.data.files import read_train_test, share_vocabularies

        if any(Path(f).suffix == ".parquet" or Path(f).is_dir() for f in (args.train_file, args.test_file)):
            train, test = share_vocabularies(_read_any(args.train_file, args.duplicates),
                                             _read_any(args.test_file, args.duplicates))
        else:
            train, test = read_train_test(args.train_file, args.test_file, duplicates=args.duplicates)
        record = run_protocol(args.model, "custom", params=_params(args), seed=args.seed,
                              folds=[Fold("custom", train, test)], task=args.task, k=args.k,
                              progress=progress, fit=_engine_fit(args), rerank=_rerank(args))
    else:
        data = None
        if args.data:
            data = _read_any(args.data, args.duplicates)
        elif args.dataset != "ml-100k" or args.data_path:
            from recstack.data.movielens import load_dataset

            data = load_dataset(args.dataset, args.data_path)
        record = run_protocol(args.model, args.protocol, data=data, params=_params(args),
                              seed=args.seed, k=args.k, fold_limit=args.folds, progress=progress,
                              fit=_engine_fit(args), rerank=_rerank(args))
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=2, default=str))
    if args.json:
        _emit(record)
    else:
        sd = record["metrics_sd"]
        for key, value in record["metrics"].items():
            extra = f" ± {sd[key]:.4f}" if key in sd else ""
            print(f"{key:>14}: {value:.4f}{extra}")
        if record["protocol"] == "ml100k-folds":
            u1 = record["folds"][0]["metrics"]
            print(f"{'u1 rmse':>14}: {u1['rmse']:.4f}")
        print(f"{'fit seconds':>14}: {record['fit_seconds']:.2f}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from recstack.tune import tune, tuning_split

    data = None
    if args.dataset != "ml-100k" or args.data_path:
        from recstack.data.movielens import load_dataset

        data = load_dataset(args.dataset, args.data_path)
    split = tuning_split(args.protocol, data, seed=args.seed)
    _err(f"tuning {args.model} on {args.protocol}'s validation part: {len(split.train):,} train, "
         f"{len(split.valid):,} validation rows (the test part is never used)")
    result = tune(args.model, split, args.trials, fixed=_params(args), seed=args.seed,
                  timeout=args.timeout, progress=None if args.json else _err)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result.config, indent=2) + "\n")
    if args.json:
        _emit({**result.to_dict(), "out": args.out})
    else:
        _err(f"best {result.objective} = {result.best_value:.4f} after {len(result.trials)} trials "
             f"({result.seconds:.1f}s)")
        print(json.dumps(result.config, indent=2) if not args.out else args.out)
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from recstack.persist import load_model
    from recstack.recommend import Recommender

    rec = Recommender(load_model(args.dir))
    seen: set[str] = set()
    if args.data:
        data = _read_any(args.data, "keep-last")
        if str(args.user) in data.user_index:
            seen = set(data.item_ids[data.item[data.user == data.user_index[str(args.user)]]].tolist())
    result = rec.for_user(args.user, k=args.k + len(seen), fallback=args.fallback, rerank=_rerank(args))
    if seen:  # the user's up-to-date history (--data): also excluded
        result = _without(result, seen, args.k)
    explanations: dict[str, dict[str, Any]] = {}
    if args.explain and not result.fallback:
        from recstack.models.base import require_ability

        require_ability(rec.model, "explains")
        explanations = {i: rec.explain(args.user, i, top=5) for i in result.ids.tolist()}
    if args.json:
        out = result.to_dict()
        for row in out["items"]:
            if row["item"] in explanations:
                row["explanation"] = explanations[row["item"]]
        _emit(out)
        return 0
    if result.fallback:
        _err(f"user {args.user!r} is unknown to this model; showing the most popular movies")
    _err(f"{'#':>3}  {'title':<55} {'genres':<40} {result.label if not result.fallback else ''}")
    for row in result.rows():
        score = f"{row['score']:.2f}" if row.get("score") is not None else "-"
        genres = "|".join(row.get("genres") or [])
        print(f"{row['rank']:>3}. {row['label']:<55} {genres:<40} {score}")
        if row["item"] in explanations:
            liked = [p["label"] for p in explanations[row["item"]]["parts"] if "item" in p and p["contribution"] > 0]
            print(f"     because you rated {' and '.join(liked[:2])}" if liked
                  else "     (no single rated movie stands out)")
    return 0


def cmd_ab_plan(args: argparse.Namespace) -> int:
    from recstack.ab.stats import sample_size

    n = sample_size(args.base_rate, args.lift, args.alpha, args.power)
    record = {"users_per_variant": n, "base_rate": args.base_rate, "lift": args.lift,
              "alpha": args.alpha, "power": args.power, "test": "two-sided two-proportion z"}
    if args.json:
        _emit(record)
    else:
        print(f"{n:,} users per variant to detect a {args.lift:+.1%} relative lift on a {args.base_rate:.1%} "
              f"base rate (two-sided α={args.alpha}, power {args.power})")
    return 0


def cmd_batch_recommend(args: argparse.Namespace) -> int:
    import time

    from recstack.distributed import batch
    from recstack.persist import load_model

    saved = load_model(args.dir)
    model, train = saved.model, saved.train
    data = _read_any(args.data, "keep-last") if args.data else None
    t0 = time.perf_counter()
    if args.engine == "local":
        users, items, scores = batch.local_top_k(model, batch.seen_matrix(train, data), args.k)
    else:
        from recstack.distributed.spark import spark_session, spark_top_k

        X, Y = batch.factor_arrays(model)
        spark = spark_session(args.master)
        users, items, scores = spark_top_k(spark, X, Y, batch.seen_interactions(train, data), args.k,
                                           staging=args.staging)
        scores = scores + batch.score_offset(model, users)
    seconds = time.perf_counter() - t0
    out = batch.write_top_k(args.out, train, users, items, scores)
    info = {"out": str(out), "engine": args.engine, "users": int(len(users)), "k": args.k,
            "rows": int((items >= 0).sum()), "seconds": round(seconds, 3)}
    if args.json:
        _emit(info)
    else:
        _err(f"top-{args.k} for {len(users):,} users in {seconds:.1f}s ({args.engine})")
        print(out)
    return 0


def _without(result, seen: set[str], k: int):
    """`result` (an ItemList) without the `seen` item ids, cut to k and ranked 1..k again."""
    from dataclasses import replace

    keep = [n for n, i in enumerate(result.ids.tolist()) if i not in seen][:k]
    return replace(result, ids=result.ids[keep], scores=result.scores[keep], ranks=None,
                   meta=tuple(result.meta[n] for n in keep) if result.meta else ())


def cmd_web(args: argparse.Namespace) -> int:
    from recstack.web.app import launch

    launch(args.dir, host=args.host, port=args.port)
    return 0


DATA_HELP = "a Parquet table of interactions (user, item[, rating, timestamp]): FILE.parquet or DIR"


# ---- parser -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recstack", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="log more to stderr")
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="fetch and verify data sets")
    dsub = data.add_subparsers(dest="data_command", required=True)
    fetch = dsub.add_parser("fetch", help="fetch, verify and cache a data set; prints its folder")
    fetch.add_argument("name", help="ml-100k, ml-1m, ml-10m, ml-20m, ml-25m, ml-32m")
    fetch.add_argument("--path", help="use this local folder (or zip) instead of downloading")
    fetch.add_argument("--json", action="store_true")
    fetch.set_defaults(func=cmd_data_fetch)
    synth = dsub.add_parser("synth", help="write MovieLens-like synthetic ratings as DIR/ratings.parquet")
    synth.add_argument("--users", type=int, default=162_541)
    synth.add_argument("--items", type=int, default=59_047)
    synth.add_argument("--ratings", type=int, default=25_000_095)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--out", required=True, help="folder (or .parquet file) to write")
    synth.add_argument("--json", action="store_true")
    synth.set_defaults(func=cmd_data_synth)

    models = sub.add_parser("models", help="list models: hyperparameters (type, default, meaning) and abilities")
    models.add_argument("--json", action="store_true")
    models.set_defaults(func=cmd_models)

    train = sub.add_parser("train", help="fit a model on a whole data set and save it to a folder")
    _add_model_opts(train)
    train.add_argument("--dataset", default="ml-100k")
    train.add_argument("--data-path", help="local folder holding the data set")
    train.add_argument("--data", metavar="FILE|DIR", help=DATA_HELP)
    train.add_argument("--train", dest="train_file", metavar="FILE", help="train on your own ratings file")
    train.add_argument("--duplicates", choices=["error", "keep-last"], default="error")
    train.add_argument("--out", required=True, help="folder to write the model to")
    train.add_argument("--export-seed", metavar="DIR", help="also write .npy embeddings + JSON id maps")
    _add_engine_opts(train)
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="run a named protocol and report metrics")
    _add_model_opts(ev)
    ev.add_argument("--protocol", required=True,
                    help="ml100k-folds, random-80-20, msr-75, leave-last-out, custom")
    ev.add_argument("--dataset", default="ml-100k")
    ev.add_argument("--data-path", help="local folder holding the data set")
    ev.add_argument("--data", metavar="FILE|DIR", help=DATA_HELP)
    ev.add_argument("--train", dest="train_file", metavar="FILE", help="custom protocol: training file")
    ev.add_argument("--test", dest="test_file", metavar="FILE", help="custom protocol: test file")
    ev.add_argument("--task", choices=["rating", "topn"], default="rating", help="custom protocol's task")
    ev.add_argument("--duplicates", choices=["error", "keep-last"], default="error")
    ev.add_argument("-k", type=int, default=None, help="cut-off for ranking metrics (default 10)")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--folds", type=int, default=None, help="run only the first N folds")
    ev.add_argument("--out", help="also write the record to this JSON file")
    _add_engine_opts(ev)
    _add_rerank_opts(ev)
    ev.set_defaults(func=cmd_evaluate)

    tn = sub.add_parser("tune", help="search hyperparameters with Optuna on a protocol's validation part")
    _add_model_opts(tn)
    tn.add_argument("--protocol", required=True, help="ml100k-folds, random-80-20, msr-75, leave-last-out")
    tn.add_argument("--trials", type=int, default=20, help="number of Optuna trials (default 20)")
    tn.add_argument("--timeout", type=float, default=None, help="stop starting trials after S seconds")
    tn.add_argument("--dataset", default="ml-100k")
    tn.add_argument("--data-path", help="local folder holding the data set")
    tn.add_argument("--seed", type=int, default=0)
    tn.add_argument("--out", help="write the best full config (JSON) here, for --config FILE")
    tn.set_defaults(func=cmd_tune)

    rec = sub.add_parser("recommend", help="top-k unseen items for a user of a saved model")
    rec.add_argument("dir", help="model folder written by `recstack train`")
    rec.add_argument("--user", required=True, help="external user id")
    rec.add_argument("-k", type=int, default=10)
    rec.add_argument("--data", metavar="FILE|DIR",
                     help="interactions (Parquet or a ratings file) whose items for this user are also excluded")
    rec.add_argument("--fallback", choices=["none", "popular"], default="none",
                     help="what an unknown user gets")
    rec.add_argument("--json", action="store_true")
    rec.add_argument("--explain", action="store_true", help="say which rated items each recommendation comes from")
    _add_rerank_opts(rec)
    rec.set_defaults(func=cmd_recommend)

    br = sub.add_parser("batch-recommend", help="top-k for every user of a saved model, as Parquet")
    br.add_argument("dir", help="model folder written by `recstack train`")
    br.add_argument("-k", type=int, default=10)
    br.add_argument("--data", metavar="FILE|DIR",
                    help="what each user has seen (default: the model's own training data)")
    br.add_argument("--out", required=True, help="Parquet file to write (user, item, rank, score)")
    br.add_argument("--json", action="store_true")
    _add_engine_opts(br)
    br.set_defaults(func=cmd_batch_recommend)

    ab = sub.add_parser("ab", help="A/B tests: plan sample sizes")
    absub = ab.add_subparsers(dest="ab_command", required=True)
    plan = absub.add_parser("plan", help="users per variant for a two-sided two-proportion z-test")
    plan.add_argument("--base-rate", type=float, required=True, help="control's conversion rate, e.g. 0.1")
    plan.add_argument("--lift", type=float, required=True, help="relative lift to detect (0.05 = +5%%)")
    plan.add_argument("--alpha", type=float, default=0.05)
    plan.add_argument("--power", type=float, default=0.8)
    plan.add_argument("--json", action="store_true")
    plan.set_defaults(func=cmd_ab_plan)

    web = sub.add_parser("web", help="open the web page for a saved model")
    web.add_argument("dir")
    web.add_argument("--host", default="127.0.0.1")
    web.add_argument("--port", type=int, default=7860)
    web.set_defaults(func=cmd_web)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(message)s")
    from recstack import progress

    progress.enable(not getattr(args, "json", False))
    try:
        return int(args.func(args) or 0)
    except RecstackError as exc:
        _err(f"error: {exc}")
        return 2
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())

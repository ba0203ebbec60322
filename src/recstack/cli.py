"""`recstack ...`: the command line. `--json` prints exactly one JSON object on stdout;
progress and logs go to stderr. Errors print one line naming the problem and exit 2."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
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
    """`--config` (one set of hyperparameters; its `chosen` record set aside) overridden by `--param`."""
    from recstack.models.config import parse_params, read_config_file

    params: dict[str, Any] = {}
    if getattr(args, "config", None):
        params.update(read_config_file(args.config))
    params.update(parse_params(args.param or []))
    return params


def _protocol_params(args: argparse.Namespace) -> dict[str, Any]:
    """run_protocol's keywords from `--config`/`--param`: a per-fold config applies fold by fold."""
    from recstack.models.config import load_config_file, parse_params

    if not getattr(args, "config", None):
        return {"params": parse_params(args.param or [])}
    cf = load_config_file(args.config)
    extra = parse_params(args.param or [])
    if cf.folds:
        return {"params": extra, "fold_params": cf.folds, "provenance": cf.chosen}
    return {"params": {**cf.params, **extra}, "provenance": cf.chosen}


def _is_parquet(p: Path) -> bool:
    """Whether a ratings path is Parquet (a .parquet file or a folder of them), not delimited text."""
    return p.suffix == ".parquet" or p.is_dir()


def _read_any(path: str, duplicates: str = "error", fit_only: bool = False):
    """A ratings file: Parquet (a .parquet file or a folder of them) or delimited text.
    `fit_only`: the rows feed a fit that looks neither at time nor at row order, so Parquet is
    read the lean way (no timestamp column, rows in the order of their CSR: `read_parquet`)."""
    p = Path(path)
    if _is_parquet(p):
        from recstack.data.parquet import read_parquet

        if fit_only:
            return read_parquet(p, duplicates=duplicates, timestamps=False, order="user")
        return read_parquet(p, duplicates=duplicates)
    from recstack.data.files import read_interactions_file

    return read_interactions_file(p, duplicates=duplicates)


def _load_data(args: argparse.Namespace, fit_only: bool = False):
    if getattr(args, "data", None):
        return _read_any(args.data, getattr(args, "duplicates", "error"), fit_only)
    if getattr(args, "train_file", None):
        from recstack.data.files import read_interactions_file

        return read_interactions_file(args.train_file, duplicates=args.duplicates)
    from recstack.data.movielens import load_dataset

    return load_dataset(args.dataset, getattr(args, "data_path", None))


def _attach_features(args: argparse.Namespace, *parts):
    """The parts with `--item-features`, `--user-features` and `--item-vectors` attached (if given)."""
    items_f, users_f, vec_f = (getattr(args, k, None) for k in ("item_features", "user_features", "item_vectors"))
    if not (items_f or users_f or vec_f):
        return parts
    from recstack.features import read_feature_file, read_item_vectors, with_features

    items = read_feature_file(items_f, "item") if items_f else None
    users = read_feature_file(users_f, "user") if users_f else None
    vectors = read_item_vectors(vec_f, getattr(args, "item_vector_ids", None)) if vec_f else None
    out = tuple(with_features(p, items, users, vectors) for p in parts)
    for note in out[0].meta.get("feature_notes", []):
        _err(f"note: {note}")
    return out


def _add_feature_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--item-features", metavar="FILE", help="CSV/TSV with header: item id, then feature columns")
    p.add_argument("--user-features", metavar="FILE", help="CSV/TSV with header: user id, then feature columns")
    p.add_argument("--item-vectors", metavar="FILE", help="dense item vectors: Parquet (id, vector) or .npy")
    p.add_argument("--item-vector-ids", metavar="FILE", help="ids for a .npy of vectors, one per line "
                   "(default: FILE with .ids.txt)")


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


def _check_implicit(model: Any, data: Any, task: str) -> None:
    """Refuse to estimate ratings from a `user item` file (implicit feedback, every rating 1)."""
    if not data.meta.get("implicit"):
        return
    from recstack.models.base import has_ability

    if (model is not None and has_ability(model, "predicts_ratings")) or (model is None and task == "rating"):
        what = (f"model {model.name!r} predicts ratings: use a ranking model (als, ease, item-knn, "
                "popular, …)" if model is not None else "--task rating needs ratings: use --task topn")
        raise RecstackError(f"{data.meta.get('path', data.name)} holds user–item pairs only "
                            f"(implicit feedback, rating 1) but {what}")


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

    from recstack.models.base import get_model_class, make_model
    from recstack.persist import check_model_target, check_seed_target, export_seed_layout, load_model, save_model

    check_model_target(args.out)  # refuse a folder that is not ours before spending the fit
    if args.export_seed:
        check_seed_target(args.export_seed)
    params = _params(args)
    max_seq = None
    # a model that fits from the rating matrix alone reads Parquet without timestamps, rows in CSR order
    lean = get_model_class(args.model).matrix_only
    if args.db:
        data, max_seq = _train_on_store(args, params)
    else:
        (data,) = _attach_features(args, _load_data(args, fit_only=lean))
    model = make_model(args.model, params)
    _check_implicit(model, data, "rating")
    lean_read = lean and not args.db and getattr(args, "data", None) and _is_parquet(Path(args.data))
    untimed = f"; timestamps not read: {args.model} fits from the rating matrix alone" if lean_read else ""
    _err(f"training {args.model} on {data.name} ({len(data):,} interactions{untimed}) …")
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
    if max_seq is not None:
        from recstack.serve.training import write_events_marker

        write_events_marker(out, max_seq, args.db)
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
    from recstack.persist import check_json_target, write_json_file

    if args.out:
        check_json_target(args.out, "result record")
    progress: Callable[[str], None] | None = None if args.json else _err
    if args.protocol == "stream":
        return _evaluate_stream(args, progress)
    if args.protocol == "custom":
        if not (args.train_file and args.test_file):
            raise RecstackError("protocol custom needs --train FILE and --test FILE")
        from recstack.data.files import read_train_test, share_vocabularies

        if any(Path(f).suffix == ".parquet" or Path(f).is_dir() for f in (args.train_file, args.test_file)):
            train, test = share_vocabularies(_read_any(args.train_file, args.duplicates),
                                             _read_any(args.test_file, args.duplicates))
        else:
            train, test = read_train_test(args.train_file, args.test_file, duplicates=args.duplicates)
        _check_implicit(None, train, args.task)
        train, test = _attach_features(args, train, test)
        record = run_protocol(args.model, "custom", **_protocol_params(args), seed=args.seed,
                              folds=[Fold("custom", train, test)], task=args.task, k=args.k,
                              progress=progress, fit=_engine_fit(args), rerank=_rerank(args))
    else:
        data = None
        if args.data:
            data = _read_any(args.data, args.duplicates)
        elif args.dataset != "ml-100k" or args.data_path:
            from recstack.data.movielens import load_dataset

            data = load_dataset(args.dataset, args.data_path)
        if args.item_features or args.user_features or args.item_vectors:
            from recstack.data.movielens import load_dataset

            (data,) = _attach_features(args, data if data is not None else load_dataset(args.dataset))
        protocol = args.protocol
        if protocol == "cold-users" and args.given != 5:
            protocol = f"cold-users-given{args.given}"
        elif args.given != 5:
            raise RecstackError("--given applies to --protocol cold-users only")
        record = run_protocol(args.model, protocol, data=data, **_protocol_params(args),
                              seed=args.seed, k=args.k, fold_limit=args.folds, progress=progress,
                              fit=_engine_fit(args), rerank=_rerank(args))
    if args.out:
        write_json_file(args.out, record, "result record")
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


def _evaluate_stream(args: argparse.Namespace, progress: Callable[[str], None] | None) -> int:
    """`evaluate --protocol stream --update none|incremental|retrain`: the prequential replay."""
    from recstack.data.movielens import load_dataset
    from recstack.stream import run_stream

    data = load_dataset(args.dataset, args.data_path)
    record = run_stream(args.model, data, _params(args), update=args.update or "incremental",
                        retrain_every=args.retrain_every, k=args.k or 10, seed=args.seed, progress=progress)
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=2, default=str))
    if args.json:
        _emit(record)
    else:
        for key, value in record["metrics"].items():
            print(f"{key:>14}: {value:.4f}")
        print(f"{'user-days':>14}: {record['user_days']}")
        print(f"{'update seconds':>14}: {record['update_seconds']:.3f}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from recstack.persist import check_json_target, write_json_file
    from recstack.tune import chosen_record, tune, tuning_splits

    if args.out:
        check_json_target(args.out, "config file")
    data = None
    if args.dataset != "ml-100k" or args.data_path:
        from recstack.data.movielens import load_dataset

        data = load_dataset(args.dataset, args.data_path)
    splits = tuning_splits(args.protocol, data, seed=args.seed)
    fixed = _params(args)
    results = {}
    for name, split in splits.items():
        where = f"fold {name}'s" if len(splits) > 1 else f"{args.protocol}'s"
        _err(f"tuning {args.model} on {where} validation part: {len(split.train):,} train, "
             f"{len(split.valid):,} validation rows, {split.carve} (the test part is never used)")
        results[name] = tune(args.model, split, args.trials, fixed=fixed, seed=args.seed,
                             timeout=args.timeout, progress=None if args.json else _err)
        _err(f"{name}: best {results[name].objective} = {results[name].best_value:.4f} after "
             f"{len(results[name].trials)} trials ({results[name].seconds:.1f}s)")
    chosen = chosen_record(results, splits, args.trials, args.seed, fixed)
    if len(results) > 1:  # nested: one choice per fold, applied fold by fold by `evaluate --config`
        config: dict[str, Any] = {"folds": {name: r.config for name, r in results.items()}, "chosen": chosen}
    else:
        config = {**next(iter(results.values())).config, "chosen": chosen}
    if args.out:
        write_json_file(args.out, config, "config file")
    if args.json:
        if len(results) > 1:
            first = next(iter(results.values()))
            _emit({"model": args.model, "protocol": args.protocol, "objective": first.objective,
                   "direction": first.direction, "folds": {n: r.to_dict() for n, r in results.items()},
                   "config": config, "out": args.out})
        else:
            _emit({**next(iter(results.values())).to_dict(), "config": config, "out": args.out})
    else:
        print(json.dumps(config, indent=2) if not args.out else args.out)
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
            e = explanations[row["item"]]
            liked = [p["label"] for p in e["parts"] if "item" in p and p["contribution"] > 0]
            hint = "" if e["exact"] else f" (hint: {e.get('method') or 'approximate'}, not an exact sum)"
            print(f"     because you rated {' and '.join(liked[:2])}{hint}" if liked
                  else f"     (no single rated movie stands out){hint}")
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


def cmd_serve(args: argparse.Namespace) -> int:
    import os
    import tempfile

    import uvicorn

    from recstack.serve.app import Settings, default_db
    from recstack.serve.registry import resolve_model_dir

    resolve_model_dir(args.path)  # a clear error before any worker starts
    settings = Settings(path=str(Path(args.path).resolve()), db=args.db or default_db(args.path),
                        open_writes=args.open_writes, api_key_file=args.api_key_file)
    if not settings.api_key():
        _err("no API key (RECSTACK_API_KEY or --api-key-file): writes and admin calls will be refused"
             + ("; event posts are open (--open-writes)" if args.open_writes else ""))
    os.environ["RECSTACK_SERVE_SETTINGS"] = json.dumps(settings.__dict__)
    if args.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="recstack-metrics-")
    where = settings.db.split("@")[-1]  # never print a password
    _err(f"serving {args.path} on http://{args.host}:{args.port} (docs at /docs; events in {where})")
    # http/loop "auto": httptools and uvloop when installed (uvicorn[standard]), else h11 and asyncio
    uvicorn.run("recstack.serve.app:app_from_env", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level="warning", access_log=False, server_header=False)
    return 0


def cmd_registry(args: argparse.Namespace) -> int:
    from recstack.serve.registry import Registry

    reg = Registry(args.registry)
    if args.registry_command == "add":
        out: dict[str, Any] = {"version": reg.add(args.model_dir), "active": None}
        out["active"] = reg.active()
    elif args.registry_command == "activate":
        out = reg.activate(args.version, force=args.force)
    elif args.registry_command == "rollback":
        out = reg.rollback()
    else:
        out = {"active": reg.active(), "versions": reg.list()}
    if args.json or args.registry_command == "list":
        _emit(out)
    else:
        if out.get("warning"):
            _err(f"warning: {out['warning']}")
        print(out["version"])
    return 0


def cmd_events_export(args: argparse.Namespace) -> int:
    from recstack.serve.store import open_store

    store = open_store(args.db)
    try:
        n = store.export_parquet(args.out)
    finally:
        store.close()
    _err(f"{n:,} events written to {args.out}")
    if args.json:
        _emit({"events": n, "out": args.out})
    return 0


def _train_on_store(args: argparse.Namespace, params: dict[str, Any]):
    """(training data from --db events [+ --base data set], max event seq) for `recstack train --db`."""
    from recstack.models.base import get_model_class
    from recstack.serve.store import open_store
    from recstack.serve.training import parse_event_weights, training_data

    weights = parse_event_weights(params.pop("event_weights", None))
    explicit = bool(get_model_class(args.model)(params).explicit)
    base = _load_data(args) if args.base else None
    store = open_store(args.db)
    try:
        return training_data(store, explicit, base, weights)
    finally:
        store.close()


def _add_serve_commands(sub: Any) -> None:
    sv = sub.add_parser("serve", help="HTTP API over a model folder or registry (OpenAPI docs at /docs)")
    sv.add_argument("path", help="a saved model folder or a model registry")
    sv.add_argument("--db", help="sqlite:////abs/path/events.db or postgresql://USER@HOST:PORT/DB "
                                 "(default: events.db in the registry, else in the data directory)")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--workers", type=int, default=1)
    sv.add_argument("--open-writes", action="store_true", help="event posts need no API key")
    sv.add_argument("--api-key-file", help="read the API key from this file (else RECSTACK_API_KEY)")
    sv.set_defaults(func=cmd_serve)

    rg = sub.add_parser("registry", help="model registry: add, activate, rollback, list")
    rsub = rg.add_subparsers(dest="registry_command", required=True)
    for name, text in (("add", "copy a saved model folder in as a new version (the first becomes active)"),
                       ("activate", "make a version active (refuses a clearly worse one unless --force)"),
                       ("rollback", "re-activate the previously active version"), ("list", "versions as JSON")):
        r = rsub.add_parser(name, help=text)
        r.add_argument("registry", help="registry folder")
        if name == "add":
            r.add_argument("model_dir")
        if name == "activate":
            r.add_argument("version", type=int)
            r.add_argument("--force", action="store_true")
        r.add_argument("--json", action="store_true")
        r.set_defaults(func=cmd_registry)

    ev = sub.add_parser("events", help="the event store")
    esub = ev.add_subparsers(dest="events_command", required=True)
    ex = esub.add_parser("export", help="write every stored event (with its event_id) to Parquet")
    ex.add_argument("--db", required=True)
    ex.add_argument("--out", required=True)
    ex.add_argument("--json", action="store_true")
    ex.set_defaults(func=cmd_events_export)


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
    from recstack.errors import ConfigError

    if (args.dir is None) == (args.api is None):
        raise ConfigError("web: give a saved model folder DIR, or --api URL of a running service (not both)")
    if args.api is not None:
        from recstack.web.remote import launch_remote

        key = os.environ.get("RECSTACK_API_KEY")
        if args.api_key_file:
            try:
                key = Path(args.api_key_file).read_text().strip()
            except OSError as exc:
                raise ConfigError(f"--api-key-file {args.api_key_file}: cannot read it ({exc.strerror})") from None
        launch_remote(args.api, api_key=key or None, host=args.host, port=args.port, user=args.user)
        return 0
    from recstack.web.app import launch

    launch(args.dir, host=args.host, port=args.port)
    return 0


DATA_HELP = "a Parquet table of interactions (user, item[, rating, timestamp]): FILE.parquet or DIR"


# ---- parser -----------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse with recstack's one-line errors (exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def _int_at_least(low: int, high: int | None = None) -> Callable[[str], int]:
    """argparse type: an integer in low..high (high: no upper bound when None)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            span = f"≥ {low}" if high is None else f"in {low}..{high}"
            raise argparse.ArgumentTypeError(f"must be {span}, got {value}")
        return value
    return parse


def _positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _verbose_everywhere(parser: argparse.ArgumentParser) -> None:
    """Accept `-v` after the subcommand too (`recstack train mf -v …`)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                sub.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                                 help="log more to stderr; tracebacks for errors")
                _verbose_everywhere(sub)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="recstack", description=__doc__)
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
    train.add_argument("--db", metavar="URL", help="train on the events stored in this database "
                                                  "(--param event_weights=click=0.5,view=0.2 for ranking models)")
    train.add_argument("--base", action="store_true", help="with --db: also train on the --dataset rows")
    _add_feature_opts(train)
    _add_engine_opts(train)
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="run a named protocol and report metrics")
    _add_model_opts(ev)
    ev.add_argument("--protocol", required=True,
                    help="ml100k-folds, random-80-20, msr-75, leave-last-out, stream, cold-items, cold-users, custom")
    ev.add_argument("--given", type=int, choices=[1, 3, 5], default=5,
                    help="cold-users: how many first ratings each held-out user brings (default 5)")
    ev.add_argument("--dataset", default="ml-100k")
    ev.add_argument("--data-path", help="local folder holding the data set")
    ev.add_argument("--data", metavar="FILE|DIR", help=DATA_HELP)
    ev.add_argument("--train", dest="train_file", metavar="FILE", help="custom protocol: training file")
    ev.add_argument("--test", dest="test_file", metavar="FILE", help="custom protocol: test file")
    ev.add_argument("--task", choices=["rating", "topn"], default="rating", help="custom protocol's task")
    ev.add_argument("--duplicates", choices=["error", "keep-last"], default="error")
    ev.add_argument("-k", type=_int_at_least(1), default=None, help="cut-off for ranking metrics (default 10)")
    ev.add_argument("--seed", type=_int_at_least(0), default=0,
                    help="the protocol's and the model's seed (overrides a seed in --config/--param)")
    ev.add_argument("--folds", type=_int_at_least(1), default=None, help="run only the first N folds")
    ev.add_argument("--out", help="also write the record to this JSON file")
    _add_feature_opts(ev)
    ev.add_argument("--update", choices=["none", "incremental", "retrain"], default=None,
                    help="stream protocol: how the model learns each day's events (default incremental)")
    ev.add_argument("--retrain-every", type=int, default=1, metavar="N",
                    help="stream protocol with --update retrain: refit every N days (default 1)")
    _add_engine_opts(ev)
    _add_rerank_opts(ev)
    ev.set_defaults(func=cmd_evaluate)

    tn = sub.add_parser("tune", help="search hyperparameters with Optuna on a protocol's validation part")
    _add_model_opts(tn)
    tn.add_argument("--protocol", required=True, help="ml100k-folds, random-80-20, msr-75, leave-last-out")
    tn.add_argument("--trials", type=_int_at_least(1), default=20, help="number of Optuna trials (default 20)")
    tn.add_argument("--timeout", type=_positive_float, default=None, help="stop starting trials after S seconds")
    tn.add_argument("--dataset", default="ml-100k")
    tn.add_argument("--data-path", help="local folder holding the data set")
    tn.add_argument("--seed", type=_int_at_least(0), default=0)
    tn.add_argument("--out", help="write the chosen config (JSON, per fold for ml100k-folds, with its "
                    "`chosen` record) here, for --config FILE")
    tn.set_defaults(func=cmd_tune)

    rec = sub.add_parser("recommend", help="top-k unseen items for a user of a saved model")
    rec.add_argument("dir", help="model folder written by `recstack train`")
    rec.add_argument("--user", required=True, help="external user id")
    rec.add_argument("-k", type=_int_at_least(1), default=10)
    rec.add_argument("--data", metavar="FILE|DIR",
                     help="interactions (Parquet or a ratings file) whose items for this user are also excluded")
    rec.add_argument("--fallback", choices=["none", "popular"], default="none",
                     help="what an unknown user gets")
    rec.add_argument("--json", action="store_true")
    rec.add_argument("--explain", action="store_true", help="say which rated items each recommendation comes from")
    _add_rerank_opts(rec)
    rec.set_defaults(func=cmd_recommend)

    _add_serve_commands(sub)
    br = sub.add_parser("batch-recommend", help="top-k for every user of a saved model, as Parquet")
    br.add_argument("dir", help="model folder written by `recstack train`")
    br.add_argument("-k", type=int, default=10)
    br.add_argument("--data", metavar="FILE|DIR",
                    help="what each user has seen (default: the model's own training data)")
    br.add_argument("--out", required=True, help="Parquet file to write (user, item, rank, score)")
    br.add_argument("--json", action="store_true")
    _add_engine_opts(br)
    br.set_defaults(func=cmd_batch_recommend)

    ab = sub.add_parser("ab", help="A/B tests: plan, create/start/stop/force, report, simulate")
    absub = ab.add_subparsers(dest="ab_command", required=True)
    plan = absub.add_parser("plan", help="users per variant for a two-sided two-proportion z-test")
    plan.add_argument("--base-rate", type=float, required=True, help="control's conversion rate, e.g. 0.1")
    plan.add_argument("--lift", type=float, required=True, help="relative lift to detect (0.05 = +5%%)")
    plan.add_argument("--alpha", type=float, default=0.05)
    plan.add_argument("--power", type=float, default=0.8)
    plan.add_argument("--json", action="store_true")
    plan.set_defaults(func=cmd_ab_plan)
    from recstack.ab.commands import add_ab_commands

    add_ab_commands(absub, _int_at_least)

    web = sub.add_parser("web", help="open the web page for a saved model, or over a running service (--api)")
    web.add_argument("dir", nargs="?", help="a saved model folder (or use --api)")
    web.add_argument("--api", metavar="URL", help="render from the HTTP service at URL (recstack serve) instead")
    web.add_argument("--api-key-file", metavar="FILE",
                     help="with --api: the service's write key (else RECSTACK_API_KEY) for ratings and preferences")
    web.add_argument("--user", default="1", help="with --api: the user the page opens on (default 1)")
    web.add_argument("--host", default="127.0.0.1")
    web.add_argument("--port", type=_int_at_least(1, 65535), default=7860)
    web.set_defaults(func=cmd_web)
    _verbose_everywhere(p)
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
        if args.verbose:
            traceback.print_exc()
        _err(f"error: {exc}")
        return 2
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:  # the reader went away (`recstack models | head`): stop quietly
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 1
    except Exception as exc:  # a bug or an environment problem: one line, the traceback on -v
        if args.verbose:
            traceback.print_exc()
            return 1
        first = (str(exc).strip().splitlines() or [""])[0]
        _err(f"error: unexpected {type(exc).__name__}: {first} (run with -v for the traceback)")
        return 1


if __name__ == "__main__":
    sys.exit(main())

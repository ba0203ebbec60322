"""`recstack ab create|start|stop|list|force|report|simulate`: parse, call `recstack.ab`, print.

(`recstack ab plan` lives in cli.py with the rest of the parser; these register on its `ab` group.)
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from recstack.errors import ConfigError

VARIANT_HELP = ("NAME:share=S[,model=V][,diversity=λ][,novelty=ν][,exclude=G1|G2]; repeat for each "
                "variant, the control first (e.g. control:share=0.5 treatment:share=0.5,diversity=0.3)")


def _emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, default=str))


def default_db() -> str:
    """The embedded default store: events.db in the data directory (as `recstack serve DIR`)."""
    from recstack.data.fetch import cache_root

    return f"sqlite:///{(cache_root() / 'events.db').resolve()}"


def _store(args: argparse.Namespace) -> Any:
    from recstack.serve.store import open_store

    return open_store(args.db or default_db())


def parse_variant(text: str) -> dict[str, Any]:
    """`NAME:share=0.5,model=2,diversity=0.3,novelty=0.1,exclude=Horror|Drama` → a variant dict."""
    name, sep, rest = text.partition(":")
    if not name.strip() or not sep:
        raise ConfigError(f"--variant {text!r}: expected {VARIANT_HELP}")
    out: dict[str, Any] = {"name": name.strip()}
    rerank: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = part.partition("=")
        if not eq:
            raise ConfigError(f"--variant {text!r}: {part!r} is not key=value")
        try:
            if key == "share":
                out["share"] = float(value)
            elif key == "model":
                out["model_version"] = int(value)
            elif key in ("diversity", "novelty"):
                rerank[key] = float(value)
            elif key == "exclude":
                rerank["exclude_genres"] = [g for g in value.split("|") if g]
            else:
                raise ConfigError(f"--variant {text!r}: unknown key {key!r} "
                                  "(share, model, diversity, novelty, exclude)")
        except ValueError:
            raise ConfigError(f"--variant {text!r}: {key}={value!r} is not a number") from None
    if "share" not in out:
        raise ConfigError(f"--variant {text!r}: needs share=S")
    if rerank:
        out["rerank"] = rerank
    return out


def cmd_create(args: argparse.Namespace) -> int:
    from recstack.ab import experiments as E

    if args.spec:
        try:
            spec = json.loads(open(args.spec).read())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"--spec {args.spec}: cannot read an experiment definition ({exc})") from None
        if not isinstance(spec, dict):
            raise ConfigError(f"--spec {args.spec}: expected a JSON object")
    else:
        if not args.name or not args.variant or args.planned_users is None:
            raise ConfigError("ab create needs --name, two or more --variant and --planned-users (or --spec FILE)")
        spec = {"name": args.name, "variants": [parse_variant(v) for v in args.variant], "metric": args.metric,
                "window_hours": args.window_hours, "planned_users": args.planned_users}
        if args.salt:
            spec["salt"] = args.salt
    store = _store(args)
    try:
        exp = E.create(store, spec)
    finally:
        store.close()
    return _show(args, E.summary(exp), f"created experiment {exp.id} {exp.name!r} (draft)")


def _show(args: argparse.Namespace, record: dict[str, Any], text: str) -> int:
    if args.json:
        _emit(record)
    else:
        print(text)
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    from recstack.ab import experiments as E

    versions = None
    if args.registry:
        from recstack.serve.registry import Registry

        versions = [v.number for v in Registry(args.registry).versions()]
    store = _store(args)
    try:
        exp = E.start(store, args.experiment, versions)
    finally:
        store.close()
    return _show(args, E.summary(exp), f"experiment {exp.id} {exp.name!r} is running "
                                       "(services follow within a second)")


def cmd_stop(args: argparse.Namespace) -> int:
    from recstack.ab import experiments as E

    store = _store(args)
    try:
        exp = E.stop(store, args.experiment)
    finally:
        store.close()
    return _show(args, E.summary(exp), f"experiment {exp.id} {exp.name!r} stopped")


def cmd_list(args: argparse.Namespace) -> int:
    from recstack.ab import experiments as E

    store = _store(args)
    try:
        rows = [E.summary(e) for e in E.list_all(store)]
    finally:
        store.close()
    if args.json:
        _emit({"experiments": rows})
        return 0
    if not rows:
        print("no experiments")
    for r in rows:
        variants = ", ".join(f"{v['name']} {v['share']:.0%}" for v in r["variants"])
        print(f"{r['id']:>4}  {r['name']:<24} {r['status']:<8} {r['metric']:<16} {variants}")
    return 0


def cmd_force(args: argparse.Namespace) -> int:
    from recstack.ab import experiments as E

    if (args.variant is None) == (not args.remove):
        raise ConfigError("ab force needs --variant NAME, or --remove to lift the forcing")
    store = _store(args)
    try:
        exp = E.force(store, args.experiment, args.user, None if args.remove else args.variant)
    finally:
        store.close()
    text = (f"user {args.user!r} no longer forced" if args.remove
            else f"user {args.user!r} forced into {args.variant!r} of {exp.name!r}")
    return _show(args, {**E.summary(exp), "forced": dict(exp.forced)}, text)


def cmd_report(args: argparse.Namespace) -> int:
    from recstack.ab.report import build_report, format_report

    store = _store(args)
    try:
        report = build_report(store, args.experiment)
    finally:
        store.close()
    if args.plot:
        from pathlib import Path

        from recstack.ab.plot import lift_png

        out = Path(args.plot)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(lift_png(report))
        print(f"wrote {out}", file=sys.stderr)
    if args.json:
        _emit(report)
    else:
        print(format_report(report))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from recstack.ab.simulate import simulate

    record = simulate(args.users, args.lift, args.base_rate, args.runs, args.seed, serve_skew=args.serve_skew,
                      progress=not args.json)
    if args.json:
        _emit(record)
    else:
        print(f"{record['runs']} runs of {record['users']:,} users ({record['users_per_variant']:,} per variant), "
              f"lift {record['lift']:+.1%} on {record['base_rate']:.1%}: rejection rate "
              f"{record['rejection_rate']:.3f} ± {record['standard_error']:.3f}; SRM flagged in "
              f"{record['srm_flag_rate']:.1%} of runs ({record['seconds']:.0f}s)")
    return 0


def add_ab_commands(absub: Any, int_at_least: Any) -> None:
    """Register create/start/stop/list/force/report/simulate on the `recstack ab` sub-parsers."""

    def db(p: argparse.ArgumentParser) -> None:
        p.add_argument("--db", help="store URL (sqlite:////abs/events.db or postgresql://…); "
                                    "default: events.db in the data directory")
        p.add_argument("--json", action="store_true")

    c = absub.add_parser("create", help="create an experiment (draft)")
    c.add_argument("--name")
    c.add_argument("--variant", action="append", help=VARIANT_HELP)
    c.add_argument("--metric", default="ctr", help="ctr, mean_rating or conversion:<event type> (default ctr)")
    c.add_argument("--planned-users", type=int_at_least(1), help="users per variant (see `recstack ab plan`)")
    c.add_argument("--window-hours", type=float, default=24.0, help="outcome window after an exposure (24)")
    c.add_argument("--salt", help="hashing salt (default: random)")
    c.add_argument("--spec", help="a JSON file with the definition (the admin API's body) instead")
    db(c)
    c.set_defaults(func=cmd_create)
    s = absub.add_parser("start", help="start an experiment (one runs at a time)")
    s.add_argument("experiment", help="id or name")
    s.add_argument("--registry", help="check the variants' model versions against this registry")
    db(s)
    s.set_defaults(func=cmd_start)
    t = absub.add_parser("stop", help="stop a running experiment")
    t.add_argument("experiment", help="id or name")
    db(t)
    t.set_defaults(func=cmd_stop)
    ls = absub.add_parser("list", help="experiments, newest first")
    db(ls)
    ls.set_defaults(func=cmd_list)
    f = absub.add_parser("force", help="force a user into a variant (QA; not analysed)")
    f.add_argument("experiment", help="id or name")
    f.add_argument("--user", required=True)
    f.add_argument("--variant")
    f.add_argument("--remove", action="store_true", help="lift the user's forcing")
    db(f)
    f.set_defaults(func=cmd_force)
    r = absub.add_parser("report", help="per-variant outcomes, lift, tests, SRM, verdict")
    r.add_argument("experiment", help="id or name")
    r.add_argument("--plot", help="write the cumulative-lift plot to this PNG file")
    db(r)
    r.set_defaults(func=cmd_report)
    m = absub.add_parser("simulate", help="R simulated experiments through the service's code (power, FPR, SRM)")
    m.add_argument("--users", type=int_at_least(4), required=True, help="users per run (all variants)")
    m.add_argument("--lift", type=float, default=0.0, help="true relative lift of the treatment (0: A/A)")
    m.add_argument("--base-rate", type=float, default=0.1, help="control's click rate")
    m.add_argument("--runs", type=int_at_least(1), default=100)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--serve-skew", type=float, help="inject a serving fault: the control's served share (0.52)")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_simulate)

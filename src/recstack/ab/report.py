"""Outcomes from stored events and the experiment report (`recstack ab report`, `GET /experiments/{id}/report`).

The unit of analysis is the user (the unit of assignment). A user belongs to the variant of their
first logged exposure. Outcomes, for the window w after each exposure (an event's time is its
client `timestamp` when given, else the time it was stored; an exposure at time t covers events
in [floor(t), t + w]):

- `ctr`: 1 when the user clicked an item they were shown within the window of that exposure, else 0;
- `mean_rating`: the mean of the user's ratings of items they were shown, rated within the window
  (users who rated none are left out of that mean);
- `conversion:<type>`: 1 when the user sent an event of that type within the window after any
  exposure, else 0.

Per variant: users, exposures, the outcome mean with a 95% CI (Wilson for proportions, t for
means). Each other variant against the first (the control): relative lift with a delta-method
CI, the two-proportion z-test (Welch's t for means), a bootstrap CI of the lift. The SRM
chi-square check warns when users per variant stray from the traffic shares.

Peeking policy: the report gives no verdict before every variant has `planned_users` users
("not yet: n of planned N"); with several treatments their p-values are Bonferroni-corrected.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from recstack.ab import experiments as E
from recstack.ab.stats import (
    bootstrap_lift_ci,
    relative_lift_ci,
    srm_check,
    two_proportion_ztest,
    welch_ttest,
)
from recstack.serve.store import Store

ALPHA = 0.05
TIMELINE_POINTS = 40


def load_exposures(store: Store, exp_id: int) -> list[tuple[str, str, str, float]]:
    """Every logged exposure in order: (variant, user, items JSON, time)."""
    with store._tx(write=False) as cur:
        cur.execute(store._sql("SELECT variant, user_id, items, at FROM exposures WHERE experiment_id = ? "
                               "ORDER BY seq"), (exp_id,))
        return [(r[0], r[1], r[2], float(r[3])) for r in cur.fetchall()]


def load_events(store: Store, exp_id: int, types: tuple[str, ...]) -> list[tuple[int, str, str, float | None, float]]:
    """Events of `types` by users exposed in the experiment: (seq, user, item, value, time)."""
    marks = ", ".join("?" for _ in types)
    with store._tx(write=False) as cur:
        cur.execute(store._sql(
            "SELECT e.seq, e.user_id, e.item_id, e.value, COALESCE(e.ts, e.stored_at) FROM events e "
            f"WHERE e.type IN ({marks}) AND e.user_id IN "
            "(SELECT DISTINCT user_id FROM exposures WHERE experiment_id = ?)"), (*types, exp_id))
        return [(int(r[0]), r[1], r[2], None if r[3] is None else float(r[3]), float(r[4])) for r in cur.fetchall()]


def user_outcomes(exp: E.Experiment, exposures: list[tuple[str, str, str, float]],
                  events: list[tuple[int, str, str, float | None, float]]) -> pd.DataFrame:
    """One row per exposed user: user, variant, first (first exposure time), exposures, outcome (NaN: none)."""
    users: dict[str, list[Any]] = {}
    for variant, user, _, at in exposures:
        rec = users.get(user)
        if rec is None:
            users[user] = [variant, at, 1]
        else:
            rec[1] = min(rec[1], at)
            rec[2] += 1
    by_user: dict[str, list[tuple[int, str, float | None, float]]] = {}
    for seq, user, item, value, t in events:
        by_user.setdefault(user, []).append((seq, item, value, t))
    w = exp.window_s
    per_item = not exp.metric.startswith("conversion:")
    shown: dict[tuple[str, str], list[float]] = {}  # (user, item) → exposure times; (user, "") for conversions
    for _, user, items, at in exposures:
        if user in by_user:
            for item in (json.loads(items) if per_item else [""]):
                shown.setdefault((user, item), []).append(at)

    def hits(user: str) -> list[float | None]:
        out = []
        for _, item, value, t in by_user.get(user, ()):
            times = shown.get((user, item if per_item else ""), ())
            if any(math.floor(at) <= t <= at + w for at in times):
                out.append(value)
        return out

    names = list(users)
    outcome = np.empty(len(names), np.float64)
    for n, user in enumerate(names):
        found = hits(user) if user in by_user else []
        if exp.metric == "mean_rating":
            vals = [v for v in found if v is not None]
            outcome[n] = float(np.mean(vals)) if vals else np.nan
        else:
            outcome[n] = 1.0 if found else 0.0
    return pd.DataFrame({"user": names, "variant": [users[u][0] for u in names],
                         "first": np.array([users[u][1] for u in names], np.float64),
                         "exposures": np.array([users[u][2] for u in names], np.int64), "outcome": outcome})


def _binary(metric: str) -> bool:
    return metric != "mean_rating"


def _interval(values: np.ndarray, binary: bool) -> tuple[float, float, float]:
    """(mean, low, high): Wilson for 0/1 outcomes, t for means."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan, math.nan
    m = float(values.mean())
    if binary:
        z = float(stats.norm.ppf(1 - ALPHA / 2))
        centre = (m + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(m * (1 - m) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return m, centre - half, centre + half
    if n < 2:
        return m, math.nan, math.nan
    half = float(stats.t.ppf(1 - ALPHA / 2, n - 1)) * float(values.std(ddof=1)) / math.sqrt(n)
    return m, m - half, m + half


def compare(a: np.ndarray, b: np.ndarray, binary: bool, seed: int = 0, bootstrap: bool = True) -> dict[str, Any]:
    """B against A: lift with CI, the test, the bootstrap CI of the lift."""
    if binary:
        test = two_proportion_ztest(int(a.sum()), len(a), int(b.sum()), len(b))
    else:
        test = welch_ttest(a, b)
    def var(x: np.ndarray) -> float:
        if binary:
            return float(x.mean() * (1 - x.mean()))
        return float(x.var(ddof=1)) if len(x) > 1 else math.nan

    if len(a) and len(b):
        lift, lo, hi = relative_lift_ci(float(a.mean()), var(a), len(a), float(b.mean()), var(b), len(b))
    else:
        lift, lo, hi = math.nan, math.nan, math.nan
    boot = bootstrap_lift_ci(a, b, seed=seed) if bootstrap else (math.nan, math.nan)
    f = E.finite
    return {"value": f(lift), "ci": [f(lo), f(hi)], "bootstrap_ci": [f(boot[0]), f(boot[1])],
            "difference": f(test.difference), "difference_ci": [f(test.ci_low), f(test.ci_high)],
            "statistic": f(test.statistic), "p_value": f(test.p_value), "test": test.test}


def timeline(users: pd.DataFrame, control: str, treatment: str, binary: bool,
             points: int = TIMELINE_POINTS) -> list[dict[str, Any]]:
    """Cumulative relative lift with its 95% CI over time, users taken in order of their first exposure."""
    u = users.dropna(subset=["outcome"]).sort_values("first")
    u = u[u["variant"].isin([control, treatment])]
    if len(u) < 4:
        return []
    y = u["outcome"].to_numpy(np.float64)
    out = []
    cols = {}
    for name in (control, treatment):
        m = (u["variant"] == name).to_numpy()
        cols[name] = (np.cumsum(m), np.cumsum(np.where(m, y, 0.0)), np.cumsum(np.where(m, y * y, 0.0)))
    at = u["first"].to_numpy()
    for i in np.unique(np.linspace(0, len(u) - 1, min(points, len(u))).astype(int)):
        stats_ = []
        for name in (control, treatment):
            n, s, s2 = (float(c[i]) for c in cols[name])
            mean = s / n if n else math.nan
            if not n:
                var = math.nan
            elif binary:
                var = mean * (1 - mean)
            else:
                var = (s2 - n * mean * mean) / (n - 1) if n > 1 else math.nan
            stats_.append((mean, var, int(n)))
        (ma, va, na), (mb, vb, nb) = stats_
        if na and nb and ma > 0:
            lift, lo, hi = relative_lift_ci(ma, va, na, mb, vb, nb)
        else:
            lift, lo, hi = math.nan, math.nan, math.nan
        out.append({"time": float(at[i]), "users": int(na + nb), "lift": E.finite(lift),
                    "ci": [E.finite(lo), E.finite(hi)]})
    return out


def build_report(store: Store, ref: int | str, with_timeline: bool = True, bootstrap: bool = True,
                 seed: int = 0) -> dict[str, Any]:
    """The experiment's report (see the module docstring): a JSON-ready dict."""
    exp = E.get(store, ref)
    binary = _binary(exp.metric)
    if exp.metric == "ctr":
        types: tuple[str, ...] = ("click",)
    elif exp.metric == "mean_rating":
        types = ("rating",)
    else:
        types = (exp.metric.split(":", 1)[1],)
    exposures = load_exposures(store, exp.id)
    users = user_outcomes(exp, exposures, load_events(store, exp.id, types))
    names = [v.name for v in exp.variants]
    per: list[dict[str, Any]] = []
    samples: dict[str, np.ndarray] = {}
    n_exposures = Counter(row[0] for row in exposures)
    for v in exp.variants:
        mine = users[users["variant"] == v.name]
        y = mine["outcome"].dropna().to_numpy(np.float64)
        samples[v.name] = y
        mean, lo, hi = _interval(y, binary)
        per.append({"name": v.name, "share": v.share, "model_version": v.model_version,
                    "rerank": v.to_dict()["rerank"], "users": int(len(mine)),
                    "exposures": int(n_exposures.get(v.name, 0)), "n": int(len(y)),
                    **({"successes": int(y.sum())} if binary else {}),
                    "mean": E.finite(mean), "ci": [E.finite(lo), E.finite(hi)]})
    comparisons = [{"control": names[0], "variant": name,
                    **compare(samples[names[0]], samples[name], binary, seed, bootstrap)} for name in names[1:]]
    srm = srm_check([p["users"] for p in per], [v.share for v in exp.variants])
    srm_out = {"chi2": E.finite(srm["chi2"]), "p_value": E.finite(srm["p_value"]), "mismatch": bool(srm["mismatch"])}
    if srm["mismatch"]:
        srm_out["warning"] = (
            f"sample ratio mismatch: users per variant {[p['users'] for p in per]} differ from the planned "
            f"shares {[v.share for v in exp.variants]} (chi-square p = {srm['p_value']:.2g}); "
            "check assignment and exposure logging before trusting any result")
    decision, verdict = _verdict(exp, per, comparisons, srm_out)
    report = {"experiment": E.summary(exp), "metric": exp.metric, "alpha": ALPHA,
              "variants": per, "lift": comparisons[0], "comparisons": comparisons, "srm": srm_out,
              "planned_users": exp.planned_users, "decision": decision, "verdict": verdict,
              "users": int(len(users)), "exposures": int(len(exposures))}
    if with_timeline:
        report["timeline"] = timeline(users, names[0], names[1], binary)
    return report


def _verdict(exp: E.Experiment, per: list[dict[str, Any]], comparisons: list[dict[str, Any]],
             srm: dict[str, Any]) -> tuple[str, str]:
    smallest = min(p["users"] for p in per)
    if smallest < exp.planned_users:
        return "not_yet", (f"not yet: {smallest:,} of planned {exp.planned_users:,} users per variant "
                           "(no verdict before the planned sample size)")
    if srm["mismatch"]:
        return "srm", "no verdict: sample ratio mismatch (see srm)"
    alpha = ALPHA / len(comparisons)
    parts, significant = [], False
    for c in comparisons:
        p, lift = c["p_value"], c["value"]
        if p is not None and p < alpha and lift is not None:
            significant = True
            word = "beats" if lift > 0 else "is worse than"
            ci = "" if None in c["ci"] else f" (95% CI {c['ci'][0]:+.1%} to {c['ci'][1]:+.1%})"
            parts.append(f"{c['variant']} {word} {c['control']}: lift {lift:+.1%}{ci}, p = {p:.3g}")
        else:
            shown = "n/a" if p is None else f"{p:.3g}"
            parts.append(f"{c['variant']} vs {c['control']}: no significant difference (p = {shown})")
    return ("significant" if significant else "not_significant"), "; ".join(parts)


def format_report(report: dict[str, Any]) -> str:
    """The report as text for the terminal."""
    exp = report["experiment"]
    lines = [f"experiment {exp['id']} {exp['name']!r} ({exp['status']}), metric {report['metric']}, "
             f"planned {report['planned_users']:,} users per variant"]
    for p in report["variants"]:
        mean = "n/a" if p["mean"] is None else f"{p['mean']:.4f}"
        ci = "" if None in p["ci"] else f" [{p['ci'][0]:.4f}, {p['ci'][1]:.4f}]"
        lines.append(f"  {p['name']:<16} users {p['users']:>8,}  exposures {p['exposures']:>9,}  mean {mean}{ci}")
    for c in report["comparisons"]:
        if c["value"] is None:
            lines.append(f"  {c['variant']} vs {c['control']}: not enough data")
            continue
        ci = "" if None in c["ci"] else f" (95% CI {c['ci'][0]:+.2%} to {c['ci'][1]:+.2%})"
        boot = "" if None in c["bootstrap_ci"] else \
            f", bootstrap {c['bootstrap_ci'][0]:+.2%} to {c['bootstrap_ci'][1]:+.2%}"
        p = "n/a" if c["p_value"] is None else f"{c['p_value']:.3g}"
        lines.append(f"  {c['variant']} vs {c['control']}: lift {c['value']:+.2%}{ci}{boot}; {c['test']} p = {p}")
    if report["srm"].get("warning"):
        lines.append("  WARNING: " + report["srm"]["warning"])
    lines.append("verdict: " + report["verdict"])
    return "\n".join(lines)

"""Proof by simulation (`recstack ab simulate`): many experiments through the service's own code.

Each run creates and starts an experiment (control A, treatment B re-ranked for novelty, or serving
the same list as A in an A/A test; 50/50) in
a throw-away SQLite store, and sends `users` new users through the same path as the service: the
assignment (`Experiments.arm`), the list (`serve_list` over a `ModelState` loaded from a saved
model folder: a popularity model over a tiny synthetic catalogue), the exposure log, then a click
event (`Store.add_events`) with probability `base_rate` in A and `base_rate · (1 + lift)` in B,
and finally the report (`build_report`). A run rejects when the report's fixed-horizon two-sided
two-proportion z-test on all its users has p < 0.05, whatever the peeking policy says.

`serve_skew` injects a serving fault for the SRM check: the share of users served (and logged) as
the control, e.g. 0.52 for a 50/50 experiment that a bug serves 52/48.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from recstack.ab import experiments as E
from recstack.ab.report import build_report
from recstack.ab.serving import Arm, Experiments, ExposureLog, serve_list
from recstack.errors import ConfigError
from recstack.serve.store import SQLiteStore


class ScratchStore(SQLiteStore):
    """A throw-away SQLite store: no fsync (nothing here needs to survive a crash)."""

    def _conn(self):  # type: ignore[no-untyped-def]
        conn = super()._conn()
        conn.execute("PRAGMA synchronous=OFF")
        return conn


def simulation_state(folder: Path) -> Any:
    """A `ModelState` the way the service loads one: a popularity model over 60 synthetic items."""
    from recstack.data.synthetic import synthetic_interactions
    from recstack.models.base import make_model
    from recstack.persist import save_model
    from recstack.serve.service import ModelState

    data = synthetic_interactions(n_users=100, n_items=60, n_ratings=2000, seed=0, min_user_ratings=5)
    model = make_model("popular").fit(data)
    save_model(folder / "model", model, data)
    return ModelState.load(folder / "model", None, use_index=False)


def simulate(users: int, lift: float, base_rate: float, runs: int, seed: int = 0,
             serve_skew: float | None = None, k: int = 10, progress: bool = False) -> dict[str, Any]:
    """R runs of N users each; the record `recstack ab simulate --json` prints."""
    if users < 4:
        raise ConfigError(f"--users {users}: at least 4 users per run")
    if runs < 1:
        raise ConfigError(f"--runs {runs}: at least 1 run")
    p_a, p_b = base_rate, base_rate * (1 + lift)
    if not (0 < p_a < 1 and 0 <= p_b <= 1):
        raise ConfigError(f"--base-rate {base_rate} and --lift {lift}: click rates {p_a} and {p_b} must be in [0, 1]")
    if serve_skew is not None and not 0.5 <= serve_skew < 1:
        raise ConfigError(f"--serve-skew {serve_skew}: the control's served share, in [0.5, 1)")
    # a user assigned to B is served A with probability `moved`, so that A gets `serve_skew` of users
    moved = 0.0 if serve_skew is None else (serve_skew - 0.5) / 0.5
    t0, c0 = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory(prefix="recstack-ab-sim-") as tmp:
        state = simulation_state(Path(tmp))
        store = ScratchStore(Path(tmp) / "sim.db")
        store.migrate()
        try:
            p_values, per_variant, srm_flags, exposures = [], [], 0, 0
            for run in range(runs):
                out = _one_run(store, state, run, users, p_a, p_b, moved, seed, k)
                p_values.append(out["lift"]["p_value"] if out["lift"]["p_value"] is not None else 1.0)
                per_variant.append([v["users"] for v in out["variants"]])
                srm_flags += bool(out["srm"]["mismatch"])
                exposures += out["exposures"]
                if progress and (run + 1) % max(1, runs // 10) == 0:
                    import sys

                    print(f"  run {run + 1}/{runs}", file=sys.stderr, flush=True)
        finally:
            store.close()
    p = np.asarray(p_values)
    rate = float((p < 0.05).mean())
    counts = np.asarray(per_variant, np.float64)
    return {"rejection_rate": rate, "runs": runs, "rejections": int((p < 0.05).sum()),
            "standard_error": math.sqrt(rate * (1 - rate) / runs),
            "users_per_variant": int(round(users / 2)), "users": users,
            "observed_users_per_variant": [float(x) for x in counts.mean(axis=0)],
            "lift": lift, "base_rate": base_rate, "seed": seed, "serve_skew": serve_skew,
            "srm_flag_rate": srm_flags / runs, "exposures": exposures, "alpha": 0.05,
            "test": "fixed-horizon two-sided two-proportion z on all users",
            "seconds": round(time.perf_counter() - t0, 2), "cpu_seconds": round(time.process_time() - c0, 2)}


def _one_run(store: SQLiteStore, state: Any, run: int, users: int, p_a: float, p_b: float, moved: float,
             seed: int, k: int) -> dict[str, Any]:
    # an A/A test serves the same list in both arms; otherwise B re-ranks for novelty
    treatment: dict[str, Any] = {"name": "B", "share": 0.5}
    if p_b != p_a:
        treatment["rerank"] = {"novelty": 0.5}
    exp = E.create(store, {"name": f"sim-{seed}-{run}", "salt": f"sim-{seed}-{run}", "metric": "ctr",
                           "planned_users": max(1, users // 2),
                           "variants": [{"name": "A", "share": 0.5}, treatment]})
    E.start(store, exp.id)
    live = Experiments(store, ExposureLog(store, background=False), refresh_s=math.inf)
    live.refresh()
    control = exp.variants[0]
    rng = np.random.default_rng([seed, run])
    u_move, u_click, u_item = rng.random(users), rng.random(users), rng.integers(0, k, users)
    start = float(int(time.time()))
    clicks: list[tuple[str, str, float]] = []
    for i in range(users):
        user = f"{run}.{i}"
        arm = live.arm(user)
        if arm is None:
            continue
        if arm.variant.name != control.name and u_move[i] < moved:
            arm = Arm(arm.experiment, control)  # the injected serving fault
        served = serve_list(state, user, k, arm)
        at = start + i * 0.01
        live.expose(arm, user, served, at=at)
        if u_click[i] < (p_a if arm.variant.name == control.name else p_b) and len(served):
            clicks.append((user, str(served.ids[u_item[i] % len(served)]), at + 1))
    live.exposures.flush()
    for user, item, t in clicks:
        store.add_events(user, [{"event_id": "click-1", "item": item, "type": "click", "value": None,
                                 "timestamp": int(t)}])
    report = build_report(store, exp.id, with_timeline=False, bootstrap=False)
    E.stop(store, exp.id)
    return report

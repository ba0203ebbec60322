"""`python -m benchmarks.ab`: the A/B simulation targets with their full numbers (issue 12).

Every run goes through the service's own code (`recstack.ab.simulate`: assignment, serving via
`ModelState`, the exposure log, click events in the store, the report's z-test):

- power: 200 runs at the size `recstack ab plan --base-rate 0.1 --lift 0.2` gives (3,841 users per
  variant): rejection rate ≥ 0.74 (0.80 ± two standard errors); the same for a 5% lift with fewer runs;
- A/A: 1,000 runs of 2,000 users: false-positive rate in [0.03, 0.07], in under 10 minutes;
- SRM: a 50/50 experiment served 52/48 at 100,000 users is flagged (and the same unskewed is not).

Writes benchmarks/results/ab.json after each part (so a partial run keeps its figures). Seconds are
wall-clock on the machine it ran on, with its load average recorded beside them.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "ab.json"


def main(argv: list[str] | None = None) -> int:
    from recstack.ab.simulate import simulate
    from recstack.ab.stats import sample_size

    p = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__.splitlines()[0])
    p.add_argument("--power-runs", type=int, default=200)
    p.add_argument("--power5-runs", type=int, default=10, help="runs for the 5%% lift (each ~115k users)")
    p.add_argument("--aa-runs", type=int, default=1000)
    p.add_argument("--aa-users", type=int, default=2000)
    p.add_argument("--srm-users", type=int, default=100_000)
    p.add_argument("--only", nargs="*", choices=["power", "power5", "aa", "srm"], default=None)
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    parts = args.only or ["power", "aa", "srm", "power5"]
    out = Path(args.out)
    record: dict[str, Any] = json.loads(out.read_text()) if out.exists() and args.only else {}
    record["command"] = "python -m benchmarks.ab " + " ".join(argv if argv is not None else sys.argv[1:])

    def save(key: str, result: dict[str, Any], **checks: Any) -> None:
        result = {**result, **checks, "load_average_1m": round(os.getloadavg()[0], 2)}
        record[key] = result
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=2) + "\n")
        print(f"{key}: {json.dumps(result)}", file=sys.stderr, flush=True)

    if "power" in parts:
        n = sample_size(0.10, 0.20)
        r = simulate(2 * n, 0.20, 0.10, args.power_runs, args.seed)
        save("power_20pct", r, planned_users_per_variant=n, target="rejection_rate >= 0.74",
             met=r["rejection_rate"] >= 0.74)
    if "aa" in parts:
        r = simulate(args.aa_users, 0.0, 0.10, args.aa_runs, args.seed + 1)
        ok = 0.03 <= r["rejection_rate"] <= 0.07
        save("aa", r, target="false-positive rate in [0.03, 0.07] in under 600 s",
             met_rate=ok, met_time=r["seconds"] < 600)
    if "srm" in parts:
        skew = simulate(args.srm_users, 0.0, 0.10, 1, args.seed + 2, serve_skew=0.52)
        save("srm_52_48", skew, target="SRM flagged", met=skew["srm_flag_rate"] == 1.0)
        even = simulate(args.srm_users, 0.0, 0.10, 1, args.seed + 2)
        save("srm_50_50", even, target="SRM not flagged", met=even["srm_flag_rate"] == 0.0)
    if "power5" in parts:
        n = sample_size(0.10, 0.05)
        r = simulate(2 * n, 0.05, 0.10, args.power5_runs, args.seed + 3)
        save("power_5pct", r, planned_users_per_variant=n,
             note=f"{args.power5_runs} runs: the rate's standard error is {r['standard_error']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

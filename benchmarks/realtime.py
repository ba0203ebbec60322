"""`python -m benchmarks.realtime`: latency of learning one rating and answering that user's top-10.

Fit on the first 90% of ML-100K by time (models with their stream → msr-75 → default configs),
then replay the next 1,000 events one at a time: `Recommender.update([row])` (validation,
vocabulary look-up or growth, `partial_fit`, the row appended to the pending log — merged into
the training log only when something reads it) followed by `Recommender.for_user(user, k=10)`
(seen items excluded), timed together per event. Reports median and p99 milliseconds
against the targets (≤ 5 ms median, ≤ 20 ms p99). Figures, not a timed test.
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODELS = ["biased-mf", "als"]


def stream_config(model: str, config_dir: Path) -> tuple[dict[str, Any], str]:
    """configs/<model>.stream.json, else configs/<model>.msr-75.json, else the defaults."""
    from recstack.models.config import read_config_file

    for protocol in ("stream", "msr-75"):
        path = config_dir / f"{model}.{protocol}.json"
        if path.exists():
            return read_config_file(path), (str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path))
    return {}, "defaults"


def measure(model_name: str, n_events: int = 1000, config_dir: Path = ROOT / "configs") -> dict[str, Any]:
    """Latency figures (ms) of update + top-10 per event for one model."""
    from recstack.data.movielens import load_dataset
    from recstack.models.base import make_model
    from recstack.persist import SavedModel
    from recstack.recommend import Recommender

    data = load_dataset("ml-100k")
    order = np.lexsort((np.arange(len(data)), data.timestamp))
    cut = int(0.9 * len(data))
    train = data.subset(np.sort(order[:cut]))
    events = data.subset(order[cut:cut + n_events]).to_frame()
    params, source = stream_config(model_name, config_dir)
    model = make_model(model_name, params).fit(train)
    rec = Recommender(SavedModel(model, train))
    warm = Recommender(SavedModel(make_model(model_name, params).fit(train), train))
    row0 = next(events.itertuples(index=False))
    warm.update([(row0.user, row0.item, float(row0.rating), int(row0.timestamp))])  # compile kernels
    warm.for_user(row0.user)
    times, update_times, cpu = [], [], []
    for row in events.itertuples(index=False):
        c0 = time.process_time()
        t0 = time.perf_counter()
        rec.update([(row.user, row.item, float(row.rating), int(row.timestamp))])
        t1 = time.perf_counter()
        top = rec.for_user(row.user, k=10)
        t2 = time.perf_counter()
        cpu.append((time.process_time() - c0) * 1000)
        assert len(top) == 10
        times.append((t2 - t0) * 1000)
        update_times.append((t1 - t0) * 1000)
    t = np.asarray(times)
    return {"model": model_name, "config_source": source, "events": len(t), "train_rows": cut,
            "median_ms": float(np.median(t)), "p99_ms": float(np.percentile(t, 99)),
            "update_median_ms": float(np.median(update_times)), "mean_ms": float(t.mean()),
            "cpu_median_ms": float(np.median(cpu)), "cpu_p99_ms": float(np.percentile(cpu, 99)),
            "load_average": os.getloadavg()[0],
            "met": bool(np.median(t) <= 5.0 and np.percentile(t, 99) <= 20.0)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.realtime", description=__doc__)
    p.add_argument("--events", type=int, default=1000)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "realtime.json")
    p.add_argument("--config-dir", type=Path, default=ROOT / "configs",
                   help="where MODEL.stream.json / MODEL.msr-75.json are looked up (default: configs/)")
    args = p.parse_args(argv)
    rows = []
    for name in MODELS:
        row = measure(name, args.events, args.config_dir)
        print(f"{name}: median {row['median_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms "
              f"(update alone median {row['update_median_ms']:.2f} ms; CPU time median {row['cpu_median_ms']:.2f}, "
              f"p99 {row['cpu_p99_ms']:.2f} ms; load {row['load_average']:.1f}) — target "
              f"{'met' if row['met'] else 'NOT met'}", file=sys.stderr)
        rows.append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The `stream` protocol side by side: none / incremental / retrain for each model, in one run.

`python -m benchmarks.stream [--models ...]` (also part of `python -m benchmarks.run`): every
model replays ML-100K with its configs/<model>.stream.json (else .msr-75.json, else defaults)
under the three update modes. Writes records/stream__<model>__<update>.json, the summary rows
(HR@10 per mode, the share of the none → retrain gap that incremental recovers — "n/a" when
retrain does not beat none, where there is no gap to recover — update seconds and their ratio)
and stream_hr_per_day.png (HR@10 per day, three lines per model).
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from benchmarks.realtime import stream_config  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODELS = ["biased-mf", "als", "item-knn", "implicit-als-stream"]
UPDATES = ["none", "incremental", "retrain"]
TARGET_GAP, TARGET_SPEEDUP = 0.80, 50.0


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def implicit_reference() -> type:
    """`implicit-als-stream`: implicit's ALS (the `implicit-als` adapter) with `partial_fit` by its
    own `partial_fit_users` then `partial_fit_items` over the touched rows' full histories."""
    import numpy as np
    import scipy.sparse as sp

    from benchmarks.references import ImplicitALS, _one_blas_thread, feedback_matrix
    from recstack.models.incremental import item_rows, keep_ratings, upsert_ratings, user_rows

    class ImplicitALSStream(ImplicitALS):
        name = "implicit-als-stream"

        def _fit(self, train: Any, valid: Any) -> None:
            from implicit.cpu.als import AlternatingLeastSquares

            c = self.config
            X = feedback_matrix(train, c.binary)
            if c.one_plus:
                X.data = 1.0 + c.alpha * X.data
            with _one_blas_thread():
                self._algo = AlternatingLeastSquares(
                    factors=c.factors, regularization=c.reg, alpha=1.0 if c.one_plus else c.alpha,
                    iterations=c.epochs, use_cg=c.cg, calculate_training_loss=False, num_threads=c.threads,
                    random_state=c.seed)
                self._algo.cg_steps = c.cg_steps
                self._algo.fit(X, show_progress=False)
            keep_ratings(self, train)
            self.user_factors_ = np.asarray(self._algo.user_factors, np.float32)
            self.item_factors_ = np.asarray(self._algo.item_factors, np.float32)

        def _rows(self, indptr: np.ndarray, cols: np.ndarray, values: np.ndarray, width: int) -> sp.csr_matrix:
            c = self.config
            v = np.ones_like(values) if c.binary else values
            v = 1.0 + c.alpha * v if c.one_plus else v
            return sp.csr_matrix((v.astype(np.float32), cols, indptr), shape=(len(indptr) - 1, width))

        def partial_fit(self, events: Any) -> Any:
            up = upsert_ratings(self, events)
            a = self._algo
            f = a.user_factors.shape[1]
            pad = np.zeros((self.n_users_ - len(a.user_factors), f), a.user_factors.dtype)
            a.user_factors = np.concatenate([a.user_factors, pad])
            pad = np.zeros((self.n_items_ - len(a.item_factors), f), a.item_factors.dtype)
            a.item_factors = np.concatenate([a.item_factors, pad])
            users, items = up.touched_users, up.touched_items
            with _one_blas_thread():
                a.partial_fit_users(users, self._rows(*user_rows(self, users), self.n_items_))
                a.partial_fit_items(items, self._rows(*item_rows(self, items), self.n_users_))
            self.user_factors_ = np.asarray(a.user_factors, np.float32)
            self.item_factors_ = np.asarray(a.item_factors, np.float32)
            return self

    return ImplicitALSStream


def run(data: Any, out: Path, models: list[str] = MODELS, config_dir: Path = ROOT / "configs",
        updates: list[str] = UPDATES) -> list[dict]:
    """Run every (model, update mode) and write its record; returns the records.

    "implicit-als-stream" (the reference) runs with `als`'s config mirrored onto implicit."""
    from benchmarks.references import mirror_params
    from recstack.models.base import MODELS as REGISTRY
    from recstack.models.base import make_model
    from recstack.stream import run_stream

    (out / "records").mkdir(parents=True, exist_ok=True)
    records = []
    for model in models:
        if model == "implicit-als-stream":
            cls = implicit_reference()
            globals()["ImplicitALSStream"] = cls
            REGISTRY.setdefault(model, f"{__name__}:ImplicitALSStream")
            ours, source = stream_config("als", config_dir)
            params = mirror_params("implicit-als", make_model("als", ours).config.to_dict())
            source = f"same {', '.join(sorted(params))} as als ({source})"
        else:
            params, source = stream_config(model, config_dir)
        for update in updates:
            _err(f"[stream] {model} --update {update} ({source}) …")
            rec = run_stream(model, data, params, update=update, progress=lambda line: _err(f"    {line}"))
            side = "implicit" if model.startswith("implicit") else "recstack"
            rec.update({"side": side, "library": side, "config_source": source})
            (out / "records" / f"stream__{model}__{update}.json").write_text(json.dumps(rec, indent=2))
            _err(f"    hr@10 {rec['metrics']['hr@10']:.4f}, update {rec['update_seconds']:.2f}s")
            records.append(rec)
    return records


def summary(records: list[dict]) -> list[dict[str, Any]]:
    """One row per model: HR@10 per mode, gap recovered, update seconds and ratio, targets."""
    rows = []
    for model in dict.fromkeys(r["model"] for r in records):
        by = {r["update"]: r for r in records if r["model"] == model}
        if set(by) != set(UPDATES):
            continue
        hr = {u: by[u]["metrics"]["hr@10"] for u in UPDATES}
        gap = hr["retrain"] - hr["none"]
        # the share of the none → retrain gap is only meaningful when retrain beats none
        recovered = (hr["incremental"] - hr["none"]) / gap if gap > 0 else None
        inc, ret = by["incremental"]["update_seconds"], by["retrain"]["update_seconds"]
        ratio = ret / inc if inc > 0 else float("inf")
        rows.append({"model": model, "config_source": by["none"].get("config_source", ""),
                     "user_days": by["none"]["user_days"], **{f"hr@10 {u}": hr[u] for u in UPDATES},
                     **{f"ndcg@10 {u}": by[u]["metrics"]["ndcg@10"] for u in UPDATES},
                     "gap_recovered": recovered, "update_seconds_incremental": inc,
                     "update_seconds_retrain": ret, "speedup": ratio,
                     "met": bool(recovered is not None and recovered >= TARGET_GAP and ratio >= TARGET_SPEEDUP)})
    return rows


def gap_text(recovered: float | None) -> str:
    """The gap-recovered cell: a percentage, or why there is none (retrain ≤ none)."""
    return "n/a (retrain does not beat none)" if recovered is None else f"{100 * recovered:.0f}%"


def markdown(rows: list[dict[str, Any]]) -> list[str]:
    """The stream section of the benchmark README."""
    lines = ["### stream (prequential, ML-100K: fit on the first 50% by time, then recommend → update each UTC day)",
             "", "| model | user-days | HR@10 none | HR@10 incremental | HR@10 retrain | gap recovered | "
             "update s incremental | update s retrain (daily) | retrain ÷ incremental | target | config |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| `{r['model']}` | {r['user_days']} | {r['hr@10 none']:.4f} | {r['hr@10 incremental']:.4f} | "
            f"{r['hr@10 retrain']:.4f} | {gap_text(r['gap_recovered'])} | {r['update_seconds_incremental']:.2f} | "
            f"{r['update_seconds_retrain']:.1f} | {r['speedup']:.0f}× | "
            f"{'**met**' if r['met'] else '**not met**'} (≥ 80%, ≥ 50×) | {r['config_source']} |")
    return lines + [""]


def plot(folder: Path, records: list[dict]) -> Path | None:
    """stream_hr_per_day.png: HR@10 per day, one panel per model, a line per update mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in records))
    if not models:
        return None
    fig, axes = plt.subplots(len(models), 1, figsize=(10, 3 * len(models)), sharex=True, squeeze=False)
    for ax, model in zip(axes[:, 0], models):
        for r in [r for r in records if r["model"] == model]:
            days = [d for d in r["series"] if d["hr@10"] is not None]
            ax.plot(range(len(days)), [d["hr@10"] for d in days], lw=1,
                    label=f"{r['update']} (HR@10 {r['metrics']['hr@10']:.3f})")
        ax.set_title(f"{model}: HR@10 per day")
        ax.set_ylabel("HR@10")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[-1, 0].set_xlabel("day of the replay (second half of ML-100K by time)")
    fig.tight_layout()
    path = folder / "stream_hr_per_day.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.stream", description=__doc__)
    p.add_argument("--models", nargs="+", default=MODELS)
    p.add_argument("--updates", nargs="+", default=UPDATES, choices=UPDATES)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--summary-only", action="store_true",
                   help="only rebuild the table and plot from the records already under --out")
    args = p.parse_args(argv)
    from recstack.data.movielens import load_dataset

    args.out.mkdir(parents=True, exist_ok=True)
    if not args.summary_only:
        run(load_dataset("ml-100k"), args.out, args.models, updates=args.updates)
    records = [json.loads(f.read_text()) for f in sorted((args.out / "records").glob("stream__*.json"))]
    records.sort(key=lambda r: (MODELS.index(r["model"]) if r["model"] in MODELS else 99, UPDATES.index(r["update"])))
    rows = summary(records)
    (args.out / "stream.json").write_text(json.dumps(rows, indent=2))
    (args.out / "stream.md").write_text("\n".join(markdown(rows)))
    plot(args.out, records)
    for line in markdown(rows):
        _err(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

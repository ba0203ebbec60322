"""Scale curves on one machine: fit time and peak memory from 1e5 to 2.5e7 ratings (`make bench-scale`).

Data: the synthetic MovieLens-like generator at ML-25M's shape scaled down (users ∝ ratings,
items ∝ √ratings; 162,541 × 59,047 at 25M), written once as Parquet by `recstack data synth`.

Every point is its own process, started twice (`--runs 2`, the default); the second run counts
(compiled kernels come from numba's cache; `--runs 1` after a small warm-up size does the same
for less), and its peak resident memory (`/usr/bin/time`, the whole process: load +
fit + save) is recorded. Ours: `recstack train MODEL --data DIR --json` → `fit_seconds` (the fit
alone), then `recstack batch-recommend --engine local` → top-10 for every user. References, in
the same run, on the same Parquet file: implicit's ALS (fit + `recommend` for all users, seen
items filtered) and Surprise's SVD (up to 5M ratings). 64 factors and 2 threads everywhere.

    python -m benchmarks.scale [--sizes 1e5,1e6,1e7,2.5e7] [--models als,biased-mf,...]
    python -m benchmarks.scale --report      # table + log-log plot from the saved records
    python -m benchmarks.scale --stages --sizes 2.5e7   # memory after each stage, als and implicit
    python -m benchmarks.scale --parity      # Spark / DDP against in-process, ML-100K msr-75

Parity (`--parity`, results/scale_parity.json), each side its own `recstack` process:
- `evaluate als --protocol msr-75` with and without `--engine spark` from one config: the
  shipped `configs/als.msr-75.json` with λ counted per row (`reg_scaling=count`, MLlib's own
  weighting, λ passes through), and as shipped (absolute λ, mapped to MLlib by `mllib_reg`);
- `batch-recommend --engine spark` against `--engine local` on one saved ML-100K `als` model:
  the share of users whose top-10 lists are identical;
- `evaluate lightgcn --protocol msr-75` with `engine=ddp processes=2` against one process,
  same seed, a fixed epoch count.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "scale.json"
PARITY = ROOT / "results" / "scale_parity.json"
STAGES = ROOT / "results" / "scale_memory.json"
PLOT = ROOT / "results" / "scale.png"
DATA = Path(os.environ.get("RECSTACK_DATA", Path.home() / ".cache" / "recstack")) / "synth"
SIZES = (100_000, 1_000_000, 5_000_000, 10_000_000, 25_000_095)  # 5M: Surprise's largest; last: ML-25M's
FACTORS, THREADS = 64, 2
EASE_MAX_ITEMS = 20_000  # items² float64 Gram + inverse: 2 × 3.2 GB at 20k items
# item-knn at its default keeps every positive neighbour (Surprise's KNNBaseline): 15.2M of the
# 139M ordered item pairs (11%) at 1M ratings; beyond this many items that is gigabytes
KNN_ALL_MAX_ITEMS = 30_000
KNN_KEPT_SHARE = 0.11

# label -> (recstack model, params, epochs counted)
EPOCHS = 5  # als iterations and biased-mf epochs (issue 14's figures: 5)
MF = {"factors": FACTORS, "epochs": EPOCHS, "threads": THREADS, "early_stopping": False}
OURS: dict[str, tuple[str, dict[str, Any], int]] = {
    "als": ("als", {"factors": FACTORS, "epochs": EPOCHS, "confidence": "binary", "alpha": 1.0, "reg": 1.0},
            EPOCHS),
    "biased-mf": ("biased-mf", MF, EPOCHS),  # cache-aware order (tile=2048, the default)
    "biased-mf tile=0": ("biased-mf", {**MF, "tile": 0}, EPOCHS),  # random order, for comparison
    "item-knn": ("item-knn", {}, 1),
    "item-knn max_neighbours=100": ("item-knn", {"max_neighbours": 100}, 1),  # sparse top-100 per item
    "ease": ("ease", {}, 1),
    "lightgcn": ("lightgcn", {"factors": FACTORS, "epochs": 1, "early_stopping": False, "threads": THREADS}, 1),
    "sasrec": ("sasrec", {"factors": FACTORS, "epochs": 1, "early_stopping": False, "threads": THREADS}, 1),
}
REFERENCES = ("implicit-als", "surprise-svd")
# one epoch of the torch models from this size on is timed on its first SAMPLE_BATCHES batches and
# extrapolated (at 1M one epoch already takes minutes; lightgcn's batches also grow with the graph)
SAMPLED = ("lightgcn", "sasrec")
SAMPLE_FROM = 5_000_000
SAMPLE_BATCHES = 100
SURPRISE_MAX = 5_000_000


def shape(n_ratings: int) -> tuple[int, int]:
    """(users, items) of the scaled ML-25M shape for `n_ratings`."""
    f = n_ratings / 25_000_095
    return max(500, round(162_541 * f)), max(400, round(59_047 * np.sqrt(f)))


def dataset(n_ratings: int) -> Path:
    """The Parquet folder for this size, generated once (seed 0)."""
    users, items = shape(n_ratings)
    folder = DATA / f"r{n_ratings}"
    if not (folder / "ratings.parquet").exists():
        subprocess.run([sys.executable, "-m", "recstack", "data", "synth", "--users", str(users), "--items",
                        str(items), "--ratings", str(n_ratings), "--seed", "0", "--out", str(folder)],
                       check=True, env=_env())
    return folder


def _env() -> dict[str, str]:
    # both sides read Parquet with the system allocator (as `python -m recstack` does)
    return dict(os.environ, NUMBA_NUM_THREADS=str(THREADS), OMP_NUM_THREADS=str(THREADS),
                OPENBLAS_NUM_THREADS="1", PYTHONWARNINGS="ignore", ARROW_DEFAULT_MEMORY_POOL="system")


def _timed(cmd: list[str], timeout: float) -> tuple[dict[str, Any] | None, float | None, str]:
    """Run `cmd` under /usr/bin/time: (its JSON stdout, peak RSS in MB, error text)."""
    full = ["/usr/bin/time", "-f", "maxrss_kb=%M", "nice", "-n", "5", *cmd]
    try:
        proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout, env=_env())
    except subprocess.TimeoutExpired:
        return None, None, f"timeout after {timeout:.0f}s"
    m = re.findall(r"maxrss_kb=(\d+)", proc.stderr)
    peak = int(m[-1]) / 1024 if m else None
    if proc.returncode != 0:
        return None, peak, proc.stderr.strip().splitlines()[-2:] and " ".join(proc.stderr.strip().splitlines()[-2:])
    return json.loads(proc.stdout.strip().splitlines()[-1]), peak, ""


RUNS = 2  # processes per point; the last counts (`--runs`)


def items_squared_skip(label: str, n: int) -> dict[str, Any] | None:
    """The record of a point not run because the model's memory grows with items² there."""
    items = shape(n)[1]
    if label == "ease" and items > EASE_MAX_ITEMS:
        return {"skipped": f"ease needs items² memory: {items:,} items → {2 * 8 * items**2 / 1e9:.0f} GB"}
    if label == "item-knn" and items > KNN_ALL_MAX_ITEMS:
        kept = KNN_KEPT_SHARE * items * (items - 1)  # 12 B each stored; 16 B candidates, concatenated: 32 B
        return {"skipped": f"not run: keeps every positive neighbour, {items:,} items → ≈ {kept / 1e6:,.0f}M "
                           f"(1M's {KNN_KEPT_SHARE:.0%} of item pairs), {kept * 12 / 1e9:.1f} GB stored and "
                           f"≈ {kept * 32 / 1e9:.0f} GB at the peak of the fit; bounded: max_neighbours=100"}
    return None


def run_ours(label: str, folder: Path, n: int, timeout: float) -> dict[str, Any]:
    model, params, epochs = OURS[label]
    skip = items_squared_skip(label, n)
    if skip:
        return skip
    if label in SAMPLED and n >= SAMPLE_FROM:
        cmd = [sys.executable, "-m", "benchmarks.scale", "--job", f"sample-{label}", str(folder),
               "--sample-batches", str(SAMPLE_BATCHES)]
        out, peak, err = _timed(cmd, timeout)
        return {"error": err, "peak_mb": peak} if out is None else {**out, "peak_mb": peak}
    with tempfile.TemporaryDirectory(prefix="recstack-scale-") as tmp:
        cmd = [sys.executable, "-m", "recstack", "train", model, "--data", str(folder), "--out", f"{tmp}/m", "--json",
               *[f"-p{k}={v}" for k, v in params.items()]]
        rec: dict[str, Any] = {}
        for _ in range(RUNS):  # the last run counts: kernels from the cache
            out, peak, err = _timed(cmd, timeout)
            if out is None:
                return {"error": err, "peak_mb": peak}
        rec = {"fit_seconds": out["fit_seconds"], "per_epoch": out["fit_seconds"] / epochs, "peak_mb": peak}
        if model == "biased-mf":
            rec["updates_per_s"] = epochs * n / out["fit_seconds"]
        if model in ("als", "biased-mf"):
            top, tpeak, err = _timed([sys.executable, "-m", "recstack", "batch-recommend", f"{tmp}/m", "-k", "10",
                                      "--engine", "local", "--out", f"{tmp}/top.parquet", "--json"], timeout)
            rec["top10_all_seconds"] = None if top is None else top["seconds"]
            rec["top10_peak_mb"] = tpeak
    return rec


# ---- reference jobs (run in their own process: `--job NAME DIR`) ------------------------------------
def _csr(folder: Path):
    import pyarrow.parquet as pq
    import scipy.sparse as sp

    from recstack.data.parquet import encode_ids

    t = pq.read_table(folder / "ratings.parquet", columns=["user", "item", "rating"])
    u, uv = encode_ids(t["user"].to_numpy())
    i, iv = encode_ids(t["item"].to_numpy())
    r = t["rating"].to_numpy().astype(np.float32)
    del t
    return sp.csr_matrix((r, (u, i)), shape=(len(uv), len(iv)), dtype=np.float32)


def job_implicit(folder: Path) -> dict[str, Any]:
    import resource

    from implicit.cpu.als import AlternatingLeastSquares

    m = _csr(folder)
    # binary, as our als with confidence="binary", alpha=1: implicit's confidence is alpha·r
    # (ours 1 + alpha·r), so the matrix holds 2 and alpha stays 1 (alpha ≠ 1 copies the matrix)
    m.data[:] = 2.0
    iterations = OURS["als"][2]
    model = AlternatingLeastSquares(factors=FACTORS, iterations=iterations, regularization=1.0, alpha=1.0,
                                    num_threads=THREADS, random_state=0, calculate_training_loss=False)
    t0 = time.perf_counter()
    model.fit(m, show_progress=False)
    fit = time.perf_counter() - t0
    fit_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # load + fit
    t0 = time.perf_counter()
    model.recommend(np.arange(m.shape[0]), m, N=10, filter_already_liked_items=True)
    top = time.perf_counter() - t0
    return {"fit_seconds": fit, "per_epoch": fit / iterations, "top10_all_seconds": top,
            "fit_peak_mb": fit_peak}


def job_surprise(folder: Path) -> dict[str, Any]:
    import pandas as pd
    import pyarrow.parquet as pq
    from surprise import SVD, Dataset, Reader

    frame = pq.read_table(folder / "ratings.parquet", columns=["user", "item", "rating"]).to_pandas()
    trainset = Dataset.load_from_df(frame, Reader(rating_scale=(1, 5))).build_full_trainset()
    del frame
    _ = pd
    model = SVD(n_factors=FACTORS, n_epochs=3, random_state=0)
    t0 = time.perf_counter()
    model.fit(trainset)
    fit = time.perf_counter() - t0
    return {"fit_seconds": fit, "per_epoch": fit / 3, "updates_per_s": 3 * trainset.n_ratings / fit}


# ---- where the memory goes: resident memory after each stage, each side in its own process ----------
def _rss() -> tuple[float, float]:
    """(resident MB now, peak resident MB so far) of this process (/proc/self/status)."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return tuple(int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM"))  # type: ignore[return-value]


def job_stages_ours(folder: Path) -> list[dict[str, Any]]:
    """`recstack train als --data DIR` step by step (what cmd_train does, with a mark after each)."""
    import tempfile as tf

    stages = [{"stage": "start", "mb": _rss()}]
    import recstack.models.als  # noqa: F401 - numba and the kernels' module, as make_model imports them
    from recstack.data.parquet import read_parquet
    from recstack.models.base import make_model
    from recstack.persist import save_model

    stages.append({"stage": "imports", "mb": _rss()})
    # als fits from the rating matrix alone: cmd_train reads no timestamps, rows in CSR order
    data = read_parquet(folder, timestamps=False, order="user")
    stages.append({"stage": "columns read, user-major CSR", "mb": _rss()})
    _ = data.csr_t  # made here to be measured (the fit would make it)
    stages.append({"stage": "item-major CSR", "mb": _rss()})
    model_name, params, _ = OURS["als"]
    model = make_model(model_name, {**params, "threads": THREADS})
    model.fit(data)
    stages.append({"stage": "fit", "mb": _rss()})
    with tf.TemporaryDirectory(prefix="recstack-stages-") as tmp:
        save_model(f"{tmp}/m", model, data)
        stages.append({"stage": "save", "mb": _rss()})
    return stages


def job_stages_implicit(folder: Path) -> list[dict[str, Any]]:
    """`job_implicit`'s load and fit with a mark after each."""
    stages = [{"stage": "start", "mb": _rss()}]
    from implicit.cpu.als import AlternatingLeastSquares

    stages.append({"stage": "imports", "mb": _rss()})
    m = _csr(folder)
    m.data[:] = 2.0
    stages.append({"stage": "columns read, user-major CSR", "mb": _rss()})
    model = AlternatingLeastSquares(factors=FACTORS, iterations=OURS["als"][2], regularization=1.0, alpha=1.0,
                                    num_threads=THREADS, random_state=0, calculate_training_loss=False)
    model.fit(m, show_progress=False)  # makes its item-major copy inside
    stages.append({"stage": "fit", "mb": _rss()})
    return stages


def stages(n: int, timeout: float) -> dict[str, Any]:
    """Resident and peak memory after each stage, ours (`als`) and implicit's, at `n` ratings."""
    folder = dataset(n)
    out: dict[str, Any] = {"ratings": n}
    for side, job in (("als", "stages-ours"), ("implicit-als", "stages-implicit")):
        rec, peak, err = _timed([sys.executable, "-m", "benchmarks.scale", "--job", job, str(folder)], timeout)
        out[side] = {"stages": rec, "peak_mb": peak} if rec is not None else {"error": err}
    return out


def stages_table(rec: dict[str, Any]) -> str:
    lines = [f"| stage ({rec['ratings']:,} ratings) | ours: resident / peak so far (MB) | "
             "implicit: resident / peak so far (MB) |", "|---|---|---|"]
    sides = [{s["stage"]: s["mb"] for s in rec[k].get("stages") or []} for k in ("als", "implicit-als")]
    names = list(dict.fromkeys([*sides[0], *sides[1]]))
    for name in names:
        cells = [f"{d[name][0]:.0f} / {d[name][1]:.0f}" if name in d else "-" for d in sides]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    peaks = [rec[k].get("peak_mb") for k in ("als", "implicit-als")]
    lines.append("| whole process (`/usr/bin/time`) | " + " | ".join(f"{p:.0f}" if p else "-" for p in peaks) + " |")
    return "\n".join(lines)


def job_epoch_sample(label: str, folder: Path, n_batches: int | None = None) -> dict[str, Any]:
    """One epoch of torch model `label` as `recstack train` fits it (the same Parquet read and
    parameters), with only its first `n_batches` mini-batches trained; the rest of the epoch's
    batches are still drawn (so their making counts) and counted. The epoch's time is
    extrapolated: fit seconds (setup, every batch drawn, n trained) + (total − n) × the mean
    seconds per trained batch."""
    from recstack.data.parquet import read_parquet
    from recstack.models.base import make_model

    n_batches = SAMPLE_BATCHES if n_batches is None else n_batches
    name, params, _ = OURS[label]
    data = read_parquet(folder)
    model = make_model(name, params)
    stats = {"trained": 0, "total": 0, "train_s": 0.0}
    make_batches = model.train_batches

    def sampled(train, generator):
        for batch in make_batches(train, generator):
            stats["total"] += 1
            if stats["trained"] < n_batches:
                t0 = time.perf_counter()
                yield batch  # the trainer's step runs until the next batch is asked for
                stats["train_s"] += time.perf_counter() - t0
                stats["trained"] += 1

    model.train_batches = sampled
    t0 = time.perf_counter()
    model.fit(data)
    fit = time.perf_counter() - t0
    per_batch = stats["train_s"] / max(stats["trained"], 1)
    epoch = fit + (stats["total"] - stats["trained"]) * per_batch
    return {"fit_seconds": epoch, "per_epoch": epoch, "measured_seconds": fit, "seconds_per_batch": per_batch,
            "batches_trained": stats["trained"], "batches_per_epoch": stats["total"],
            "extrapolated": f"extrapolated from {stats['trained']} of {stats['total']:,} batches"}


JOBS = {"implicit-als": job_implicit, "surprise-svd": job_surprise, "stages-ours": job_stages_ours,
        "stages-implicit": job_stages_implicit,
        **{f"sample-{label}": (lambda folder, label=label: job_epoch_sample(label, folder)) for label in SAMPLED}}


def run_reference(name: str, folder: Path, n: int, timeout: float) -> dict[str, Any]:
    if name == "surprise-svd" and n > SURPRISE_MAX:
        return {"skipped": f"Surprise SVD measured up to {SURPRISE_MAX:,} ratings"}
    cmd = [sys.executable, "-m", "benchmarks.scale", "--job", name, str(folder)]
    out = None
    for _ in range(RUNS):
        out, peak, err = _timed(cmd, timeout)
        if out is None:
            return {"error": err, "peak_mb": peak}
    return {**out, "peak_mb": peak}


def peak_estimate(points: dict[str, Any], n: int) -> tuple[float, str] | None:
    """Peak MB at `n` ratings extrapolated linearly from the two largest smaller sizes measured
    (and the text saying so), or None with fewer than two."""
    xs = sorted((int(k), p["peak_mb"]) for k, p in points.items() if p.get("peak_mb") and "fit_seconds" in p
                and int(k) < n)[-2:]
    if len(xs) < 2:
        return None
    (n0, m0), (n1, m1) = xs
    est = m1 + (m1 - m0) * (n - n1) / (n1 - n0)
    return est, f"{m0 / 1024:.1f} GB at {n0:.0e}, {m1 / 1024:.1f} GB at {n1:.0e} → ≈ {est / 1024:.1f} GB at {n:.1e}"


# ---- report ------------------------------------------------------------------------------------------
def exponents(records: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Least-squares slope of log(fit seconds) on log(ratings) per model (≥ 2 points)."""
    out = {}
    for model, points in records.items():
        xs = [(int(n), p["fit_seconds"]) for n, p in points.items() if p.get("fit_seconds")]
        if len(xs) >= 2:
            n, s = np.log([x[0] for x in xs]), np.log([x[1] for x in xs])
            out[model] = float(np.polyfit(n, s, 1)[0])
    return out


def table(records: dict[str, dict[str, Any]]) -> str:
    sizes = sorted({int(n) for pts in records.values() for n in pts})
    head = "| model | " + " | ".join(f"{n:.2g} ratings" for n in sizes) + " | exponent |"
    lines = [head, "|---" * (len(sizes) + 2) + "|"]
    exps = exponents(records)
    for model, pts in records.items():
        cells = []
        for n in sizes:
            p = pts.get(str(n), pts.get(n, {}))
            if "fit_seconds" in p:
                cell = f"{p['fit_seconds']:.2f} s, {p['peak_mb'] / 1024:.2f} GB" if p.get("peak_mb") else \
                    f"{p['fit_seconds']:.2f} s"
                if p.get("top10_all_seconds") is not None:
                    cell += f"; top-10 all {p['top10_all_seconds']:.1f} s"
                if p.get("updates_per_s"):
                    cell += f"; {p['updates_per_s'] / 1e6:.1f}M upd/s"
                if p.get("extrapolated"):
                    cell += f" ({p['extrapolated']})"
            else:
                cell = p.get("skipped") or p.get("error") or "-"
            cells.append(cell)
        exp = f"{exps[model]:.2f}" if model in exps else "-"
        lines.append(f"| {model} | " + " | ".join(cells) + f" | {exp} |")
    return "\n".join(lines)


def plot(records: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    exps = exponents(records)
    fig, ax = plt.subplots(figsize=(7, 5))
    for model, pts in records.items():
        xs = sorted((int(n), p["fit_seconds"]) for n, p in pts.items() if p.get("fit_seconds"))
        if xs:
            label = f"{model} (n^{exps[model]:.2f})" if model in exps else model
            (line,) = ax.loglog([x[0] for x in xs], [x[1] for x in xs], "o-", label=label)
            guessed = sorted((int(n), p["fit_seconds"]) for n, p in pts.items() if p.get("extrapolated"))
            if guessed:  # hollow: an epoch extrapolated from sampled batches
                ax.loglog([x[0] for x in guessed], [x[1] for x in guessed], "o", color="white",
                          markeredgecolor=line.get_color(), zorder=3)
    ax.set_xlabel("ratings")
    ax.set_ylabel("fit seconds (hollow: extrapolated from sampled batches)")
    ax.set_title(f"recstack fit time vs data size ({FACTORS} factors, {THREADS} threads)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ---- parity: Spark and DDP against in-process, ML-100K msr-75 ------------------------------------------
ALS_CONFIG = ROOT.parent / "configs" / "als.msr-75.json"
LIGHTGCN_CONFIG = ROOT.parent / "configs" / "lightgcn.msr-75.json"
# MLlib's λ is per rating: the shipped absolute λ = 30 is about 0.5 per rating at msr-75's mean
# user and item counts (`mllib_reg` gives 0.49), rounded
COUNT_REG = 0.5
DDP_EPOCHS = 30
SPARK = ["--engine", "spark", "--master", f"local[{THREADS}]"]


def _recstack(args: list[str], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "recstack", *args, "--json"]
    proc = subprocess.run(["nice", "-n", "5", *cmd], capture_output=True, text=True, timeout=timeout, env=_env())
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])}: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _ndcg_pair(model: str, base: list[str], other: list[str], timeout: float) -> dict[str, Any]:
    a = _recstack(["evaluate", model, "--protocol", "msr-75", *base], timeout)
    b = _recstack(["evaluate", model, "--protocol", "msr-75", *base, *other], timeout)
    x, y = a["metrics"]["ndcg@10"], b["metrics"]["ndcg@10"]
    return {"in_process": round(x, 5), "other": round(y, 5), "diff": round(abs(x - y), 5),
            "fit_seconds": [a["fit_seconds"], b["fit_seconds"]]}


def parity(timeout: float = 1800) -> list[dict[str, Any]]:
    """The parity rows of issue 14 (see the module docstring), each with its target and verdict."""
    import pyarrow.parquet as pq

    rows = []
    cfg = ["--config", str(ALS_CONFIG)]
    count = [*cfg, "-preg_scaling=count", f"-preg={COUNT_REG}"]
    rows.append({"check": f"als msr-75 NDCG@10, spark vs in-process (reg_scaling=count, reg={COUNT_REG})",
                 **_ndcg_pair("als", count, SPARK, timeout), "target": 0.01})
    rows.append({"check": "als msr-75 NDCG@10, spark vs in-process (absolute reg=30 mapped by mllib_reg)",
                 **_ndcg_pair("als", cfg, SPARK, timeout), "target": 0.01})
    with tempfile.TemporaryDirectory(prefix="recstack-parity-") as tmp:
        _recstack(["train", "als", *count, "--out", f"{tmp}/m"], timeout)
        secs = {}
        for engine in ("local", "spark"):
            extra = SPARK[2:] if engine == "spark" else []
            secs[engine] = _recstack(["batch-recommend", f"{tmp}/m", "-k", "10", "--engine", engine, *extra,
                                      "--out", f"{tmp}/{engine}.parquet"], timeout)["seconds"]
        tops = [pq.read_table(f"{tmp}/{e}.parquet").to_pandas().sort_values(["user", "rank"])
                .groupby("user")["item"].apply(tuple) for e in ("local", "spark")]
        same = float((tops[0] == tops[1].reindex(tops[0].index)).mean())
    rows.append({"check": "batch top-10 of all ML-100K users, spark vs local, same als factors",
                 "same_users": round(same, 5), "users": len(tops[0]), "seconds": secs, "target": 0.99})
    fixed = ["--config", str(LIGHTGCN_CONFIG), f"-pepochs={DDP_EPOCHS}", "--seed", "0"]
    rows.append({"check": f"lightgcn msr-75 NDCG@10, DDP 2 processes vs 1 ({DDP_EPOCHS} epochs, seed 0)",
                 **_ndcg_pair("lightgcn", fixed, ["-pengine=ddp", "-pprocesses=2"], timeout), "target": 0.005})
    for r in rows:
        r["met"] = (r["same_users"] >= r["target"]) if "same_users" in r else (r["diff"] <= r["target"])
    return rows


def parity_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| check | in-process | spark / DDP | difference | target | met |", "|---|---|---|---|---|---|"]
    for r in rows:
        if "same_users" in r:
            lines.append(f"| {r['check']} | - | - | {r['same_users']:.2%} of {r['users']} users identical | "
                         f"≥ {r['target']:.0%} | {'yes' if r['met'] else 'no'} |")
        else:
            lines.append(f"| {r['check']} | {r['in_process']:.4f} | {r['other']:.4f} | {r['diff']:.4f} | "
                         f"≤ {r['target']} | {'yes' if r['met'] else 'no'} |")
    return "\n".join(lines)


def _size(text: str) -> int:
    n = int(float(text))
    return 25_000_095 if n == 25_000_000 else n  # 2.5e7: ML-25M's own count


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    p.add_argument("--models", default=",".join([*OURS, *REFERENCES]))
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--runs", type=int, default=RUNS, help="processes per point; the last one counts")
    p.add_argument("--report", action="store_true", help="only print the table and draw the plot")
    p.add_argument("--parity", action="store_true", help="Spark and DDP parity on ML-100K msr-75")
    p.add_argument("--stages", action="store_true",
                   help="resident memory after each stage (load, CSRs, fit, save), als and implicit, at the "
                        "largest of --sizes")
    p.add_argument("--max-gb", type=float, default=6.0,
                   help="skip a point whose peak memory, extrapolated from the two largest smaller ones, is over this")
    p.add_argument("--sample-batches", type=int, default=SAMPLE_BATCHES,
                   help=f"batches trained per sampled epoch ({', '.join(SAMPLED)} from {SAMPLE_FROM:.0e} ratings)")
    p.add_argument("--job", nargs=2, metavar=("NAME", "DIR"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    globals()["RUNS"] = max(1, args.runs)
    globals()["SAMPLE_BATCHES"] = max(1, args.sample_batches)
    if args.job:
        print(json.dumps(JOBS[args.job[0]](Path(args.job[1]))))
        return 0
    if args.stages:
        rec = stages(max(_size(s) for s in args.sizes.split(",")), args.timeout)
        STAGES.write_text(json.dumps(rec, indent=1))
        print(stages_table(rec))
        return 0
    if args.parity:
        rows = parity(args.timeout)
        PARITY.write_text(json.dumps(rows, indent=1))
        print(parity_table(rows))
        return 0
    records: dict[str, dict[str, Any]] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if not args.report:
        for n in [_size(s) for s in args.sizes.split(",")]:
            folder = dataset(n)
            for model in args.models.split(";" if ";" in args.models else ","):
                t0 = time.time()
                est = None if items_squared_skip(model, n) else peak_estimate(records.get(model, {}), n)
                if est and est[0] > args.max_gb * 1024:
                    rec = {"skipped": f"not run: peak memory {est[1]} (linear), over the {args.max_gb:g} GB "
                                      "this run allows (--max-gb)"}
                else:
                    rec = (run_reference(model, folder, n, args.timeout) if model in REFERENCES
                           else run_ours(model, folder, n, args.timeout))
                records.setdefault(model, {})[str(n)] = rec
                RESULTS.parent.mkdir(parents=True, exist_ok=True)
                RESULTS.write_text(json.dumps(records, indent=1))
                print(f"{model} @ {n:,}: {rec} ({time.time() - t0:.0f}s)", file=sys.stderr, flush=True)
    print(table(records))
    plot(records, PLOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())

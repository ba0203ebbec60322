"""Speed rows: one recstack model against its reference, side by side in one process.

Both run on the same fold (u1 of `ml100k-folds`, or the `msr-75` train part) with the same
hyperparameters. Our numba kernels are compiled before timing by one fit on a small slice
of the fold (the reference gets the same warm-up), so JIT compile time is not counted. A
reference's fit time is its library's `fit` alone (not building a Surprise `Trainset` or a
cornac `Dataset` from our rows); ours is the whole `Model.fit`. Each
side is timed `repeats` times and the fastest run counts: the steady-state time.

The first fit in a new process costs more: numba starts up (about 0.2 s of CPU, once per
process) and loads each cached kernel (or compiles it when the cache is empty, e.g. after an
edit or in a fresh clone). `fresh_fit_times` measures that separately, in a child process with
the kernels already cached: its first fit and its second, so every row reports first-fit and
steady-state times side by side. Ratios are recstack time ÷
reference time (below 1: recstack is faster), on wall-clock time; the CPU-time ratio (all threads
of this process) is recorded too, as a check when the machine is shared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recstack.data.interactions import Interactions
from recstack.evaluate import Fold, get_protocol, rating_metrics, topn_metrics
from recstack.models.base import Model, get_model_class


@dataclass(frozen=True)
class SpeedCase:
    """A timed pair: `ours` with `ours_params` against `reference` with `reference_params`.

    `target` is the largest allowed ratio (recstack ÷ reference) of the `measure` time;
    `metric_tolerance`, when set, also requires |our metric − theirs| ≤ tolerance.
    """

    name: str
    ours: str
    ours_params: dict[str, Any]
    reference: str
    reference_params: dict[str, Any]
    protocol: str
    measure: str  # "fit" | "fit+predict"
    target: float
    metric_tolerance: float | None = None
    mirror: bool = False  # the reference copies our model's full config (references.mirror_params)

    def describe_target(self) -> str:
        what = f"{self.measure} ratio ≤ {self.target:g}"
        if self.target < 1:
            what += f" (≥ {1 / self.target:g}× faster)"
        if self.metric_tolerance is not None:
            what += f", metric within {self.metric_tolerance:g}"
        return what


SVD_DEFAULTS = {"factors": 100, "epochs": 20, "learning_rate": 0.005, "reg": 0.02, "init_std": 0.1}
SVDPP_DEFAULTS = {"factors": 20, "epochs": 20, "learning_rate": 0.007, "reg": 0.02, "init_std": 0.1}
# Surprise regularises biases with the same value as the factors
SAME_BIAS_REG = {"reg_bias": 0.02}

CASES: list[SpeedCase] = [
    SpeedCase("biased-mf (1 thread) vs surprise.SVD", "biased-mf",
              {**SVD_DEFAULTS, **SAME_BIAS_REG, "early_stopping": False},
              "surprise-svd", SVD_DEFAULTS, "ml100k-folds", "fit", 0.1, metric_tolerance=0.005),
    # the same with DSGD over the machine's two cores (Surprise's SVD has no threads)
    SpeedCase("biased-mf (threads=2, DSGD) vs surprise.SVD", "biased-mf",
              {**SVD_DEFAULTS, **SAME_BIAS_REG, "early_stopping": False, "threads": 2},
              "surprise-svd", SVD_DEFAULTS, "ml100k-folds", "fit", 0.1, metric_tolerance=0.005),
    SpeedCase("svdpp vs surprise.SVDpp", "svdpp", {**SVDPP_DEFAULTS, **SAME_BIAS_REG, "early_stopping": False},
              "surprise-svdpp", SVDPP_DEFAULTS, "ml100k-folds", "fit", 0.05, metric_tolerance=0.005),
    SpeedCase("item-knn vs surprise.KNNBaseline", "item-knn",
              {"k": 40, "similarity": "pearson_baseline", "estimator": "baseline"},
              "surprise-knnbaseline", {"k": 40}, "ml100k-folds", "fit+predict", 0.1),
    SpeedCase("nmf vs surprise.NMF", "nmf", {"factors": 15, "epochs": 50, "reg": 0.06, "biased": False,
                                              "init_high": 1.0},
              "surprise-nmf", {"factors": 15, "epochs": 50, "reg_pu": 0.06, "reg_qi": 0.06},
              "ml100k-folds", "fit", 0.2),
    SpeedCase("als vs implicit ALS (2 threads)", "als", {}, "implicit-als", {"threads": 2}, "msr-75",
              "fit", 1.2, mirror=True),
]


ROOT = Path(__file__).resolve().parent.parent


def fresh_fit_times(model: str, params: dict[str, Any], protocol: str, fits: int = 2,
                    timeout: float = 1800) -> dict[str, Any]:
    """Fit seconds of `model` in a new Python process on `protocol`'s first fold.

    The child loads the data and imports the model's module first (not timed), then fits
    `fits` times: `first_fit_seconds` pays numba's start-up and kernel loading, the later
    fits are steady state. Returns wall and CPU seconds of every fit (or `error`).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-c", "from benchmarks.speed import _fresh_child; _fresh_child()",
           model, json.dumps(params), protocol, str(fits)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fresh_child() -> None:
    """Body of the child process of `fresh_fit_times` (argv: model, params JSON, protocol, fits)."""
    model, params, protocol, fits = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    t0 = time.perf_counter()
    from benchmarks import references
    from recstack.data.movielens import load_dataset

    references.register()
    cls = get_model_class(model)
    proto = get_protocol(protocol)
    fold = speed_fold(load_dataset(proto.default_data), protocol)
    setup = time.perf_counter() - t0
    walls, cpus = [], []
    for _ in range(fits):
        t, c = time.perf_counter(), time.process_time()
        cls(params).fit(fold.train)
        walls.append(round(time.perf_counter() - t, 4))
        cpus.append(round(time.process_time() - c, 4))
    print(json.dumps({"first_fit_seconds": walls[0], "first_fit_cpu_seconds": cpus[0],
                      "later_fit_seconds": walls[1:], "later_fit_cpu_seconds": cpus[1:],
                      "setup_seconds": round(setup, 3)}))


def speed_fold(data: Interactions, protocol: str) -> Fold:
    """The first fold of `protocol` (u1 for ml100k-folds)."""
    return get_protocol(protocol).make_folds(data, 0)[0]


def warm_slice(train: Interactions, rows: int = 3000) -> Interactions:
    """A small slice of the training part, used to compile kernels before timing."""
    keep = np.zeros(len(train), bool)
    keep[np.random.default_rng(0).choice(len(train), min(rows, len(train)), replace=False)] = True
    return train.subset(keep)


def _time_side(cls: type[Model], params: dict[str, Any], fold: Fold, task: str, k: int, candidates: str,
               repeats: int) -> dict[str, Any]:
    cls(params).fit(warm_slice(fold.train))  # compile (numba) / warm caches, not timed
    fits, preds, cpus, metrics = [], [], [], []
    seeded = "seed" in cls.config_class.field_names()
    for r in range(repeats):
        # repeat r uses seed r on both sides, so the metric compared is a mean over the same seeds
        model = cls({**params, "seed": r} if seeded else params)
        t0, c0 = time.perf_counter(), time.process_time()
        model.fit(fold.train)
        # a reference adapter's own clock leaves out converting our rows to the library's input
        fits.append(getattr(model, "library_fit_seconds_", time.perf_counter() - t0))
        cpus.append(getattr(model, "library_fit_cpu_seconds_", time.process_time() - c0))
        if task == "rating":
            m, seconds = rating_metrics(model, fold.train, fold.test)
            metrics.append(m["rmse"])
        else:
            m, seconds = topn_metrics(model, fold.train, fold.test, k, candidates)
            metrics.append(m[f"ndcg@{k}"])
        preds.append(seconds)
    best = int(np.argmin(np.add(fits, preds)))
    return {"config": cls(params).config.to_dict(), "fit_seconds": round(min(fits), 4),
            "predict_seconds": round(min(preds), 4),
            "fit_predict_seconds": round(fits[best] + preds[best], 4),
            "fit_cpu_seconds": round(min(cpus), 4),
            "metric": float(np.mean(metrics)), "metric_per_seed": [round(x, 5) for x in metrics],
            "repeats": repeats}


def run_case(case: SpeedCase, data: Interactions, repeats: int = 3,
             reference_repeats: int = 1, ours_config: dict[str, Any] | None = None,
             fresh: bool = True) -> dict[str, Any]:
    """Time one case; returns a JSON-ready row with both sides, the ratios and whether the target is met.

    With `fresh`, each side also gets `first_fit` (`fresh_fit_times`: a new process's first
    and second fit), after the in-process runs have filled the kernel cache."""
    proto = get_protocol(case.protocol)
    fold = speed_fold(data, case.protocol)
    ours_cls = get_model_class(case.ours)
    ref_cls = get_model_class(case.reference)
    ours_params = {**(ours_config or {}), **case.ours_params}
    ref_params = dict(case.reference_params)
    if case.mirror:
        from benchmarks.references import mirror_params

        ref_params = {**mirror_params(case.reference, ours_cls(ours_params).config.to_dict()), **ref_params}
    ours = _time_side(ours_cls, ours_params, fold, proto.task, proto.k, proto.candidates, repeats)
    ref = _time_side(ref_cls, ref_params, fold, proto.task, proto.k, proto.candidates, reference_repeats)
    if fresh and data.name == proto.default_data:  # the child loads the protocol's own data
        ours["first_fit"] = fresh_fit_times(case.ours, ours_params, case.protocol)
        ref["first_fit"] = fresh_fit_times(case.reference, ref_params, case.protocol)
    fit_ratio = ours["fit_seconds"] / ref["fit_seconds"]
    both_ratio = ours["fit_predict_seconds"] / ref["fit_predict_seconds"]
    ratio = fit_ratio if case.measure == "fit" else both_ratio
    met = ratio <= case.target
    gap = abs(ours["metric"] - ref["metric"])
    if case.metric_tolerance is not None:
        met = met and gap <= case.metric_tolerance
    return {"name": case.name, "ours": case.ours, "reference": case.reference, "protocol": case.protocol,
            "fold": fold.name, "metric": "rmse" if proto.task == "rating" else f"ndcg@{proto.k}",
            "recstack": ours, "reference_side": ref,
            "fit_ratio": round(fit_ratio, 4), "fit_predict_ratio": round(both_ratio, 4),
            "fit_cpu_ratio": round(ours["fit_cpu_seconds"] / max(ref["fit_cpu_seconds"], 1e-9), 4),
            "measure": case.measure, "target": case.target, "target_text": case.describe_target(),
            "metric_gap": round(gap, 5), "met": bool(met),
            "note": "steady state: numba warmed up by one fit on a 3,000-row slice before timing; "
                    f"fastest of {repeats} (recstack) / {reference_repeats} (reference) runs; first fit: "
                    "a new process with the kernels cached, its first and second fit"}

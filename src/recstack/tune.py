"""Hyperparameter search with Optuna on a protocol's validation part — never its test part.

`tuning_splits(protocol, data)` keeps, for every fold, only what the protocol lets a model learn
from in that fold and discards the test part before anything else sees it:

| protocol        | tuning train / tuning validation, per fold (`carve`)                      |
|-----------------|----------------------------------------------------------------------------|
| ml100k-folds    | `validation_split` of THAT fold's training part (u1..u5: five searches)     |
| random-80-20    | `validation_split` of the 80% training part                                |
| msr-75          | the same stratified rule (75/25 by item, seed 42) applied to the train part |
| leave-last-out  | the protocol's own train / validation parts                                |
| stream          | `stream_split` of the training half (its first 50% by time): fit on the first |
|                 | half of it, replay the second (`benchmarks/tune_stream.py`)                  |

Tuning ml100k-folds on u1 alone would choose on rows that are u2..u5's test rows, so the choice
is nested: one search per fold, and one config file holding the five choices
(`{"folds": {"u1": {...}, ...}, "chosen": {...}}`), which `evaluate --config` applies fold by fold.

`tune(model, split, trials)` then searches the model's own `search_space(trial)` with a seeded
TPE sampler, scoring RMSE (minimised) for rating protocols and NDCG@k (maximised) for top-N.
It receives a `TuningSplit` only, so the test part cannot reach it. `chosen_record` writes how a
config was chosen (the `chosen` key of every file in configs/), and `carve_parts` rebuilds the
carve from that record, so anyone can check it against the protocol's test rows.
"""

from __future__ import annotations

import math
import re
import subprocess
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recstack import progress as progress_bars
from recstack.data.interactions import Interactions
from recstack.errors import ConfigError, RecstackError
from recstack.evaluate import get_protocol, rating_metrics, topn_metrics
from recstack.models.base import Model, get_model_class
from recstack.split import stratified_split, stream_halves, validation_split


@dataclass(frozen=True)
class TuningSplit:
    """What a search may see: a training part and a validation part, both carved from train."""

    protocol: str
    task: str  # "rating" | "topn"
    train: Interactions
    valid: Interactions
    k: int = 10
    candidates: str = "all"
    fold: str = ""
    carve: str = ""  # how `valid` was cut, in the form `carve_parts` reads back


def carve_rule(protocol: str, seed: int = 0, valid_fraction: float = 0.1) -> str:
    """The carve `tuning_splits` uses for `protocol`, as written in a config's `chosen` record."""
    if protocol == "leave-last-out":
        return "leave_last_out(fold valid)"
    if protocol == "msr-75":
        return "stratified_split(fold train, 0.75, item, seed 42)"
    if protocol == "stream":
        return "stream_split(fold train, 0.5)"
    return f"validation_split(fold train, {valid_fraction:g}, seed {seed})"


_CARVE = re.compile(r"^(?P<rule>validation_split|stratified_split|leave_last_out|stream_split)"
                    r"\((?P<source>[\w-]+) (?P<part>train|valid)(?P<args>(, [^,()]+)*)\)$")


def carve_source(carve: str) -> str | None:
    """The fold a carve was cut from when it names one (`validation_split(u1 train, ...)`), else
    None: "fold" means the fold the choice is applied to (one search per fold)."""
    m = _CARVE.match(carve.strip())
    if m is None:
        raise ConfigError(f"unknown carve {carve!r}; expected validation_split(fold train, F, seed S), "
                          "stratified_split(fold train, R, item|user, seed S), stream_split(fold train, F) "
                          "or leave_last_out(fold valid)")
    return None if m["source"] == "fold" else m["source"]


def carve_parts(carve: str, fold_train: Interactions,
                fold_valid: Interactions | None = None) -> tuple[Interactions, Interactions]:
    """Rebuild a `chosen` record's carve of one fold's parts: (tuning train, tuning validation).

    Forms: `validation_split(fold train, F, seed S)`, `stratified_split(fold train, R, item|user,
    seed S)`, `leave_last_out(fold valid)`, `stream_split(fold train, F)` (the rows before / from
    the time cut at fraction F, `split.stream_halves`); `fold` may be a fold's name (see `carve_source`).
    """
    carve_source(carve)  # checks the form
    m = _CARVE.match(carve.strip())
    assert m is not None
    args = [a.strip() for a in m["args"].split(",")[1:]]
    if m["rule"] == "leave_last_out":
        if fold_valid is None:
            raise ConfigError(f"carve {carve!r}: this protocol has no validation part")
        return fold_train, fold_valid
    if m["rule"] == "stream_split":
        try:
            return stream_halves(fold_train, float(args[0]))
        except (ValueError, IndexError):
            raise ConfigError(f"carve {carve!r}: expected stream_split(fold train, F)") from None
    try:
        seed = int(args[-1].removeprefix("seed").strip())
    except (ValueError, IndexError):
        raise ConfigError(f"carve {carve!r}: the seed is not a number") from None
    if m["rule"] == "validation_split":
        return validation_split(fold_train, float(args[0]), seed)
    return stratified_split(fold_train, float(args[0]), args[1], seed)  # type: ignore[arg-type]


def tuning_splits(protocol: str, data: Interactions | None = None, seed: int = 0,
                  valid_fraction: float = 0.1) -> dict[str, TuningSplit]:
    """Fold name → that fold's tuning split (see the module table); test parts are dropped here."""
    proto = get_protocol(protocol)
    if data is None:
        from recstack.data.movielens import load_dataset

        data = load_dataset(proto.default_data)
    carve = carve_rule(protocol, seed, valid_fraction)
    out = {}
    for fold in proto.make_folds(data, seed):
        train, valid = carve_parts(carve, fold.train, fold.valid)
        if len(valid) == 0:
            raise RecstackError(f"protocol {protocol}: the validation part is empty; not enough data to tune")
        out[fold.name] = TuningSplit(protocol, proto.task, train, valid, proto.k, proto.candidates,
                                     fold.name, carve)
    return out


def tuning_split(protocol: str, data: Interactions | None = None, seed: int = 0,
                 valid_fraction: float = 0.1, fold: str | None = None) -> TuningSplit:
    """One fold's tuning split (the protocol's first fold unless `fold` names another)."""
    splits = tuning_splits(protocol, data, seed, valid_fraction)
    if fold is None:
        return next(iter(splits.values()))
    if fold not in splits:
        raise ConfigError(f"protocol {protocol} has folds {', '.join(splits)}, not {fold!r}")
    return splits[fold]


def code_commit() -> str:
    """The git short hash of the code running now (`-dirty` with uncommitted changes), or "unknown"."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(here), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no",
                                "--", "."], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def objective_name(task: str, k: int = 10) -> str:
    return "rmse" if task == "rating" else f"ndcg@{k}"


def validation_score(model: Model, split: TuningSplit) -> float:
    """Fit `model` on the tuning train part and score it on the validation part.

    The model never receives the validation part while fitting (models with early stopping
    carve their own from the train part), so the score is an honest held-out number.
    """
    model.fit(split.train)
    if split.task == "rating":
        metrics, _ = rating_metrics(model, split.train, split.valid)
    else:
        metrics, _ = topn_metrics(model, split.train, split.valid, split.k, split.candidates)
    return float(metrics[objective_name(split.task, split.k)])


class _FixedTrial:
    """A trial proxy: names given with `--param` keep their fixed value and are not searched."""

    def __init__(self, trial: Any, fixed: Mapping[str, Any]) -> None:
        self._trial = trial
        self._fixed = fixed

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._trial, attr)
        if not attr.startswith("suggest_"):
            return value

        def suggest(name: str, *args: Any, **kwargs: Any) -> Any:
            if name in self._fixed:
                return self._fixed[name]
            return value(name, *args, **kwargs)

        return suggest


@dataclass
class TuneResult:
    """The outcome of a search: the best full config and every trial's value and params."""

    model: str
    protocol: str
    objective: str
    direction: str
    best_value: float
    best_params: dict[str, Any]
    config: dict[str, Any]
    trials: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "protocol": self.protocol, "objective": self.objective,
                "direction": self.direction, "best_value": self.best_value,
                "best_params": self.best_params, "config": self.config, "n_trials": len(self.trials),
                "trials": self.trials, "seconds": round(self.seconds, 2)}


def tune(
    model_name: str,
    split: TuningSplit,
    n_trials: int = 20,
    fixed: Mapping[str, Any] | None = None,
    seed: int = 0,
    timeout: float | None = None,
    progress: Callable[[str], None] | None = None,
    space: Callable[[Any], dict[str, Any]] | None = None,
) -> TuneResult:
    """Search `model_name`'s `search_space` (or `space(trial)`) on `split`; returns the best full config.

    `fixed` parameters hold for every trial and are not searched. The sampler is
    `TPESampler(seed)`, so the same seed on the same split proposes the same trials.
    """
    try:
        import optuna
    except ModuleNotFoundError:
        raise ConfigError("tuning needs optuna: pip install -e '.[tune]'") from None
    if n_trials < 1:
        raise ConfigError(f"--trials must be ≥ 1, got {n_trials}")
    cls = get_model_class(model_name)
    base = dict(fixed or {})
    if "seed" in cls.config_class.field_names():
        base.setdefault("seed", seed)
    if split.task == "rating" and not cls(base).explicit:  # an instance: `explicit` may follow the config
        raise RecstackError(f"model {model_name!r} does not estimate ratings; tune it on a top-N protocol")
    typed = cls.config_class.build(None, base).to_dict()  # validates and coerces --param strings
    names = {cls.config_class.aliases.get(name, name) for name in base}
    fixed_typed = {name: typed[name] for name in names}
    metric = objective_name(split.task, split.k)
    direction = "minimize" if split.task == "rating" else "maximize"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=direction, sampler=optuna.samplers.TPESampler(seed=seed))
    records: list[dict[str, Any]] = []

    def objective(trial: Any) -> float:
        params = {**(space or cls.search_space)(_FixedTrial(trial, fixed_typed)), **fixed_typed}
        t0 = time.perf_counter()
        try:
            value = validation_score(cls(params), split)
        except ConfigError as exc:  # a combination the config refuses: not a result
            records.append({"number": trial.number, "params": params, "error": str(exc)})
            if progress:
                progress(f"trial {trial.number + 1}/{n_trials}: skipped ({exc})")
            raise optuna.TrialPruned() from None
        seconds = time.perf_counter() - t0
        records.append({"number": trial.number, "params": params, "value": value,
                        "seconds": round(seconds, 3)})
        if progress:
            done = [t.value for t in study.trials if t.value is not None]
            best = min([*done, value]) if direction == "minimize" else max([*done, value])
            shown = ", ".join(f"{k}={_short(v)}" for k, v in params.items() if k not in fixed_typed)
            progress(f"trial {trial.number + 1}/{n_trials}: {metric}={value:.4f} (best {best:.4f}) "
                     f"{shown} [{seconds:.1f}s]")
        if not math.isfinite(value):
            raise optuna.TrialPruned()
        return value

    t0 = time.perf_counter()
    bars_were_on = getattr(progress_bars, "_enabled", False)
    progress_bars.enable(False)  # one line per trial, not a bar per epoch of every trial
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=optuna.exceptions.ExperimentalWarning)
            study.optimize(objective, n_trials=n_trials, timeout=timeout, gc_after_trial=False)
    finally:
        progress_bars.enable(bars_were_on)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise RecstackError(f"no trial of {model_name} finished with a finite {metric}")
    best = study.best_trial
    best_params = next(r["params"] for r in records if r["number"] == best.number)
    config = cls(best_params).config.to_dict()
    return TuneResult(model_name, split.protocol, metric, direction, float(best.value),
                      {k: v for k, v in best_params.items() if k not in fixed_typed}, config, records,
                      time.perf_counter() - t0)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def chosen_record(results: Mapping[str, TuneResult], splits: Mapping[str, TuningSplit], n_trials: int,
                  seed: int, fixed: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The `chosen` record of a tuned config: protocol, carve, trials, seed, metric, value(s), commit."""
    first = next(iter(results.values()))
    split = next(iter(splits.values()))
    values = {name: round(r.best_value, 6) for name, r in results.items()}
    record: dict[str, Any] = {
        "protocol": first.protocol,
        "carve": split.carve,
        "method": "optuna TPESampler(seed) over the model's search_space",
        "trials": n_trials,
        "seed": seed,
        "metric": f"validation {first.objective}",
        "value": values if len(values) > 1 else next(iter(values.values())),
        "commit": code_commit(),
    }
    if fixed:
        record["fixed"] = {k: v for k, v in fixed.items()}
    if len(results) > 1:
        record["folds"] = list(results)
    return record

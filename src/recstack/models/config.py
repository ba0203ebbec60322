"""Typed, validated, JSON-serialisable hyperparameter configs.

A model's config is a frozen dataclass deriving from `Config`. Field types (int, float, bool,
str, or `Literal[...]`) are enforced; strings from the command line (`--param k=v`) are
coerced by the field's type; unknown names are refused with the list of known ones. A
subclass adds value checks in `check()` with `require(...)`.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import json
import re
import textwrap
import tokenize
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, get_args, get_origin

from recstack.errors import ConfigError

C = TypeVar("C", bound="Config")


def require(ok: bool, name: str, value: object, why: str) -> None:
    """Raise `ConfigError` naming the field and value when `ok` is false."""
    if not ok:
        raise ConfigError(f"parameter {name}={value!r}: {why}")


@dataclasses.dataclass(frozen=True)
class Config:
    """Base for model configs: hyperparameters only, no learned state.

    `aliases` maps other accepted names to field names (e.g. `{"lambda": "lambda_"}`).
    """

    aliases: ClassVar[dict[str, str]] = {}

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            object.__setattr__(self, f.name, _coerce(f.name, value, hints[f.name]))
        self.check()

    def check(self) -> None:
        """Value checks beyond types; override in subclasses."""

    # ---- building --------------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls: type[C], values: Mapping[str, Any]) -> C:
        values = {cls.aliases.get(k, k): v for k, v in values.items()}
        known = cls.field_names()
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown parameter(s) {', '.join(unknown)} for {cls.__name__}; "
                              f"known: {', '.join(known)}")
        return cls(**dict(values))

    @classmethod
    def build(cls: type[C], config: Config | Mapping[str, Any] | None, params: Mapping[str, Any]) -> C:
        """Merge a config object or mapping with keyword overrides."""
        base: dict[str, Any] = {}
        if isinstance(config, Config):
            if not isinstance(config, cls):
                raise ConfigError(f"expected {cls.__name__}, got {type(config).__name__}")
            base = config.to_dict()
        elif config is not None:
            base = dict(config)
        base.update(params)
        return cls.from_dict(base)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self: C, **changes: Any) -> C:
        return type(self).from_dict({**self.to_dict(), **changes})


def _coerce(name: str, value: Any, tp: Any) -> Any:
    origin = get_origin(tp)
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            require(False, name, value, f"must be one of {', '.join(map(str, choices))}")
        return value
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _coerce(name, value, args[0])
    if tp is bool:
        if isinstance(value, str):
            low = value.lower()
            require(low in ("true", "false", "1", "0", "yes", "no"), name, value, "must be true or false")
            return low in ("true", "1", "yes")
        require(isinstance(value, bool), name, value, "must be true or false")
        return value
    if tp is int:
        if isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                require(False, name, value, "must be an integer")
        require(isinstance(value, int) and not isinstance(value, bool), name, value, "must be an integer")
        return value
    if tp is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                require(False, name, value, "must be a number")
        require(isinstance(value, (int, float)) and not isinstance(value, bool), name, value,
                "must be a number")
        require(value == value and abs(value) != float("inf"), name, value, "must be finite")
        return float(value)
    if tp is str:
        require(isinstance(value, str), name, value, "must be a string")
        return value
    return value


@dataclasses.dataclass(frozen=True)
class ConfigFile:
    """What `--config FILE` holds: hyperparameters — one set, or one per fold — and, kept aside,
    the `chosen` record of how they were chosen (provenance, never hyperparameters).

    One set: a JSON object of parameters (`{"factors": 100, ..., "chosen": {...}}`), or a result
    record (its `config`, and its `config_provenance` as `chosen`). Per fold:
    `{"folds": {"u1": {...}, ..., "u5": {...}}, "chosen": {...}}`.
    """

    params: dict[str, Any]
    folds: dict[str, dict[str, Any]]  # {} when one set holds for every fold
    chosen: dict[str, Any] | None = None


def load_config_file(path: str | Path) -> ConfigFile:
    """Read `--config FILE` (see `ConfigFile`); clear errors naming the file for bad content."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}, line {exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a JSON object of parameters")
    chosen = data.get("chosen")
    if isinstance(data.get("config"), dict):  # a result record
        chosen = data.get("config_provenance")
        data = data["config"]
    data = {k: v for k, v in data.items() if k != "chosen"}
    if chosen is not None and not isinstance(chosen, dict):
        raise ConfigError(f"{p}: 'chosen' must be a JSON object (how the config was chosen)")
    if "folds" not in data:
        return ConfigFile(data, {}, chosen)
    folds = data.pop("folds")
    if data:
        raise ConfigError(f"{p}: a per-fold config holds only 'folds' and 'chosen'; "
                          f"move {', '.join(sorted(data))} into each fold")
    if not isinstance(folds, dict) or not folds or not all(isinstance(v, dict) for v in folds.values()):
        raise ConfigError(f"{p}: 'folds' must map fold names to objects of parameters")
    return ConfigFile({}, {str(k): dict(v) for k, v in folds.items()}, chosen)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The one set of hyperparameters in `--config FILE` (`chosen` set aside); a per-fold file is refused."""
    cf = load_config_file(path)
    if cf.folds:
        raise ConfigError(f"{path} holds one choice per fold ({', '.join(cf.folds)}); "
                          "use it with `recstack evaluate` on its protocol")
    return cf.params


def parse_params(pairs: list[str]) -> dict[str, str]:
    """`["factors=50", "reg=0.1"]` → dict of strings (coerced later by the config's types)."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--param {pair!r}: expected name=value")
        k, v = pair.split("=", 1)
        out[k.strip().replace("-", "_")] = v.strip()
    return out


# What hyperparameter names mean, for fields without a trailing `# comment` (`describe_params`).
# A plain key ("epochs") serves every config with a field of that name and that meaning (STYLE.md:
# factors, epochs, learning_rate, reg, k, seed); a key qualified by a config class
# ("ALSConfig.mode") serves that class and its subclasses, for a name whose meaning there
# differs from other models' (or that the class inherits but does not use) when the class
# does not carry the comment itself.
PARAM_HELP: dict[str, str] = {
    # ---- shared names
    "factors": "latent dimensions per user and item",
    "epochs": "passes over the training data (the most, with early stopping)",
    "learning_rate": "step size of the optimiser",
    "reg": "L2 regularisation strength",
    "reg_bias": "L2 regularisation of the biases (< 0: same as reg)",
    "init_std": "standard deviation of the random initial factors",
    "early_stopping": "stop when the validation metric stops improving",
    "patience": "epochs without improvement before early stopping",
    "valid_fraction": "share of the training data carved for early stopping",
    "refit": "after early stopping, refit on all training data for the chosen epoch count",
    "seed": "random seed (same seed, same numbers)",
    "threads": "CPU threads (0: min(2, cpu count) where allowed)",
    "k": "neighbours kept per item / user",
    "batch_size": "examples per mini-batch",
    "device": "auto, cpu or cuda",
    "dropout": "dropout probability",
    "binary": "treat every interaction as 1, ignoring the rating value",
    "lambda_": "L2 regularisation of the item-item weights",
    "shrinkage": "similarity shrinkage towards zero for small supports",
    "min_rating": "drop interactions rated below this before training (0 keeps all)",
    "lr_decay": "each epoch's learning rate is the previous one times this",
    # incremental SGD (mf, biased-mf, svdpp, timesvdpp)
    "shuffle": "epoch: reshuffle the rows before every pass; once: shuffle once and keep that order",
    "partial_epochs": "SGD passes over new ratings plus the replay buffer per partial_fit (0: none)",
    "replay_size": "most recent ratings replayed with each partial_fit batch against drift (0: none)",
    "partial_learning_rate": "SGD step size in partial_fit (0: learning_rate)",
    "reg_y": "L2 regularisation of the implicit item factors y_j (< 0: same as reg)",
    # sequential models (sasrec, tisasrec, bert4rec, gru4rec; valid_history also markov)
    "max_len": "most recent history items the network reads per user (older ones are cut)",
    "valid_history": "validation items given to fit extend each user's history for scoring",
    "finetune_steps": "Adam steps on the touched users' windows per partial_fit (0: none)",
    "blocks": "stacked self-attention blocks",
    "heads": "attention heads per block (must divide factors)",
    "SequentialConfig.loss": "ce: softmax cross-entropy over all items; bce: one sampled negative per target",
    "GRU4RecConfig.layers": "stacked GRU layers, each of size factors",
    "mask_prob": "chance that training replaces a window item by [mask] (at least one per window)",
    "last_share": "share of training windows that mask only their last item, as at prediction",
    "time_span": "largest time-interval bucket; longer intervals fall into it",
    "intervals": "log: bucket floor(log2(1 + seconds)); user: gap / smallest non-zero gap of the window",
    # Gibbs samplers (bpmf, fm)
    "burn_in": "Gibbs sweeps discarded before averaging",
    "samples": "Gibbs sweeps after burn-in whose predictions are averaged",
    # item metadata as pseudo-users (ease, ease-als, slim, rp3beta); release-year buckets
    "side_weight": "weight of the genre / release-year pseudo-users joining the training matrix (0: none)",
    "side_year_bucket": "years per release-year bucket of those pseudo-users",
    "year_bucket": "years per release-year feature bucket",
    # als (and the ALS part of ease-als)
    "ALSConfig.mode": "explicit: ALS-WR on ratings; implicit: confidence-weighted 0/1 preferences",
    "ALSConfig.reg": "λ: per rating if explicit, absolute or per count if implicit; none: 0.1 or 30 by mode",
    "ALSConfig.alpha": "implicit mode: an interaction's confidence is c = 1 + alpha·r",
    "confidence": "r in the confidence c = 1 + alpha·r: the rating, or 1 (binary)",
    "solver": "implicit mode: cg (cg_steps warm-started conjugate-gradient steps) or exact",
    "cg_steps": "conjugate-gradient steps per row and half-step (solver cg)",
    "reg_scaling": "implicit λ: absolute, or count (λ·n_u per user, λ·n_i per item, as Spark)",
    # item-knn, user-knn
    "KNNConfig.mode": "rating: Surprise-style rating estimates; ranking: implicit-style top-k scores",
    "KNNConfig.similarity": "similarity measure (ranking mode: cosine or bm25); none: pearson_baseline or bm25",
    "min_support": "fewest common raters (common items, when user-based) for a similarity to count",
    "min_k": "fewest usable neighbours for an estimate; below it, the mean or baseline alone",
    "estimator": "rating mode: weighted mean of ratings (plain) or of deviations from means / baselines",
    "user_based": "compare users instead of items",
    "max_neighbours": "rating mode: neighbours stored per row, best first (0: every positive one)",
    "KNNConfig.reg_user": "ALS baselines: λ added to each user's rating count in b_u",
    "KNNConfig.reg_item": "ALS baselines: λ added to each item's rating count in b_i",
    "baseline_epochs": "ALS sweeps computing the baselines b_u, b_i",
    "bm25_k1": "ranking-mode BM25: saturation of high ratings (0: binary weights)",
    "bm25_b": "ranking-mode BM25: length normalisation, 0 (none) to 1 (full)",
    "KNNConfig.k": "neighbours per estimate (rating mode) or kept per row (ranking mode)",
    "KNNConfig.shrinkage": "similarity × (n−1)/(n−1+shrinkage), n common raters; none: 100 (pearson_baseline) or 0",
    # threads and tile of mf's SGD, inherited by svdpp and timesvdpp, which do not use them
    "MFConfig.threads": "1: serial SGD; > 1: DSGD over threads × threads blocks (the numbers depend on it)",
    "SVDppConfig.threads": "unused here: training runs on one thread",
    "SVDppConfig.tile": "unused here: the rows are visited user by user",
}


def describe_params(config_class: type[Config]) -> list[dict[str, Any]]:
    """Each field of `config_class`: name, type, default and a one-line meaning.

    The meaning comes from the nearest class of the MRO (most derived first) that has one:
    the field's trailing `# comment` in that class's own body (`field_comments`), else
    `PARAM_HELP["ThatConfig.name"]`; failing all, the plain `PARAM_HELP["name"]`, else "".
    tests/test_itemlist.py requires a meaning for every registered model's every field.
    """
    classes = [k for k in config_class.__mro__ if isinstance(k, type) and issubclass(k, Config)]
    comments = [field_comments(k) for k in classes]
    hints = typing.get_type_hints(config_class)
    out = []
    for f in dataclasses.fields(config_class):
        found = (own.get(f.name) or PARAM_HELP.get(f"{k.__name__}.{f.name}") for k, own in zip(classes, comments))
        text = next((t for t in found if t), None) or PARAM_HELP.get(f.name, "")
        default = f.default if f.default is not dataclasses.MISSING else None
        out.append({"name": f.name, "type": _type_text(hints[f.name]), "default": default, "help": text})
    return out


def field_comments(klass: type) -> dict[str, str]:
    """{field name: its trailing `# comment`} for the annotated fields in `klass`'s own body.

    Read with `ast` and `tokenize`, so a field spread over several lines (the comment may sit on
    any of them), a `#` or `=` inside a string or a `Literal[...]`, linter pragmas (`# noqa`,
    `# type: ignore`) and assignments inside methods are all handled; a comment on a line of its
    own above a field is not its meaning.
    """
    try:
        source = textwrap.dedent(inspect.getsource(klass))
    except (OSError, TypeError):
        return {}
    tree = ast.parse(source)
    node = next((n for n in tree.body if isinstance(n, ast.ClassDef)), None)
    if node is None:
        return {}
    by_line: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            by_line[tok.start[0]] = _comment_text(tok.string)
    out = {}
    for stmt in node.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            end = stmt.end_lineno or stmt.lineno
            text = next((by_line[n] for n in range(stmt.lineno, end + 1) if by_line.get(n)), None)
            if text:
                out[stmt.target.id] = text
    return out


_PRAGMA = re.compile(r"(type|pragma|fmt|pyright|mypy):|noqa\b", re.IGNORECASE)


def _comment_text(comment: str) -> str:
    """A trailing comment's meaning: its text without `# noqa` / `# type: ...`-style pragmas."""
    parts = [part.strip() for part in comment.lstrip("#").split("#")]
    if not any(_PRAGMA.match(part) for part in parts):
        return comment.lstrip("#").strip()
    return " # ".join(part for part in parts if part and not _PRAGMA.match(part))


def _type_text(tp: Any) -> str:
    """A field type as `recstack models` shows it: `int`, `'a' | 'b'`, `float | None`."""
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        return " | ".join("None" if a is type(None) else _type_text(a) for a in get_args(tp))
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")

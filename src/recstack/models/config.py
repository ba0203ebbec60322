"""Typed, validated, JSON-serialisable hyperparameter configs.

A model's config is a frozen dataclass deriving from `Config`. Field types (int, float, bool,
str, or `Literal[...]`) are enforced; strings from the command line (`--param k=v`) are
coerced by the field's type; unknown names are refused with the list of known ones. A
subclass adds value checks in `check()` with `require(...)`.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
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


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read `--config FILE`: a JSON object of parameters, or a result record with a `config` key."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}, line {exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a JSON object of parameters")
    if isinstance(data.get("config"), dict):
        data = data["config"]
    return data


def parse_params(pairs: list[str]) -> dict[str, str]:
    """`["factors=50", "reg=0.1"]` → dict of strings (coerced later by the config's types)."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--param {pair!r}: expected name=value")
        k, v = pair.split("=", 1)
        out[k.strip().replace("-", "_")] = v.strip()
    return out


# what the shared hyperparameter names mean (STYLE.md: factors, epochs, learning_rate, reg, k, seed)
PARAM_HELP: dict[str, str] = {
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
}


def describe_params(config_class: type[Config]) -> list[dict[str, Any]]:
    """Each field of `config_class`: name, type, default and a one-line meaning.

    The meaning is the field's trailing `# comment` in the class source when it has one, else
    the shared `PARAM_HELP` text for its name, else "".
    """
    comments: dict[str, str] = {}
    for klass in reversed(config_class.__mro__):
        if not (isinstance(klass, type) and issubclass(klass, Config)):
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        for m in re.finditer(r"^\s+(\w+)\s*:[^=\n]+=[^#\n]*#\s*(.+)$", source, re.M):
            comments[m.group(1)] = m.group(2).strip()
    hints = typing.get_type_hints(config_class)
    out = []
    for f in dataclasses.fields(config_class):
        tp = hints[f.name]
        if get_origin(tp) is Literal:
            type_text = " | ".join(repr(a) for a in get_args(tp))
        else:
            type_text = getattr(tp, "__name__", str(tp)).replace("typing.", "")
        default = f.default if f.default is not dataclasses.MISSING else None
        out.append({"name": f.name, "type": type_text, "default": default,
                    "help": comments.get(f.name) or PARAM_HELP.get(f.name, "")})
    return out

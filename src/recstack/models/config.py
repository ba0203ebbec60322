"""Typed, validated, JSON-serialisable hyperparameter configs.

A model's config is a frozen dataclass deriving from `Config`. Field types (int, float, bool,
str, or `Literal[...]`) are enforced; strings from the command line (`--param k=v`) are
coerced by the field's type; unknown names are refused with the list of known ones. A
subclass adds value checks in `check()` with `require(...)`.
"""

from __future__ import annotations

import dataclasses
import json
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
    """Read `--config FILE`: a JSON object of parameters (a `chosen` key, the provenance, is set
    aside), or a result record with a `config` key."""
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
    data.pop("chosen", None)  # provenance (how the config was chosen), not a parameter
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

"""The effective training config: preset, then a JSON file, then `--set key=value`, each typed by the
TrainConfig field it names; saved to out/config.json, which --resume reads back."""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from pathlib import Path
from typing import Any

from trainer.config import TrainConfig, check_config, preset
from trainer.io.atomic import atomic_path

TRUE_WORDS = {"true", "yes", "on", "1"}
FALSE_WORDS = {"false", "no", "off", "0"}


class ConfigError(ValueError):
    """str(e) is one line naming the file or option and the key."""


def field_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) if typing.get_origin(tp) is None else str(tp).replace("typing.", "")  # type: ignore[return-value]


def coerce(tp: Any, value: Any, where: str) -> Any:
    """`value` (as parsed from JSON) checked and converted to the annotation `tp`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)

    def bad() -> ConfigError:
        return ConfigError(f"{where}: expected {_type_name(tp)}, got {json.dumps(value)}")

    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return coerce(option, value, where)
            except ConfigError:
                pass
        raise bad()
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"{where}: expected one of {', '.join(map(str, args))}, got {json.dumps(value)}")
    if tp is type(None):
        if value is None:
            return None
        raise bad()
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():   # "1e4" for a step count
            return int(value)
        raise bad()
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):   # config.json is strict JSON, and no setting wants NaN or inf
                raise ConfigError(f"{where}: expected a finite number, got {value}")
            return float(value)
        raise bad()
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad()
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise bad()
        return [coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise bad()
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        if isinstance(value, dict):
            return value
        raise bad()
    raise ConfigError(f"{where}: unsupported config type {tp!r}")


def _parse_scalar_text(tp: Any, text: str) -> Any:
    if tp is str:
        return text
    if tp is bool and text.lower() in TRUE_WORDS | FALSE_WORDS:
        return text.lower() in TRUE_WORDS
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # a bare word: coerce() accepts it for str/Literal fields and names the error otherwise


def parse_text(tp: Any, text: str) -> Any:
    """The command-line spelling of a value: JSON, or comma-separated items for lists and tuples
    ("64,128,256", "(1,1,1)"), true/false/yes/no/on/off/1/0 for booleans."""
    text = text.strip()
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType) and type(None) in args and text.lower() in ("none", "null"):
        return None
    if origin in (list, tuple):
        if text.startswith("(") and text.endswith(")"):
            text = text[1:-1]
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError as e:
                raise ConfigError(f"malformed list {text!r} ({e.msg})") from None
        item = args[0] if args else Any
        return [_parse_scalar_text(item, part) for part in text.split(",") if part.strip()]
    return _parse_scalar_text(tp, text)


def _unknown(key: str, where: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(field_types()), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return ConfigError(f"{where}: unknown config key {key!r}{hint}")


def apply_mapping(cfg: TrainConfig, values: dict[str, Any], where: str) -> TrainConfig:
    types_ = field_types()
    changes = {}
    for key, value in values.items():
        if key not in types_:
            raise _unknown(key, where)
        changes[key] = coerce(types_[key], value, f"{where}: {key}")
    return dataclasses.replace(cfg, **changes)


def apply_sets(cfg: TrainConfig, assignments: list[str]) -> TrainConfig:
    types_ = field_types()
    values = {}
    for item in assignments:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item}: expected key=value")
        if key not in types_:
            raise _unknown(key, "--set")
        try:
            values[key] = coerce(types_[key], parse_text(types_[key], text), f"--set {key}")
        except ConfigError as e:
            raise ConfigError(f"--set {key}: {e}" if not str(e).startswith("--set") else str(e)) from None
    return dataclasses.replace(cfg, **values)


def read_json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: unreadable ({e})") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: malformed JSON (line {e.lineno}: {e.msg})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object of config keys")
    return data


# Keys that earlier versions wrote into config.json and that no longer mean anything: a run's file from
# then still loads (occupancy_block: the march's coarse mask, replaced in session 7 by the density volume).
RETIRED_KEYS = ("occupancy_block",)


def without_retired(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k not in RETIRED_KEYS}


def config_from_file(path: Path) -> TrainConfig:
    """A complete config (e.g. a run's config.json): every required field present."""
    values = without_retired(read_json_object(path))
    types_ = field_types()
    unknown = [k for k in values if k not in types_]
    if unknown:
        raise _unknown(unknown[0], str(path))
    missing = [f.name for f in dataclasses.fields(TrainConfig)
               if f.name not in values and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{path}: missing config key {missing[0]!r}")
    return TrainConfig(**{k: coerce(types_[k], v, f"{path}: {k}") for k, v in values.items()})


def build_config(preset_name: str | None = "default", base: TrainConfig | None = None,
                 config_file: Path | None = None, sets: list[str] | None = None) -> TrainConfig:
    """base (or the named preset) < config_file < sets; checked with config.check_config."""
    if base is None:
        try:
            base = preset(preset_name or "default")
        except KeyError as e:
            raise ConfigError(f"--preset: {e.args[0]}") from None
    cfg = base
    if config_file is not None:
        cfg = apply_mapping(cfg, without_retired(read_json_object(config_file)), str(config_file))
    cfg = apply_sets(cfg, sets or [])
    try:
        check_config(cfg)
    except ValueError as e:
        raise ConfigError(f"config: {e}") from None
    return cfg


def config_to_json(cfg: TrainConfig) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(cfg)))   # tuples become lists


def write_json(path: Path, data: Any) -> None:
    """Atomic JSON write (temp file in the same directory + os.replace)."""
    with atomic_path(Path(path)) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, allow_nan=False)
        f.write("\n")


def save_config(path: Path, cfg: TrainConfig) -> None:
    write_json(path, config_to_json(cfg))

"""Dataclass configs: strict YAML loading, `--set key=value` overrides, and round-tripping to dicts.

Every trainable thing has one dataclass config; nested dataclasses form a run config. Unknown keys
and wrong types are `ConfigError`s naming the key, so a typo in a YAML file never trains silently.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from saliency.infra.errors import ConfigError

T = TypeVar("T")


def to_dict(config: Any) -> dict:
    """The config as plain Python data (tuples become lists), ready for YAML or JSON."""
    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value
    return plain(config)


def from_dict(cls: type[T], data: dict | None, where: str = "config") -> T:
    """Build dataclass `cls` from `data`, checking every key and type; missing keys keep defaults. Keys a class
    renamed (its `RENAMED_KEYS`, old → new) are read under their new names."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    renamed = getattr(cls, "RENAMED_KEYS", {})  # old spellings a class still reads, so old run directories load
    data = {renamed.get(key, key): value for key, value in data.items()}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where.rstrip()}: unknown key {unknown[0]!r} (known: {', '.join(sorted(fields))})")
    values = {name: _coerce(hints[name], value, _key_path(where, name)) for name, value in data.items()}
    try:
        return cls(**values)  # the dataclass's own checks (`__post_init__`) run here
    except InvalidValue as error:
        raise ConfigError(f"{_key_path(where, error.key)}: {error.problem}") from None


def _key_path(where: str, key: str) -> str:
    """`FILE.optim.lr` below a file, `--set optim.lr` below the command line's overrides."""
    return f"{where}{key}" if where.endswith(" ") else f"{where}.{key}"


class InvalidValue(ConfigError):
    """Raised by a config dataclass's `__post_init__` for one of its keys; `from_dict` adds the key path, so
    the user reads `FILE.captioner.sampler.n_frames: must be at least 1, got 0`."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key}: {problem}")
        self.key, self.problem = key, problem


def require(condition: bool, key: str, problem: str) -> None:
    """`InvalidValue(key, problem)` unless `condition` holds: one line per rule in a `__post_init__`."""
    if not condition:
        raise InvalidValue(key, problem)


def require_positive(config: Any, *keys: str) -> None:
    """Each named int field of `config` must be at least 1 (sizes, counts, epochs)."""
    for key in keys:
        value = getattr(config, key)
        require(value is None or value >= 1, key, f"must be at least 1, got {value!r}")


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """Check `value` against type `hint`, converting lossless cases (int→float, list→tuple)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(option, value, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {hint}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        items = [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or hint is tuple) else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads `1e-3` (no dot) as a string
        except ValueError:
            pass
    if hint in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    if isinstance(hint, type) and not isinstance(value, hint):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def parse_override(text: str) -> tuple[list[str], Any]:
    """`'train.lr=1e-3'` → (['train', 'lr'], 0.001); the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. train.epochs=5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as error:
        raise ConfigError(f"--set {text!r}: value is not valid YAML ({error.problem})") from None
    return key.strip().split("."), value


def apply_overrides(data: dict, overrides: typing.Iterable[str]) -> dict:
    """Return a copy of nested dict `data` with each `key.path=value` override set."""
    import copy

    result = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text!r}: {part!r} is a value, not a section")
            node = child
        node[path[-1]] = value
    return result


def read_yaml(path: str | Path) -> dict:
    """Load a YAML mapping, with one-line errors for missing or malformed files."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


OVERRIDES = "--set "  # where an error in a `--set` value is said to be: `--set optim.lr: must be > 0`


def load_config(cls: type[T], path: str | Path | None = None, overrides: typing.Iterable[str] = ()) -> T:
    """Defaults ← YAML file ← `--set` overrides, validated into dataclass `cls`. The file is checked on its own
    first, so an error names the file when it is the file's and `--set` when an override causes it."""
    data = read_yaml(path) if path is not None else {}
    config = from_dict(cls, data, str(path) if path else "config")
    overrides = list(overrides)
    return from_dict(cls, apply_overrides(data, overrides), OVERRIDES) if overrides else config


def dump_yaml(config: Any) -> str:
    """The full config (defaults included) as YAML text."""
    return yaml.safe_dump(to_dict(config), sort_keys=False)

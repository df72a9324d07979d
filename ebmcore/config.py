"""Typed configs read from YAML, overridable from the command line, saved with each run.

A config is a tree of dataclasses. :func:`load_config` reads a YAML file with
``yaml.safe_load``, applies ``key.sub=value`` overrides (values parsed as YAML),
and builds the dataclasses, rejecting unknown keys and wrong types. Each field can
state its valid range in metadata (``check(min=..., max=..., choices=...)``);
an absurd value raises :class:`~ebmcore.errors.ConfigError` naming the full key.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Union

import yaml

from .errors import ConfigError
from .io import atomic_write


def check(default=dataclasses.MISSING, *, min=None, max=None, choices=None, default_factory=dataclasses.MISSING):
    """A dataclass field with a valid range (inclusive) or a set of choices."""
    meta = {"min": min, "max": max, "choices": choices}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp, key: str):
    """Convert a YAML value to the annotated type, or raise ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {_type_name(tp)} fields, got {value!r}")
        return _build(tp, value, key + ".")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{key}: expected a finite number, got {value!r}")
            return float(value)
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def _validate(field: dataclasses.Field, value, key: str):
    meta = field.metadata
    if value is None:
        return
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise ConfigError(f"{key}: {value!r} is not one of {list(meta['choices'])}")
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            if meta.get("min") is not None and item < meta["min"]:
                raise ConfigError(f"{key}: {item!r} is below the minimum {meta['min']}")
            if meta.get("max") is not None and item > meta["max"]:
                raise ConfigError(f"{key}: {item!r} is above the maximum {meta['max']}")


def _build(cls, data: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key {prefix}{unknown[0]} (valid keys under "
                          f"{prefix.rstrip('.') or 'the top level'}: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, value in data.items():
        key = prefix + name
        kwargs[name] = _coerce(value, hints[name], key)
        _validate(fields[name], kwargs[name], key)
    try:
        obj = cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{prefix or 'config'}: {exc}") from exc
    if hasattr(obj, "validate"):
        obj.validate(prefix)
    return obj


def _set_path(tree: dict, dotted: str, value) -> None:
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {part} is not a section")
    node[parts[-1]] = value


def yaml_message(err: yaml.YAMLError) -> str:
    """One line for a YAML error: the file, line and column, and what is wrong there."""
    mark = getattr(err, "problem_mark", None)
    where = f"{mark.name}, line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
    problem = getattr(err, "problem", None) or str(err)
    if "could not determine a constructor for the tag" in problem:
        tag = problem.split("'")[1] if "'" in problem else problem
        tag = tag.replace("tag:yaml.org,2002:", "!!")
        return (f"{where}: refused the YAML tag {tag} (configs are read with the safe loader, "
                "which builds no Python objects)")
    return f"{where}: YAML syntax error: {problem}"


def _safe_yaml(text, source: str):
    """``yaml.safe_load`` with a YAML error turned into a one-line ConfigError naming ``source``."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        if mark is not None:
            mark.name = source
        raise ConfigError(yaml_message(err)) from err


def apply_overrides(tree: dict, overrides: list[str] | None) -> dict:
    """Apply ``key.sub=value`` strings to a nested dict; values are parsed as YAML."""
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        _set_path(tree, key.strip(), _safe_yaml(raw, f"override {item!r}") if raw.strip() else None)
    return tree


def from_dict(cls, data: dict | None):
    """Build the dataclass tree ``cls`` from a nested dict (unknown keys are errors)."""
    return _build(cls, data or {})


def load_config(cls, path: str | Path | None = None, overrides: list[str] | None = None):
    """Read ``path`` (YAML, safe loader) into ``cls`` after applying ``overrides``."""
    tree: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        tree = _safe_yaml(path.read_text(), str(path)) or {}
        if not isinstance(tree, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return from_dict(cls, apply_overrides(tree, overrides))


def to_dict(cfg) -> dict:
    """The config as plain nested dicts (what is saved with a run)."""
    return dataclasses.asdict(cfg)


def save_config(cfg, path: str | Path) -> Path:
    """Write the resolved config as YAML, atomically."""
    text = yaml.safe_dump(to_dict(cfg), sort_keys=False)
    return atomic_write(path, lambda tmp: tmp.write_text(text))

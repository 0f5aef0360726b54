"""Typed settings: build nested dataclasses from plain dicts (JSON/YAML) with clear errors.

Every stage declares its settings as a dataclass whose fields carry defaults and docstrings.
The workflow passes a stage exactly the settings it reads, as JSON on the command line
(``--settings``); :func:`from_dict` turns that into the dataclass, rejecting unknown keys and
wrong types with a one-line :class:`~maldnerf.errors.UserError` naming the setting.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

from .errors import UserError

T = TypeVar("T")

SETTINGS_HELP = (
    "stage settings as JSON, or @path to a JSON/YAML file; unknown keys are an error "
    "(default: every setting at its default)"
)


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "settings") -> T:
    """Build dataclass ``cls`` from ``data``; missing keys take their defaults.

    ``where`` is the dotted name used in error messages (e.g. ``nerf.train``).
    """
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping of settings, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise UserError(
            f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}"
        )
    values = {name: _convert(hints[name], data[name], f"{where}.{name}") for name in data}
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{where}: {exc}") from None


def to_dict(settings: Any) -> dict[str, Any]:
    """The plain-dict form of a settings dataclass (inverse of :func:`from_dict`)."""
    return dataclasses.asdict(settings)


def load_settings(cls: type[T], text: str | None, where: str = "--settings") -> T:
    """Parse ``text`` (JSON, or ``@path`` to a JSON/YAML file) into dataclass ``cls``."""
    if not text:
        return from_dict(cls, {}, where)
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise UserError(f"{where}: settings file {path} not found")
        raw = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            import yaml

            return from_dict(cls, yaml.safe_load(raw), where)
        text = raw
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{where}: not valid JSON ({exc})") from None
    return from_dict(cls, data, where)


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = get_origin(hint)
    args = get_args(hint)
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(option, value, where)
            except UserError as exc:
                errors.append(str(exc))
        raise UserError(errors[0] if len(errors) == 1 else f"{where}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise UserError(f"{where}: {value!r} is not one of {choices}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise UserError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise UserError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(
                _convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value))
            )
        item = args[0] if args else Any
        converted = [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(converted) if origin is tuple else converted
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a mapping, got {value!r}")
        key_type, value_type = args if args else (Any, Any)
        return {k: _convert(value_type, v, f"{where}.{k}") for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise UserError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UserError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise UserError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def require(condition: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``condition``; use in ``__post_init__`` checks.

    :func:`from_dict` turns the error into a :class:`UserError` prefixed with the setting's name.
    """
    if not condition:
        raise ValueError(message)

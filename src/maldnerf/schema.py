"""Generate the workflow's config JSON schema from the settings dataclasses.

Every property gets its type, its default and the field's docstring as ``description``, so
the schema, the dataclasses and their documentation cannot drift apart. ``maldnerf schema``
writes it; a test checks that ``workflow/schemas/config.schema.yaml`` is up to date.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from typing import Any, get_args, get_origin

from .config import NAME_PATTERN, WorkflowConfig


def field_docs(cls: type) -> dict[str, str]:
    """Docstrings written as a string literal right under each dataclass field (incl. bases)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, following in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def _plain(value: Any) -> Any:
    """JSON-like form of a default: dataclasses become dicts, tuples lists (also nested)."""
    if dataclasses.is_dataclass(value):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def type_schema(hint: Any) -> dict[str, Any]:
    """JSON schema of a type annotation."""
    origin, args = get_origin(hint), get_args(hint)
    if dataclasses.is_dataclass(hint):
        return dataclass_schema(hint)
    if origin in (typing.Union, types.UnionType):
        if any(dataclasses.is_dataclass(a) for a in args):
            # Snakemake's default-filling validator cannot descend into optional objects.
            raise TypeError(f"optional nested settings ({hint}) are not supported; give a default")
        options = [type_schema(a) for a in args if a is not type(None)]
        if type(None) in args:
            options.append({"type": "null"})
        return options[0] if len(options) == 1 else {"anyOf": options}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (list, tuple):
        item = args[0] if args else Any
        return (
            {"type": "array", "items": type_schema(item)} if item is not Any else {"type": "array"}
        )
    if origin is dict:
        value = args[1] if args else Any
        schema: dict[str, Any] = {"type": "object"}
        if value is not Any:
            schema["additionalProperties"] = type_schema(value)
        return schema
    simple = {bool: "boolean", int: "integer", float: "number", str: "string"}
    if hint in simple:
        return {"type": simple[hint]}
    return {}


def dataclass_schema(cls: type) -> dict[str, Any]:
    """Object schema of a settings dataclass: typed properties with defaults and descriptions."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):
        schema = type_schema(hints[f.name])
        schema = {**schema, "description": docs.get(f.name) or schema.get("description", "")}
        schema = {"description": schema.pop("description"), **schema}
        if f.default is not dataclasses.MISSING:
            schema["default"] = _plain(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            schema["default"] = _plain(f.default_factory())
        properties[f.name] = schema
    schema = {"type": "object", "additionalProperties": False, "properties": properties}
    doc = inspect.getdoc(cls)
    if doc:
        schema = {"description": " ".join(doc.split("\n\n")[0].split()), **schema}
    if required:
        schema["required"] = required
    return schema


def build_schema() -> dict[str, Any]:
    """The whole config.yaml schema."""
    schema = dataclass_schema(WorkflowConfig)
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
    schema["required"] = ["scenes"]
    scenes = schema["properties"]["scenes"]
    scenes.pop("default", None)
    scenes["minItems"] = 1
    scene = scenes["items"]
    scene["required"] = ["name"]
    scene["properties"]["name"].pop("default")
    scene["properties"]["name"]["pattern"] = f"^{NAME_PATTERN}$"
    return schema


def render_schema() -> str:
    """The schema as the YAML text stored in the repository."""
    import yaml

    header = (
        "# Generated by `maldnerf schema` from the settings dataclasses; do not edit by hand.\n"
        "# Every property's description is the docstring of the field it mirrors.\n"
    )
    return header + yaml.safe_dump(build_schema(), sort_keys=False, width=100, allow_unicode=True)


def settings_help(cls: type, width: int = 100) -> str:
    """Every key of a stage's ``--settings`` (nested keys dotted), its doc and default, as text
    for ``--help``."""
    lines = ["settings (keys of --settings; [default]):"]

    def walk(klass: type, prefix: str) -> None:
        docs = field_docs(klass)
        hints = typing.get_type_hints(klass)
        defaults = klass()
        for item in dataclasses.fields(klass):
            name, value = prefix + item.name, getattr(defaults, item.name)
            if dataclasses.is_dataclass(hints[item.name]):
                walk(hints[item.name], name + ".")
                continue
            text = f"{docs.get(item.name, '')} [{_plain(value)!r}]".strip()
            lines.extend(
                textwrap.wrap(text, width, initial_indent=f"  {name}: ", subsequent_indent=" " * 6)
            )

    walk(cls, "")
    return "\n".join(lines)

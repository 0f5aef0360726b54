"""The workflow configuration (``config.yaml``) and the settings each stage receives from it.

``config.yaml`` has one section per stage plus the list of scenes and the named variants; its
JSON schema (``workflow/schemas/config.schema.yaml``) is generated from the dataclasses here
(see :mod:`maldnerf.schema`). A scene may override any global section (``overrides``), and a
variant may override the NeRF-side sections; overrides are deep-merged dicts.

:class:`Pipeline` answers the workflow's questions — which scenes and variants run, and the
exact settings each rule passes to its stage (its ``params``), so that Snakemake reruns a
stage exactly when a setting it reads changes.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from .errors import UserError
from .masks import MaskSettings
from .poses import ColmapSettings
from .prepare.stage import PrepareSettings
from .settings import from_dict, require, to_dict

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
NO_CUSTOMIZATION = "none"


@dataclass
class SceneConfig(PrepareSettings):
    """One scene: where its views come from and how its poses and masks are obtained."""

    name: str = ""
    """Scene name; results go to ``results/<name>/`` (letters, digits, ``_``, ``-``, ``.``)."""
    poses: Literal["colmap", "known"] = "colmap"
    """``colmap``: estimate poses; ``known``: use the scene's transforms.json / poses_bounds.npy."""
    masks: MaskSettings = field(default_factory=MaskSettings)
    """How the object masks are made (dilation in pixels, from files or a 3D box)."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Per-scene changes to the global sections, e.g. ``{nerf: {parameterization: contract}}``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            bool(re.fullmatch(NAME_PATTERN, self.name)),
            f"name {self.name!r} must be letters, digits, '_', '-' or '.'",
        )


@dataclass
class VariantConfig:
    """A named variant of the method: overrides of the base settings."""

    description: str = ""
    """What the variant tests (shown in the table's notes)."""
    customization: str = "scene"
    """Name of the entry in ``customizations`` to use, or ``none`` for the base diffusion model."""
    nerf: dict[str, Any] = field(default_factory=dict)
    """Changes to the ``nerf`` section for this variant (deep-merged)."""
    idu: dict[str, Any] = field(default_factory=dict)
    """Changes to the ``idu`` section for this variant (deep-merged)."""


@dataclass
class WorkflowConfig:
    """Everything in config.yaml."""

    scenes: list[SceneConfig] = field(default_factory=list)
    """The scenes to process."""
    colmap: ColmapSettings = field(default_factory=ColmapSettings)
    """Structure-from-motion options for scenes with ``poses: colmap``."""

    def __post_init__(self) -> None:
        require(len(self.scenes) > 0, "scenes: give at least one scene")
        names = [s.name for s in self.scenes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        require(not duplicates, f"scenes: duplicate scene name(s) {', '.join(duplicates)}")


def deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``changes`` merged in (nested dicts merged key by key)."""
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class Pipeline:
    """The validated configuration and the per-rule settings derived from it."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.raw = copy.deepcopy(config)
        self.config = from_dict(WorkflowConfig, self.raw, "config")
        self.scenes = {s.name: s for s in self.config.scenes}
        for scene in self.config.scenes:
            unknown = sorted(set(scene.overrides) - self.overridable_sections)
            if unknown:
                raise UserError(
                    f"config: scenes[{scene.name}].overrides: unknown section(s) {', '.join(unknown)}; "
                    f"known: {', '.join(sorted(self.overridable_sections))}"
                )
            # Building every stage's settings once validates the merged values early.
            self.poses_params(scene.name)

    overridable_sections = {"colmap"}

    def section(self, scene: str, name: str) -> dict[str, Any]:
        """Global section ``name`` with the scene's overrides merged in."""
        return deep_merge(self.raw.get(name, {}), self.scenes[scene].overrides.get(name, {}))

    # --------------------------------------------------------------- per-rule settings
    def prepare_params(self, scene: str) -> dict[str, Any]:
        """Exactly the settings the prepare stage reads (PrepareSettings)."""
        config = self.scenes[scene]
        return {f.name: to_dict_value(getattr(config, f.name)) for f in fields(PrepareSettings)}

    def poses_params(self, scene: str) -> dict[str, Any]:
        """Settings of the poses stage: method and, for COLMAP, the merged colmap section."""
        colmap = from_dict(ColmapSettings, self.section(scene, "colmap"), f"scenes[{scene}] colmap")
        return {"method": self.scenes[scene].poses, "colmap": to_dict(colmap)}

    def masks_params(self, scene: str) -> dict[str, Any]:
        return to_dict(self.scenes[scene].masks)


def to_dict_value(value: Any) -> Any:
    """Plain-data form of a settings value (dataclasses become dicts)."""
    import dataclasses

    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else copy.deepcopy(value)


def check_schema(config: dict[str, Any], schema_path: str | Any) -> None:
    """Validate ``config`` against the JSON schema; raise one readable line per first mistake.

    The message names the setting by its path in config.yaml (``scenes[0].poses``) and says
    what is allowed, instead of the validator's full dump.
    """
    import jsonschema
    import yaml

    with open(schema_path) as handle:
        schema = yaml.safe_load(handle)
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is None:
        return
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    where = where.lstrip(".") or "config"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = (
            sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, dict) else []
        )
        message = f"unknown setting(s) {', '.join(extra)}; known: {', '.join(allowed)}"
    elif error.validator == "enum":
        message = f"{error.instance!r} is not one of {', '.join(map(repr, error.validator_value))}"
    elif error.validator == "type":
        message = f"expected {error.validator_value}, got {error.instance!r}"
    else:
        message = error.message
    raise UserError(f"config.yaml: {where}: {message}")

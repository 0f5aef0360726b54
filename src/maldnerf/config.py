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
import dataclasses
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from .diffusion.customize import CustomizeSettings
from .diffusion.inpaint import InpaintSettings
from .diffusion.models import TINY, DiffusionSettings
from .diffusion.pretrain import PretrainSettings
from .errors import UserError
from .evaluate.stage import EvaluateSettings
from .evaluate.table import TableSettings
from .masks import MaskSettings
from .nerf.settings import IduSettings, NerfSettings, RenderSettings
from .poses import ColmapSettings
from .prepare.stage import PrepareSettings
from .settings import from_dict, require, to_dict

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
NO_CUSTOMIZATION = "none"
PRETRAINED_TINY = "results/pretrain/tiny"
"""Where the workflow builds the pretrained tiny base (``diffusion.model: tiny``)."""


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
    diffusion: DiffusionSettings = field(default_factory=DiffusionSettings)
    """The latent-diffusion inpainting model and where it runs."""
    pretrain: PretrainSettings = field(default_factory=PretrainSettings)
    """How the tiny base model is pretrained on generated rooms (only for ``diffusion.model:
    tiny``; built once per machine and shared by every scene)."""
    customizations: dict[str, CustomizeSettings] = field(
        default_factory=lambda: {"scene": CustomizeSettings()}
    )
    """Named scene customisations (LoRA + learned tokens); variants pick one by name."""
    inpaint: InpaintSettings = field(default_factory=InpaintSettings)
    """Initial inpainting of the training views, and the re-inpainting of the dataset updates."""
    nerf: NerfSettings = field(default_factory=NerfSettings)
    """NeRF training of the base method; variants change parts of it."""
    idu: IduSettings = field(default_factory=IduSettings)
    """Iterative dataset update of the base method; variants change parts of it."""
    render: RenderSettings = field(default_factory=RenderSettings)
    """Rendering of the trained NeRFs."""
    evaluate: EvaluateSettings = field(default_factory=EvaluateSettings)
    """Metrics on the test views (and where their backbone weights are)."""
    table: TableSettings = field(default_factory=TableSettings)
    """The results table across scenes and variants."""
    variants: dict[str, VariantConfig] = field(default_factory=lambda: {"full": VariantConfig()})
    """Named variants of the method (the paper's ablation rows, or your own)."""
    run_variants: list[str] = field(default_factory=lambda: ["full"])
    """Which variants to run, in the order the table lists them."""

    def __post_init__(self) -> None:
        require(len(self.scenes) > 0, "scenes: give at least one scene")
        names = [s.name for s in self.scenes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        require(not duplicates, f"scenes: duplicate scene name(s) {', '.join(duplicates)}")
        require(len(self.run_variants) > 0, "run_variants: name at least one variant")
        unknown = [v for v in self.run_variants if v not in self.variants]
        require(
            not unknown,
            f"run_variants: unknown variant(s) {', '.join(unknown)}; defined: {', '.join(self.variants)}",
        )
        for name in list(self.variants) + list(self.customizations):
            require(
                bool(re.fullmatch(NAME_PATTERN, name)),
                f"name {name!r} must be letters, digits, '_', '-' or '.'",
            )
        require(
            NO_CUSTOMIZATION not in self.customizations,
            f"customizations: {NO_CUSTOMIZATION!r} is reserved",
        )
        for name, variant in self.variants.items():
            choices = [*self.customizations, NO_CUSTOMIZATION]
            require(
                variant.customization in choices,
                f"variants.{name}.customization: {variant.customization!r} is not one of {', '.join(choices)}",
            )


def in_config_yaml(message: str) -> str:
    """``message`` as ``config.yaml: <setting>: ...``, the form every config error takes."""
    if message.startswith("config.yaml: "):
        return message
    for head in ("config: ", "config."):
        if message.startswith(head):
            message = message[len(head) :]
            break
    return f"config.yaml: {message}"


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

    overridable_sections = {
        "colmap",
        "diffusion",
        "customizations",
        "inpaint",
        "nerf",
        "idu",
        "render",
        "evaluate",
    }

    def __init__(self, config: dict[str, Any]) -> None:
        try:
            self._load(config)
        except UserError as exc:
            raise UserError(in_config_yaml(str(exc))) from None

    def _load(self, config: dict[str, Any]) -> None:
        self.raw = copy.deepcopy(config)
        self.config = from_dict(WorkflowConfig, self.raw, "config")
        self.scenes = {s.name: s for s in self.config.scenes}
        self.variants = list(self.config.run_variants)
        for scene in self.config.scenes:
            if scene.source != "synthetic" and not Path(scene.source).is_dir():
                raise UserError(
                    f"scenes[{scene.name}].source: {scene.source!r} is neither 'synthetic' nor an "
                    "existing folder; give the scene folder's path (images/ + masks/, or "
                    "SPIn-NeRF's images_4/), absolute or relative to the working directory"
                )
            unknown = sorted(set(scene.overrides) - self.overridable_sections)
            if unknown:
                raise UserError(
                    f"config: scenes[{scene.name}].overrides: unknown section(s) {', '.join(unknown)}; "
                    f"known: {', '.join(sorted(self.overridable_sections))}"
                )
            # Building every stage's settings once checks the merged values up front.
            self.poses_params(scene.name)
            for customization in self.customizations_in_use():
                self.customize_params(scene.name, customization)
            self.inpaint_params(scene.name)
            for variant in self.variants:
                self.train_params(scene.name, variant)
            self.render_params(scene.name)
            self.evaluate_params(scene.name)

    def section(self, scene: str, name: str) -> dict[str, Any]:
        """Global section ``name`` (as a dict) with the scene's overrides merged in."""
        base = to_dict_value(getattr(self.config, name))
        return deep_merge(base, self.scenes[scene].overrides.get(name, {}))

    def customization_of(self, variant: str) -> str:
        """The customisation a variant uses (``none``: the base model)."""
        return self.config.variants[variant].customization

    def customizations_in_use(self) -> list[str]:
        """Customisations needed by the variants that run (``none`` excluded), in order."""
        names = [self.customization_of(v) for v in self.variants]
        return [n for n in dict.fromkeys(names) if n != NO_CUSTOMIZATION]

    def _settings(self, cls: type, data: dict[str, Any], where: str) -> dict[str, Any]:
        return to_dict(from_dict(cls, data, where))

    # --------------------------------------------------------------- per-rule settings
    def prepare_params(self, scene: str) -> dict[str, Any]:
        """Exactly the settings the prepare stage reads (PrepareSettings)."""
        config = self.scenes[scene]
        return {f.name: to_dict_value(getattr(config, f.name)) for f in fields(PrepareSettings)}

    def source_files(self, scene: str) -> list[str]:
        """Files of a folder scene (sorted, hidden ones left out): the prepare rule's inputs,
        so that adding, removing or editing a photo or mask reruns the scene. Synthetic scenes
        have none."""
        config = self.scenes[scene]
        if config.source == "synthetic":
            return []
        root = Path(config.source)
        return sorted(
            str(path)
            for path in root.rglob("*")
            if path.is_file() and not any(p.startswith(".") for p in path.relative_to(root).parts)
        )

    def poses_params(self, scene: str) -> dict[str, Any]:
        """Settings of the poses stage: method and, for COLMAP, the merged colmap section."""
        colmap = self._settings(
            ColmapSettings, self.section(scene, "colmap"), f"scenes[{scene}] colmap"
        )
        return {"method": self.scenes[scene].poses, "colmap": colmap}

    def masks_params(self, scene: str) -> dict[str, Any]:
        return to_dict(self.scenes[scene].masks)

    def uses_tiny(self, scene: str) -> bool:
        """Whether the scene's diffusion model is the pretrained tiny base."""
        return self.section(scene, "diffusion")["model"].strip() == TINY

    def pretrain_params(self) -> dict[str, Any]:
        """Settings of the pretrain stage (the tiny base, shared by every scene)."""
        return to_dict(self.config.pretrain)

    def diffusion_params(self, scene: str) -> dict[str, Any]:
        """The scene's diffusion settings as the stages read them: ``tiny`` becomes the folder
        the pretrain rule builds (:data:`PRETRAINED_TINY`), loaded as any local model."""
        settings = self._settings(DiffusionSettings, self.section(scene, "diffusion"), "diffusion")
        if settings["model"].strip() == TINY:
            settings["model"] = PRETRAINED_TINY
        return settings

    def customize_params(self, scene: str, customization: str) -> dict[str, Any]:
        """Settings of customize: the model (diffusion) and the named customisation."""
        customizations = self.section(scene, "customizations")
        return {
            "diffusion": self.diffusion_params(scene),
            "customize": self._settings(
                CustomizeSettings, customizations[customization], f"customizations.{customization}"
            ),
        }

    def inpaint_params(self, scene: str) -> dict[str, Any]:
        """Settings of inpaint (the same for every customisation)."""
        return {
            "diffusion": self.diffusion_params(scene),
            "inpaint": self._settings(InpaintSettings, self.section(scene, "inpaint"), "inpaint"),
        }

    def train_params(self, scene: str, variant: str) -> dict[str, Any]:
        """Settings of train: the variant's NeRF and IDU settings, and, when IDU is on, the
        diffusion and inpaint settings of the model that re-inpaints the targets."""
        config = self.config.variants[variant]
        nerf = deep_merge(self.section(scene, "nerf"), config.nerf)
        idu = self._settings(
            IduSettings,
            deep_merge(self.section(scene, "idu"), config.idu),
            f"variants.{variant}.idu",
        )
        return {
            "nerf": self._settings(NerfSettings, nerf, f"variants.{variant}.nerf"),
            "idu": idu,
            **(self.inpaint_params(scene) if idu["enabled"] else {}),
        }

    def render_params(self, scene: str) -> dict[str, Any]:
        return self._settings(RenderSettings, self.section(scene, "render"), "render")

    def evaluate_params(self, scene: str) -> dict[str, Any]:
        return self._settings(EvaluateSettings, self.section(scene, "evaluate"), "evaluate")

    def evaluate_gpus(self, scene: str) -> int:
        """GPUs the evaluate job asks for: one when a backbone it computes a metric with (LPIPS's
        AlexNet, Inception) has its weights here and may run on a GPU, none otherwise (PSNR and
        SSIM alone take a second on the CPU)."""
        from .evaluate.backbones import alexnet_file, inception_files

        settings = self.evaluate_params(scene)
        if settings["device"] == "cpu":
            return 0
        wanted = set(settings["metrics"])
        alexnet = alexnet_file(settings["alexnet_weights"])
        inception = inception_files(settings["inception_weights"])
        lpips = bool(wanted & {"lpips", "m_lpips"}) and alexnet.is_file()
        fid = bool(wanted & {"fid", "kid"}) and any(p.is_file() for p in inception)
        return int(lpips or fid)

    def table_params(self) -> dict[str, Any]:
        return to_dict(self.config.table)

    def contact_sheet_params(self) -> dict[str, Any]:
        """The one table setting the per-scene contact sheets read."""
        return {"sheet_views": self.config.table.sheet_views}

    # --------------------------------------------------------------- variants that can run
    def missing_requirement(self, variant: str) -> str | None:
        """Why ``variant`` cannot run on this machine (a missing weight file), or ``None``.

        A variant with the LPIPS loss on the inpainted region needs torchvision's pretrained
        AlexNet; without it the variant is not scheduled and the table says why (running
        ``maldnerf train`` for it directly fails with the same message).
        """
        from .evaluate.backbones import default_alexnet_path

        losses = {self.train_params(s, variant)["nerf"]["inpainted_loss"] for s in self.scenes}
        if "lpips" not in losses:  # in any scene (scenes may override nerf settings)
            return None
        weights = default_alexnet_path()
        if weights.is_file():
            return None
        return f"not run: its LPIPS loss needs torchvision's AlexNet weights at {weights} (see README, Metric weights)"

    def runnable_variants(self) -> list[str]:
        """The variants in ``run_variants`` whose requirements are met, in config order."""
        return [v for v in self.variants if self.missing_requirement(v) is None]

    def table_variants(self) -> list[dict[str, Any]]:
        """Every requested variant for the table: name, description, and why it did not run."""
        return [
            {
                "name": v,
                "description": self.config.variants[v].description,
                "skipped": self.missing_requirement(v),
            }
            for v in self.variants
        ]

    def benchmark_files(self) -> list[str]:
        """The ``benchmark:`` files of every job the table summarises (the jobs of the scenes
        and variants that run; ``results/benchmarks/<stage>/<job>.tsv``)."""
        variants = self.runnable_variants()
        used = list(dict.fromkeys(self.customization_of(v) for v in variants))
        tiny = any(self.uses_tiny(s) for s in self.scenes)
        jobs = [
            *([("pretrain", "tiny")] if tiny else []),
            *(("prepare", s) for s in self.scenes),
            *(("poses", s) for s in self.scenes),
            *(("masks", s) for s in self.scenes),
            *(
                ("customize", f"{s}-{c}")
                for s in self.scenes
                for c in used
                if c != NO_CUSTOMIZATION
            ),
            *(("inpaint", f"{s}-{c}") for s in self.scenes for c in used),
            *(
                (stage, f"{s}-{v}")
                for stage in ("train", "render", "evaluate")
                for s in self.scenes
                for v in variants
            ),
        ]
        return [f"results/benchmarks/{stage}/{job}.tsv" for stage, job in jobs]

    # --------------------------------------------------------------- cluster resources
    def scene_pixels(self, scene: str) -> tuple[int, int]:
        """``(pixels per view, number of views)`` of a scene, for sizing resources.

        Synthetic scenes are sized from their settings; folders from the first image's header
        and the number of files (a folder without readable images counts as a 1-megapixel,
        100-view scene).
        """
        config = self.scenes[scene]
        if config.source == "synthetic":
            s = config.synthetic
            return (s.width // config.downscale) * (
                s.height // config.downscale
            ), s.n_train + s.n_test
        from .images import list_images

        root = Path(config.source)
        folder = next((root / d for d in ("images", "images_4") if (root / d).is_dir()), None)
        if folder is None:
            return 1_000_000, 100
        files = list_images(folder) + (
            list_images(root / "test") if (root / "test").is_dir() else []
        )
        try:
            from PIL import Image

            with Image.open(files[0]) as image:
                width, height = image.size
        except (IndexError, OSError):
            return 1_000_000, 100
        return (width // config.downscale) * (height // config.downscale), len(files)

    def resources(self, stage: str, scene: str, variant: str | None = None) -> dict[str, int]:
        """Default ``mem_mb`` (host memory) and ``runtime`` (minutes) of a GPU stage's job.

        Host memory = a base (Python, PyTorch and CUDA libraries, the diffusion model while it
        loads: ~2 GB for ``tiny``, ~12 GB for Stable Diffusion) + a per-megapixel share of the
        scene's images (all views): 50 MB/MP for the diffusion stages (8-bit images and masks,
        windows), 200 MB/MP for train (images, targets, masks, float ray origins/directions,
        dataset-update snapshots), 100 MB/MP for render/evaluate. Measured at the default size
        (0.6 MP): train peaks at ~1.1 GB, customize and inpaint at ~1.0 GB. Runtime grows with the
        steps and iterations. A profile's ``set-resources`` overrides both per rule.
        """
        pixels, views = self.scene_pixels(scene)
        megapixels = pixels * views / 1e6
        full_model = self.config.diffusion.model != "tiny"
        model_mb = 12000 if full_model else 2000
        if stage == "customize":
            steps = max(c.steps for c in self.config.customizations.values())
            runtime = 10 + steps // (200 if full_model else 1000)
            return {"mem_mb": model_mb + int(50 * megapixels), "runtime": runtime}
        if stage == "inpaint":
            return {"mem_mb": model_mb + int(50 * megapixels), "runtime": 10 + int(views // 4)}
        if stage == "train":
            nerf = self.train_params(scene, variant or self.variants[0])["nerf"]
            runtime = 15 + nerf["iterations"] // 200
            return {"mem_mb": model_mb + 2000 + int(200 * megapixels), "runtime": runtime}
        if stage in ("render", "evaluate"):
            return {"mem_mb": 4000 + int(100 * megapixels), "runtime": 10 + int(views // 4)}
        raise ValueError(f"no resource model for stage {stage}")


def to_dict_value(value: Any) -> Any:
    """Plain-data form of a settings value: dataclasses (also inside dicts and lists) become dicts."""
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, dict):
        return {key: to_dict_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_dict_value(item) for item in value]
    return value


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

# Shared workflow code: config validation, wildcard constraints, input functions.
import json
import re
import shlex
import sys
from pathlib import Path

from snakemake.utils import validate

SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC)

from maldnerf.code_version import stage_digest
from maldnerf.config import NO_CUSTOMIZATION, PRETRAINED_TINY, Pipeline, check_schema
from maldnerf.errors import UserError
from maldnerf.interrupt import forward_to_jobs

SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
try:
    check_schema(config, SCHEMA)  # one readable line for the first mistake
    validate(config, str(SCHEMA))  # fills in the schema's defaults
    PIPELINE = Pipeline(config)  # checks values and cross-references
except UserError as exc:
    sys.exit(f"error: {exc}")

# SIGINT/SIGTERM sent to Snakemake alone reach the running jobs too, which then stop within
# seconds (customize and train with a checkpoint) instead of running to their end.
forward_to_jobs()

# Jobs run `python -m maldnerf` from this checkout (src/ on PYTHONPATH), installed or not.
# Outside conda environments (--sdm conda), `python` is the interpreter running Snakemake,
# which has the package's dependencies.
USES_CONDA = any(
    m.name == "CONDA" for m in workflow.deployment_settings.deployment_method
)
shell.prefix(
    # shell.prefix is formatted like a rule's shell command: braces are doubled.
    f"export PYTHONPATH={shlex.quote(SRC)}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
    + (
        ""
        if USES_CONDA
        else f"export PATH={shlex.quote(str(Path(sys.executable).parent))}:$PATH; "
    )
)


wildcard_constraints:
    scene="|".join(map(re.escape, PIPELINE.scenes)),
    variant="|".join(map(re.escape, PIPELINE.variants)),
    customization="|".join(
        map(re.escape, [*PIPELINE.config.customizations, NO_CUSTOMIZATION])
    ),


def settings_json(settings):
    """A stage's settings as the JSON string its --settings option takes."""
    return json.dumps(settings, sort_keys=True)


def get_customization_dir(wildcards):
    """The customisation folder a job uses, or `none` for the base diffusion model."""
    name = (
        PIPELINE.customization_of(wildcards.variant)
        if "variant" in wildcards.keys()
        else wildcards.customization
    )
    if name == NO_CUSTOMIZATION:
        return NO_CUSTOMIZATION
    return f"results/{wildcards.scene}/diffusion/{name}"


def get_base_model_input(wildcards):
    """The pretrained tiny base when the scene's model is `tiny` (other models are loaded
    from the Hugging Face cache or their folder)."""
    return {"base": PRETRAINED_TINY} if PIPELINE.uses_tiny(wildcards.scene) else {}


def get_customize_input(wildcards):
    """Poses, masks and the pretrained tiny base if used."""
    return {
        "poses": f"results/{wildcards.scene}/poses",
        "masks": f"results/{wildcards.scene}/masks",
        **get_base_model_input(wildcards),
    }


def get_inpaint_input(wildcards):
    """Poses, masks, the tiny base if used, and the customisation unless it is `none`."""
    inputs = get_customize_input(wildcards)
    if wildcards.customization != NO_CUSTOMIZATION:
        inputs["customization"] = get_customization_dir(wildcards)
    return inputs


def get_train_input(wildcards):
    """Poses, masks, the variant's initial inpainting and, for IDU, its customisation."""
    customization = PIPELINE.customization_of(wildcards.variant)
    inputs = {
        "poses": f"results/{wildcards.scene}/poses",
        "masks": f"results/{wildcards.scene}/masks",
        "targets": f"results/{wildcards.scene}/inpaint/{customization}",
    }
    if PIPELINE.train_params(wildcards.scene, wildcards.variant)["idu"]["enabled"]:
        inputs.update(get_base_model_input(wildcards))  # the model that re-inpaints
    if customization != NO_CUSTOMIZATION:
        inputs["customization"] = get_customization_dir(wildcards)
    return inputs


def get_all_metrics(wildcards):
    """Metrics of every scene for every variant that can run here."""
    return [
        f"results/{scene}/metrics/{variant}.json"
        for variant in PIPELINE.runnable_variants()
        for scene in PIPELINE.scenes
    ]


def get_scene_metrics(wildcards):
    """Metrics of one scene for every variant that can run here, in table order."""
    return [
        f"results/{wildcards.scene}/metrics/{variant}.json"
        for variant in PIPELINE.runnable_variants()
    ]


def get_contact_sheets(wildcards):
    """One contact sheet per scene. They are the table's inputs, not its outputs: a job
    reruns for a new input, but not for a new output (a scene added to the config)."""
    return [f"results/{scene}/contact_sheet.png" for scene in PIPELINE.scenes]


def get_final_output():
    """What `snakemake` with no target builds: the results table."""
    return ["results/table.csv"]

# Shared workflow code: config validation, wildcard constraints, input functions.
import json
import shlex
import sys
from pathlib import Path

from snakemake.utils import validate

SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC)

from maldnerf.config import Pipeline, check_schema
from maldnerf.errors import UserError

SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
try:
    check_schema(config, SCHEMA)  # one readable line for the first mistake
    validate(config, str(SCHEMA))  # fills in the schema's defaults
    PIPELINE = Pipeline(config)  # checks values and cross-references
except UserError as exc:
    sys.exit(f"error: {exc}")

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
    scene="|".join(PIPELINE.scenes),


def settings_json(settings):
    """A stage's settings as the JSON string its --settings option takes."""
    return json.dumps(settings, sort_keys=True)


def get_final_output():
    """What `snakemake` with no target builds: poses and masks of every scene."""
    return [
        path
        for scene in PIPELINE.scenes
        for path in (f"results/{scene}/poses", f"results/{scene}/masks")
    ]

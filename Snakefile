# Remove an object from a captured 3D scene with MALD-NeRF: one rule per stage, all logic in
# the maldnerf package (src/). Configure in config.yaml; see README.md.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/poses.smk"
include: "workflow/rules/masks.smk"
include: "workflow/rules/diffusion.smk"
include: "workflow/rules/nerf.smk"
include: "workflow/rules/evaluate.smk"


rule all:
    input:
        get_final_output(),

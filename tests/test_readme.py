"""The README's snakemake commands work as written (checked as dry runs on the shipped config)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess

import pytest
import yaml

from helpers import REPO
from workflow_helpers import (
    job_stats,
    shipped_config,
    snakemake_command,
    snakemake_env,
    write_config,
)

pytestmark = pytest.mark.workflow


def readme_snakemake_commands() -> list[str]:
    """Every ``snakemake …`` command in the README's bash blocks, except the Slurm ones
    (tests/slurm checks those) and the report (it needs a finished run)."""
    text = (REPO / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("#")[0].split("&&"):
                part = part.strip()
                if part.startswith("snakemake ") and "slurm" not in part:
                    commands.append(part)
    return commands


def test_the_readme_has_the_commands_this_test_checks():
    commands = readme_snakemake_commands()
    assert "snakemake --cores all results/table.csv" in commands  # the main command
    assert any("--configfile configs/spinnerf_gpu.yaml" in c for c in commands)
    assert sum("--forcerun" in c for c in commands) >= 2


@pytest.mark.parametrize("command", readme_snakemake_commands())
def test_readme_command_plans_what_it_says(command, tmp_path):
    work = tmp_path / "work"
    write_config(work, shipped_config())
    gpu_config = yaml.safe_load((REPO / "configs/spinnerf_gpu.yaml").read_text())
    for scene in gpu_config["scenes"]:  # "put your scenes in it": an (empty) folder here
        scene["source"] = str(tmp_path / "data" / scene["name"])
        (tmp_path / "data" / scene["name"]).mkdir(parents=True)
    (work / "configs").mkdir()
    (work / "configs/spinnerf_gpu.yaml").write_text(yaml.safe_dump(gpu_config))
    shutil.copy(REPO / "config.yaml", work / "config.yaml")
    # As typed in a shell (brace expansion, quotes), with a dry run of this checkout's workflow.
    dry_run = [*snakemake_command(work), "--cores", "2", "--dry-run", "--quiet=rules"]
    line = shlex.join(dry_run) + command.removeprefix("snakemake")
    result = subprocess.run(
        ["bash", "-c", line], capture_output=True, text=True, cwd=work, env=snakemake_env()
    )
    assert result.returncode == 0, f"{command}:\n{result.stderr[-3000:]}"
    jobs = job_stats(result.stdout + result.stderr)
    args = shlex.split(command)[1:]
    targets = args[args.index("--") + 1 :] if "--" in args else [a for a in args if "/" in a]
    assert jobs, command
    if targets and all("table.csv" not in t for t in targets):
        assert "table" not in jobs and "all" not in jobs, f"{command}: plans {jobs}"
    if "run_variants=[full]" in command:
        assert jobs.get("train") == 1, jobs


def stage_table_targets() -> list[str]:
    """The first path in the output column of each row of the README's stage table, with the
    wildcards of the shipped config's scene, ``full`` variant and ``scene`` customisation."""
    text = (REPO / "README.md").read_text()
    table = text[text.index("| stage | what it does | output") :].split("\n\n")[0]
    targets = []
    for row in table.splitlines()[2:]:
        path = re.search(r"`(results/[^`]*)`", row.rsplit(" | ", 1)[-1])[1]
        for wildcard, value in (("scene", "synthetic"), ("variant", "full")):
            path = path.replace("{" + wildcard + "}", value)
        targets.append(path.replace("{customization}", "scene").rstrip("/"))
    return targets


def test_the_stage_table_names_targets_that_can_be_built(tmp_path):
    targets = stage_table_targets()
    assert len(targets) >= 9 and "results/synthetic/poses" in targets
    write_config(tmp_path, shipped_config())
    result = subprocess.run(
        [*snakemake_command(tmp_path), "--cores", "1", "--dry-run", "--quiet=rules", *targets],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=snakemake_env(),
    )
    assert result.returncode == 0, result.stderr[-3000:]

"""Run the real Snakemake workflow in a temporary directory."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from helpers import REPO


def write_config(directory: Path, config: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def shipped_config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


# An empty torch hub: which variants run (the LPIPS ones need AlexNet weights) must not depend
# on what the machine running the tests has cached.
EMPTY_TORCH_HOME = tempfile.mkdtemp(prefix="maldnerf-tests-torch-home-")


def snakemake_env() -> dict[str, str]:
    """The environment for a snakemake subprocess: this interpreter's bin folder first on PATH,
    and an empty torch hub (``TORCH_HOME``), so no pretrained backbone weights are found."""
    env = dict(os.environ)
    env["TORCH_HOME"] = EMPTY_TORCH_HOME
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def snakemake_command(directory: Path) -> list[str]:
    """``python -m snakemake --snakefile <repo>/Snakefile --directory <directory>``."""
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(directory),
    ]


def snakemake(
    directory: Path, *args: str, timeout: float = 3600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``snakemake --snakefile <repo>/Snakefile --directory <directory> --cores 2 <args>``, run in
    ``directory``; ``env`` adds to (or replaces) :func:`snakemake_env`'s variables."""
    command = [*snakemake_command(directory), "--cores", "2", *args]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**snakemake_env(), **(env or {})},
        timeout=timeout,
        cwd=directory,  # relative paths on the command line are the user's: from the work folder
    )


def jobs_that_would_run(directory: Path, *args: str) -> dict[str, int]:
    """Rule name -> job count from a real ``--dry-run`` (``--quiet rules`` summary)."""
    result = snakemake(directory, "--dry-run", "--quiet=rules", *args)
    assert result.returncode == 0, result.stderr + result.stdout
    return job_stats(result.stdout + result.stderr)


def dry_run_resources(output: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of every job in a ``--dry-run`` printout."""
    import re

    jobs: list[tuple[str, dict[str, str]]] = []
    for line in output.splitlines():
        if match := re.match(r"^(?:local)?rule (\w+):$", line):
            jobs.append((match[1], {}))
        elif (match := re.match(r"^\s+resources: (.*)$", line)) and jobs:
            jobs[-1][1].update(item.split("=", 1) for item in match[1].split(", "))
    return jobs


def job_stats(output: str) -> dict[str, int]:
    """Rule name -> job count from the "Job stats:" table of Snakemake's output."""
    counts: dict[str, int] = {}
    lines = output.splitlines()
    if "Job stats:" not in lines:
        return counts
    for line in lines[lines.index("Job stats:") + 3 :]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


def run_folder_scene_to_masks(source: Path, work: Path) -> subprocess.CompletedProcess:
    """A plain scene folder ``source`` (with known poses) as the only scene of the shipped
    config in ``work``, run through the masks stage (scene name ``room``)."""
    from helpers import write_known_transforms, write_plain_scene

    write_plain_scene(source)
    write_known_transforms(source)
    config = shipped_config()
    config["scenes"] = [
        {"name": "room", "source": str(source), "poses": "known", "masks": {"dilation": 2}}
    ]
    write_config(work, config)
    return snakemake(work, "results/room/masks")


def tiny_workflow_config(scenes: list[str], variants: list[str]) -> dict:
    """The shipped config at the smallest sizes that run every stage: 80x64 synthetic scenes
    (4 + 2 views, seeds 0, 1, ...) with their known poses (no COLMAP), tiny NeRFs trained
    for 10 iterations. Variants ``plain_a``, ``plain_b``, ``plain_c`` use the base diffusion model
    (no customize job) and no dataset update, and differ in their NeRF seed."""
    from helpers import tiny_nerf_dict

    config = shipped_config()
    template = config["scenes"][0]
    template["synthetic"].update(width=80, height=64, n_train=4, n_test=2)
    template.update(poses="known", masks={"dilation": 2, "source": "files"})
    config["scenes"] = [
        {**yaml.safe_load(yaml.safe_dump(template)), "name": name} for name in scenes
    ]
    for seed, scene in enumerate(config["scenes"]):
        scene["synthetic"]["seed"] = seed
    config["inpaint"]["num_steps"] = 2
    config["nerf"] = tiny_nerf_dict(iterations=10, checkpoint_every=5, log_every=5)
    config["variants"] = {
        name: {
            "description": f"test variant {name}",
            "customization": "none",
            "nerf": {"seed": seed},
            "idu": {"enabled": False},
        }
        for seed, name in enumerate(["plain_a", "plain_b", "plain_c"])
    }
    config["run_variants"] = list(variants)
    return config

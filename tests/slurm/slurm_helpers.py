"""Shared by the Slurm tests: the real profile as Snakemake reads it, the CI overrides layered on
it, whether a Slurm cluster answers, and running Snakemake against it under a hard timeout."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yte

from helpers import REPO
from workflow_helpers import snakemake_command, snakemake_env

SLURM_PROFILE = REPO / "workflow" / "profiles" / "slurm"
CI_PROFILE = REPO / "tests" / "slurm" / "profile"
PROFILE_GPU_STAGES = ("customize", "inpaint", "train", "render")
"""Stages the Slurm profile gives one GPU."""
GPU_STAGES = (*PROFILE_GPU_STAGES, "evaluate")
"""Stages that may run on a GPU (evaluate asks for one itself, only with backbone weights)."""
CPU_STAGES = ("prepare", "poses", "masks", "table", "contact_sheet")


def load_profile(profile: Path = SLURM_PROFILE) -> dict:
    """The profile's config.yaml after YTE, as Snakemake's profile parser evaluates it."""
    with open(profile / "config.yaml") as stream:
        return yte.process_yaml(stream, require_use_yte=True)


def gpu_off_overrides(profile: Path = SLURM_PROFILE) -> list[str]:
    """``--set-resources`` values that repeat the profile's per-rule resources with no GPU.

    On the command line, ``--set-resources`` replaces the profile's whole set-resources mapping,
    so every other per-rule entry is carried over unchanged; only gpu becomes 0 and gpu_model
    goes away. Evaluate's own GPU request (with backbone weights) is zeroed too.
    """
    overrides = ["evaluate:gpu=0"]
    for rule, resources in (load_profile(profile).get("set-resources") or {}).items():
        for name, value in resources.items():
            if name == "gpu":
                value = 0
            elif name == "gpu_model":
                continue
            overrides.append(f"{rule}:{name}={value}")
    return overrides


def cluster_unavailable() -> str | None:
    """Why no Slurm cluster can run the test's jobs here, or None when one can."""
    if shutil.which("sinfo") is None:
        return "no Slurm cluster: sinfo not found (start one: bash tests/slurm/cluster.sh up)"
    try:
        result = subprocess.run(
            ["sinfo", "--noheader", "--Node", "--format=%T"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        return "no Slurm cluster: sinfo timed out"
    if result.returncode != 0:
        return f"no Slurm cluster: sinfo failed: {result.stderr.strip()[:300]}"
    states = result.stdout.split()
    if not any(state.rstrip("*~#!%$@^-").lower() in ("idle", "mixed") for state in states):
        return f"no idle Slurm node (sinfo node states: {' '.join(states) or 'none'})"
    return None


def node_cpus() -> int:
    """CPUs of the smallest node of the cluster (sinfo %c)."""
    out = subprocess.run(
        ["sinfo", "--noheader", "--Node", "--format=%c"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return min(int(value) for value in out.split())


def snakemake_on_slurm(
    directory: Path, *args: str, timeout: int = 300
) -> subprocess.CompletedProcess:
    """The real Slurm profile with the CI profile layered on it, under ``timeout -k``.

    Snakemake with the slurm executor can hang through SIGTERM when it loses track of a job, so
    a hard kill follows the TERM after 20 s; both leave the Slurm jobs to ``cluster.sh down``.
    Threads are capped at the node's CPUs, or Slurm would never start a job asking for more.
    Put targets after ``--`` in ``args`` (``--set-resources`` takes any number of values).
    """
    command = [
        "timeout",
        "-k",
        "20",
        str(timeout),
        *snakemake_command(directory),
        "--workflow-profile",
        str(SLURM_PROFILE),
        "--profile",
        str(CI_PROFILE),
        "--max-threads",
        str(node_cpus()),
    ]
    overrides = gpu_off_overrides()
    if overrides:
        command += ["--set-resources", *overrides]
    command += args
    return subprocess.run(
        command, capture_output=True, text=True, env=snakemake_env(), timeout=timeout + 60
    )

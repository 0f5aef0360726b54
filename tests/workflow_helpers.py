"""Run the real Snakemake workflow in a temporary directory."""

from __future__ import annotations

import os
import subprocess
import sys
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


def snakemake_env() -> dict[str, str]:
    """The environment for a snakemake subprocess: this interpreter's bin folder first on PATH."""
    env = dict(os.environ)
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


def snakemake(directory: Path, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    """``snakemake --snakefile <repo>/Snakefile --directory <directory> --cores 2 <args>``."""
    command = [*snakemake_command(directory), "--cores", "2", *args]
    return subprocess.run(
        command, capture_output=True, text=True, env=snakemake_env(), timeout=timeout
    )


def jobs_that_would_run(directory: Path, *args: str) -> dict[str, int]:
    """Rule name -> job count from a real ``--dry-run`` (``--quiet rules`` summary)."""
    result = snakemake(directory, *args, "--dry-run", "--quiet", "rules")
    assert result.returncode == 0, result.stderr + result.stdout
    counts: dict[str, int] = {}
    lines = (result.stdout + result.stderr).splitlines()
    if "Job stats:" not in lines:
        return counts
    for line in lines[lines.index("Job stats:") + 3 :]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts

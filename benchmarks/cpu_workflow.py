"""CPU benchmark of the whole workflow: the shipped default end to end, and rerun costs.

Runs, in a fresh temporary directory (or ``--workdir``), all measured in this one run:

1. ``snakemake --cores N results/table.csv`` on the shipped ``config.yaml`` (wall time, and
   per stage the sum of the jobs' ``benchmark:`` seconds);
2. the same command again (a no-op rerun);
3. a dry run of a config with 10 synthetic scenes × the shipped variants (DAG building only);
4. a rerun after changing one NeRF setting (``nerf.iterations`` + 1 for every variant), and its
   ratio to the full run.

Prints a table and writes the figures as JSON (``--output``). Usage::

    python benchmarks/cpu_workflow.py --cores 2 --output benchmarks/cpu_workflow.json
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def snakemake(workdir: Path, cores: int, *args: str, env: dict[str, str] | None = None) -> float:
    """Run snakemake in ``workdir``; return its wall time in seconds (raise on failure)."""
    env = {**os.environ, **(env or {})}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        str(cores),
        *args,
    ]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"snakemake {' '.join(args)} failed:\n{result.stderr[-4000:]}")
    return seconds


def stage_seconds(workdir: Path) -> dict[str, float]:
    """Sum of the ``s`` column of every benchmark TSV, per stage folder."""
    totals: dict[str, float] = defaultdict(float)
    for tsv in sorted((workdir / "results" / "benchmarks").glob("*/*.tsv")):
        with tsv.open() as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                totals[tsv.parent.name] += float(row["s"])
    return dict(totals)


def many_scenes(config: dict, count: int) -> dict:
    """``config`` with ``count`` synthetic scenes (seeds 0..count-1) instead of its scenes."""
    config = copy.deepcopy(config)
    template = next(s for s in config["scenes"] if s.get("source", "synthetic") == "synthetic")
    scenes = []
    for index in range(count):
        scene = copy.deepcopy(template)
        scene["name"] = f"synthetic{index:02d}"
        scene.setdefault("synthetic", {})["seed"] = index
        scenes.append(scene)
    config["scenes"] = scenes
    return config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cores", type=int, default=2, help="cores given to snakemake")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="working directory (default: a new temporary one)",
    )
    parser.add_argument("--output", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="maldnerf-bench-"))
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    (workdir / "config.yaml").parent.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    full = snakemake(workdir, args.cores, "results/table.csv")
    stages = stage_seconds(workdir)
    noop = snakemake(workdir, args.cores, "results/table.csv")

    changed = copy.deepcopy(config)
    changed.setdefault("nerf", {})["iterations"] = (
        changed.get("nerf", {}).get("iterations", 500) + 1
    )
    (workdir / "config.yaml").write_text(yaml.safe_dump(changed, sort_keys=False))
    nerf_rerun = snakemake(workdir, args.cores, "results/table.csv")

    dry_dir = workdir / "dry-run-10-scenes"
    dry_dir.mkdir(exist_ok=True)
    variants = config.get("run_variants", ["full"])
    (dry_dir / "config.yaml").write_text(yaml.safe_dump(many_scenes(config, 10), sort_keys=False))
    # Plan all 6 variants: the LPIPS ones are scheduled only when AlexNet's weight file exists,
    # and a dry run only checks that it does (a placeholder in a scratch torch hub).
    alexnet = dry_dir / "torch" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    alexnet.parent.mkdir(parents=True, exist_ok=True)
    alexnet.write_bytes(b"placeholder for planning only")
    dry = snakemake(
        dry_dir,
        args.cores,
        "--dry-run",
        "--quiet=all",
        "--",
        "results/table.csv",
        env={"TORCH_HOME": str(dry_dir / "torch")},
    )

    figures = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, --cores {args.cores}",
        "full_run_seconds": full,
        "stage_seconds": stages,
        "noop_rerun_seconds": noop,
        "nerf_setting_rerun_seconds": nerf_rerun,
        "nerf_rerun_ratio": nerf_rerun / full,
        "dry_run_10_scenes_seconds": dry,
        "dry_run_jobs": f"10 scenes x {len(variants)} variants",
        "workdir": str(workdir),
    }
    print(f"full run (results/table.csv):        {full:8.1f} s")
    for stage, seconds in sorted(stages.items(), key=lambda item: -item[1]):
        print(f"  {stage:<12} (sum of its jobs)     {seconds:8.1f} s")
    print(f"no-op rerun:                          {noop:8.1f} s")
    print(
        f"rerun after a NeRF setting change:    {nerf_rerun:8.1f} s  ({100 * nerf_rerun / full:.0f}% of the full run)"
    )
    print(f"dry run, 10 scenes x {len(variants)} variants:       {dry:8.1f} s")
    if args.output:
        args.output.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.output}")


if __name__ == "__main__":
    main()

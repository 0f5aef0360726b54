"""The Slurm profile (workflow/profiles/slurm) without a cluster: what Snakemake reads from it,
which resources each job gets, and the sbatch flags the slurm executor plugin builds from them."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers import REPO
from slurm_helpers import (
    CI_PROFILE,
    CPU_STAGES,
    GPU_STAGES,
    PROFILE_GPU_STAGES,
    SLURM_PROFILE,
    gpu_off_overrides,
    load_profile,
)
from workflow_helpers import dry_run_resources, shipped_config, snakemake, write_config


def read_profile_as_snakemake(*extra: str):
    """Snakemake's own command-line parsing of the profile (needs the plugin's options)."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    from snakemake.cli import parse_args

    _, args = parse_args(
        ["--snakefile", str(REPO / "Snakefile"), "--workflow-profile", str(SLURM_PROFILE), *extra]
    )
    return args


def test_profile_asks_one_gpu_for_gpu_stages_only(monkeypatch):
    monkeypatch.delenv("SBATCH_PARTITION", raising=False)
    monkeypatch.delenv("SBATCH_ACCOUNT", raising=False)
    args = read_profile_as_snakemake("--dry-run")
    assert args.executor == "slurm"
    assert args.slurm_status_command == "squeue"  # no sacct needed (clusters without accounting)
    for stage in PROFILE_GPU_STAGES:
        assert args.set_resources[stage]["gpu"].value == 1, stage
    assert "evaluate" not in args.set_resources  # its rule asks only with backbone weights
    for stage in CPU_STAGES:
        assert "gpu" not in args.set_resources.get(stage, {}), stage
    for resources in [args.default_resources, *args.set_resources.values()]:
        assert "slurm_extra" not in resources and "gres" not in resources
    assert "slurm_partition" not in args.default_resources
    assert "slurm_account" not in args.default_resources


def test_partition_and_account_come_from_sbatch_variables(monkeypatch):
    monkeypatch.setenv("SBATCH_PARTITION", "gpu_a100")
    monkeypatch.setenv("SBATCH_ACCOUNT", "all")  # a Python builtin's name stays a string
    args = read_profile_as_snakemake("--dry-run")
    assert args.default_resources["slurm_partition"].raw == "'gpu_a100'"
    assert args.default_resources["slurm_account"].raw == "'all'"


def test_ci_overrides_keep_every_rule_but_drop_the_gpu():
    overrides = gpu_off_overrides()
    assert {f"{stage}:gpu=0" for stage in GPU_STAGES} <= set(overrides)
    assert not [o for o in overrides if "gpu_model=" in o or ("gpu=" in o and "gpu=0" not in o)]
    # The CI profile must not repeat keys the workflow profile sets: those would be ignored.
    assert not set(load_profile(CI_PROFILE)) & set(load_profile(SLURM_PROFILE))


class FakeResources(dict):
    """Job resources as the plugin reads them: .get() and attribute access."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(name) from exc


def sbatch_call(rule: str, threads: int, **resources) -> str:
    """The plugin's own sbatch command line for a job of ``rule``."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    job = SimpleNamespace(name=rule, threads=threads, resources=FakeResources(resources))
    params = {
        "run_uuid": "run",
        "slurm_logfile": Path("slurm.log"),
        "comment_str": f"rule_{rule}",
        "account": "",
        "partition": " -p gpu",
        "workdir": "/work",
    }
    return get_submit_command(job, params) + set_gres_string(job)


@pytest.mark.parametrize("stage", GPU_STAGES)
def test_gpu_stage_becomes_sbatch_gpus(stage):
    profile = read_profile_as_snakemake().set_resources
    requested = {name: r.value for name, r in profile.get(stage, {}).items()} or {"gpu": 1}
    call = sbatch_call(stage, threads=4, mem_mb=16000, runtime=120, **requested)
    assert re.search(r" --gpus=1(\s|$)", call), call
    assert "--gres" not in call and "--ntasks" not in call, call
    assert " --cpus-per-task=4" in call and " --mem 16000" in call and " -t 120" in call, call
    with_model = sbatch_call(stage, threads=4, gpu_model="a100", **requested)
    assert re.search(r" --gpus=a100:1(\s|$)", with_model), with_model
    ci = sbatch_call(stage, threads=1, gpu=0)  # the CI override: no GPU, one task
    assert "--gpus" not in ci and " --ntasks=1" in ci, ci


def test_cpu_stage_asks_for_cpus_only():
    call = sbatch_call("poses", threads=4, mem_mb=4000, runtime=30)
    assert "--gpus" not in call and "--gres" not in call
    assert " --ntasks=1" in call and " --cpus-per-task=4" in call, call


@pytest.mark.parametrize("weights", [False, True], ids=["no-backbone-weights", "alexnet-weights"])
def test_dry_run_with_profile_gives_gpu_jobs_one_gpu(tmp_path: Path, monkeypatch, weights):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    monkeypatch.setenv("SBATCH_PARTITION", "gpu_a100")
    torch_home = tmp_path / "torch"
    if weights:  # only its presence matters to the plan
        alexnet = torch_home / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
        alexnet.parent.mkdir(parents=True)
        alexnet.write_bytes(b"placeholder")
    work = tmp_path / "work"
    write_config(work, shipped_config())
    profile = ["--workflow-profile", str(SLURM_PROFILE)]
    result = snakemake(
        work,
        *profile,
        "--dry-run",
        "--forceall",
        "--",
        "results/table.csv",
        env={"TORCH_HOME": str(torch_home)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = dry_run_resources(result.stdout + result.stderr)
    planned = {rule for rule, _ in jobs}
    assert {*CPU_STAGES, *GPU_STAGES} <= planned
    for rule, resources in jobs:
        if rule == "all":
            continue
        assert resources.get("slurm_partition") == "gpu_a100", (rule, resources)
        if rule == "evaluate":
            assert resources.get("gpu") == ("1" if weights else "0"), resources
        else:
            assert resources.get("gpu") == ("1" if rule in GPU_STAGES else None), (rule, resources)
        assert "runtime" in resources and "mem_mb" in resources, (rule, resources)
    trains = sum(rule == "train" for rule, _ in jobs)
    assert trains == (6 if weights else 4)  # the LPIPS variants run only with AlexNet weights

"""A real Slurm run: the workflow's CPU stages of a small synthetic scene go through
``--workflow-profile workflow/profiles/slurm`` on the cluster of tests/slurm/cluster.sh, and the
outputs equal a local run's byte for byte.

Skipped when no Slurm cluster answers (``sinfo`` missing or failing), unless
MALDNERF_REQUIRE_SLURM=1 (set by .ci/run, which starts the cluster first).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from slurm_helpers import cluster_unavailable, snakemake_on_slurm
from workflow_helpers import snakemake, write_config

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]

TARGET = "results/tiny/masks"
CONFIG = {
    "scenes": [
        {
            "name": "tiny",
            "source": "synthetic",
            # COLMAP still registers all 16 views at this size.
            "synthetic": {"seed": 0, "width": 96, "height": 72, "n_train": 12, "n_test": 4},
            "poses": "colmap",
            "masks": {"dilation": 3},
        }
    ],
    "colmap": {"max_features": 2048},
}
SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.")


@pytest.fixture(scope="module")
def cluster():
    reason = cluster_unavailable()
    if reason is None:
        reason = (
            None
            if _has_plugin()
            else "snakemake-executor-plugin-slurm not installed (pip install -e '.[slurm]')"
        )
    if reason is not None:
        if os.environ.get("MALDNERF_REQUIRE_SLURM") == "1":
            pytest.fail(f"MALDNERF_REQUIRE_SLURM=1 but {reason}")
        pytest.skip(reason)


def _has_plugin() -> bool:
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return False
    return True


def files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def slurm_job(job_id: str) -> dict[str, str]:
    """Slurm's record of a job (kept by slurmctld for MinJobAge after it ends)."""
    out = subprocess.run(
        ["scontrol", "--oneliner", "show", "job", job_id],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return dict(item.split("=", 1) for item in out.split() if "=" in item)


def test_cpu_stages_through_slurm_equal_local_run(cluster, tmp_path: Path):
    local, on_slurm = tmp_path / "local", tmp_path / "slurm"
    write_config(local, CONFIG)
    write_config(on_slurm, CONFIG)
    # Same COLMAP thread count as the CI profile (set-threads poses=1): deterministic poses.
    result = snakemake(local, "--set-threads", "poses=1", "--", TARGET, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    start = time.monotonic()
    result = snakemake_on_slurm(on_slurm, "--", TARGET, timeout=300)
    seconds = time.monotonic() - start
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"rc={result.returncode} after {seconds:.0f}s\n{log[-5000:]}"
    print(f"Slurm run: {seconds:.1f} s")

    # Every job went through Slurm: a Slurm job id in Snakemake's log, a per-job Slurm log, and
    # slurmctld's record of a completed job in this working directory.
    submitted = SUBMITTED.findall(log)
    rules = {
        re.search(r"/rule_(\w+)/", path)[1]: (job_id, Path(path)) for job_id, path in submitted
    }
    assert sorted(rules) == ["masks", "poses", "prepare"], log[-3000:]
    for rule, (job_id, slurm_log) in rules.items():
        assert (
            slurm_log
            == on_slurm / ".snakemake" / "slurm_logs" / f"rule_{rule}" / "tiny" / f"{job_id}.log"
        )
        text = slurm_log.read_text()
        assert f"rule {rule}:" in text and "1 of 1 steps (100%) done" in text, text[-2000:]
        record = slurm_job(job_id)
        assert record["JobState"] == "COMPLETED", record
        assert Path(record["WorkDir"]) == on_slurm, record
        assert "gres/gpu" not in record.get("TRES", ""), record
    assert slurm_job(rules["poses"][0])["NumCPUs"] == "1"  # set-threads poses=1 -> 1 CPU

    # Same bytes as the local run: scene, poses (COLMAP model, transforms.json), masks.
    expected, got = files(local / "results" / "tiny"), files(on_slurm / "results" / "tiny")
    assert sorted(got) == sorted(expected)
    assert [name for name in expected if got[name] != expected[name]] == []
    assert any(name.startswith("masks/train/") for name in got)

    # Rerun: nothing submitted.
    again = snakemake_on_slurm(on_slurm, "--", TARGET, timeout=120)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert "Nothing to be done" in again.stdout + again.stderr
    assert not SUBMITTED.search(again.stdout + again.stderr)

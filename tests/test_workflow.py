"""End-to-end: the real Snakemake workflow on the synthetic scene in a temporary directory."""

import json

import pytest

from workflow_helpers import shipped_config, snakemake, write_config

pytestmark = pytest.mark.workflow


def test_poses_and_masks_then_nothing_to_do(tmp_path):
    write_config(tmp_path, shipped_config())
    targets = ["results/synthetic/poses", "results/synthetic/masks"]
    result = snakemake(tmp_path, *targets)
    assert result.returncode == 0, result.stderr[-3000:]
    accuracy = json.loads((tmp_path / "results/synthetic/poses/accuracy.json").read_text())
    assert accuracy["rotation_deg"]["median"] < 1.0
    assert (tmp_path / "results/synthetic/masks/contact_sheet.png").is_file()
    assert (tmp_path / "logs/poses/synthetic.log").read_text().count("pose accuracy") == 1
    assert (tmp_path / "results/benchmarks/poses/synthetic.tsv").is_file()
    again = snakemake(tmp_path, *targets)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_bad_config_is_one_line(tmp_path):
    config = shipped_config()
    config["scenes"][0]["source"] = str(tmp_path / "no such folder")
    write_config(tmp_path, config)
    result = snakemake(tmp_path, "results/synthetic/scene")
    assert result.returncode != 0
    log = (tmp_path / "logs/prepare/synthetic.log").read_text()
    assert "no such folder: scene folder not found" in log and "Traceback" not in log
    assert not (tmp_path / "results/synthetic/scene").exists()
    config["scenes"][0]["poses"] = "guess"
    write_config(tmp_path, config)
    result = snakemake(tmp_path, "--dry-run")
    assert result.returncode == 1
    assert (
        "error: config.yaml: scenes[0].poses: 'guess' is not one of 'colmap', 'known'"
        in result.stderr
    )

"""End-to-end: the real Snakemake workflow on the synthetic scene in a temporary directory."""

import json
import os
import shutil
import time

import numpy as np
import pytest
from PIL import Image

from helpers import REPO
from workflow_helpers import (
    dry_run_resources,
    jobs_that_would_run,
    run_folder_scene_to_masks,
    shipped_config,
    snakemake,
    write_config,
)

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
    result = snakemake(tmp_path, "--dry-run", "results/synthetic/scene")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert (
        "error: config.yaml: scenes[synthetic].source: "
        f"'{tmp_path / 'no such folder'}' is neither 'synthetic' nor an existing folder"
    ) in result.stderr
    assert not (tmp_path / "results").exists()
    config["scenes"][0]["poses"] = "guess"
    write_config(tmp_path, config)
    result = snakemake(tmp_path, "--dry-run")
    assert result.returncode == 1
    assert (
        "error: config.yaml: scenes[0].poses: 'guess' is not one of 'colmap', 'known'"
        in result.stderr
    )


@pytest.fixture
def folder_scene_run(tmp_path):
    """A plain scene folder with known poses, run through the masks stage."""
    source, work = tmp_path / "room", tmp_path / "work"
    result = run_folder_scene_to_masks(source, work)
    assert result.returncode == 0, result.stderr[-3000:]
    assert jobs_that_would_run(work, "results/room/masks") == {}
    return source, work


def test_editing_a_photo_of_a_scene_folder_reruns_that_scene(folder_scene_run):
    source, work = folder_scene_run
    mask = source / "masks" / "v01.png"
    later = time.time() + 60
    os.utime(mask, (later, later))  # newer, same content: Snakemake compares checksums
    assert jobs_that_would_run(work, "results/room/masks") == {}
    grown = np.asarray(Image.open(mask)).copy()
    grown[grown.shape[0] // 2, :] = 255
    Image.fromarray(grown).save(mask)
    assert jobs_that_would_run(work, "results/room/masks") == {"prepare": 1, "poses": 1, "masks": 1}


def test_editing_the_package_reruns_the_stages_that_run_that_code(folder_scene_run, tmp_path):
    """A copy of the workflow whose poses module differs by one comment line."""
    _, work = folder_scene_run
    copy = tmp_path / "edited"
    copy.mkdir()
    for item in ("Snakefile", "workflow", "src", "profiles"):
        source = REPO / item
        if source.is_dir() and not source.is_symlink():
            shutil.copytree(
                source, copy / item, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
            )
        else:
            shutil.copy(source, copy / item, follow_symlinks=False)
    poses = copy / "src" / "maldnerf" / "poses.py"
    poses.write_text(poses.read_text() + "# an edit\n")
    jobs = jobs_that_would_run(work, "--snakefile", str(copy / "Snakefile"), "results/room/masks")
    assert jobs == {"poses": 1, "masks": 1}  # prepare does not run poses.py


def test_gpu_stages_declare_one_gpu_for_a_local_single_gpu_run(tmp_path):
    """`snakemake --cores all --resources gpu=1` runs GPU jobs one at a time beside CPU jobs."""
    write_config(tmp_path, shipped_config())
    result = snakemake(
        tmp_path, "--resources", "gpu=1", "--dry-run", "--forceall", "--", "results/table.csv"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for rule, resources in dry_run_resources(result.stdout + result.stderr):
        expected = {"customize": "1", "inpaint": "1", "train": "1", "render": "1", "evaluate": "0"}
        assert resources.get("gpu") == expected.get(rule), (rule, resources)

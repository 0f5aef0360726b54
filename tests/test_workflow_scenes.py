"""End-to-end: after a completed run of two scenes, adding or removing a scene reruns exactly
what it affects, the table included (real ``snakemake --dry-run`` output). Variants: see
test_workflow_table.py."""

import copy

import pytest

from workflow_helpers import jobs_that_would_run, snakemake, tiny_workflow_config, write_config

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def two_scenes(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("two_scenes")
    config = tiny_workflow_config(["one", "two"], ["plain_a"])
    write_config(workdir, config)
    result = snakemake(workdir, "results/table.csv")
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir, config


def dry_run_after(workdir, config, change) -> dict[str, int]:
    """Jobs a dry run of the table would start after ``change`` to the config (then restored)."""
    edited = copy.deepcopy(config)
    change(edited)
    write_config(workdir, edited)
    try:
        return jobs_that_would_run(workdir, "results/table.csv")
    finally:
        write_config(workdir, config)


def test_adding_a_scene_runs_that_scene_and_the_table(two_scenes):
    workdir, config = two_scenes

    def add(c):
        c["scenes"].append({**copy.deepcopy(c["scenes"][1]), "name": "three"})

    assert dry_run_after(workdir, config, add) == {
        "prepare": 1,
        "poses": 1,
        "masks": 1,
        "inpaint": 1,
        "train": 1,
        "render": 1,
        "evaluate": 1,
        "contact_sheet": 1,
        "table": 1,
    }


def test_removing_a_scene_reruns_the_table_only(two_scenes):
    workdir, config = two_scenes
    assert dry_run_after(workdir, config, lambda c: c["scenes"].pop(0)) == {"table": 1}


def test_the_table_follows_the_scenes(two_scenes):
    """A real run after removing a scene: the table holds the other scene only."""
    import csv

    workdir, config = two_scenes
    edited = copy.deepcopy(config)
    edited["scenes"].pop(0)
    write_config(workdir, edited)
    try:
        result = snakemake(workdir, "results/table.csv")
        assert result.returncode == 0, result.stderr[-3000:]
        with (workdir / "results/table_per_scene.csv").open() as handle:
            assert [row["scene"] for row in csv.DictReader(handle)] == ["two"]
    finally:
        write_config(workdir, config)
    assert jobs_that_would_run(workdir, "results/table.csv") == {"table": 1}

"""The table stage from metrics files written by the evaluate stage."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from evaluate_helpers import make_scene, tiny_backbones
from maldnerf.errors import UserError
from maldnerf.evaluate import measures, table
from maldnerf.evaluate.stage import EvaluateSettings, run

SETTINGS = EvaluateSettings(
    device="cpu", alexnet_weights="/nonexistent/a.pth", inception_weights="/nonexistent/i.pt"
)
OFFSETS = {"full": 10, "no_adv_l1": 40}


def _evaluate(tmp: Path, scene: str, variant: str, plumbing: bool = True, **kw) -> Path:
    files = make_scene(tmp / "in" / scene / variant, name=scene, offset=OFFSETS[variant], **kw)
    output = tmp / "results" / scene / "metrics" / f"{variant}.json"
    run(
        SETTINGS,
        files.scene,
        files.masks,
        files.render,
        files.nerf,
        output,
        backbones=tiny_backbones() if plumbing else None,
    )
    return output


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def _evaluated(tmp_path_factory) -> Path:
    """Two scenes x two variants with tiny random backbones (PLUMBING for LPIPS/FID/KID)."""
    root = tmp_path_factory.mktemp("evaluated")
    for i, scene in enumerate(["lego", "room"]):
        for variant in ("full", "no_adv_l1"):
            _evaluate(root, scene, variant, seed=i, train_seconds=10.0 * (i + 1))
    return root


@pytest.fixture
def two_scenes(_evaluated: Path, tmp_path: Path) -> list[Path]:
    """A private copy of the evaluated results: metrics files of 2 scenes x 2 variants."""
    shutil.copytree(_evaluated / "results", tmp_path / "results")
    return [
        tmp_path / "results" / scene / "metrics" / f"{variant}.json"
        for scene in ("lego", "room")
        for variant in ("full", "no_adv_l1")
    ]


def test_table_rows_columns_and_means(two_scenes, tmp_path):
    out = tmp_path / "results" / "table.csv"
    table.run(table.TableSettings(), two_scenes, out, ["no_adv_l1", "full"])
    text = out.read_text()
    assert text.splitlines()[0] == ",".join(table.COLUMNS)
    rows = _read(out)
    assert [r["variant"] for r in rows] == ["no_adv_l1", "full"]  # the given order
    full = rows[1]
    assert full["n_scenes"] == "2" and full["n_views"] == "6"
    assert float(full["psnr_masked"]) == pytest.approx(20 * math.log10(255 / 10), abs=1e-3)
    # The whole train stage (mean of 10 s and 20 s), split into NeRF steps and IDU rounds.
    assert float(full["train_seconds"]) == pytest.approx(15.0)
    assert float(full["idu_seconds"]) == pytest.approx(2.5)
    assert float(full["nerf_seconds"]) == pytest.approx(15.0 - 0.5 - 2.5)
    scene_means = [
        json.loads(p.read_text())["means"]["ssim"] for p in two_scenes if p.stem == "full"
    ]
    assert float(full["ssim"]) == pytest.approx(np.mean(scene_means), rel=1e-5)
    for metric in ("lpips", "m_lpips", "fid", "kid"):  # PLUMBING values: present, not meaningful
        assert full[metric] != ""
    for metric in ("haarpsi", "gmsd", "ms_ssim"):  # weight-free: always filled
        for column in (metric, f"{metric}_masked", f"m_{metric}"):
            assert full[column] != ""
    assert float(rows[0]["haarpsi_masked"]) < float(full["haarpsi_masked"])  # 40 vs 10 levels off
    assert float(rows[0]["gmsd_masked"]) > float(full["gmsd_masked"])
    assert full["notes"] == ""
    assert float(rows[0]["psnr"]) < float(full["psnr"])


def test_fid_and_kid_are_pooled_over_scenes(two_scenes, tmp_path):
    """PLUMBING: pooled FID from the saved (random-network) features, not a mean of scenes."""
    out = tmp_path / "results" / "table.csv"
    rows = table.run(table.TableSettings(), two_scenes, out, ["full", "no_adv_l1"])
    renders, truths = [], []
    for path in two_scenes:
        if path.stem == "full":
            with np.load(path.with_name("full.features.npz")) as stored:
                renders.append(stored["render"])
                truths.append(stored["ground_truth"])
    pooled = measures.frechet_distance(np.concatenate(renders), np.concatenate(truths))
    assert rows[0]["fid"] == pytest.approx(pooled)
    assert float(_read(out)[0]["fid"]) == pytest.approx(pooled, rel=1e-5)
    per_scene = [r for r in _read(out.with_name("table_per_scene.csv")) if r["variant"] == "full"]
    assert [r["scene"] for r in per_scene] == ["lego", "room"]
    assert rows[0]["fid"] != pytest.approx(np.mean([float(r["fid"]) for r in per_scene]))


def test_missing_metrics_are_empty_cells_with_reasons(tmp_path):
    paths = [
        _evaluate(tmp_path, "lego", "full"),
        _evaluate(tmp_path, "room", "full", plumbing=False, train_seconds=None),
    ]
    out = tmp_path / "results" / "table.csv"
    table.run(table.TableSettings(), paths, out, ["full"])
    raw = out.read_text()
    assert "nan" not in raw.lower()
    row = _read(out)[0]
    for metric in ("lpips", "m_lpips", "fid", "kid", *table.TIMES):
        assert row[metric] == ""
    assert row["psnr"] != ""
    assert "lpips, m_lpips: AlexNet weights not found at /nonexistent/a.pth" in row["notes"]
    assert "[room]" in row["notes"] and "nerf.json not found" in row["notes"]
    # Averaging over the scenes that have the metric, when asked to.
    table.run(table.TableSettings(require_all_scenes=False), paths, out, ["full"])
    row = _read(out)[0]
    assert row["lpips"] != "" and "lpips: averaged over 1 of 2 scenes" in row["notes"]
    assert row["fid"] == ""  # pooled FID never mixes scenes with and without features


def test_a_failed_scene_and_an_unknown_variant_are_reported(two_scenes, tmp_path):
    out = tmp_path / "results" / "table.csv"
    missing = tmp_path / "results" / "garden" / "metrics" / "full.json"
    rows = table.run(table.TableSettings(), [*two_scenes, missing], out, ["full", "adv_lpips"])
    by_variant = {r["variant"]: r for r in rows}
    assert list(by_variant) == ["full", "adv_lpips", "no_adv_l1"]
    assert by_variant["full"]["n_scenes"] == 2
    assert "no metrics for scene(s) garden" in by_variant["full"]["notes"]
    assert by_variant["adv_lpips"]["n_scenes"] == 0 and by_variant["adv_lpips"]["psnr"] is None
    assert "no scene finished" in by_variant["adv_lpips"]["notes"]
    per_scene = _read(out.with_name("table_per_scene.csv"))
    garden = [r for r in per_scene if r["scene"] == "garden" and r["variant"] == "full"][0]
    assert garden["psnr"] == "" and "evaluate did not finish" in garden["notes"]


def test_companion_files_markdown_and_plot(two_scenes, tmp_path):
    from maldnerf.images import read_image

    out = tmp_path / "results" / "table.csv"
    table.run(table.TableSettings(sheet_views=2), two_scenes, out, ["full", "no_adv_l1"])
    md = out.with_name("table.md").read_text()
    assert "| variant | n_scenes | n_views | PSNR ↑" in md and "## Per scene" in md
    assert "| train s | NeRF s | IDU s |" in md
    assert md.count("\n| full |") == 1
    plot = read_image(out.with_name("metrics.png"))
    assert plot.shape[0] > 200 and plot.std() > 0.01
    assert not (tmp_path / "results" / "lego" / "contact_sheet.png").exists()  # its own job


def test_a_corrupt_metrics_file_is_an_error(two_scenes, tmp_path):
    two_scenes[0].write_text("{not json")
    with pytest.raises(UserError, match="lego/metrics/full.json: not a readable metrics file"):
        table.run(table.TableSettings(), two_scenes, tmp_path / "t.csv", ["full"])
    with pytest.raises(UserError, match="no metrics files"):
        table.run(table.TableSettings(), [], tmp_path / "t.csv", ["full"])


def test_variants_as_json_with_descriptions_and_skipped_ones(two_scenes, tmp_path):
    variants = json.dumps(
        [
            {"name": "full", "description": "the full method", "skipped": None},
            {"name": "adv_lpips", "description": "", "skipped": "not run: needs AlexNet weights"},
            {"name": "no_adv_l1", "description": "L1 inside the mask", "skipped": None},
        ]
    )
    out = tmp_path / "results" / "table.csv"
    table.run(table.TableSettings(), two_scenes, out, [variants])
    rows = _read(out)
    assert [r["variant"] for r in rows] == ["full", "adv_lpips", "no_adv_l1"]
    assert rows[0]["notes"] == "the full method"
    assert rows[1]["notes"] == "not run: needs AlexNet weights"
    assert rows[1]["n_scenes"] == "0" and rows[1]["psnr"] == ""
    assert rows[2]["notes"].startswith("L1 inside the mask")
    per_scene = _read(out.with_name("table_per_scene.csv"))
    assert {r["variant"] for r in per_scene} == {"full", "no_adv_l1"}
    with pytest.raises(UserError, match="--variants"):
        table.parse_variants(["[{"])
    with pytest.raises(UserError, match="neither a name"):
        table.parse_variants([{"description": "x"}])


def test_timings_from_snakemake_benchmarks(two_scenes, tmp_path):
    bench = tmp_path / "benchmarks"
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    for stage, job, seconds in [("train", "lego-full", 120.5), ("prepare", "lego", 1.25)]:
        (bench / stage).mkdir(parents=True, exist_ok=True)
        (bench / stage / f"{job}.tsv").write_text(
            header + f"{seconds}\t0:00:01\t512.5\t900\t400\t450\t1\t2\t90\t{seconds * 0.9}\n"
        )
    (bench / "table").mkdir()
    (bench / "table" / "table.tsv").write_text(header + "1\t0\t1\t1\t1\t1\t1\t1\t1\t1\n")
    (bench / "render").mkdir()
    (bench / "render" / "broken.tsv").write_text("")
    out = tmp_path / "results" / "table.csv"
    table.run(table.TableSettings(), two_scenes, out, ["full"], benchmarks=[bench])
    rows = _read(out.with_name("timings.csv"))
    assert [(r["stage"], r["job"]) for r in rows] == [("prepare", "lego"), ("train", "lego-full")]
    assert float(rows[1]["seconds"]) == 120.5 and float(rows[1]["max_rss_mb"]) == 512.5


def test_only_skipped_variants_give_a_table(tmp_path):
    """`run_variants: [adv_lpips]` without AlexNet weights: nothing ran, the table says why."""
    from maldnerf.cli import main

    out = tmp_path / "results" / "table.csv"
    variants = json.dumps([{"name": "adv_lpips", "skipped": "not run: needs AlexNet weights"}])
    assert main(["table", "--metrics", "--variants", variants, "--output", str(out)]) == 0
    (row,) = _read(out)
    assert row["variant"] == "adv_lpips" and row["n_scenes"] == "0"
    assert "not run: needs AlexNet weights" in row["notes"]


def test_timings_of_the_listed_jobs_only(two_scenes, tmp_path):
    bench = tmp_path / "benchmarks"
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    for job in ("lego", "removed_scene"):
        (bench / "prepare").mkdir(parents=True, exist_ok=True)
        (bench / "prepare" / f"{job}.tsv").write_text(header + "2\t0\t1\t1\t1\t1\t1\t1\t1\t1\n")
    out = tmp_path / "results" / "table.csv"
    listed = [bench / "prepare" / "lego.tsv", bench / "poses" / "lego.tsv"]  # poses: not run
    table.run(table.TableSettings(), two_scenes, out, ["full"], benchmarks=listed)
    rows = _read(out.with_name("timings.csv"))
    assert [(r["stage"], r["job"]) for r in rows] == [("prepare", "lego")]


def test_a_variant_without_idu_has_no_idu_seconds_and_says_why(tmp_path):
    path = _evaluate(tmp_path, "lego", "full", train_seconds=12.0, idu_seconds=None)
    (row,) = table.run(table.TableSettings(), [path], tmp_path / "t.csv", ["full"])
    assert (row["train_seconds"], row["nerf_seconds"], row["idu_seconds"]) == (12.0, 11.5, None)
    assert "idu_seconds: no dataset update in this variant (idu.enabled: false)" in row["notes"]


def test_metrics_files_older_than_a_metric_leave_it_empty_and_say_so(two_scenes, tmp_path):
    """A metrics file written before HaarPSI/GMSD/MS-SSIM existed: empty cells, a reason."""
    new = ("haarpsi", "haarpsi_masked", "m_haarpsi", "gmsd", "ms_ssim", "m_ms_ssim")
    for path in two_scenes:
        data = json.loads(path.read_text())
        for metric in new:
            del data["means"][metric]
        path.write_text(json.dumps(data))
    out = tmp_path / "results" / "table.csv"
    table.run(table.TableSettings(), two_scenes, out, ["full", "no_adv_l1"])
    row = _read(out)[0]
    for metric in new:
        assert row[metric] == ""
    assert row["gmsd_masked"] != "" and row["psnr"] != ""
    assert f"{', '.join(new)}: {table.NOT_IN_FILE}" in row["notes"]
    scene_row = _read(out.with_name("table_per_scene.csv"))[0]
    assert scene_row["haarpsi"] == "" and table.NOT_IN_FILE in scene_row["notes"]

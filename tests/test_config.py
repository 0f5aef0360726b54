import copy

import pytest
import tomllib
import yaml

from helpers import REPO
from maldnerf.config import Pipeline, check_schema
from maldnerf.diffusion.pretrain import PretrainSettings
from maldnerf.errors import UserError
from maldnerf.schema import render_schema
from maldnerf.settings import to_dict

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def shipped_config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_schema_file_is_generated_from_the_settings():
    assert SCHEMA.read_text() == render_schema(), (
        "run `maldnerf schema --output workflow/schemas/config.schema.yaml`"
    )


def test_every_schema_property_has_a_description_and_a_default():
    schema = yaml.safe_load(SCHEMA.read_text())

    def walk(node, path):
        for name, prop in node.get("properties", {}).items():
            where = f"{path}.{name}"
            assert prop.get("description"), f"{where} has no description"
            if where not in ("config.scenes", "config.scenes[].name"):
                assert "default" in prop, f"{where} has no default"
            walk(prop, where)
            if "items" in prop:
                walk(prop["items"], where + "[]")

    walk(schema, "config")


def test_shipped_config_is_valid():
    config = shipped_config()
    check_schema(config, SCHEMA)
    pipeline = Pipeline(config)
    assert list(pipeline.scenes) == ["synthetic"]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c.update(bogus=1), "config.yaml: config: unknown setting\\(s\\) bogus"),
        (
            lambda c: c["scenes"][0].update(poses="colmp"),
            "scenes\\[0\\].poses: 'colmp' is not one of 'colmap', 'known'",
        ),
        (
            lambda c: c["scenes"][0]["synthetic"].update(width="wide"),
            "scenes\\[0\\].synthetic.width: expected integer, got 'wide'",
        ),
        (
            lambda c: c["scenes"][0].update(name="my scene"),
            "scenes\\[0\\].name: 'my scene' does not match",
        ),
        (lambda c: c.update(scenes=[]), "scenes: \\[\\] should be non-empty"),
    ],
)
def test_schema_errors_are_one_readable_line(change, message):
    config = shipped_config()
    change(config)
    with pytest.raises(UserError, match=message) as info:
        check_schema(config, SCHEMA)
    assert "\n" not in str(info.value)


def test_semantic_errors_name_the_setting():
    config = shipped_config()
    config["scenes"][0]["downscale"] = 0
    with pytest.raises(UserError, match="downscale must be an integer >= 1"):
        Pipeline(config)
    config = shipped_config()
    config["scenes"].append(copy.deepcopy(config["scenes"][0]))
    with pytest.raises(UserError, match="duplicate scene name\\(s\\) synthetic"):
        Pipeline(config)


def test_scene_overrides_merge_into_the_global_sections():
    config = shipped_config()
    config["scenes"][0]["overrides"] = {"colmap": {"matcher": "sequential"}}
    params = Pipeline(config).poses_params("synthetic")
    assert params["colmap"]["matcher"] == "sequential"
    assert params["colmap"]["max_features"] == config["colmap"]["max_features"]
    config["scenes"][0]["overrides"] = {"colmapp": {}}
    with pytest.raises(UserError, match="unknown section\\(s\\) colmapp"):
        Pipeline(config)


def test_conda_environment_matches_pyproject():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((REPO / "envs" / "maldnerf.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert sorted(pip) == sorted(pyproject)
    import re

    rules = "\n".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    names = re.findall(r"^rule (\w+):", rules, flags=re.M)
    assert names and rules.count('"../../envs/maldnerf.yaml"') == len(names)


def test_full_size_gpu_config_is_valid_on_top_of_the_default(tmp_path):
    from maldnerf.config import deep_merge

    override = yaml.safe_load((REPO / "configs" / "spinnerf_gpu.yaml").read_text())
    config = deep_merge(shipped_config(), override)
    config["scenes"] = override["scenes"]  # Snakemake replaces lists when merging config files
    config["scenes"][0]["source"] = str(tmp_path)  # the example's /data/spinnerf/1
    check_schema(config, SCHEMA)
    pipeline = Pipeline(config)
    nerf = pipeline.train_params("spinnerf_1", "full")["nerf"]
    assert nerf["iterations"] == 25000 and nerf["field"]["num_levels"] == 16
    assert pipeline.customize_params("spinnerf_1", "scene")["diffusion"]["model"].startswith(
        "stabilityai/"
    )


def test_benchmark_files_are_the_jobs_that_run():
    config = shipped_config()
    config["run_variants"] = ["full", "no_customize", "no_adv_lpips"]
    files = Pipeline(config).benchmark_files()
    assert files[0] == "results/benchmarks/pretrain/tiny.tsv"  # the tiny base, once
    assert "results/benchmarks/prepare/synthetic.tsv" in files
    assert "results/benchmarks/customize/synthetic-scene.tsv" in files
    assert "results/benchmarks/customize/synthetic-none.tsv" not in files
    assert "results/benchmarks/inpaint/synthetic-none.tsv" in files
    assert "results/benchmarks/train/synthetic-no_customize.tsv" in files
    assert (
        len(files)
        == len(set(files))
        == 1 + 3 + 1 + 2 + 3 * len(Pipeline(config).runnable_variants())
    )


def test_tiny_stages_read_the_pretrained_base_folder_and_real_models_their_id():
    from maldnerf.config import PRETRAINED_TINY

    config = shipped_config()
    pipeline = Pipeline(config)
    assert pipeline.uses_tiny("synthetic")
    for params in (
        pipeline.customize_params("synthetic", "scene"),
        pipeline.inpaint_params("synthetic"),
        pipeline.train_params("synthetic", "full"),
    ):
        assert params["diffusion"]["model"] == PRETRAINED_TINY == "results/pretrain/tiny"
    assert pipeline.pretrain_params() == to_dict(PretrainSettings(**config["pretrain"]))
    config["diffusion"]["model"] = "stabilityai/stable-diffusion-2-inpainting"
    pipeline = Pipeline(config)
    assert not pipeline.uses_tiny("synthetic")
    assert pipeline.customize_params("synthetic", "scene")["diffusion"]["model"] == (
        "stabilityai/stable-diffusion-2-inpainting"
    )
    assert not any("pretrain" in f for f in pipeline.benchmark_files())


def test_resources_grow_with_the_scene_and_fit_a_common_node_at_full_size(tmp_path):
    from maldnerf.config import deep_merge

    small = Pipeline(shipped_config())
    override = yaml.safe_load((REPO / "configs" / "spinnerf_gpu.yaml").read_text())
    config = deep_merge(shipped_config(), override)
    config["scenes"] = [
        {
            "name": "big",
            "source": "synthetic",
            "synthetic": {"width": 1008, "height": 567, "n_train": 60, "n_test": 40},
        }
    ]
    big = Pipeline(config)
    for stage in ("customize", "inpaint", "train", "render", "evaluate"):
        low, high = small.resources(stage, "synthetic"), big.resources(stage, "big")
        assert low["mem_mb"] < high["mem_mb"] <= 32000, stage  # a 32 GB share of a GPU node
        assert low["runtime"] <= high["runtime"], stage
    assert big.resources("train", "big")["runtime"] >= 120  # 25 000 iterations


def test_train_reads_the_diffusion_settings_only_with_the_dataset_update():
    config = shipped_config()
    config["variants"]["no_idu"] = {"idu": {"enabled": False}}
    config["run_variants"] = ["full", "no_idu"]
    pipeline = Pipeline(config)
    assert "diffusion" in pipeline.train_params("synthetic", "full")
    assert "diffusion" not in pipeline.train_params("synthetic", "no_idu")


def test_the_shipped_pretraining_is_the_default_one_the_test_suite_shares():
    """The workflow's pretrain rule and the tests' ``pretrained_base`` fixture build the same
    base (same cache key), so a machine builds it once."""
    from maldnerf.diffusion.pretrain import cache_key

    shipped = Pipeline(shipped_config()).pretrain_params()
    assert shipped == to_dict(PretrainSettings())
    assert cache_key(PretrainSettings(**shipped)) == cache_key(PretrainSettings())

from maldnerf.code_version import STAGE_MODULES, stage_digest, stage_modules


def test_each_stage_runs_its_own_modules_and_not_the_later_stages():
    assert "maldnerf.poses" in stage_modules("poses")
    assert "maldnerf.nerf.losses" in stage_modules("train")
    assert "maldnerf.diffusion.inpainter" in stage_modules("train")  # IDU re-inpaints
    assert "maldnerf.nerf.trainer" not in stage_modules("poses")
    assert "maldnerf.poses" not in stage_modules("prepare")
    assert "maldnerf.cli" not in {m for s in STAGE_MODULES for m in stage_modules(s)}


def test_digests_are_short_hex_and_differ_between_stages():
    digests = {s: stage_digest(s) for s in STAGE_MODULES}
    assert all(len(d) == 16 and int(d, 16) >= 0 for d in digests.values())
    assert digests["prepare"] != digests["poses"] != digests["train"]

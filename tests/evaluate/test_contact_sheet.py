"""The per-scene contact sheets of the table stage."""

import json

from evaluate_helpers import make_scene
from maldnerf.cli import main
from maldnerf.evaluate.stage import EvaluateSettings, run
from maldnerf.images import read_image

SETTINGS = EvaluateSettings(
    device="cpu", alexnet_weights="/nonexistent/a.pth", inception_weights="/nonexistent/i.pt"
)


def _metrics(tmp_path, variant, offset):
    files = make_scene(tmp_path / "in" / variant, name="lego", offset=offset)
    output = tmp_path / "results" / "lego" / "metrics" / f"{variant}.json"
    run(SETTINGS, files.scene, files.masks, files.render, files.nerf, output)
    return output


def test_one_column_per_variant_and_one_row_per_view(tmp_path):
    metrics = [_metrics(tmp_path, "full", 10), _metrics(tmp_path, "no_adv_l1", 40)]
    missing = tmp_path / "results" / "lego" / "metrics" / "adv_l1.json"  # evaluate did not run
    sheet_path = tmp_path / "results" / "lego" / "contact_sheet.png"
    settings = json.dumps({"sheet_views": 2})
    arguments = ["--metrics", *map(str, [*metrics, missing]), "--output", str(sheet_path)]
    assert main(["contact-sheet", "--scene", "lego", *arguments, "--settings", settings]) == 0
    sheet = read_image(sheet_path)
    width, height = json.loads(metrics[0].read_text())["preview"]["tile"]
    # 2 rows of tiles under a header; columns: ground truth, mask, full, no_adv_l1, adv_l1.
    assert sheet.shape[1] == 5 * (width + 2)
    assert sheet.shape[0] == 18 + 2 * (height + 2)


def test_a_scene_where_no_variant_ran_gets_a_sheet_that_says_so(tmp_path):
    sheet_path = tmp_path / "lego" / "contact_sheet.png"
    assert main(["contact-sheet", "--scene", "lego", "--metrics", "--output", str(sheet_path)]) == 0
    assert read_image(sheet_path).shape[:2] == (60, 320)

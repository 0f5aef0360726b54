"""The train stage's timings as the evaluate stage reads them from nerf.json."""

import json

from maldnerf.evaluate.train_time import read_train_times


def test_the_whole_stage_and_its_nerf_and_idu_parts(tmp_path):
    timings = {"seconds": 100.0, "nerf_seconds": 30.0, "idu_seconds": 65.5}
    (tmp_path / "nerf.json").write_text(json.dumps({"timings": timings, "idu": {"enabled": True}}))
    assert read_train_times(tmp_path) == (
        {"train_seconds": 100.0, "nerf_seconds": 30.0, "idu_seconds": 65.5},
        {},
    )


def test_no_idu_seconds_without_idu_and_reasons_for_what_is_missing(tmp_path):
    info = {"timings": {"seconds": 9, "nerf_seconds": "fast"}, "idu": {"enabled": False}}
    (tmp_path / "nerf.json").write_text(json.dumps(info))
    times, reasons = read_train_times(tmp_path)
    assert times == {"train_seconds": 9.0, "nerf_seconds": None, "idu_seconds": None}
    assert "no timings.nerf_seconds" in reasons["nerf_seconds"]
    assert "idu.enabled: false" in reasons["idu_seconds"]
    assert set(reasons) == {"nerf_seconds", "idu_seconds"}


def test_reasons_when_there_is_no_readable_nerf_json(tmp_path):
    assert read_train_times(None)[1]["train_seconds"] == "no NeRF folder given"
    assert "not found" in read_train_times(tmp_path)[1]["idu_seconds"]
    (tmp_path / "nerf.json").write_text("{")
    times, reasons = read_train_times(tmp_path)
    assert set(times.values()) == {None} and "unreadable" in reasons["train_seconds"]

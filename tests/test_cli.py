import argparse
import subprocess
import sys

import pytest

from maldnerf.cli import SETTINGS_CLASSES, build_parser, main


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "maldnerf", *args], capture_output=True, text=True, cwd=cwd
    )


def test_every_option_of_every_subcommand_has_help():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert {"prepare", "poses", "masks"} <= set(subparsers.choices)
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            if action.dest != "help":
                assert action.help, f"{name} {action.option_strings} has no help text"


def test_help_runs():
    result = run_cli("poses", "--help")
    assert result.returncode == 0 and "--settings" in result.stdout


def test_user_errors_are_one_line_without_traceback(tmp_path):
    result = run_cli(
        "prepare",
        "--name",
        "x",
        "--output",
        str(tmp_path / "out"),
        "--settings",
        '{"downscale": 0}',
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --settings: downscale must be an integer >= 1"
    ]
    result = run_cli("poses", "--scene", str(tmp_path / "missing"), "--output", str(tmp_path / "p"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "missing/scene.json: not found; run the prepare stage" in result.stderr
    result = run_cli(
        "prepare", "--name", "x", "--output", str(tmp_path / "o"), "--settings", "{nope"
    )
    assert result.returncode == 2 and "not valid JSON" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("stage", sorted(SETTINGS_CLASSES))
def test_help_lists_every_setting_of_the_stage(stage, capsys):
    import dataclasses
    import importlib

    with pytest.raises(SystemExit):
        main([stage, "--help"])
    text = capsys.readouterr().out
    module, name = SETTINGS_CLASSES[stage].split(":")
    settings = getattr(importlib.import_module(f"maldnerf.{module}"), name)
    assert "settings (keys of --settings; [default]):" in text
    for field in dataclasses.fields(settings):
        assert f"  {field.name}" in text, f"{stage} --help lacks {field.name}"

"""Safety: weights load without unpickling code, no remote code, no shell interpolation of
user paths. The source scans fail on a regression; the workflow test runs a scene whose path
has spaces, quotes and a command substitution in it."""

from __future__ import annotations

import ast
import json
import re

import pytest

from helpers import REPO
from workflow_helpers import run_folder_scene_to_masks

SOURCES = sorted((REPO / "src" / "maldnerf").rglob("*.py"))
RULES = sorted((REPO / "workflow" / "rules").glob("*.smk"))

# Where a TorchScript file may be opened (clean-fid's Inception is distributed only that way;
# TorchScript restores tensors and TorchScript code, not pickled Python objects).
JIT_LOAD_ALLOWED = {"evaluate/backbones.py"}


def _name(node: ast.AST) -> str:
    """Dotted name of a call's function (``torch.load``, ``np.load``, ``system``)."""
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    if isinstance(node, ast.Name):
        return node.id
    return "?"


def _keyword(call: ast.Call, name: str) -> object:
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value.value if isinstance(keyword.value, ast.Constant) else ...
    return None


def unsafe_code(source: str, where: str = "<source>") -> list[str]:
    """Every unsafe loading or shell call in Python ``source``, as ``where:line: why``."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        line = f"{where}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            if any(m.split(".")[0] in {"pickle", "cloudpickle", "dill", "joblib"} for m in modules):
                problems.append(f"{line}: imports a pickle module")
        if not isinstance(node, ast.Call):
            continue
        name = _name(node.func)
        last = name.rsplit(".", 1)[-1]
        if name == "torch.load" and _keyword(node, "weights_only") is not True:
            problems.append(f"{line}: torch.load without weights_only=True")
        if name in {"np.load", "numpy.load"} and _keyword(node, "allow_pickle") is not False:
            problems.append(f"{line}: np.load without allow_pickle=False")
        if _keyword(node, "trust_remote_code") is not None:
            problems.append(f"{line}: trust_remote_code passed")
        if _keyword(node, "shell") is not None and _keyword(node, "shell") is not False:
            problems.append(f"{line}: shell=True")
        if name in {"os.system", "os.popen", "eval", "exec", "yaml.load", "yaml.unsafe_load"}:
            problems.append(f"{line}: {name}")
        if last in {"load_state_dict_from_url", "load_url"} or name == "torch.hub.load":
            problems.append(f"{line}: {name} unpickles a download")
        if last == "LPIPS" and _keyword(node, "pretrained") is not False:
            problems.append(
                f"{line}: lpips.LPIPS loads its weights with pickle unless pretrained=False"
            )
        if name == "torch.jit.load" and not any(where.endswith(a) for a in JIT_LOAD_ALLOWED):
            problems.append(f"{line}: torch.jit.load")
    return problems


def test_the_scan_finds_what_it_looks_for():
    bad = """
import pickle
torch.load(p)
torch.load(p, weights_only=False)
np.load(p)
np.load(p, allow_pickle=True)
Pipeline.from_pretrained(m, trust_remote_code=True)
subprocess.run(cmd, shell=True)
os.system(cmd)
yaml.load(text)
torch.hub.load_state_dict_from_url(url)
lpips.LPIPS(net="alex")
torch.jit.load(p)
"""
    assert len(unsafe_code(bad)) == 12
    good = """
torch.load(p, map_location="cpu", weights_only=True)
np.load(p, allow_pickle=False)
subprocess.run([cmd, arg])
yaml.safe_load(text)
lpips.LPIPS(pretrained=False, net="alex")
"""
    assert unsafe_code(good) == []


def test_the_package_loads_weights_safely_and_runs_no_shell():
    problems = []
    for path in SOURCES:
        where = str(path.relative_to(REPO / "src" / "maldnerf"))
        problems += unsafe_code(path.read_text(), where)
    assert problems == []
    assert any(
        "weights_only=True" in p.read_text() for p in SOURCES
    )  # the scan saw the checkpoints


def test_every_path_in_a_rule_command_is_quoted():
    """Each ``{input…}``/``{output…}``/``{params…}``/``{log…}``/``{wildcards…}`` in a shell
    command is shell-quoted with ``:q`` (only ``{threads}``, a number, is bare)."""
    checked = 0
    for path in RULES:
        for rule in re.split(r"^rule ", path.read_text(), flags=re.M)[1:]:
            if "shell:" not in rule:
                continue
            command = "".join(re.findall(r'"([^"]*)"', rule.split("shell:", 1)[1]))
            fields = re.findall(r"(?<!\{)\{([^{}]+)\}(?!\})", command)
            assert fields, rule.split(":")[0]
            for field in fields:
                checked += 1
                assert field == "threads" or field.endswith(":q"), (path.name, field)
    assert checked >= 30
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    prefix = common[common.index("shell.prefix(") :]
    assert prefix.count("shlex.quote(") == 2  # the package's src/ and the interpreter's folder


@pytest.mark.workflow
def test_scene_path_with_spaces_quotes_and_dollars_goes_through_the_workflow(tmp_path):
    tricky = "my scenes/room 'one' $(touch INJECTED) `touch INJECTED` ; touch INJECTED"
    source, work = tmp_path / tricky, tmp_path / "work dir"
    result = run_folder_scene_to_masks(source, work)
    assert result.returncode == 0, result.stderr[-3000:]
    scene = json.loads((work / "results/room/scene/scene.json").read_text())
    assert scene["source"] == str(source) and len(scene["train"]) == 4
    assert (work / "results/room/masks/masks.json").is_file()
    for log in (work / "logs").rglob("*.log"):
        assert "Traceback" not in log.read_text(), log
    assert not list(tmp_path.rglob("INJECTED")) and not (REPO / "INJECTED").exists()

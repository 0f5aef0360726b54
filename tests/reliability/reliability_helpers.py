"""Helpers of the reliability tests: run the real command line, check what the user sees."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from helpers import REPO, tiny_nerf_dict

SRC = REPO / "src"

# What may stand on stderr besides the one `error:` line: the package's log records
# (`HH:MM:SS LEVEL logger: message`), COLMAP's glog lines and tqdm progress bars.
LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING) [\w.]+: ")
GLOG_LINE = re.compile(r"^[IWEF]\d{8} \d\d:\d\d:\d\d")
PROGRESS_LINE = re.compile(r"^[\w ]+: +\d+%\|")


def cli_command(*args: str | os.PathLike, threads: int = 1) -> list[str]:
    """``python -m maldnerf --threads N <args>`` from this checkout."""
    return [sys.executable, "-m", "maldnerf", "--threads", str(threads), *map(str, args)]


def cli_env(**changes: str) -> dict[str, str]:
    """The environment of a CLI run: this checkout's package, offline Hugging Face hub."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    env.update(changes)
    return env


def run_cli(
    *args: str | os.PathLike,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess:
    """Run ``maldnerf <args>`` in a subprocess and wait for it."""
    return subprocess.run(
        cli_command(*args),
        capture_output=True,
        text=True,
        env=env or cli_env(),
        timeout=timeout,
        preexec_fn=preexec_fn,
    )


def run_all(jobs: dict[str, Callable[[], Any]], workers: int = 3) -> dict[str, Any]:
    """Call every job (each typically runs a subprocess) with a few at a time; results by key."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {key: pool.submit(job) for key, job in jobs.items()}
        return {key: future.result() for key, future in futures.items()}


def stray_lines(stderr: str) -> list[str]:
    """Lines of ``stderr`` that are neither log records (with their indented continuation
    lines, e.g. a warning's source line), progress bars nor ``error:`` lines."""
    stray, in_record = [], False
    for line in stderr.replace("\r", "\n").splitlines():
        if not line.strip():
            continue
        if LOG_LINE.match(line) or GLOG_LINE.match(line):
            in_record = True
        elif in_record and line[:1].isspace():
            pass
        elif line.startswith("error: ") or PROGRESS_LINE.match(line):
            in_record = False
        else:
            stray.append(line)
            in_record = False
    return stray


def user_error(result: subprocess.CompletedProcess, status: int = 2) -> str:
    """The single ``error:`` line of a failed run, after checking what the user sees.

    Non-zero exit ``status``; no traceback; exactly one ``error:`` line and it is the last line
    of stderr; nothing else on stderr but log records (and COLMAP's log, progress bars).
    """
    stderr = result.stderr
    assert result.returncode == status, (result.returncode, stderr[-3000:])
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr[-3000:]
    assert not stray_lines(stderr), stray_lines(stderr)
    return errors[0]


def assert_no_output(output: Path) -> None:
    """Nothing at ``output`` and no half-written temporary beside it."""
    assert not output.exists(), f"{output} exists after a failed run"
    leftovers = [p.name for p in output.parent.glob(f".{output.name}.*")] + [
        p.name for p in output.parent.glob(f".{output.stem}.tmp-*")
    ]
    assert not leftovers, leftovers


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, poll: float = 0.02) -> None:
    """Poll ``predicate`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


def safetensors_files(folder: Path) -> dict[str, dict[str, Any]]:
    """Every ``*.safetensors`` under ``folder`` (relative path -> tensors)."""
    from safetensors.torch import load_file

    return {str(p.relative_to(folder)): load_file(p) for p in sorted(folder.rglob("*.safetensors"))}


def assert_same_weights(a: Path, b: Path) -> int:
    """The safetensors files under ``a`` and ``b`` hold bit-identical tensors; returns the count."""
    import torch

    left, right = safetensors_files(a), safetensors_files(b)
    assert left and sorted(left) == sorted(right), (sorted(left), sorted(right))
    count = 0
    for name, tensors in left.items():
        assert sorted(tensors) == sorted(right[name]), name
        for key, value in tensors.items():
            assert torch.equal(value, right[name][key]), f"{name}: {key} differs"
            count += 1
    return count


# ---------------------------------------------------------------------------- inputs


def tiny_nerf_settings(iterations: int = 40, **nerf: Any) -> dict[str, Any]:
    """``--settings`` of ``maldnerf train``: a very small NeRF on the CPU, no dataset update."""
    settings = tiny_nerf_dict(
        **{"iterations": iterations, "checkpoint_every": 5, "log_every": 5, **nerf}
    )
    return {"nerf": settings, "idu": {"enabled": False}}


def tiny_customize_settings(model: Path, steps: int = 4, **customize: Any) -> dict[str, Any]:
    """``--settings`` of ``maldnerf customize``: the base model folder ``model`` at 32 px, a few
    steps."""
    values = {
        "steps": steps,
        "batch_size": 1,
        "checkpoint_every": 4,
        "warmup_steps": 1,
        "seed": 3,
    }
    values.update(customize)
    return {"diffusion": {"model": str(model), "resolution": 32}, "customize": values}


def as_json(settings: dict[str, Any]) -> str:
    return json.dumps(settings)


def write_torch_file(path: Path, tensors: dict[str, Any], truncate_to: float = 1.0) -> Path:
    """A ``torch.save`` file of ``tensors``, cut to ``truncate_to`` of its length."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(tensors, path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * truncate_to)])
    return path


def smooth_image(height: int, width: int) -> np.ndarray:
    """A uint8 RGB image whose every orientation differs, and which JPEG keeps well."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([x / width, y / height, 0.5 + 0.4 * np.sin(x / 5.0)], axis=-1)
    return (image * 255).astype(np.uint8)

"""Faults: kill -9 and resume, a killed Snakemake, disk full while checkpointing, GPU out of
memory. Every run here is the real command line (or workflow) unless it cannot be provoked
on a CPU-only machine (out of memory is simulated)."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import REPO
from maldnerf.diffusion.models import LORA_FILE, TOKENS_FILE
from reliability_helpers import (
    as_json,
    assert_no_output,
    assert_same_weights,
    cli_command,
    cli_env,
    run_cli,
    safetensors_files,
    tiny_customize_settings,
    tiny_nerf_settings,
    user_error,
    wait_for,
)
from workflow_helpers import jobs_that_would_run, shipped_config, snakemake, write_config


@pytest.fixture
def start(tmp_path):
    """``start(args, name)``: run ``maldnerf <args>`` in the background, output to
    ``<name>.log``; whatever still runs at the end of the test is killed."""
    started: list[tuple[subprocess.Popen, object]] = []

    def launch(args: list, name: str) -> subprocess.Popen:
        log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - closed at teardown
        process = subprocess.Popen(
            cli_command(*args), stdout=log, stderr=subprocess.STDOUT, env=cli_env()
        )
        started.append((process, log))
        return process

    yield launch
    for process, log in started:
        if process.poll() is None:
            process.kill()
        process.wait()
        log.close()


def _kill_at_first_checkpoint(process: subprocess.Popen, checkpoint: Path, log: Path) -> None:
    """SIGKILL ``process`` as soon as ``checkpoint`` appears (it must still be running)."""
    try:
        wait_for(
            lambda: checkpoint.is_file() or process.poll() is not None,
            timeout=300,
            what=str(checkpoint),
            poll=0.01,
        )
        assert process.poll() is None, f"finished before it could be killed:\n{log.read_text()}"
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        status = process.wait()
    assert status == -signal.SIGKILL


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ---------------------------------------------------------------------------- kill -9 and resume


def test_kill_9_during_customize_then_rerun_resumes_to_the_same_weights(
    tiny_scene, tiny_folder, tmp_path, start
):
    settings = tiny_customize_settings(tiny_folder, steps=24, checkpoint_every=4)
    total = 24

    def args(name: str) -> list:
        return [
            "customize",
            "--transforms",
            tiny_scene["transforms"],
            "--masks",
            tiny_scene["masks"],
            "--output",
            tmp_path / name / "custom",
            "--resume-dir",
            tmp_path / name / "resume",
            "--settings",
            as_json(settings),
        ]

    for name in ("reference", "killed"):
        (tmp_path / name).mkdir()
    reference = start(args("reference"), "reference")  # uninterrupted, alongside
    killed = start(args("killed"), "killed")
    checkpoint = tmp_path / "killed" / "resume" / "checkpoint.pt"
    _kill_at_first_checkpoint(killed, checkpoint, tmp_path / "killed.log")
    assert_no_output(tmp_path / "killed" / "custom")
    step = torch.load(checkpoint, map_location="cpu", weights_only=True)["step"]
    assert 0 < step < total

    rerun = run_cli(*args("killed"))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"customize: resuming from step {step} of {total}" in rerun.stderr
    assert reference.wait(timeout=300) == 0, (tmp_path / "reference.log").read_text()[-3000:]
    # Only the LoRA (a down and an up matrix per adapted attention projection) and the learned
    # token embeddings are saved: the base model stays frozen.
    saved = safetensors_files(tmp_path / "reference" / "custom")
    assert sorted(saved) == [LORA_FILE, TOKENS_FILE], sorted(saved)
    lora = saved[LORA_FILE]
    assert lora and all(k.endswith((".lora.down.weight", ".lora.up.weight")) for k in lora)
    count = assert_same_weights(tmp_path / "reference" / "custom", tmp_path / "killed" / "custom")
    assert count == len(lora) + len(saved[TOKENS_FILE])
    assert not _temporaries(tmp_path / "killed" / "resume")


def test_kill_9_during_train_then_disk_full_then_rerun_resumes_to_the_same_weights(
    tiny_scene, tmp_path, start
):
    settings = tiny_nerf_settings(iterations=120, checkpoint_every=10, log_every=10)

    def args(name: str) -> list:
        return [
            "train",
            "--transforms",
            tiny_scene["transforms"],
            "--masks",
            tiny_scene["masks"],
            "--targets",
            tiny_scene["targets"],
            "--customization",
            "none",
            "--output",
            tmp_path / name / "nerf",
            "--resume-dir",
            tmp_path / name / "resume",
            "--settings",
            as_json(settings),
        ]

    for name in ("reference", "killed"):
        (tmp_path / name).mkdir()
    reference = start(args("reference"), "reference")
    killed = start(args("killed"), "killed")
    resume = tmp_path / "killed" / "resume"
    _kill_at_first_checkpoint(killed, resume / "checkpoint.pt", tmp_path / "killed.log")
    assert_no_output(tmp_path / "killed" / "nerf")
    saved = (resume / "checkpoint.pt").read_bytes()
    step = torch.load(resume / "checkpoint.pt", map_location="cpu", weights_only=True)["step"]
    assert 0 < step < 120

    # The disk fills up: no file may grow past half the checkpoint's size. The next
    # checkpoint cannot be written; the one on disk must survive intact.
    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (len(saved) // 2, len(saved) // 2))

    full = run_cli(*args("killed"), preexec_fn=small_disk)
    line = user_error(full, status=3)
    assert f"error: writing {resume / 'checkpoint.pt'}: file too large" in line
    assert "rerun the same command" in line and "resume from their last checkpoint" in line
    assert (resume / "checkpoint.pt").read_bytes() == saved
    assert not _temporaries(resume)
    assert_no_output(tmp_path / "killed" / "nerf")

    rerun = run_cli(*args("killed"))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert re.search(rf"resuming from \S+checkpoint.pt at iteration {step}\b", rerun.stderr)
    assert reference.wait(timeout=300) == 0, (tmp_path / "reference.log").read_text()[-3000:]
    assert_same_weights(tmp_path / "reference" / "nerf", tmp_path / "killed" / "nerf")
    assert not (resume / "checkpoint.pt").exists()  # removed after success
    assert not _temporaries(resume)


# ---------------------------------------------------------------------------- write failures


def _failing_write(path: Path, data: bytes) -> None:
    """Write half the bytes, then fail as a full disk does."""
    with open(path, "wb") as handle:
        handle.write(data[: len(data) // 2])
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class _StubTrainer:
    def __init__(self, value: float) -> None:
        self.value = value

    def state_dict(self) -> dict:
        return {"tensors": {"w": torch.full((256, 256), self.value)}, "losses": [self.value]}


def _save_customize(resume: Path, value: float, step: int) -> Path:
    from maldnerf.diffusion.customize import save_checkpoint

    path = resume / "checkpoint.pt"
    save_checkpoint(path, _StubTrainer(value), step, "key")
    return path


def _save_nerf(resume: Path, value: float, step: int) -> Path:
    from maldnerf.nerf import checkpoint

    return checkpoint.save(
        resume, {"fingerprint": "key", "step": step, "model": {"w": torch.full((256, 256), value)}}
    )


def _load_customize(path: Path) -> dict:
    from maldnerf.diffusion.customize import load_checkpoint

    return load_checkpoint(path, "key")


def _load_nerf(path: Path) -> dict:
    from maldnerf.nerf import checkpoint

    return checkpoint.load(path.parent, "key")


@pytest.mark.parametrize(
    "save, load",
    [(_save_customize, _load_customize), (_save_nerf, _load_nerf)],
    ids=["customize", "nerf"],
)
def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(
    save, load, tmp_path, monkeypatch
):
    from maldnerf import atomic

    path = save(tmp_path, 1.0, 10)
    before = path.read_bytes()
    monkeypatch.setattr(
        atomic, "_write_buffer", lambda tmp, buffer: _failing_write(tmp, bytes(buffer.getbuffer()))
    )
    with pytest.raises(OSError) as info:
        save(tmp_path, 2.0, 20)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert path.read_bytes() == before
    assert _temporaries(tmp_path) == []
    monkeypatch.undo()
    state = load(path)
    assert state is not None and state["step"] == 10


def test_a_write_failure_is_one_line_with_the_fix(monkeypatch, capsys):
    from safetensors import SafetensorError

    from maldnerf import cli
    from maldnerf.nerf import render

    def full_disk(*args, **kwargs):
        raise SafetensorError(
            "Error while serializing: I/O error: No space left on device (os error 28)"
        )

    monkeypatch.setattr(render, "run", full_disk)
    status = cli.main(["render", "--transforms", "t.json", "--nerf", "n", "--output", "o"])
    assert status == 3
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error: no space left on the device; free space")


def test_temporaries_of_a_killed_writer_are_removed_by_the_next_write(tmp_path):
    from maldnerf import atomic

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    owner = atomic._owner().rsplit("-", 1)[0]
    stale_file = tmp_path / f".checkpoint.tmp-{owner}-{dead.pid}-abc123.pt"
    stale_file.write_bytes(b"half a checkpoint")
    stale_dir = tmp_path / f".nerf.{owner}-{dead.pid}-xyz.partial"
    stale_dir.mkdir()
    live_file = tmp_path / f".checkpoint.tmp-{owner}-{os.getpid()}-live.pt"  # a writer at work
    live_file.write_bytes(b"")
    other_host = tmp_path / f".checkpoint.tmp-elsewhere-{dead.pid}-abc.pt"  # shared disk
    other_host.write_bytes(b"")
    atomic.write_bytes(tmp_path / "checkpoint.pt", b"new")
    with atomic.output_dir(tmp_path / "nerf") as folder:
        (folder / "x").write_text("x")
    assert not stale_file.exists() and not stale_dir.exists()
    assert live_file.exists() and other_host.exists()


# ---------------------------------------------------------------------------- out of memory


@pytest.mark.parametrize(
    "stage, module, args, hint",
    [
        (
            "inpaint",
            "maldnerf.diffusion.inpaint",
            ["--transforms", "t", "--masks", "m", "--customization", "none", "--output", "o"],
            "lower inpaint.batch_size or diffusion.resolution",
        ),
        (
            "train",
            "maldnerf.nerf.trainer",
            ["--transforms", "t", "--masks", "m", "--targets", "i", "--customization", "none"]
            + ["--output", "o", "--resume-dir", "r"],
            "lower nerf.batch_rays, nerf.patch_size, nerf.patches_per_step, nerf.chunk_rays, "
            "idu.batch_size or diffusion.resolution",
        ),
        (
            "render",
            "maldnerf.nerf.render",
            ["--transforms", "t", "--nerf", "n", "--output", "o"],
            "lower render.chunk_rays",
        ),
        (
            "evaluate",
            "maldnerf.evaluate.stage",
            ["--scene", "s", "--masks", "m", "--render", "r", "--output", "o.json"],
            "run evaluate on the CPU (evaluate.device: cpu)",
        ),
    ],
)
def test_gpu_out_of_memory_names_the_setting_to_lower(
    stage, module, args, hint, monkeypatch, capsys
):
    import importlib

    from maldnerf import cli

    def out_of_memory(*_, **__):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(importlib.import_module(module), "run", out_of_memory)
    assert cli.main([stage, *args]) == 3
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"error: GPU out of memory in stage {stage}; {hint}"]


def test_gpu_out_of_memory_in_customize_names_the_setting_to_lower(
    tiny_scene, tiny_folder, tmp_path, monkeypatch, capsys
):
    from maldnerf import cli
    from maldnerf.diffusion import customize

    def out_of_memory(self, step):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(customize.Trainer, "step", out_of_memory)
    status = cli.main(
        [
            "customize",
            "--transforms",
            str(tiny_scene["transforms"]),
            "--masks",
            str(tiny_scene["masks"]),
            "--output",
            str(tmp_path / "custom"),
            "--resume-dir",
            str(tmp_path / "resume"),
            "--settings",
            as_json(tiny_customize_settings(tiny_folder)),
        ]
    )
    assert status == 3
    line = capsys.readouterr().err.strip().splitlines()[-1]  # after the closed progress bar
    assert line == (
        "error: GPU out of memory while training customisation step 0; lower "
        "customize.batch_size or diffusion.resolution, or set diffusion.gradient_checkpointing: true"
    )
    assert_no_output(tmp_path / "custom")


# ---------------------------------------------------------------------------- Snakemake


def _processes_in(directory: Path) -> list[int]:
    """Processes whose working directory is ``directory`` (a workflow's jobs)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if Path(os.readlink(proc / "cwd")) == directory:
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


@pytest.mark.workflow
def test_outputs_of_a_job_whose_snakemake_was_killed_are_incomplete_and_redone(tmp_path):
    """Snakemake is killed (-9) while its prepare job runs; the job still finishes and writes
    its output, but Snakemake never recorded it as complete. The next run must not trust it."""
    directory = (tmp_path / "work").resolve()
    config = shipped_config()
    config["scenes"][0]["synthetic"].update(width=64, height=48, n_train=4, n_test=2)
    write_config(directory, config)
    target = "results/synthetic/scene"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
    command += ["--directory", str(directory), "--cores", "2", target]
    with open(tmp_path / "snakemake.log", "w") as log:
        head = subprocess.Popen(command, stdout=log, stderr=log, env=env, start_new_session=True)
    try:
        wait_for(
            lambda: (directory / "logs/prepare/synthetic.log").exists() or head.poll() is not None,
            timeout=120,
            what="the prepare job to start",
        )
        os.kill(head.pid, signal.SIGKILL)
        head.wait()
        wait_for(
            lambda: not _processes_in(directory), timeout=120, what="the orphaned job to finish"
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)  # leave nothing running if the test failed
    assert (directory / target / "scene.json").is_file()  # the job did finish
    assert list((directory / ".snakemake" / "incomplete").iterdir())

    assert snakemake(directory, "--unlock").returncode == 0  # the lock of the killed run
    refused = snakemake(directory, target, "--dry-run", "--workflow-profile", "none")
    said = refused.stdout + refused.stderr
    assert refused.returncode != 0 and "IncompleteFilesException" in said
    assert f"Incomplete files:\n{target}" in said
    # The default profile has rerun-incomplete: the job is redone.
    assert jobs_that_would_run(directory, target) == {"prepare": 1}
    again = snakemake(directory, target)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "1 of 1 steps (100%) done" in again.stdout + again.stderr
    assert not list((directory / ".snakemake" / "incomplete").iterdir())
    assert jobs_that_would_run(directory, target) == {}


def test_resume_folders_lie_outside_the_declared_outputs():
    """Snakemake deletes a failed job's outputs; the resume checkpoints must survive that."""
    rules = {p.name: p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk")}
    found = 0
    for name, text in rules.items():
        for rule in re.split(r"^rule ", text, flags=re.M)[1:]:
            resume = re.search(r'resume="([^"]+)"', rule)
            if resume is None:
                continue
            found += 1
            outputs = re.findall(r'directory\("([^"]+)"\)', rule.split("log:")[0])
            assert "--resume-dir {params.resume:q}" in rule, (name, rule.split(":")[0])
            for output in outputs:
                assert not resume.group(1).startswith(output.rstrip("/") + "/"), (name, output)
                assert not output.startswith(resume.group(1).rstrip("/") + "/"), (name, output)
    assert found == 2  # customize and train


def test_replacing_an_output_folder_keeps_the_old_one_until_the_new_one_is_complete(tmp_path):
    from maldnerf import atomic

    target = tmp_path / "render"
    with atomic.output_dir(target) as folder:
        (folder / "a.png").write_text("old")
    with pytest.raises(RuntimeError), atomic.output_dir(target) as folder:
        (folder / "a.png").write_text("half")
        assert (target / "a.png").read_text() == "old"  # untouched while writing
        raise RuntimeError("killed")
    assert (target / "a.png").read_text() == "old"
    with atomic.output_dir(target) as folder:
        (folder / "a.png").write_text("new")
    assert (target / "a.png").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["render"]  # nothing left beside it

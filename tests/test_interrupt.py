"""Stopping on SIGINT/SIGTERM: the deferred and immediate regions, and the forwarding of a
signal from Snakemake's process to its jobs. (The stages' own handling: the signal tests of
customize and train.)"""

import signal
import subprocess
import sys
import time

import pytest

from maldnerf import interrupt


@pytest.fixture(autouse=True)
def no_signal_yet(monkeypatch):
    monkeypatch.setattr(interrupt, "_received", None)


def test_outside_a_deferred_region_a_signal_stops_at_once():
    with pytest.raises(interrupt.Interrupted) as info:
        interrupt._handle(signal.SIGTERM, None)
    assert info.value.signum == signal.SIGTERM and isinstance(info.value, KeyboardInterrupt)
    interrupt._handle(signal.SIGINT, None)  # a second signal: already stopping, ignored
    assert interrupt.requested()


def test_a_deferred_region_records_the_signal_until_the_loop_checks():
    steps = []
    with pytest.raises(interrupt.Interrupted) as info, interrupt.deferred():
        for step in range(5):
            steps.append(step)
            if step == 1:
                interrupt._handle(signal.SIGINT, None)  # no exception here
            if interrupt.requested():  # where the loop writes its checkpoint
                steps.append("checkpoint")
            interrupt.check()
    assert steps == [0, 1, "checkpoint"] and info.value.signum == signal.SIGINT


def test_a_request_left_unchecked_stops_at_the_end_of_the_region():
    with pytest.raises(interrupt.Interrupted), interrupt.deferred():
        interrupt._handle(signal.SIGTERM, None)


def test_an_immediate_region_inside_a_deferred_one_stops_at_once():
    with pytest.raises(interrupt.Interrupted), interrupt.deferred():
        with interrupt.immediate():
            interrupt._handle(signal.SIGTERM, None)
        pytest.fail("not stopped inside the immediate region")


def test_snakemakes_process_passes_a_signal_on_to_its_jobs(tmp_path):
    """The parent stands for Snakemake (forward_to_jobs, as common.smk calls it), the shell
    and its ``sleep`` for a job; SIGTERM goes to the parent only."""
    pid_file = tmp_path / "job.pid"
    parent = (
        "import subprocess\n"
        "from maldnerf.interrupt import forward_to_jobs\n"
        "forward_to_jobs()\n"
        f"subprocess.run(['sh', '-c', 'sleep 300 & echo $! > {pid_file}; wait'])\n"
    )
    process = subprocess.Popen([sys.executable, "-c", parent], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.is_file() and pid_file.read_text().strip()):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.1)
        job = int(pid_file.read_text())
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        assert b"KeyboardInterrupt" in process.stderr.read()  # stopped as Ctrl-C stops it
        deadline = time.monotonic() + 10
        while _alive(job):
            assert time.monotonic() < deadline, "the job was not stopped"
            time.sleep(0.1)
    finally:
        process.kill()


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False

"""Stop a stage within seconds on SIGINT or SIGTERM, leaving what a rerun resumes from.

Where the signals come from: Ctrl-C in a terminal sends SIGINT to Snakemake and to every job it
runs; a signal sent to Snakemake alone is passed on to its jobs (:func:`forward_to_jobs`, set
up by ``workflow/rules/common.smk``); Slurm sends SIGTERM to a job's processes when it is
cancelled or out of time (and SIGKILL after the cluster's ``KillWait``, usually 30 s).

What a stage does (:func:`install`, called by the command line for every stage): the first
signal raises :class:`Interrupted` (a ``KeyboardInterrupt``) where the stage is; its outputs are
written atomically, so nothing half-written is left looking valid, and ``maldnerf`` exits with
128 + the signal number (130 for SIGINT, 143 for SIGTERM). Later signals are ignored: the
stage is already stopping.

Training loops stop at a step boundary instead, after writing a checkpoint: inside
:func:`deferred` a signal only records the request; the loop asks :func:`requested` after each
step (write the checkpoint) and calls :func:`check` (stop). Work inside a deferred region that
cannot be checkpointed midway (a dataset-update round) runs in :func:`immediate` and is redone
on resume.

Python runs signal handlers between bytecodes, so a main thread inside a long native call
(COLMAP's mapper) would not notice. A watchdog thread, woken by the signal itself
(``signal.set_wakeup_fd``), ends the process :data:`GRACE_SECONDS` after the first signal with
the same exit status, waiting while an atomic write (a checkpoint) is in progress.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)
GRACE_SECONDS = 10.0
"""How long after the first signal the watchdog lets the stage stop by itself."""
WRITE_GRACE_SECONDS = 60.0
"""How much longer it waits for an atomic write (a checkpoint) in progress."""


class Interrupted(KeyboardInterrupt):
    """The stage was asked to stop by ``signum``; the command line exits with 128 + signum."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


_installed = False
_received: int | None = None
_deferred_depth = 0
_immediate_depth = 0
_writes = 0
_lock = threading.Lock()


def _handle(signum: int, frame: object) -> None:
    global _received
    if _received is not None:
        return  # already stopping
    _received = signum
    waiting = _deferred_depth > 0 and _immediate_depth == 0
    log.warning(
        "%s received: stopping%s",
        signal.Signals(signum).name,
        " after the current step (with a checkpoint)" if waiting else "",
    )
    if not waiting:
        raise Interrupted(signum)


def install(grace: float = GRACE_SECONDS) -> None:
    """Handle SIGINT and SIGTERM as the module doc says (from the main thread; the first call
    of a process does it, later ones do nothing)."""
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    _installed = True
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    for number in SIGNALS:
        signal.signal(number, _handle)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    threading.Thread(target=_watchdog, args=(read_end, grace), daemon=True).start()


def _watchdog(read_end: int, grace: float) -> None:
    signum = os.read(read_end, 1)[0]
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline or (
        _writes > 0 and time.monotonic() < deadline + WRITE_GRACE_SECONDS
    ):
        time.sleep(0.05)
    print(
        f"error: interrupted by {signal.Signals(signum).name}; stopped after {grace:.0f} s "
        "(the last checkpoint is kept)",
        file=sys.stderr,
        flush=True,
    )
    os._exit(128 + signum)


def requested() -> bool:
    """Whether a signal asked the stage to stop."""
    return _received is not None


def check() -> None:
    """Raise :class:`Interrupted` if a signal asked the stage to stop."""
    if _received is not None:
        raise Interrupted(_received)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A region where a signal only records the request (see the module doc); a request left
    unchecked stops the stage when the region ends."""
    global _deferred_depth
    _deferred_depth += 1
    try:
        yield
    finally:
        _deferred_depth -= 1
    check()


@contextlib.contextmanager
def immediate() -> Iterator[None]:
    """Inside a :func:`deferred` region: a region that a signal stops at once again."""
    global _immediate_depth
    check()
    _immediate_depth += 1
    try:
        yield
    finally:
        _immediate_depth -= 1


@contextlib.contextmanager
def writing() -> Iterator[None]:
    """An atomic write in progress: the watchdog waits for it (up to
    :data:`WRITE_GRACE_SECONDS` more)."""
    global _writes
    with _lock:
        _writes += 1
    try:
        yield
    finally:
        with _lock:
            _writes -= 1


def forward_to_jobs() -> None:
    """In Snakemake's process: pass SIGINT and SIGTERM on to the processes of the running jobs
    (the leaves of its process tree: the ``maldnerf`` commands, not the shells around them),
    then stop Snakemake as Ctrl-C does, so that it waits for them to stop and cleans up.
    Without this a signal to Snakemake alone lets running jobs go on to their end."""
    if threading.current_thread() is not threading.main_thread():
        return

    def forward(signum: int, frame: object) -> None:
        import psutil

        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if not child.children():
                    child.send_signal(signum)
        raise KeyboardInterrupt

    for number in SIGNALS:
        signal.signal(number, forward)

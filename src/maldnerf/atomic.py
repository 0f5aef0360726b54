"""Atomic writes: an artifact is either complete or absent, never half-written.

Files are written to a temporary name in the same folder, flushed with ``fsync`` and renamed
into place; folders are assembled under a temporary name and renamed as a whole. A failure at
any point (disk full, kill) leaves the previous version, if any, untouched.

Temporary names carry the host and process id of their writer (``.<name>.tmp-<host>-<pid>-…``,
``.<name>.<host>-<pid>-….partial``); the next write of the same file or folder removes those
left behind by a writer that was killed (same host, process gone), so repeated kills do not
fill the disk. A write that fails with an ``OSError`` (disk full, quota, read-only) is re-raised
naming the file being written.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from . import interrupt


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _owner() -> str:
    """``<host>-<pid>``: who writes a temporary file (host name reduced to safe characters)."""
    host = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"
    return f"{host}-{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _remove_stale(folder: Path, prefix: str, suffix: str) -> None:
    """Remove ``prefix<host>-<pid>-*suffix`` entries of ``folder`` whose writer on this host is
    gone (killed while writing)."""
    host = _owner().rsplit("-", 1)[0]
    pattern = re.compile(
        re.escape(prefix) + re.escape(host) + r"-(\d+)-.*" + re.escape(suffix) + "$"
    )
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            match = pattern.match(entry.name)
            if match is None or _alive(int(match.group(1))):
                continue
            with contextlib.suppress(OSError):
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def _naming(exc: OSError, path: Path) -> OSError:
    """``exc`` with ``path`` as its file name, so the message says which write failed."""
    if exc.errno is None:
        return exc
    try:
        return type(exc)(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))
    except TypeError:  # a subclass with another signature
        return exc


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` only if it succeeds.

    ``write`` receives a temporary path in the same folder that ends with the same suffix, so
    writers that choose a format from the suffix keep working. The interrupt watchdog waits
    for the write (:func:`maldnerf.interrupt.writing`): a checkpoint is not cut short.
    """
    with interrupt.writing():
        return _atomic_write(Path(path), write)


def _atomic_write(path: Path, write: Callable[[Path], Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.stem}.tmp-"
    _remove_stale(path.parent, prefix, path.suffix)
    fd, tmp = tempfile.mkstemp(prefix=f"{prefix}{_owner()}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes it private; use the usual mode
    try:
        write(tmp_path)
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        raise _naming(exc, path) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
    return path


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically write ``data`` to ``path``."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_torch(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` with ``torch.save`` (read it back with ``weights_only=True``).

    The object is serialised in memory first: ``torch.save`` reports a failed file write (disk
    full) as an unspecific ``RuntimeError``, a plain file write as an ``OSError`` naming the
    cause.
    """
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write(path, lambda tmp: _write_buffer(tmp, buffer))


def _write_buffer(tmp: Path, buffer: io.BytesIO) -> None:
    with open(tmp, "wb") as handle:
        handle.write(buffer.getbuffer())


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write UTF-8 ``text`` to ``path``."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Atomically write ``data`` as indented JSON (non-finite floats become ``null``)."""
    return write_text(path, json.dumps(_finite(data), indent=2, allow_nan=False) + "\n")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


@contextlib.contextmanager
def output_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Assemble a whole output folder atomically.

    Yields an empty temporary folder beside ``path``; when the block finishes without an
    exception the previous ``path`` (if any) is renamed aside, the temporary folder renamed to
    ``path`` and the old one deleted — so ``path`` is always the old or the new version, never
    a partial one (it is missing only between the two renames). On an exception the temporary
    folder is deleted and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path.parent, f".{path.name}.", ".partial")
    tmp = Path(
        tempfile.mkdtemp(prefix=f".{path.name}.{_owner()}-", suffix=".partial", dir=path.parent)
    )
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; use the usual mode
    try:
        yield tmp
        old = None
        if path.exists() or path.is_symlink():
            old = tmp.with_name(tmp.name.removesuffix(".partial") + ".old.partial")
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)

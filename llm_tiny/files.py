"""Crash-safe file writes and the run-folder lock.

A write goes to a temp file in the target's folder, is flushed and fsynced, then `os.replace`d over the
target, and the folder is fsynced: a reader (or a run resumed after a crash) sees the old file or the new
one, never half of one.
"""

from __future__ import annotations

import contextlib
import glob
import os
import socket
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from llm_tiny.errors import UserError

# Fault-injection point for tests: called with (temp path, final path) after the bytes are written and
# before fsync + rename. Raise to simulate a failed write, sleep to widen a kill window.
BEFORE_REPLACE: Callable[[Path, Path], None] | None = None

# mkstemp creates 0600 files; a checkpoint or log should get the usual permissions (0666 - umask).
_UMASK = os.umask(0)
os.umask(_UMASK)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, the run folder goes unlocked
    fcntl = None  # type: ignore[assignment]


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Make a rename inside `folder` durable (a no-op where directories can't be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on a directory
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes | memoryview) -> None:
    """Replace `path` with `data` atomically; on any failure the old file is untouched, no temp is left."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if BEFORE_REPLACE is not None:
                BEFORE_REPLACE(tmp, p)
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(p.parent)


def remove_stale_temps(folder: str | os.PathLike[str], names: Iterable[str]) -> list[Path]:
    """Delete the temp files a killed atomic write of `<folder>/<name>` left behind (call only while
    holding the folder's lock, so that no live writer owns them); returns what was removed."""
    gone = []
    for name in names:
        for tmp in Path(folder).glob(f".{glob.escape(name)}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                gone.append(tmp)
    return gone


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """atomic_write_bytes for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


class RunLock:
    """An exclusive advisory lock on `<run folder>/.lock`, released by the OS when the process dies,
    so a crashed or killed run never leaves the folder stuck; a second live run is refused."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.path = Path(folder) / ".lock"
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock or raise UserError naming the process that holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
                os.close(fd)
                raise UserError(
                    f"run folder {self.path.parent} is in use by {holder}; wait for it to finish "
                    "or pick another train.out_dir"
                ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (the file stays; an unlocked file means nobody holds it)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

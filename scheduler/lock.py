"""One controller per study directory: an exclusive lock held for the controller's whole life.

    with StudyLock(study_dir):      # InputError at once if another controller holds it
        ...run the study...

Two controllers on one study directory would both resume it, re-run each other's in-flight runs and
overwrite each other's result, training runs twice and recording them once. The lock is
`fcntl.flock` on `<study_dir>/controller.lock`, taken without waiting: a second controller fails
immediately with one line naming the holder (pid, host, since), written into the lock file by the holder.

The kernel drops an flock when its process dies, however it dies (SIGKILL, OOM, a lost node), so a lock
left by a killed controller never blocks the resume; the stale holder text left in the file is simply
overwritten. The lock file itself is never deleted (deleting it would let two processes lock two
different files of the same name). On Linux, flock on NFS (v4) is carried by the server's byte-range
locks, so it also excludes a controller on another node that mounts the same study directory.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from skillscale.errors import InputError

LOCK_NAME = "controller.lock"


class StudyLocked(InputError):
    """Another live controller holds the study directory's lock."""


def _holder_text(path: Path) -> str:
    """'pid 123 on host h since 2026-12-01T09:50:00Z', from the lock file (best effort)."""
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        holder = {}
    if not holder:
        return "a process that has not written its name yet"
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} since {holder.get('since', '?')}"


class StudyLock:
    """An exclusive, non-blocking lock on a study directory (see the module docstring).

    acquire() -> the lock is held until release() or the process ends; a context manager does both.
    """

    def __init__(self, study_dir: str | os.PathLike):
        self.study_dir = Path(study_dir)
        self.path = self.study_dir / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> StudyLock:
        if self._fd is not None:
            return self
        try:
            self.study_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise InputError(f"{self.study_dir}: cannot use as a study directory "
                             f"({exc.strerror or exc}); choose another --study-dir") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StudyLocked(f"{self.study_dir}: another controller is running this study "
                              f"({_holder_text(self.path)}); wait for it to stop, or stop it, then rerun") from None
        except OSError as exc:  # a filesystem without locks: refuse rather than risk two controllers
            os.close(fd)
            raise InputError(f"{self.path}: cannot lock the study directory ({exc.strerror or exc}); "
                             "put the study on a filesystem that supports flock") from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        except OSError:
            pass  # the holder text is informational; the flock is what excludes
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (the holder text stays; the next holder overwrites it)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __del__(self) -> None:  # a holder dropped without release() still lets go
        self.release()

    def __enter__(self) -> StudyLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

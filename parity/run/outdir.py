"""The report folder of a run: checked before anything renders, and held by one run at a time.

Two runs writing one folder would each report success while the second overwrites the first's results.json
and index.html, leaving the first's images as orphans. A run therefore holds an advisory lock on
`<out>/.parity-run.lock` (flock on POSIX, msvcrt on Windows) from before its first case to after its report.
The operating system releases it when the process ends, however it ends, so a crashed run never leaves the
folder locked; the file itself stays (a few bytes naming the last holder).
"""

from __future__ import annotations

import datetime as _dt
import os
import socket
import sys
from pathlib import Path

from parity.core.errors import ParityError

LOCK_NAME = ".parity-run.lock"


class OutDirError(ParityError):
    """A report folder that cannot be used: what is wrong with it and what to do."""

    def __init__(self, what: str, fix: str):
        self.what = what
        self.fix = fix
        super().__init__(f"{what}. Fix: {fix}")


def check_out_dir(path: Path) -> None:
    """The folder exists or can be made, and is a folder; OutDirError otherwise (nothing rendered yet)."""
    if path.exists() and not path.is_dir():
        raise OutDirError(f"the report folder {path} is a file, not a folder", "name a folder with --out (it is created)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutDirError(f"the report folder {path} cannot be made: part of its path is a file", "name another --out") from None
    except OSError as exc:
        raise OutDirError(f"the report folder {path} cannot be made: {exc.strerror or exc}", "name a writable --out") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutDirError(f"the report folder {path} is not writable", "name a writable --out")


class OutputLock:
    """An exclusive hold on a report folder for the life of a run."""

    def __init__(self, path: Path, handle, description: str):
        self.path = path
        self._handle = handle
        self.description = description

    @classmethod
    def acquire(cls, out_dir: Path, command: str = "") -> OutputLock:
        """Check the folder and take its lock; OutDirError naming the holder when another run has it."""
        check_out_dir(out_dir)
        path = out_dir / LOCK_NAME
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held until release)
        if not _try_lock(handle):
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise OutDirError(
                f"another parity run is writing its report to {out_dir} ({holder})",
                "wait for it to finish, or give this run its own --out",
            )
        description = (
            f"pid {os.getpid()} on {socket.gethostname()}, started {_dt.datetime.now().isoformat(timespec='seconds')}"
            + (f": {command}" if command else "")
        )
        handle.seek(0)
        handle.truncate()
        handle.write(description + "\n")
        handle.flush()
        return cls(path, handle, description)

    def release(self) -> None:
        if self._handle is None:
            return
        _unlock(self._handle)
        self._handle.close()
        self._handle = None


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(handle) -> bool:
        handle.seek(0)
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(handle) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(handle) -> bool:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(handle) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

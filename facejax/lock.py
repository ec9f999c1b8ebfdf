"""One writer per folder: an exclusive lock file holding the owner's host and pid.

`FolderLock(folder, name)` creates `folder/name` and holds an exclusive `fcntl.flock` on it for
as long as the process keeps it (the kernel drops it when the process dies, however it dies).
Another process asking for the same lock gets a one-line UserError naming the holder. A lock
file left by a process that died is stale: it is taken over, with a line saying whose it was.
Where the filesystem has no flock (some network mounts), the holder's liveness is judged by its
pid on this host, and on another host by the file's age against `stale_after` seconds, which the
holder refreshes while it runs. `wait_turn(path)` is the other kind: a lock a second process
waits for (filelock's).

FolderLock keeps its own flock rather than filelock's FileLock, whose part would be that one
call: the rest is what FileLock does not do. It writes nothing in the file (its on_acquired
hook could write the holder, but FileLock then refuses its no-flock fallback), so no line could
name the holder; and where flock is refused with ENOLCK or EOPNOTSUPP (NFS without its lock
daemon) it raises, while its marker-file fallback (ENOSYS only) never judges another host's
holder gone, where FolderLock goes by the file's age.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import threading
import time

import filelock

from facejax.errors import UserError, remedy


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FolderLock:
    """An exclusive lock on `folder`, taken at construction, released by `release()` (or at
    exit). `what` names the folder's role in messages ("workdir", "extraction folder")."""

    def __init__(self, folder: str, name: str = ".lock", what: str = "folder",
                 stale_after: float = 600.0):
        self.path = os.path.join(folder, name)
        self.host, self.pid = socket.gethostname(), os.getpid()
        self._stop = threading.Event()
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:  # a read-only filesystem, a folder not ours
            raise UserError(f"{folder}: cannot create the lock file {name} ({e.strerror}); "
                            f"{remedy(e)}")
        holder = self._read()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(self._fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
                raise UserError(self._busy(folder, what, holder))
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise UserError(f"{self.path}: cannot lock ({e.strerror})")
            # No flock here: judge the holder by its pid (same host) or the file's age.
            self._fd = os.open(self.path, os.O_RDWR)
            if holder and not self._stale(holder, stale_after):
                os.close(self._fd)
                raise UserError(self._busy(folder, what, holder))
        if holder and (holder.get("host"), holder.get("pid")) != (self.host, self.pid):
            print(f"note: {self.path}: took over the stale lock of pid {holder.get('pid')} on "
                  f"{holder.get('host')} (that process is gone)", file=sys.stderr, flush=True)
        self._write()
        self._refresher = threading.Thread(target=self._refresh, args=(stale_after / 4,),
                                           daemon=True)
        self._refresher.start()

    def _read(self) -> dict | None:
        try:
            data = os.pread(self._fd, 4096, 0)
            return json.loads(data) if data.strip() else None
        except (OSError, ValueError):
            return {"host": "?", "pid": "?"}

    def _write(self) -> None:
        data = json.dumps({"host": self.host, "pid": self.pid, "since": time.time()}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)
        os.fsync(self._fd)

    def _stale(self, holder: dict, stale_after: float) -> bool:
        if holder.get("host") == self.host and isinstance(holder.get("pid"), int):
            return not _alive(holder["pid"])
        return time.time() - os.fstat(self._fd).st_mtime > stale_after

    def _busy(self, folder: str, what: str, holder) -> str:
        who = (f"pid {holder.get('pid')} on {holder.get('host')}" if holder
               else "another process")
        return (f"{folder}: this {what} is in use by {who} ({self.path}); one writer at a time: "
                "wait for it, or stop it")

    def _refresh(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                os.utime(self.path)
            except OSError:
                pass

    def release(self) -> None:
        """Gives the lock up (the file stays; an unheld lock file is free to take)."""
        if self._fd is None:
            return
        self._stop.set()
        try:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def wait_turn(path: str):
    """A blocking exclusive lock on the file `path` (filelock.FileLock), for work that must not
    run twice at once but that a second process should wait for rather than refuse (preparing
    a dataset both need): `with wait_turn(path):`. Creates `path`'s folder.

    Where the filesystem refuses locks (ENOLCK: an NFS mount without its lock daemon;
    EOPNOTSUPP), the work goes ahead unlocked, as it always did there: filelock raises those
    errors, and a training should not fail for want of the lock. Where there is no flock at all
    (ENOSYS), filelock waits on a marker file of its own instead.
    """
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    try:
        return filelock.FileLock(path).acquire()  # a context manager that releases it
    except OSError as e:
        if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP):
            raise
        return contextlib.nullcontext()

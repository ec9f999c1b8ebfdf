"""User-facing errors: one line that names the file or flag and the problem."""

import errno
import sys


class UserError(Exception):
    """Bad input from the user. Tools print `str(err)` on one line and exit non-zero."""


class RunError(Exception):
    """A run that cannot go on (a failed save, a diverged model, a lost peer process): tools
    print `str(err)` on one line and exit with `exit_code`."""
    exit_code = 1


class Stopped(BaseException):
    """A stop request (SIGTERM, SIGINT) that ends a command before its work has begun, or
    before a dataset is prepared (data/tfds_faces.PreparationStopped): one line, exit 0. A
    BaseException, like KeyboardInterrupt: no `except Exception` on the way (TensorFlow's,
    TFDS's, ours) turns it into an error."""


# The signals a start-up stop handler raised Stopped for. Python prints and drops an exception
# raised where it cannot propagate (a garbage-collection callback, a __del__), and the run would
# go on; train.train looks here once it takes the signals over, and stops then.
STOPS_RAISED: list[int] = []


def stopped_before_training(signum: int) -> Stopped:
    return Stopped(f"stopped before training started (signal {signum}); nothing new was "
                   "saved: rerun to go on")


class WriteFailed(RunError):
    """A write failed (a read-only filesystem, no permission): what was finished is kept, and
    the same command goes on from there once the folder is writable."""


class OutOfSpace(WriteFailed):
    """A write failed for lack of room (disk full, quota): what was finished is kept, and
    rerunning the same command once there is room goes on from there."""


# What a user does about each reason a write fails; others are said as the system says them.
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT)
_REMEDY = {errno.EROFS: "the filesystem is read-only: remount it writable or choose another "
                        "folder, then rerun the same command to go on",
           errno.EACCES: "permission denied: make the folder writable for this user or choose "
                         "another, then rerun the same command to go on",
           errno.EPERM: "operation not permitted: make the folder writable for this user or "
                        "choose another, then rerun the same command to go on"}


def remedy(err: OSError) -> str:
    """What to do about a write that failed with `err`, in a few words."""
    if err.errno in _NO_ROOM:
        return "make room and rerun the same command to go on"
    return _REMEDY.get(err.errno, "rerun the same command to go on once it can write there")


def write_failed(err: OSError, folder: str, kept: str) -> WriteFailed:
    """The one-line error for an OSError while writing into `folder`: OutOfSpace for a full
    disk or quota, WriteFailed naming the reason (read-only, permission) otherwise."""
    what = err.strerror or type(err).__name__
    name = f" writing {err.filename}" if err.filename else ""
    kind = OutOfSpace if err.errno in _NO_ROOM else WriteFailed
    return kind(f"{folder}: {what}{name}; {kept} are kept: {remedy(err)}")


def one_line(err: BaseException) -> str:
    """Returns the error message collapsed to a single line."""
    return " ".join(str(err).split()) or type(err).__name__


def warn(message: str) -> None:
    """Prints a warning on one line to stderr, in the style of the tools' errors."""
    print(f"warning: {one_line(message)}", file=sys.stderr, flush=True)

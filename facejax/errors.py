"""User-facing errors: one line that names the file or flag and the problem."""

import sys


class UserError(Exception):
    """Bad input from the user. Tools print `str(err)` on one line and exit non-zero."""


class RunError(Exception):
    """A run that cannot go on (a failed save, a diverged model, a lost peer process): tools
    print `str(err)` on one line and exit with `exit_code`."""
    exit_code = 1


class OutOfSpace(RunError):
    """A write failed for lack of room (disk full, quota, read-only): what was finished is kept,
    and rerunning the same command once there is room goes on from there."""


def write_failed(err: OSError, folder: str, kept: str) -> OutOfSpace:
    """The one-line OutOfSpace for an OSError while writing into `folder`."""
    what = err.strerror or type(err).__name__
    name = f" writing {err.filename}" if err.filename else ""
    return OutOfSpace(f"{folder}: {what}{name}; {kept} are kept: make room and rerun the same "
                      "command to go on")


def one_line(err: BaseException) -> str:
    """Returns the error message collapsed to a single line."""
    return " ".join(str(err).split()) or type(err).__name__


def warn(message: str) -> None:
    """Prints a warning on one line to stderr, in the style of the tools' errors."""
    print(f"warning: {one_line(message)}", file=sys.stderr, flush=True)

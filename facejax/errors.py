"""User-facing errors: one line that names the file or flag and the problem."""


class UserError(Exception):
    """Bad input from the user. Tools print `str(err)` on one line and exit non-zero."""


class RunError(Exception):
    """A run that cannot go on (a failed save, a diverged model, a lost peer process): tools
    print `str(err)` on one line and exit with `exit_code`."""
    exit_code = 1


def one_line(err: BaseException) -> str:
    """Returns the error message collapsed to a single line."""
    return " ".join(str(err).split()) or type(err).__name__

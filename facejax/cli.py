"""Shared plumbing of the command-line tools: one-line errors and exit codes."""

from __future__ import annotations

import ast
import sys
from typing import Callable

from facejax.errors import RunError, UserError, one_line


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _last_line(err: BaseException) -> str:
    """The message of a flag error: config_flags wraps an experiment file's exception in the
    whole traceback text; its last line is the exception itself."""
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    if len(text) > 1 and text[0] == text[-1] == "'":  # a KeyError's repr of its message
        try:
            text = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            pass
    if "Traceback (most recent call last)" in text:
        lines = [line for line in text.strip().splitlines() if line.strip()]
        head = text.split(": Error whilst parsing", 1)[0] if text.startswith("flag --") else ""
        return one_line(f"{head}: {lines[-1]}" if head else lines[-1])
    return one_line(text)


def _check_config_files(flag_values) -> None:
    """An experiment file that could not be loaded (config_flags keeps the error until the
    config is used): one line naming the flag and the file."""
    for name in flag_values:
        value = flag_values[name].value
        if type(value).__name__ != "_ErrorConfig":
            continue
        try:
            value.lock  # re-raises the loading error
        except OSError as e:
            cause = e.__cause__ or e
            attempts = [line.strip() for line in str(cause).splitlines() if line.strip()]
            reason = attempts[-1] if attempts else one_line(cause)
            _fail(f"--{name}: cannot load the experiment file ({reason})")


def run_main(main: Callable) -> None:
    """Like absl's `app.run(main)`, with bad flags and UserError printed on one line, exit 2;
    a RunError on one line with its own exit status. First restarts the process with huge
    pages for large allocations (`xla_setup.use_huge_pages`)."""
    from absl import app, flags

    from facejax import xla_setup
    xla_setup.use_huge_pages()

    # Parse first, so a misspelt or ill-typed flag (config_flags raises plain AttributeError,
    # KeyError, TypeError or ValueError for `--config.key=value`) is one line, not a traceback.
    try:
        argv = flags.FLAGS(sys.argv)
    except flags.Error as e:
        _fail(_last_line(e))
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        _fail(f"bad flag value: {_last_line(e)}")
    _check_config_files(flags.FLAGS)

    del app  # flags are parsed once, here; parsing twice would redefine config overrides
    try:
        sys.exit(main(argv))
    except UserError as e:
        _fail(one_line(e))
    except RunError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        sys.exit(e.exit_code)

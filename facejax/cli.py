"""Shared plumbing of the command-line tools: one-line errors and exit codes."""

from __future__ import annotations

import sys
from typing import Callable

from facejax.errors import RunError, UserError, one_line


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


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
        _fail(one_line(e))
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        _fail(f"bad flag value: {one_line(e)}")

    del app  # flags are parsed once, here; parsing twice would redefine config overrides
    try:
        sys.exit(main(argv))
    except UserError as e:
        _fail(one_line(e))
    except RunError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        sys.exit(e.exit_code)

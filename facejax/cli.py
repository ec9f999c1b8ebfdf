"""Shared plumbing of the command-line tools: one-line errors and exit codes."""

from __future__ import annotations

import sys
from typing import Callable

from facejax.errors import UserError, one_line


def run_main(main: Callable) -> None:
    """absl's `app.run(main)`, with UserError printed on one line and exit status 2."""
    from absl import app

    def wrapped(argv):
        try:
            return main(argv)
        except UserError as e:
            print(f"error: {one_line(e)}", file=sys.stderr)
            sys.exit(2)

    try:
        app.run(wrapped)
    except app.UsageError as e:  # raised for bad flags before main runs
        print(f"error: {one_line(e)}", file=sys.stderr)
        sys.exit(2)

"""Files written whole or not at all, and JSON read with a one-line error naming the file."""

from __future__ import annotations

import json
import os
import tempfile

from facejax.errors import UserError

# The process umask, read once: mkstemp creates 0600 files, and atomic writes give theirs the
# permissions a plain open() would.
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Writes `data` to `path` so that a reader sees either nothing or the whole file."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: str, obj, **kwargs) -> None:
    """`obj` as indented JSON at `path`, atomically (json.dumps keyword arguments pass on)."""
    kwargs.setdefault("indent", 1)
    atomic_write_bytes(path, json.dumps(obj, **kwargs).encode())


def read_json(path: str, what: str = ""):
    """The JSON value in `path`.

    Raises:
      UserError: the file is missing, unreadable or not JSON; `what` (e.g. "the run's config")
        and the file's name are in the message.
    """
    label = f"{path} ({what})" if what else path
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise UserError(f"{label}: no such file")
    except OSError as e:
        raise UserError(f"{label}: unreadable ({e.strerror})")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{label}: not valid JSON ({e})")

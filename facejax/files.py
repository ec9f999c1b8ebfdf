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


# The folders facejax manages, known by a marker file, and the entries in them that belong to
# facejax: an output there would corrupt the folder. (Names as data/extract.py and
# runs.py / train.py write them; tests/test_files.py checks they agree.)
MANAGED = {
    "extraction folder": ("extract_config.json", {
        "extract_config.json", "inputs", "tfds", "alignments.jsonl", "summary.json", ".lock",
        ".chunks", "masks.jsonl", "trash", "studio_cache"}),
    "training workdir": ("config.json", {
        "config.json", "inference.json", "checkpoints", "tensorboard", "previews",
        "metrics.jsonl", "rollback.json", ".lock", "convert_settings.json"}),
}


def _is_managed(folder: str) -> str | None:
    for what, (marker, _) in MANAGED.items():
        if os.path.isfile(os.path.join(folder, marker)) and (
                what != "training workdir" or os.path.isdir(os.path.join(folder, "checkpoints"))):
            return what
    return None


def check_output(output: str, inputs=(), flag: str = "--output", own: str = "") -> None:
    """Refuses an output path that would destroy what the user gave or facejax keeps.

    `own`: the kind of managed folder the caller itself writes ("extraction folder" for
    extraction), which `output` may be.

    Raises:
      UserError: `output` is one of `inputs` (the same path once links are resolved, or the
        same file by inode), or is a facejax-managed folder (an extraction folder or a training
        workdir) or one of the entries facejax keeps inside one.
    """
    real = os.path.realpath(output)
    for given in inputs:
        if not given:
            continue
        same = real == os.path.realpath(given)
        if not same and os.path.exists(output) and os.path.exists(given):
            same = os.path.samefile(output, given)
        if same:
            raise UserError(f"{flag} {output}: is the input {given}; refusing to overwrite it "
                            "(write the output elsewhere)")
    folder = real
    while True:
        what = _is_managed(folder) if os.path.isdir(folder) else None
        if what:
            rel = os.path.relpath(real, folder)
            first = rel.split(os.sep)[0]
            if rel == "." and what == own:
                pass
            elif rel == "." or first in MANAGED[what][1] or first.startswith((".partial",
                                                                               ".lock")):
                where = "is" if rel == "." else "is inside"
                raise UserError(f"{flag} {output}: {where} the {what} {folder}, which it would "
                                "corrupt; write the output elsewhere")
        parent = os.path.dirname(folder)
        if parent == folder:
            return
        folder = parent

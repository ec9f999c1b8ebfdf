"""What a training workdir records so that inference needs no training data.

`WORKDIR/inference.json`, written at every training start (process 0) by
`facejax.data.run_record.from_data`:

    {"version": 1,
     "held_out_fraction": the last share of each input's frames kept out of training,
     "identities": {"a": {"folder": absolute path (for reference only),
                          "extraction": {"size": crop px, "coverage": jaw width / crop side},
                          "faces": records,
                          "mean_landmarks": [[x, y] × 68] mean aligned shape, in crop sides},
                    "b": {...}}}

Conversion reads A's crop geometry from it, reenactment A's mean shape, `facejax evaluate
--held_out` the held-out share. This module reads and writes the record and nothing else: it
imports no training data code (nor TensorFlow).
"""

from __future__ import annotations

import os

import numpy as np

from facejax import files
from facejax.errors import UserError

FILE = "inference.json"
VERSION = 1


def _rerun(path: str, what: str) -> UserError:
    return UserError(f"{path}: {what}; rerun `facejax train` on this workdir with its "
                     "training data to record it")


def write(workdir: str, info: dict) -> None:
    files.write_json(os.path.join(workdir, FILE), info)


def read(workdir: str) -> dict:
    """The run's record.

    Raises:
      UserError: the record is missing or is not one (one line: how to write it again).
    """
    if not os.path.isdir(workdir):
        raise UserError(f"--model {workdir}: no such workdir")
    path = os.path.join(workdir, FILE)
    if not os.path.exists(path):
        raise _rerun(path, "missing (a run from before facejax recorded what inference needs)")
    info = files.read_json(path, "what inference needs of the run")
    if (not isinstance(info, dict) or info.get("version") != VERSION
            or not isinstance(info.get("identities"), dict)):
        raise _rerun(path, f"not a facejax inference record (version {VERSION})")
    return info


def _identity(info: dict, identity: str) -> dict:
    try:
        return info["identities"][identity]
    except KeyError:
        raise UserError(f"{FILE}: records no identity {identity!r}") from None


def coverage(info: dict, identity: str = "a") -> float:
    """Jaw width / side of the extracted crop that `identity`'s faces were trained on."""
    return float(_identity(info, identity)["extraction"]["coverage"])


def mean_landmarks(info: dict, identity: str, size: int) -> np.ndarray:
    """`identity`'s mean aligned landmark shape [68, 2] in a crop of `size` px."""
    pts = np.asarray(_identity(info, identity)["mean_landmarks"], np.float64)
    return (pts * size).astype(np.float32)


def held_out_fraction(info: dict, workdir: str) -> float:
    """The last share of each input's frames the run's data kept out of training.

    Raises:
      UserError: a record from before facejax recorded it.
    """
    if "held_out_fraction" not in info:
        raise _rerun(os.path.join(workdir, FILE), "records no held-out share (written by an "
                     "older facejax)")
    return float(info["held_out_fraction"])

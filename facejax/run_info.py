"""What a training workdir records so that inference needs no training data.

`WORKDIR/inference.json`, written at every training start (process 0):

    {"version": 1,
     "identities": {"a": {"folder": absolute path (for reference only),
                          "extraction": {"size": crop px, "coverage": jaw width / crop side},
                          "faces": records,
                          "mean_landmarks": [[x, y] × 68] mean aligned shape, in crop sides},
                    "b": {...}}}

Conversion reads A's crop geometry from it, reenactment A's mean shape. Workdirs from before it
existed fall back to their training data's folders (`from_data`), with a line saying so.
"""

from __future__ import annotations

import os

import numpy as np

from facejax import files
from facejax.data import extract as extract_lib
from facejax.data import source, tfds_faces
from facejax.errors import UserError, warn
from facejax.faces import align

FILE = "inference.json"
VERSION = 1


def _absolute(path: str) -> str:
    return path if "://" in path else os.path.abspath(path)


def describe(spec: str, flag: str = "--config.data") -> dict:
    """The record of one identity's extraction folders (a data setting: comma-separated
    folders or glob patterns).

    Raises:
      UserError: a folder unusable, or folders cropped with different coverages (one model
        cannot learn both framings).
    """
    folders = source.folders(spec, flag)
    total, sizes, coverages, faces = np.zeros((68, 2)), [], [], 0
    for folder in folders:
        size = tfds_faces.crop_size(folder)
        extraction = files.read_json(os.path.join(folder, extract_lib.CONFIG_FILE),
                                     "extraction settings")
        for r in tfds_faces.iter_records(folder):
            total += align.transform_points(np.asarray(r["affine"]),
                                            np.asarray(r["landmarks"])) / size
            faces += 1
        sizes.append(int(extraction["size"]))
        coverages.append(float(extraction["coverage"]))
    if len(set(coverages)) > 1:
        raise UserError(f"{flag}={spec}: its folders were extracted with different "
                        f"--coverage ({', '.join(f'{c:g}' for c in coverages)}); extract them "
                        "alike")
    return {"folder": ",".join(_absolute(f) for f in folders),
            "extraction": {"size": min(sizes), "coverage": coverages[0]},
            "faces": faces, "mean_landmarks": (total / faces).tolist()}


def from_data(config, identities) -> dict:
    """The record of a run's training data (its config.data folders)."""
    return {"version": VERSION,
            "identities": {n: describe(*source.setting(config.data, n)) for n in identities}}


def write(workdir: str, info: dict) -> None:
    files.write_json(os.path.join(workdir, FILE), info)


def read(workdir: str, config, identities) -> dict:
    """The run's record; for a workdir without one, built from its training data.

    Raises:
      UserError: unreadable record, or none and the training data is gone.
    """
    path = os.path.join(workdir, FILE)
    if os.path.exists(path):
        info = files.read_json(path, "what inference needs of the run")
        if not isinstance(info, dict) or info.get("version") != VERSION:
            raise UserError(f"{path}: not a facejax inference record (version {VERSION})")
        return info
    warn(f"{path} missing (a run from before facejax recorded it): reading the training "
         "data's folders instead")
    try:
        return from_data(config, identities)
    except UserError as e:
        raise UserError(f"{path}: missing, and the training data it would be built from is not "
                        f"readable ({e}); rerun facejax train on this workdir with its data "
                        "to record it")


def coverage(info: dict, identity: str = "a") -> float:
    """Jaw width / side of the extracted crop that `identity`'s faces were trained on."""
    return float(info["identities"][identity]["extraction"]["coverage"])


def mean_landmarks(info: dict, identity: str, size: int) -> np.ndarray:
    """`identity`'s mean aligned landmark shape [68, 2] in a crop of `size` px."""
    pts = np.asarray(info["identities"][identity]["mean_landmarks"], np.float64)
    return (pts * size).astype(np.float32)

"""The run record (facejax/run_info.py) of a run's training data: crop geometry, mean aligned
landmark shape and the held-out share, read from its extraction folders at training start."""

from __future__ import annotations

import os

import numpy as np

from facejax import files, run_info
from facejax.data import extract as extract_lib
from facejax.data import source, tfds_faces
from facejax.errors import UserError
from facejax.faces import align


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
    return {"version": run_info.VERSION, "held_out_fraction": tfds_faces.VAL_FRACTION,
            "identities": {n: describe(*source.setting(config.data, n)) for n in identities}}

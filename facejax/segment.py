"""A segmentation run's masks for every face of an extraction folder (`facejax xseg apply`).

Each finished input's crops, DIR/inputs/<key>/faces/NNNNNN.png, get their visible-face mask
as DIR/inputs/<key>/xseg/NNNNNN.png: one gray PNG of the crop's side, 255 on the face and 0 on
what hides it. Resumable: a mask already there is kept, so a stopped run goes on where it
stopped and a new face (a re-extracted input) is the only one computed. Each file is written
whole or not at all (images.write_image: a temporary name, then a rename). A crop that cannot
be read is named on one line and counted; the others go on.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from facejax import images, inference
from facejax.errors import UserError
from facejax.faces import mask_labels, video

INPUTS, FACES = "inputs", "faces"


@dataclasses.dataclass
class Counts:
    written: int = 0
    kept: int = 0      # already there (a resumed run)
    failed: int = 0    # crops that could not be read

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def mask_path(extraction_dir: str, key: str, crop_name: str) -> str:
    """Where the mask of inputs/<key>/faces/<crop_name> goes (crops are named NNNNNN.png by
    frame)."""
    return mask_labels.applied_path(extraction_dir, key, int(crop_name.removesuffix(".png")))


def pending(extraction_dir: str) -> tuple[list[tuple[str, str]], int]:
    """((input key, crop file name) of every crop without its mask, in order; the count of
    those that have one).

    Raises:
      UserError: the folder holds no finished input.
    """
    root = os.path.join(extraction_dir, INPUTS)
    keys = sorted(k for k in os.listdir(root)
                  if os.path.isdir(os.path.join(root, k, FACES))) if os.path.isdir(root) else []
    if not keys:
        raise UserError(f"--faces={extraction_dir}: no extracted faces (inputs/<key>/faces); "
                        "run facejax extract first")
    todo, kept = [], 0
    for key in keys:
        for name in sorted(os.listdir(os.path.join(root, key, FACES))):
            if not name.endswith(".png"):
                continue
            if os.path.isfile(mask_path(extraction_dir, key, name)):
                kept += 1
            else:
                todo.append((key, name))
    return todo, kept


def _read(extraction_dir: str, key: str, name: str, counts: Counts) -> np.ndarray | None:
    path = os.path.join(extraction_dir, INPUTS, key, FACES, name)
    try:
        return video.read_image(path)
    except UserError as e:
        print(f"error: {e}", flush=True)
        counts.failed += 1
        return None


def apply(model: str, extraction_dir: str, batch: int = 8, step: int | None = None,
          verbose: bool = True) -> Counts:
    """Writes the mask of every face of `extraction_dir` that has none yet (module docstring).

    Raises:
      UserError: `model` is not a segmentation run, or the folder holds no extracted faces.
    """
    todo, kept = pending(extraction_dir)
    counts = Counts(kept=kept)
    if not todo:
        return counts
    segment = inference.load_segmenter(model, batch, step)
    for start in range(0, len(todo), batch):
        chunk = todo[start:start + batch]
        crops = [(key, name, _read(extraction_dir, key, name, counts)) for key, name in chunk]
        crops = [c for c in crops if c[2] is not None]
        by_side: dict[int, list] = {}
        for c in crops:  # one input's crops share a side; folders may mix them
            by_side.setdefault(c[2].shape[0], []).append(c)
        for group in by_side.values():
            masks = segment(np.stack([c[2] for c in group]))
            for (key, name, _), mask in zip(group, masks):
                path = mask_path(extraction_dir, key, name)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                images.write_image(path, mask)
                counts.written += 1
        if verbose:
            done = min(start + batch, len(todo))
            print(f"xseg apply: {done}/{len(todo)} faces", flush=True)
    return counts

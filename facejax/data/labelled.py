"""The hand-labelled faces of extraction folders as a training source: each face of a folder's
masks.jsonl (faces/mask_labels.py), its crop read from inputs/<key>/faces and its label
rasterised, both at the load size.

A `LabelledSource` answers what the input pipeline asks of a `source.FaceSource` (`take`, the
number of faces, weights), with "mask" the label (255 inside, 0 outside) instead of the
landmark hull. A few dozen labelled faces are what a segmentation model is trained on
(DeepFaceLab's XSeg), so they are read once and held in memory. Every process reads them all,
and the training and held-out batches draw from the same faces: there are too few to hold some
out, as DeepFaceLab holds none.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from facejax.errors import UserError
from facejax.faces import mask_labels, video

FIELDS = ("image", "mask")


def read_labelled(folder: str, size: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(face ids, crops uint8 [n, size, size, 3] RGB, labels uint8 [n, size, size] of 0/255)
    of a folder's labelled faces, in face-id order.

    Raises:
      UserError: no masks.jsonl or no face in it, a labelled face whose crop is missing or
        unreadable, or the file's own errors (mask_labels.read).
    """
    labels = mask_labels.read(folder)
    if not labels:
        raise UserError(f"{mask_labels.path_of(folder)}: no labelled faces; label some faces "
                        "(the studio's mask page, or by hand) or train the generic model "
                        "(--config=xseg:generic)")
    ids = sorted(labels)
    crops = np.empty((len(ids), size, size, 3), np.uint8)
    masks = np.empty((len(ids), size, size), np.uint8)
    for i, face in enumerate(ids):
        path = mask_labels.crop_path(folder, face)
        if not os.path.isfile(path):
            raise UserError(f"{mask_labels.path_of(folder)}: face {face} is labelled but its "
                            f"crop {path} is missing")
        crop = video.read_image(path)
        if crop.shape[0] != size:
            crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
        crops[i] = crop
        masks[i] = mask_labels.rasterise(labels[face], size) * 255
    return ids, crops, masks


class LabelledSource:
    """The labelled faces of `folders` at `size` (see the module docstring)."""

    def __init__(self, folders, size: int):
        self.size, self.weights, self.parts, self.identity = size, None, [], ""
        read = [read_labelled(folder, size) for folder in folders]
        self.ids = [f"{folder}:{face}" for folder, (ids, _, _) in zip(folders, read)
                    for face in ids]
        self.image = np.concatenate([crops for _, crops, _ in read])
        self.mask = np.concatenate([masks for _, _, masks in read])
        self.landmarks = np.zeros((len(self.ids), 68, 2), np.float32)  # not drawn by yaw

    def __len__(self) -> int:
        return len(self.ids)

    def part_sizes(self) -> list[int]:
        return [len(self)]

    def take(self, idx: np.ndarray, fields) -> dict:
        """The faces at `idx`: "image" uint8 [n, S, S, 3], "mask" (the label) uint8 [n, S, S]."""
        unknown = [f for f in fields if f not in FIELDS]
        if unknown:
            raise KeyError(f"labelled faces hold no field {unknown[0]!r}")
        idx = np.asarray(idx)
        return {f: getattr(self, f)[idx] for f in fields}

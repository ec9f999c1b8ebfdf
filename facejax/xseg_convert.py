"""Conversion's XSeg masks (`facejax convert --mask=xseg|xseg_x_learned --xseg_model=RUN`):
DeepFaceLab's merger modes XSeg and XSeg-prd*learned.

The mask is a segmentation run's (facejax/tasks/xseg.py) mask of the face being replaced: the
frame's own face, so a hand or a microphone in front of it is left out of the blend mask and
stays in front of the swapped face. It is computed on the very crop conversion cuts for the
swap model (convert.face_crop), resized to the segmentation run's side and its mask back
(inference.load_segmenter). So the mask lies on the swap crop's pixel grid, as the learned mask
does, and goes into the frame through the same path (compose.paste: crop_mask_of, uncrop_mask
bicubic as a soft mask, feathering). The swap crop's framing is the swap model's (its face
type or region), which may be tighter or wider than the extraction crops the XSeg run was
trained on; XSeg's training warps (scale and shift) cover such differences, and cutting a
second crop in the XSeg run's framing would need a second warp of the mask into the swap
crop, which blurs its edge for no gain when the two framings agree (as they do for runs
trained on the same extraction folders).

What hides the face is judged on the input frame, never on the swapped face: the model's
output has no occluder to find.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from facejax import inference
from facejax.errors import UserError
from facejax.faces import compose

# uint8 crops [n, S, S, 3] -> float32 masks [n, S, S] in [0, 1]
Segmenter = Callable[[np.ndarray], np.ndarray]


def check(mask: str, xseg_model: str) -> None:
    """Raises UserError (one line) when `mask` is an XSeg mode and no run is named."""
    if mask in compose.XSEG and not xseg_model:
        raise UserError(f"--mask={mask} needs --xseg_model=RUN: a trained segmentation run "
                        "(facejax train --config=xseg)")


def load(mask: str, xseg_model: str, batch: int, step: int | None = None) -> Segmenter | None:
    """The segmenter of run `xseg_model` for conversion with `mask` (its latest or given
    checkpoint, one compiled batch of `batch` crops); None when `mask` uses no XSeg mask.

    Raises:
      UserError: no run named for an XSeg mask, or `xseg_model` is not a segmentation run or
        cannot be loaded (named as --xseg_model).
    """
    check(mask, xseg_model)
    if mask not in compose.XSEG:
        return None
    segment = inference.load_segmenter(xseg_model, batch, step, flag="--xseg_model")

    def masks(crops: np.ndarray) -> np.ndarray:
        return segment(crops).astype(np.float32) / np.float32(255)
    return masks


def crop_masks(segment: Segmenter | None, crops: list[np.ndarray]) -> list:
    """The segmenter's mask of each crop (float32 [S, S] in [0, 1]), or None each when there is
    no segmenter (a mask mode without XSeg)."""
    if segment is None:
        return [None] * len(crops)
    return list(segment(np.stack(crops)))

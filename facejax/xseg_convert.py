"""Conversion's XSeg masks (`facejax convert --mask=xseg|xseg_x_learned --xseg_model=RUN`):
DeepFaceLab's merger modes XSeg and XSeg-prd*learned.

The mask is a segmentation run's (facejax/tasks/xseg.py) mask of the face being replaced: the
frame's own face, so a hand or a microphone in front of it is left out of the blend mask and
stays in front of the swapped face. It is computed on a crop of the frame in the swap crop's
framing (convert.face_crop's affine, scaled) at the segmentation run's side, or the swap's
where that is larger, so the mask's edge is as fine as the segmentation model can draw it,
not the swap model's grid (a 64 px swap crop of a face 160 px wide in the frame would put its
edge on a 2.5-pixel grid; DeepFaceLab's merger also cuts XSeg's own crop). The mask goes into
the frame from its own grid (compose.paste: uncrop_mask bicubic as a soft mask, feathering),
and onto the swap crop's grid for colour matching. The framing is the swap model's (its face
type or region), which may be tighter or wider than the extraction crops the XSeg run was
trained on; XSeg's training warps (scale and shift) cover such differences, and the same
framing keeps the XSeg mask and the swap's learned mask on one square.

What hides the face is judged on the input frame, never on the swapped face: the model's
output has no occluder to find.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from facejax import inference
from facejax.errors import UserError
from facejax.faces import align, compose


@dataclasses.dataclass(frozen=True)
class Segmenter:
    """A segmentation run's masks: `masks` maps uint8 crops [n, L, L, 3] to float32 masks
    [n, L, L] in [0, 1]; `side` is the side the run was trained at."""
    masks: Callable[[np.ndarray], np.ndarray]
    side: int


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
    return Segmenter(masks, segment.side)


def crop_masks(segment: Segmenter | None, frames: list[np.ndarray], affines: list[np.ndarray],
               size: int) -> list:
    """The segmenter's mask of each frame's face (float32 [L, L] in [0, 1]) on the crop that
    frame -> crop affine (of a size×size swap crop) frames, cut at L = the larger of the
    segmenter's side and `size`; None each when there is no segmenter (a mask mode without
    XSeg). The framings are linear in the side, so that crop's affine is the swap's times
    L / size (compose.paste takes the mask back the same way)."""
    if segment is None:
        return [None] * len(frames)
    side = max(segment.side, size)
    crops = [align.crop(frame, np.asarray(affine, np.float64) * (side / size), side)
             for frame, affine in zip(frames, affines)]
    return list(segment.masks(np.stack(crops)))

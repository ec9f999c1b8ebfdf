"""Masks and drawings from 68 landmarks: face hull, face parts, and the face2face input image."""

from __future__ import annotations

import cv2
import numpy as np

from facejax.faces import landmarks as lm
from facejax.faces.parts import (INNER_LIPS, JAW, LEFT_BROW, LEFT_EYE, NOSE_BRIDGE, OUTER_LIPS,
                                 PART_NAMES, PART_POINTS, RIGHT_BROW, RIGHT_EYE)

# Contours drawn for the face2face input: (indices, closed, RGB colour). Distinct colours per part
# tell the generator which line is which.
CONTOURS = (
    (JAW, False, (255, 255, 255)),
    (RIGHT_BROW, False, (255, 128, 0)),
    (LEFT_BROW, False, (255, 128, 0)),
    (NOSE_BRIDGE, False, (0, 255, 0)),
    (range(30, 36), True, (0, 255, 0)),
    (RIGHT_EYE, True, (0, 128, 255)),
    (LEFT_EYE, True, (0, 128, 255)),
    (OUTER_LIPS, True, (255, 0, 128)),
    (INNER_LIPS, True, (255, 0, 255)),
)
_SHIFT = 4  # sub-pixel precision bits for OpenCV drawing


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points) * (1 << _SHIFT)).astype(np.int32)


def face_hull(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """uint8 [H, W] mask, 255 inside the convex hull of the 68 points (brows to jaw)."""
    mask = np.zeros(shape[:2], np.uint8)
    hull = cv2.convexHull(_fixed(landmarks))
    cv2.fillConvexPoly(mask, hull, 255, cv2.LINE_AA, _SHIFT)
    return mask


def part_masks(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """uint8 [H, W, 4] masks of eyes, brows, nose and mouth (channel order of PART_NAMES).

    Each part is the convex hull of its points, grown by a margin proportional to the face size
    so thin parts (brows, closed eyes) still cover their pixels.
    """
    h, w = shape[:2]
    margin = max(1, int(round(0.04 * lm.eye_distance(landmarks))))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
    out = np.zeros((h, w, len(PART_NAMES)), np.uint8)
    for c, name in enumerate(PART_NAMES):
        m = np.zeros((h, w), np.uint8)
        for idx in PART_POINTS[name]:
            cv2.fillConvexPoly(m, cv2.convexHull(_fixed(landmarks[list(idx)])), 255, cv2.LINE_AA,
                               _SHIFT)
        out[:, :, c] = cv2.dilate(m, kernel)
    return out


def feather(mask: np.ndarray, erode: int = 0, blur: int = 0) -> np.ndarray:
    """Grows (erode < 0) or shrinks (erode > 0) a mask by pixels, then feathers its edge.

    Returns float32 in [0, 1].
    """
    m = mask.astype(np.uint8)
    if erode:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(erode) + 1, 2 * abs(erode) + 1))
        m = cv2.erode(m, k) if erode > 0 else cv2.dilate(m, k)
    out = m.astype(np.float32) / 255.0
    if blur > 0:
        k = 2 * blur + 1
        out = cv2.GaussianBlur(out, (k, k), 0)
    return out


def landmark_image(landmarks: np.ndarray, size: int, thickness: int | None = None) -> np.ndarray:
    """The face2face input: landmark contours drawn on black, uint8 [size, size, 3] RGB."""
    image = np.zeros((size, size, 3), np.uint8)
    t = thickness or max(1, int(round(size / 128)))
    for idx, closed, colour in CONTOURS:
        pts = _fixed(landmarks[list(idx)]).reshape(-1, 1, 2)
        cv2.polylines(image, [pts], closed, colour, t, cv2.LINE_AA, _SHIFT)
    return image

"""Masks and drawings from 68 landmarks: the face hull (brows raised as DeepFaceLab raises them),
face parts, the eyes/mouth priority mask, and the face2face input image."""

from __future__ import annotations

import cv2
import numpy as np

from facejax.faces import landmarks as lm
from facejax.faces.parts import (EYES_MOUTH_PARTS, FACE_HULL_PARTS, INNER_LIPS, JAW, LEFT_BROW,
                                 LEFT_EYE, NOSE_BRIDGE, OUTER_LIPS, PART_NAMES, PART_POINTS,
                                 RIGHT_BROW, RIGHT_EYE)

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


def _fill_hull(mask: np.ndarray, points: np.ndarray) -> None:
    """Fills the convex hull of `points` into the uint8 `mask` with 255, edges anti-aliased."""
    cv2.fillConvexPoly(mask, cv2.convexHull(_fixed(points)), 255, cv2.LINE_AA, _SHIFT)


# Each brow point moves away from its partner below it (DeepFaceLab's `expand_eyebrows`): the
# inner brow points from the eye points beneath them, the outer ends from a point a quarter of the
# way from the eye's outer corner to the jaw's top.
_BROW_PARTNERS = (36, 37, 38, 39, 42, 43, 44, 45)


def raised_brows(landmarks: np.ndarray, mod: float = 1.0) -> np.ndarray:
    """A float64 copy of the 68 points with the brows (17..26) raised as DeepFaceLab raises them.

    Brow point b moves to b + mod·(b − partner)/2: points 18..25 pair with the eye points 36..39
    and 42..45; 17 pairs with 3/4·p36 + 1/4·p0, and 26 with 3/4·p45 + 1/4·p16. DeepFaceLab
    truncates the points to integers before and after; this keeps them float. mod = 0 returns
    the points unchanged.
    """
    points = np.array(landmarks, np.float64)
    partners = np.concatenate([
        (0.75 * points[36] + 0.25 * points[0])[None],
        points[list(_BROW_PARTNERS)],
        (0.75 * points[45] + 0.25 * points[16])[None]])
    brows = points[17:27]
    points[17:27] = brows + mod * 0.5 * (brows - partners)
    return points


def face_hull(landmarks: np.ndarray, shape: tuple[int, int],
              raise_brows: float = 1.0) -> np.ndarray:
    """uint8 [H, W] mask, 255 inside the face: DeepFaceLab's hull (the union of the convex hulls
    of FACE_HULL_PARTS) over the points with the brows raised by `raise_brows`
    (raised_brows's mod). Edges are anti-aliased at sub-pixel precision. raise_brows = 0 bounds
    the face at the brows the landmarks give."""
    points = raised_brows(landmarks, raise_brows) if raise_brows else np.asarray(landmarks)
    mask = np.zeros(shape[:2], np.uint8)
    for idx in FACE_HULL_PARTS:
        # Anti-aliased filling blends into what is there, so overlapping parts leave no seam.
        _fill_hull(mask, points[list(idx)])
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
            _fill_hull(m, landmarks[list(idx)])
        out[:, :, c] = cv2.dilate(m, kernel)
    return out


# DeepFaceLab's eyes/mouth mask in units of the mean face (align.MEAN_FACE): it dilates by h//32
# and blurs with kernel h//16 (made odd) on its default faceset, a whole-face crop of h = 512
# px, 2.190113 MEAN_FACE units wide. These are its pixels over that crop's pixels per unit.
EM_DILATE_MF = 0.0684       # dilation diameter
EM_SIGMA_MF = 0.02267       # Gaussian sigma, OpenCV's rule for DeepFaceLab's kernel


def eyes_mouth_params(px_per_mf: float) -> tuple[int, int, float]:
    """(dilation diameter px, Gaussian kernel size px, sigma px) of the eyes/mouth mask for a
    crop of `px_per_mf` pixels per MEAN_FACE unit: DeepFaceLab's proportions at any scale."""
    dilate = max(1, int(round(EM_DILATE_MF * px_per_mf)))
    return dilate, 2 * dilate + 1, EM_SIGMA_MF * px_per_mf


def blurred_hulls(landmarks: np.ndarray, shape: tuple[int, int], groups, dilate: int,
                  ksize: int, sigma: float) -> np.ndarray:
    """float32 [H, W]: the convex hulls of the point `groups` (anti-aliased), dilated with an
    ellipse `dilate` px across, then Gaussian-blurred (kernel `ksize`, odd; sigma 0 takes
    OpenCV's rule from the kernel size, as DeepFaceLab does)."""
    mask = np.zeros(shape[:2], np.uint8)
    for idx in groups:
        _fill_hull(mask, np.asarray(landmarks)[list(idx)])
    out = mask.astype(np.float32) / np.float32(255)
    if dilate > 1:
        out = cv2.dilate(out, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (dilate, dilate)))
    return cv2.GaussianBlur(out, (ksize, ksize), sigma)


def eyes_mouth_mask(landmarks: np.ndarray, shape: tuple[int, int], px_per_mf: float,
                    dilate: int | None = None, ksize: int | None = None,
                    sigma: float | None = None) -> np.ndarray:
    """float32 [H, W] in [0, 1]: DeepFaceLab's eyes/mouth priority mask.

    The hulls of the eyes (36..41, 42..47) and of the inner lips (60..67), each set dilated and
    blurred (blurred_hulls), summed, clipped to [0, 1] and cut to the face hull (face_hull with
    the brows raised, nonzero). `px_per_mf`: the crop's pixels per MEAN_FACE unit (crop side px
    over crop side in MEAN_FACE units); `dilate`, `ksize`, `sigma` override the
    eyes_mouth_params it gives (DeepFaceLab's own pixel values: 16, 33, 0 at 512 px).

    Not normalised: DeepFaceLab divides each face's mask by its maximum after resampling it into
    the training view, so the caller does that, on the resampled mask, where the maximum is
    nonzero.
    """
    d, k, s = eyes_mouth_params(px_per_mf)
    d, k, s = (d if dilate is None else dilate, k if ksize is None else ksize,
               s if sigma is None else sigma)
    eyes, mouth = (blurred_hulls(landmarks, shape, groups, d, k, s)
                   for groups in EYES_MOUTH_PARTS)
    em = np.clip(eyes + mouth, 0, 1)
    em[face_hull(landmarks, shape) == 0] = 0
    return em


def feather(mask: np.ndarray, erode: int = 0, blur: int = 0) -> np.ndarray:
    """Grows (erode < 0) or shrinks (erode > 0) a mask by pixels, then feathers its edge.

    `mask`: uint8 (0..255) or float in [0, 1]. Returns float32 in [0, 1].
    """
    out = (mask.astype(np.float32) / np.float32(255) if mask.dtype == np.uint8
           else np.array(mask, np.float32))
    if erode:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(erode) + 1, 2 * abs(erode) + 1))
        out = cv2.erode(out, k) if erode > 0 else cv2.dilate(out, k)
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

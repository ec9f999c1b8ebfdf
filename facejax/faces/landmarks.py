"""dlib's 68-point landmark predictor and temporal smoothing (the scheme's point groups:
faces/parts.py)."""

from __future__ import annotations

import cv2
import dlib
import numpy as np
from OneEuroFilter import OneEuroFilter

from facejax.faces.detect import Box
from facejax.faces.model_files import LANDMARKS_68, model_path

# The point each point becomes when the face is mirrored left-right.
MIRROR = np.array(
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46] + [39, 38, 37, 36, 41, 40] + [54, 53, 52, 51, 50, 49, 48]
    + [59, 58, 57, 56, 55] + [64, 63, 62, 61, 60] + [67, 66, 65])


# dlib's 68-point predictor was trained from the boxes of its frontal HOG detector. Re-feeding
# (faceswap's idea) predicts the landmarks again from a box made from their own first
# prediction, in that convention, and averages the predictions from copies of it: the box
# then follows the face, not the detector's frame-to-frame wobble, and the trees' noise
# averages out. The box is placed by the inner points (brows, eyes, nose, mouth: 17-67), whose
# centre and spread follow a turning face where the jaw's extent does not: on HOG detections
# in 195 frames of nine clips (GRID, LivePortrait driving videos), a square of 3.12 spreads
# (RMS distance of the inner points from their centre), centred 0.022 and 0.050 spreads right
# of and below that centre. Where the re-fed points disagree with the first ones by more than
# REFEED_AGREE eye distances (a face the predictor reads differently from another box), the
# first ones stand.
_BOX_SIDE, _BOX_DX, _BOX_DY = 3.12, 0.022, 0.050
# One copy (two predictions a face): more copies steady the points a little more, but cost
# extraction time that the temporal smoothing below spends better (measured: docs/benchmarks.md,
# "Landmark re-feeding" and "Faces found, landmarks smoothed").
_REFEED_SCALES = (1.0,)
REFEED_AGREE = 0.05

# The One Euro filter's speed coefficient, per (eye distance per second): with it the points
# follow a moving head with less lag than a fixed average as steady (measured on the driving
# videos: docs/benchmarks.md, "Faces found, landmarks smoothed").
SMOOTH_BETA = 10.0


def predictor_box(landmarks: np.ndarray, scale: float = 1.0) -> Box:
    """The box dlib's HOG detector would give the face of these landmarks, scaled by `scale`
    about its centre."""
    inner = landmarks[17:]
    centre = inner.mean(0)
    spread = float(np.sqrt(((inner - centre) ** 2).sum(1).mean()))
    side = _BOX_SIDE * spread * scale
    cx = centre[0] + _BOX_DX * spread
    cy = centre[1] + _BOX_DY * spread
    return Box(cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


class LandmarkPredictor:
    """68-point landmarks from dlib's ensemble of regression trees, re-fed (see above)."""

    def __init__(self, refeed: bool = True):
        self._predictor = dlib.shape_predictor(model_path(LANDMARKS_68))
        self.refeed = refeed

    def _predict(self, rgb: np.ndarray, box: Box) -> np.ndarray:
        shape = self._predictor(rgb, box.to_dlib())
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    def _refed(self, rgb: np.ndarray, box: Box) -> tuple[np.ndarray, np.ndarray, float]:
        """The first prediction, the re-fed one, and how far apart (eye distances)."""
        first = self._predict(rgb, box)
        again = np.mean([self._predict(rgb, predictor_box(first, s)) for s in _REFEED_SCALES],
                        axis=0)
        apart = np.linalg.norm(again - first, axis=-1).mean() / max(eye_distance(first), 1.0)
        return first, again, float(apart)

    def __call__(self, rgb: np.ndarray, box: Box) -> np.ndarray:
        """Returns float32 [68, 2] (x, y) landmarks in the pixel coordinates of `rgb`: from
        `box`, then (refeed) re-fed from their own box where that agrees."""
        if not self.refeed:
            return self._predict(rgb, box)
        first, again, apart = self._refed(rgb, box)
        return again if apart < REFEED_AGREE else first

    def verified(self, rgb: np.ndarray, box: Box) -> np.ndarray | None:
        """The re-fed landmarks of a box a detector is unsure of, or None where they are not a
        face's: the predictor reads a face alike from the box and from the face's own box, and
        reads noise differently each time."""
        _, again, apart = self._refed(rgb, box)
        return again.astype(np.float32) if apart < REFEED_AGREE else None


def box_of(landmarks: np.ndarray) -> Box:
    """The bounding box of a landmark set."""
    lo, hi = landmarks.min(0), landmarks.max(0)
    return Box(float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))


def eye_distance(landmarks: np.ndarray) -> float:
    """Distance between the outer eye corners (points 36 and 45): the usual normaliser."""
    return float(np.linalg.norm(landmarks[36] - landmarks[45]))


def normalised_mean_error(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean point-to-point error divided by the outer-eye-corner distance of `truth`."""
    return float(np.linalg.norm(pred - truth, axis=-1).mean() / eye_distance(truth))


class LandmarkSmoother:
    """Temporal smoothing of a face's landmarks over consecutive video frames: the One Euro
    filter (Casiez, Roussel and Vogel, CHI 2012; the authors' `OneEuroFilter` package), one per
    coordinate.

    The filter's cutoff rises with the speed of each point: a still face is smoothed with
    `min_cutoff` (Hz; lower is steadier), a moving one is followed closely, so the landmarks do
    not lag real motion as a fixed average does. Points are filtered in units of the face's eye
    distance at the start of the run, so `beta` means the same for a small or a large face.
    `reset()` on a gap (no face, a new clip).
    """

    def __init__(self, fps: float, min_cutoff: float = 1.0, beta: float = SMOOTH_BETA):
        if not fps > 0:
            raise ValueError(f"smoothing needs the frame rate, got {fps}")
        if not min_cutoff > 0:
            raise ValueError(f"smoothing cutoff must be positive, got {min_cutoff} Hz")
        self.fps, self.min_cutoff, self.beta = float(fps), float(min_cutoff), float(beta)
        self._filters, self._scale = None, 1.0

    def reset(self) -> None:
        self._filters = None

    def __call__(self, landmarks: np.ndarray) -> np.ndarray:
        if self._filters is None:
            # New filters rather than OneEuroFilter.reset(): that keeps the last filtered value
            # and would start the next run with a false speed.
            self._scale = max(eye_distance(landmarks), 1.0)
            self._filters = [OneEuroFilter(self.fps, self.min_cutoff, self.beta)
                             for _ in range(landmarks.size)]
        values = np.asarray(landmarks, np.float64).ravel() / self._scale
        out = [f(float(v)) for f, v in zip(self._filters, values)]
        return (np.array(out) * self._scale).reshape(landmarks.shape).astype(np.float32)


def jitter(track: np.ndarray) -> float:
    """Mean frame-to-frame landmark acceleration over a [T, 68, 2] track, in eye distances.

    Second differences measure shake while ignoring smooth motion.
    """
    if len(track) < 3:
        return 0.0
    acc = track[2:] - 2 * track[1:-1] + track[:-2]
    scale = np.array([eye_distance(t) for t in track[1:-1]])
    return float((np.linalg.norm(acc, axis=-1).mean(-1) / np.maximum(scale, 1.0)).mean())


# A generic head, in camera axes (x right, y down, z away from the camera; millimetre-like
# units): nose tip, chin, outer eye corners (36, 45), mouth corners (48, 54). Anthropometric
# averages as widely used for head pose from six landmarks; only the proportions matter.
_HEAD_POINTS = (30, 8, 36, 45, 48, 54)
_HEAD_MODEL = np.array([(0, 0, 0), (0, 330, 65), (-225, -170, 135), (225, -170, 135),
                        (-150, 150, 125), (150, 150, 125)], np.float64)


def head_yaw(landmarks: np.ndarray, size: float) -> np.ndarray:
    """Yaw in radians of faces from their 68 landmarks [N, 68, 2] in a `size` px image (a
    pinhole camera of focal length `size`): the rotation about the vertical axis of the generic
    head fitted to six points (cv2.solvePnP). 0 is frontal; a mirrored face has the opposite
    sign. Give landmarks of aligned crops: a face far from the image centre is seen at an
    angle and reads as turned. [N] float32."""
    return head_pose(landmarks, size)[:, 0]


def head_pose(landmarks: np.ndarray, size: float) -> np.ndarray:
    """[N, 2] float32: (yaw, pitch) in radians of the generic head fitted as in head_yaw; pitch
    is the rotation about the horizontal axis: 0 level, positive where it takes the chin away
    from the camera (the head bowed), negative with the head raised."""
    camera = np.array([[size, 0, size / 2], [0, size, size / 2], [0, 0, 1]], np.float64)
    out = np.zeros((len(landmarks), 2), np.float32)
    for i, pts in enumerate(np.asarray(landmarks, np.float64)):
        ok, rvec, _ = cv2.solvePnP(_HEAD_MODEL, pts[list(_HEAD_POINTS)], camera, None,
                                   flags=cv2.SOLVEPNP_ITERATIVE)
        if ok:
            rot, _ = cv2.Rodrigues(rvec)
            out[i, 0] = np.arcsin(np.clip(-rot[2, 0], -1.0, 1.0))
            out[i, 1] = np.arctan2(rot[2, 1], rot[2, 2])
    return out

"""dlib's 68-point landmark predictor, landmark groups, and temporal smoothing."""

from __future__ import annotations

import dlib
import numpy as np

from facejax.faces.detect import Box
from facejax.faces.model_files import LANDMARKS_68, model_path

# Index ranges of the 68-point (iBUG 300-W) scheme.
JAW = range(0, 17)
RIGHT_BROW = range(17, 22)   # the subject's right: image left
LEFT_BROW = range(22, 27)
NOSE_BRIDGE = range(27, 31)
NOSE_BOTTOM = range(31, 36)
RIGHT_EYE = range(36, 42)
LEFT_EYE = range(42, 48)
OUTER_LIPS = range(48, 60)
INNER_LIPS = range(60, 68)

# The point each point becomes when the face is mirrored left-right.
MIRROR = np.array(
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46] + [39, 38, 37, 36, 41, 40] + [54, 53, 52, 51, 50, 49, 48]
    + [59, 58, 57, 56, 55] + [64, 63, 62, 61, 60] + [67, 66, 65])


class LandmarkPredictor:
    """68-point landmarks from dlib's ensemble of regression trees."""

    def __init__(self):
        self._predictor = dlib.shape_predictor(model_path(LANDMARKS_68))

    def __call__(self, rgb: np.ndarray, box: Box) -> np.ndarray:
        """Returns float32 [68, 2] (x, y) landmarks in the pixel coordinates of `rgb`."""
        shape = self._predictor(rgb, box.to_dlib())
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    def shape(self, rgb: np.ndarray, box: Box):
        """The raw dlib shape (for the face-recognition model)."""
        return self._predictor(rgb, box.to_dlib())


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
    """Exponential smoothing of landmarks over consecutive frames.

    `strength` in [0, 1): 0 is off; higher values follow new positions more slowly. The filter
    adapts: a point that moves more than `snap` eye-distances is taken as is (a real movement or
    a new face), so smoothing removes jitter without dragging fast motion. `reset()` on a gap.
    """

    def __init__(self, strength: float = 0.5, snap: float = 0.15):
        if not 0.0 <= strength < 1.0:
            raise ValueError(f"smoothing strength must be in [0, 1), got {strength}")
        self.strength, self.snap = strength, snap
        self._state = None

    def reset(self) -> None:
        self._state = None

    def __call__(self, landmarks: np.ndarray) -> np.ndarray:
        if self.strength == 0.0 or self._state is None:
            self._state = landmarks.astype(np.float32)
            return self._state.copy()
        jump = np.linalg.norm(landmarks - self._state, axis=-1).mean() / max(
            eye_distance(landmarks), 1.0)
        if jump > self.snap:
            self._state = landmarks.astype(np.float32)
        else:
            self._state = (self.strength * self._state
                           + (1 - self.strength) * landmarks).astype(np.float32)
        return self._state.copy()


def jitter(track: np.ndarray) -> float:
    """Mean frame-to-frame landmark acceleration over a [T, 68, 2] track, in eye distances.

    Second differences measure shake while ignoring smooth motion.
    """
    if len(track) < 3:
        return 0.0
    acc = track[2:] - 2 * track[1:-1] + track[:-2]
    scale = np.array([eye_distance(t) for t in track[1:-1]])
    return float((np.linalg.norm(acc, axis=-1).mean(-1) / np.maximum(scale, 1.0)).mean())

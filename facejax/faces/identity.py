"""Face identity: dlib's face-recognition ResNet (128-D embeddings) and the target filter."""

from __future__ import annotations

import dlib
import numpy as np

from facejax.errors import UserError
from facejax.faces.model_files import RECOGNITION, model_path

# dlib's documented decision threshold: embeddings of one person lie closer than this.
SAME_PERSON = 0.6


class FaceEmbedder:
    """128-D face descriptors (dlib_face_recognition_resnet_model_v1)."""

    def __init__(self):
        self._net = dlib.face_recognition_model_v1(model_path(RECOGNITION))

    def __call__(self, rgb: np.ndarray, shape) -> np.ndarray:
        """Embeds the face with dlib landmark `shape` (a full_object_detection) in `rgb`."""
        return np.array(self._net.compute_face_descriptor(rgb, shape), dtype=np.float32)

    def from_landmarks(self, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """Embeds the face described by [68, 2] landmarks."""
        pts = [dlib.point(int(round(x)), int(round(y))) for x, y in landmarks]
        lo, hi = landmarks.min(0), landmarks.max(0)
        rect = dlib.rectangle(int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1]))
        return self(rgb, dlib.full_object_detection(rect, pts))


def distances(embedding: np.ndarray, references: np.ndarray) -> np.ndarray:
    """Euclidean distances of one embedding [128] to references [N, 128]."""
    return np.linalg.norm(references - embedding[None], axis=-1)


class TargetFilter:
    """Keeps the face of one person, given reference embeddings of that person."""

    def __init__(self, references: np.ndarray, threshold: float = SAME_PERSON):
        if len(references) == 0:
            raise UserError("--reference: no face found in the reference images")
        self.references, self.threshold = np.asarray(references), threshold

    def distance(self, embedding: np.ndarray) -> float:
        """The distance to the closest reference embedding."""
        return float(distances(embedding, self.references).min())

    def is_target(self, embedding: np.ndarray) -> bool:
        return self.distance(embedding) < self.threshold

"""Finding the face to keep in each frame: detect (or track), landmarks, size and identity checks."""

from __future__ import annotations

import dataclasses

import numpy as np

from facejax.faces import detect as detect_lib
from facejax.faces import landmarks as lm
from facejax.faces.identity import FaceEmbedder, TargetFilter

# Reasons a frame yields no face record (the keys of summary.json's "skipped").
NO_FACE, TOO_SMALL, NOT_TARGET, UNREADABLE = "no_face", "too_small", "not_target", "unreadable"
SKIP_REASONS = (NO_FACE, TOO_SMALL, NOT_TARGET, UNREADABLE)


@dataclasses.dataclass
class Face:
    box: detect_lib.Box
    landmarks: np.ndarray  # float32 [68, 2], frame pixels
    distance: float | None = None  # to the target's references, when given


class FaceFinder:
    """Finds one face per frame.

    With `track=True`, consecutive frames look first in a region around the previous face (a
    cheap detection on a small crop) and fall back to the whole frame when the face is lost, so a
    video costs little more than its landmark prediction. Several faces: the one matching
    `target` when reference embeddings are given, else the largest.
    """

    def __init__(self, detector: detect_lib.Detector, min_face: float = 40,
                 target: TargetFilter | None = None, embedder: FaceEmbedder | None = None,
                 track: bool = True, confirm_every: int = 1):
        self.detector = detector
        # With confirm_every = n > 1, a tracked face is re-detected only every n-th frame; the
        # frames between reuse the last detection box for the landmark predictor (conversion
        # speed). Never with a target filter: identity is checked on every frame.
        self.confirm_every = max(1, confirm_every)
        self._since = 0
        self.predictor = lm.LandmarkPredictor()
        self.min_face, self.target, self.track = min_face, target, track
        self.embedder = embedder if embedder is not None or target is None else FaceEmbedder()
        # Region tracking uses HOG on a small window, whatever detector finds faces in full frames.
        self._roi_detector = detect_lib.HogDetector(max_side=0, max_upsample=0)
        self._previous: detect_lib.Box | None = None

    def reset(self) -> None:
        """Forgets the previous face (call between unrelated images or videos)."""
        self._previous = None
        self._since = 0

    def _track(self, rgb: np.ndarray) -> list[detect_lib.Box]:
        prev = self._previous
        cx, cy = (prev.left + prev.right) / 2, (prev.top + prev.bottom) / 2
        half = 0.9 * max(prev.width, prev.height)
        h, w = rgb.shape[:2]
        x0, y0 = int(max(0, cx - half)), int(max(0, cy - half))
        x1, y1 = int(min(w, cx + half)), int(min(h, cy + half))
        if x1 - x0 < 16 or y1 - y0 < 16:
            return []
        # HOG finds faces of 80 px and up: scale the window so the face is about 100 px.
        scale = min(1.0, 100.0 / max(prev.width, 1.0))
        window = rgb[y0:y1, x0:x1]
        if scale < 1.0:
            window, _ = detect_lib.downscale(window, int(round(max(window.shape[:2]) * scale)))
        boxes = self._roi_detector(window)
        sx = (x1 - x0) / window.shape[1]
        return [detect_lib.Box(b.left * sx + x0, b.top * sx + y0, b.right * sx + x0,
                               b.bottom * sx + y0, b.score) for b in boxes]

    def __call__(self, rgb: np.ndarray) -> tuple[Face | None, str | None]:
        """Returns (face, None), or (None, reason) with reason one of SKIP_REASONS."""
        if (self.track and self._previous is not None and self.target is None
                and self._since + 1 < self.confirm_every):
            self._since += 1
            return Face(self._previous, self.predictor(rgb, self._previous)), None
        self._since = 0
        boxes = self._track(rgb) if (self.track and self._previous is not None) else []
        if not boxes:
            boxes = self.detector(rgb)
        if not boxes:
            self._previous = None
            return None, NO_FACE
        big = [b for b in boxes if b.size >= self.min_face]
        if not big:
            self._previous = None
            return None, TOO_SMALL
        if self.target is None:
            box = max(big, key=lambda b: b.width * b.height)
            face = Face(box, self.predictor(rgb, box))
        else:
            best = None
            for box in big:
                shape = self.predictor.shape(rgb, box)
                dist = self.target.distance(self.embedder(rgb, shape))
                if best is None or dist < best.distance:
                    pts = np.array([(p.x, p.y) for p in shape.parts()], np.float32)
                    best = Face(box, pts, dist)
            if best.distance >= self.target.threshold:
                self._previous = None
                return None, NOT_TARGET
            face = best
        self._previous = face.box
        return face, None

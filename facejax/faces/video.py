"""Frame sources: a video file, an image file, a folder of images (writing videos:
facejax/faces/video_writer.py).

Every frame comes out as uint8 RGB [H, W, 3], whatever the file holds: grayscale, RGBA and
16-bit images are converted. Errors are `UserError`s that name the file.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterator

import cv2
import numpy as np

from facejax.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
# Frames bigger than this are refused rather than risking memory exhaustion: 250 MP (e.g.
# 15800x15800) is about 750 MB as RGB; a 12000x12000 photo (144 MP) is fine.
MAX_PIXELS = 250_000_000


def is_image_path(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS)


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """Converts an OpenCV image (BGR/BGRA/gray, 8 or 16 bit, or float) to uint8 RGB."""
    if image.dtype == np.uint16:
        image = (image.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        image = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"unsupported pixel type {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_image(path: str) -> np.ndarray:
    """Reads one image file as uint8 RGB.

    Raises:
      UserError: the file is missing, unreadable, not an image, or absurdly large.
    """
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such file")
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        raise UserError(f"{path}: empty file (0 bytes)")
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as e:
        raise UserError(f"{path}: cannot decode image ({e.err if hasattr(e, 'err') else e})")
    if image is None:
        raise UserError(f"{path}: not a readable image")
    if image.shape[0] * image.shape[1] > MAX_PIXELS:
        raise UserError(f"{path}: image of {image.shape[1]}x{image.shape[0]} is too large")
    try:
        return to_rgb8(image)
    except ValueError as e:
        raise UserError(f"{path}: {e}")


@dataclasses.dataclass
class SourceInfo:
    path: str
    kind: str  # "video", "image" or "folder"
    num_frames: int  # best estimate; a truncated video may deliver fewer
    fps: float
    width: int
    height: int


class FrameSource:
    """Frames of a video file, an image file or a folder of images.

    Iterating yields `(index, frame)` with `frame` None where a frame could not be decoded
    (counted as unreadable by callers). `read(index)` gives random access.
    """

    def __init__(self, path: str):
        self.path = path
        if not os.path.exists(path):
            raise UserError(f"{path}: no such file or folder")
        if os.path.isdir(path):
            self.kind = "folder"
            self._files = sorted(
                os.path.join(path, f) for f in os.listdir(path) if is_image_path(f))
            if not self._files:
                raise UserError(f"{path}: folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            first = self._first_readable()
            self.info = SourceInfo(path, "folder", len(self._files), 0.0, first.shape[1],
                                   first.shape[0])
        elif is_image_path(path):
            self.kind = "image"
            self._files = [path]
            image = read_image(path)
            self.info = SourceInfo(path, "image", 1, 0.0, image.shape[1], image.shape[0])
        else:
            self.kind = "video"
            if os.path.getsize(path) == 0:
                raise UserError(f"{path}: empty file (0 bytes)")
            cap = cv2.VideoCapture(path)
            if not cap.isOpened():
                raise UserError(f"{path}: not a readable video or image")
            ok, frame = cap.read()
            if not ok or frame is None:
                cap.release()
                raise UserError(f"{path}: video has no decodable frame (truncated or corrupt?)")
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            fps = float(cap.get(cv2.CAP_PROP_FPS)) or 25.0
            cap.release()
            self.info = SourceInfo(path, "video", max(count, 1), fps, frame.shape[1],
                                   frame.shape[0])

    def _first_readable(self) -> np.ndarray:
        for f in self._files:
            try:
                return read_image(f)
            except UserError:
                continue
        raise UserError(f"{self.path}: no image in the folder is readable")

    def __len__(self) -> int:
        return self.info.num_frames

    def __iter__(self) -> Iterator[tuple[int, np.ndarray | None]]:
        return self.frames()

    def frames(self, every_n: int = 1, start: int = 0,
               stop: int | None = None) -> Iterator[tuple[int, np.ndarray | None]]:
        """Yields (index, RGB frame or None when unreadable) for the frames start, start +
        every_n, ... before `stop` (None: to the end).

        Videos are positioned by decoding forward from the first frame (grab, no colour
        conversion): container seeking is not frame-exact for every codec (MPEG-PS seeks to a
        nearby keyframe), and a range must start at exactly its frame."""
        if self.kind != "video":
            end = len(self._files) if stop is None else min(stop, len(self._files))
            for i in range(start, end, every_n):
                try:
                    yield i, read_image(self._files[i])
                except UserError:
                    yield i, None
            return
        cap = cv2.VideoCapture(self.path)
        try:
            i = 0
            while i < start:
                if not cap.grab():
                    return
                i += 1
            while stop is None or i < stop:
                # grab() without retrieve() skips decoding work for frames we do not keep.
                if (i - start) % every_n:
                    if not cap.grab():
                        break
                    i += 1
                    continue
                ok, frame = cap.read()
                if not ok or frame is None:
                    break
                yield i, to_rgb8(frame)
                i += 1
        finally:
            cap.release()

    def read(self, index: int) -> np.ndarray:
        """Returns frame `index` (random access).

        Container seeking is not frame-exact for every codec (MPEG-PS seeks to a nearby
        keyframe), so videos are decoded forward from the last position or from the start:
        exact, and cheap when indices increase.
        """
        if self.kind != "video":
            return read_image(self._files[index])
        cap, pos = getattr(self, "_cap", None), getattr(self, "_pos", 0)
        if cap is None or index < pos:
            if cap is not None:
                cap.release()
            cap, pos = cv2.VideoCapture(self.path), 0
        while pos < index and cap.grab():
            pos += 1
        ok, frame = cap.read() if pos == index else (False, None)
        self._cap, self._pos = cap, pos + (1 if ok else 0)
        if not ok or frame is None:
            raise UserError(f"{self.path}: cannot read frame {index}")
        return to_rgb8(frame)

    def name_of(self, index: int) -> str:
        """A human name for frame `index`: the image file, or the video path."""
        return self._files[index] if self.kind != "video" else self.path

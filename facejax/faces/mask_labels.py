"""Hand-drawn mask labels of an extraction folder: `DIR/masks.jsonl`, one line per labelled face.

The format (written by the studio's mask page, readable and writable by hand or by script):

    {"face": "clip.mp4-43653ea0/000017", "size": 128,
     "polygons": [{"type": "include", "points": [[x, y], ...]},
                  {"type": "exclude", "points": [[x, y], ...]}]}

- `face` is the face's record id in `alignments.jsonl` (`<input key>/<frame, 6 digits>`).
- `size` is the side of the crop the points were drawn on (the folder's crop size, or any other
  size: the points scale with it).
- `points` are in that crop's pixels, x to the right and y down, with (0, 0) the top-left
  *corner* of the top-left pixel (as a browser canvas or SVG gives them), at least 3 a polygon.
- The polygons are painted in order, include as 1 and exclude as 0, over a background of 0
  (DeepFaceLab's XSeg editor paints its include and exclude polygons the same way): an exclude
  drawn over an include cuts a hole (a hand in front of the face), an empty list labels a face
  with nothing of it visible.

A face appears at most once; the file is rewritten whole (atomically) on every change, its lines
sorted by face id.
"""

from __future__ import annotations

import dataclasses
import json
import os

import cv2
import numpy as np

from facejax import files
from facejax.errors import UserError

FILE = "masks.jsonl"
# The folder beside each input's crops where `facejax xseg apply` writes one mask per face
# (inputs/<key>/xseg/NNNNNN.png: gray, 255 on the visible face): named after DeepFaceLab's
# XSeg, as its users know it; the only place outside the tasks that spells the name.
APPLIED_FOLDER = "xseg"
KINDS = ("include", "exclude")
_SHIFT = 4  # sub-pixel bits for cv2.fillPoly
_SUPERSAMPLE = 8


@dataclasses.dataclass(frozen=True)
class Polygon:
    kind: str             # "include" or "exclude"
    points: np.ndarray    # (N, 2) float, crop pixels, origin at the top-left corner


@dataclasses.dataclass(frozen=True)
class MaskLabel:
    face: str                     # the record id in alignments.jsonl
    size: int                     # side of the crop the points are in
    polygons: tuple[Polygon, ...]

    def to_json(self) -> dict:
        return {"face": self.face, "size": self.size,
                "polygons": [{"type": p.kind, "points": np.round(p.points, 3).tolist()}
                             for p in self.polygons]}


def path_of(extraction_dir: str) -> str:
    return os.path.join(extraction_dir, FILE)


def applied_path(extraction_dir: str, key: str, frame: int) -> str:
    """Where `facejax xseg apply` writes the mask of input `key`'s face at `frame`."""
    return os.path.join(extraction_dir, "inputs", key, APPLIED_FOLDER, f"{frame:06d}.png")


def crop_path(extraction_dir: str, face: str) -> str:
    """The aligned crop PNG of the face with record id `face` (`<input key>/<NNNNNN>`)."""
    key, _, frame = face.rpartition("/")
    return os.path.join(extraction_dir, "inputs", key, "faces", f"{frame}.png")


def parse(obj, where: str) -> MaskLabel:
    """One label from its decoded JSON line.

    Raises:
      UserError: a missing or malformed field, named with `where` (file:line).
    """
    if not isinstance(obj, dict):
        raise UserError(f"{where}: a label is a JSON object, found {type(obj).__name__}")
    face, size, polygons = obj.get("face"), obj.get("size"), obj.get("polygons")
    if not isinstance(face, str) or "/" not in face:
        raise UserError(f"{where}: \"face\" must be a record id such as \"clip.mp4-1a2b3c4d/000017\"")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise UserError(f"{where}: \"size\" must be a positive integer (the crop's side)")
    if not isinstance(polygons, list):
        raise UserError(f"{where}: \"polygons\" must be a list")
    out = []
    for i, poly in enumerate(polygons):
        kind = poly.get("type") if isinstance(poly, dict) else None
        if kind not in KINDS:
            raise UserError(f"{where}: polygon {i}: \"type\" must be include or exclude")
        try:
            points = np.asarray(poly.get("points"), dtype=np.float64)
        except (TypeError, ValueError):
            points = np.zeros((0,))
        if points.ndim != 2 or points.shape[1] != 2 or len(points) < 3:
            raise UserError(f"{where}: polygon {i}: \"points\" must be at least 3 [x, y] pairs")
        if not np.all(np.isfinite(points)):
            raise UserError(f"{where}: polygon {i}: a point is not a finite number")
        out.append(Polygon(kind, points))
    return MaskLabel(face, size, tuple(out))


def read(extraction_dir: str) -> dict[str, MaskLabel]:
    """Every label of the folder by face id ({} when it has no masks.jsonl).

    Raises:
      UserError: an unreadable file, a line that is not JSON or not a label, or a face twice.
    """
    path = path_of(extraction_dir)
    if not os.path.exists(path):
        return {}
    labels = {}
    try:
        with open(path) as f:
            lines = f.readlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: unreadable ({e})")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{n}: not valid JSON ({e})")
        label = parse(obj, f"{path}:{n}")
        if label.face in labels:
            raise UserError(f"{path}:{n}: face {label.face} is labelled twice")
        labels[label.face] = label
    return labels


def write(extraction_dir: str, labels: dict[str, MaskLabel]) -> None:
    """Writes `labels` as the folder's masks.jsonl, whole or not at all, sorted by face id."""
    lines = [json.dumps(labels[k].to_json(), separators=(",", ":")) for k in sorted(labels)]
    files.atomic_write_bytes(path_of(extraction_dir), "".join(l + "\n" for l in lines).encode())


def rasterise(label: MaskLabel, size: int | None = None) -> np.ndarray:
    """The label painted as a (size, size) uint8 mask of 0 and 1, its points scaled from
    label.size to `size` (default: label.size). A pixel is 1 when at least half of it is inside
    after the polygons are painted in order; its share is sampled on an 8x8 grid, because
    OpenCV's fill takes in every pixel an edge touches (a 10-pixel square would paint 11)."""
    size = label.size if size is None else size
    fine = np.zeros((size * _SUPERSAMPLE, size * _SUPERSAMPLE), np.uint8)
    scale = size * _SUPERSAMPLE / label.size
    for poly in label.polygons:
        # Corner-origin points to OpenCV's pixel-centre origin, in fixed point.
        fixed = np.round((poly.points * scale - 0.5) * (1 << _SHIFT)).astype(np.int32)
        cv2.fillPoly(fine, [fixed], 255 if poly.kind == "include" else 0, lineType=cv2.LINE_8,
                     shift=_SHIFT)
    share = cv2.resize(fine, (size, size), interpolation=cv2.INTER_AREA)
    return (share >= 128).astype(np.uint8)

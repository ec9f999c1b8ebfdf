"""The Faces page's sort keys (DeepFaceLab's sort tools) of an extraction folder's faces, computed
once per face and kept in `DIR/studio_cache/faces.json` (written atomically; a face whose crop
changed since, by size or modification time, is computed again).

- blur: the variance of the crop's Laplacian (low: blurred; DeepFaceLab's sort by blur).
- yaw, pitch: head pose from the 68 landmarks in crop pixels (faces/landmarks.head_pose).
- size: the face's side in source pixels (the square root of its detection box's area).
- fit: the records carry no landmark confidence (dlib's predictor gives none), so this is the
  landmark fit residual instead: the RMS distance, in mean-face units, of the landmarks from
  the mean face after the best similarity fit; a misread face fits worst.
- identity: the distance of the face's embedding (dlib's face recognition ResNet,
  faces/identity.py) from the set's mean embedding ("who is not like the others");
  embeddings are computed on first use only (about 0.3 s a face on one core).
- similar: the distance of each face's embedding to a picked face's (most alike first).
"""

from __future__ import annotations

import json
import os

import cv2
import numpy as np

from facejax import files
from facejax.faces import align, face_types, identity, landmarks
from facejax.studio.face_set import FolderBusy

CACHE_DIR = "studio_cache"
CACHE_FILE = "faces.json"
_VERSION = 1
# key: (label, ascending by default) — the order that puts the faces to look at first.
KEYS = {
    "frame": ("source and frame", True),
    "blur": ("blur (Laplacian variance, sharpest last)", True),
    "yaw": ("head yaw (radians)", True),
    "pitch": ("head pitch (radians)", True),
    "size": ("face size (source px)", True),
    "fit": ("landmark fit residual (worst first)", False),
    "identity": ("distance from the set's identity centroid (farthest first)", False),
    "similar": ("similarity to the picked face (most alike first)", True),
}
NOTES = {
    "fit": "The records carry no landmark confidence: sorted by the landmark fit residual "
           "(distance from the mean face after a similarity fit) instead.",
}


def _stamp(path: str) -> list:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def features(rec: dict, crop_path: str) -> dict:
    """The sort features of one face from its record and crop, but its embedding."""
    bgr = cv2.imread(crop_path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise OSError(f"{crop_path}: unreadable crop")
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    points = np.asarray(rec["landmarks"], np.float64)
    yaw, pitch = landmarks.head_pose(_in_crop(rec)[None], bgr.shape[0])[0]
    fitted = align.transform_points(face_types.to_template(points), points)
    fit_points = face_types.FIT_POINTS
    residual = np.sqrt(np.mean(np.sum((fitted[fit_points] - align.MEAN_FACE[fit_points]) ** 2,
                                      axis=-1)))
    x0, y0, x1, y1 = rec["box"]
    return {"blur": float(cv2.Laplacian(gray, cv2.CV_64F).var()), "yaw": float(yaw),
            "pitch": float(pitch), "size": float(np.sqrt(max(x1 - x0, 0) * max(y1 - y0, 0))),
            "fit": float(residual)}


def embedding(rec: dict, crop_path: str, embedder) -> list[float]:
    """The face's identity embedding, from its crop and its landmarks in crop pixels (the
    slow feature: about 0.3 s a face on one CPU core, so computed only when asked for)."""
    rgb = cv2.cvtColor(cv2.imread(crop_path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return np.round(embedder.from_landmarks(rgb, _in_crop(rec)), 6).tolist()


def _in_crop(rec: dict) -> np.ndarray:
    return align.transform_points(np.asarray(rec["affine"], np.float64),
                                  np.asarray(rec["landmarks"], np.float64))


class FaceKeys:
    """The cached features of one FaceSet's faces."""

    def __init__(self, face_set):
        self.face_set = face_set
        self.path = os.path.join(face_set.folder, CACHE_DIR, CACHE_FILE)
        self._embedder = None

    def _read_cache(self) -> dict:
        try:
            with open(self.path) as f:
                cache = json.load(f)
            return cache["faces"] if cache.get("version") == _VERSION else {}
        except (OSError, ValueError, KeyError, TypeError):
            return {}  # a cache is rebuilt, never trusted when unreadable

    def all(self, records: dict, embeddings: bool = False) -> dict:
        """{face id: features} for `records` (with "embedding" too if `embeddings`),
        computing (and caching) those missing or stale."""
        cache, changed = self._read_cache(), False
        for face, rec in records.items():
            crop = self.face_set.crop(face)
            if not os.path.exists(crop):
                continue
            stamp = _stamp(crop)
            if face not in cache or cache[face].get("stamp") != stamp:
                cache[face] = dict(features(rec, crop), stamp=stamp)
                changed = True
            if embeddings and "embedding" not in cache[face]:
                if self._embedder is None:
                    self._embedder = identity.FaceEmbedder()
                cache[face]["embedding"] = embedding(rec, crop, self._embedder)
                changed = True
        if changed:
            self._write_cache(cache)
        return {face: cache[face] for face in records if face in cache}

    def _write_cache(self, cache: dict) -> None:
        """Keeps the features for the next sort, under the folder's lock; while another writer
        holds the folder they are computed again next time rather than waited for."""
        try:
            with self.face_set.writing():
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
                files.write_json(self.path, {"version": _VERSION, "faces": cache}, indent=None)
        except FolderBusy:
            pass

    def order(self, records: dict, key: str, picked: str | None = None,
              reverse: bool = False) -> tuple[list[str], dict]:
        """(face ids in the sort order of `key`, {face id: the value sorted by}).

        Raises:
          KeyError: an unknown key. ValueError: "similar" without a picked face of the set.
        """
        if key not in KEYS:
            raise KeyError(key)
        if key == "frame":
            faces = list(records)
            values = {f: records[f]["frame"] for f in faces}
        else:
            feats = self.all(records, embeddings=key in ("identity", "similar"))
            faces = list(feats)
            if key in ("identity", "similar"):
                emb = np.array([feats[f]["embedding"] for f in faces], np.float64)
                if key == "identity":
                    centre = emb.mean(0)
                else:
                    if picked not in feats:
                        raise ValueError("pick a face first (its similarity is the key)")
                    centre = np.asarray(feats[picked]["embedding"], np.float64)
                dist = identity.distances(centre, emb)
                values = {f: float(d) for f, d in zip(faces, dist)}
            else:
                values = {f: feats[f][key] for f in faces}
        ascending = KEYS[key][1] != reverse
        faces.sort(key=lambda f: values[f], reverse=not ascending)
        return faces, values

"""Faces read from disk on demand: one split of one or more prepared extraction folders.

A `FaceSource` is what the input pipeline draws batches from. It opens the ArrayRecord files of
the TFDS dataset (`tfds_faces.builder`) for random access and decodes only the records and
fields a batch asks for, resized to the load size (or, for a model with a face type, re-cut
to that type's square). What stays in memory is small per record:
each record's landmarks (for yaw sampling) and frame number, and the identity labels, read once
when the source opens.
That read touches every record, so a truncated or corrupted file is found before training
starts, named, with the folder to delete.

No JAX here: the pipeline's worker processes unpickle sources and import only this, TFDS's data
source (no TensorFlow) and OpenCV.
"""

from __future__ import annotations

import dataclasses
import glob
import os

import cv2
import numpy as np

from facejax.data import tfds_faces
from facejax.errors import UserError, warn
from facejax.faces import align, face_types, mask_labels, masks

IMAGE_FIELDS = ("image", "mask", "parts", "landmark_image")
STORED_IMAGES = IMAGE_FIELDS + ("applied_mask",)  # what the records hold
# What a source's "mask" field holds (--config.data.mask): the landmark hull, or the masks of
# `facejax xseg apply` (the records' "applied_mask"), named as their folder is.
APPLIED = mask_labels.APPLIED_FOLDER
MASK_KINDS = ("hull", APPLIED)
# Fields resampled like images (cubic); the masks take linear weights, as DeepFaceLab's do.
_CUBIC_FIELDS = ("image", "landmark_image")
# PNG channel order as OpenCV decodes it -> RGB(A) as the records were written.
_TO_RGB = {3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGBA}


def entries(spec: str, flag: str) -> list[tuple[str, float | None]]:
    """(folder, weight) of each extraction folder a data setting names: comma-separated
    items, each a folder or a glob pattern (its matches in sorted order), optionally followed
    by @WEIGHT, which each folder it names gets (None where no weight is given).

    Raises:
      UserError: none given, a pattern that matches nothing, or a bad weight; named by `flag`.
    """
    out = []
    for item in (x.strip() for x in str(spec or "").split(",")):
        if not item:
            continue
        path, weight = item, None
        if "@" in item:
            path, _, text = item.rpartition("@")
            try:
                weight = float(text)
                if not weight > 0 or weight == float("inf"):
                    raise ValueError
            except ValueError:
                raise UserError(f"{flag}: {item}: the weight after @ must be a positive number")
        matches = sorted(glob.glob(path)) if glob.has_magic(path) else [path]
        if not matches:
            raise UserError(f"{flag}: {path} matches no folder")
        out += [(m, weight) for m in matches]
    if not out:
        raise UserError(f"{flag}: no extraction directory given")
    return out


def setting(data, name: str) -> tuple[str, str]:
    """(folders setting, its flag) that identity `name` reads from a config's data block: its
    own (--config.data.NAME), or the pretraining set every identity reads when
    --config.data.pretrain is given."""
    if data.get("pretrain"):
        return data.pretrain, "--config.data.pretrain"
    return data.get(name), f"--config.data.{name}"


def folders(spec: str, flag: str) -> list[str]:
    """The extraction folders a data setting names (`entries` without the weights)."""
    return [path for path, _ in entries(spec, flag)]


def weights(spec: str, flag: str) -> list[float] | None:
    """Per folder, the share of draws (`entries`' weights, 1 where none is given), or None
    where the setting gives no weight: then every record is drawn equally often."""
    given = [w for _, w in entries(spec, flag)]
    if all(w is None for w in given):
        return None
    return [1.0 if w is None else w for w in given]


def _unreadable(folder: str, prepared: str, e: Exception, path: str = "") -> UserError:
    msg = " ".join(str(e).split())[:200]
    return UserError(f"{folder}: {path or 'the prepared dataset'} is unreadable ({msg}); delete "
                     f"{prepared} to rebuild it")


def _bad_file(info_split, record: int | None = None) -> str:
    """The file of a split at fault: the one holding `record`, or else the first that is
    missing or does not open ("" if all open)."""
    from array_record.python import array_record_data_source
    paths = [str(p) for p in info_split.filepaths]
    if record is not None:
        ends = np.cumsum(info_split.shard_lengths)
        return paths[min(int(np.searchsorted(ends, record, side="right")), len(paths) - 1)]
    for path in paths:
        try:
            array_record_data_source.ArrayRecordDataSource([path]).__len__()
        except Exception:  # noqa: BLE001 (any failure names this file)
            return path
    return ""


@dataclasses.dataclass
class _Part:
    """One extraction folder's records in a source: the data source and the index range."""
    folder: str
    prepared: str           # the TFDS data folder, named in errors
    records: object         # TFDS ArrayRecord data source, images left encoded
    split: object           # its tfds SplitInfo: files and records per file
    index: np.ndarray       # record numbers in the split that this source uses
    extracted: int          # crop size the folder was extracted at


class FaceSource:
    """Records of `split` from extraction folders, decoded on demand at `size`×`size`.

    Args:
      folders: extraction directories (their records follow one another in this order).
      split: "train" or "validation".
      size: the load size; every folder must have been extracted at this size or larger.
      process_index, process_count: with per_process, this process reads the
        `process_index`-th of `process_count` contiguous, disjoint slices of each folder's split.
      data_dir: TFDS data_dir for a single folder; None: inside each extraction folder.
      weights: per folder, its share of the draws (see `weights`); None: every record alike.
      face_type: "" loads each extracted crop whole, resized; a face type (faces/face_types.py)
        loads each face's square of that type, its side times `grow`, re-cut from the crop
        (one cubic resampling, the crop area-averaged first where it shrinks).
      mask: --config.data.mask, what the "mask" field holds: "hull" (the landmark hull) or
        "xseg" (the masks of `facejax xseg apply`; every face of the split must have one); ""
        for a family without that setting (the hull, and no word on applied masks).

    Raises:
      UserError: a folder not usable, too small, an empty split, unreadable prepared files, or
        with mask "xseg", faces without an applied mask.
    """

    def __init__(self, folders, split: str, size: int, *, process_index: int = 0,
                 process_count: int = 1, per_process: bool = True, data_dir: str | None = None,
                 weights=None, face_type: str = "", grow: float = 1.0, mask: str = ""):
        if data_dir and len(folders) > 1:
            raise UserError(f"--config.data.data_dir={data_dir}: holds the dataset of one "
                            "extraction folder; leave it empty to train on several")
        self.size, self.weights = size, None if weights is None else list(weights)
        if mask not in ("",) + MASK_KINDS:
            raise UserError(f"--config.data.mask={mask}: expected one of "
                            f"{', '.join(MASK_KINDS)}")
        self.face_type, self.mask = face_type, mask
        self.parts: list[_Part] = []
        landmarks, frames, identities, affines = [], [], [], []
        for folder in folders:
            part = _open(folder, split, size, data_dir,
                         (process_index, process_count) if per_process else (0, 1))
            marks, frame, ident, applied = _metadata(part)
            _check_applied(part, split, mask, applied)
            if face_type:
                affines.append(_face_type_affines(part, marks, size, face_type, grow,
                                                  check=split == "train"))
                landmarks.append(np.stack([align.transform_points(m, p)
                                           for m, p in zip(affines[-1], marks)]))
            else:
                landmarks.append(marks * (size / part.extracted))
            frames.append(frame)
            identities.append(ident)
            self.parts.append(part)
        self.landmarks = np.concatenate(landmarks).astype(np.float32)  # [N, 68, 2] at `size`
        self.frame = np.concatenate(frames)                              # [N] int64
        # [N, 2, 3] extracted crop -> loaded crop, with a face type
        self.affine = np.concatenate(affines) if face_type else None
        self.identity = ",".join(sorted(set().union(*identities)))  # the records' labels
        self._starts = np.cumsum([0] + [len(p.index) for p in self.parts])
        if len(self) == 0:
            raise UserError(f"{','.join(folders)}: split '{split}' holds no faces for process "
                            f"{process_index}")
        for part, w in zip(self.parts, self.weights or ()):
            if not len(part.index):
                raise UserError(f"{part.folder}@{w:g}: split '{split}' holds no faces for "
                                f"process {process_index}")

    def __len__(self) -> int:
        return int(self._starts[-1])

    def part_sizes(self) -> list[int]:
        """Records per folder, in the order given."""
        return [len(p.index) for p in self.parts]

    def take(self, idx: np.ndarray, fields) -> dict:
        """The records at `idx` (numbers in this source), each field stacked: images uint8
        [n, S, S, C] (mask [n, S, S]), landmarks float32 [n, 68, 2], frame int64 [n], and
        "eyes_mouth", not stored but drawn from the landmarks at the load size: DeepFaceLab's
        eyes/mouth priority mask (masks.eyes_mouth_mask), uint8 [n, S, S]."""
        idx = np.asarray(idx)
        images = [f for f in fields if f in IMAGE_FIELDS]
        out = {f: np.empty((len(idx), self.size, self.size, *_channels(f)), np.uint8)
               for f in images}
        for row, i in enumerate(idx):
            k = int(np.searchsorted(self._starts, i, side="right") - 1)
            part = self.parts[k]
            record = int(part.index[i - self._starts[k]])
            try:
                example = part.records[record]
            except Exception as e:  # ArrayRecord's I/O and checksum errors
                raise _unreadable(part.folder, part.prepared, e, _bad_file(part.split, record))
            for f in images:
                stored = "applied_mask" if f == "mask" and self.mask == APPLIED else f
                out[f][row] = self._decode(example[stored], part, record, f,
                                           None if self.affine is None else self.affine[i])
        for f in fields:
            if f == "eyes_mouth":
                out[f] = np.stack([_eyes_mouth(self.landmarks[i], self.size) for i in idx])
            elif f == "landmarks":
                out[f] = self.landmarks[idx]
            elif f == "frame":
                out[f] = self.frame[idx]
            elif f not in IMAGE_FIELDS:
                raise KeyError(f"no field {f!r} in face records")
        return out

    def _decode(self, png: bytes, part: _Part, record: int, field: str,
                affine: np.ndarray | None) -> np.ndarray:
        img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise _unreadable(part.folder, part.prepared,
                              ValueError(f"record {record}: its {field} is not an image"),
                              _bad_file(part.split, record))
        if img.ndim == 3:
            img = cv2.cvtColor(img, _TO_RGB[img.shape[2]])
        if affine is not None:
            return align.crop(img, affine, self.size, interpolation=cv2.INTER_CUBIC
                              if field in _CUBIC_FIELDS else cv2.INTER_LINEAR)
        if img.shape[0] != self.size:
            img = cv2.resize(img, (self.size, self.size), interpolation=cv2.INTER_AREA)
        return img


def _eyes_mouth(points: np.ndarray, size: int) -> np.ndarray:
    """uint8 [S, S]: the eyes/mouth mask of a face with these loaded-crop landmarks, in
    DeepFaceLab's proportions to the face (the face's scale read from its template fit)."""
    fit = face_types.to_template(points)
    px_per_mf = 1.0 / float(np.sqrt(abs(np.linalg.det(fit[:, :2]))))
    em = masks.eyes_mouth_mask(points.astype(np.float64), (size, size), px_per_mf)
    return np.round(em * 255).astype(np.uint8)


def _face_type_affines(part: _Part, marks: np.ndarray, size: int, face_type: str,
                       grow: float, check: bool) -> np.ndarray:
    """[n, 2, 3] extracted crop -> loaded crop of each face's `face_type` square grown by
    `grow`; with `check` (one split of a run: the folders are the same for both), warns where
    the extraction frames less than the square (its edges then repeat the crop's border)."""
    out = np.stack([face_types.matrix(m, size, face_type, grow) for m in marks])
    if check and len(out):
        edge = face_types.corners(face_types.matrix(marks[0], size, face_type), size)
        margin = 0.03 * np.linalg.norm(edge[1] - edge[0])
        if edge.min() < -margin or edge.max() > part.extracted + margin:
            warn(f"{part.folder}: its crops frame less than the {face_type} face type needs "
                 f"(their edges repeat); extract with --coverage="
                 f"{face_types.coverage_needed(face_type):.2f} or less")
    return out


def _channels(field: str) -> tuple:
    return {"image": (3,), "mask": (), "parts": (4,), "landmark_image": (3,)}[field]


def _open(folder: str, split: str, size: int, data_dir, slice_of) -> _Part:
    import tensorflow_datasets as tfds
    builder = tfds_faces.builder(folder, data_dir)
    if builder.size < size:
        raise UserError(f"{folder}: faces were extracted at {builder.size} px, smaller "
                        f"than the {size} px this experiment loads (--config.data.load_size); "
                        f"extract again with --size={size} or more")
    if split not in builder.info.splits or builder.info.splits[split].num_examples == 0:
        raise UserError(f"{folder}: split '{split}' holds no faces")
    skip = {f: tfds.decode.SkipDecoding() for f in STORED_IMAGES}
    try:
        # Read through a read-only builder of the prepared folder: it pickles small to the
        # pipeline's workers, where ours would read the whole extraction folder again.
        records = tfds.builder_from_directory(builder.data_dir).as_data_source(split,
                                                                               decoders=skip)
        n = len(records)
    except Exception as e:  # a missing or truncated file fails when it is opened
        raise _unreadable(folder, builder.data_dir, e, _bad_file(builder.info.splits[split]))
    i, count = slice_of
    index = np.arange(n * i // count, n * (i + 1) // count)
    return _Part(os.path.abspath(folder), builder.data_dir, records, builder.info.splits[split],
                 index, builder.size)


def _metadata(part: _Part):
    """Landmarks and frame of every record of the part, the set of their identity labels, and
    how many have an applied XSeg mask, reading each record once."""
    marks = np.zeros((len(part.index), 68, 2), np.float32)
    frames = np.zeros(len(part.index), np.int64)
    identity, applied = set(), 0
    for row, record in enumerate(part.index):
        try:
            ex = part.records[int(record)]
        except Exception as e:  # ArrayRecord's I/O and checksum errors
            raise _unreadable(part.folder, part.prepared, e, _bad_file(part.split, int(record)))
        marks[row], frames[row] = ex["landmarks"], ex["frame"]
        identity.add(ex["identity"].decode())
        applied += bool(ex["has_applied_mask"])
    return marks, frames, identity, applied


def _check_applied(part: _Part, split: str, mask: str, applied: int) -> None:
    """With mask "xseg", every face needs its applied mask (a face without one would train
    inside the hull unnoticed); with "hull", says once where applied masks go unused."""
    n = len(part.index)
    if mask == APPLIED and applied < n:
        raise UserError(f"--config.data.mask={mask}: {part.folder}: {n - applied} of {n} faces "
                        f"({split}) have no XSeg mask; run facejax xseg apply --model=RUN "
                        f"--faces={part.folder} (it computes the missing ones)")
    if mask == "hull" and applied and split == "train":
        warn(f"{part.folder}: {applied} of {n} faces have XSeg masks that this run does not "
             f"use (--config.data.mask=hull); --config.data.mask={APPLIED} trains inside them")

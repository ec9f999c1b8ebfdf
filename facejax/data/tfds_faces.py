"""A tensorflow-datasets builder over an extraction directory (the records of DESIGN.md §4).

The prepared dataset lives under `<extraction dir>/tfds/<fingerprint>/` unless `data_dir` is
given; the fingerprint covers the finished inputs and the crop size, so extracting more inputs
makes a fresh dataset instead of silently reusing a stale one. It is written as ArrayRecord,
which `data/source.py` reads at random; images are stored as PNG.

Split: per input, the last `val_fraction` of its records by frame index go to "validation", the
rest to "train" (inputs of one record, e.g. a still image, go to "train"). Deterministic.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import threading
import contextlib
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds

from facejax import lock
from facejax.data import extract as extract_lib
from facejax.errors import RunError, Stopped, UserError
from facejax.faces import align, mask_labels, masks, video

VAL_FRACTION = 0.1


def _checked_record(line: str, where: str) -> dict:
    """One alignments.jsonl line, checked: the fields later code builds paths and arrays from."""
    try:
        rec = json.loads(line)
        frame = rec["frame"]
        if not isinstance(frame, int) or isinstance(frame, bool) or frame < 0:
            raise ValueError(f"frame {frame!r} is not a frame number")
        for field, shape in (("affine", (2, 3)), ("landmarks", (68, 2))):
            if np.asarray(rec[field], np.float64).shape != shape:
                raise ValueError(f"{field} is not {shape[0]}x{shape[1]} numbers")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"{where}: not a valid face record ({type(e).__name__}: {e})"[:300])
    return rec


def crop_size(extraction_dir: str) -> int:
    """The crop size an extraction directory was made at, checking it is one.

    Raises:
      UserError: not an extraction directory.
    """
    config_path = os.path.join(extraction_dir, extract_lib.CONFIG_FILE)
    inputs_dir = os.path.join(extraction_dir, extract_lib.INPUTS)
    if not os.path.isfile(config_path) or not os.path.isdir(inputs_dir):
        raise UserError(f"{extraction_dir}: not an extraction directory (run facejax extract)")
    with open(config_path) as f:
        return int(json.load(f)["size"])


def _alignment_files(extraction_dir: str) -> Iterator[tuple[str, str]]:
    """(input key, its alignments.jsonl) of every finished input, checking the directory.

    Raises:
      UserError: not an extraction directory, or an incomplete input.
    """
    crop_size(extraction_dir)
    inputs_dir = os.path.join(extraction_dir, extract_lib.INPUTS)
    for key in sorted(os.listdir(inputs_dir)):
        path = os.path.join(inputs_dir, key, "alignments.jsonl")
        if not os.path.isfile(path):
            raise UserError(f"{path}: missing; the extraction of {key} is incomplete")
        yield key, path


def iter_records(extraction_dir: str) -> Iterator[dict]:
    """The checked records of every finished input, one at a time (a large folder's records
    are never all in memory at once, as parsed JSON they take kilobytes each).

    Raises:
      UserError: not an extraction directory, an incomplete input, a bad record, or no
        finished input with faces.
    """
    count = 0
    for key, path in _alignment_files(extraction_dir):
        with open(path) as f:
            for n, line in enumerate(f, 1):
                rec = _checked_record(line, f"{path}:{n}")
                rec["key"] = key
                count += 1
                yield rec
    if not count:
        raise UserError(f"{extraction_dir}: holds no face records")


def read_records(extraction_dir: str) -> tuple[int, list[dict]]:
    """Returns (crop size, records of every finished input), checking the directory
    (`iter_records`)."""
    return crop_size(extraction_dir), list(iter_records(extraction_dir))


def assign_splits(records: list[dict], val_fraction: float = VAL_FRACTION) -> None:
    """Sets rec["split"]: the last val_fraction of each input's frames are validation."""
    by_key = {}
    for rec in records:
        by_key.setdefault(rec["key"], []).append(rec)
    for recs in by_key.values():
        recs.sort(key=lambda r: r["frame"])
        n_val = math.ceil(val_fraction * len(recs)) if len(recs) > 1 else 0
        for i, rec in enumerate(recs):
            rec["split"] = "validation" if i >= len(recs) - n_val else "train"


def external_parts(extraction_dir: str, rec: dict, size: int) -> np.ndarray | None:
    """Part masks supplied from outside (e.g. a face-parsing network), if any.

    `inputs/<key>/parts/NNNNNN.png` beside the crop: a 4-channel PNG whose R, G, B, A channels
    are eyes, brows, nose, mouth (masks.PART_NAMES), or one gray channel used for all four.
    """
    path = os.path.join(extraction_dir, extract_lib.INPUTS, rec["key"], "parts",
                        f"{rec['frame']:06d}.png")
    if not os.path.isfile(path):
        return None
    import cv2
    m = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if m is None or m.shape[:2] != (size, size) or m.dtype != np.uint8:
        raise UserError(f"{path}: part masks must be {size}x{size} 8-bit PNG")
    if m.ndim == 2:
        return np.repeat(m[:, :, None], 4, axis=2)
    if m.shape[2] != 4:
        raise UserError(f"{path}: part masks need 1 or 4 channels, found {m.shape[2]}")
    return cv2.cvtColor(m, cv2.COLOR_BGRA2RGBA)


def applied_mask(extraction_dir: str, rec: dict, size: int) -> bytes | None:
    """The PNG of the face's applied XSeg mask (`facejax xseg apply`), checked to be a gray
    `size`×`size` 8-bit image; None where the face has none.

    Raises:
      UserError: a mask file that is not such an image.
    """
    path = mask_labels.applied_path(extraction_dir, rec["key"], rec["frame"])
    if not os.path.isfile(path):
        return None
    import cv2
    with open(path, "rb") as f:
        data = f.read()
    m = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if m is None or m.ndim != 2 or m.shape != (size, size) or m.dtype != np.uint8:
        raise UserError(f"{path}: an applied mask must be a gray {size}x{size} 8-bit PNG "
                        "(facejax xseg apply writes them)")
    return data if data[:8] == b"\x89PNG\r\n\x1a\n" else _png(m)


def _folder_digest(folder: str) -> str:
    """sha1 over the names and bytes of a folder's files: mask files are small, and a mask
    applied again by another model must change the dataset even where the count does not."""
    h = hashlib.sha1()
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                h.update(name.encode() + b"\0" + hashlib.sha1(f.read()).digest())
    return h.hexdigest()


def fingerprint(extraction_dir: str) -> str:
    """Changes whenever the faces the dataset would hold change: the bytes of every finished
    input's alignments.jsonl (a face deleted or restored, by count or by which), and the files
    of externally supplied part masks and of applied XSeg masks (`facejax xseg apply`). Hashes
    the lines without parsing them: every run start asks for it, and the records are checked
    where they are read (preparing the dataset, the run record). Restoring the same records
    restores the same fingerprint, so their prepared dataset is used again.

    Raises:
      UserError: not an extraction directory, an incomplete input, or no face records.
    """
    size, digests = crop_size(extraction_dir), {}
    for key, path in _alignment_files(extraction_dir):
        with open(path, "rb") as f:
            data = f.read()
        if data.strip():
            digests[key] = hashlib.sha1(data).hexdigest()
        parts = os.path.join(extraction_dir, extract_lib.INPUTS, key, "parts")
        if data.strip() and os.path.isdir(parts):  # externally supplied part masks too
            digests[key + "/parts"] = _folder_digest(parts)
        applied = os.path.join(extraction_dir, extract_lib.INPUTS, key,
                               mask_labels.APPLIED_FOLDER)
        if data.strip() and os.path.isdir(applied):  # the masks facejax xseg apply wrote
            digests[key + "/" + mask_labels.APPLIED_FOLDER] = _folder_digest(applied)
    if not digests:
        raise UserError(f"{extraction_dir}: holds no face records")
    blob = json.dumps({"size": size, "inputs": digests, "val": VAL_FRACTION}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def _png(rgb: np.ndarray) -> bytes:
    """An RGB(A) or gray uint8 image as PNG bytes. TFDS stores encoded images as they are; its
    own encoder (a TensorFlow call per image) made preparing a dataset many times slower
    (docs/benchmarks.md)."""
    import cv2
    if rgb.ndim == 3:
        rgb = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR if rgb.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode(".png", rgb)
    if not ok:
        raise RunError("OpenCV could not encode a face record as PNG")
    return buf.tobytes()


class FacejaxFaces(tfds.core.GeneratorBasedBuilder):
    """Aligned face records from one facejax extraction directory."""

    VERSION = tfds.core.Version("1.2.0")
    RELEASE_NOTES = {"1.0.0": "Aligned crops, landmarks, hull and part masks, landmark image.",
                     "1.1.0": "DeepFaceLab's hull (brows raised); crops cut with cubic weights.",
                     "1.2.0": "Each face's applied XSeg mask (the hull where it has none)."}

    def __init__(self, *, extraction_dir: str, **kwargs):
        self.extraction_dir = extraction_dir
        self.size = crop_size(extraction_dir)
        self._read: list[dict] | None = None
        super().__init__(**kwargs)

    @property
    def _records(self) -> list[dict]:
        """Every record, read when the dataset is prepared (not by a run that only reads it)."""
        if self._read is None:
            self._read = read_records(self.extraction_dir)[1]
        return self._read

    # TFDS's own lines ("Downloading and preparing dataset Unknown size (download: Unknown
    # size, ...)", then "Dataset ... downloaded and prepared") describe downloads there are none
    # of: one line of ours instead. These two private methods are the only way to say so:
    # download_and_prepare prints those lines from them (termcolor.cprint, TFDS 4.9.10), and
    # neither DownloadConfig nor tfds.disable_progress_bar (the bars only) turns them off;
    # redirecting stdout around download_and_prepare would hide everything else printed
    # meanwhile. Should TFDS rename them, its lines come back, and test_pipeline's
    # two-trainings test, which wants exactly our line, fails.
    def _log_download_bytes(self) -> None:
        print(f"preparing dataset for {self.extraction_dir}: {len(self._records)} faces at "
              f"{self.size} px (once; kept in {self.data_dir})", flush=True)

    def _log_download_done(self) -> None:
        """Nothing: _log_download_bytes said it all."""

    def _info(self) -> tfds.core.DatasetInfo:
        s = self.size
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(s, s, 3)),
                "landmarks": tfds.features.Tensor(shape=(68, 2), dtype=np.float32),
                "mask": tfds.features.Image(shape=(s, s, 1)),
                # `facejax xseg apply`'s mask of the face, or the hull where it has none
                # (has_applied_mask False), as DeepFaceLab's samples fall back to the hull.
                "applied_mask": tfds.features.Image(shape=(s, s, 1)),
                "has_applied_mask": np.bool_,
                "parts": tfds.features.Image(shape=(s, s, 4)),
                "landmark_image": tfds.features.Image(shape=(s, s, 3)),
                "affine": tfds.features.Tensor(shape=(2, 3), dtype=np.float32),
                "identity": tfds.features.Text(),
                "video": tfds.features.Text(),
                "frame": np.int64,
                "record": tfds.features.Text(),
            }),
            supervised_keys=None,
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        assign_splits(self._records)
        return {split: self._generate_examples(split) for split in ("train", "validation")}

    def _generate_examples(self, split):
        s = self.size
        for rec in self._records:
            if rec["split"] != split:
                continue
            path = os.path.join(self.extraction_dir, extract_lib.INPUTS, rec["key"], "faces",
                                f"{rec['frame']:06d}.png")
            image = video.read_image(path)
            if image.shape[:2] != (s, s):
                raise UserError(f"{path}: crop of {image.shape[1]}x{image.shape[0]}, expected {s}")
            affine = np.asarray(rec["affine"], np.float32)
            points = align.transform_points(affine, np.asarray(rec["landmarks"])).astype(np.float32)
            parts = external_parts(self.extraction_dir, rec, s)
            if parts is None:
                parts = masks.part_masks(points, (s, s))
            hull = _png(masks.face_hull(points, (s, s)))
            applied = applied_mask(self.extraction_dir, rec, s)
            yield rec["record"], {
                "image": _png(image),
                "landmarks": points,
                "mask": hull,
                "applied_mask": hull if applied is None else applied,
                "has_applied_mask": applied is not None,
                "parts": _png(parts),
                "landmark_image": _png(masks.landmark_image(points, s)),
                "affine": affine,
                "identity": rec.get("identity", ""),
                "video": rec["input"],
                "frame": rec["frame"],
                "record": rec["record"],
            }


FILE_FORMAT = "array_record"  # random access: the pipeline reads the records a batch needs


class PreparationStopped(Stopped):
    """SIGTERM or SIGINT while a dataset was being prepared, or while waiting for another run
    to prepare it; what was written is removed (TFDS writes into a temporary folder and
    deletes it when interrupted), so the next run prepares it again."""


WAITING = ("waiting for another run to prepare",
           "the next run prepares it, or reads what that run prepared")
PREPARING = ("preparing", "the next run prepares it again")


@contextlib.contextmanager
def _stops_raise(extraction_dir: str):
    """Within: the first SIGTERM or SIGINT raises PreparationStopped (later ones are ignored,
    so TFDS's clean-up runs to its end); the handlers before are restored after. Yields a
    list whose one item, WAITING or PREPARING, says what the stop interrupts."""
    phase = [WAITING]
    if threading.current_thread() is not threading.main_thread():  # only it gets signals
        yield phase
        return
    raised = []

    def stop(signum, frame):
        del frame
        if not raised:
            raised.append(signum)
            doing, then = phase[0]
            raise PreparationStopped(f"stopped while {doing} the dataset of {extraction_dir} "
                                     f"(signal {signum}); {then}")

    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield phase
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def builder(extraction_dir: str, data_dir: str | None = None) -> FacejaxFaces:
    """The prepared builder for an extraction directory (prepares it on first use, as
    ArrayRecord; a dataset an earlier facejax prepared as TFRecord is rebuilt, saying so)."""
    extraction_dir = os.path.abspath(extraction_dir)
    if data_dir is None:
        data_dir = os.path.join(extraction_dir, "tfds", fingerprint(extraction_dir))
    else:
        crop_size(extraction_dir)  # a bad folder fails before anything is written
    tfds.disable_progress_bar()
    prepared = os.path.join(data_dir, FacejaxFaces.name, str(FacejaxFaces.VERSION))
    try:
        # Two runs on one extraction folder would both prepare it and one would fail on the
        # other's rename; the second waits, then reads what the first prepared. A stop while
        # it waits ends the run as one during preparation does.
        with _stops_raise(extraction_dir) as phase, \
                lock.wait_turn(os.path.join(data_dir, ".prepare.lock")):
            phase[0] = PREPARING
            was = _prepared_format(prepared)
            if was not in ("", FILE_FORMAT):
                why = ("it was TFRecord" if was == "tfrecord" else
                       "its dataset_info.json is unreadable")
                print(f"{extraction_dir}: rebuilding the prepared dataset at {prepared} as "
                      f"ArrayRecord, which training streams from ({why})", flush=True)
                shutil.rmtree(prepared)
            b = FacejaxFaces(extraction_dir=extraction_dir, data_dir=data_dir,
                             file_format=FILE_FORMAT)
            b.download_and_prepare(
                download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    except UserError:
        raise
    except Exception as e:  # disk full, unwritable data_dir, ... (TF, OS and TFDS errors)
        msg = " ".join(str(e).split())[:300]
        raise RunError(f"{extraction_dir}: preparing the dataset in {data_dir} failed ({msg}); "
                       "nothing half-written is kept (TFDS writes to a temporary folder)")
    return b


def _prepared_format(prepared: str) -> str:
    """The file format a prepared dataset's dataset_info.json records ("tfrecord" where it
    records none, as TFDS wrote before; "" where nothing is prepared)."""
    path = os.path.join(prepared, "dataset_info.json")
    if not os.path.exists(path):
        return ""
    try:
        with open(path) as f:
            return json.load(f).get("fileFormat", "tfrecord")
    except (OSError, ValueError):
        return "unreadable"

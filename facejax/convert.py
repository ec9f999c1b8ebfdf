"""Swap faces into videos and images: detect/track, align, model, inverse warp, mask, colour, blend.

The model sees the face through the same geometry as in training: the similarity alignment of
extraction (its coverage) restricted to the region the model family looks at. Frames without a
face pass through unchanged. Output files appear only when complete.

The work on a frame is a chain of functions that facejax/frame_preview.py (the studio's merge
page: one frame, re-rendered as the paste options change) calls too, so a previewed frame is
the frame conversion writes: found_faces (detect and track, the predictor's own landmarks),
smoothed (the One Euro filter over them), face_crop (the model's crop), model_faces (the
model's output as faces and learned masks), xseg_convert.crop_masks (with --mask=xseg: the
segmentation run's mask of the same square of the frame, at its side) and paste_frame
(compose.paste, side by side with --preview). The paste options can be saved to a settings
file (save_settings, load_settings) that `facejax convert --settings` reads.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Iterable, Iterator

import numpy as np

from facejax import files, images, xseg_convert
from facejax.errors import UserError, one_line, write_failed
from facejax.faces import align, compose, detect, find, video, video_look, video_writer
from facejax.faces import landmarks as lm
from facejax.inference import SwapModel
from facejax.progress import Progress

# The bounds of --erode and --blur (commands/convert.py), also checked in a settings file.
MAX_ERODE, MAX_BLUR = 512, 512


@dataclasses.dataclass
class ConvertOptions(compose.PasteOptions):
    """How frames are pasted (compose.PasteOptions: mask, erode, blur, color, blend) and how
    the frames are walked."""
    direction: str = "b2a"
    smooth: float = 1.0         # landmark smoothing: One Euro minimum cutoff, Hz (0: off)
    select: str = "largest"     # find.SELECT: the face swapped when a frame has several
    batch: int = 8
    preview: bool = False       # original | swapped side by side
    detector: str = "hog"
    confirm_every: int = 2      # re-detect a tracked face every n frames (1: every frame)
    xseg_model: str = ""        # the segmentation run of the xseg masks (xseg_convert.py)

    def check(self):
        if self.direction not in ("b2a", "a2b"):
            raise UserError(f"--direction {self.direction}: expected one of b2a, a2b")
        super().check()
        xseg_convert.check(self.mask, self.xseg_model)
        if not -MAX_ERODE <= self.erode <= MAX_ERODE:
            raise UserError(f"--erode {self.erode}: must be between {-MAX_ERODE} and {MAX_ERODE}")
        if not 0 <= self.blur <= MAX_BLUR:
            raise UserError(f"--blur {self.blur}: must be between 0 and {MAX_BLUR}")
        if self.smooth < 0.0:
            raise UserError(f"--smooth {self.smooth}: must be 0 (off) or a cutoff in Hz")
        if self.select not in find.SELECT:
            raise UserError(f"--select {self.select}: expected one of {', '.join(find.SELECT)}")
        if self.batch < 1:
            raise UserError(f"--batch {self.batch}: must be at least 1")
        if self.confirm_every < 1:
            raise UserError(f"--confirm_every {self.confirm_every}: must be at least 1")


# ---- settings files ----------------------------------------------------------------------------

def save_settings(path: str, opts: ConvertOptions) -> None:
    """Writes `opts` (every field) to `path` as JSON, atomically, for `facejax convert
    --settings=PATH`."""
    opts.check()
    files.write_json(path, dataclasses.asdict(opts))


def read_settings(path: str) -> dict:
    """The options a settings file sets, {field: value}, each of the type of its
    ConvertOptions field and valid (with the defaults for the fields it leaves out).

    Raises:
      UserError: one line naming the file and the key or value: not JSON, not an object, an
        unknown key, a value of the wrong type or out of range.
    """
    data = files.read_json(path, "convert settings")
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object of convert options, "
                        f"got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(ConvertOptions)}
    values = {}
    for key, value in data.items():
        if key not in fields:
            raise UserError(f"{path}: unknown key {key!r} (expected some of "
                            f"{', '.join(fields)})")
        kind = type(fields[key].default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not kind:
            raise UserError(f"{path}: {key} {json.dumps(value)}: expected "
                            f"{_TYPE_NAMES[kind]}")
        values[key] = value
    try:
        ConvertOptions(**values).check()
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    return values


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def load_settings(path: str) -> ConvertOptions:
    """The ConvertOptions a settings file holds (read_settings; defaults for keys it lacks)."""
    return ConvertOptions(**read_settings(path))


# ---- one frame's work: shared by conversion and the studio's frame preview ---------------------

def make_finder(opts: ConvertOptions) -> find.FaceFinder:
    """The detector and tracker conversion walks frames with; its landmarks are the
    predictor's own (smoothed() filters them)."""
    return find.FaceFinder(detect.make_detector(opts.detector), min_face=0,
                           confirm_every=opts.confirm_every, select=opts.select)


def found_faces(frames: Iterable, finder: find.FaceFinder,
                fps: float | None) -> Iterator[tuple[int, np.ndarray | None, np.ndarray | None]]:
    """(index, frame, landmarks or None where no face) for each (index, frame) of a video at
    `fps` (None: stills), tracked from frame to frame; an unreadable frame (None) is passed on
    and leaves the tracker as it is."""
    finder.reset(fps)
    for index, frame in frames:
        if frame is None:
            yield index, None, None
            continue
        face, _ = finder(frame)
        yield index, frame, None if face is None else face.landmarks


def smoothed(found: Iterable, fps: float | None, cutoff: float) -> Iterator[tuple]:
    """found_faces' items with their landmarks smoothed over the frames of a video: the One Euro
    filter (lm.LandmarkSmoother, minimum cutoff `cutoff` Hz; 0 or stills: none), restarted after
    a frame without a face as faces.find smooths. Causal: a frame's landmarks depend on the
    frames before it. The frame slot is passed on; None marks an unreadable frame, which leaves
    the filter as it is."""
    smoother = lm.LandmarkSmoother(fps, cutoff) if fps and cutoff > 0 else None
    for index, frame, points in found:
        if smoother is not None and frame is not None:
            if points is None:
                smoother.reset()
            else:
                points = smoother(points)
        yield index, frame, points


def face_crop(model: SwapModel, frame: np.ndarray,
              points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(affine frame -> crop, the landmarks in the crop, the uint8 crop) the model is given."""
    m = model.framing.matrix(points, model.size)
    return m, align.transform_points(m, points), align.crop(frame, m, model.size)


def model_faces(result) -> tuple[np.ndarray, list]:
    """The model's output for a batch of crops: uint8 faces [N, S, S, 3] and the learned masks
    (float [S, S] in [0, 1]; None each where the model gave none)."""
    result = np.clip(np.asarray(result), 0, 1)
    faces = (result[..., :3] * 255 + 0.5).astype(np.uint8)
    # A fourth channel is the model's learned mask (inference.swap_function).
    learned = list(result[..., 3]) if result.shape[-1] == 4 else [None] * len(faces)
    return faces, learned


def output_frame(frame: np.ndarray, swapped: np.ndarray, opts: ConvertOptions) -> np.ndarray:
    """The frame written: the swapped one, or original | swapped with --preview."""
    return np.concatenate([frame, swapped], axis=1) if opts.preview else swapped


def paste_frame(frame: np.ndarray, face: np.ndarray, affine: np.ndarray,
                crop_points: np.ndarray, opts: ConvertOptions, on_fallback=None,
                learned: np.ndarray | None = None,
                xseg: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(the frame written for `frame` with the model's `face`, the blend mask [H, W] in
    [0, 1]): compose.paste (`learned`: the model's mask; `xseg`: the segmenter's)."""
    out, alpha = compose.paste(frame, face, affine, crop_points, opts, on_fallback, learned,
                               xseg)
    return output_frame(frame, out, opts), alpha


# ---- videos, images, folders -------------------------------------------------------------------

def model_batches(items: Iterable, batch: int) -> Iterator[list]:
    """smoothed()'s items grouped as conversion gives them to the model: up to `batch` frames
    with a face in a row make a batch; a frame without a face ends the batch before it and is
    a group of its own, as is an unreadable frame (frame None), which ends no batch. The
    studio's preview runs a frame's batch as conversion does, so its face is the same."""
    pending = []
    for item in items:
        _, frame, points = item
        if frame is not None and points is not None:
            pending.append(item)
            if len(pending) >= batch:
                yield pending
                pending = []
            continue
        if frame is not None and pending:
            yield pending
            pending = []
        yield [item]
    if pending:
        yield pending


class _Pastes:
    """The model's results waiting to be pasted: a batch is pasted while the next one runs."""

    def __init__(self, opts: ConvertOptions, emit, counts: dict, segment=None):
        self.opts, self.emit, self.counts, self.segment = opts, emit, counts, segment
        self.inflight = []  # (items, crops' affines, landmarks, xseg masks, result) not pasted

    def _fallback(self, index: int, error: Exception) -> None:
        if not self.counts["seamless_fallbacks"]:
            print(f"note: seamless blending failed at frame {index} ({one_line(error)[:120]}); "
                  "such frames are alpha-blended and counted in the summary",
                  file=sys.stderr, flush=True)
        self.counts["seamless_fallbacks"] += 1

    def flush(self) -> None:
        for items, geometry, result in self.inflight:
            faces, learned = model_faces(result)
            for (i, f, _), (m, pts, xmask), face, lmask in zip(items, geometry, faces, learned):
                out, _ = paste_frame(f, face, m, pts, self.opts,
                                     lambda e, i=i: self._fallback(i, e), lmask, xmask)
                self.emit(i, out)
        self.inflight.clear()

    def dispatch(self, model: SwapModel, items: list) -> None:
        """Runs the model on a batch of (index, frame, landmarks), then pastes the batch
        before it."""
        crops = [face_crop(model, frame, points) for _, frame, points in items]
        # JAX dispatch is asynchronous: the model runs while the previous batch is pasted and
        # the next one detected, so device and host work overlap.
        result = model.fn(np.stack([crop for _, _, crop in crops]))
        xseg = xseg_convert.crop_masks(self.segment, [frame for _, frame, _ in items],
                                       [m for m, _, _ in crops], model.size)
        self.flush()
        self.inflight.append((items, [(m, pts, x) for (m, pts, _), x in zip(crops, xseg)],
                              result))


def process_frames(frames, model: SwapModel, opts: ConvertOptions, emit,
                   progress=None, fps: float | None = None, segment=None) -> tuple[dict, list]:
    """Runs the per-frame work over (index, frame) pairs of a video at `fps` (None: stills, no
    smoothing); emit(index, frame_out). `segment`: the XSeg masks' function
    (xseg_convert.Segmenter; default: loaded from opts.xseg_model when opts.mask needs it).
    Returns counts and the landmark track used for pasting (None where no face)."""
    counts = {"frames": 0, "faces_swapped": 0, "passed_through": 0, "unreadable": 0}
    if opts.blend == "seamless":
        counts["seamless_fallbacks"] = 0
    if segment is None:
        segment = xseg_convert.load(opts.mask, opts.xseg_model, opts.batch)
    pastes = _Pastes(opts, emit, counts, segment)
    track = []

    def tracked(items):  # in frame order, before batching
        for item in items:
            track.append(item[2])
            yield item
    faces = smoothed(found_faces(frames, make_finder(opts), fps), fps, opts.smooth)
    for group in model_batches(tracked(faces), opts.batch):
        index, frame, points = group[0]
        counts["frames"] += len(group)
        if frame is None:
            counts["unreadable"] += 1
        elif points is None:
            pastes.flush()  # keep output order
            counts["passed_through"] += 1
            emit(index, output_frame(frame, frame, opts))
        else:
            pastes.dispatch(model, group)
            counts["faces_swapped"] += len(group)
        if progress:
            progress.update(counts["frames"], swapped=counts["faces_swapped"])
    pastes.flush()
    return counts, track


def convert(model, input_path: str, output: str, opts: ConvertOptions,
            verbose: bool = True, segment=None) -> dict:
    """Converts a video, an image or a folder of images. `model` is a SwapModel; `segment`
    the XSeg masks' function (process_frames).

    Video in -> video out: H.264 MP4 (or the container OUTPUT names), same fps, size and frame
    count, the input's audio muxed in (facejax/faces/video_writer.py), its sample aspect ratio,
    colour tags and VFR timestamps kept, upright frames with no rotation tag (video_look.py).
    Image or folder in -> folder out (same file names), or one image file for one image.
    Returns the summary, also written next to the output (`*.summary.json` or summary.json).
    """
    opts.check()
    files.check_output(output, [input_path])
    try:
        if segment is None:  # a bad --xseg_model fails before anything is written
            segment = xseg_convert.load(opts.mask, opts.xseg_model, opts.batch)
        return _convert(model, input_path, output, opts, verbose, segment)
    except OSError as e:  # disk full and the like, writing images or the summary
        raise write_failed(e, os.path.dirname(os.path.abspath(output)),
                           "the input and the outputs written so far")


def _convert(model, input_path: str, output: str, opts: ConvertOptions, verbose: bool,
             segment) -> dict:
    """convert()'s work, with checked options and output path."""
    source = video.FrameSource(input_path)
    start = time.monotonic()
    progress = Progress("convert", total=len(source), unit="frames") if verbose else None
    if source.kind == "video":
        out_dir = os.path.dirname(os.path.abspath(output))
        if not os.path.isdir(out_dir):
            raise UserError(f"--output {output}: folder {out_dir} does not exist")
        w = source.info.width * (2 if opts.preview else 1)
        look = video_look.probe(input_path, video_writer.ffmpeg())
        with video_writer.VideoWriter(output, source.info.fps, (w, source.info.height),
                                      audio_from=input_path, look=look) as writer:
            counts, track = process_frames(source.frames(), model, opts,
                                           lambda i, f: writer.write(f), progress,
                                           fps=source.info.fps, segment=segment)
        summary_path = os.path.splitext(output)[0] + ".summary.json"
    else:
        single = source.kind == "image" and video.is_image_path(output)
        out_dir = os.path.dirname(os.path.abspath(output)) if single else output
        parent = os.path.dirname(os.path.abspath(out_dir))
        if not os.path.isdir(parent):
            raise UserError(f"--output {output}: folder {parent} does not exist")
        os.makedirs(out_dir, exist_ok=True)

        def emit(i, frame):
            name = output if single else os.path.join(
                out_dir, os.path.basename(source.name_of(i)))
            images.write_image(name, frame)

        counts, track = process_frames(source.frames(), model, opts, emit, progress,
                                       segment=segment)
        summary_path = (os.path.splitext(output)[0] + ".summary.json" if single
                        else os.path.join(out_dir, "summary.json"))
    seconds = time.monotonic() - start
    summary = dict(counts, seconds=round(seconds, 3),
                   fps=round(counts["frames"] / max(seconds, 1e-9), 2), face_selection=opts.select)
    files.atomic_write_bytes(summary_path, json.dumps(summary, indent=1).encode())
    if progress:
        progress.close(swapped=counts["faces_swapped"])
    summary["track"] = track
    return summary

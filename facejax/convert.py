"""Swap faces into videos and images: detect/track, align, model, inverse warp, mask, colour, blend.

The model sees the face through the same geometry as in training: the similarity alignment of
extraction (its coverage) restricted to the region the model family looks at. Frames without a
face pass through unchanged. Output files appear only when complete.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

import numpy as np

from facejax import files, images
from facejax.errors import UserError, one_line, write_failed
from facejax.faces import align, compose, detect, find, video, video_look, video_writer
from facejax.inference import SwapModel
from facejax.progress import Progress


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

    def check(self):
        if self.direction not in ("b2a", "a2b"):
            raise UserError(f"--direction {self.direction}: expected one of b2a, a2b")
        super().check()
        if self.smooth < 0.0:
            raise UserError(f"--smooth {self.smooth}: must be 0 (off) or a cutoff in Hz")
        if self.select not in find.SELECT:
            raise UserError(f"--select {self.select}: expected one of {', '.join(find.SELECT)}")
        if self.batch < 1:
            raise UserError(f"--batch {self.batch}: must be at least 1")


# ---- videos, images, folders -----------------------------------------------------------------

def _out_frame(frame, swapped, preview):
    return np.concatenate([frame, swapped], axis=1) if preview else swapped


def process_frames(frames, model: SwapModel, opts: ConvertOptions, emit,
                   progress=None, fps: float | None = None) -> tuple[dict, list]:
    """Runs the per-frame work over (index, frame) pairs of a video at `fps` (None: stills, no
    smoothing); emit(index, frame_out). Returns counts and the landmark track used for pasting
    (None where no face)."""
    finder = find.FaceFinder(detect.make_detector(opts.detector), min_face=0,
                             confirm_every=opts.confirm_every, select=opts.select,
                             smooth=opts.smooth)
    finder.reset(fps)
    counts = {"frames": 0, "faces_swapped": 0, "passed_through": 0, "unreadable": 0}
    if opts.blend == "seamless":
        counts["seamless_fallbacks"] = 0

    def fallback(index, error):
        if not counts["seamless_fallbacks"]:
            print(f"note: seamless blending failed at frame {index} ({one_line(error)[:120]}); "
                  "such frames are alpha-blended and counted in the summary",
                  file=sys.stderr, flush=True)
        counts["seamless_fallbacks"] += 1
    track = []
    pending = []   # (index, frame, affine, crop points) waiting for the model
    inflight = []  # (items, result) dispatched to the device, not pasted yet

    def paste_inflight():
        for items, result in inflight:
            result = np.clip(np.asarray(result), 0, 1)
            faces = (result[..., :3] * 255 + 0.5).astype(np.uint8)
            # A fourth channel is the model's learned mask (inference.swap_function).
            learned = result[..., 3] if result.shape[-1] == 4 else [None] * len(faces)
            for (i, f, m, pts), face, lmask in zip(items, faces, learned):
                out, _ = compose.paste(f, face, m, pts, opts,
                                       lambda e, i=i: fallback(i, e), lmask)
                emit(i, _out_frame(f, out, opts.preview))
        inflight.clear()

    def dispatch():
        # JAX dispatch is asynchronous: the model runs while the previous batch is pasted and
        # the next one detected, so device and host work overlap.
        if pending:
            crops = np.stack([align.crop(f, m, model.size) for _, f, m, _ in pending])
            result = model.fn(crops)
            paste_inflight()
            inflight.append((list(pending), result))
            pending.clear()

    def flush():
        dispatch()
        paste_inflight()

    for index, frame in frames:
        counts["frames"] += 1
        if frame is None:
            counts["unreadable"] += 1
            track.append(None)
            continue
        face, _ = finder(frame)
        if face is None:
            flush()  # keep output order
            counts["passed_through"] += 1
            track.append(None)
            emit(index, _out_frame(frame, frame, opts.preview))
        else:
            pts = face.landmarks
            track.append(pts)
            m = model.framing.matrix(pts, model.size)
            pending.append((index, frame, m, align.transform_points(m, pts)))
            counts["faces_swapped"] += 1
            if len(pending) >= opts.batch:
                dispatch()
        if progress:
            progress.update(counts["frames"], swapped=counts["faces_swapped"])
    flush()
    return counts, track


def convert(model, input_path: str, output: str, opts: ConvertOptions,
            verbose: bool = True) -> dict:
    """Converts a video, an image or a folder of images. `model` is a SwapModel.

    Video in -> video out: H.264 MP4 (or the container OUTPUT names), same fps, size and frame
    count, the input's audio muxed in (facejax/faces/video_writer.py), its sample aspect ratio,
    colour tags and VFR timestamps kept, upright frames with no rotation tag (video_look.py).
    Image or folder in -> folder out (same file names), or one image file for one image.
    Returns the summary, also written next to the output (`*.summary.json` or summary.json).
    """
    opts.check()
    files.check_output(output, [input_path])
    try:
        return _convert(model, input_path, output, opts, verbose)
    except OSError as e:  # disk full and the like, writing images or the summary
        raise write_failed(e, os.path.dirname(os.path.abspath(output)),
                           "the input and the outputs written so far")


def _convert(model, input_path: str, output: str, opts: ConvertOptions, verbose: bool) -> dict:
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
                                           fps=source.info.fps)
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

        counts, track = process_frames(source.frames(), model, opts, emit, progress)
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

"""Swap faces into videos and images: detect/track, align, model, inverse warp, mask, colour, blend.

The model sees the face through the same geometry as in training: the similarity alignment of
extraction (its coverage) restricted to the region the model family looks at. Frames without a
face pass through unchanged. Output files appear only when complete.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import time
from typing import Callable

import cv2
import jax
import numpy as np
from absl import logging

from facejax import inference
from facejax.data import extract as extract_lib
from facejax.errors import UserError
from facejax.faces import align, detect, find, landmarks as lm, masks, video
from facejax.progress import Progress


@dataclasses.dataclass
class ConvertOptions:
    direction: str = "b2a"
    mask: str = "hull"          # "hull" (landmark hull) or "crop" (the whole crop)
    erode: int = 0              # pixels in the frame; negative grows the mask
    blur: int = 0               # feathering radius in frame pixels; 0 = hard edge
    color: str = "rct"          # "none", "rct" (LAB mean/std), "hist" (histogram matching)
    blend: str = "alpha"        # "alpha" or "seamless" (OpenCV seamless clone)
    smooth: float = 0.0         # landmark smoothing strength in [0, 1)
    batch: int = 8
    preview: bool = False       # original | swapped side by side
    detector: str = "hog"
    confirm_every: int = 2      # re-detect a tracked face every n frames (1: every frame)

    def check(self):
        for name, value, allowed in (("direction", self.direction, ("b2a", "a2b")),
                                     ("mask", self.mask, ("hull", "crop")),
                                     ("color", self.color, ("none", "rct", "hist")),
                                     ("blend", self.blend, ("alpha", "seamless"))):
            if value not in allowed:
                raise UserError(f"--{name} {value}: expected one of {', '.join(allowed)}")
        if not 0.0 <= self.smooth < 1.0:
            raise UserError(f"--smooth {self.smooth}: must be in [0, 1)")
        if self.batch < 1:
            raise UserError(f"--batch {self.batch}: must be at least 1")


# ---- colour matching (crop space, inside the mask) -------------------------------------------

def match_rct(face: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Reinhard colour transfer: `face`'s LAB mean/std set to `target`'s, within `mask`."""
    sel = mask > 0.5
    if sel.sum() < 10:
        return face
    f = cv2.cvtColor(face, cv2.COLOR_RGB2LAB).astype(np.float32)
    t = cv2.cvtColor(target, cv2.COLOR_RGB2LAB).astype(np.float32)
    fm, fs = f[sel].mean(0), f[sel].std(0) + 1e-6
    tm, ts = t[sel].mean(0), t[sel].std(0) + 1e-6
    out = (f - fm) * (ts / fs) + tm
    return cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def match_histogram(face: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-channel histogram matching of `face` to `target` within `mask`."""
    sel = mask > 0.5
    if sel.sum() < 10:
        return face
    out = face.copy()
    for c in range(3):
        src_vals = face[..., c][sel]
        ref_vals = target[..., c][sel]
        src_cdf = np.cumsum(np.bincount(src_vals, minlength=256)) / src_vals.size
        ref_cdf = np.cumsum(np.bincount(ref_vals, minlength=256)) / ref_vals.size
        lut = np.searchsorted(ref_cdf, src_cdf).clip(0, 255).astype(np.uint8)
        out[..., c] = lut[face[..., c]]
    return out


COLOR = {"none": lambda f, t, m: f, "rct": match_rct, "hist": match_histogram}


# ---- one frame ---------------------------------------------------------------------------------

def paste(frame: np.ndarray, face: np.ndarray, affine: np.ndarray, crop_points: np.ndarray,
          opts: ConvertOptions) -> tuple[np.ndarray, np.ndarray]:
    """Blends a generated crop back into `frame`. Returns (new frame, alpha mask [H, W]).

    All the work happens in the frame region the crop covers (plus the feathering margin), not
    on the whole frame.
    """
    size = face.shape[0]
    h, w = frame.shape[:2]
    original = align.crop(frame, affine, size)
    crop_mask = (masks.face_hull(crop_points, (size, size)) if opts.mask == "hull"
                 else np.full((size, size), 255, np.uint8))
    face = COLOR[opts.color](face, original, crop_mask.astype(np.float32) / 255.0)
    corners = align.transform_points(align.invert(affine),
                                     np.array([[0, 0], [size, 0], [0, size], [size, size]]))
    margin = 2 * opts.blur + max(-opts.erode, 0) + 2
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int) - margin, 0)
    x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + margin, [w, h])
    alpha = np.zeros((h, w), np.float32)
    out = frame.copy()
    if x1 <= x0 or y1 <= y0:
        return out, alpha
    roi = np.array(affine, np.float64).copy()
    roi[:, 2] += roi[:, :2] @ np.array([x0, y0], np.float64)  # ROI pixel -> crop pixel
    shape = (y1 - y0, x1 - x0)
    warped = align.uncrop(face, roi, shape)
    hard = align.uncrop(crop_mask, roi, shape, interpolation=cv2.INTER_NEAREST)
    a = masks.feather(hard, opts.erode, opts.blur)
    alpha[y0:y1, x0:x1] = a
    if opts.blend == "seamless" and (a > 0.5).any():
        full = np.zeros_like(frame)
        full[y0:y1, x0:x1] = warped
        ys, xs = np.nonzero(alpha > 0.5)
        centre = (int((xs.min() + xs.max()) // 2), int((ys.min() + ys.max()) // 2))
        try:
            return cv2.seamlessClone(full, frame, (alpha > 0.5).astype(np.uint8) * 255, centre,
                                     cv2.NORMAL_CLONE), alpha
        except cv2.error:  # a face touching the border: fall back to alpha blending
            pass
    region = frame[y0:y1, x0:x1].astype(np.float32)
    blended = region + (warped.astype(np.float32) - region) * a[..., None]
    out[y0:y1, x0:x1] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return out, alpha


# ---- the model, as a function of crops ----------------------------------------------------------

@dataclasses.dataclass
class SwapModel:
    """A batched face function and the crop geometry it expects."""
    # uint8 [N, S, S, 3] -> float [N, S, S, 3] in [0, 1]; may return a jax.Array still being
    # computed (it is read only when pasted).
    fn: Callable[[np.ndarray], np.ndarray]
    size: int
    coverage: float  # jaw width / crop side, as given to align.align_matrix


def load_swapper(workdir: str):
    """(config, task, state, size, coverage) of a trained run that has a swap direction.

    `coverage` is the jaw width / crop side the model's input crop needs (align.align_matrix).
    """
    config, task, state = inference.load_run(workdir)
    if config.model.get("conv_impl") == "auto":
        # Forward only: XLA's own strided convolution is the faster one here (the space-to-depth
        # form wins on the backward pass of training), while its transposed convolution is not
        # (CycleGAN's 64×64×256 -> 128 on CPU: 48-50 ms against 19-26 for the phase form).
        # Same parameters either way.
        config.model.conv_impl = "xla"
        config.model.up_impl = "auto"
    if not hasattr(task, "swap"):
        raise UserError(f"--model {workdir}: a {config.task} run has no swap direction "
                        "(face2face models reenact: use tools/reenact.py)")
    return config, task, state, int(config.model.size), model_coverage(config, task)


def model_coverage(config, task) -> float:
    """Jaw width / side of the crop the model sees: the extraction's coverage over the task's
    model region (the extraction settings are read from the training data's folder)."""
    coverage = 0.75
    cfg_path = os.path.join(config.data.a, extract_lib.CONFIG_FILE)
    if os.path.isfile(cfg_path):
        with open(cfg_path) as f:
            coverage = float(json.load(f).get("coverage", coverage))
    else:
        logging.warning("%s missing: assuming the default coverage %.2f", cfg_path, coverage)
    return coverage / task.model_region(config)


def batched(fn, batch: int):
    """uint8 crops [n, S, S, 3] -> fn(crops in [0, 1]) for any n, compiled for one batch size."""
    def run(crops: np.ndarray):
        n = len(crops)
        if n < batch:
            crops = np.concatenate([crops, np.zeros((batch - n,) + crops.shape[1:], crops.dtype)])
        return fn(crops)[:n]
    return run


def load_model(workdir: str, direction: str, batch: int) -> SwapModel:
    """The swap function of a trained run, compiled once for a fixed batch size."""
    config, task, state, size, coverage = load_swapper(workdir)
    fn = jax.jit(lambda s, x: task.swap(s, x.astype(np.float32) / 255.0, direction, config))
    return SwapModel(batched(lambda x: fn(state, x), batch), size, coverage)


# ---- videos, images, folders -----------------------------------------------------------------

def _out_frame(frame, swapped, preview):
    return np.concatenate([frame, swapped], axis=1) if preview else swapped


def _process(frames, model: SwapModel, opts: ConvertOptions, emit, progress=None) -> dict:
    """Runs the per-frame work over (index, frame) pairs; emit(index, frame_out). Returns counts
    and the landmark track used for pasting (None where no face)."""
    finder = find.FaceFinder(detect.make_detector(opts.detector), min_face=0,
                             confirm_every=opts.confirm_every)
    smoother = lm.LandmarkSmoother(opts.smooth) if opts.smooth else None
    counts = {"frames": 0, "faces_swapped": 0, "passed_through": 0, "unreadable": 0}
    track = []
    pending = []   # (index, frame, affine, crop points) waiting for the model
    inflight = []  # (items, result) dispatched to the device, not pasted yet

    def paste_inflight():
        for items, result in inflight:
            faces = (np.clip(np.asarray(result), 0, 1) * 255 + 0.5).astype(np.uint8)
            for (i, f, m, pts), face in zip(items, faces):
                out, _ = paste(f, face, m, pts, opts)
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
            if smoother:
                smoother.reset()
            flush()  # keep output order
            counts["passed_through"] += 1
            track.append(None)
            emit(index, _out_frame(frame, frame, opts.preview))
        else:
            pts = smoother(face.landmarks) if smoother else face.landmarks
            track.append(pts)
            m = align.align_matrix(pts, model.size, model.coverage)
            pending.append((index, frame, m, align.transform_points(m, pts)))
            counts["faces_swapped"] += 1
            if len(pending) >= opts.batch:
                dispatch()
        if progress:
            progress.update(counts["frames"], swapped=counts["faces_swapped"])
    flush()
    return counts, track


def _copy_audio(source: str, silent_video: str, output: str) -> bool:
    ffmpeg = shutil.which("ffmpeg")
    if not ffmpeg:
        return False
    tmp = os.path.join(os.path.dirname(os.path.abspath(output)),
                       f".tmp-audio-{os.getpid()}-{os.path.basename(output)}")
    proc = subprocess.run([ffmpeg, "-y", "-loglevel", "error", "-i", silent_video, "-i", source,
                           "-map", "0:v", "-map", "1:a?", "-c", "copy", tmp],
                          capture_output=True)
    if proc.returncode != 0:
        if os.path.exists(tmp):
            os.unlink(tmp)
        return False
    os.replace(tmp, output)
    return True


def convert(model, input_path: str, output: str, opts: ConvertOptions,
            verbose: bool = True) -> dict:
    """Converts a video, an image or a folder of images. `model` is a SwapModel.

    Video in -> video out (same fps, size and frame count; audio copied when ffmpeg exists).
    Image or folder in -> folder out (same file names), or one image file for one image.
    Returns the summary, also written next to the output (`*.summary.json` or summary.json).
    """
    opts.check()
    source = video.FrameSource(input_path)
    start = time.monotonic()
    progress = Progress("convert", total=len(source), unit="frames") if verbose else None
    if source.kind == "video":
        out_dir = os.path.dirname(os.path.abspath(output))
        if not os.path.isdir(out_dir):
            raise UserError(f"--output {output}: folder {out_dir} does not exist")
        w = source.info.width * (2 if opts.preview else 1)
        silent = os.path.join(out_dir, f".tmp-silent-{os.getpid()}-{os.path.basename(output)}")
        writer = video.VideoWriter(silent, source.info.fps, (w, source.info.height))
        try:
            counts, track = _process(source.frames(), model, opts,
                                     lambda i, f: writer.write(f), progress)
            writer.close()
        except BaseException:
            writer.abort()
            raise
        if not _copy_audio(input_path, silent, output):
            if shutil.which("ffmpeg") is None:
                logging.warning("ffmpeg not found: the output video has no audio track")
            os.replace(silent, output)
        elif os.path.exists(silent):
            os.unlink(silent)
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
            video.write_image(name, frame)

        counts, track = _process(source.frames(), model, opts, emit, progress)
        summary_path = (os.path.splitext(output)[0] + ".summary.json" if single
                        else os.path.join(out_dir, "summary.json"))
    seconds = time.monotonic() - start
    summary = dict(counts, seconds=round(seconds, 3),
                   fps=round(counts["frames"] / max(seconds, 1e-9), 2))
    video.atomic_write_bytes(summary_path, json.dumps(summary, indent=1).encode())
    if progress:
        progress.close(swapped=counts["faces_swapped"])
    summary["track"] = track
    return summary

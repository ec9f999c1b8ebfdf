"""Reenactment: drive person A's face2face generator with another person's landmarks.

The driver's landmarks are aligned into the crop frame (in-plane rotation, scale and position
removed), then retargeted: the driver's pose and expression, as displacements from the driver's
own mean shape, are applied to A's mean shape, so A keeps A's proportions.
"""

from __future__ import annotations

import json
import os
import time

import jax
import numpy as np

from facejax import files, inference, run_info, runs, tasks
from facejax.errors import UserError
from facejax.faces import (align, detect, find, landmarks as lm, masks, video, video_look,
                           video_writer)
from facejax.progress import Progress


def retarget(driver: np.ndarray, driver_mean: np.ndarray, target_mean: np.ndarray) -> np.ndarray:
    """[T, 68, 2] driver shapes -> target shapes: target_mean + s·(driver - driver_mean).

    s = ratio of the two mean shapes' outer-eye-corner distances, so displacements keep their
    size relative to the face.
    """
    s = lm.eye_distance(target_mean) / lm.eye_distance(driver_mean)
    return target_mean[None] + s * (driver - driver_mean[None])


def displacements(shapes: np.ndarray, mean: np.ndarray, reference_mean: np.ndarray) -> np.ndarray:
    """The inverse view of `retarget`: displacements from `mean`, in `reference_mean`'s scale."""
    s = lm.eye_distance(reference_mean) / lm.eye_distance(mean)
    return (shapes - mean[None]) * s


def reenact(model_dir: str, driver_path: str, output: str, batch: int = 8,
            smooth: float = 1.0, detector: str = "hog", verbose: bool = True) -> dict:
    """Writes `output`: driver crop | retargeted landmark image | generated A, per driver frame.

    Returns a summary dict (frames, frames with a face, seconds, fps).
    """
    files.check_output(output, [driver_path, model_dir])
    config = runs.load_config(model_dir)
    if tasks.get(config.task).generate is None:
        raise UserError(f"--model {model_dir}: its task is {config.task}; reenactment needs a "
                        "face2face (pix2pix) run")
    run = inference.load_run(model_dir)
    task, state, size = run.task, run.state, run.size
    # A's mean shape in the model's crop, as recorded at training time (run_info).
    target_mean = run_info.mean_landmarks(run.info, "a", size)
    source = video.FrameSource(driver_path)
    finder = find.FaceFinder(detect.make_detector(detector), min_face=0, smooth=smooth)
    finder.reset(source.info.fps if source.kind == "video" else None)
    start = time.monotonic()
    # Pass 1: the driver's aligned landmarks (and the affine for its crop panel).
    shapes, affines = [], []
    for _, frame in source.frames():
        face = finder(frame)[0] if frame is not None else None
        if face is None:
            shapes.append(None)
            affines.append(None)
            continue
        pts = face.landmarks
        m = align.align_matrix(pts, size)
        affines.append(m)
        shapes.append(align.transform_points(m, pts).astype(np.float32))
    found = [s for s in shapes if s is not None]
    if not found:
        raise UserError(f"--driver {driver_path}: no face found in any frame")
    driver_mean = np.mean(found, axis=0)
    last = None
    for i, s in enumerate(shapes):  # frames without a face hold the last face seen
        if s is None and last is not None:
            shapes[i], affines[i] = shapes[last], affines[last]
        elif s is not None:
            last = i
    first = next(i for i, s in enumerate(shapes) if s is not None)
    for i in range(first):
        shapes[i], affines[i] = shapes[first], affines[first]
    retargeted = retarget(np.stack(shapes), driver_mean, target_mean)
    drawings = np.stack([masks.landmark_image(p, size) for p in retargeted])

    gen = jax.jit(lambda g, x: task.generate(g, x, config))
    fps = source.info.fps or 25.0
    progress = Progress("reenact", total=len(shapes), unit="frames") if verbose else None
    audio = driver_path if source.kind == "video" else None  # the driver's voice, in time
    # Its tags and sample aspect ratio, and a VFR clip's timestamps that keep its voice in sync.
    look = video_look.probe(driver_path, video_writer.ffmpeg()) if audio else None
    with video_writer.VideoWriter(output, fps, (3 * size, size), audio_from=audio,
                                  look=look) as writer:
        frames = source.frames()
        for lo in range(0, len(shapes), batch):
            x = drawings[lo:lo + batch]
            n = len(x)
            if n < batch:  # one compiled shape for every batch
                x = np.concatenate([x, np.zeros((batch - n,) + x.shape[1:], x.dtype)])
            faces = np.asarray(gen(state, x))[:n]
            for j in range(n):
                _, frame = next(frames)
                crop = (align.crop(frame, affines[lo + j], size) if frame is not None
                        else np.zeros((size, size, 3), np.uint8))
                out = (np.clip(faces[j], 0, 1) * 255 + 0.5).astype(np.uint8)
                writer.write(np.concatenate([crop, drawings[lo + j], out], axis=1))
            if progress:
                progress.update(lo + n)
    seconds = time.monotonic() - start
    summary = {"frames": len(shapes), "frames_with_face": len(found),
               "seconds": round(seconds, 2), "fps": round(len(shapes) / seconds, 2)}
    if progress:
        progress.close()
    files.atomic_write_bytes(os.path.splitext(output)[0] + ".summary.json",
                             json.dumps(summary, indent=1).encode())
    return summary

"""`facejax benchmark merge`: how fast the studio's merge preview (facejax/frame_preview.py)
shows a frame of a clip with a trained run's model.

The figures, wall and CPU seconds (the process's, all its threads): opening (decode and track
the whole clip), the first render (compiling the model, running the frame's batch), a render
after a paste option changed (erode, colour: the paste alone), a render of a frame whose model
batch has not run yet (the model on --batch crops, then the paste), a neighbour in a batch
already run, and a render after the smoothing changed (the track filtered again, the model on
the frame's new crops).
"""

from __future__ import annotations

import statistics
import time


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of fn()."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _median(times: list[tuple[float, float]]) -> dict:
    return {"wall": round(statistics.median(t[0] for t in times), 4),
            "cpu": round(statistics.median(t[1] for t in times), 4)}


def bench_merge(model_dir: str, clip: str, batch: int = 8) -> dict:
    """The merge preview's figures on `clip` with the run in `model_dir` (see the module)."""
    from facejax import convert, frame_preview
    base = convert.ConvertOptions(batch=batch)
    preview = None

    def open_preview():
        nonlocal preview
        preview = frame_preview.FramePreview(model_dir, clip)
    opened = _timed(open_preview)
    faces = [k for k in range(preview.frame_count) if preview.landmarks(k, base) is not None]
    # Frames two batches apart: each one's batch is new to the preview.
    apart = faces[::2 * batch]
    if len(apart) < 3:
        from facejax.errors import UserError
        raise UserError(f"--clip {clip}: {len(faces)} frames with a face; the benchmark needs "
                        f"{4 * batch + 1} or more")
    first, news = apart[0], apart[1:6]
    compiled = _timed(lambda: preview.render(first, base))
    paste = [_timed(lambda e=e, c=c: preview.render(first, convert.ConvertOptions(
        blur=8, batch=batch, erode=e, color=c)))
        for e in (2, 4, 6, -4, 0) for c in ("rct", "none", "hist")]
    new = [_timed(lambda k=k: preview.render(k, base)) for k in news]
    near = [_timed(lambda k=k: preview.render(k, base)) for k in faces[1:6]]
    smooth = [_timed(lambda s=s: preview.render(first, convert.ConvertOptions(
        blur=8, batch=batch, smooth=s))) for s in (0.5, 2.0, 0.0)]
    frame = preview.frame(first)
    return {"benchmark": "merge", "clip": clip, "frames": preview.frame_count,
            "frame_size": f"{frame.shape[1]}x{frame.shape[0]}",
            "model": f"{preview.run.config.task} {preview.run.size} px", "batch": batch,
            "open_s": _median([opened]), "first_render_s": _median([compiled]),
            "paste_changed_s": _median(paste), "new_batch_s": _median(new),
            "neighbour_s": _median(near), "smoothing_changed_s": _median(smooth)}

"""The work of extraction: an input's frames in chunks, each written whole; an input assembled
from its chunks.

An input's frames are cut into chunks of about `chunk_frames` source frames (a multiple of
every_n, so the kept frames are those of one pass), planned once per input in
`DIR/.chunks/<key>/plan.json`. A worker takes a span of consecutive chunks: it decodes up to
the span's first frame, and writes each chunk under `DIR/.chunks/<key>/.partial-<start>-<pid>`,
renamed to `DIR/.chunks/<key>/<start>` when complete. A kill loses at most the chunk in
progress (one per worker); a rerun skips the finished ones. The face tracker and the landmark
smoother restart at every chunk, so a chunk's records depend on its frames alone: an
interrupted, resumed or parallel extraction writes exactly the records of one pass. When every
chunk of an input is there, the input is assembled (hard links) into
`DIR/.partial-<key>-<pid>` and renamed to `DIR/inputs/<key>`.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import math
import os
import shutil
import time

import numpy as np

from facejax import files, images
from facejax.faces import align, detect, find, identity, video

CHUNKS = ".chunks"
INPUTS = "inputs"
PLAN = "plan.json"


def json_line(obj) -> str:
    return json.dumps(obj, separators=(",", ":")) + "\n"


def _chunks_dir(out_dir: str, key: str) -> str:
    return os.path.join(out_dir, CHUNKS, key)


def plan(out_dir: str, key: str, source: video.FrameSource, every_n: int,
         chunk_frames: int) -> list[int]:
    """The first frame of each chunk of an input (the last chunk runs to the end), as planned
    by the first run; a plan of other settings is dropped with its chunks."""
    folder = _chunks_dir(out_dir, key)
    step = math.ceil(chunk_frames / every_n) * every_n
    mine = {"every_n": every_n, "step": step,
            "starts": list(range(0, max(len(source), 1), step))}
    path = os.path.join(folder, PLAN)
    if os.path.exists(path):
        try:
            with open(path) as f:
                theirs = json.load(f)
            if {k: theirs.get(k) for k in ("every_n", "step")} == {
                    k: mine[k] for k in ("every_n", "step")}:
                return theirs["starts"]
        except (OSError, ValueError, KeyError):
            pass
        shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder, exist_ok=True)
    files.write_json(path, mine)
    return mine["starts"]


def finished_chunks(out_dir: str, key: str) -> set[int]:
    """The first frames of the chunks of an input that are written whole."""
    folder = _chunks_dir(out_dir, key)
    if not os.path.isdir(folder):
        return set()
    return {int(name) for name in os.listdir(folder) if name.isdigit()}


def remove_partial_chunks(out_dir: str, key: str) -> None:
    """Leftovers of a killed run (one run owns an input at a time: the folder is locked)."""
    for stale in glob.glob(os.path.join(glob.escape(_chunks_dir(out_dir, key)), ".partial-*")):
        shutil.rmtree(stale, ignore_errors=True)
    for stale in glob.glob(os.path.join(glob.escape(out_dir), f".partial-{glob.escape(key)}-*")):
        shutil.rmtree(stale, ignore_errors=True)


@dataclasses.dataclass
class Span:
    """Consecutive chunks of one input for one worker: chunk k covers [starts[k], starts[k+1])."""
    path: str
    key: str
    starts: list        # the input's whole plan
    first: int          # index into starts
    last: int           # index into starts, inclusive

    def bounds(self, k: int) -> tuple[int, int | None]:
        return self.starts[k], (self.starts[k + 1] if k + 1 < len(self.starts) else None)


def spans(path: str, key: str, starts: list, todo: list[int], max_chunks: int) -> list[Span]:
    """The chunk indices `todo` of an input as runs of consecutive chunks, none longer than
    `max_chunks` (so several workers can share one long video)."""
    out = []
    for k in sorted(todo):
        last = out[-1] if out else None
        if last and last.last == k - 1 and last.last - last.first + 1 < max_chunks:
            last.last = k
        else:
            out.append(Span(path, key, starts, k, k))
    return out


# Per-process state of a worker (built once per process: the dlib models take a moment to load).
_WORKER = {}


def finder_for(opts, references=None) -> find.FaceFinder:
    """The face finder extraction runs with these options (and reference embeddings)."""
    det = detect.make_detector(opts.detector, opts.detect_max_side, opts.max_upsample)
    target = identity.TargetFilter(references) if references is not None else None
    return find.FaceFinder(det, opts.min_face, target, select=opts.select, smooth=opts.smooth)


def _count(counters, i: int) -> None:
    """Adds one to the shared counter `i` under its lock: `+=` on a shared array is a read and a
    write, so two workers could lose one of their counts (a progress line ended at 1082/1083)."""
    with counters.get_lock():
        counters[i] += 1


def init_worker(opts, references, counters) -> None:
    _WORKER.update(opts=opts, finder=finder_for(opts, references), counters=counters)


def _empty_summary(start, stop) -> dict:
    return {"start": start, "stop": stop, "frames_read": 0, "faces_kept": 0,
            "skipped": {r: 0 for r in find.SKIP_REASONS}, "seconds": 0.0}


class _Chunk:
    """One chunk being written: its partial folder, records and counts."""

    def __init__(self, out_dir: str, key: str, start: int, stop: int | None, selection: str):
        self.final = os.path.join(_chunks_dir(out_dir, key), str(start))
        self.partial = os.path.join(_chunks_dir(out_dir, key),
                                    f".partial-{start}-{os.getpid()}")
        shutil.rmtree(self.partial, ignore_errors=True)
        os.makedirs(os.path.join(self.partial, "faces"))
        self.lines, self.summary = [], _empty_summary(start, stop)
        self.summary["face_selection"] = selection  # how the face was chosen among several
        self.t = time.monotonic()

    def finish(self) -> dict:
        self.summary["seconds"] = round(time.monotonic() - self.t, 3)
        with open(os.path.join(self.partial, "alignments.jsonl"), "w") as f:
            f.writelines(json_line(x) for x in self.lines)
        with open(os.path.join(self.partial, "summary.json"), "w") as f:
            json.dump(self.summary, f)
        os.replace(self.partial, self.final)
        return self.summary


def extract_span(span: Span, out_dir: str) -> list[dict]:
    """Writes the chunks of `span`. Returns their summaries."""
    opts, finder, counters = _WORKER["opts"], _WORKER["finder"], _WORKER["counters"]
    report = _WORKER.get("report")
    source = video.FrameSource(span.path)
    done, chunk, k = [], None, span.first

    # The rate of the frames kept, for the landmark smoothing; stills are not smoothed.
    fps = source.info.fps / opts.every_n if source.kind == "video" else None

    def start_chunk(k):
        finder.reset(fps)  # a chunk's records depend on its frames alone
        return _Chunk(out_dir, span.key, *span.bounds(k), finder.selection)

    chunk = start_chunk(k)
    try:
        stop = span.bounds(span.last)[1]
        for index, frame in source.frames(opts.every_n, span.starts[span.first], stop):
            while span.bounds(k)[1] is not None and index >= span.bounds(k)[1]:
                done.append(chunk.finish())
                k += 1
                chunk = start_chunk(k)
            s = chunk.summary
            s["frames_read"] += 1
            _count(counters, 0)
            if report:
                report()
            if frame is None:
                s["skipped"][find.UNREADABLE] += 1
                continue
            if source.kind != "video":
                finder.reset()
            face, reason = finder(frame)
            if face is None:
                s["skipped"][reason] += 1
                continue
            points = face.landmarks
            affine = align.align_matrix(points, opts.size, opts.coverage)
            images.write_image(os.path.join(chunk.partial, "faces", f"{index:06d}.png"),
                               align.crop(frame, affine, opts.size))
            chunk.lines.append({
                "record": f"{span.key}/{index:06d}", "source": source.name_of(index),
                "input": span.path, "frame": index, "box": face.box.as_list(),
                "landmarks": np.round(points, 2).tolist(),
                "affine": np.round(affine, 6).tolist(), "identity": opts.identity,
                "size": opts.size, "frame_size": [frame.shape[1], frame.shape[0]],
            })
            s["faces_kept"] += 1
            _count(counters, 1)
        # The chunks left (past the end of a video shorter than its frame count said) are empty.
        while True:
            done.append(chunk.finish())
            if k == span.last:
                break
            k += 1
            chunk = start_chunk(k)
    except BaseException:
        shutil.rmtree(chunk.partial, ignore_errors=True)
        raise
    return done


def assemble(out_dir: str, path: str, key: str, starts: list) -> dict:
    """DIR/inputs/<key> from the input's finished chunks (then removed). Returns its summary."""
    folder = _chunks_dir(out_dir, key)
    partial = os.path.join(out_dir, f".partial-{key}-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(os.path.join(partial, "faces"))
    total = dict(_empty_summary(0, None), input=path, key=key)
    del total["start"], total["stop"]
    lines = []
    try:
        for start in starts:
            chunk = os.path.join(folder, str(start))
            for name in sorted(os.listdir(os.path.join(chunk, "faces"))):
                src = os.path.join(chunk, "faces", name)
                dst = os.path.join(partial, "faces", name)
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copyfile(src, dst)
            with open(os.path.join(chunk, "alignments.jsonl")) as f:
                lines.extend(f.readlines())
            with open(os.path.join(chunk, "summary.json")) as f:
                s = json.load(f)
            for k in ("frames_read", "faces_kept", "seconds"):
                total[k] += s[k]
            for r, n in s["skipped"].items():
                total["skipped"][r] += n
            total["face_selection"] = s.get("face_selection")
        total["seconds"] = round(total["seconds"], 3)
        with open(os.path.join(partial, "alignments.jsonl"), "w") as f:
            f.writelines(lines)
        with open(os.path.join(partial, "summary.json"), "w") as f:
            json.dump(total, f, indent=1)
        final = os.path.join(out_dir, INPUTS, key)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial, final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    shutil.rmtree(folder, ignore_errors=True)
    return total

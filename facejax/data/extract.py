"""Video/image inputs -> aligned face records on disk (resumable, parallel over inputs).

Layout of an extraction directory (see WORKSPACE.md):

    DIR/extract_config.json      crop size and coverage; a rerun must use the same
    DIR/inputs/<key>/faces/NNNNNN.png   aligned crops of one finished input
    DIR/inputs/<key>/alignments.jsonl   one line per kept face of that input
    DIR/inputs/<key>/summary.json       counts for that input
    DIR/alignments.jsonl, DIR/summary.json   merged over every finished input

An input is extracted in chunks of frames (facejax/data/extract_work.py), each written whole,
and assembled into `inputs/<key>` when all are there: a crash or kill loses at most the chunk
in progress per worker and never leaves a half record; a rerun skips finished chunks and
inputs and so never duplicates one. One long video is shared by several workers.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import multiprocessing
import os
import re
import time

import numpy as np

from facejax import files
from facejax.data import extract_work as work
from facejax.errors import UserError, one_line, write_failed
from facejax.faces import detect, find, identity, video
from facejax.lock import FolderLock
from facejax.progress import Progress

CONFIG_FILE = "extract_config.json"
INPUTS = work.INPUTS


@dataclasses.dataclass
class ExtractOptions:
    size: int = 256
    coverage: float = 0.75
    identity: str = ""
    every_n: int = 1
    detector: str = "hog"
    detect_max_side: int = 640
    max_upsample: int = 1
    min_face: float = 40.0
    smooth: float = 1.0         # landmark smoothing: One Euro minimum cutoff, Hz (0: off)
    select: str = "largest"     # find.SELECT: the face kept when several are found
    reference: tuple = ()
    workers: int = 1
    chunk_frames: int = 1000    # frames of a video written at once (resume granularity)


def input_key(path: str) -> str:
    """A file-system-safe, unique name for an input: its base name and a hash of its full path.

    Names from user data never become paths unsanitised, so nothing is written outside DIR.
    """
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", os.path.basename(os.path.normpath(path)))[:60]
    base = base.lstrip(".") or "input"
    digest = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:8]
    return f"{base}-{digest}"


def check_or_write_config(out_dir: str, opts: ExtractOptions) -> None:
    """Creates DIR and its config, or checks a rerun uses the same crop geometry."""
    try:
        os.makedirs(os.path.join(out_dir, INPUTS), exist_ok=True)
    except OSError as e:
        raise UserError(f"--output {out_dir}: cannot create it ({e.strerror})")
    path = os.path.join(out_dir, CONFIG_FILE)
    mine = {"size": opts.size, "coverage": opts.coverage}
    if os.path.exists(path):
        with open(path) as f:
            theirs = json.load(f)
        if {k: theirs.get(k) for k in mine} != mine:
            raise UserError(f"--output {out_dir}: extracted before with {theirs}, now asked for "
                            f"{mine}; use another output folder")
        return
    files.atomic_write_bytes(path, json.dumps(mine, indent=1).encode())


def reference_embeddings(paths, detector) -> np.ndarray:
    """Embeddings of the faces in the reference images (each: image file or folder)."""
    finder = find.FaceFinder(detector, min_face=0, track=False)
    embedder = identity.FaceEmbedder()
    out = []
    for path in paths:
        if not os.path.exists(path):
            raise UserError(f"--reference {path}: no such file or folder")
        source = video.FrameSource(path)
        for _, frame in source.frames(every_n=max(1, len(source) // 20)):
            if frame is None:
                continue
            finder.reset()
            face, _ = finder(frame)
            if face is not None:
                out.append(embedder.from_landmarks(frame, face.landmarks))
    if not out:
        raise UserError(f"--reference {','.join(paths)}: no face found in the reference images")
    return np.stack(out)


def merge(out_dir: str) -> dict:
    """Rebuilds DIR/alignments.jsonl and DIR/summary.json from every finished input."""
    inputs_dir = os.path.join(out_dir, INPUTS)
    total = {"inputs": 0, "frames_read": 0, "faces_kept": 0,
             "skipped": {r: 0 for r in find.SKIP_REASONS}, "seconds": 0.0}
    lines, selections = [], {}
    for key in sorted(os.listdir(inputs_dir)):
        with open(os.path.join(inputs_dir, key, "summary.json")) as f:
            s = json.load(f)
        total["inputs"] += 1
        selections[key] = s.get("face_selection")
        for k in ("frames_read", "faces_kept", "seconds"):
            total[k] += s.get(k, 0)
        for r, n in s["skipped"].items():
            total["skipped"][r] = total["skipped"].get(r, 0) + n
        with open(os.path.join(inputs_dir, key, "alignments.jsonl")) as f:
            lines.extend(f.readlines())
    # How the kept face was chosen where several were found: one rule, or each input's.
    total["face_selection"] = (next(iter(set(selections.values())))
                               if len(set(selections.values())) == 1 else selections)
    total["seconds"] = round(total["seconds"], 3)
    total["frames_per_second"] = round(total["frames_read"] / max(total["seconds"], 1e-9), 2)
    files.atomic_write_bytes(os.path.join(out_dir, "alignments.jsonl"), "".join(lines).encode())
    return total


def expand_inputs(inputs) -> list[str]:
    """Splits comma-separated lists; keeps the order given, drops duplicates."""
    out = []
    for item in inputs:
        for p in str(item).split(","):
            p = p.strip()
            if p and p not in out:
                out.append(p)
    if not out:
        raise UserError("--input: give at least one video, image or folder")
    return out


def extract(inputs, out_dir: str, opts: ExtractOptions, num_shards: int = 1,
            shard_index: int = 0, verbose: bool = True) -> dict:
    """Extracts aligned faces from `inputs` into `out_dir`. Returns the merged summary.

    Each input is processed at most once over reruns; failed inputs are reported in the
    summary under "failed" and retried on the next run.
    """
    if not 0 <= shard_index < num_shards:
        raise UserError(f"--shard_index {shard_index}: must be in [0, --num_shards={num_shards})")
    if opts.size < 16:
        raise UserError(f"--size {opts.size}: must be at least 16")
    if opts.every_n < 1:
        raise UserError(f"--every_n {opts.every_n}: must be at least 1")
    every = expand_inputs(inputs)
    files.check_output(out_dir, every, own="extraction folder")
    paths = every[shard_index::num_shards]
    check_or_write_config(out_dir, opts)
    # One writer per folder (per shard: disjoint shards of one job write into one folder).
    name = ".lock" if num_shards == 1 else f".lock-shard-{shard_index}-of-{num_shards}"
    lock = FolderLock(out_dir, name, what="extraction folder")
    try:
        return _extract(paths, out_dir, opts, verbose)
    except OSError as e:  # disk full and the like: the finished chunks stay for the rerun
        raise write_failed(e, out_dir, "the finished inputs and chunks")
    finally:
        lock.release()


def _extract(paths, out_dir: str, opts: ExtractOptions, verbose: bool) -> dict:
    """extract()'s work on this shard's inputs, in a locked folder."""
    references = None
    if opts.reference:
        det = detect.make_detector(opts.detector, opts.detect_max_side, opts.max_upsample)
        references = reference_embeddings(opts.reference, det)
    todo = [p for p in paths if not os.path.isdir(os.path.join(out_dir, INPUTS, input_key(p)))]
    start = time.monotonic()
    failed, plans, remaining, lengths = [], {}, [], {}
    for p in todo:
        key = input_key(p)
        work.remove_partial_chunks(out_dir, key)
        try:
            source = video.FrameSource(p)
        except UserError as e:
            failed.append({"input": p, "error": one_line(e)})
            continue
        plans[p] = work.plan(out_dir, key, source, opts.every_n, opts.chunk_frames)
        lengths[p] = len(source)
        finished = work.finished_chunks(out_dir, key)
        remaining.append((p, key, [k for k, s in enumerate(plans[p]) if s not in finished]))
    # Split the chunks left over the workers: several may share one long video.
    workers = max(1, opts.workers)
    total_chunks = sum(len(t) for *_, t in remaining)
    per_span = max(1, -(-total_chunks // workers))
    spans = [sp for p, key, t in remaining for sp in work.spans(p, key, plans[p], t, per_span)]
    # Frames this run reads (OpenCV's frame counts): the progress line's total and ETA.
    to_read = sum(-(-((sp.bounds(sp.last)[1] or lengths[sp.path]) - sp.starts[sp.first])
                    // opts.every_n) for sp in spans)
    progress = Progress("extract", total=to_read or None, unit="frames") if verbose else None
    keys = {p: key for p, key, _ in remaining}

    def assemble_finished():
        # An input appears in inputs/ as soon as its last chunk is written.
        for p, key in list(keys.items()):
            if work.finished_chunks(out_dir, key) >= set(plans[p]):
                work.assemble(out_dir, p, key, plans[p])
                del keys[p]

    workers = max(1, min(workers, len(spans)))
    if workers == 1:
        counters = multiprocessing.Array("l", 2)  # the same counters the workers share
        work.init_worker(opts, references, counters)
        work._WORKER["report"] = ((lambda: progress.update(counters[0], faces=counters[1]))
                                  if progress else None)
        for sp in spans:
            work.extract_span(sp, out_dir)
            assemble_finished()
    elif spans:
        ctx = multiprocessing.get_context("spawn")
        counters = ctx.Array("l", 2)
        with concurrent.futures.ProcessPoolExecutor(
                workers, mp_context=ctx, initializer=work.init_worker,
                initargs=(opts, references, counters)) as pool:
            pending = {pool.submit(work.extract_span, sp, out_dir) for sp in spans}
            while pending:
                finished, pending = concurrent.futures.wait(pending, timeout=1.0)
                for f in finished:
                    f.result()
                assemble_finished()
                if progress:
                    progress.update(counters[0], faces=counters[1])
    assemble_finished()  # inputs whose chunks were all written by an earlier run
    total = merge(out_dir)
    total["this_run"] = {"inputs": len(todo), "skipped_finished": len(paths) - len(todo),
                         "chunks": sum(sp.last - sp.first + 1 for sp in spans),
                         "seconds": round(time.monotonic() - start, 3)}
    total["failed"] = failed
    files.write_json(os.path.join(out_dir, "summary.json"), total)
    if progress:
        if spans:  # the workers' last frames may have come after the last poll
            progress.done = counters[0]
        progress.close(faces=total["faces_kept"])
    return total

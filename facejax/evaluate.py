"""Swap quality: reconstruction, identity, expression transfer and steadiness, and a report.

For each source clip (A and B) every face is detected and aligned as in conversion, then
  - reconstructed through its own path (autoencoder: its own decoder; CycleGAN: its cycle) and
    compared with the input crop by PSNR and SSIM;
  - swapped to the other identity and pasted back into the frame, as facejax convert does;
  - the swapped frame's 68 landmarks are predicted (in the source face's box) and its dlib
    face-recognition embedding computed.
Identity compares the swapped faces' embeddings with reference sets: the source frames of A, of
B, and any distractor identities. The distance to an identity is the distance to its nearest
reference embedding; retrieval is correct when the nearest identity is the swap's target.
Expression is the landmark error between each source face and its swap (normalised by the
source's outer-eye-corner distance), and the mouth opening (inner lips, in eye distances) of
swap against source: its mean absolute error, and its correlation over the clip (noise when
the source's mouth hardly moves; the error is not).
Steadiness is the frame-to-frame landmark jitter of the swapped video against the source's.
Sharpness is the variance of the Laplacian inside the face hull of an aligned crop of the
swapped frame at the model's own resolution (`run.size`: nothing upsampled), against the same
figure on the real faces of the swap's target (the other clip):
a ratio of 1 is as sharp as the real person; a blurry swap scores well below. High-frequency
error counts as sharpness there too, so the reconstructions also report their detail
correlation: the correlation of their Laplacian with the input crop's inside the face hull
(detail where the real face has it: towards 1; blur or noise: towards 0).
The figures are computed in facejax/metrics.py, the report written by facejax/report.py.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time

import jax
import numpy as np

from facejax import files, inference, metrics, report
from facejax.errors import UserError
from facejax.faces import align, compose, detect, find, identity as identity_lib
from facejax.faces import landmarks as lm, masks, video

IDENTITIES = ("a", "b")
OTHER = {"a": "b", "b": "a"}


@dataclasses.dataclass
class EvalOptions:
    max_frames: int = 150       # per source clip
    every: int = 1              # use every n-th frame
    batch: int = 8
    detector: str = "hog"
    samples: int = 6            # rows of the sample grid per direction
    blur: int = 8               # pasting, as facejax convert
    color: str = "rct"
    tail: float = 0.0           # use only the last `tail` fraction of each clip (0: all of it)
    smooth: float = 1.0         # landmark smoothing for pasting, as facejax convert (0: off)
    step: int | None = None     # the checkpoint evaluated (None: the latest)

    def check(self):
        if not 0.0 <= self.tail < 1.0:
            raise UserError(f"--tail {self.tail}: must be in [0, 1)")
        if self.smooth < 0.0:
            raise UserError(f"--smooth {self.smooth}: must be 0 (off) or a cutoff in Hz")
        for name in ("max_frames", "every", "batch", "samples"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name} {getattr(self, name)}: must be at least 1")


@dataclasses.dataclass
class ClipResult:
    frames: list            # frame index of each face
    source_landmarks: list  # [68, 2] each
    swap_landmarks: list
    source_embeddings: list
    swap_embeddings: list
    psnr: list
    ssim: list
    samples: list           # (source crop, swap crop, reconstruction) uint8
    sharp_swap: list = dataclasses.field(default_factory=list)  # laplacian_variance per face
    sharp_real: list = dataclasses.field(default_factory=list)
    detail: list = dataclasses.field(default_factory=list)  # detail_correlation per face
    frames_read: int = 0
    no_face: int = 0


class Evaluator:
    """Holds a trained run's swap and reconstruction functions and the dlib models."""

    def __init__(self, workdir: str, opts: EvalOptions):
        self.opts = opts
        run = inference.load_swapper(workdir, opts.step)
        self.size, self.framing = run.size, run.framing
        self.config, self.task, self.step = run.config, run.task, run.step
        task, config, state = run.task, run.config, run.state
        rec = jax.jit(lambda s, x, i: task.reconstruct(s, x.astype(np.float32) / 255., i,
                                                       config), static_argnums=2)
        self.swap = {d: inference.swap_function(run, d, opts.batch) for d in ("a2b", "b2a")}
        self.rec = {i: inference.batched(lambda x, i=i: rec(state, x, i), opts.batch)
                    for i in IDENTITIES}
        self.paste_opts = compose.PasteOptions(blur=opts.blur, color=opts.color)
        self.predictor = lm.LandmarkPredictor()
        self.embedder = identity_lib.FaceEmbedder()

    def _finder(self):
        return find.FaceFinder(detect.make_detector(self.opts.detector), min_face=0,
                               smooth=self.opts.smooth)

    def faces(self, path: str):
        """(frame index, frame, Face) of every used frame with a face, and the counts. The swap
        is aligned and pasted with the Face's landmarks, smoothed over frames as facejax
        convert smooths them (`smooth`); steadiness is measured against the predictor's own
        (`source_landmarks`)."""
        source = video.FrameSource(path)
        finder = self._finder()
        fps = source.info.fps / self.opts.every if source.kind == "video" else None
        finder.reset(fps)
        counts = {"frames_read": 0, "no_face": 0}
        start = int(len(source) * (1.0 - self.opts.tail)) if self.opts.tail else 0

        def gen():
            for i, frame in source.frames(every_n=self.opts.every, start=start):
                if counts["frames_read"] >= self.opts.max_frames:
                    return
                counts["frames_read"] += 1
                face = None if frame is None else finder(frame)[0]
                if face is None:
                    finder.reset(fps)
                    counts["no_face"] += 1
                    continue
                yield i, frame, face
        return gen(), counts

    def run_clip(self, path: str, identity: str) -> ClipResult:
        """Swaps `identity`'s clip to the other identity; reconstructs it through its own path."""
        direction = f"{identity}2{OTHER[identity]}"
        out = ClipResult([], [], [], [], [], [], [], [])
        items, counts = self.faces(path)
        pending = []
        sample_every = max(1, self.opts.max_frames // self.opts.samples)

        def flush():
            if not pending:
                return
            crops = np.stack([c for *_, c in pending])
            swapped = metrics.to_uint8(self.swap[direction](crops))
            rec = np.clip(np.asarray(self.rec[identity](crops), np.float32), 0, 1)
            for (i, frame, face, m, crop), sw, r in zip(pending, swapped, rec):
                pts = align.transform_points(m, face.landmarks)
                own = face.predicted
                pasted, _ = compose.paste(frame, sw, m, pts, self.paste_opts)
                swap_lm = self.predictor(pasted, face.box)
                ref = crop.astype(np.float32) / np.float32(255.0)  # as the model sees it
                out.frames.append(i)
                out.source_landmarks.append(own.astype(np.float32))
                out.swap_landmarks.append(swap_lm.astype(np.float32))
                out.source_embeddings.append(self.embedder.from_landmarks(frame, own))
                out.swap_embeddings.append(self.embedder.from_landmarks(pasted, swap_lm))
                out.psnr.append(metrics.psnr(ref, r))
                out.detail.append(metrics.detail_correlation(
                    crop, metrics.to_uint8(r), masks.face_hull(pts, crop.shape[:2])))
                (swap_crop, real_crop), hull = self.sharpness_crops((pasted, frame), own)
                out.sharp_swap.append(metrics.laplacian_variance(swap_crop, hull))
                out.sharp_real.append(metrics.laplacian_variance(real_crop, hull))
                out.ssim.append(metrics.ssim(ref, r))
                if len(out.samples) < self.opts.samples and \
                        (len(out.frames) - 1) % sample_every == 0:
                    out.samples.append((crop, sw, metrics.to_uint8(r)))
            pending.clear()

        for i, frame, face in items:
            m = self.framing.matrix(face.landmarks, self.size)
            pending.append((i, frame, face, m, align.crop(frame, m, self.size)))
            if len(pending) >= self.opts.batch:
                flush()
        flush()
        out.frames_read, out.no_face = counts["frames_read"], counts["no_face"]
        if not out.frames:
            raise UserError(f"--{identity} {path}: no face found in "
                            f"{counts['frames_read']} frames")
        return out

    def sharpness_crops(self, images, landmarks):
        """`images` (frames) cropped as the model crops them, at its own size, and the face
        hull in that crop. At the model's size, not a fixed larger one: upsampling a 64 px
        swap would measure the interpolation, and the real faces are cut the same way."""
        m = self.framing.matrix(landmarks, self.size)
        hull = masks.face_hull(align.transform_points(m, landmarks), (self.size, self.size))
        return [align.crop(image, m, self.size) for image in images], hull

    def reference_set(self, path: str) -> np.ndarray:
        """Embeddings of the faces in a video, image or folder (a distractor identity)."""
        items, _ = self.faces(path)
        emb = [self.embedder.from_landmarks(frame, face.predicted) for _, frame, face in items]
        return np.array(emb, np.float32).reshape(-1, 128)


def clip_metrics(res: ClipResult, identity: str, sets: dict, every: int,
                 target: ClipResult, size: int | None = None) -> dict:
    """The figures of one source clip swapped to the other identity (`target`: the other
    identity's clip, whose real faces set the sharpness reference)."""
    src = np.array(res.source_landmarks)
    swp = np.array(res.swap_landmarks)
    nme = [lm.normalised_mean_error(p, t) for p, t in zip(swp, src)]
    mouth_src = [metrics.mouth_opening(p) for p in src]
    mouth_swp = [metrics.mouth_opening(p) for p in swp]
    j_src = metrics.track_jitter(src, res.frames, every)
    j_swp = metrics.track_jitter(swp, res.frames, every)
    finite_psnr = [p for p in res.psnr if math.isfinite(p)]
    return {
        "frames_read": res.frames_read, "faces": len(res.frames), "no_face": res.no_face,
        "reconstruction": {
            "psnr_mean": float(np.mean(finite_psnr)) if finite_psnr else math.inf,
            "ssim_mean": float(np.mean(res.ssim)),
            "detail_correlation": metrics.mean_finite(res.detail),
            "per_frame_psnr": res.psnr, "per_frame_ssim": res.ssim,
        },
        "identity": metrics.identity_metrics(
            np.array(res.swap_embeddings, np.float32).reshape(-1, 128), sets,
            target=OTHER[identity], source=identity),
        "expression": {
            "landmark_nme_mean": float(np.mean(nme)),
            "landmark_nme_median": float(np.median(nme)),
            "mouth_opening_correlation": metrics.correlation(mouth_src, mouth_swp),
            "mouth_opening_error": metrics.mean_abs_difference(mouth_src, mouth_swp),
            "per_frame_nme": nme, "per_frame_mouth_source": mouth_src,
            "per_frame_mouth_swap": mouth_swp,
        },
        "sharpness": {
            "crop_px": size,  # the model's own resolution: the crops' side
            "swap": metrics.mean_finite(res.sharp_swap),
            "source_real": metrics.mean_finite(res.sharp_real),
            "target_real": metrics.mean_finite(target.sharp_real),
            "ratio_to_target": (metrics.mean_finite(res.sharp_swap)
                                / metrics.mean_finite(target.sharp_real)),
        },
        "steadiness": {
            "jitter_source": j_src, "jitter_swap": j_swp,
            "jitter_ratio": j_swp / j_src if j_src and math.isfinite(j_src) else math.nan,
        },
        "frame_index": res.frames,
    }


def distractor_name(path: str, taken) -> str:
    base = os.path.basename(os.path.normpath(path)) or "distractor"
    base = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in base)
    name, k = base, 2
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    return name


def evaluate(workdir: str, a: str, b: str, output: str, distractors=(),
             opts: EvalOptions | None = None, verbose: bool = True) -> dict:
    """Evaluates a run on clips of A and B; writes OUTPUT/{metrics.json, report.html, *.png}.

    The output folder appears complete or not at all (written beside it, then renamed).
    """
    opts = opts or EvalOptions()
    opts.check()
    files.check_output(output, [a, b, *distractors, workdir])
    if os.path.isdir(output) and os.listdir(output) and not all(
            os.path.exists(os.path.join(output, f)) for f in ("metrics.json", "report.html")):
        raise UserError(f"--output {output}: a folder that is not an earlier evaluation (no "
                        "metrics.json and report.html); the output folder is replaced whole, "
                        "so give a new or an evaluation folder")
    for path in (a, b, *distractors):
        video.FrameSource(path)  # unreadable inputs fail before the model loads
    parent = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(parent):
        raise UserError(f"--output {output}: folder {parent} does not exist")
    start = time.monotonic()
    ev = Evaluator(workdir, opts)
    results = {}
    for name, path in (("a", a), ("b", b)):
        if verbose:
            print(f"evaluating {name}: {path}", flush=True)
        results[name] = ev.run_clip(path, name)
    sets = {n: np.array(r.source_embeddings, np.float32) for n, r in results.items()}
    for d in distractors:
        name = distractor_name(d, sets)
        sets[name] = ev.reference_set(d)
        if len(sets[name]) == 0:
            raise UserError(f"--distractors {d}: no face found")
    result = {
        "model": os.path.abspath(workdir), "task": ev.config.task,
        "step": ev.step,
        "inputs": {"a": os.path.abspath(a), "b": os.path.abspath(b)},
        "reference_sets": {n: int(len(s)) for n, s in sets.items()},
        "options": dataclasses.asdict(opts),
        "same_person_threshold": identity_lib.SAME_PERSON,
        "a2b": clip_metrics(results["a"], "a", sets, opts.every, results["b"], ev.size),
        "b2a": clip_metrics(results["b"], "b", sets, opts.every, results["a"], ev.size),
    }
    result["seconds"] = round(time.monotonic() - start, 2)
    tmp = os.path.join(parent, f".{os.path.basename(os.path.normpath(output))}.partial-"
                               f"{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        report.write_report(tmp, result, results, ev.config)
        if os.path.isdir(output):
            old = tmp + ".old"
            os.replace(output, old)
            os.replace(tmp, output)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result

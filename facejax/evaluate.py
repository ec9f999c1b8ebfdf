"""Swap quality: reconstruction, identity, expression transfer and steadiness, and a report.

For each source clip (A and B) every face is detected and aligned as in conversion, then
  - reconstructed through its own path (autoencoder: its own decoder; CycleGAN: its cycle) and
    compared with the input crop by PSNR and SSIM;
  - swapped to the other identity and pasted back into the frame, as tools/convert.py does;
  - the swapped frame's 68 landmarks are predicted (in the source face's box) and its dlib
    face-recognition embedding computed.
Identity compares the swapped faces' embeddings with reference sets: the source frames of A, of
B, and any distractor identities. The distance to an identity is the distance to its nearest
reference embedding; retrieval is correct when the nearest identity is the swap's target.
Expression is the landmark error between each source face and its swap (normalised by the
source's outer-eye-corner distance) and the correlation of mouth opening over the clip.
Steadiness is the frame-to-frame landmark jitter of the swapped video against the source's.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import os
import shutil
import time

import cv2
import numpy as np

from facejax.errors import UserError
from facejax.faces import align, identity as identity_lib, landmarks as lm, video

IDENTITIES = ("a", "b")
OTHER = {"a": "b", "b": "a"}


# ---- image metrics ------------------------------------------------------------------------------

def psnr(x: np.ndarray, y: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB; inf for identical images."""
    mse = float(np.mean((np.asarray(x, np.float64) - np.asarray(y, np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(data_range ** 2 / mse)


def ssim(x: np.ndarray, y: np.ndarray, data_range: float = 1.0) -> float:
    """Structural similarity (Wang et al. 2004) of two [H, W] or [H, W, C] images.

    The usual settings (scikit-image's gaussian_weights=True): an 11-tap Gaussian window of
    sigma 1.5, population statistics, K1 = 0.01, K2 = 0.03; the mean over the pixels at least
    5 from the border, averaged over channels.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.shape != y.shape:
        raise ValueError(f"ssim: shapes differ {x.shape} vs {y.shape}")
    if x.ndim == 3:
        return float(np.mean([ssim(x[..., c], y[..., c], data_range) for c in range(x.shape[2])]))
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def blur(im):
        return cv2.GaussianBlur(im, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s[5:-5, 5:-5].mean())


# ---- landmark metrics ---------------------------------------------------------------------------

def mouth_opening(landmarks: np.ndarray) -> float:
    """Gap between the inner lips (61-67, 62-66, 63-65) in outer-eye-corner distances."""
    gap = np.linalg.norm(landmarks[[61, 62, 63]] - landmarks[[67, 66, 65]], axis=-1).mean()
    return float(gap / max(lm.eye_distance(landmarks), 1e-6))


def correlation(x, y) -> float:
    """Pearson correlation; nan when either series is constant or shorter than 3."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def runs(frame_indices, step: int) -> list[slice]:
    """Slices of consecutive processed frames (index gaps of exactly `step`)."""
    out, start = [], 0
    for i in range(1, len(frame_indices) + 1):
        if i == len(frame_indices) or frame_indices[i] - frame_indices[i - 1] != step:
            out.append(slice(start, i))
            start = i
    return out


def track_jitter(track: np.ndarray, frame_indices, step: int) -> float:
    """landmarks.jitter over the runs of consecutive frames, weighted by their length."""
    total, weight = 0.0, 0
    for r in runs(frame_indices, step):
        n = r.stop - r.start
        if n >= 3:
            total += lm.jitter(track[r]) * (n - 2)
            weight += n - 2
    return total / weight if weight else math.nan


# ---- identity -----------------------------------------------------------------------------------

def nearest_distances(embeddings: np.ndarray, sets: dict) -> dict:
    """{identity: [N] distance of each embedding to that identity's nearest reference}."""
    out = {}
    for name, refs in sets.items():
        if len(refs) == 0 or len(embeddings) == 0:
            out[name] = np.full(len(embeddings), np.inf)
            continue
        d = np.linalg.norm(embeddings[:, None, :] - refs[None, :, :], axis=-1)
        out[name] = d.min(axis=1)
    return out


def identity_metrics(embeddings: np.ndarray, sets: dict, target: str, source: str) -> dict:
    """Retrieval accuracy, mean distance to target and source, and the share under 0.6."""
    d = nearest_distances(embeddings, sets)
    names = sorted(sets)
    nearest = np.array(names)[np.argmin(np.stack([d[n] for n in names]), axis=0)] \
        if len(embeddings) else np.array([])
    return {
        "retrieval_accuracy": float(np.mean(nearest == target)) if len(nearest) else math.nan,
        "mean_distance_to_target": _mean(d[target]),
        "mean_distance_to_source": _mean(d[source]),
        "share_same_person_as_target": (float(np.mean(d[target] < identity_lib.SAME_PERSON))
                                        if len(embeddings) else math.nan),
        "nearest_counts": {n: int(np.sum(nearest == n)) for n in names},
        "per_frame_distance_to_target": d[target].tolist(),
        "per_frame_distance_to_source": d[source].tolist(),
    }


def _mean(x) -> float:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else math.nan


# ---- running a model over a clip -------------------------------------------------------------

@dataclasses.dataclass
class EvalOptions:
    max_frames: int = 150       # per source clip
    every: int = 1              # use every n-th frame
    batch: int = 8
    detector: str = "hog"
    samples: int = 6            # rows of the sample grid per direction
    blur: int = 8               # pasting, as tools/convert.py
    color: str = "rct"
    tail: float = 0.0           # use only the last `tail` fraction of each clip (0: all of it)

    def check(self):
        if not 0.0 <= self.tail < 1.0:
            raise UserError(f"--tail {self.tail}: must be in [0, 1)")
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
    frames_read: int = 0
    no_face: int = 0


class Evaluator:
    """Holds a trained run's swap and reconstruction functions and the dlib models."""

    def __init__(self, workdir: str, opts: EvalOptions):
        import jax
        from facejax import convert
        self.opts = opts
        config, task, state, self.size, self.coverage = convert.load_swapper(workdir)
        if not hasattr(task, "reconstruct"):
            raise UserError(f"--model {workdir}: a {config.task} run has no reconstruction")
        self.config, self.task, self.step = config, task, int(state["step"])
        swap = jax.jit(lambda s, x, d: task.swap(s, x.astype(np.float32) / 255., d, config),
                       static_argnums=2)
        rec = jax.jit(lambda s, x, i: task.reconstruct(s, x.astype(np.float32) / 255., i,
                                                       config), static_argnums=2)
        self.swap = {d: convert.batched(lambda x, d=d: swap(state, x, d), opts.batch)
                     for d in ("a2b", "b2a")}
        self.rec = {i: convert.batched(lambda x, i=i: rec(state, x, i), opts.batch)
                    for i in IDENTITIES}
        self.paste_opts = convert.ConvertOptions(blur=opts.blur, color=opts.color)
        self.predictor = lm.LandmarkPredictor()
        self.embedder = identity_lib.FaceEmbedder()

    def _finder(self):
        from facejax.faces import detect, find
        return find.FaceFinder(detect.make_detector(self.opts.detector), min_face=0)

    def faces(self, path: str):
        """(frame index, frame, Face) of every used frame with a face, and the counts."""
        source = video.FrameSource(path)
        finder = self._finder()
        counts = {"frames_read": 0, "no_face": 0}
        start = int(len(source) * (1.0 - self.opts.tail)) if self.opts.tail else 0

        def gen():
            for i, frame in source.frames(every_n=self.opts.every, start=start):
                if counts["frames_read"] >= self.opts.max_frames:
                    return
                counts["frames_read"] += 1
                face = None if frame is None else finder(frame)[0]
                if face is None:
                    finder.reset()
                    counts["no_face"] += 1
                    continue
                yield i, frame, face
        return gen(), counts

    def run_clip(self, path: str, identity: str) -> ClipResult:
        """Swaps `identity`'s clip to the other identity; reconstructs it through its own path."""
        from facejax import convert
        direction = f"{identity}2{OTHER[identity]}"
        out = ClipResult([], [], [], [], [], [], [], [])
        items, counts = self.faces(path)
        pending = []
        sample_every = max(1, self.opts.max_frames // self.opts.samples)

        def flush():
            if not pending:
                return
            crops = np.stack([c for *_, c in pending])
            swapped = _to_uint8(self.swap[direction](crops))
            rec = np.clip(np.asarray(self.rec[identity](crops), np.float32), 0, 1)
            for (i, frame, face, m, crop), sw, r in zip(pending, swapped, rec):
                pts = align.transform_points(m, face.landmarks)
                pasted, _ = convert.paste(frame, sw, m, pts, self.paste_opts)
                swap_lm = self.predictor(pasted, face.box)
                ref = crop.astype(np.float32) / np.float32(255.0)  # as the model sees it
                out.frames.append(i)
                out.source_landmarks.append(face.landmarks.astype(np.float32))
                out.swap_landmarks.append(swap_lm.astype(np.float32))
                out.source_embeddings.append(self.embedder.from_landmarks(frame, face.landmarks))
                out.swap_embeddings.append(self.embedder.from_landmarks(pasted, swap_lm))
                out.psnr.append(psnr(ref, r))
                out.ssim.append(ssim(ref, r))
                if len(out.samples) < self.opts.samples and \
                        (len(out.frames) - 1) % sample_every == 0:
                    out.samples.append((crop, sw, _to_uint8(r)))
            pending.clear()

        for i, frame, face in items:
            m = align.align_matrix(face.landmarks, self.size, self.coverage)
            pending.append((i, frame, face, m, align.crop(frame, m, self.size)))
            if len(pending) >= self.opts.batch:
                flush()
        flush()
        out.frames_read, out.no_face = counts["frames_read"], counts["no_face"]
        if not out.frames:
            raise UserError(f"--{identity} {path}: no face found in "
                            f"{counts['frames_read']} frames")
        return out

    def reference_set(self, path: str) -> np.ndarray:
        """Embeddings of the faces in a video, image or folder (a distractor identity)."""
        items, _ = self.faces(path)
        emb = [self.embedder.from_landmarks(frame, face.landmarks) for _, frame, face in items]
        return np.array(emb, np.float32).reshape(-1, 128)


def _to_uint8(x) -> np.ndarray:
    return (np.clip(np.asarray(x, np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)


def clip_metrics(res: ClipResult, identity: str, sets: dict, every: int) -> dict:
    """The figures of one source clip swapped to the other identity."""
    src = np.array(res.source_landmarks)
    swp = np.array(res.swap_landmarks)
    nme = [lm.normalised_mean_error(p, t) for p, t in zip(swp, src)]
    mouth_src = [mouth_opening(p) for p in src]
    mouth_swp = [mouth_opening(p) for p in swp]
    j_src = track_jitter(src, res.frames, every)
    j_swp = track_jitter(swp, res.frames, every)
    finite_psnr = [p for p in res.psnr if math.isfinite(p)]
    return {
        "frames_read": res.frames_read, "faces": len(res.frames), "no_face": res.no_face,
        "reconstruction": {
            "psnr_mean": float(np.mean(finite_psnr)) if finite_psnr else math.inf,
            "ssim_mean": float(np.mean(res.ssim)),
            "per_frame_psnr": res.psnr, "per_frame_ssim": res.ssim,
        },
        "identity": identity_metrics(np.array(res.swap_embeddings, np.float32).reshape(-1, 128),
                                     sets, target=OTHER[identity], source=identity),
        "expression": {
            "landmark_nme_mean": float(np.mean(nme)),
            "landmark_nme_median": float(np.median(nme)),
            "mouth_opening_correlation": correlation(mouth_src, mouth_swp),
            "per_frame_nme": nme, "per_frame_mouth_source": mouth_src,
            "per_frame_mouth_swap": mouth_swp,
        },
        "steadiness": {
            "jitter_source": j_src, "jitter_swap": j_swp,
            "jitter_ratio": j_swp / j_src if j_src and math.isfinite(j_src) else math.nan,
        },
        "frame_index": res.frames,
    }


# ---- the whole evaluation and its report -----------------------------------------------------

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
    metrics = {
        "model": os.path.abspath(workdir), "task": ev.config.task,
        "step": ev.step,
        "inputs": {"a": os.path.abspath(a), "b": os.path.abspath(b)},
        "reference_sets": {n: int(len(s)) for n, s in sets.items()},
        "options": dataclasses.asdict(opts),
        "same_person_threshold": identity_lib.SAME_PERSON,
        "a2b": clip_metrics(results["a"], "a", sets, opts.every),
        "b2a": clip_metrics(results["b"], "b", sets, opts.every),
    }
    metrics["seconds"] = round(time.monotonic() - start, 2)
    tmp = os.path.join(parent, f".{os.path.basename(os.path.normpath(output))}.partial-"
                               f"{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        write_report(tmp, metrics, results, ev.config)
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
    return metrics


def summary(metrics: dict) -> dict:
    """The headline figures (no per-frame series)."""
    out = {}
    for d in ("a2b", "b2a"):
        m = metrics[d]
        out[d] = {
            "faces": m["faces"],
            "psnr": m["reconstruction"]["psnr_mean"], "ssim": m["reconstruction"]["ssim_mean"],
            "identity_retrieval": m["identity"]["retrieval_accuracy"],
            "distance_to_target": m["identity"]["mean_distance_to_target"],
            "distance_to_source": m["identity"]["mean_distance_to_source"],
            "share_under_0.6": m["identity"]["share_same_person_as_target"],
            "landmark_nme": m["expression"]["landmark_nme_mean"],
            "mouth_correlation": m["expression"]["mouth_opening_correlation"],
            "jitter_source": m["steadiness"]["jitter_source"],
            "jitter_swap": m["steadiness"]["jitter_swap"],
        }
    return out


def _plots(folder: str, metrics: dict) -> list[tuple[str, str]]:
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    out = []
    for d in ("a2b", "b2a"):
        m = metrics[d]
        x = m["frame_index"]
        fig, axes = plt.subplots(2, 2, figsize=(11, 7), constrained_layout=True)
        ax = axes[0, 0]
        ax.plot(x, m["reconstruction"]["per_frame_psnr"], ".-")
        ax.set(title=f"reconstruction of {d[0].upper()}: PSNR", xlabel="frame", ylabel="dB")
        ax2 = ax.twinx()
        ax2.plot(x, m["reconstruction"]["per_frame_ssim"], ".-", color="tab:orange")
        ax2.set_ylabel("SSIM", color="tab:orange")
        ax = axes[0, 1]
        ax.plot(x, m["identity"]["per_frame_distance_to_target"], ".-",
                label=f"to target {d[-1].upper()}")
        ax.plot(x, m["identity"]["per_frame_distance_to_source"], ".-",
                label=f"to source {d[0].upper()}")
        ax.axhline(metrics["same_person_threshold"], color="k", ls="--", lw=1,
                   label="same-person threshold")
        ax.set(title="identity: embedding distance of the swap", xlabel="frame")
        ax.legend(fontsize=8)
        ax = axes[1, 0]
        ax.plot(x, m["expression"]["per_frame_mouth_source"], ".-", label="source")
        ax.plot(x, m["expression"]["per_frame_mouth_swap"], ".-", label="swap")
        ax.set(title="mouth opening (eye distances)", xlabel="frame")
        ax.legend(fontsize=8)
        ax = axes[1, 1]
        ax.plot(x, m["expression"]["per_frame_nme"], ".-")
        ax.set(title="landmark error source vs swap (NME)", xlabel="frame")
        name = f"plots_{d}.png"
        fig.savefig(os.path.join(folder, name), dpi=80)
        plt.close(fig)
        out.append((d, name))
    return out


def _fmt(v) -> str:
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else ("inf" if math.isinf(v) else f"{v:.4g}")
    return html.escape(str(v))


def write_report(folder: str, metrics: dict, results: dict, config) -> None:
    """metrics.json, sample grids, plots and report.html into `folder`."""
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1, default=float)
    grids = []
    for name, d in (("a", "a2b"), ("b", "b2a")):
        rows = [np.concatenate([s, np.full((s.shape[0], 4, 3), 255, np.uint8), w,
                                np.full((s.shape[0], 4, 3), 255, np.uint8), r], axis=1)
                for s, w, r in results[name].samples]
        g = np.concatenate(rows, axis=0)
        scale = max(1, 128 // g.shape[1] * 3) if g.shape[1] < 384 else 1
        g = cv2.resize(g, (g.shape[1] * scale, g.shape[0] * scale),
                       interpolation=cv2.INTER_NEAREST)
        file = f"samples_{d}.png"
        video.write_image(os.path.join(folder, file), g)
        grids.append((d, file))
    plots = _plots(folder, metrics)
    head = summary(metrics)
    cols = list(head["a2b"])
    table = "<tr><th>direction</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    table += "</tr>" + "".join(
        f"<tr><td>{d}</td>" + "".join(f"<td>{_fmt(head[d][c])}</td>" for c in cols) + "</tr>"
        for d in head)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>facejax evaluation</title>",
        "<style>body{font-family:sans-serif;margin:2em}td,th{border:1px solid #ccc;"
        "padding:4px 8px}table{border-collapse:collapse}img{max-width:100%}</style></head><body>",
        f"<h1>facejax evaluation: {html.escape(metrics['task'])} at step "
        f"{_fmt(metrics['step'])}</h1>",
        f"<p>model {html.escape(metrics['model'])}<br>A: {html.escape(metrics['inputs']['a'])}"
        f"<br>B: {html.escape(metrics['inputs']['b'])}<br>reference sets: "
        f"{html.escape(json.dumps(metrics['reference_sets']))}</p>",
        "<h2>Summary</h2><table>", table, "</table>",
        "<p>psnr/ssim: each face through its own path (A→A, B→B). identity_retrieval: share of "
        "swaps whose nearest reference identity is the target; distances are dlib "
        "face-recognition embedding distances to the nearest reference face (same person "
        f"below {metrics['same_person_threshold']}). landmark_nme: source vs swap landmarks / "
        "outer-eye-corner distance. jitter: frame-to-frame landmark acceleration in eye "
        "distances.</p>",
    ]
    for (d, g), (_, p) in zip(grids, plots):
        parts += [f"<h2>{d}: source | swap | reconstruction</h2>", f"<img src='{g}'>",
                  f"<h3>{d} over frames</h3>", f"<img src='{p}'>"]
    parts += ["<h2>Run config</h2><pre>",
              html.escape(json.dumps(json.loads(config.to_json_best_effort()), indent=1)),
              "</pre></body></html>"]
    with open(os.path.join(folder, "report.html"), "w") as f:
        f.write("\n".join(parts))


# ---- during training: reconstruction and identity on held-out crops ---------------------------

class HeldOutQuality:
    """PSNR/SSIM of each identity's reconstruction and the identity distance of its swap, on
    held-out model views (crops), for TensorBoard during training."""

    def __init__(self, task, config):
        import jax
        self.task, self.config = task, config
        self._views = jax.jit(lambda b: {n: task.views(b, n, config) for n in IDENTITIES})
        self._run = jax.jit(lambda s, v: {
            n: (task.reconstruct(s, v[n], n, config),
                task.swap(s, v[n], f"{n}2{OTHER[n]}", config)) for n in IDENTITIES})
        self.predictor = lm.LandmarkPredictor()
        self.embedder = identity_lib.FaceEmbedder()
        from facejax import convert
        self.coverage = convert.model_coverage(config, task)

    def _embed(self, crop: np.ndarray) -> np.ndarray:
        """Embedding of an aligned uint8 crop: landmarks predicted in the mean face's box."""
        big = cv2.resize(crop, (160, 160), interpolation=cv2.INTER_CUBIC)
        face = align.mean_face_in_crop(160, self.coverage)
        box = lm.box_of(face)
        return self.embedder.from_landmarks(big, self.predictor(big, box))

    def __call__(self, state, batch, fetch=None) -> dict:
        """Figures for `batch` (the task's batch layout); `fetch` brings device arrays to the
        host (parallel.fetch in training; jax.device_get by default)."""
        import jax
        fetch = fetch or jax.device_get
        views = self._views(batch)
        views, outs = fetch((views, self._run(state, views)))
        out, emb = {}, {}
        for n in IDENTITIES:
            x = np.asarray(views[n], np.float64)
            rec = np.clip(np.asarray(outs[n][0], np.float64), 0, 1)
            out[f"quality/psnr_{n}"] = _mean([psnr(a, b) for a, b in zip(x, rec)])
            out[f"quality/ssim_{n}"] = float(np.mean([ssim(a, b) for a, b in zip(x, rec)]))
            emb[n] = np.array([self._embed(_to_uint8(v)) for v in x])
            emb[n + "_swap"] = np.array([self._embed(_to_uint8(v)) for v in outs[n][1]])
        sets = {n: emb[n] for n in IDENTITIES}
        for n in IDENTITIES:
            d = nearest_distances(emb[n + "_swap"], sets)
            t = OTHER[n]
            out[f"quality/id_dist_{n}2{t}"] = _mean(d[t])
            out[f"quality/id_retrieval_{n}2{t}"] = float(np.mean(d[t] < d[n]))
        return out

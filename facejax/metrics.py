"""Swap-quality figures, numpy only: PSNR and SSIM, sharpness, mouth opening and landmark
jitter, embedding distances and identity retrieval."""

from __future__ import annotations

import math

import cv2
import numpy as np

from facejax.faces import identity as identity_lib, landmarks as lm

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


def _laplacian(rgb: np.ndarray) -> np.ndarray:
    """The 3×3 Laplacian of the grey image of uint8 RGB."""
    grey = cv2.cvtColor(np.asarray(rgb, np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float64)
    return cv2.Laplacian(grey, cv2.CV_64F)


def _inside(mask: np.ndarray, erode: int) -> np.ndarray:
    """`mask` (uint8, > 127) shrunk by `erode` pixels, so a blend edge does not count."""
    inside = np.asarray(mask) > 127
    if erode:
        inside = cv2.erode(inside.astype(np.uint8), np.ones((2 * erode + 1,) * 2, np.uint8)) > 0
    return inside


def laplacian_variance(rgb: np.ndarray, mask: np.ndarray, erode: int = 2) -> float:
    """Sharpness: the variance of the Laplacian (3×3) of the grey image inside `mask` (uint8,
    > 127), shrunk by `erode` pixels. nan on an empty mask."""
    inside = _inside(mask, erode)
    return float(_laplacian(rgb)[inside].var()) if inside.any() else math.nan


def detail_correlation(real: np.ndarray, rendered: np.ndarray, mask: np.ndarray,
                       erode: int = 2) -> float:
    """How much of a rendering's fine detail is the real face's: the Pearson correlation of
    the two images' Laplacians (as `laplacian_variance`) inside `mask`. Detail in the right
    places scores towards 1; blur towards 0 with a small Laplacian, high-frequency error
    towards 0 with a large one (which `laplacian_variance` counts as sharpness). nan on an
    empty mask or a flat image."""
    inside = _inside(mask, erode)
    if not inside.any():
        return math.nan
    return correlation(_laplacian(real)[inside], _laplacian(rendered)[inside])


def mouth_opening(landmarks: np.ndarray) -> float:
    """Gap between the inner lips (61-67, 62-66, 63-65) in outer-eye-corner distances."""
    gap = np.linalg.norm(landmarks[[61, 62, 63]] - landmarks[[67, 66, 65]], axis=-1).mean()
    return float(gap / max(lm.eye_distance(landmarks), 1e-6))


def mean_abs_difference(x, y) -> float:
    """Mean |x - y| over the pairs where both are finite; nan when there are none."""
    d = np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))
    return mean_finite(d)


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
        "mean_distance_to_target": mean_finite(d[target]),
        "mean_distance_to_source": mean_finite(d[source]),
        "share_same_person_as_target": (float(np.mean(d[target] < identity_lib.SAME_PERSON))
                                        if len(embeddings) else math.nan),
        "nearest_counts": {n: int(np.sum(nearest == n)) for n in names},
        "per_frame_distance_to_target": d[target].tolist(),
        "per_frame_distance_to_source": d[source].tolist(),
    }


def mean_finite(x) -> float:
    """Mean of the finite values; nan when there are none."""
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else math.nan


def to_uint8(x) -> np.ndarray:
    """Images in [0, 1] -> uint8, rounded."""
    return (np.clip(np.asarray(x, np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)

"""XSeg's training augmentation, in numpy on the input pipeline's side (`Task.host_augment`), as
DeepFaceLab's SampleGeneratorFaceXSeg draws it (read there, written here):

1. random occluders: with probability `augment.occluders` a face gets a hand, bar or disc
   textured from another face of the batch pasted over it, and the label loses those pixels
   (faces/occluders.py); DeepFaceLab blends another labelled face's background in;
2. the view: DeepFaceLab's random rotation, scale, shift, flip (`flip_a`) and grid warp
   (warp_dfl, through augment.source_coords), the same for the face and its label, the face
   sampled cubic and the label linear, then cut at one half as DeepFaceLab cuts it;
3. colour, with probability `augment.colour`: DeepFaceLab's random RGB levels (per channel
   black and white points in and out, and a gamma) or a shift of brightness and saturation;
4. blur, with probability `augment.blur`: a Gaussian blur of sigma up to `augment.max_blur`
   pixels (DeepFaceLab's Gaussian and motion blurs, its random resize and JPEG: the blur).
DeepFaceLab applies 3 and 4 inside a random faded circle; here to the whole face.
No OpenCV (the families import none): the blur is a separable convolution in numpy.
"""

from __future__ import annotations

import numpy as np

from facejax import augment
from facejax.faces import occluders


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """float [S, S, C] blurred by a Gaussian of `sigma` pixels (edges repeated), separably."""
    radius = max(1, int(np.ceil(3 * sigma)))
    t = np.arange(-radius, radius + 1, dtype=np.float32)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    k /= k.sum()
    out = image
    for axis in (0, 1):
        pad = [(0, 0)] * image.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="edge")
        n = out.shape[axis]
        out = sum(w * np.take(padded, np.arange(i, i + n), axis=axis) for i, w in enumerate(k))
    return out.astype(np.float32)


def colour(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """float [S, S, 3] in [0, 1] with DeepFaceLab's random RGB levels or a random brightness
    and saturation shift."""
    if rng.random() < 0.5:
        in_black, in_white = rng.uniform(0, 0.25, 3), rng.uniform(0.75, 1.0, 3)
        gamma = rng.uniform(0.5, 1.5, 3)
        out_black, out_white = rng.uniform(0, 0.25, 3), rng.uniform(0.75, 1.0, 3)
        x = np.clip((image - in_black) / (in_white - in_black), 0, 1) ** gamma
        return (x * (out_white - out_black) + out_black).astype(np.float32)
    grey = image.mean(-1, keepdims=True)
    saturated = grey + (image - grey) * rng.uniform(0.5, 1.5)
    return np.clip(saturated * rng.uniform(0.7, 1.3), 0, 1).astype(np.float32)


def one_face(rng: np.random.Generator, image: np.ndarray, label: np.ndarray, out_size: int,
             cfg) -> tuple[np.ndarray, np.ndarray]:
    """uint8 crop [L, L, 3] and 0/1 label [L, L] -> (input float32 [S, S, 3] in [0, 1], target
    float32 [S, S, 1] of 0/1): steps 2 to 4 of the module docstring."""
    p = augment.warp_params_np(rng, cfg, "a")
    _, warped = augment.source_coords(np, p, out_size, image.shape[0], cfg)
    x = np.clip(augment.sample(image, warped, np), 0, 255) / np.float32(255)
    y = augment.sample(label[..., None].astype(np.float32), warped, np, "linear")
    if rng.random() < cfg.colour:
        x = colour(rng, x)
    if rng.random() < cfg.blur:
        x = gaussian_blur(x, rng.uniform(0.3, cfg.max_blur))
    return np.clip(x, 0, 1).astype(np.float32), (y >= 0.5).astype(np.float32)


def batch(rng: np.random.Generator, images: np.ndarray, masks: np.ndarray, out_size: int,
          cfg) -> dict:
    """uint8 crops [B, L, L, 3] and face masks [B, L, L] (0/1, or 0..255 anti-aliased) ->
    {"input", "target"}: the augmented faces and their visible-face labels."""
    occluded, visible = occluders.occlude_batch(rng, images, masks, cfg.occluders)
    pairs = [one_face(rng, im, v, out_size, cfg) for im, v in zip(occluded, visible)]
    return {"input": np.stack([x for x, _ in pairs]), "target": np.stack([y for _, y in pairs])}

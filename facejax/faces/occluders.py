"""Occluders pasted over aligned face crops, with the exact mask of what stays visible.

A shape (a hand: palm and fingers; a bar: a microphone, a pencil, a glasses arm; a disc: a
cup, a ball) is drawn as a binary mask by testing each pixel centre against its outline, so the
pasted region is known to the pixel. Its texture is a window of another real image (a frame of
another clip, or another face of the batch), rotated and scaled at random. The occluded crop is
the texture inside the shape and the crop outside it; the visible face is the face mask minus
the shape. Everything is a deterministic function of the numpy Generator (or seed) given.

Used twice: as XSeg's training augmentation (random occluders over the faces of a batch, as
DeepFaceLab pastes other faces over its labelled ones) and to build a test set of real faces
with known occlusion (faces/occlusion_set.py). numpy only: the training step's host
augmentation (facejax/tasks/xseg.py) runs this, and the tasks import no OpenCV.
"""

from __future__ import annotations

import dataclasses

import numpy as np

KINDS = ("hand", "bar", "disc")


@dataclasses.dataclass(frozen=True)
class Occlusion:
    image: np.ndarray     # uint8 [S, S, 3]: the crop with the occluder pasted
    visible: np.ndarray   # uint8 [S, S] of 0/1: the face mask minus the occluder
    occluder: np.ndarray  # bool [S, S]: the pasted pixels


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x, y), each [S, S], in pixels."""
    t = np.arange(size, dtype=np.float64) + 0.5
    return np.meshgrid(t, t)


def _rotated(x, y, centre, angle):
    """Coordinates relative to `centre`, rotated by -angle (the shape's own frame)."""
    dx, dy = x - centre[0], y - centre[1]
    c, s = np.cos(angle), np.sin(angle)
    return c * dx + s * dy, -s * dx + c * dy


def _capsule(u, v, start, end, radius) -> np.ndarray:
    """Pixels within `radius` of the segment start-end (a finger, a bar with round ends)."""
    a, b = np.asarray(start, np.float64), np.asarray(end, np.float64)
    d = b - a
    t = np.clip(((u - a[0]) * d[0] + (v - a[1]) * d[1]) / max(float(d @ d), 1e-9), 0, 1)
    return (u - a[0] - t * d[0]) ** 2 + (v - a[1] - t * d[1]) ** 2 <= radius ** 2


def _hand(u, v, r: float, rng: np.random.Generator) -> np.ndarray:
    """A palm (ellipse of half-width r) and four fingers fanned upwards, a thumb to one side,
    in the shape's frame (fingers towards -v)."""
    mask = (u / r) ** 2 + (v / (1.15 * r)) ** 2 <= 1
    width = r * rng.uniform(0.18, 0.26)
    spread = rng.uniform(0.08, 0.3)
    for i in range(4):
        base = np.array([(-0.75 + 0.5 * i) * r, -0.8 * r])
        angle = (i - 1.5) * spread
        length = r * rng.uniform(0.9, 1.5) * (0.8 if i in (0, 3) else 1.0)
        tip = base + length * np.array([np.sin(angle), -np.cos(angle)])
        mask |= _capsule(u, v, base, tip, width)
    side = 1 if rng.random() < 0.5 else -1
    base = np.array([side * 0.8 * r, 0.1 * r])
    tip = base + r * rng.uniform(0.7, 1.1) * np.array([side * 0.8, -0.6])
    return mask | _capsule(u, v, base, tip, width * 1.1)


def shape_mask(rng: np.random.Generator, size: int, kind: str, centre=None,
               extent: float | None = None) -> np.ndarray:
    """bool [size, size]: one occluder of `kind` at `centre` (pixels; default: random in the
    crop), its extent (a hand's palm half-width, a bar's half-width times 4, a disc's radius)
    `extent` pixels (default: random, 8 to 25% of the side), at a random angle."""
    if kind not in KINDS:
        raise ValueError(f"unknown occluder {kind!r}; expected one of {', '.join(KINDS)}")
    x, y = _grid(size)
    centre = rng.uniform(0.2, 0.8, 2) * size if centre is None else np.asarray(centre, float)
    extent = rng.uniform(0.08, 0.25) * size if extent is None else float(extent)
    u, v = _rotated(x, y, centre, rng.uniform(-np.pi, np.pi))
    if kind == "disc":
        ratio = rng.uniform(0.7, 1.0)
        return (u / extent) ** 2 + (v / (extent * ratio)) ** 2 <= 1
    if kind == "bar":
        half_length = rng.uniform(0.5, 1.5) * size
        return _capsule(u, v, (-half_length, 0), (half_length, 0), extent / 4)
    return _hand(u, v, extent, rng)


def _bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """image [H, W, C] sampled at pixel coordinates (x, y) with edge pixels repeated."""
    h, w = image.shape[:2]
    x, y = np.clip(x, 0, w - 1), np.clip(y, 0, h - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    img = image.astype(np.float64)
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def texture(rng: np.random.Generator, donor: np.ndarray, size: int) -> np.ndarray:
    """uint8 [size, size, 3]: a window of the real image `donor` (uint8 [H, W, 3]), a third to
    the whole of its shorter side, at a random place, angle and mirror, resampled bilinearly."""
    h, w = donor.shape[:2]
    side = rng.uniform(0.33, 1.0) * min(h, w)
    centre = np.array([rng.uniform(side / 2, w - side / 2), rng.uniform(side / 2, h - side / 2)])
    x, y = _grid(size)
    u, v = (x / size - 0.5) * side, (y / size - 0.5) * side
    if rng.random() < 0.5:
        u = -u
    c, s = np.cos(a := rng.uniform(-np.pi, np.pi)), np.sin(a)
    out = _bilinear(donor, centre[0] + c * u - s * v - 0.5, centre[1] + s * u + c * v - 0.5)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def paste(crop: np.ndarray, face_mask: np.ndarray, occluder: np.ndarray,
          tex: np.ndarray) -> Occlusion:
    """The crop with `tex` inside `occluder`; visible = (face_mask >= half) minus it.
    face_mask: uint8 [S, S], 0/1 or 0..255 (anti-aliased hull: a pixel counts from half on)."""
    threshold = 1 if face_mask.max() <= 1 else 128
    image = np.where(occluder[..., None], tex, crop).astype(np.uint8)
    visible = ((face_mask >= threshold) & ~occluder).astype(np.uint8)
    return Occlusion(image, visible, occluder)


def face_point(rng: np.random.Generator, face_mask: np.ndarray) -> np.ndarray:
    """(x, y) pixel centre of a random pixel of the face (the crop's centre if it has none)."""
    ys, xs = np.nonzero(face_mask)
    if not len(xs):
        return np.array(face_mask.shape[::-1], np.float64) / 2
    i = rng.integers(len(xs))
    return np.array([xs[i] + 0.5, ys[i] + 0.5])


def occlude(crop: np.ndarray, face_mask: np.ndarray, donor: np.ndarray, rng, kind=None,
            centre=None, extent=None) -> Occlusion:
    """One occluder over the face: `kind` (default: one of KINDS at random), centred on
    `centre` (default: a random pixel of the face), textured from `donor`. `rng`: a numpy
    Generator or a seed."""
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    size = crop.shape[0]
    kind = KINDS[rng.integers(len(KINDS))] if kind is None else kind
    centre = face_point(rng, face_mask) if centre is None else centre
    occluder = shape_mask(rng, size, kind, centre, extent)
    return paste(crop, face_mask, occluder, texture(rng, donor, size))


def occlude_batch(rng: np.random.Generator, images: np.ndarray, face_masks: np.ndarray,
                  share: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """XSeg's training occluders: each face of uint8 [B, S, S, 3] gets, with probability
    `share`, one random occluder textured from the next face of the batch (another real image);
    returns (images, visible masks uint8 0/1 [B, S, S])."""
    out, visible = images.copy(), np.zeros(face_masks.shape, np.uint8)
    for i in range(len(images)):
        if len(images) > 1 and rng.random() < share:
            o = occlude(images[i], face_masks[i], images[(i + 1) % len(images)], rng)
            out[i], visible[i] = o.image, o.visible
        else:
            threshold = 1 if face_masks[i].max() <= 1 else 128
            visible[i] = face_masks[i] >= threshold
    return out, visible


def occluded_set(images: np.ndarray, face_masks: np.ndarray, donors: list, seed: int,
                 kinds=KINDS) -> list[Occlusion]:
    """A test set of real faces with known occlusion: face i (uint8 [N, S, S, 3], masks
    [N, S, S]) gets occluder kinds[i % len(kinds)] textured from donors[i % len(donors)]
    (frames of other clips), drawn with the Generator of (seed, i)."""
    return [occlude(im, m, donors[i % len(donors)], np.random.default_rng([seed, i]),
                    kinds[i % len(kinds)]) for i, (im, m) in enumerate(zip(images, face_masks))]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two masks (non-zero = inside); 1 when both are empty."""
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


MOUTH = slice(48, 68)  # the mouth's points of the 68 landmarks


def over_mouth(frame: np.ndarray, points: np.ndarray, donor: np.ndarray,
               seed: int = 33) -> tuple[np.ndarray, np.ndarray]:
    """(`frame` with a disc textured from the real image `donor` pasted over the mouth, the disc
    bool [H, W]): centred on the mouth's landmarks (68-point `points`), its radius three
    quarters of the mouth's width; the same disc and texture for the same `seed`, so over a
    clip's frames it follows the mouth (issue 33's conversion check)."""
    h, w = frame.shape[:2]
    mouth = np.asarray(points)[MOUTH]
    extent = 0.75 * (mouth[:, 0].max() - mouth[:, 0].min())
    rng = np.random.default_rng(seed)
    disc = shape_mask(rng, max(h, w), "disc", mouth.mean(0), extent)[:h, :w]
    tex = texture(rng, donor, max(h, w))[:h, :w]
    return np.where(disc[..., None], tex, frame).astype(np.uint8), disc

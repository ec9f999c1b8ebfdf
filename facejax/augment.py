"""Augmentations, on device (jittable, vmapped) or on the host (numpy, in the input pipeline).

- `warp_pair`: the random warp. For one face, the network input (randomly warped) and its
  target (the same face and the same random affine view, unwarped), at the model size. Two
  kinds (`augment.kind`): "deepfakes" (the original's: similarity + shear view, a 5 × 5 grid
  of moving control points, LAB colour jitter) and "dfl" (DeepFaceLab's, SAEHD's:
  facejax/warp_dfl.py). Either way each output pixel samples the loaded crop once, with the
  view and the warp composed, by OpenCV's cubic kernel (Keys, a = -0.75), clipped to [0, 1];
  masks follow the target's view by linear sampling, as DeepFaceLab's do. Coordinates are
  pixel centres.
- `jitter_image`: pix2pix random jitter (upscale, random crop, mirror), the same for input and
  target.

Each is a random draw of a few parameters followed by a deterministic function of them, written
once for both array modules (`xp` is jax.numpy or numpy). The device path draws with jax.random
inside the train step; the host path draws with numpy in the input pipeline's thread, seeded by
(seed, step), so a resumed run sees the same augmentations. Given the same parameters the two
paths compute the same images (tested). `placement()` picks one per backend, from
`facejax benchmark train` run both ways.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from facejax import warp_dfl
from facejax.config_check import AUGMENT_KINDS as KIND_KEYS

PLACEMENTS = ("auto", "device", "host")


KINDS = tuple(KIND_KEYS)  # KIND_KEYS: the keys each kind reads beyond the common ones


def default_config(kind: str = "deepfakes") -> ml_collections.ConfigDict:
    """The augmentation settings of `kind` ("deepfakes" or "dfl", DeepFaceLab's defaults)."""
    c = dict(
        kind=kind,         # "deepfakes" (the original's) or "dfl" (DeepFaceLab's)
        region=0.8,        # fraction of the loaded crop's side that the model sees
        rotation=10.0,     # degrees, uniform in ±
        shift=0.05,        # fraction of the region, uniform in ±
        random_warp=True,  # the warp's displacement (False: the input is the target's view)
    )
    if kind == "deepfakes":
        c.update(
            zoom=0.05,         # relative, uniform in ±
            shear=0.05,        # uniform in ±
            flip=0.4,          # probability of a horizontal flip, both identities
            warp=5.0 / 160.0,  # std of the control-point noise, as a fraction of the region
            warp_grid=5,       # control points per side (the original's 5×5)
            lightness=3.0,     # std of a lightness shift, LAB L units (0-100)
            color=2.0,         # std of a/b shifts, LAB units
            contrast=0.05)     # std of a relative lightness-contrast change
    elif kind == "dfl":
        c.update(
            scale=1.15,        # scale uniform in [1/scale, scale]; above 1 zooms in
            flip_a=0.0,        # probability of a horizontal flip of A's faces (DFL's src)
            flip_b=0.4)        # and of B's (DFL's dst)
    else:
        raise ValueError(f"unknown augmentation kind {kind!r}; expected {' or '.join(KINDS)}")
    c["placement"] = "auto"  # "device" (in the train step), "host" (input pipeline) or per backend
    return ml_collections.ConfigDict(c)


def kind(cfg) -> str:
    """The config's augmentation kind ("deepfakes" for configs older than the key)."""
    return cfg.get("kind", "deepfakes")


def flip_rate(cfg, identity: str | None) -> float:
    """The probability of a horizontal flip of `identity`'s faces ("a" or "b")."""
    if kind(cfg) == "deepfakes":
        return cfg.flip
    if identity not in ("a", "b"):
        raise ValueError(f"augment.kind=dfl flips per identity: expected 'a' or 'b', "
                         f"not {identity!r}")
    return cfg[f"flip_{identity}"]


# Measured with facejax benchmark train, both placements side by side (docs/cpu.md).
_AUTO = {"cpu": "device"}


def placement(cfg, backend: str | None = None) -> str:
    """"device" or "host": where `cfg` (an augment config) asks augmentation to run."""
    where = cfg.get("placement", "device")
    if where not in PLACEMENTS:
        from facejax.errors import UserError
        raise UserError(f"--config.augment.placement={where}: expected one of "
                        f"{', '.join(PLACEMENTS)}")
    if where == "auto":
        return _AUTO.get(backend or jax.default_backend(), "device")
    return where


KEYS_A = -0.75  # OpenCV's INTER_CUBIC (PIL and jax.image.resize("cubic") use -0.5)
KERNELS = ("linear", "cubic")


def cubic_weights(t, xp=np):
    """Keys-kernel weights [4] of the taps at -1, 0, 1, 2 for a sample at fraction t in [0, 1)
    past tap 0 (a = KEYS_A; they sum to 1)."""
    a = KEYS_A
    near = lambda x: ((a + 2) * x - (a + 3)) * x * x + 1           # |x| <= 1
    far = lambda x: ((a * x - 5 * a) * x + 8 * a) * x - 4 * a      # 1 < |x| < 2
    return [far(1 + t), near(t), near(1 - t), far(2 - t)]


@functools.lru_cache(maxsize=32)
def interp_matrix(n: int, out: int, kernel: str = "linear",
                  antialias: bool = False) -> np.ndarray:
    """[out, n] weights of resampling from n to out samples (pixel centres, edges clamped):
    "linear" is cv2.INTER_LINEAR's and, upsampling or with `antialias`, jax.image.resize's;
    "cubic" is cv2.INTER_CUBIC's (no antialiasing). Rows sum to 1. Cached (the host path asks
    for the same few per image), so read-only."""
    x = (np.arange(out) + 0.5) * n / out - 0.5
    rows = np.arange(out)
    m = np.zeros((out, n), np.float32)
    if kernel == "linear" and antialias and out < n:
        m[:] = np.maximum(0.0, 1.0 - np.abs(x[:, None] - np.arange(n)) * (out / n))
        m /= m.sum(axis=1, keepdims=True)
    elif kernel == "linear":
        x = np.clip(x, 0, n - 1)
        x0 = np.floor(x).astype(int)
        w = x - x0
        np.add.at(m, (rows, x0), 1 - w)
        np.add.at(m, (rows, np.minimum(x0 + 1, n - 1)), w)
    elif kernel == "cubic":
        x0 = np.floor(x).astype(int)
        for k, w in enumerate(cubic_weights(x - x0)):
            np.add.at(m, (rows, np.clip(x0 + k - 1, 0, n - 1)), w)
    else:
        raise ValueError(f"unknown kernel {kernel!r}; expected one of {', '.join(KERNELS)}")
    m.flags.writeable = False
    return m


def sample(image, coords, xp=jnp, kernel: str = "cubic"):
    """Samples image [H, W, C] at (x, y) pixel coords [..., 2] -> float32 [..., C], with indices
    clamped to the image (OpenCV's BORDER_REPLICATE). "cubic" is cv2.INTER_CUBIC's 4 × 4 taps
    and may overshoot the image's range: callers clip. "linear" is bilinear."""
    h, w = image.shape[:2]
    img = image.astype(xp.float32)
    coords = coords.astype(xp.float32)
    if kernel == "linear":
        x = xp.clip(coords[..., 0], 0, w - 1)
        y = xp.clip(coords[..., 1], 0, h - 1)
        x0, y0 = xp.floor(x), xp.floor(y)
        fx, fy = (x - x0)[..., None], (y - y0)[..., None]
        x0i, y0i = x0.astype(xp.int32), y0.astype(xp.int32)
        x1i, y1i = xp.minimum(x0i + 1, w - 1), xp.minimum(y0i + 1, h - 1)
        top = img[y0i, x0i] * (1 - fx) + img[y0i, x1i] * fx
        bot = img[y1i, x0i] * (1 - fx) + img[y1i, x1i] * fx
        return top * (1 - fy) + bot * fy
    if kernel != "cubic":
        raise ValueError(f"unknown kernel {kernel!r}; expected one of {', '.join(KERNELS)}")
    # Two pixels beyond an edge every tap reads the edge pixel: clipping there changes nothing
    # and keeps the integer conversion in range.
    x = xp.clip(coords[..., 0], -2, w + 1)
    y = xp.clip(coords[..., 1], -2, h + 1)
    x0, y0 = xp.floor(x), xp.floor(y)
    wx = cubic_weights(x - x0, xp)
    wy = cubic_weights(y - y0, xp)
    xi = [xp.clip(x0.astype(xp.int32) + k - 1, 0, w - 1) for k in range(4)]
    yi = [xp.clip(y0.astype(xp.int32) + k - 1, 0, h - 1) for k in range(4)]
    out = 0.0
    for j in range(4):
        row = sum(img[yi[j], xi[k]] * wx[k][..., None] for k in range(4))
        out = out + row * wy[j][..., None]
    return out


# ---- random warp: parameters ---------------------------------------------------------------

def warp_params(key: jax.Array, cfg, identity: str | None = None) -> dict:
    """One face's random warp parameters, drawn with jax.random; `identity` ("a" or "b")
    picks the flip probability of kind "dfl"."""
    if kind(cfg) == "dfl":
        return warp_dfl.params(key, cfg, flip_rate(cfg, identity))
    ka, kw, kc = jax.random.split(key, 3)
    k = jax.random.split(ka, 6)
    u = lambda kk, r: jax.random.uniform(kk, (), minval=-r, maxval=r)
    kcol = jax.random.split(kc, 3)
    return {
        "theta": jnp.deg2rad(u(k[0], cfg.rotation)),
        "scale": 1.0 + u(k[1], cfg.zoom),
        "shift": jnp.stack([u(k[2], cfg.shift), u(jax.random.fold_in(k[2], 1), cfg.shift)]),
        "shear": u(k[3], cfg.shear),
        "flip": jnp.where(jax.random.uniform(k[4]) < cfg.flip, -1.0, 1.0),
        "noise": jax.random.normal(kw, (cfg.warp_grid, cfg.warp_grid, 2)),
        "contrast": jax.random.normal(kcol[0]),
        "lightness": jax.random.normal(kcol[1]),
        "ab": jax.random.normal(kcol[2], (2,)),
    }


def warp_params_np(rng: np.random.Generator, cfg, identity: str | None = None) -> dict:
    """The same parameters as `warp_params`, with the same distributions, drawn with numpy."""
    if kind(cfg) == "dfl":
        return warp_dfl.params_np(rng, cfg, flip_rate(cfg, identity))
    u = lambda r: np.float32(rng.uniform(-r, r))
    n = lambda *shape: rng.standard_normal(shape, np.float32)
    return {"theta": np.float32(np.deg2rad(u(cfg.rotation))), "scale": np.float32(1 + u(cfg.zoom)),
            "shift": np.array([u(cfg.shift), u(cfg.shift)], np.float32), "shear": u(cfg.shear),
            "flip": np.float32(-1.0 if rng.uniform() < cfg.flip else 1.0),
            "noise": n(cfg.warp_grid, cfg.warp_grid, 2), "contrast": np.float32(n()),
            "lightness": np.float32(n()), "ab": n(2)}


# ---- random warp: the deterministic part, for xp = jax.numpy or numpy ------------------------

def _pixel_grid(xp, out_size: int):
    t = ((xp.arange(out_size, dtype=xp.float32) + 0.5) / out_size - 0.5).astype(xp.float32)
    return xp.meshgrid(t, t)


def affine_coords(xp, p: dict, out_size: int, in_size: int, region: float):
    """Source (x, y) pixel coordinates [out, out, 2] of the random similarity + shear view
    (kind "deepfakes")."""
    gx, gy = _pixel_grid(xp, out_size)
    pts = xp.stack([gx * p["flip"], gy], -1)
    c, s, h = xp.cos(p["theta"]), xp.sin(p["theta"]), p["shear"]
    m = xp.stack([xp.stack([c, c * h - s]), xp.stack([s, s * h + c])])  # rotation @ shear
    pts = pts @ m.T / p["scale"] + p["shift"]
    return (pts * region + 0.5) * in_size - 0.5


def displacement(xp, p: dict, out_size: int, in_size: int, cfg):
    """Smooth displacement [out, out, 2] in source pixels: the control-grid noise, upsampled
    (kind "deepfakes")."""
    r = xp.asarray(interp_matrix(cfg.warp_grid, out_size))
    noise = p["noise"] * np.float32(cfg.warp * cfg.region * in_size)
    rows = xp.einsum("ia,abc->ibc", r, noise)           # two small products: numpy's einsum
    return xp.einsum("jb,ibc->ijc", r, rows)            # of three operands is 10x slower


def source_coords(xp, p: dict, out_size: int, in_size: int, cfg):
    """(target, warped) source pixel coordinates [out, out, 2] in the loaded crop: the view,
    and the view with the warp's displacement (the same when `random_warp` is off)."""
    if kind(cfg) == "dfl":
        target, warped = warp_dfl.view_coords(xp, p, out_size, cfg.random_warp)
        to_crop = lambda v: (v * cfg.region + 0.5) * in_size - 0.5
        return to_crop(target), to_crop(warped)
    target = affine_coords(xp, p, out_size, in_size, cfg.region)
    if not cfg.get("random_warp", True):
        return target, target
    return target, target + displacement(xp, p, out_size, in_size, cfg)


# sRGB (D65) <-> CIE LAB. numpy constants: importing this module must not start a JAX backend.
_RGB2XYZ = np.array([[0.412453, 0.357580, 0.180423],
                      [0.212671, 0.715160, 0.072169],
                      [0.019334, 0.119193, 0.950227]])
_WHITE = np.array([0.950456, 1.0, 1.088754])
_XYZ2RGB = np.linalg.inv(_RGB2XYZ)
_F32 = {k: v.astype(np.float32) for k, v in
        (("rgb2xyz", _RGB2XYZ), ("white", _WHITE), ("xyz2rgb", _XYZ2RGB))}


def rgb_to_lab(rgb, xp=jnp):
    """sRGB in [0, 1] -> LAB (L in [0, 100])."""
    lin = xp.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = lin @ _F32["rgb2xyz"].T / _F32["white"]
    f = xp.where(xyz > 0.008856, xp.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    return xp.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]),
                     200.0 * (f[..., 1] - f[..., 2])], -1)


def lab_to_rgb(lab, xp=jnp):
    """LAB -> sRGB in [0, 1] (clipped)."""
    fy = (lab[..., 0] + 16.0) / 116.0
    fx, fz = fy + lab[..., 1] / 500.0, fy - lab[..., 2] / 200.0
    f = xp.stack([fx, fy, fz], -1)
    xyz = xp.where(f > 0.206893, f ** 3, (f - 16.0 / 116.0) / 7.787) * _F32["white"]
    lin = xyz @ _F32["xyz2rgb"].T
    lin = xp.clip(lin, 0.0, 1.0)
    return xp.where(lin > 0.0031308, 1.055 * lin ** (1 / 2.4) - 0.055, 12.92 * lin)


def color_shift(xp, p: dict, rgb, cfg):
    """Lightness, contrast and a/b shifts in LAB by the drawn amounts (identity when all stds
    are 0; kind "dfl" has none)."""
    if kind(cfg) != "deepfakes" or not (cfg.lightness or cfg.color or cfg.contrast):
        return rgb
    lab = rgb_to_lab(rgb, xp)
    mean_l = lab[..., 0].mean()
    l = (lab[..., 0] - mean_l) * (1 + cfg.contrast * p["contrast"]) + mean_l
    l = l + cfg.lightness * p["lightness"]
    ab = lab[..., 1:] + cfg.color * p["ab"]
    return lab_to_rgb(xp.concatenate([l[..., None], ab], -1), xp)


def apply_warp(xp, p: dict, image, out_size: int, cfg):
    """uint8 [L, L, 3] crop -> (warped, target) float32 [out, out, 3] in [0, 1]."""
    src = color_shift(xp, p, image.astype(xp.float32) / np.float32(255), cfg)
    target, warped = source_coords(xp, p, out_size, image.shape[0], cfg)
    # Cubic overshoots at edges; the loss and the model expect [0, 1], as DeepFaceLab's clip.
    return (xp.clip(sample(src, warped, xp), 0.0, 1.0),
            xp.clip(sample(src, target, xp), 0.0, 1.0))


def warp_pair(key: jax.Array, image: jax.Array, out_size: int, cfg, identity: str | None = None):
    """One face -> (warped input, target), float32 in [0, 1], on device.

    Args:
      key: PRNG key.
      image: uint8 [L, L, 3] loaded crop.
      out_size: model resolution.
      cfg: augmentation config (see default_config).
      identity: "a" or "b", whose flip probability kind "dfl" uses.
    """
    return apply_warp(jnp, warp_params(key, cfg, identity), image, out_size, cfg)


def warp_with_masks(key: jax.Array, image: jax.Array, masks: jax.Array, out_size: int, cfg,
                    identity: str | None = None):
    """`warp_pair` with masks that follow the target: (warped, target, target masks), float32
    in [0, 1]; masks uint8 [L, L, M] take the target's view (no colour, no warp), sampled
    linearly as DeepFaceLab's masks are."""
    p = warp_params(key, cfg, identity)
    warped, target = apply_warp(jnp, p, image, out_size, cfg)
    return warped, target, target_masks(jnp, p, masks, out_size, cfg)


def target_masks(xp, p: dict, masks, out_size: int, cfg):
    """uint8 [L, L, M] masks in the target's view of warp `p`: float32 [out, out, M] in
    [0, 1], sampled linearly."""
    grid, _ = source_coords(xp, p, out_size, masks.shape[0], cfg)
    return sample(masks.astype(xp.float32) / np.float32(255), grid, xp, "linear")


def warp_batch_np(rng: np.random.Generator, images: np.ndarray, out_size: int, cfg,
                  identity: str | None = None, masks: np.ndarray | None = None):
    """The host path: uint8 [B, L, L, 3] -> (warped, target) float32 [B, out, out, 3], and
    with uint8 masks [B, L, L] their target views [B, out, out, 1] third (the draws are the
    same with or without)."""
    params = [warp_params_np(rng, cfg, identity) for _ in images]
    pairs = [apply_warp(np, p, im, out_size, cfg) for p, im in zip(params, images)]
    out = (np.stack([w for w, _ in pairs]).astype(np.float32),
           np.stack([t for _, t in pairs]).astype(np.float32))
    if masks is None:
        return out
    return out + (np.stack([target_masks(np, p, m[..., None], out_size, cfg)
                            for p, m in zip(params, masks)]).astype(np.float32),)


def warp_field(key: jax.Array, out_size: int, in_size: int, cfg) -> jax.Array:
    """The random displacement [out, out, 2] (source pixels) that `warp_pair` would draw (kind
    "deepfakes")."""
    return displacement(jnp, warp_params(key, cfg), out_size, in_size, cfg)


def centre_view(image, out_size: int, region: float, xp=jnp):
    """The un-augmented model view of uint8 [L, L, C] crops (for evaluation and conversion),
    cubic, clipped to [0, 1]."""
    gx, gy = _pixel_grid(xp, out_size)
    grid = (xp.stack([gx, gy], -1) * region + 0.5) * image.shape[0] - 0.5
    return xp.clip(sample(image.astype(xp.float32) / np.float32(255), grid, xp), 0.0, 1.0)


# ---- pix2pix random jitter ---------------------------------------------------------------

def jitter_params(key: jax.Array, big: int, size: int, flip: float) -> dict:
    k1, k2, k3 = jax.random.split(key, 3)
    return {"oy": jax.random.randint(k1, (), 0, big - size + 1),
            "ox": jax.random.randint(k2, (), 0, big - size + 1),
            "flip": jax.random.uniform(k3) < flip}


def jitter_params_np(rng: np.random.Generator, big: int, size: int, flip: float) -> dict:
    return {"oy": int(rng.integers(0, big - size + 1)), "ox": int(rng.integers(0, big - size + 1)),
            "flip": bool(rng.uniform() < flip)}


def jitter_image(p: dict, image, big: int, size: int, xp=jnp):
    """float [S0, S0, C] -> resized to big × big as jax.image.resize's "linear" (antialiased
    when downsampling), cropped at (oy, ox), maybe mirrored: two products with the crop's rows
    of `interp_matrix`. Linear: the cubic kernel replaced the face warp's sampling only."""
    n = image.shape[0]
    m = xp.asarray(interp_matrix(n, big, antialias=True))
    crop = ((lambda o: jax.lax.dynamic_slice_in_dim(m, o, size)) if xp is jnp else
            (lambda o: m[o:o + size]))
    ry, rx = crop(p["oy"]), crop(p["ox"])
    rx = xp.where(p["flip"], rx[::-1], rx)
    # Default precision (TF32 on a GPU, far below a grey level): jax.image.resize's HIGHEST
    # product found no Triton tiling compiled for an H100 without one (docs/benchmarks.md).
    rows = (ry @ image.reshape(n, -1).astype(xp.float32)).reshape(size, n, -1)   # [size, n, C]
    return xp.matmul(rx, rows)                                                    # [size, size, C]

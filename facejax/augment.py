"""Jittable augmentations on device: random affine, the deepfakes random warp, LAB colour jitter.

`warp_pair` produces, for one face, the network input (randomly warped) and its target (the same
face and the same affine view, unwarped), both at the model size. Coordinates are pixel centres.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np


def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        region=0.8,        # fraction of the loaded crop's side that the model sees
        rotation=10.0,     # degrees, uniform in ±
        zoom=0.05,         # relative, uniform in ±
        shift=0.05,        # fraction of the region, uniform in ±
        shear=0.05,        # uniform in ±
        flip=0.4,          # probability of a horizontal flip
        warp=5.0 / 160.0,  # std of the control-point noise, as a fraction of the region
        warp_grid=5,       # control points per side (the original's 5×5)
        lightness=3.0,     # std of a lightness shift, LAB L units (0-100)
        color=2.0,         # std of a/b shifts, LAB units
        contrast=0.05,     # std of a relative lightness-contrast change
    ))


def affine_grid(key: jax.Array, out_size: int, in_size: int, cfg) -> jax.Array:
    """Source (x, y) pixel coordinates [out, out, 2] of a random similarity + shear view."""
    k = jax.random.split(key, 6)
    u = lambda kk, r: jax.random.uniform(kk, (), minval=-r, maxval=r)
    theta = jnp.deg2rad(u(k[0], cfg.rotation))
    scale = 1.0 + u(k[1], cfg.zoom)
    shift = jnp.stack([u(k[2], cfg.shift), u(jax.random.fold_in(k[2], 1), cfg.shift)])
    shear = u(k[3], cfg.shear)
    flip = jnp.where(jax.random.uniform(k[4]) < cfg.flip, -1.0, 1.0)
    # Output pixel centres in [-0.5, 0.5] units of the region.
    t = (jnp.arange(out_size) + 0.5) / out_size - 0.5
    gx, gy = jnp.meshgrid(t, t)
    pts = jnp.stack([gx * flip, gy], -1)
    rot = jnp.array([[jnp.cos(theta), -jnp.sin(theta)], [jnp.sin(theta), jnp.cos(theta)]])
    shr = jnp.array([[1.0, shear], [0.0, 1.0]])
    pts = pts @ (rot @ shr).T / scale + shift
    return (pts * cfg.region + 0.5) * in_size - 0.5


def warp_field(key: jax.Array, out_size: int, in_size: int, cfg) -> jax.Array:
    """Smooth random displacement [out, out, 2] in source pixels from a noisy control grid."""
    n = cfg.warp_grid
    noise = jax.random.normal(key, (n, n, 2)) * cfg.warp * cfg.region * in_size
    return jax.image.resize(noise, (out_size, out_size, 2), "linear")


def sample(image: jax.Array, coords: jax.Array) -> jax.Array:
    """Bilinear sampling of image [H, W, C] at (x, y) coords [..., 2]; edges clamp."""
    h, w = image.shape[:2]
    x = jnp.clip(coords[..., 0], 0, w - 1)
    y = jnp.clip(coords[..., 1], 0, h - 1)
    x0, y0 = jnp.floor(x), jnp.floor(y)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    x0i, y0i = x0.astype(jnp.int32), y0.astype(jnp.int32)
    x1i, y1i = jnp.minimum(x0i + 1, w - 1), jnp.minimum(y0i + 1, h - 1)
    img = image.astype(jnp.float32)
    top = img[y0i, x0i] * (1 - fx) + img[y0i, x1i] * fx
    bot = img[y1i, x0i] * (1 - fx) + img[y1i, x1i] * fx
    return top * (1 - fy) + bot * fy


# sRGB (D65) <-> CIE LAB. numpy constants: importing this module must not start a JAX backend.
_RGB2XYZ = np.array([[0.412453, 0.357580, 0.180423],
                      [0.212671, 0.715160, 0.072169],
                      [0.019334, 0.119193, 0.950227]])
_WHITE = np.array([0.950456, 1.0, 1.088754])
_XYZ2RGB = np.linalg.inv(_RGB2XYZ)


def rgb_to_lab(rgb: jax.Array) -> jax.Array:
    """sRGB in [0, 1] -> LAB (L in [0, 100])."""
    lin = jnp.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = lin @ _RGB2XYZ.T / _WHITE
    f = jnp.where(xyz > 0.008856, jnp.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    return jnp.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]),
                      200.0 * (f[..., 1] - f[..., 2])], -1)


def lab_to_rgb(lab: jax.Array) -> jax.Array:
    """LAB -> sRGB in [0, 1] (clipped)."""
    fy = (lab[..., 0] + 16.0) / 116.0
    fx, fz = fy + lab[..., 1] / 500.0, fy - lab[..., 2] / 200.0
    f = jnp.stack([fx, fy, fz], -1)
    xyz = jnp.where(f > 0.206893, f ** 3, (f - 16.0 / 116.0) / 7.787) * _WHITE
    lin = xyz @ _XYZ2RGB.T
    lin = jnp.clip(lin, 0.0, 1.0)
    return jnp.where(lin > 0.0031308, 1.055 * lin ** (1 / 2.4) - 0.055, 12.92 * lin)


def color_jitter(key: jax.Array, rgb: jax.Array, cfg) -> jax.Array:
    """Random lightness, contrast and a/b shifts in LAB (identity when all stds are 0)."""
    if not (cfg.lightness or cfg.color or cfg.contrast):
        return rgb
    k = jax.random.split(key, 3)
    lab = rgb_to_lab(rgb)
    mean_l = lab[..., 0].mean()
    l = (lab[..., 0] - mean_l) * (1 + cfg.contrast * jax.random.normal(k[0])) + mean_l
    l = l + cfg.lightness * jax.random.normal(k[1])
    ab = lab[..., 1:] + cfg.color * jax.random.normal(k[2], (2,))
    return lab_to_rgb(jnp.concatenate([l[..., None], ab], -1))


def warp_pair(key: jax.Array, image: jax.Array, out_size: int, cfg, extra=None):
    """One face -> (warped input, target[, extra resampled like the target]), float32 in [0, 1].

    Args:
      key: PRNG key.
      image: uint8 [L, L, 3] loaded crop.
      out_size: model resolution.
      cfg: augmentation config (see default_config).
      extra: optional [L, L, C] array (e.g. a mask) warped exactly like the target.
    """
    ka, kw, kc = jax.random.split(key, 3)
    grid = affine_grid(ka, out_size, image.shape[0], cfg)
    src = image.astype(jnp.float32) / 255.0
    src = color_jitter(kc, src, cfg)
    target = sample(src, grid)
    warped = sample(src, grid + warp_field(kw, out_size, image.shape[0], cfg))
    if extra is None:
        return warped, target
    return warped, target, sample(extra.astype(jnp.float32), grid)


def centre_view(image: jax.Array, out_size: int, region: float) -> jax.Array:
    """The un-augmented model view of uint8 [L, L, C] crops (for evaluation and conversion)."""
    t = (jnp.arange(out_size) + 0.5) / out_size - 0.5
    gx, gy = jnp.meshgrid(t, t)
    grid = (jnp.stack([gx, gy], -1) * region + 0.5) * image.shape[0] - 0.5
    return sample(image.astype(jnp.float32) / 255.0, grid)

"""Pure loss terms: unreduced, shape-checked. Reduce with `mean` / `masked_mean` at the call
site."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np

from facejax.ops import conv


def l1(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Elementwise |pred - target|."""
    chex.assert_equal_shape([pred, target])
    return jnp.abs(pred - target)


def l2(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Elementwise (pred - target)²."""
    chex.assert_equal_shape([pred, target])
    return jnp.square(pred - target)


def masked_mean(values: jax.Array, mask: jax.Array, axis=None) -> jax.Array:
    """Mean of `values` where `mask` (broadcastable, in [0, 1]) is on; 0 where the mask is empty.

    An empty mask gives 0, not NaN: the denominator is clamped and the numerator is 0.
    """
    mask = jnp.broadcast_to(mask, values.shape).astype(values.dtype)
    total = jnp.sum(values * mask, axis=axis)
    count = jnp.sum(mask, axis=axis)
    return total / jnp.maximum(count, 1e-8) * (count > 0)


def per_example_mean(values: jax.Array) -> jax.Array:
    """Mean over every axis but the first: [B, ...] -> [B]."""
    return values.reshape(values.shape[0], -1).mean(-1)


GAN_MODES = ("vanilla", "lsgan", "hinge", "l1")


def bce_with_logits(logits: jax.Array, label: float) -> jax.Array:
    """Elementwise binary cross-entropy of sigmoid(logits) against a constant label, stable."""
    return jnp.maximum(logits, 0) - logits * label + jnp.log1p(jnp.exp(-jnp.abs(logits)))


def gan_discriminator(real: jax.Array, fake: jax.Array, mode: str) -> tuple[jax.Array, jax.Array]:
    """Elementwise discriminator loss terms (on real logits, on fake logits).

    vanilla: BCE(real, 1), BCE(fake, 0) (the pix2pix paper); lsgan: (real-1)², fake²;
    hinge: relu(1 - real), relu(1 + fake); l1: |real - 1|, |fake| (the face-swap CycleGAN
    seed's L1(D(X), 1[X ∈ domain])).
    """
    if mode == "vanilla":
        return bce_with_logits(real, 1.0), bce_with_logits(fake, 0.0)
    if mode == "lsgan":
        return jnp.square(real - 1.0), jnp.square(fake)
    if mode == "hinge":
        return jax.nn.relu(1.0 - real), jax.nn.relu(1.0 + fake)
    if mode == "l1":
        return jnp.abs(real - 1.0), jnp.abs(fake)
    raise ValueError(f"gan_mode {mode!r}: expected one of {GAN_MODES}")


def gan_generator(fake: jax.Array, mode: str) -> jax.Array:
    """Elementwise generator loss on the discriminator's logits for generated images."""
    if mode == "vanilla":
        return bce_with_logits(fake, 1.0)
    if mode == "lsgan":
        return jnp.square(fake - 1.0)
    if mode == "hinge":
        return -fake
    if mode == "l1":
        return jnp.abs(fake - 1.0)
    raise ValueError(f"gan_mode {mode!r}: expected one of {GAN_MODES}")


# ---- structural terms (DeepFaceLab's SAEHD) ----------------------------------------------------

def gaussian_taps(sigma: float) -> np.ndarray:
    """One axis of DeepFaceLab's blur kernel, whose window is outer(taps, taps): size
    max(3, int(4σ)) made odd, normalised."""
    k = max(3, int(4 * sigma))
    k += 1 - k % 2
    g = np.exp(-(np.arange(k) - k // 2) ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def gaussian_blur(x: jax.Array, sigma: float) -> jax.Array:
    """x [B, H, W, C] blurred per channel, zero padding, same size (DeepFaceLab's)."""
    taps = gaussian_taps(sigma)
    p = len(taps) // 2
    return conv.separable_filter(x, taps, ((p, p), (p, p)))


def ssim_taps(size: int, sigma: float = 1.5) -> np.ndarray:
    """One axis of DeepFaceLab's DSSIM window, a softmax of -d²/(2σ²) over the size×size grid:
    that softmax is outer(taps, taps) with taps the softmax along one axis."""
    size = max(1, size)
    d = (np.arange(size) - (size - 1) / 2.0) ** 2 * (-0.5 / sigma ** 2)
    e = np.exp(d - d.max())
    return e / e.sum()


def dssim(a: jax.Array, b: jax.Array, filter_size: int, sigma: float = 1.5,
          max_val: float = 1.0) -> jax.Array:
    """Structural dissimilarity (1 - SSIM) / 2 per image and channel: [B, H, W, C] -> [B, C].

    DeepFaceLab's form: the Gaussian window of `ssim_taps`, VALID filtering, SSIM averaged
    over the positions (Wang et al. 2004, K1 0.01, K2 0.03).
    """
    chex.assert_equal_shape([a, b])
    taps = ssim_taps(filter_size, sigma)
    red = lambda x: conv.separable_filter(x, taps, ((0, 0), (0, 0)))
    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
    mean0, mean1 = red(a), red(b)
    num0 = mean0 * mean1 * 2.0
    den0 = jnp.square(mean0) + jnp.square(mean1)
    luminance = (num0 + c1) / (den0 + c1)
    num1 = red(a * b) * 2.0
    den1 = red(jnp.square(a) + jnp.square(b))
    cs = (num1 - num0 + c2) / (den1 - den0 + c2)
    return (1.0 - jnp.mean(luminance * cs, axis=(1, 2))) / 2.0


def total_variation_sq(images: jax.Array) -> jax.Array:
    """Per image [B]: the sum of squared differences between vertically and horizontally
    neighbouring pixels (DeepFaceLab's total_variation_mse, which its GAN option adds to
    suppress isolated bright dots)."""
    dy = images[:, 1:] - images[:, :-1]
    dx = images[:, :, 1:] - images[:, :, :-1]
    return jnp.square(dy).sum((1, 2, 3)) + jnp.square(dx).sum((1, 2, 3))

"""Pure loss terms: unreduced, shape-checked. Reduce with `mean` / `masked_mean` at the call site."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


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

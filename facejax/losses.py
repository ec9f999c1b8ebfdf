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

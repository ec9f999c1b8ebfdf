"""Depth to space and back: the pixel reshuffles of sub-pixel upscaling and space-to-depth
convolutions."""

from __future__ import annotations

import jax


def pixel_shuffle(x: jax.Array, r: int = 2) -> jax.Array:
    """[B, H, W, r·r·C] -> [B, r·H, r·W, C] (depth to space; channel order (dy, dx, c))."""
    b, h, w, c = x.shape
    oc = c // (r * r)
    x = x.reshape(b, h, w, r, r, oc).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h * r, w * r, oc)


def space_to_depth(x: jax.Array, r: int = 2) -> jax.Array:
    """[B, r·H, r·W, C] -> [B, H, W, r·r·C], the inverse of pixel_shuffle."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // r, r, w // r, r, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h // r, w // r, r * r * c)

"""XLA's own convolutions, NHWC/HWIO: the reference every other form equals, and the stride-1
convolution the other forms build on (`conv1`)."""

from __future__ import annotations

import jax

from facejax.ops.conv import backend
from facejax.ops.conv.valid import conv_valid

DIMS = ("NHWC", "HWIO", "NHWC")


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow/XLA 'SAME' padding (low, high) for one spatial axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv(x: jax.Array, kernel: jax.Array, padding, stride: int = 1) -> jax.Array:
    """XLA's convolution with explicit padding ((top, bottom), (left, right))."""
    return jax.lax.conv_general_dilated(x, kernel, (stride, stride), padding,
                                        dimension_numbers=DIMS)


def conv_per_channel(x: jax.Array, kernel: jax.Array, padding) -> jax.Array:
    """XLA's stride-1 per-channel (depthwise) convolution: a [kh, kw, 1, C] kernel, explicit
    padding ((top, bottom), (left, right))."""
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=DIMS,
                                        feature_group_count=x.shape[-1])


def conv_transpose(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """XLA's stride-2 'SAME' transposed convolution: [B, H, W, C] -> [B, 2H, 2W, O]."""
    return jax.lax.conv_transpose(x, kernel, (2, 2), "SAME", dimension_numbers=DIMS)


def conv1(x: jax.Array, kernel: jax.Array, padding) -> jax.Array:
    """XLA's stride-1 convolution; on CPU an unpadded one goes through `valid.conv_valid`."""
    if backend.cpu_forms() and not any(v for p in padding for v in p):
        return conv_valid(x, kernel)
    return conv(x, kernel, padding)

"""Stride-2 convolution as a stride-1 one on the space-to-depth view of the input."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from facejax.ops.conv import xla
from facejax.ops.conv.winograd import conv_winograd
from facejax.ops.shuffle import space_to_depth


def _operands(x, kernel, padding):
    """The space-to-depth view of x padded for a stride-2 k×k convolution, the matching
    ⌈k/2⌉×⌈k/2⌉ kernel on 4·C channels, and the output size."""
    k = kernel.shape[0]
    kh = math.ceil(k / 2)
    outs = []
    pads = []
    for axis, (lo, hi) in zip((1, 2), padding):
        n = x.shape[axis] + lo + hi
        out = (n - k) // 2 + 1
        outs.append(out)
        # Pad to exactly 2·(out + kh - 1) so the space-to-depth view covers every tap.
        pads.append((lo, 2 * (out + kh - 1) - x.shape[axis] - lo))
    x = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    c, o = kernel.shape[2], kernel.shape[3]
    w = jnp.pad(kernel, ((0, 2 * kh - k), (0, 2 * kh - k), (0, 0), (0, 0)))
    w = w.reshape(kh, 2, kh, 2, c, o).transpose(0, 2, 1, 3, 4, 5).reshape(kh, kh, 4 * c, o)
    return space_to_depth(x, 2), w, outs


def conv_s2d(x: jax.Array, kernel: jax.Array, padding: tuple[tuple[int, int], ...]) -> jax.Array:
    """A stride-2 convolution computed as stride 1 on a space-to-depth view.

    Args:
      x: [B, H, W, C].
      kernel: [k, k, C, O].
      padding: ((lo, hi), (lo, hi)) for H and W, as for the strided convolution.
    Returns:
      [B, H', W', O], equal to lax.conv_general_dilated(x, kernel, (2, 2), padding).
    """
    x, w, outs = _operands(x, kernel, padding)
    return xla.conv1(x, w, ((0, 0), (0, 0)))[:, :outs[0], :outs[1]]


def conv_s2d_winograd(x: jax.Array, kernel: jax.Array,
                      padding: tuple[tuple[int, int], ...]) -> jax.Array:
    """conv_s2d's stride-1 convolution in Winograd tiles (`conv_winograd`): F(3×3, 2×2) for 3×3
    and 4×4 kernels, whose space-to-depth kernel is 2×2 (16 products for 9 outputs against 36),
    F(2×2, 3×3) for 5×5 and 6×6 ones (3×3). Same arguments and result as conv_s2d."""
    x, w, outs = _operands(x, kernel, padding)
    y = conv_winograd(x, w, ((0, 0), (0, 0)), 3 if w.shape[0] == 2 else 2)
    return y[:, :outs[0], :outs[1]]

"""Building blocks shared by the model families.

`StridedConv` is a stride-2 convolution with the parameters of `nn.Conv`, computed either by XLA
directly ("xla") or as a stride-1 convolution over a space-to-depth view ("s2d"). The two are
equal in value and gradient (tested); "s2d" avoids XLA:CPU's slow input gradient of strided
convolutions on small maps, so it is the default on CPU.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp


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


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow/XLA 'SAME' padding (low, high) for one spatial axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv_s2d(x: jax.Array, kernel: jax.Array, padding: tuple[tuple[int, int], ...]) -> jax.Array:
    """A stride-2 convolution computed as stride 1 on a space-to-depth view.

    Args:
      x: [B, H, W, C].
      kernel: [k, k, C, O].
      padding: ((lo, hi), (lo, hi)) for H and W, as for the strided convolution.
    Returns:
      [B, H', W', O], equal to lax.conv_general_dilated(x, kernel, (2, 2), padding).
    """
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
    x = space_to_depth(x, 2)
    c, o = kernel.shape[2], kernel.shape[3]
    w = jnp.pad(kernel, ((0, 2 * kh - k), (0, 2 * kh - k), (0, 0), (0, 0)))
    w = w.reshape(kh, 2, kh, 2, c, o).transpose(0, 2, 1, 3, 4, 5).reshape(kh, kh, 4 * c, o)
    y = jax.lax.conv_general_dilated(x, w, (1, 1), "VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y[:, :outs[0], :outs[1]]


def default_conv_impl() -> str:
    """The faster stride-2 formulation for the default backend (measured, see issue notes)."""
    return "s2d" if jax.default_backend() == "cpu" else "xla"


class StridedConv(nn.Module):
    """k×k stride-2 convolution with 'SAME' padding; parameters named as nn.Conv's."""
    features: int
    kernel_size: int = 5
    use_bias: bool = True
    impl: str = "auto"  # "xla", "s2d" or "auto"
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (k, k, x.shape[-1], self.features), jnp.float32)
        dtype = self.dtype or x.dtype
        x, kernel = x.astype(dtype), kernel.astype(dtype)
        padding = (same_padding(x.shape[1], k, 2), same_padding(x.shape[2], k, 2))
        impl = default_conv_impl() if self.impl == "auto" else self.impl
        if impl == "s2d":
            y = conv_s2d(x, kernel, padding)
        else:
            y = jax.lax.conv_general_dilated(x, kernel, (2, 2), padding,
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,),
                               jnp.float32).astype(dtype)
        return y


class Upscale(nn.Module):
    """Conv 3×3 to 4·features channels, LeakyReLU, pixel shuffle ×2 (the deepfakes upscale)."""
    features: int
    negative_slope: float = 0.1
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.Conv(4 * self.features, (3, 3), padding="SAME", dtype=self.dtype,
                    param_dtype=jnp.float32)(x)
        x = nn.leaky_relu(x, self.negative_slope)
        return pixel_shuffle(x, 2)

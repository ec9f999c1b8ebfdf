"""DeepFaceLab's XSeg segmentation network: a U-Net of FRN/TLU convolution blocks with blur
pooling and a dense bottleneck, face crop in, one logit per pixel out (the face's visible part).

The shape of DeepFaceLab's `core/leras/models/XSeg.py` (base width B, 32 there):
- encoder: six levels of 3×3 convolution blocks, widths B, 2B, 4B, 8B, 8B, 8B (two blocks on
  the first three levels, three on the rest), each level ending in a blur pool (a fixed
  binomial filter, 4, 3, then 2 taps, stride 2, zero padding), so 256 px become 4 × 4;
- bottleneck: flatten, Dense `dense` (512 there), Dense back to the 4 × 4 × 8B grid;
- decoder: per level a 3×3 stride-2 transposed convolution block to half the width, its output
  joined with the encoder's skip of that level, then two or three convolution blocks;
- a block is convolution -> filter response normalisation (FRN: x / sqrt(mean over H, W of x²
  + |eps|) · weight + bias, eps learned from 1e-6) -> thresholded linear unit (max(x, tau)).
The side must divide by 64; the bottleneck is side / 64 square.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from facejax.models.layers import Conv, UpConv, compute_dtype

LEVELS = 6
_BLUR_TAPS = (4, 3, 2, 2, 2, 2)           # DeepFaceLab's filter size per encoder level
_BINOMIAL = {2: (1, 1), 3: (1, 2, 1), 4: (1, 3, 3, 1)}


class FRN(nn.Module):
    """Filter response normalisation with its learned epsilon, then the TLU."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        weight = self.param("weight", nn.initializers.ones, (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        eps = self.param("eps", nn.initializers.constant(1e-6), (1,), jnp.float32)
        tau = self.param("tau", nn.initializers.zeros, (c,), jnp.float32)
        x32 = x.astype(jnp.float32)
        nu2 = jnp.mean(jnp.square(x32), axis=(1, 2), keepdims=True)
        y = x32 * jax.lax.rsqrt(nu2 + jnp.abs(eps)) * weight + bias
        return jnp.maximum(y, tau).astype(x.dtype)


def blur_pool(x: jax.Array, taps: int) -> jax.Array:
    """Each channel blurred by the normalised binomial filter of `taps` taps and subsampled by
    2, zero-padded by (taps - 1) // 2 before and the rest after (DeepFaceLab's BlurPool)."""
    a = np.asarray(_BINOMIAL[taps], np.float32)
    k = np.outer(a, a) / np.sum(a) ** 2
    c = x.shape[-1]
    kernel = jnp.asarray(np.tile(k[:, :, None, None], (1, 1, 1, c)), x.dtype)
    pad = ((taps - 1) // 2, taps // 2)
    return jax.lax.conv_general_dilated(x, kernel, (2, 2), (pad, pad),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        feature_group_count=c)


class Block(nn.Module):
    """3×3 convolution (or the stride-2 transposed one, `up`), FRN, TLU."""
    features: int
    up: bool = False
    impl: str = "auto"
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.up:
            x = UpConv(self.features, kernel_size=3, impl=self.impl, dtype=self.dtype)(x)
        else:
            x = Conv(self.features, 3, impl=self.impl, dtype=self.dtype)(x)
        return FRN()(x)


def _widths(base: int) -> tuple[int, ...]:
    return (base, 2 * base, 4 * base, 8 * base, 8 * base, 8 * base)


class XSeg(nn.Module):
    """Face crops [N, S, S, 3] in [0, 1] -> logits [N, S, S, 1] of the visible face."""
    base: int = 32
    dense: int = 512
    conv_impl: str = "auto"
    up_impl: str = "auto"
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.shape[1] % 2 ** LEVELS:
            raise ValueError(f"XSeg needs a side that divides by {2 ** LEVELS}, got {x.shape[1]}")
        widths = _widths(self.base)
        block = lambda w, up=False: Block(w, up, self.up_impl if up else self.conv_impl,
                                          self.dtype)
        x = x.astype(self.dtype or jnp.float32)
        skips = []
        for level, w in enumerate(widths):
            for _ in range(2 if level < 3 else 3):
                x = block(w)(x)
            skips.append(x)
            x = blur_pool(x, _BLUR_TAPS[level])
        side = x.shape[1]
        x = x.reshape(x.shape[0], -1)
        x = nn.Dense(self.dense, dtype=self.dtype, param_dtype=jnp.float32)(x)
        x = nn.Dense(side * side * widths[-1], dtype=self.dtype, param_dtype=jnp.float32)(x)
        x = x.reshape(x.shape[0], side, side, widths[-1])
        for level in reversed(range(LEVELS)):
            # The three deepest levels come up at half their width, the others at theirs.
            x = block(widths[level] // 2 if level >= 3 else widths[level], up=True)(x)
            x = jnp.concatenate([x, skips[level]], axis=-1)
            for _ in range(3 if level >= 3 else 2):
                x = block(widths[level])(x)
        logits = Conv(1, 3, impl=self.conv_impl, dtype=self.dtype)(x)
        return logits.astype(jnp.float32)


def build(config) -> XSeg:
    """The network of `config.model` (base, dense, conv_impl, compute_dtype)."""
    m = config.model
    return XSeg(m.base, m.dense, m.get("conv_impl", "auto"), m.get("up_impl", "auto"),
                compute_dtype(m))

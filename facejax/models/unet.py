"""The pix2pix U-Net generator (Isola et al. 2017), depth following the resolution.

At 256 px: 8 down blocks (Conv 4×4 stride 2: 64, 128, 256, 512, 512, 512, 512, 512; batch norm
except the first; LeakyReLU 0.2) to a 1×1 bottleneck, and 7 up blocks (transposed Conv 4×4
stride 2: 512, 512, 512, 512, 256, 128, 64; batch norm; dropout 0.5 in the first three; ReLU),
each concatenated with the mirror down block, then a transposed conv to 3 channels and tanh.
A size of 2^n gives n down blocks. As in pytorch-CycleGAN-and-pix2pix, the innermost down block
has no norm: at a 1×1 map with batch 1, batch norm would zero it.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from facejax.models.layers import StridedConv, UpConv, norm_layer
from facejax.ops import conv


def down_widths(size: int, base: int = 64, max_width: int = 512) -> list[int]:
    """Widths of the down blocks for a size×size input: 64, 128, 256, 512, 512, ..."""
    depth = int(round(math.log2(size)))
    if 2 ** depth != size or depth < 5:
        raise ValueError(f"U-Net size must be a power of two >= 32, got {size}")
    return [min(base * 2 ** i, max_width) for i in range(depth)]


class UNet(nn.Module):
    size: int = 256
    base: int = 64
    max_width: int = 512
    out_channels: int = 3
    dropout: float = 0.5
    dropout_blocks: int = 3
    norm: str = "batch"
    conv_impl: str = "auto"
    up_impl: str | None = None  # None: follows conv_impl
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        widths = down_widths(self.size, self.base, self.max_width)
        norm = norm_layer(self.norm, train)
        skips = []
        for i, w in enumerate(widths):
            x = StridedConv(w, 4, use_bias=(i == 0 or i == len(widths) - 1),
                            impl=self.conv_impl, dtype=self.dtype)(x)
            if 0 < i < len(widths) - 1:
                x = norm()(x)
            x = nn.leaky_relu(x, 0.2)
            skips.append(x)
        skips.pop()  # the bottleneck itself
        up_impl = conv.transposed_for(self.up_impl, self.conv_impl)
        for i, w in enumerate(reversed(widths[:-1])):
            x = UpConv(w, use_bias=False, impl=up_impl, dtype=self.dtype)(x)
            x = norm()(x)
            if i < self.dropout_blocks and self.dropout > 0:
                x = nn.Dropout(self.dropout, deterministic=not train)(x)
            x = nn.relu(x)
            x = jnp.concatenate([x, skips.pop()], axis=-1)
        x = UpConv(self.out_channels, impl=up_impl, dtype=self.dtype)(x)
        return jnp.tanh(x.astype(jnp.float32))

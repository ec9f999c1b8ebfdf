"""The PatchGAN discriminator (70×70 receptive field at the default 3 layers).

Conv 4×4 stride 2 with 64 filters and no norm, then n_layers-1 more stride-2 convs doubling the
width (up to 512) and one stride-1 conv, each with norm and LeakyReLU 0.2, then a stride-1 conv
to one logit per patch. Padding 1 everywhere, as in pytorch-CycleGAN-and-pix2pix: a 256 px input
gives 30×30 logits. Conditioning (pix2pix) is the caller's: it concatenates the input image with
the real or generated face along channels before calling.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from facejax.models.layers import Conv, StridedConv, norm_layer

PAD1 = ((1, 1), (1, 1))


class PatchGAN(nn.Module):
    base: int = 64
    n_layers: int = 3
    max_width: int = 512
    norm: str = "batch"
    conv_impl: str = "auto"
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        norm = norm_layer(self.norm, train)
        bias = self.norm == "none"  # a bias before a normalisation is removed by it
        x = nn.leaky_relu(StridedConv(self.base, 4, impl=self.conv_impl, dtype=self.dtype)(x),
                          0.2)
        for i in range(1, self.n_layers):
            w = min(self.base * 2 ** i, self.max_width)
            x = StridedConv(w, 4, use_bias=bias, impl=self.conv_impl, dtype=self.dtype)(x)
            x = nn.leaky_relu(norm()(x), 0.2)
        w = min(self.base * 2 ** self.n_layers, self.max_width)
        # Stride 1: parameters named as nn.Conv's (Conv_0, Conv_1); "auto" gives the logits'
        # layer a one-product weight gradient on CPU (facejax/ops/conv/rules.py).
        impl = "xla" if self.conv_impl == "xla" else "auto"
        x = Conv(w, 4, impl=impl, padding=PAD1, use_bias=bias, dtype=self.dtype)(x)
        x = nn.leaky_relu(norm()(x), 0.2)
        x = Conv(1, 4, impl=impl, padding=PAD1, dtype=self.dtype)(x)
        return x.astype(jnp.float32)


def receptive_field(n_layers: int = 3, kernel: int = 4) -> int:
    """Receptive field of one output logit, from the layer arithmetic (strides 2, ..., 1, 1)."""
    strides = [2] * n_layers + [1, 1]
    rf = 1
    for s in reversed(strides):
        rf = (rf - 1) * s + kernel
    return rf

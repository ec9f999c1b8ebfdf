"""The CycleGAN ResNet generator (Zhu et al. 2017; Johnson et al. 2016).

c7s1-64, d128, d256, R256 × n_blocks (9 at 256 px, 6 at 128 px), u128, u64, c7s1-3, tanh; instance
norm (no affine parameters) and reflection padding, as in pytorch-CycleGAN-and-pix2pix (whose
biases before instance norm, which the norm cancels, are left out here).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from facejax.models.layers import Conv, StridedConv, UpConv, instance_norm, norm_layer
from facejax.ops import conv, loops


def reflect(x: jax.Array, p: int) -> jax.Array:
    return jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")


def default_blocks(size: int) -> int:
    return 9 if size >= 256 else 6


class ResnetGenerator(nn.Module):
    base: int = 64
    n_blocks: int = 9
    out_channels: int = 3
    norm: str = "instance"
    conv_impl: str = "auto"
    up_impl: str | None = None  # None: follows conv_impl
    conv1_impl: str | None = None  # the residual 3×3s; None: XLA's (see below)
    dtype: jnp.dtype | None = None
    # The residual blocks as one scan over their stacked parameters (`_scanned_blocks`); False
    # writes each block out (same parameters, same values).
    scan_blocks: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        norm = norm_layer(self.norm, train=True)
        # Convolutions followed by instance norm carry no bias: the norm removes any per-channel
        # constant, so such a bias has no gradient but rounding noise, which Adam would amplify.
        bias = self.norm == "none"
        # The 7×7s: layers.Conv, unpadded on the reflection-padded map, with nn.Conv's
        # parameters and names (their forms: facejax/ops/conv/rules.py).
        conv7 = lambda f, b=bias: Conv(f, 7, padding=((0, 0), (0, 0)), use_bias=b,
                                       dtype=self.dtype)
        x = nn.relu(norm()(conv7(self.base)(reflect(x, 3))))
        for mult in (2, 4):
            x = StridedConv(self.base * mult, 3, use_bias=bias, impl=self.conv_impl,
                            dtype=self.dtype, padding=1)(x)
            x = nn.relu(norm()(x))
        width = self.base * 4
        # The residual 3×3 convolutions (most of the model's multiply-adds): layers.Conv, with
        # the same parameters as nn.Conv (named Conv_k). cyclegan_faces sets "auto", which stops
        # at F(3×3) Winograd tiles here (max_tile): in the step both F(4×4) and F(2×2) tiles
        # run slower, and F(4×4) compiles longer and holds more memory (docs/benchmarks.md).
        conv1 = self.conv1_impl or "xla"
        res_convs = [Conv(width, 3, impl=conv1, max_tile=3, padding=((0, 0), (0, 0)),
                          use_bias=bias, dtype=self.dtype) for _ in range(2 * self.n_blocks)]
        if (self.is_initializing() or not self.scan_blocks or self.norm == "batch"
                or not res_convs):
            for first, second in zip(res_convs[::2], res_convs[1::2]):
                h = nn.relu(norm()(first(reflect(x, 1))))
                x = x + norm()(second(reflect(h, 1)))
        else:
            x = self._scanned_blocks(x, [c.name for c in res_convs], conv1, bias)
        up_impl = conv.transposed_for(self.up_impl, self.conv_impl)
        for mult in (2, 1):
            x = UpConv(self.base * mult, use_bias=bias, impl=up_impl, dtype=self.dtype,
                       kernel_size=3)(x)
            x = nn.relu(norm()(x))
        x = conv7(self.out_channels, True)(reflect(x, 3))
        return jnp.tanh(x.astype(jnp.float32))

    def _scanned_blocks(self, x: jax.Array, names: list[str], impl: str, bias: bool):
        """x through the residual blocks as one `lax.scan` over their stacked parameters (the
        `Conv_k` modules `names`, two per block): the same computation as the blocks written
        out, compiled once instead of once per block, which is what keeps CycleGAN's step
        from compiling for minutes (docs/benchmarks.md)."""
        params = self.variables["params"]
        stacked = {key: jnp.stack([jnp.stack([params[n][key] for n in pair])
                                   for pair in zip(names[::2], names[1::2])])
                   for key in (("kernel", "bias") if bias else ("kernel",))}
        dtype = self.dtype or x.dtype
        norm = instance_norm if self.norm == "instance" else (lambda h: h)

        def layer(h, block, j):
            y = conv.convolve("stride1", reflect(h, 1).astype(dtype),
                              block["kernel"][j].astype(dtype), ((0, 0), (0, 0)), impl, 3)
            return norm(y + block["bias"][j].astype(y.dtype) if bias else y)

        def one_block(x, block):
            return (x + layer(nn.relu(layer(x, block, 0)), block, 1)).astype(x.dtype), None

        return loops.scan(one_block, x.astype(dtype), stacked)[0]

"""The discriminators of DeepFaceLab's SAEHD options, as Flax modules.

UNetPatchDiscriminator (gan_power; after Schönfeld et al., "A U-Net Based Discriminator for
Generative Adversarial Networks", as DeepFaceLab builds it): a 1×1 input conv to `base`
channels, then 3×3 convs whose strides are chosen so the receptive field is nearest
`patch_size` (`patch_layers`), channels doubling per level up to 512; a 1×1 logit at the
centre; back up by transposed 3×3 convs with the encoder's features concatenated at each level;
a 1×1 logit per pixel. LeakyReLU 0.2 throughout. Returns (centre logits, pixel logits).

Kernels are glorot-uniform and biases zero, as DeepFaceLab initialises them.

CodeDiscriminator (true_face_power, df only): on the inter's code, 1 + R/8 convs of stride 2
(4×4 then 3×3), `ch`·2^i channels (at most 8·ch), LeakyReLU 0.1, a 1×1 logit per position.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from facejax.models.layers import Conv, StridedConv, UpConv

GLOROT = nn.initializers.glorot_uniform()


def receptive_field(layers) -> int:
    """Receptive field of a stack of (kernel, stride) convolutions."""
    rf, stride = 0, 1
    for i, (k, s) in enumerate(layers):
        rf = k if i == 0 else rf + (k - 1) * stride
        stride *= s
    return rf


def patch_layers(patch_size: int, max_layers: int = 9) -> list[tuple[int, int]]:
    """3×3 (kernel, stride) layers, the first of stride 2, whose receptive field is nearest
    `patch_size`: among stacks of equal field, the fewest layers, then the most downsampling
    (DeepFaceLab's choice, including which of equal stacks wins)."""
    best: dict[int, tuple[int, int, list]] = {}
    for n in range(1, max_layers + 1):
        for bits in reversed(range(2 ** (n - 1))):
            layers = [(3, 2)] + [(3, 2 if bits >> i & 1 else 1) for i in range(n - 1)]
            rf, total = receptive_field(layers), sum(s for _, s in layers)
            if rf not in best or (n, -total) < (best[rf][0], -best[rf][1]):
                best[rf] = (n, total, layers)
    fields = sorted(best)
    nearest = min(fields, key=lambda r: abs(r - patch_size))  # the smaller on a tie
    return best[nearest][2]


def downsampling(patch_size: int) -> int:
    """The factor by which the discriminator's deepest level is smaller than its input."""
    factor = 1
    for _, s in patch_layers(patch_size):
        factor *= s
    return factor


class UNetPatchDiscriminator(nn.Module):
    patch_size: int
    base: int = 16
    conv_impl: str = "auto"
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x):
        layers = patch_layers(self.patch_size)
        if x.shape[1] % downsampling(self.patch_size) or x.shape[2] % downsampling(
                self.patch_size):
            raise ValueError(f"gan_patch_size {self.patch_size}: the discriminator halves the "
                             f"{x.shape[1]} px face {len(layers)} times; choose a smaller patch")
        widths = [min(self.base * 2 ** i, 512) for i in range(len(layers) + 1)]
        act = lambda v: nn.leaky_relu(v, 0.2)
        opts = dict(impl=self.conv_impl, dtype=self.dtype, kernel_init=GLOROT)
        conv = lambda f, k, s=1: (StridedConv(f, k, **opts) if s == 2 else Conv(f, k, **opts))
        up = lambda f, k, s: (UpConv(f, kernel_size=k, **opts) if s == 2 else Conv(f, k, **opts))
        x = act(conv(widths[0], 1)(x))
        skips = []
        for (k, s), w in zip(layers, widths[1:]):
            skips.append(x)
            x = act(conv(w, k, s)(x))
        center = conv(1, 1)(x)
        x = act(conv(widths[-1], 1)(x))
        for (k, s), w, skip in reversed(list(zip(layers, widths[:-1], skips))):
            x = jnp.concatenate([skip, act(up(w, k, s)(x))], axis=-1)
        pixels = conv(1, 1)(x)
        return center.astype(jnp.float32), pixels.astype(jnp.float32)


class CodeDiscriminator(nn.Module):
    ch: int = 256
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, code):
        for i in range(1 + code.shape[1] // 8):
            x = StridedConv(self.ch * min(2 ** i, 8), 4 if i == 0 else 3, dtype=self.dtype,
                            kernel_init=GLOROT)(code)
            code = nn.leaky_relu(x, 0.1)
        return Conv(1, 1, dtype=self.dtype, kernel_init=GLOROT)(code).astype(jnp.float32)

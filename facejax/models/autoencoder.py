"""The original deepfakes autoencoder: one shared encoder, one decoder per identity.

Encoder: Conv 5×5 stride 2 (128, 256, 512, 1024; LeakyReLU 0.1) -> Dense 1024 ->
Dense (S/16)²·1024 -> reshape -> Upscale(512), so a 64 px face becomes an 8×8×512 code.
Decoder: Upscale(256, 128, 64) -> Conv 5×5 to 3 channels, sigmoid. The resolution and all widths
come from the config, so 128 px needs no new code.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from facejax.models.layers import StridedConv, Upscale, compute_dtype


class Encoder(nn.Module):
    widths: Sequence[int] = (128, 256, 512, 1024)
    latent: int = 1024
    code_channels: int = 512
    conv_impl: str = "auto"
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for w in self.widths:
            x = nn.leaky_relu(StridedConv(w, 5, impl=self.conv_impl, dtype=self.dtype)(x), 0.1)
        side = x.shape[1]
        x = x.reshape(x.shape[0], -1)
        x = nn.Dense(self.latent, dtype=self.dtype, param_dtype=jnp.float32)(x)
        x = nn.Dense(side * side * self.widths[-1], dtype=self.dtype,
                     param_dtype=jnp.float32)(x)
        x = x.reshape(x.shape[0], side, side, self.widths[-1])
        return Upscale(self.code_channels, dtype=self.dtype)(x)


class Decoder(nn.Module):
    widths: Sequence[int] = (256, 128, 64)
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, code: jax.Array) -> jax.Array:
        x = code
        for w in self.widths:
            x = Upscale(w, dtype=self.dtype)(x)
        x = nn.Conv(3, (5, 5), padding="SAME", dtype=self.dtype, param_dtype=jnp.float32)(x)
        return nn.sigmoid(x.astype(jnp.float32))


def build(config) -> tuple[Encoder, Decoder]:
    """Encoder and decoder modules from `config.model`."""
    m = config.model
    dtype = compute_dtype(m)
    enc = Encoder(tuple(m.encoder_widths), m.latent, m.code_channels, m.get("conv_impl", "auto"),
                  dtype)
    dec = Decoder(tuple(m.decoder_widths), dtype)
    return enc, dec

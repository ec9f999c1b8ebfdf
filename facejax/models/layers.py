"""Layers shared by the model families: convolutions with nn.Conv's parameters whose computation
is chosen per shape (`facejax.ops.conv`), the deepfakes upscale, the norm choice (batch,
instance or none).

`Conv`, `StridedConv` and `UpConv` hold a "kernel" (HWIO, lecun-normal) and a "bias" (zeros)
as nn.Conv does, in float32; `impl` names the form (`facejax.ops.conv.registry`) or is "auto".
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from facejax.ops import conv
from facejax.ops.shuffle import pixel_shuffle


def compute_dtype(model_config):
    """The activation dtype of `model_config.compute_dtype` (None: float32); parameters and
    optimizer state stay float32 either way."""
    return jnp.bfloat16 if model_config.get("compute_dtype", "float32") == "bfloat16" else None


def _conv_kernel(module: nn.Module, x: jax.Array, k: int):
    """The k×k HWIO "kernel" parameter of `module` (its `kernel_init`, lecun-normal unless set,
    as nn.Conv's; float32) and x, both cast to the module's compute dtype (its `dtype`, else
    x's)."""
    init = getattr(module, "kernel_init", None) or nn.initializers.lecun_normal()
    kernel = module.param("kernel", init, (k, k, x.shape[-1], module.features), jnp.float32)
    dtype = module.dtype or x.dtype
    return x.astype(dtype), kernel.astype(dtype)


def _add_bias(module: nn.Module, y: jax.Array) -> jax.Array:
    """y plus `module`'s "bias" parameter (zeros, float32, as nn.Conv's) when it uses one."""
    if not module.use_bias:
        return y
    return y + module.param("bias", nn.initializers.zeros, (module.features,),
                            jnp.float32).astype(y.dtype)


class Conv(nn.Module):
    """Stride-1 k×k convolution, 'SAME' or explicit `padding` ((top, bottom), (left, right))."""
    features: int
    kernel_size: int = 3
    impl: str = "auto"
    padding: tuple | None = None
    use_bias: bool = True
    dtype: jnp.dtype | None = None
    max_tile: int = 4  # the largest Winograd output tile "auto" may pick
    kernel_init: nn.initializers.Initializer | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x, kernel = _conv_kernel(self, x, self.kernel_size)
        y = conv.convolve("stride1", x, kernel, self.padding, self.impl, self.max_tile)
        return _add_bias(self, y)


class StridedConv(nn.Module):
    """k×k stride-2 convolution, 'SAME' padding or `padding` on every side (PyTorch style)."""
    features: int
    kernel_size: int = 5
    use_bias: bool = True
    impl: str = "auto"
    dtype: jnp.dtype | None = None
    padding: int | None = None
    kernel_init: nn.initializers.Initializer | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x, kernel = _conv_kernel(self, x, self.kernel_size)
        p = self.padding
        padding = None if p is None else ((p, p), (p, p))
        return _add_bias(self, conv.convolve("strided", x, kernel, padding, self.impl))


class UpConv(nn.Module):
    """Stride-2 transposed convolution that doubles H and W. kernel_size 4: 'SAME' padding
    (pix2pix); 3: PyTorch's ConvTranspose2d(k=3, s=2, padding=1, output_padding=1) (CycleGAN)."""
    features: int
    use_bias: bool = True
    impl: str = "auto"
    dtype: jnp.dtype | None = None
    kernel_size: int = 4
    kernel_init: nn.initializers.Initializer | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.kernel_size not in (3, 4):
            raise ValueError(f"UpConv supports kernels 3 and 4, got {self.kernel_size}")
        x, kernel = _conv_kernel(self, x, self.kernel_size)
        return _add_bias(self, conv.convolve("transposed", x, kernel, impl=self.impl))


class Upscale(nn.Module):
    """Conv 3×3 to 4·features channels, LeakyReLU, pixel shuffle ×2 (the deepfakes upscale)."""
    features: int
    negative_slope: float = 0.1
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = Conv(4 * self.features, 3, dtype=self.dtype)(x)  # named Conv_0, as nn.Conv was
        x = nn.leaky_relu(x, self.negative_slope)
        return pixel_shuffle(x, 2)


def norm_layer(kind: str, train: bool):
    """A normalisation constructor: "batch" (running statistics at inference), "instance", "none"."""
    if kind == "batch":
        return lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)
    if kind == "instance":
        # No scale or bias, as pytorch-CycleGAN-and-pix2pix's default instance norm; its
        # epsilon; the two-pass variance (flax's "fast" one loses digits where the mean is large).
        return lambda: nn.InstanceNorm(epsilon=1e-5, use_scale=False, use_bias=False,
                                       use_fast_variance=False)
    if kind == "none":
        return lambda: (lambda x: x)
    raise ValueError(f"unknown norm {kind!r}; expected batch, instance or none")

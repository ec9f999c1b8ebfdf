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
    """The activation dtype of `model_config.compute_dtype` (None: float32): "float32",
    "bfloat16", or "auto": bfloat16 when the program is traced for a GPU
    (`ops.conv.backend.target_platform`), float32 elsewhere (XLA:CPU's bfloat16 steps run
    slower; docs/benchmarks.md) and inside `plain_forms()` (the textbook model an ONNX export
    writes). Parameters and optimizer state stay float32 either way."""
    name = model_config.get("compute_dtype", "float32")
    if name == "auto":
        gpu = conv.backend.target_platform() == "gpu" and not conv.backend.plain()
        name = "bfloat16" if gpu else "float32"
    return jnp.bfloat16 if name == "bfloat16" else None


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


def _image_mean(x: jax.Array) -> jax.Array:
    """[B, 1, 1, C]: each image's mean over H and W, as a [1, HW] × [HW, C] product per image.
    XLA:CPU computes a reduction over an image as a tree of windowed partial sums, several times
    slower than the matrix library's product (docs/benchmarks.md)."""
    b, h, w, c = x.shape
    weights = jnp.full((b, 1, h * w), 1 / (h * w), x.dtype)
    return jnp.matmul(weights, x.reshape(b, h * w, c),
                      precision=jax.lax.Precision.HIGHEST).reshape(b, 1, 1, c)


@jax.custom_vjp
def instance_norm(x: jax.Array) -> jax.Array:
    """Instance norm of [B, H, W, C] without scale or bias, as pytorch-CycleGAN-and-pix2pix's
    default: (x - mean) / sqrt(var + 1e-5) per image and channel, the variance taken in two
    passes, statistics in float32; its gradient written out, so that both directions take the
    image means as products (`_image_mean`)."""
    return _instance_norm_forward(x)[0]


def _instance_norm_forward(x):
    xf = x.astype(jnp.float32)
    centred = xf - _image_mean(xf)
    inv_std = jax.lax.rsqrt(_image_mean(centred * centred) + 1e-5)
    y = centred * inv_std
    return y.astype(x.dtype), (y, inv_std)


def _instance_norm_backward(residuals, g):
    y, inv_std = residuals
    gf = g.astype(jnp.float32)
    return ((inv_std * (gf - _image_mean(gf) - y * _image_mean(gf * y))).astype(g.dtype),)


instance_norm.defvjp(_instance_norm_forward, _instance_norm_backward)


def norm_layer(kind: str, train: bool):
    """A normalisation constructor: "batch" (running statistics at inference), "instance", "none"."""
    if kind == "batch":
        return lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)
    if kind == "instance":
        return lambda: instance_norm  # no parameters
    if kind == "none":
        return lambda: (lambda x: x)
    raise ValueError(f"unknown norm {kind!r}; expected batch, instance or none")

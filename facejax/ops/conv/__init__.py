"""Convolutions computed in the form that runs fastest for each layer shape.

The models call one entry point, `convolve(kind, x, kernel, ...)`, with an impl: a registered
form's name (`registry.FORMS`), or "auto". On the CPU "auto" takes the form `rules.choose`
picks for the layer's shape; on other backends, and for every impl inside `plain_forms()`,
XLA's own convolution. All forms of a kind are equal in value and both gradients.

  kind        forms
  strided     xla, s2d (space-to-depth), winograd (space-to-depth in Winograd tiles), im2col
  transposed  xla, subpixel, taps, phases, mixed (XLA's value, phases' gradients), winograd
  stride1     xla, im2col, thin (few outputs: products over the padded input), winograd2/3/4
              (F(m×m) tiles)

`separable_filter` filters each channel by a separable window (DSSIM's and the mask blur's):
on the CPU as two banded-matrix products (`banded`), elsewhere as XLA's per-channel convolutions.

The CPU-specific convolution code lives here only; docs/architecture.md says how a form is chosen.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from facejax.ops.conv import backend, banded, registry, rules, xla
from facejax.ops.conv.backend import plain_forms
from facejax.ops.conv.xla import same_padding

__all__ = ["convolve", "layer_shape", "resolve", "plain_forms", "same_padding",
           "separable_filter", "transposed_for"]


def resolve(kind: str, impl: str, shape: rules.Shape, max_tile: int = 4) -> str:
    """The registered form a `kind` layer of `shape` runs with `impl`.

    Raises:
      ValueError: an impl that is neither "auto" nor a registered form of `kind`.
    """
    if impl != "auto" and impl not in registry.FORMS[kind]:
        raise ValueError(f"unknown {kind} convolution impl {impl!r}; expected auto or one of "
                         f"{', '.join(registry.names(kind))}")
    if backend.plain():
        return "xla"
    if impl != "auto":
        return impl
    return rules.choose(kind, shape, max_tile) if backend.cpu_forms() else "xla"


def transposed_for(up_impl: str | None, conv_impl: str) -> str:
    """A model's transposed impl: `up_impl`, or the one matching its strided `conv_impl`."""
    return up_impl or rules.TRANSPOSED_FOR.get(conv_impl, conv_impl)


def _padding(kind: str, x_shape, k: int, padding):
    """Explicit ((top, bottom), (left, right)) padding of a strided or stride-1 layer."""
    if padding is None:
        stride = 2 if kind == "strided" else 1
        padding = (same_padding(x_shape[1], k, stride), same_padding(x_shape[2], k, stride))
    return tuple(tuple(int(v) for v in p) for p in padding)


def layer_shape(kind: str, x_shape, kernel_shape, padding=None) -> rules.Shape:
    """The shape the rules see (rules.py) of a `kind` layer on input `x_shape` [B, H, W, C]
    with a [k, k, C, O] kernel."""
    if kind not in rules.KINDS:
        raise ValueError(f"unknown convolution kind {kind!r}; expected one of "
                         f"{', '.join(rules.KINDS)}")
    b, h, w, c = x_shape
    k, o = kernel_shape[0], kernel_shape[3]
    if kind == "strided":
        padding = _padding(kind, x_shape, k, padding)
        pixels = math.prod((n + sum(p) - k) // 2 + 1 for n, p in zip((h, w), padding))
    else:
        pixels = h * w
    return rules.Shape(k, c, o, pixels, b)


def convolve(kind: str, x: jax.Array, kernel: jax.Array, padding=None, impl: str = "auto",
             max_tile: int = 4) -> jax.Array:
    """One convolution layer's output (no bias).

    Args:
      kind: "strided" (stride 2), "transposed" (stride 2, doubles H and W) or "stride1".
      x: [B, H, W, C]; kernel: [k, k, C, O].
      padding: strided and stride1: ((top, bottom), (left, right)); None: 'SAME'. transposed:
        must be None; a 4×4 kernel is 'SAME' (pix2pix), a 3×3 one PyTorch's ConvTranspose2d(k=3,
        s=2, padding=1, output_padding=1) (CycleGAN), computed as the 4×4 case with the kernel
        flipped and a zero tap in front: y[o] = Σ_i x[i]·w[o - 2i + 1].
      impl: "auto" or a registered form of `kind`.
      max_tile: stride1: the largest Winograd output tile "auto" may pick.
    """
    shape = layer_shape(kind, x.shape, kernel.shape, padding)
    k = kernel.shape[0]
    if kind == "transposed":
        if padding is not None:
            raise ValueError("a transposed convolution takes no padding")
        if k not in (3, 4):
            raise ValueError(f"transposed convolutions support kernels 3 and 4, got {k}")
        form = resolve(kind, impl, shape)
        if form == "winograd" and k == 3:
            form = "phases"  # the 3×3 case's phases are 1×1 to 2×2: no Winograd gain there
        if k == 3:
            kernel = jnp.pad(kernel[::-1, ::-1], ((1, 0), (1, 0), (0, 0), (0, 0)))
        return registry.FORMS[kind][form](x, kernel, k == 3)
    form = resolve(kind, impl, shape, max_tile)
    return registry.FORMS[kind][form](x, kernel, _padding(kind, x.shape, k, padding))


def separable_filter(x: jax.Array, taps: np.ndarray, padding) -> jax.Array:
    """x [B, H, W, C] filtered per channel by the window outer(taps, taps) (a correlation), with
    explicit ((top, bottom), (left, right)) zero padding. On the CPU two banded products
    (`banded`); elsewhere, and inside `plain_forms()`, XLA's per-channel convolution along H,
    then along W."""
    if backend.cpu_forms():
        return banded.filter_banded(x, taps, padding)
    c, k = x.shape[-1], len(taps)
    column = jnp.broadcast_to(jnp.asarray(taps, x.dtype).reshape(k, 1, 1, 1), (k, 1, 1, c))
    y = xla.conv_per_channel(x, column, (tuple(padding[0]), (0, 0)))
    return xla.conv_per_channel(y, column.reshape(1, k, 1, c), ((0, 0), tuple(padding[1])))

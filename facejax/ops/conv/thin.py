"""Stride-1 convolution onto few output channels, as matrix products over the padded input."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _kernel_matrix(kernel: jax.Array) -> jax.Array:
    """[k, k, C, O] -> [C, taps·O], the taps in row-major order."""
    kh, kw, c, o = kernel.shape
    return kernel.transpose(2, 0, 1, 3).reshape(c, kh * kw * o)


def _shifted(g: jax.Array, hp: int, wp: int, kh: int, kw: int) -> jax.Array:
    """The output gradient g [N, H, W, O] placed once per tap (i, j) at offset (i, j) of the
    padded input's grid: [N, Hp, Wp, taps·O]."""
    h, w = g.shape[1:3]
    return jnp.concatenate([jnp.pad(g, ((0, 0), (i, hp - h - i), (j, wp - w - j), (0, 0)))
                            for i in range(kh) for j in range(kw)], -1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_thin(x: jax.Array, kernel: jax.Array, padding) -> jax.Array:
    """Stride-1 convolution for few output channels, where XLA:CPU's convolutions run far
    below the machine's products. With xp the padded input [positions, C] and K the kernel as
    [C, taps·O]:

      value          z = xp · K, then y[p] = Σ_taps z[p + (i, j), tap], a sum of shifted slices
      both gradients s[p, tap] = g[p - (i, j)] (the output gradient shifted once per tap):
                     dxp = s · Kᵀ (cropped to x), dK = xpᵀ · s over the positions

    three products as wide as the taps times the outputs, instead of convolutions with O
    channels on one side."""
    return _fwd(x, kernel, padding)[0]


def _fwd(x, kernel, padding):
    kh, kw, _, o = kernel.shape
    xp = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
    n, hp, wp, _ = xp.shape
    h, w = hp - kh + 1, wp - kw + 1
    z = jnp.dot(xp, _kernel_matrix(kernel), preferred_element_type=jnp.float32)
    z = z.reshape(n, hp, wp, kh * kw, o)
    y = sum(z[:, i:i + h, j:j + w, i * kw + j] for i in range(kh) for j in range(kw))
    return y.astype(x.dtype), (xp, kernel)  # the padded input, which the gradients read


def _bwd(padding, res, g):
    xp, kernel = res
    kh, kw, c, o = kernel.shape
    n, hp, wp, _ = xp.shape
    s = _shifted(g, hp, wp, kh, kw)                                   # [N, Hp, Wp, taps·O]
    dxp = jnp.dot(s, _kernel_matrix(kernel).T, preferred_element_type=jnp.float32)
    (top, bottom), (left, right) = padding
    dx = dxp[:, top:hp - bottom, left:wp - right]
    s, xp = s.reshape(n * hp * wp, kh * kw * o), xp.reshape(n * hp * wp, c)
    over_positions = (((0,), (0,)), ((), ()))
    if c > kh * kw * o:  # the wider operand's columns lead the product's rows
        dk = jax.lax.dot_general(s, xp, over_positions, preferred_element_type=jnp.float32)
        dk = dk.reshape(kh, kw, o, c).transpose(0, 1, 3, 2)               # from [taps·O, C]
    else:
        dk = jax.lax.dot_general(xp, s, over_positions, preferred_element_type=jnp.float32)
        dk = dk.reshape(c, kh, kw, o).transpose(1, 2, 0, 3)               # from [C, taps·O]
    return dx.astype(xp.dtype), dk.astype(kernel.dtype)


conv_thin.defvjp(_fwd, _bwd)

"""Stride-1 convolution onto few output channels, with a one-product weight gradient."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from facejax.ops.conv import xla


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_thin(x: jax.Array, kernel: jax.Array, padding) -> jax.Array:
    """Stride-1 convolution for few output channels: XLA's for the value and input gradient,
    and the weight gradient as one matrix product, where XLA:CPU's own is slow. dk[i, j] =
    Σ_p xp[p] · g[p - (i, j)] over the padded input's positions p: the output gradient, shifted
    once per tap, is a [positions, taps·O] matrix, multiplied once with the padded input
    [positions, C] over the positions. The product's rows are the wider operand's columns,
    the faster orientation either way round."""
    return xla.conv1(x, kernel, padding)


def _fwd(x, kernel, padding):
    return xla.conv1(x, kernel, padding), (x, kernel)


def _bwd(padding, res, g):
    x, kernel = res
    kh, kw, c, o = kernel.shape
    dx = jax.vjp(lambda v: xla.conv1(v, kernel, padding), x)[1](g)[0]
    xp = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
    n, hp, wp, _ = xp.shape
    h, w = g.shape[1:3]
    shifted = jnp.concatenate([jnp.pad(g, ((0, 0), (i, hp - h - i), (j, wp - w - j), (0, 0)))
                               for i in range(kh) for j in range(kw)], -1)  # [N, Hp, Wp, taps·O]
    shifted = shifted.reshape(n * hp * wp, kh * kw * o)
    xp = xp.reshape(n * hp * wp, c)
    over_positions = (((0,), (0,)), ((), ()))
    if c > kh * kw * o:  # the wider operand's columns lead the product's rows
        dk = jax.lax.dot_general(shifted, xp, over_positions, preferred_element_type=jnp.float32)
        dk = dk.reshape(kh, kw, o, c).transpose(0, 1, 3, 2)               # from [taps·O, C]
    else:
        dk = jax.lax.dot_general(xp, shifted, over_positions, preferred_element_type=jnp.float32)
        dk = dk.reshape(c, kh, kw, o).transpose(1, 2, 0, 3)               # from [C, taps·O]
    return dx, dk.astype(kernel.dtype)


conv_thin.defvjp(_fwd, _bwd)

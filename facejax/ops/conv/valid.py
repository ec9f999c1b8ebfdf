"""Unpadded ("VALID") stride-1 convolution through a padded one."""

from __future__ import annotations

import jax

_DIMS = ("NHWC", "HWIO", "NHWC")


def _conv(x, kernel, padding):
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=_DIMS)


@jax.custom_vjp
def conv_valid(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Unpadded stride-1 convolution, as the CycleGAN generator's on reflection-padded maps.

    XLA:CPU's YNNPACK computes an unpadded convolution's value several times slower than the
    same convolution with any zero padding, so the value pads one zero row and column at the
    far end and crops them off the output. Both gradients are XLA's for the unpadded
    convolution (the padded form's weight gradient is the slower one). With Eigen convolutions
    (xla_setup, CycleGAN's setting) the two forms run alike. Figures: docs/benchmarks.md.
    """
    return _conv(x, kernel, ((0, 1), (0, 1)))[:, :-1, :-1]


def _fwd(x, kernel):
    return conv_valid(x, kernel), (x, kernel)


def _bwd(res, g):
    x, kernel = res
    return jax.vjp(lambda v, k: _conv(v, k, ((0, 0), (0, 0))), x, kernel)[1](g)


conv_valid.defvjp(_fwd, _bwd)

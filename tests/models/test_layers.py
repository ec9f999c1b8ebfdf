"""The convolution layers hold nn.Conv's parameters (names, shapes, init) and compute what the
plain flax layer computes, whichever form they run (the forms' gradients: tests/ops)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facejax.models import layers
from facejax.ops.conv import registry


def _check(module, ref, x):
    v = ref.init(jax.random.key(1), x)
    assert jax.tree.map(jnp.shape, module.init(jax.random.key(1), x)) == \
        jax.tree.map(jnp.shape, v)
    np.testing.assert_allclose(module.apply(v, x), ref.apply(v, x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("impl", registry.names("stride1") + ("auto",))
def test_conv_is_nn_conv(impl):
    x = jax.random.normal(jax.random.key(0), (2, 6, 5, 8))
    _check(layers.Conv(5, 3, impl=impl), nn.Conv(5, (3, 3), padding="SAME"), x)
    pad = ((1, 1), (1, 1))  # the PatchGAN's stride-1 layers (PyTorch's padding 1)
    _check(layers.Conv(1, 4, impl=impl, padding=pad, use_bias=False),
           nn.Conv(1, (4, 4), padding=pad, use_bias=False), x)


@pytest.mark.parametrize("impl", registry.names("strided") + ("auto",))
def test_strided_conv_is_nn_conv_with_stride_2(impl):
    x = jax.random.normal(jax.random.key(0), (2, 9, 8, 6))
    _check(layers.StridedConv(5, 5, impl=impl), nn.Conv(5, (5, 5), 2, padding="SAME"), x)
    _check(layers.StridedConv(5, 4, impl=impl, padding=1, use_bias=False),
           nn.Conv(5, (4, 4), 2, padding=((1, 1), (1, 1)), use_bias=False), x)


@pytest.mark.parametrize("impl", registry.names("transposed") + ("auto",))
def test_upconv_is_nn_conv_transpose(impl):
    x = jax.random.normal(jax.random.key(0), (2, 3, 5, 6))
    _check(layers.UpConv(5, impl=impl), nn.ConvTranspose(5, (4, 4), (2, 2), padding="SAME"), x)


def test_impls_outside_the_registry_and_kernels_outside_the_forms_are_refused():
    x = jnp.zeros((1, 4, 4, 2))
    with pytest.raises(ValueError, match="unknown stride1 convolution impl"):
        layers.Conv(5, 3, impl="s2d").init(jax.random.key(1), x)
    with pytest.raises(ValueError, match="kernels 3 and 4"):
        layers.UpConv(5, kernel_size=5).init(jax.random.key(1), x)

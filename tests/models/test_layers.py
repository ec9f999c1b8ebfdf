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


def test_instance_norm_is_pytorch_cyclegans_in_value_and_gradient(grid_faces):
    """`layers.instance_norm` (image means as products, its gradient written out) against flax's
    InstanceNorm with pytorch-CycleGAN-and-pix2pix's settings and a float64 reference, on real
    faces spread over 16 channels at a large offset (where a one-pass variance loses digits)."""
    from tests.helpers import faces_of
    faces = faces_of(grid_faces["a"], 32, 3)
    mix = np.random.default_rng(0).normal(size=(3, 16)).astype(np.float32)
    x = jnp.asarray(faces @ mix * 4 + 50)
    cot = jax.random.normal(jax.random.key(0), x.shape)
    flax_norm = nn.InstanceNorm(epsilon=1e-5, use_scale=False, use_bias=False,
                                use_fast_variance=False, parent=None)
    ref = lambda v: flax_norm.apply({}, v)
    x64 = np.asarray(x, np.float64)
    centred = x64 - x64.mean((1, 2), keepdims=True)
    want = centred / np.sqrt((centred ** 2).mean((1, 2), keepdims=True) + 1e-5)
    got = jax.jit(layers.instance_norm)(x)
    np.testing.assert_allclose(got, want, atol=2e-4, rtol=0)
    np.testing.assert_allclose(got, ref(x), atol=2e-4, rtol=0)
    grad = lambda f: jax.jit(jax.grad(lambda v: (f(v) * cot).sum()))(x)
    g_ours, g_flax = grad(layers.instance_norm), grad(ref)
    np.testing.assert_allclose(g_ours, g_flax, atol=1e-3 * float(jnp.abs(g_flax).max()))
    assert float(jnp.abs(g_ours).max()) > 0.01  # not a vanishing gradient compared with itself
    # bfloat16 in, bfloat16 out (statistics in float32), and its gradient too
    xb = x.astype(jnp.bfloat16)
    assert layers.instance_norm(xb).dtype == jnp.bfloat16
    assert jax.grad(lambda v: layers.instance_norm(v).astype(jnp.float32).sum())(xb).dtype \
        == jnp.bfloat16
    xb64 = np.asarray(xb.astype(jnp.float32), np.float64)  # the input bfloat16 holds
    centred = xb64 - xb64.mean((1, 2), keepdims=True)
    want_b = centred / np.sqrt((centred ** 2).mean((1, 2), keepdims=True) + 1e-5)
    np.testing.assert_allclose(layers.instance_norm(xb).astype(jnp.float32), want_b,
                               atol=0.02 * np.abs(want_b).max())

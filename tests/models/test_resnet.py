"""The CycleGAN ResNet generator: shapes and blocks, Winograd residual blocks, inference forms."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facejax.experiments import cyclegan_faces
from facejax.models import resnet
from facejax.ops.conv import rules
from facejax.tasks import cyclegan


@pytest.mark.parametrize("size, blocks", [(128, 6), (256, 9)])
def test_resnet_generator_shapes_and_blocks(size, blocks):
    assert resnet.default_blocks(size) == blocks
    g = resnet.ResnetGenerator(n_blocks=blocks)
    x = jnp.zeros((1, size, size, 3))
    v = jax.eval_shape(lambda: g.init(jax.random.key(0), x))
    chex.assert_shape(jax.eval_shape(lambda v: g.apply(v, x), v), (1, size, size, 3))
    # 2 convs per residual block, plus c7s1-64, d128, d256, u128, u64, c7s1-3.
    convs = [k for k in jax.tree_util.tree_flatten_with_path(v)[0] if "kernel" in str(k[0])]
    assert len(convs) == 2 * blocks + 6


def test_resnet_winograd_blocks_equal_plain_convolutions():
    """The residual 3×3s in Winograd tiles (conv1_impl="auto" on CPU) give the generator of
    plain convolutions, in value and parameter gradient, with the same parameter tree (F(3×3),
    F(4×4) and ragged tiles are covered by the layer tests)."""
    x = jax.random.uniform(jax.random.key(0), (1, 64, 64, 3), minval=-1, maxval=1)
    cot = jax.random.normal(jax.random.key(1), x.shape)
    plain = resnet.ResnetGenerator(base=16, n_blocks=1, conv1_impl="xla")
    fast = resnet.ResnetGenerator(base=16, n_blocks=1, conv1_impl="auto")
    assert rules.choose("stride1", rules.Shape(3, 64, 64, 18 * 18, 1)) == "winograd2"
    v = plain.init(jax.random.key(2), x)
    assert jax.tree.map(jnp.shape, fast.init(jax.random.key(2), x)) == jax.tree.map(jnp.shape, v)
    loss = lambda g: lambda v: (g.apply(v, x) * cot).sum()
    np.testing.assert_allclose(jax.jit(fast.apply)(v, x), jax.jit(plain.apply)(v, x), atol=2e-5)
    grads = jax.jit(jax.grad(loss(plain)))(v)
    for a, b in zip(jax.tree.leaves(jax.jit(jax.grad(loss(fast)))(v)), jax.tree.leaves(grads)):
        np.testing.assert_allclose(a, b, atol=2e-4 * float(jnp.abs(b).max()))
    # At batch 16 the 18×18 maps hold 5184 pixels, where a lone layer would take F(4×4) tiles
    # (36 products); the ResNet caps them at F(3×3) (25), which compile in half the time.
    assert rules.choose("stride1", rules.Shape(3, 64, 64, 18 * 18, 16)) == "winograd4"
    jaxpr = str(jax.make_jaxpr(fast.apply)(v, jnp.zeros((16,) + x.shape[1:])))
    assert rules.choose("stride1", rules.Shape(7, 3, 16, 70 * 70, 16)) == "im2col"  # the first 7×7
    assert jaxpr.count("dot_general") == 2 * 25 + 1


def test_inference_keeps_the_fast_transposed_form_while_strided_convs_use_xla():
    """convert.load_swapper sets conv_impl="xla" (XLA's strided convolution is the faster
    forward) and up_impl="auto": XLA's transposed convolution is 2-4× slower forward on CPU."""
    config = cyclegan_faces.get_config()
    counts = {}
    for up in (None, "auto"):
        config.model.conv_impl, config.model.up_impl = "xla", up
        g, _ = cyclegan.build(config)
        x = jnp.zeros((1, 128, 128, 3))
        v = jax.eval_shape(lambda: g.init(jax.random.key(0), x))
        counts[up] = str(jax.make_jaxpr(lambda v, x: g.apply(v, x))(v, x)).count(
            "lhs_dilation=(2, 2)")
    assert counts == {None: 2, "auto": 0}

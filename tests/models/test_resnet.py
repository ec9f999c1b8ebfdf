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
    # 25 Winograd products in each of the two 3×3s, the 7×7's im2col product, and two image
    # means (layers.instance_norm) in each of the 7 instance norms.
    assert jaxpr.count("dot_general") == 2 * 25 + 1 + 2 * 7


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


def test_scanned_residual_blocks_are_the_written_out_blocks(grid_faces):
    """The residual blocks run as one scan over their stacked parameters: on real faces the
    same output and parameter gradient as the blocks written out, the same parameter tree, one
    loop in the program; inside `loops.unrolled()` XLA counts every block's FLOPs (outside it,
    the loop's body once)."""
    from facejax.ops import loops
    from facejax.ops.conv import plain_forms
    from tests.helpers import faces_of
    x = jnp.asarray(faces_of(grid_faces["a"], 32, 2) * 2 - 1)
    cot = jax.random.normal(jax.random.key(1), x.shape)
    written = resnet.ResnetGenerator(base=8, n_blocks=3, conv1_impl="auto", scan_blocks=False)
    scanned = resnet.ResnetGenerator(base=8, n_blocks=3, conv1_impl="auto")
    v = written.init(jax.random.key(2), x)
    assert jax.tree.map(jnp.shape, scanned.init(jax.random.key(2), x)) == \
        jax.tree.map(jnp.shape, v)
    np.testing.assert_allclose(jax.jit(scanned.apply)(v, x), jax.jit(written.apply)(v, x),
                               atol=1e-6)
    loss = lambda g: lambda v: (g.apply(v, x) * cot).sum()
    want = jax.jit(jax.grad(loss(written)))(v)
    got = jax.jit(jax.grad(loss(scanned)))(v)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, atol=1e-5 * float(jnp.abs(b).max()) + 1e-7)
    assert str(jax.make_jaxpr(scanned.apply)(v, x)).count("scan[") == 1

    def gflop(g):
        with plain_forms():
            cost = jax.jit(g.apply).lower(v, x).cost_analysis()
        return float(cost["flops"])
    with loops.unrolled():
        assert gflop(scanned) == pytest.approx(gflop(written), rel=1e-3)
    assert gflop(scanned) < 0.8 * gflop(written)

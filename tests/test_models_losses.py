"""Models, layers, losses and augmentation: shapes, parameter counts, numpy references, grads."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from experiments import deepfakes_original
from facejax import augment, losses
from facejax.models import autoencoder, layers
from facejax.tasks import autoencoder as ae_task


def count(tree):
    return sum(x.size for x in jax.tree.leaves(tree))


def test_autoencoder_shapes_and_parameter_count():
    config = deepfakes_original.get_config()
    state = jax.eval_shape(lambda k: ae_task.init(k, None, config), jax.random.key(0))
    p = state["params"]
    conv = lambda k, i, o: k * k * i * o + o
    dense = lambda i, o: i * o + o
    enc = (conv(5, 3, 128) + conv(5, 128, 256) + conv(5, 256, 512) + conv(5, 512, 1024)
           + dense(4 * 4 * 1024, 1024) + dense(1024, 4 * 4 * 1024) + conv(3, 1024, 4 * 512))
    dec = conv(3, 512, 4 * 256) + conv(3, 256, 4 * 128) + conv(3, 128, 4 * 64) + conv(5, 64, 3)
    print(f"64 px autoencoder: encoder {count(p['encoder']):,}, decoder {count(p['decoder_a']):,}, "
          f"total {count(p):,} parameters")
    assert count(p["encoder"]) == enc and count(p["decoder_a"]) == count(p["decoder_b"]) == dec
    enc_m, dec_m = autoencoder.build(config)
    x = jnp.zeros((2, 64, 64, 3))
    code = jax.eval_shape(lambda p, x: enc_m.apply({"params": p}, x), p["encoder"], x)
    chex.assert_shape(code, (2, 8, 8, 512))
    out = jax.eval_shape(lambda p, c: dec_m.apply({"params": p}, c), p["decoder_a"], code)
    chex.assert_shape(out, (2, 64, 64, 3))


def test_one_encoder_pass_over_both_faces_equals_two(grid_faces):
    """The training step runs the shared encoder once over A's and B's faces (interleaved, so a
    sharded batch stays on its devices): the codes and their gradients are those of one pass
    per identity, on real faces."""
    from facejax.data import pipeline
    config = deepfakes_original.get_config("tiny")
    tables = {n: pipeline.load_table(grid_faces[n], "train", config.data.load_size)
              for n in ae_task.IDENTITIES}
    batch = jax.tree.map(jnp.asarray, pipeline.FaceBatches(tables, 3, 0, ae_task.FIELDS)(0))
    a, b = (ae_task.views(batch, n, config) for n in ae_task.IDENTITIES)
    assert float(jnp.abs(a - b).mean()) > 0.05  # two different people
    enc, _ = autoencoder.build(config)
    params = {"encoder": jax.jit(enc.init)(jax.random.key(0), a)["params"]}
    weights = [jax.random.normal(jax.random.key(i), (3, 4, 4, 64)) for i in (1, 2)]

    def pair(p):
        ca, cb = ae_task.encode_pair(p, a, b, config)
        return (ca * weights[0]).sum() + (cb * weights[1]).sum(), (ca, cb)

    def apart(p):
        ca, cb = (enc.apply({"params": p["encoder"]}, x) for x in (a, b))
        return (ca * weights[0]).sum() + (cb * weights[1]).sum(), (ca, cb)

    (_, codes), g = jax.jit(jax.value_and_grad(pair, has_aux=True))(params)
    (_, codes_ref), g_ref = jax.jit(jax.value_and_grad(apart, has_aux=True))(params)
    for x, y in zip([*codes, *jax.tree.leaves(g)], [*codes_ref, *jax.tree.leaves(g_ref)]):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5 * float(jnp.abs(y).max()))


def test_128px_needs_no_new_code():
    config = deepfakes_original.get_config("128")
    state = jax.eval_shape(lambda k: ae_task.init(k, None, config), jax.random.key(0))
    out = jax.eval_shape(
        lambda p, x: ae_task.forward(p, x, "decoder_b", config), state["params"],
        jnp.zeros((1, 128, 128, 3)))
    chex.assert_shape(out, (1, 128, 128, 3))


@pytest.mark.parametrize("shape, k", [((2, 16, 16, 3), 5), ((1, 9, 8, 4), 5), ((2, 8, 8, 6), 4),
                                      ((1, 4, 4, 8), 3)])
@pytest.mark.parametrize("impl", ["s2d", "im2col", "winograd"])
def test_space_to_depth_conv_equals_strided_conv_in_value_and_gradient(shape, k, impl):
    x = jax.random.normal(jax.random.key(0), shape)
    w = jax.random.normal(jax.random.key(1), (k, k, shape[-1], 5))
    pad = (layers.same_padding(shape[1], k, 2), layers.same_padding(shape[2], k, 2))
    ref = lambda x, w: jax.lax.conv_general_dilated(x, w, (2, 2), pad,
                                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))
    fn = {"s2d": lambda x, w: layers.conv_s2d(x, w, pad),
          "im2col": lambda x, w: layers.conv_im2col(x, w, pad),
          "winograd": lambda x, w: layers.conv_s2d_winograd(x, w, pad)}[impl]
    np.testing.assert_allclose(fn(x, w), ref(x, w), atol=1e-4, rtol=1e-4)
    g_ref = jax.grad(lambda x, w: (ref(x, w) ** 2).sum(), (0, 1))(x, w)
    g_fn = jax.jit(jax.grad(lambda x, w: (fn(x, w) ** 2).sum(), (0, 1)))(x, w)
    for a, b in zip(g_fn, g_ref):
        np.testing.assert_allclose(a, b, atol=1e-3, rtol=1e-4)
    # PyTorch-style symmetric padding (pix2pix, CycleGAN: k 4, padding 1) as well.
    np.testing.assert_allclose({"s2d": layers.conv_s2d, "im2col": layers.conv_im2col,
                                "winograd": layers.conv_s2d_winograd}[impl](x, w, ((1, 1), (1, 1))),
                               jax.lax.conv_general_dilated(
                                   x, w, (2, 2), ((1, 1), (1, 1)),
                                   dimension_numbers=("NHWC", "HWIO", "NHWC")),
                               atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("shape, k", [((2, 4, 4, 8), 3), ((1, 5, 7, 6), 3), ((1, 6, 6, 4), 4)])
def test_stride1_conv_module_im2col_equals_nn_conv(shape, k):
    """layers.Conv (the Upscale convolution) under im2col, a custom VJP, equals nn.Conv 'SAME'
    in value and both gradients, with the same parameter names (checkpoints carry over)."""
    x = jax.random.normal(jax.random.key(0), shape)
    ref = nn.Conv(5, (k, k), padding="SAME")
    v = ref.init(jax.random.key(1), x)
    cot = jax.random.normal(jax.random.key(2), shape[:3] + (5,))
    for impl in ("xla", "im2col", "thin", "winograd2", "winograd3", "winograd4"):
        m = layers.Conv(5, k, impl=impl)
        assert jax.tree.map(jnp.shape, m.init(jax.random.key(1), x)) == \
            jax.tree.map(jnp.shape, v)
        np.testing.assert_allclose(m.apply(v, x), ref.apply(v, x), atol=1e-4, rtol=1e-4)
        g = jax.jit(jax.grad(lambda v, x: (m.apply(v, x) * cot).sum(), (0, 1)))(v, x)
        g_ref = jax.grad(lambda v, x: (ref.apply(v, x) * cot).sum(), (0, 1))(v, x)
        for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref)):
            np.testing.assert_allclose(a, b, atol=1e-3, rtol=1e-4, err_msg=impl)
    assert layers.default_conv1_impl(1024, 4 * 4) == "im2col"
    assert layers.default_conv1_impl(1024, 4 * 4, 2048, batch=8) == "im2col"  # 4×4 maps
    assert layers.default_conv1_impl(1024, 4 * 4, 2048, batch=16) == "winograd2"  # 256 pixels
    assert layers.default_conv1_impl(1024, 2 * 2, 2048, batch=128) == "im2col"
    assert layers.default_conv1_impl(512, 8 * 8, 512) == "im2col"  # 64 pixels in the batch
    assert layers.default_conv1_impl(512, 8 * 8, 512, batch=4) == "winograd2"
    assert layers.default_conv1_impl(512, 8 * 8, 1024, batch=16) == "winograd2"  # no F(4×4) on 8×8
    assert layers.default_conv1_impl(256, 16 * 16) == "winograd2"
    assert layers.default_conv1_impl(256, 16 * 16, batch=16) == "winograd4"
    assert layers.default_conv1_impl(128, 32 * 32, 256, batch=16) == "winograd4"
    assert layers.default_conv1_impl(256, 32 * 32) == "winograd2"
    assert layers.default_conv1_impl(256, 66 * 66) == "winograd4"
    assert layers.default_conv1_impl(256, 66 * 66, max_tile=3) == "winograd3"  # CycleGAN's
    assert layers.default_conv1_impl(256, 66 * 66, max_tile=2) == "winograd2"
    assert layers.default_conv1_impl(256, 32 * 32, max_tile=3) == "winograd2"
    assert layers.default_conv1_impl(256, 32 * 32, 512, kernel_size=4, max_tile=2) == "winograd2"
    assert layers.default_conv1_impl(256, 32 * 32, 512, kernel_size=4) == "winograd3"
    assert layers.default_conv1_impl(256, 32 * 32, 512, kernel_size=4, batch=4) == "winograd3"
    assert layers.default_conv1_impl(256, 16 * 16, 256, kernel_size=5, batch=16) == "xla"
    assert layers.default_conv1_impl(8, 4 * 4, features=8) == "xla"
    assert layers.default_conv1_impl(512, 31 * 31, features=1) == "thin"
    assert layers.default_conv1_impl(64, 64 * 64, features=3, kernel_size=5) == "thin"
    assert layers.default_conv1_impl(64, 262 * 262, features=3, kernel_size=7) == "thin"
    assert layers.default_conv1_impl(32, 64 * 64, features=3, kernel_size=5) == "xla"
    assert layers.default_conv1_impl(3, 262 * 262, features=64, kernel_size=7) == "im2col"
    assert layers.default_conv1_impl(16, 262 * 262, features=64, kernel_size=7) == "xla"
    with pytest.raises(ValueError, match="unknown"):
        layers.Conv(5, k, impl="s2d").init(jax.random.key(1), x)


def test_plain_forms_count_the_models_multiply_adds():
    """Inside layers.plain_forms every layer is XLA's own convolution, so the benchmark's
    FLOP count is the plain model's, whatever form runs (Winograd counts fewer)."""
    x = jnp.zeros((2, 16, 16, 64))
    m, ref = layers.Conv(64, 3), nn.Conv(64, (3, 3), padding="SAME")
    v = ref.init(jax.random.key(0), x)
    cost = lambda f: jax.jit(f).lower(v, x).cost_analysis()["flops"]
    assert layers.default_conv1_impl(64, 256, 64) == "winograd2"
    assert cost(m.apply) < 0.6 * cost(ref.apply)
    w4 = layers.Conv(64, 3, impl="winograd4")
    assert cost(w4.apply) < 0.6 * cost(ref.apply)
    with layers.plain_forms():
        assert cost(w4.apply) == cost(ref.apply)  # an explicit impl too
        assert layers.default_conv1_impl(64, 256, 64) == "xla"
        assert layers.default_conv_impl(5, 128, 64) == layers.default_up_impl(128, 256) == "xla"
        assert cost(m.apply) == cost(ref.apply)
    assert layers.default_conv1_impl(64, 256, 64) == "winograd2"


@pytest.mark.parametrize("shape, k, features", [((1, 14, 13, 6), 7, 3), ((2, 9, 8, 3), 3, 5)])
def test_unpadded_conv_route_equals_xla_in_value_and_gradients(shape, k, features):
    """layers.conv_valid (an unpadded stride-1 convolution's value through a padded one, cropped;
    XLA's own gradients) equals XLA's unpadded convolution, and every unpadded layers.Conv on CPU
    takes it, except inside `plain_forms`."""
    x = jax.random.normal(jax.random.key(0), shape)
    w = jax.random.normal(jax.random.key(1), (k, k, shape[-1], features))
    ref = lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), "VALID",
                                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))
    y = ref(x, w)
    assert y.shape[1:3] == (shape[1] - k + 1, shape[2] - k + 1)
    np.testing.assert_allclose(layers.conv_valid(x, w), y, atol=1e-4, rtol=1e-5)
    cot = jax.random.normal(jax.random.key(2), y.shape)
    g = jax.jit(jax.grad(lambda x, w: (layers.conv_valid(x, w) * cot).sum(), (0, 1)))(x, w)
    g_ref = jax.grad(lambda x, w: (ref(x, w) * cot).sum(), (0, 1))(x, w)
    for a, b in zip(g, g_ref):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-5)
    m = layers.Conv(features, k, impl="xla", padding=((0, 0), (0, 0)))
    v = m.init(jax.random.key(3), x)
    np.testing.assert_allclose(m.apply(v, x), ref(x, v["params"]["kernel"]) + v["params"]["bias"],
                               atol=1e-4, rtol=1e-5)
    assert "conv_valid" in str(jax.make_jaxpr(lambda x: m.apply(v, x))(x))
    with layers.plain_forms():
        assert "conv_valid" not in str(jax.make_jaxpr(lambda x: m.apply(v, x))(x))


@pytest.mark.parametrize("features, use_bias, channels", [(1, True, 6), (3, False, 6),
                                                     (1, True, 24)])
def test_thin_conv_with_explicit_padding_equals_nn_conv(features, use_bias, channels):
    """The PatchGAN's stride-1 layers: k 4, padding 1 (PyTorch's), so the output is one pixel
    smaller; "thin" computes the weight gradient as one product over shifted output gradients
    (with 24 channels in, more than the 16 shifted gradients, in the other orientation)."""
    x = jax.random.normal(jax.random.key(0), (2, 9, 7, channels))
    pad = ((1, 1), (1, 1))
    ref = nn.Conv(features, (4, 4), padding=pad, use_bias=use_bias)
    v = ref.init(jax.random.key(1), x)
    cot = jax.random.normal(jax.random.key(2), (2, 8, 6, features))
    g_ref = jax.grad(lambda v, x: (ref.apply(v, x) * cot).sum(), (0, 1))(v, x)
    for impl in ("thin", "xla", "im2col", "winograd2", "winograd4"):
        m = layers.Conv(features, 4, impl=impl, padding=pad, use_bias=use_bias)
        assert jax.tree.map(jnp.shape, m.init(jax.random.key(1), x)) == \
            jax.tree.map(jnp.shape, v)
        np.testing.assert_allclose(m.apply(v, x), ref.apply(v, x), atol=1e-5, rtol=1e-5)
        g = jax.jit(jax.grad(lambda v, x: (m.apply(v, x) * cot).sum(), (0, 1)))(v, x)
        for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref)):
            np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4, err_msg=impl)


def test_winograd_matrices_are_the_published_ones_and_filter_exactly():
    """F(2, 3) is Lavin & Gray's (2016) table, up to the sign of the point at infinity (BT's last
    row and AT's last column flip together); every F(m, r) computes the m outputs of an r-tap
    correlation exactly (float64)."""
    at, g, bt = layers.winograd_matrices(2, 3)
    flip = np.diag([1, 1, 1, -1])
    np.testing.assert_array_equal(flip @ bt,
                                  [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]])
    np.testing.assert_array_equal(g, [[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]])
    np.testing.assert_array_equal(at @ flip, [[1, 1, 1, 0], [0, 1, -1, -1]])
    np.testing.assert_array_equal(layers.winograd_matrices(4, 3)[2][0], [4, 0, -5, 0, 1, 0])
    rng = np.random.default_rng(0)
    for m, r in [(2, 3), (4, 3), (3, 2), (2, 4), (4, 4), (2, 5)]:
        at, g, bt = layers.winograd_matrices(m, r)
        d, k = rng.normal(size=m + r - 1), rng.normal(size=r)
        np.testing.assert_allclose(at @ ((g @ k) * (bt @ d)), np.correlate(d, k, "valid"),
                                   atol=1e-12, err_msg=f"F({m}, {r})")


@pytest.mark.parametrize("m, r", [(2, 3), (3, 3), (4, 3), (3, 2), (3, 4)])
def test_winograd_conv_rounding_at_realistic_scale(m, r):
    """An r×r, 64 -> 64 layer with lecun-normal weights on unit inputs, ragged tiles and
    asymmetric padding: value and both gradients within float32 rounding of XLA's. r 3: the 3×3
    layers; 2: the strided and transposed 4×4 ones' space-to-depth and phase kernels; 4: the
    PatchGAN's stride-1 layer."""
    x = jax.random.normal(jax.random.key(0), (2, 19, 17, 64))
    w = jax.random.normal(jax.random.key(1), (r, r, 64, 64)) / (8.0 * r)
    pad = ((2, 0), (1, 3))
    ref = lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), pad,
                                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))
    fn = jax.jit(lambda x, w: layers.conv_winograd(x, w, pad, m))
    y = ref(x, w)
    cot = jax.random.normal(jax.random.key(2), y.shape)
    tol = {(2, 3): 2e-6, (3, 3): 1e-5, (4, 3): 3e-5, (3, 2): 2e-6, (3, 4): 3e-5}[m, r]  # of max
    np.testing.assert_allclose(fn(x, w), y, atol=tol * float(jnp.abs(y).max()))
    g = jax.jit(jax.grad(lambda x, w: (fn(x, w) * cot).sum(), (0, 1)))(x, w)
    g_ref = jax.grad(lambda x, w: (ref(x, w) * cot).sum(), (0, 1))(x, w)
    for a, b in zip(g, g_ref):
        np.testing.assert_allclose(a, b, atol=tol * float(jnp.abs(b).max()))


def test_pixel_shuffle_is_depth_to_space_and_inverts():
    x = jnp.arange(2 * 3 * 3 * 8, dtype=jnp.float32).reshape(2, 3, 3, 8)
    y = layers.pixel_shuffle(x)
    assert y.shape == (2, 6, 6, 2)
    # Output pixel (2i+dy, 2j+dx, c) takes input channel (dy·2 + dx)·C + c.
    assert y[0, 1, 0, 1] == x[0, 0, 0, 2 * 2 + 1]
    np.testing.assert_array_equal(layers.space_to_depth(y), x)


def test_l1_and_masked_mean_against_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 8, 8, 3)), rng.normal(size=(4, 8, 8, 3))
    m = (rng.uniform(size=(4, 8, 8, 1)) > 0.5).astype(np.float32)
    np.testing.assert_allclose(jax.jit(losses.l1)(a, b), np.abs(a - b), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jax.jit(losses.l2)(a, b), (a - b) ** 2, rtol=1e-5)
    ref = (np.abs(a - b) * m).sum() / np.broadcast_to(m, a.shape).sum()
    np.testing.assert_allclose(jax.jit(losses.masked_mean)(losses.l1(a, b), m), ref, rtol=1e-5)
    assert float(losses.masked_mean(losses.l1(a, b), np.zeros_like(m))) == 0.0
    g = jax.grad(lambda x: losses.masked_mean(losses.l1(x, b), np.zeros_like(m)))(jnp.array(a))
    assert np.isfinite(g).all()
    # Central differences are exact for a quadratic, so a large step keeps float32 noise out.
    check_grads(lambda x: losses.masked_mean(losses.l2(x, b), m), (jnp.array(a),), order=1,
                modes=["fwd", "rev"], eps=1e-1)
    # L1 is piecewise linear: its gradient is sign(a - b) / n exactly.
    g = jax.jit(jax.grad(lambda x: losses.l1(x, b).mean()))(jnp.array(a))
    np.testing.assert_allclose(g, np.sign(a - b) / a.size, rtol=1e-6)
    with pytest.raises(AssertionError):
        losses.l1(a, b[:, :4])


def test_lab_round_trip_and_reference_values():
    rgb = jax.random.uniform(jax.random.key(0), (32, 3))
    np.testing.assert_allclose(augment.lab_to_rgb(augment.rgb_to_lab(rgb)), rgb, atol=2e-4)
    # Reference values of the sRGB/D65 conversion (white, red).
    np.testing.assert_allclose(augment.rgb_to_lab(jnp.ones(3)), [100, 0, 0], atol=0.05)
    np.testing.assert_allclose(augment.rgb_to_lab(jnp.array([1.0, 0, 0])), [53.24, 80.09, 67.20],
                               atol=0.1)


def test_warp_without_randomness_is_the_centre_view():
    cfg = augment.default_config()
    cfg.update(rotation=0.0, zoom=0.0, shift=0.0, shear=0.0, flip=0.0, warp=0.0, lightness=0.0,
               color=0.0, contrast=0.0)
    image = jax.random.randint(jax.random.key(0), (80, 80, 3), 0, 256).astype(jnp.uint8)
    warped, target = augment.warp_pair(jax.random.key(1), image, 64, cfg)
    centre = augment.centre_view(image, 64, cfg.region)
    np.testing.assert_allclose(target, centre, atol=1e-5)
    np.testing.assert_allclose(warped, centre, atol=1e-5)
    cfg.flip = 1.0
    _, flipped = augment.warp_pair(jax.random.key(1), image, 64, cfg)
    np.testing.assert_allclose(flipped, centre[:, ::-1], atol=1e-5)


def test_random_warp_moves_pixels_smoothly():
    cfg = augment.default_config()
    image = jax.random.randint(jax.random.key(0), (80, 80, 3), 0, 256).astype(jnp.uint8)
    warped, target = jax.jit(lambda k: augment.warp_pair(k, image, 64, cfg))(jax.random.key(3))
    assert warped.shape == target.shape == (64, 64, 3)
    assert float(jnp.abs(warped - target).mean()) > 0.02
    field = augment.warp_field(jax.random.key(0), 64, 80, cfg)
    # Displacement std ≈ warp · region · size, and neighbouring pixels move alike.
    assert 0.3 < float(field.std()) / (cfg.warp * cfg.region * 80) < 2.0
    assert float(jnp.abs(jnp.diff(field, axis=0)).max()) < 0.2 * float(jnp.abs(field).max())


@pytest.mark.parametrize("experiment", [
    "deepfakes_original",
    pytest.param("face2face_pix2pix", marks=pytest.mark.slow),
    pytest.param("cyclegan_faces", marks=pytest.mark.slow)])
def test_bfloat16_compute_tracks_float32(experiment, grid_faces):
    """compute_dtype=bfloat16: parameters and optimizer state stay float32, and a short run's
    reconstruction-type losses follow the float32 run's within 5%. Adversarial terms (through
    a discriminator that is itself 3 steps old) are only required finite: they move by 5-15%
    even between float32 runs that differ in rounding."""
    import importlib

    import jax
    import numpy as np
    from facejax import tasks
    from facejax.data import pipeline
    from tests.conftest import train_steps_on

    losses = {}
    for dtype in ("float32", "bfloat16"):
        config = importlib.import_module(f"experiments.{experiment}").get_config("tiny")
        config.model.compute_dtype = dtype
        task = tasks.get(config.task)
        tables = {n: pipeline.load_table(grid_faces[n], "train", config.data.load_size,
                                         landmark_image="landmark_image" in task.FIELDS)
                  for n in task.IDENTITIES}
        batches = pipeline.FaceBatches(tables, 4, 0, task.FIELDS)
        state, metrics = train_steps_on(jax.devices()[:1], task, config, batches, 3)
        leaves = jax.tree_util.tree_flatten_with_path(state)[0]
        kinds = {x.dtype for path, x in leaves if np.issubdtype(x.dtype, np.floating)
                 and any(w in jax.tree_util.keystr(path) for w in ("params", "opt", "mu", "nu"))}
        assert kinds == {np.dtype("float32")}, (dtype, kinds)
        losses[dtype] = {k: float(v) for k, v in metrics.items() if k != "finite"}
    print(experiment, losses)
    for k, v in losses["float32"].items():
        assert np.isfinite(losses["bfloat16"][k])
        if "gan" in k or k.startswith("d_") or k == "loss" and "pix2pix" in experiment:
            continue
        assert losses["bfloat16"][k] == pytest.approx(v, rel=0.05, abs=0.02), k


def test_finiteness_guard_flags_inf_nan_and_gradients_whose_square_overflows():
    from facejax.tasks import common
    check = jax.jit(common.all_finite)
    assert bool(check({"a": jnp.ones(3), "b": jnp.array([3e38, -3e38])}))  # finite, no overflow
    assert not bool(check({"a": jnp.ones(3), "b": jnp.array([1.0, jnp.inf])}))
    assert not bool(check({"a": jnp.array([jnp.nan]), "b": jnp.ones(2)}))
    assert not bool(check({"a": jnp.array([1.0, 2.0], jnp.bfloat16) * jnp.inf}))

    @jax.jit
    def guard(state, grads):
        return common.guard_finite(state, {"loss": jnp.float32(1.0)}, grads)[1]["finite"]

    state = {"params": jnp.ones(4), "opt": {"mu": jnp.ones(4)}}
    assert bool(guard(state, jnp.full(4, 1e18)))
    assert not bool(guard(state, jnp.full(4, 1e20)))  # g² overflows Adam's second moment
    assert not bool(guard({"params": jnp.array([jnp.inf]), "opt": {}}, jnp.ones(1)))
    # Optimizer moments are implied finite by finite g and g², so they are not re-read.
    assert bool(guard({"params": jnp.ones(1), "opt": {"nu": jnp.array([jnp.inf])}}, jnp.ones(1)))

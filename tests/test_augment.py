"""Augmentation placed on the device or on the host: the same images from the same draw, the
same distributions of draws, deterministic host batches, and the step using what the host made."""

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facejax.experiments import cyclegan_faces, deepfakes_original
from facejax import augment, losses
from facejax.data import pipeline
from facejax.errors import UserError
from facejax.tasks import autoencoder as ae_task
from facejax.training import inputs


def faces(grid_faces, size, n=4):
    return pipeline.FaceSource([grid_faces["a"]], "train", size).take(np.arange(n),
                                                                      ["image"])["image"]


def test_interp_matrix_is_linear_resize():
    rng = np.random.default_rng(0)
    for n, out in ((5, 64), (64, 72), (256, 286)):
        x = rng.standard_normal((n, n, 3)).astype(np.float32)
        m = augment.interp_matrix(n, out)
        mine = np.matmul(m, np.matmul(m, x).transpose(1, 0, 2)).transpose(1, 0, 2)
        # jax and OpenCV place samples in float32 (|x| up to 255, error ~1e-5 px), and these
        # random values jump by up to ~5 between pixels: differences up to ~6e-5.
        np.testing.assert_allclose(mine, jax.image.resize(x, (out, out, 3), "linear"), atol=1e-4)
        np.testing.assert_allclose(mine, cv2.resize(x, (out, out), interpolation=cv2.INTER_LINEAR),
                                   atol=1e-4)
    # Antialiased (downsampling): jax.image.resize's widened triangle; upsampling: unchanged.
    for n, out in ((64, 40), (256, 100), (64, 72)):
        x = rng.standard_normal((n, n, 3)).astype(np.float32)
        m = augment.interp_matrix(n, out, antialias=True)
        mine = np.matmul(m, np.matmul(m, x).transpose(1, 0, 2)).transpose(1, 0, 2)
        np.testing.assert_allclose(mine, jax.image.resize(x, (out, out, 3), "linear"), atol=1e-4)
    assert np.abs(augment.interp_matrix(64, 40) - augment.interp_matrix(64, 40, antialias=True)
                  ).max() > 0.1


def test_host_and_device_warp_agree_given_the_same_draw(grid_faces):
    cfg = augment.default_config()
    images = faces(grid_faces, 40)
    rng = np.random.default_rng(3)
    device = jax.jit(jax.vmap(lambda p, im: augment.apply_warp(jnp, p, im, 32, cfg)))
    draws = [augment.warp_params_np(rng, cfg) for _ in images]
    stacked = jax.tree.map(lambda *v: np.stack(v), *draws)
    dw, dt = device(stacked, images)
    for i, (p, im) in enumerate(zip(draws, images)):
        hw, ht = augment.apply_warp(np, p, im, 32, cfg)
        assert hw.dtype == np.float32 and hw.shape == (32, 32, 3)
        np.testing.assert_allclose(hw, dw[i], atol=5e-5)
        np.testing.assert_allclose(ht, dt[i], atol=5e-5)
        assert np.abs(hw - ht).mean() > 0.01  # the warp moved pixels
    # warp_pair is the jax draw followed by the same function.
    key = jax.random.key(7)
    w, t = augment.warp_pair(key, images[0], 32, cfg)
    p = jax.device_get(augment.warp_params(key, cfg))
    hw, ht = augment.apply_warp(np, p, images[0], 32, cfg)
    np.testing.assert_allclose(hw, w, atol=5e-5)
    np.testing.assert_allclose(ht, t, atol=5e-5)


def test_host_and_device_draws_have_the_same_distribution():
    cfg = augment.default_config()
    n = 4000
    host = jax.tree.map(lambda *v: np.stack(v),
                        *[augment.warp_params_np(np.random.default_rng([5, i]), cfg)
                          for i in range(n)])
    dev = jax.device_get(jax.vmap(lambda k: augment.warp_params(k, cfg))(
        jax.random.split(jax.random.key(5), n)))
    bounds = {"theta": np.deg2rad(cfg.rotation), "shear": cfg.shear, "shift": cfg.shift}
    for name in host:
        h, d = np.asarray(host[name], np.float64), np.asarray(dev[name], np.float64)
        assert h.shape == d.shape, name
        if name in bounds:
            assert np.abs(h).max() <= bounds[name] + 1e-6 and np.abs(d).max() <= bounds[name] + 1e-6
        sd = max(d.std(), 1e-3)
        assert abs(h.mean() - d.mean()) < 5 * sd / np.sqrt(h.size), name
        assert h.std() == pytest.approx(d.std(), rel=0.08), name
    assert (host["flip"] < 0).mean() == pytest.approx(cfg.flip, abs=0.03)
    assert abs(host["scale"] - 1).max() <= cfg.zoom + 1e-6


def test_jitter_is_a_resize_then_a_crop_on_host_and_device(grid_faces):
    """pix2pix's jitter: jax.image.resize's "linear" to big (upsampling, and antialiased
    downsampling), the crop at (oy, ox), the mirror; the device's products and the host's agree."""
    images = faces(grid_faces, 64, 2).astype(np.float32) / 127.5 - 1
    both = np.concatenate([images[0], images[1]], -1)  # 6 channels, as pix2pix's pair
    device_jitter = jax.jit(augment.jitter_image, static_argnums=(2, 3))
    for big, size in ((72, 64), (56, 48)):
        resized = np.asarray(jax.image.resize(both, (big, big, 6), "linear"))
        for p in ({"oy": 0, "ox": 0, "flip": False}, {"oy": 8, "ox": 8, "flip": True},
                  {"oy": 5, "ox": 2, "flip": True}):
            want = resized[p["oy"]:p["oy"] + size, p["ox"]:p["ox"] + size]
            want = want[:, ::-1] if p["flip"] else want
            host = augment.jitter_image(p, both, big, size, np)
            device = device_jitter({k: jnp.asarray(v) for k, v in p.items()}, jnp.asarray(both),
                                   big, size)
            assert host.shape == (size, size, 6) and host.dtype == np.float32
            np.testing.assert_allclose(host, want, atol=2e-5)
            np.testing.assert_allclose(device, want, atol=2e-5)
    at = lambda oy: augment.jitter_image({"oy": oy, "ox": 0, "flip": False}, both, 72, 64, np)
    assert np.abs(at(8) - at(0)).mean() > 0.01


def test_host_batches_are_deterministic_and_feed_the_step(grid_faces):
    config = deepfakes_original.get_config("tiny")
    config.augment.placement = "host"
    tables = {k: pipeline.FaceSource([v], "train", config.data.load_size)
              for k, v in grid_faces.items()}
    make = lambda: pipeline.FaceBatches(tables, global_batch=8, seed=0, fields=ae_task.FIELDS,
                                        augment=inputs.host_augment(config, ae_task.TASK))
    a, b = make(), make()
    x = a(3)
    assert set(x["a"]) == {"warped", "target"}
    assert x["a"]["warped"].shape == (8, 32, 32, 3) and x["a"]["warped"].dtype == np.float32
    np.testing.assert_array_equal(x["b"]["warped"], b(3)["b"]["warped"])  # a resumed run's
    assert not np.array_equal(x["a"]["warped"], a(4)["a"]["warped"])
    # With every random amount at zero, the host's target and input are the centre view of the
    # very crops the plain batch of that step holds.
    still = deepfakes_original.get_config("tiny")
    still.augment.update(placement="host", rotation=0.0, zoom=0.0, shift=0.0, shear=0.0,
                         flip=0.0, warp=0.0, lightness=0.0, color=0.0, contrast=0.0)
    y = pipeline.FaceBatches(tables, global_batch=8, seed=0, fields=ae_task.FIELDS,
                             augment=inputs.host_augment(still, ae_task.TASK))(3)
    plain = pipeline.FaceBatches(tables, global_batch=8, seed=0, fields=ae_task.FIELDS)(3)
    for name in ("a", "b"):
        centre = np.asarray(ae_task.views(plain, name, still))
        np.testing.assert_allclose(y[name]["target"], centre, atol=1e-5)
        np.testing.assert_allclose(y[name]["warped"], centre, atol=1e-5)
    # The step trains on the host's images as given.
    @jax.jit
    def both(x):
        params = ae_task.init(jax.random.key(0), config)["params"]
        _, m = ae_task.loss_fn(params, x, jax.random.key(1), config)
        recon = ae_task.forward(params, x["a"]["warped"], "decoder_a", config)
        return m["loss_a"], losses.l1(recon, x["a"]["target"]).mean()

    loss, by_hand = both(x)
    assert float(loss) == pytest.approx(float(by_hand), rel=1e-5)


def test_placement_per_backend_and_bad_values():
    cfg = augment.default_config()
    assert augment.placement(cfg, "cpu") == "device"  # measured: see docs/cpu.md, Augmentation
    assert augment.placement(cfg, "gpu") == "device"
    cfg.placement = "host"
    assert augment.placement(cfg, "cpu") == "host"
    cfg.placement = "gpu"
    with pytest.raises(UserError, match="--config.augment.placement=gpu"):
        augment.placement(cfg)
    # Families without a host path keep theirs on the device.
    c = cyclegan_faces.get_config()
    from facejax.tasks import cyclegan
    assert inputs.host_augment(c, cyclegan.TASK) is None


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

"""Issue 31, training data: cubic sampling (OpenCV's INTER_CUBIC) of the augmented views, and
DeepFaceLab's random warp (augment.kind "dfl"), with the values of docs/deepfacelab_saehd.md
sections 1 and 3."""

import os

import cv2
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from facejax import augment, config_check, warp_dfl
from facejax.data import pipeline
from facejax.errors import UserError
from facejax.experiments import deepfakes_original, saehd
from facejax.tasks import saehd as saehd_task
from tests.helpers import DATA

STILL = os.path.join(DATA, "stills", "astronaut.png")


def crops(grid_faces, size, n=2):
    return pipeline.FaceSource([grid_faces["a"]], "train", size).take(np.arange(n),
                                                                      ["image"])["image"]


def still_config(kind):
    """Every random amount of `kind` at zero."""
    cfg = augment.default_config(kind)
    cfg.update(rotation=0.0, shift=0.0, random_warp=False)
    if kind == "dfl":
        cfg.update(scale=1.0, flip_a=0.0)
    else:
        cfg.update(zoom=0.0, shear=0.0, flip=0.0, warp=0.0, lightness=0.0, color=0.0, contrast=0.0)
    return cfg


# ---- cubic sampling --------------------------------------------------------------------------

def test_cubic_tap_weights():
    np.testing.assert_allclose(augment.cubic_weights(0.25),
                               [-0.10546875, 0.87890625, 0.26171875, -0.03515625], atol=1e-12)
    np.testing.assert_allclose(augment.cubic_weights(0.5), [-0.09375, 0.59375, 0.59375, -0.09375],
                               atol=1e-12)
    for t in np.linspace(0, 1, 9, endpoint=False):
        assert sum(augment.cubic_weights(t)) == pytest.approx(1.0, abs=1e-12)


def test_cubic_sample_is_opencvs_warp_affine():
    img = cv2.imread(STILL, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255
    size = 96
    c, s = 0.43 * np.cos(np.deg2rad(7)), 0.43 * np.sin(np.deg2rad(7))
    m = np.array([[c, -s, 20.3], [s, c, 11.7]])
    want = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REPLICATE)
    inv = cv2.invertAffineTransform(m)  # warpAffine's dst(p) = src(M⁻¹ p)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    coords = np.stack([inv[0, 0] * x + inv[0, 1] * y + inv[0, 2],
                       inv[1, 0] * x + inv[1, 1] * y + inv[1, 2]], -1)
    np.testing.assert_allclose(augment.sample(img, coords, np, "cubic"), want, atol=1e-4)
    # jax.numpy, jitted and vmapped, agrees; its edges replicate (coords well off the image).
    both = np.stack([coords, coords - 150.0])
    got = jax.jit(jax.vmap(lambda c: augment.sample(jnp.asarray(img), c)))(both)
    np.testing.assert_allclose(got[0], want, atol=1e-4)
    np.testing.assert_allclose(got[1, :5, :5], np.broadcast_to(img[0, 0], (5, 5, 3)), atol=1e-6)
    assert np.abs(want - augment.sample(img, coords, np, "linear")).max() > 0.02


def test_cubic_interp_matrix_is_opencvs_resize():
    rng = np.random.default_rng(0)
    for n, out in ((5, 64), (64, 72), (80, 48)):
        x = rng.standard_normal((n, n, 3)).astype(np.float32)
        m = augment.interp_matrix(n, out, "cubic")
        np.testing.assert_allclose(m.sum(1), 1.0, atol=1e-6)
        mine = np.matmul(m, np.matmul(m, x).transpose(1, 0, 2)).transpose(1, 0, 2)
        np.testing.assert_allclose(mine, cv2.resize(x, (out, out), interpolation=cv2.INTER_CUBIC),
                                   atol=1e-4)
    with pytest.raises(ValueError, match="unknown kernel 'area'"):
        augment.interp_matrix(4, 8, "area")


@pytest.mark.parametrize("kind", augment.KINDS)
def test_zero_offset_target_is_the_crop_resized_once(grid_faces, kind):
    """The target the loss sees, for a zero-offset sample, equals the crop resized once."""
    cfg = still_config(kind)
    cfg.region = 0.75
    crop = crops(grid_faces, 64, 1)[0]
    # The region (0.75 of 64 px: 8 to 56) with 6 px of the crop around it, so that the taps
    # beyond the region's edge read what the pipeline reads; 6 px scale to whole output pixels.
    region = crop[2:62, 2:62].astype(np.float32) / 255
    p = augment.warp_params_np(np.random.default_rng(0), cfg, "a")
    for out in (40, 48, 96):
        q = 6 * out // 48
        want = cv2.resize(region, (out + 2 * q,) * 2, interpolation=cv2.INTER_CUBIC)
        want = np.clip(want[q:-q, q:-q], 0, 1)
        warped, target = augment.apply_warp(np, p, crop, out, cfg)
        np.testing.assert_allclose(target, want, atol=1 / 255)
        np.testing.assert_allclose(warped, want, atol=1 / 255)
        np.testing.assert_allclose(augment.centre_view(crop, out, 0.75, np), want, atol=1 / 255)


def _laplacian_energy(a):
    lap = a[1:-1, 2:] + a[1:-1, :-2] + a[2:, 1:-1] + a[:-2, 1:-1] - 4 * a[1:-1, 1:-1]
    return np.mean(lap[4:-4, 4:-4] ** 2)  # away from the edges


def laplacian_gain(kernel="cubic", draws=200):
    """The target's Laplacian energy over a single resize's (the crop itself, at 1:1), mean over
    random sub-pixel offsets, for a pattern at a quarter cycle per pixel in x and in y."""
    cfg = still_config("deepfakes")
    cycle = np.cos(np.pi / 2 * np.arange(80))  # 1, 0, -1, 0: exact in uint8 below
    img = np.repeat((128 + 50 * cycle[None, :] + 50 * cycle[:, None])[..., None], 3, -1)
    img = img.astype(np.uint8)
    ref = _laplacian_energy(img[8:72, 8:72, 0] / 255.0)
    rng = np.random.default_rng(0)
    gains = []
    for _ in range(draws):
        p = augment.warp_params_np(rng, cfg)
        p["shift"] = (rng.uniform(0, 1, 2) / 64).astype(np.float32)  # a pixel is 1/64 view
        target, _ = augment.source_coords(np, p, 64, 80, cfg)
        t = augment.sample(img.astype(np.float32) / 255, target, np, kernel)
        gains.append(_laplacian_energy(t[..., 0].astype(np.float64)) / ref)
    return float(np.mean(gains))


def test_resampling_keeps_the_quarter_cycle_detail():
    """Over random offsets the target's Laplacian energy at a quarter cycle per pixel is at
    least 0.95 of a single resize's (cubic, a = -0.75: 0.971 in theory); bilinear keeps about
    2/3 (docs/benchmarks.md, Issue 31)."""
    cubic = laplacian_gain("cubic")
    assert 0.95 <= cubic <= 1.0
    assert laplacian_gain("linear") == pytest.approx(2 / 3, abs=0.03)
    # The pipeline's own target is the cubic one.
    cfg = still_config("deepfakes")
    img = np.zeros((80, 80, 3), np.uint8)
    img[:, ::2] = 255
    p = augment.warp_params_np(np.random.default_rng(1), cfg)
    p["shift"] = np.float32([0.3 / 64, 0.0])
    _, target = augment.apply_warp(np, p, img, 64, cfg)
    coords, _ = augment.source_coords(np, p, 64, 80, cfg)
    np.testing.assert_allclose(target, np.clip(augment.sample(img / 255.0, coords, np), 0, 1),
                               atol=1e-6)


# ---- DeepFaceLab's warp ----------------------------------------------------------------------

def _draws(n, host, identity="b", seed=5):
    cfg = augment.default_config("dfl")
    if host:
        return jax.tree.map(lambda *v: np.stack(v), *[
            augment.warp_params_np(np.random.default_rng([seed, i]), cfg, identity)
            for i in range(n)])
    keys = jax.random.split(jax.random.key(seed), n)
    return jax.device_get(jax.vmap(lambda k: augment.warp_params(k, cfg, identity))(keys))


def _fields(draws, size=64):
    """Displacement [N, size, size, 2] in pixels at the pixel centres of an unmoved view."""
    def one(p):
        p = dict(p, theta=0.0, scale=1.0, shift=jnp.zeros(2), flip=1.0)
        target, warped = warp_dfl.view_coords(jnp, p, size)
        return (warped - target) * size
    return np.asarray(jax.jit(jax.vmap(one))(draws), np.float64)


def _strain(d):
    gy, gx = np.gradient(d, axis=1), np.gradient(d, axis=2)
    return np.sqrt((gx ** 2 + gy ** 2).sum(-1).mean())


def test_dfl_nodes_zero_noise_borders_and_bounds():
    p = jax.tree.map(lambda v: v[0], _draws(1, host=True))
    zero = dict(p, n1=np.zeros_like(p["n1"]), n2=np.zeros_like(p["n2"]))
    u = np.random.default_rng(0).uniform(-0.6, 0.6, (100, 2)).astype(np.float32)
    assert np.abs(warp_dfl.displacement(np, zero, u)).max() == 0.0
    for cell in range(3):
        ones = dict(p, n1=np.ones_like(p["n1"]), n2=np.ones_like(p["n2"]), cell=np.int32(cell))
        per_side = warp_dfl.CELLS[cell]
        stride = 8 // per_side
        grid = warp_dfl.nodes(np, ones)[::stride, ::stride]  # the drawn grid's own nodes
        assert np.all(grid[0] == 0) and np.all(grid[-1] == 0)
        assert np.all(grid[:, 0] == 0) and np.all(grid[:, -1] == 0)
        # The noise at its bound everywhere: interior nodes move 0.48 cells, the most they can.
        np.testing.assert_allclose(grid[1:-1, 1:-1], 0.48 / per_side, rtol=1e-6)
    draws = _draws(500, host=False)
    for cell, per_side in enumerate(warp_dfl.CELLS):
        picked = jax.tree.map(lambda v: v[draws["cell"] == cell], draws)
        grids = np.stack([warp_dfl.nodes(np, jax.tree.map(lambda v: v[i], picked))
                          for i in range(len(picked["cell"]))])
        assert np.abs(grids).max() <= 0.48 / per_side + 1e-7
        # dy is dx transposed (DeepFaceLab's aliased maps).
        np.testing.assert_allclose(grids[..., 1], grids[..., 0].transpose(0, 2, 1), atol=1e-8)
    # Outside the view nothing moves.
    far = np.float32([[0.7, 0.0], [-0.55, 0.3], [0.0, 2.0]])
    assert np.abs(warp_dfl.displacement(np, p, far)).max() == 0.0


@pytest.mark.parametrize("host", [False, True])
def test_dfl_warp_strength_and_view_distribution(host):
    draws = _draws(2000, host=host)
    cells = np.bincount(np.asarray(draws["cell"]), minlength=3) / 2000
    np.testing.assert_allclose(cells, 1 / 3, atol=0.035)
    d = _fields(draws)
    assert np.sqrt((d ** 2).sum(-1).mean()) == pytest.approx(1.50, abs=0.05)
    assert _strain(d) == pytest.approx(0.206, abs=0.01)
    scale = np.asarray(draws["scale"])
    assert scale.min() >= 1 / 1.15 - 1e-6 and scale.max() <= 1.15 + 1e-6
    assert scale.mean() == pytest.approx(1.0098, abs=0.006)
    assert np.abs(np.rad2deg(draws["theta"])).max() <= 10 + 1e-4
    assert np.abs(draws["shift"]).max() <= 0.05 + 1e-7
    assert np.asarray(draws["n1"]).std() == pytest.approx(0.381, abs=0.005)
    assert np.abs(draws["n1"]).max() <= 1.0
    assert (np.asarray(draws["flip"]) < 0).mean() == pytest.approx(0.4, abs=0.03)
    assert (np.asarray(_draws(300, host=host, identity="a")["flip"]) < 0).sum() == 0


def test_dfl_host_and_device_draws_have_the_same_distribution():
    host, dev = _draws(3000, host=True), _draws(3000, host=False)
    for name in host:
        h, d = np.asarray(host[name], np.float64), np.asarray(dev[name], np.float64)
        assert h.shape == d.shape, name
        assert abs(h.mean() - d.mean()) < 5 * max(d.std(), 1e-3) / np.sqrt(h.size), name
        assert h.std() == pytest.approx(d.std(), rel=0.05), name
    dh, dd = _fields(jax.tree.map(lambda v: v[:1000], host)), _fields(
        jax.tree.map(lambda v: v[:1000], dev))
    assert np.sqrt((dh ** 2).mean()) == pytest.approx(np.sqrt((dd ** 2).mean()), rel=0.06)


def test_dfl_host_and_device_warp_agree_given_the_same_draw(grid_faces):
    cfg = augment.default_config("dfl")
    images = crops(grid_faces, 40, 4)
    rng = np.random.default_rng(3)
    draws = [augment.warp_params_np(rng, cfg, "b") for _ in images]
    stacked = jax.tree.map(lambda *v: np.stack(v), *draws)
    dw, dt = jax.jit(jax.vmap(lambda p, im: augment.apply_warp(jnp, p, im, 32, cfg)))(stacked,
                                                                                       images)
    for i, (p, im) in enumerate(zip(draws, images)):
        hw, ht = augment.apply_warp(np, p, im, 32, cfg)
        assert hw.dtype == np.float32 and hw.shape == (32, 32, 3)
        assert hw.min() >= 0 and hw.max() <= 1
        np.testing.assert_allclose(hw, dw[i], atol=5e-5)
        np.testing.assert_allclose(ht, dt[i], atol=5e-5)
        assert np.abs(hw - ht).mean() > 0.005  # the warp moved pixels
    # warp_with_masks: the jax draw, then the same function; masks follow the target's view.
    key = jax.random.key(7)
    masks = np.repeat(images[0][..., :1], 2, -1)
    w, t, m = augment.warp_with_masks(key, images[0], masks, 32, cfg, identity="b")
    p = jax.device_get(augment.warp_params(key, cfg, "b"))
    hw, ht = augment.apply_warp(np, p, images[0], 32, cfg)
    np.testing.assert_allclose(hw, w, atol=5e-5)
    np.testing.assert_allclose(ht, t, atol=5e-5)
    grid, _ = augment.source_coords(np, p, 32, 40, cfg)
    np.testing.assert_allclose(m[..., 0], augment.sample(images[0] / 255.0, grid, np, "linear")[
        ..., 0], atol=5e-5)
    # random_warp off: the same view, no displacement.
    off = augment.default_config("dfl")
    off.random_warp = False
    hw, ht2 = augment.apply_warp(np, p, images[0], 32, off)
    np.testing.assert_array_equal(hw, ht2)
    np.testing.assert_allclose(ht2, ht, atol=1e-6)


def test_dfl_view_is_the_flip_then_the_inverse_similarity():
    """Output p reads M⁻¹(flip(p)): scale above 1 zooms in about the centre, the flip mirrors."""
    p = jax.tree.map(lambda v: v[0], _draws(1, host=True))
    p.update(theta=np.float32(0), scale=np.float32(1.15), shift=np.zeros(2, np.float32),
             flip=np.float32(-1))
    target, _ = warp_dfl.view_coords(np, p, 8)
    t = (np.arange(8) + 0.5) / 8 - 0.5
    np.testing.assert_allclose(target[0, :, 0], -t / 1.15, atol=1e-6)
    np.testing.assert_allclose(target[:, 0, 1], t / 1.15, atol=1e-6)
    p.update(scale=np.float32(1), flip=np.float32(1), theta=np.float32(np.pi / 2))
    target, _ = warp_dfl.view_coords(np, p, 8)
    np.testing.assert_allclose(target[..., 0], -np.meshgrid(t, t)[1], atol=1e-6)


def test_dfl_config_and_saehd():
    c = saehd.get_config("tiny")
    assert c.augment.kind == "dfl" and c.augment.random_warp is True
    assert (c.augment.flip_a, c.augment.flip_b, c.augment.scale) == (0.0, 0.4, 1.15)
    assert deepfakes_original.get_config("tiny").augment.kind == "deepfakes"
    assert config_check.COMMON["augment.kind"] == augment.KINDS
    for kind in augment.KINDS:  # each kind's config holds the keys the check asks of it
        assert set(augment.KIND_KEYS[kind]) <= set(augment.default_config(kind))
    schema = saehd_task.TASK.config_schema
    config_check.check(c, schema)
    # Not type-safe, so an integer can stand for the flag (ml_collections refuses it itself on
    # the command line).
    c = ml_collections.ConfigDict(c.to_dict(), type_safe=False)
    c.augment.random_warp = 1
    with pytest.raises(UserError, match=r"^--config\.augment\.random_warp=1: must be True or "):
        config_check.check(c, schema)
    c = deepfakes_original.get_config("tiny")
    c.augment.kind = "dfl"
    with pytest.raises(UserError, match=r"^--config\.augment\.kind=dfl: .* no scale, flip_a, "):
        config_check.check(c, {})
    with pytest.raises(ValueError, match="flips per identity"):
        augment.warp_params_np(np.random.default_rng(0), augment.default_config("dfl"))


def test_saehd_flips_each_identity_at_its_own_rate():
    """SAEHD's warp passes the identity: with every other amount at zero, flip_a 0 and
    flip_b 1, A's targets are the centre view and B's its mirror image; masks follow."""
    c = saehd.get_config("tiny")
    c.augment.update(rotation=0.0, shift=0.0, scale=1.0, random_warp=False, flip_a=0.0,
                     flip_b=1.0)
    rng = np.random.default_rng(0)
    size, load = c.model.size, c.data.load_size
    batch = {n: {"image": rng.integers(0, 256, (2, load, load, 3), np.uint8),
                 "mask": rng.integers(0, 256, (2, load, load), np.uint8),
                 "eyes_mouth": rng.integers(0, 128, (2, load, load), np.uint8)} for n in "ab"}
    batch["a"]["eyes_mouth"][1] = 0  # a face whose eyes/mouth mask is empty stays empty
    sides = jax.jit(lambda b: saehd_task._warp(jax.random.key(0), b, c))(batch)
    for name, flipped in (("a", False), ("b", True)):
        warped, target, mask, _ = sides[name]
        centre = np.stack([augment.centre_view(im, size, c.augment.region, np)
                           for im in batch[name]["image"]])
        np.testing.assert_allclose(target, centre[:, :, ::-1] if flipped else centre, atol=1e-5)
        np.testing.assert_allclose(warped, target, atol=1e-6)
        y, x = np.mgrid[0:size, 0:size]
        t = (np.stack([x, y], -1) + 0.5) / size - 0.5
        grid = ((t * [-1 if flipped else 1, 1]) * c.augment.region + 0.5) * load - 0.5
        want = augment.sample(batch[name]["mask"][0, ..., None] / 255.0, grid, np, "linear")
        np.testing.assert_allclose(mask[0], want, atol=1e-5)
        # the eyes/mouth mask, in the target's view, divided by its maximum (DeepFaceLab's)
        em = sides[name][3]
        raw = augment.sample(batch[name]["eyes_mouth"][0, ..., None] / 255.0, grid, np, "linear")
        np.testing.assert_allclose(em[0], raw / raw.max(), atol=1e-5)
        assert float(np.max(em[0])) == pytest.approx(1.0)
        if name == "a":
            assert float(np.max(em[1])) == 0.0

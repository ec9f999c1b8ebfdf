"""face2face pix2pix: GAN losses, U-Net and PatchGAN, the conditional D, training, reenactment."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facejax.experiments import face2face_pix2pix
from facejax import augment, reenact, train
from facejax.training import run_files
from facejax.data import pipeline
from facejax.faces import align, video
from facejax.tasks import pix2pix
from tests.helpers import GRID, assert_started_from, run_tool, train_steps_on


def test_generator_loss_weights_l1_by_lambda(grid_faces):
    config = face2face_pix2pix.get_config("tiny")
    config.data.a = grid_faces["a"]
    table = pipeline.FaceSource([grid_faces["a"]], "train", 32)
    batch = jax.tree.map(jnp.asarray, pipeline.FaceBatches({"a": table}, global_batch=4, seed=0,
                                                           fields=pix2pix.FIELDS)(0))
    state = jax.jit(lambda k: pix2pix.init(k, config))(jax.random.key(0))
    _, m1 = jax.jit(lambda s, b: pix2pix.train_step(s, b, jax.random.key(1), config))(state, batch)
    config.loss.l1_weight = 10.0
    _, m2 = jax.jit(lambda s, b: pix2pix.train_step(s, b, jax.random.key(1), config))(state, batch)
    np.testing.assert_allclose(m1["loss"], m1["g_gan"] + 100 * m1["g_l1"], rtol=1e-5)
    np.testing.assert_allclose(m2["loss"], m2["g_gan"] + 10 * m2["g_l1"], rtol=1e-5)
    np.testing.assert_allclose(m1["g_l1"], m2["g_l1"], rtol=1e-6)


def test_host_jitter_is_the_device_jitter_of_the_same_draw(grid_faces):
    """augment.placement "host": pix2pix.host_augment draws with numpy and gives the pair the
    device's jitter would for that draw (input from the landmark drawing, target from the face)."""
    config = face2face_pix2pix.get_config("tiny")
    batch = pipeline.FaceBatches({"a": pipeline.FaceSource([grid_faces["a"]], "train", 32)},
                                 global_batch=3, seed=0, fields=pix2pix.FIELDS)(0)
    host = pix2pix.host_augment(batch, np.random.default_rng(5), config)["a"]
    rng, s, big = np.random.default_rng(5), config.model.size, pix2pix._big(config)
    assert big > s and host["input"].shape == host["target"].shape == (3, s, s, 3)
    for i in range(3):
        p = augment.jitter_params_np(rng, big, s, config.augment.flip)
        for field, name in (("input", "landmark_image"), ("target", "image")):
            want = augment.jitter_image(p, pix2pix.to_unit(batch["a"][name][i]), big, s)
            np.testing.assert_allclose(host[field][i], want, atol=2e-5)


def test_discriminator_sees_the_concatenated_pair(grid_faces):
    config = face2face_pix2pix.get_config("tiny")
    state = pix2pix.init(jax.random.key(0), config)
    first = state["d"]["params"]["StridedConv_0"]["kernel"]
    assert first.shape[2] == 6  # landmark image (3) + face (3)
    _, d = pix2pix.build(config)
    v = {"params": state["d"]["params"], "batch_stats": state["d"]["batch_stats"]}
    face = jax.random.uniform(jax.random.key(1), (1, 32, 32, 3))
    cond1 = jax.random.uniform(jax.random.key(2), (1, 32, 32, 3))
    cond2 = jax.random.uniform(jax.random.key(3), (1, 32, 32, 3))
    out1 = d.apply(v, jnp.concatenate([cond1, face], -1), train=False)
    out2 = d.apply(v, jnp.concatenate([cond2, face], -1), train=False)
    # Same face, other condition: another verdict. A D that saw the face alone could not differ.
    assert float(jnp.abs(out1 - out2).mean()) > 1e-4


def test_inference_uses_running_statistics(grid_faces):
    config = face2face_pix2pix.get_config("tiny")
    state = pix2pix.init(jax.random.key(0), config)
    x = jax.random.randint(jax.random.key(1), (2, 32, 32, 3), 0, 256).astype(jnp.uint8)
    one = pix2pix.generate(state, x[:1], config)
    both = pix2pix.generate(state, x, config)
    # With batch statistics the first output would depend on the second example.
    np.testing.assert_allclose(one[0], both[0], atol=1e-5)


def test_sharded_step_equals_single_device_step(grid_faces):
    config = face2face_pix2pix.get_config("tiny")
    config.batch_size = 8
    table = pipeline.FaceSource([grid_faces["a"]], "train", 32)
    batches = pipeline.FaceBatches({"a": table}, global_batch=8, seed=0, fields=pix2pix.FIELDS)
    results = []
    for devices in (jax.devices()[:1], jax.devices()):
        state, m = train_steps_on(devices, pix2pix, config, batches, 2)
        results.append((state, float(m["loss"])))
    assert results[0][1] == pytest.approx(results[1][1], rel=1e-4)
    # Equal within 1e-4, but for the rare weight whose gradient is at rounding level, which Adam
    # moves by ±lr either way (seen: 1 of 427,231 values 2.4e-4 apart): never more than 2·lr a
    # step (conftest.assert_params_agree's reasoning).
    a, b = (np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(r[0])])
            for r in results)
    off = np.abs(a - b) > 1e-4 + 1e-4 * np.abs(b)
    assert off.mean() < 1e-4 and np.abs(a - b).max() <= 2 * config.optim.learning_rate * 2


def trained_config(grid_faces):
    config = face2face_pix2pix.get_config("tiny")
    config.data.a = grid_faces["a"]
    config.num_steps, config.eval_every, config.checkpoint_every = 80, 40, 40
    config.batch_size = 8  # divides over the test process's devices
    config.model.update(g_base=16, max_width=64)
    config.optim.learning_rate = 1e-3
    return config


@pytest.fixture(scope="module")
def trained(grid_faces, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("f2f"))
    metrics = train.train(trained_config(grid_faces), workdir)
    return workdir, metrics


def test_init_from_starts_with_the_trained_weights(trained, grid_faces, tmp_path):
    """G's and D's weights and batch-norm statistics carry over, the optimizer starts fresh
    (the same step as the trained run's: its compilation is cached)."""
    config = trained_config(grid_faces)
    config.num_steps, config.eval_every, config.init_from = 0, 0, trained[0]
    train.train(config, str(tmp_path))
    assert_started_from(pix2pix.TASK, trained[0], trained_config(grid_faces), str(tmp_path),
                        config)


def test_training_on_one_person_lowers_held_out_l1(trained):
    workdir, metrics = trained
    history = run_files.read_history(workdir)
    first, last = history[0]["val_l1"], history[-1]["val_l1"]
    print(f"face2face held-out L1 (0-1 scale): {first:.4f} -> {last:.4f} in 80 steps")
    assert last < 0.6 * first
    assert all(np.isfinite(v) for v in metrics.values())


def test_retargeting_keeps_the_driver_displacements():
    rng = np.random.default_rng(0)
    target_mean = align.mean_face_in_crop(64)
    driver_mean = align.mean_face_in_crop(64, coverage=0.6) + 3.0
    driver = driver_mean[None] + rng.normal(size=(10, 68, 2))
    out = reenact.retarget(driver, driver_mean, target_mean)
    np.testing.assert_allclose(out.mean(0), target_mean + (driver.mean(0) - driver_mean) * 1.25,
                               atol=1e-9)
    back = reenact.displacements(out, target_mean, driver_mean)
    np.testing.assert_allclose(back, driver - driver_mean[None], atol=1e-9)


def test_reenact_tool_writes_the_drivers_frames_and_fps(trained, tmp_path):
    workdir, _ = trained
    out = str(tmp_path / "re.mp4")
    proc = run_tool("tools/reenact.py", f"--model={workdir}",
                    f"--driver={GRID}/GRID_brbk7n.mpg", f"--output={out}", "--batch=16")
    assert proc.returncode == 0, proc.stderr[-2000:]
    src = video.FrameSource(out)
    assert len(list(src.frames())) == 75 and src.info.fps == pytest.approx(25.0)
    assert (src.info.width, src.info.height) == (96, 32)
    proc = run_tool("tools/reenact.py", f"--model={tmp_path}/nothing",
                    f"--driver={GRID}/GRID_brbk7n.mpg", f"--output={out}")
    assert proc.returncode == 2 and "no such workdir" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_reenactment_keeps_the_drivers_tags_and_vfr_timestamps(trained, tmp_path):
    from facejax.faces import video_look, video_writer
    from tests.faces.test_video_look import _clip
    workdir, _ = trained
    # Anamorphic, bt709 full range, frames at 40 n + 10 (n mod 3) ms.
    driver = _clip(str(tmp_path / "d.mp4"), "-fps_mode", "passthrough", "-enc_time_base:v",
                   "1/1000", vf="setpts='(N*0.04+0.01*mod(N,3))/TB',setsar=15/16,setparams="
                   "color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=pc", frames=12)
    out = str(tmp_path / "re.mp4")
    reenact.reenact(workdir, driver, out, batch=4, verbose=False)
    before, after = (video_look.probe(p, video_writer.ffmpeg()) for p in (driver, out))
    assert (after.sar, after.range, after.matrix, after.primaries, after.transfer) == (
        (15, 16), "pc", "bt709", "bt709", "bt709")
    assert video_look.seconds(after) == video_look.seconds(before) and len(before.timestamps) == 12
    assert video_writer.streams(out) == [("video", "h264"), ("audio", "aac")]

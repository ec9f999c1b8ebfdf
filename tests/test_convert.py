"""Conversion on real clips: geometry exactness, masks, pass-through, smoothing, tool, bad input."""

import json
import os

import numpy as np
import pytest

from facejax import convert, inference, train
from facejax.faces import face_types, landmarks as lm, video, video_writer
from tests.helpers import GRID, PYFEAT, run_tool


def identity_model(size=128):
    return inference.SwapModel(lambda crops: crops.astype(np.float32) / 255.0, size,
                               face_types.Framing("", 0.75))


def noise_model(size=64):
    rng = np.random.default_rng(0)
    return inference.SwapModel(lambda crops: rng.uniform(size=crops.shape), size,
                               face_types.Framing("", 0.75))


def run(path, model, opts, limit=None):
    outs = {}
    src = video.FrameSource(path)
    pairs = [(i, f) for i, f in src.frames()][:limit]
    counts, track = convert.process_frames(iter(pairs), model, opts,
                                           lambda i, f: outs.__setitem__(i, f), fps=src.info.fps)
    return [f for _, f in pairs], [outs[i] for i, _ in pairs], counts, track


def test_identity_model_reproduces_every_frame():
    opts = convert.ConvertOptions(color="none", blur=0, erode=0, batch=4)
    frames, outs, counts, _ = run(f"{GRID}/GRID_bbaf2n.mpg", identity_model(), opts)
    assert counts["faces_swapped"] == 75
    worst_mean, worst_max = 0.0, 0
    for f, o in zip(frames, outs):
        err = np.abs(f.astype(int) - o.astype(int))
        changed = err.max(-1) > 0
        worst_mean = max(worst_mean, err[changed].mean() if changed.any() else 0.0)
        worst_max = max(worst_max, int(err.max()))
    print(f"identity model: worst per-frame mean error inside the face {worst_mean:.2f}, "
          f"max {worst_max} (8-bit levels)")
    # Two bilinear resamplings (frame -> 128 px crop -> frame) blur a little; nothing more.
    assert worst_mean < 4.0 and worst_max < 80


def test_outside_the_mask_and_faceless_frames_are_untouched():
    opts = convert.ConvertOptions(color="rct", blur=6, erode=-4, batch=8)
    frames, outs, counts, _ = run(f"{PYFEAT}/face_noface.mov", noise_model(), opts)
    assert counts["passed_through"] > 20 and counts["faces_swapped"] > 20
    assert counts["frames"] == len(outs) == 169
    changed_frames = 0
    for f, o, in zip(frames, outs):
        diff = np.abs(f.astype(int) - o.astype(int)).max(-1) > 0
        if diff.any():
            changed_frames += 1
            ys, xs = np.nonzero(diff)
            # Changes stay in a face-sized region of the frame.
            assert (ys.max() - ys.min()) < 0.8 * f.shape[0] and (xs.max() - xs.min()) < 0.5 * f.shape[1]
    assert changed_frames == counts["faces_swapped"]


def test_smoothing_lowers_the_jitter_of_the_pasted_face():
    tracks = {}
    for s in (0.0, 1.0):
        opts = convert.ConvertOptions(color="none", smooth=s, batch=16)
        _, _, _, track = run(f"{GRID}/GRID_lbax4n.mpg", identity_model(64), opts)
        tracks[s] = lm.jitter(np.stack(track))
    print(f"pasted-face jitter: raw {tracks[0.0]:.4f}, smoothed {tracks[1.0]:.4f}")
    assert tracks[1.0] < 0.7 * tracks[0.0]


@pytest.fixture
def ae_run(tiny_ae_run):
    return tiny_ae_run


def test_tool_converts_a_clip_with_a_trained_autoencoder(ae_run, tmp_path):
    out = str(tmp_path / "out.mp4")
    proc = run_tool("tools/convert.py", f"--model={ae_run}", f"--input={GRID}/GRID_brbk7n.mpg",
                    f"--output={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    src, ref = video.FrameSource(out), video.FrameSource(f"{GRID}/GRID_brbk7n.mpg")
    assert len(list(src.frames())) == 75
    assert src.info.fps == pytest.approx(ref.info.fps)
    assert (src.info.width, src.info.height) == (ref.info.width, ref.info.height)
    # Browser-playable, with the clip's sound.
    assert video_writer.streams(out) == [("video", "h264"), ("audio", "aac")]
    s = json.load(open(str(tmp_path / "out.summary.json")))
    assert s["frames"] == 75 and s["faces_swapped"] == 75
    assert sorted(os.listdir(tmp_path)) == ["out.mp4", "out.summary.json"]
    # Images and folders too.
    proc = run_tool("tools/convert.py", f"--model={ae_run}",
                    f"--input={os.path.dirname(GRID)}/../stills", f"--output={tmp_path}/stills")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert os.path.isfile(tmp_path / "stills" / "astronaut.png")


def test_bad_input_is_one_line_and_leaves_nothing(ae_run, tmp_path):
    (tmp_path / "text.mp4").write_text("not a video")
    (tmp_path / "incomplete").mkdir()
    (tmp_path / "incomplete" / "config.json").write_text(open(f"{ae_run}/config.json").read())
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    os.symlink(f"{ae_run}/checkpoints", wrong / "checkpoints")
    cfg = json.load(open(f"{ae_run}/config.json"))
    cfg["model"]["size"] = 64
    (wrong / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "out"
    out.mkdir()
    cases = [
        ([f"--model={ae_run}", f"--input={tmp_path}/text.mp4", f"--output={out}/a.mp4"],
         "not a readable video"),
        ([f"--model={tmp_path}/missing", f"--input={GRID}/GRID_brbk7n.mpg",
          f"--output={out}/b.mp4"], "no such workdir"),
        ([f"--model={tmp_path}/incomplete", f"--input={GRID}/GRID_brbk7n.mpg",
          f"--output={out}/c.mp4"], "no checkpoint"),
        ([f"--model={wrong}", f"--input={GRID}/GRID_brbk7n.mpg", f"--output={out}/d.mp4"],
         "does not fit"),
        ([f"--model={ae_run}", f"--input={GRID}/GRID_brbk7n.mpg",
          f"--output={tmp_path}/nofolder/e.mp4"], "does not exist"),
    ]
    for args, message in cases:
        proc = run_tool("tools/convert.py", *args)
        last = proc.stderr.strip().splitlines()[-1]
        assert proc.returncode == 2 and message in last, (args, proc.stderr[-1500:])
        assert "Traceback" not in proc.stderr
    assert os.listdir(out) == []


def test_cyclegan_swaps_through_g_ba(grid_faces, tmp_path):
    from facejax.experiments import cyclegan_faces
    c = cyclegan_faces.get_config("tiny")
    c.data.a, c.data.b = grid_faces["a"], grid_faces["b"]
    c.batch_size, c.num_steps, c.eval_every, c.preview_every = 8, 2, 0, 0
    wd = str(tmp_path / "cg")
    train.train(c, wd)
    model = inference.load_swap_model(wd, "b2a", 4)
    assert model.size == 32
    frames, outs, counts, _ = run(f"{GRID}/GRID_brbk7n.mpg", model,
                                  convert.ConvertOptions(batch=4), limit=6)
    assert counts["faces_swapped"] == 6
    assert all(np.abs(f.astype(int) - o.astype(int)).max() > 0 for f, o in zip(frames, outs))

    # Evaluation works for CycleGAN too; its reconstruction is the cycle G_ba(G_ab(x)).
    import jax
    from facejax import evaluate
    m = evaluate.evaluate(wd, f"{GRID}/GRID_bbaf2n.mpg", f"{GRID}/GRID_brbk7n.mpg",
                          str(tmp_path / "eval"), opts=evaluate.EvalOptions(max_frames=3,
                                                                            samples=2),
                          verbose=False)
    assert m["task"] == c.task and m["a2b"]["faces"] == 3 and m["b2a"]["faces"] == 3
    # SSIM lies in [-1, 1]; two steps from random weights reconstruct nothing, so it sits near
    # 0 and either side of it (what it was, not its sign, is what this checks)
    assert -1 <= m["a2b"]["reconstruction"]["ssim_mean"] < 1
    loaded = inference.load_swapper(wd)
    config, task, state = loaded.config, loaded.task, loaded.state
    assert (config.model.conv_impl, config.model.up_impl) == ("xla", "auto")  # forward speed
    x = jax.random.uniform(jax.random.key(3), (2, loaded.size, loaded.size, 3))
    for ident, there, back in (("a", "a2b", "b2a"), ("b", "b2a", "a2b")):
        np.testing.assert_allclose(
            task.reconstruct(state, x, ident, config),
            task.swap(state, task.swap(state, x, there, config), back, config), atol=1e-5)


def test_seamless_blending_changes_only_the_face_and_falls_back_with_a_note(monkeypatch, capsys):
    """--blend seamless: a real Poisson blend inside the hull, the rest of the frame untouched;
    where OpenCV fails the frame is alpha-blended, said once and counted."""
    path = f"{GRID}/GRID_bbaf2n.mpg"
    seamless = convert.ConvertOptions(color="none", blur=0, blend="seamless", batch=4)
    frames, outs, counts, _ = run(path, noise_model(), seamless, limit=4)
    _, alpha_outs, _, _ = run(path, noise_model(), convert.ConvertOptions(
        color="none", blur=0, batch=4), limit=4)
    assert counts["seamless_fallbacks"] == 0
    for f, s, a in zip(frames, outs, alpha_outs):
        changed = np.abs(f.astype(int) - s.astype(int)).max(-1) > 0
        alpha_changed = np.abs(f.astype(int) - a.astype(int)).max(-1) > 0
        assert changed.sum() > 500
        # Seamless cloning stays in the box of the hull that alpha blending replaces (OpenCV
        # solves over the mask's bounding box), and blends differently.
        ys, xs = np.nonzero(alpha_changed)
        box = np.zeros_like(changed)
        box[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = True
        assert not (changed & ~box).any()
        assert np.abs(s.astype(int) - a.astype(int))[alpha_changed].mean() > 1
    import cv2

    def fails(*args):
        raise cv2.error("mask too small")
    monkeypatch.setattr(cv2, "seamlessClone", fails)
    frames, outs, counts, _ = run(path, noise_model(), seamless, limit=4)
    assert counts["seamless_fallbacks"] == 4
    np.testing.assert_array_equal(outs, alpha_outs)
    err = capsys.readouterr().err
    assert err.count("note: seamless blending failed at frame 0 (mask too small)") == 1

"""Conversion with XSeg masks (issue 33): an occluder pasted over the mouth of a real GRID clip
for 30 frames stays in front of the swapped face with --mask=xseg and is painted over with
--mask=hull; the command line, its settings file and its one-line errors."""

import json
import os

import numpy as np
import pytest

from facejax import convert, inference, xseg_convert
from facejax.errors import UserError
from facejax.faces import align, compose, masks, occluders, video, video_writer
from tests.helpers import GRID, LIVEPORTRAIT, run_tool

CLIP = f"{GRID}/GRID_brbk7n.mpg"  # speaker B: swapped b2a by the tiny autoencoder
FRAMES = 30


def _donor() -> np.ndarray:
    """A frame of another clip (not GRID): the occluder's texture."""
    clip = sorted(f for f in os.listdir(LIVEPORTRAIT) if f.endswith(".mp4"))[0]
    return next(iter(video.FrameSource(os.path.join(LIVEPORTRAIT, clip)).frames()))[1]


def _occluded_frames() -> tuple[list, list]:
    """The clip's first FRAMES frames with a disc textured from a real image pasted over the
    mouth (occluders.over_mouth: it follows the mouth), and the discs (bool [H, W] each)."""
    finder = convert.make_finder(convert.ConvertOptions())
    pairs = [(i, f) for i, f in video.FrameSource(CLIP).frames()][:FRAMES]
    donor = _donor()
    frames, discs = [], []
    for _, frame, points in convert.found_faces(iter(pairs), finder, 25.0):
        assert points is not None  # every GRID frame has its face
        occluded, disc = occluders.over_mouth(frame, points, donor)
        assert 0.01 < disc.mean() < 0.05  # a mouth-sized disc
        frames.append(occluded)
        discs.append(disc)
    return frames, discs


@pytest.fixture(scope="module")
def occluded():
    return _occluded_frames()


def psnr_inside(outs, frames, regions) -> float:
    """PSNR (dB, 8 bit) of `outs` against `frames` over the pixels of `regions`, all frames."""
    from facejax import metrics
    return metrics.psnr(np.concatenate([o[r] for o, r in zip(outs, regions)]),
                        np.concatenate([f[r] for f, r in zip(frames, regions)]), 255.0)


def _convert(frames, model, opts, segment=None):
    outs = {}
    counts, track = convert.process_frames(enumerate(frames), model, opts,
                                           lambda i, f: outs.__setitem__(i, f), fps=25.0,
                                           segment=segment)
    assert counts["faces_swapped"] == len(frames)
    return [outs[i] for i in range(len(frames))], track


class VisibleFace:
    """A segmentation function that knows the answer: for the crops conversion gives it (in
    frame order, each checked to be its frame's square in the swap model's framing at `side`),
    the landmark hull minus the occluder, both in the crop. What a perfect XSeg returns."""

    def __init__(self, frames, discs, track, model, side):
        self.frames, self.discs, self.track, self.model = frames, discs, track, model
        self.side, self.next = side, 0

    def __call__(self, crops):
        out = []
        for crop in crops:
            i, points = self.next, self.track[self.next]
            self.next += 1
            m = self.model.framing.matrix(points, self.side)
            np.testing.assert_array_equal(crop, align.crop(self.frames[i], m, self.side))
            disc = align.crop(self.discs[i].astype(np.float32), m, self.side) > 0.5
            hull = masks.face_hull(align.transform_points(m, points), crop.shape[:2]) >= 128
            out.append((hull & ~disc).astype(np.float32))
        return np.stack(out)


@pytest.fixture(scope="module")
def swap_model(tiny_ae_run):
    return inference.load_swap_model(tiny_ae_run, "b2a", 8)


def test_a_perfect_xseg_keeps_the_occluder_and_the_hull_paints_it_over(occluded, swap_model):
    frames, discs = occluded
    opts = convert.ConvertOptions(mask="hull", blur=0, color="none")
    hull_outs, track = _convert(frames, swap_model, opts)
    xseg_opts = convert.ConvertOptions(mask="xseg", blur=0, color="none", xseg_model="oracle")
    segment = VisibleFace(frames, discs, track, swap_model, 4 * swap_model.size)
    xseg_outs, again = _convert(frames, swap_model, xseg_opts,
                                xseg_convert.Segmenter(segment, segment.side))
    assert segment.next == FRAMES  # every face segmented once, in order
    assert all((a == b).all() for a, b in zip(track, again))
    # The mask's edge is resampled bicubic (a soft mask, as DeepFaceLab's merger pastes it), so
    # the swap may touch the occluder's outermost 2 frame pixels; inside those it must not. The
    # mask is cut at 4x the swap crop's side, so its edge is finer than the swap's grid and
    # the whole disc, edge included, comes through far above the 35 dB the issue asks.
    inner = [masks.feather(d.astype(np.float32), 2, 0) > 0.999 for d in discs]
    xseg_db, hull_db = psnr_inside(xseg_outs, frames, inner), psnr_inside(hull_outs, frames, inner)
    whole = psnr_inside(xseg_outs, frames, discs)
    print(f"PSNR inside the occluder: xseg {xseg_db:.1f} dB (whole disc {whole:.1f}), "
          f"hull {hull_db:.1f} dB")
    assert whole >= 42.0 and xseg_db >= 35.0 and hull_db < 25.0
    # The rest of the face is swapped as with the hull, away from its outline: there the hull
    # mask steps on the 32 px swap crop's grid and the perfect XSeg's on its own finer one.
    face = [masks.face_hull(p, f.shape[:2]) >= 128 for p, f in zip(track, frames)]
    face = [masks.feather(fc.astype(np.float32), 4, 0) > 0.999 for fc in face]
    rest = [fc & ~d for fc, d in zip(face, discs)]
    assert psnr_inside(xseg_outs, hull_outs, rest) > 30.0
    assert psnr_inside(xseg_outs, frames, rest) < 25.0


def test_xseg_x_learned_is_the_product_and_each_mask_is_required():
    xseg = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    learned = np.full((64, 64), 0.5, np.float32)
    points = np.zeros((68, 2))
    np.testing.assert_array_equal(compose.crop_mask_of("xseg", points, 64, None, xseg), xseg)
    np.testing.assert_allclose(compose.crop_mask_of("xseg_x_learned", points, 64, learned, xseg),
                               xseg * 0.5)
    with pytest.raises(ValueError, match="learned mask"):
        compose.crop_mask_of("xseg_x_learned", points, 64, None, xseg)
    with pytest.raises(ValueError, match="segmentation model"):
        compose.crop_mask_of("xseg", points, 64, learned)


@pytest.fixture(scope="module")
def occluded_clip(occluded, tmp_path_factory):
    """The occluded frames written as a clip, as facejax convert reads one."""
    frames, _ = occluded
    path = str(tmp_path_factory.mktemp("occluded") / "occluded.mp4")
    h, w = frames[0].shape[:2]
    with video_writer.VideoWriter(path, 25.0, (w, h)) as writer:
        for frame in frames:
            writer.write(frame)
    return path


def test_the_command_converts_with_a_trained_xseg_run(occluded, occluded_clip, xseg_run,
                                                      tiny_ae_run, tmp_path):
    frames, discs = occluded
    decoded = [f for _, f in video.FrameSource(occluded_clip).frames()]
    assert len(decoded) == FRAMES
    results = {}
    for mask in ("xseg", "hull"):
        out = str(tmp_path / f"{mask}.mp4")
        segmenter = [f"--xseg_model={xseg_run}"] if mask == "xseg" else []
        proc = run_tool("tools/convert.py", f"--model={tiny_ae_run}", f"--input={occluded_clip}",
                        f"--output={out}", f"--mask={mask}", *segmenter)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert json.loads(proc.stdout.strip().splitlines()[-1])["faces_swapped"] == FRAMES
        results[mask] = [f for _, f in video.FrameSource(out).frames()]
    print("trained tiny XSeg (4 steps), PSNR inside the occluder against the input: "
          f"xseg {psnr_inside(results['xseg'], decoded, discs):.1f} dB, "
          f"hull {psnr_inside(results['hull'], decoded, discs):.1f} dB")
    # The command's frames are the library's with the run's segmenter (up to H.264's noise),
    # and that mask changes the frame: it reached the paste.
    model = inference.load_swap_model(tiny_ae_run, "b2a", 8)
    opts = convert.ConvertOptions(mask="xseg", xseg_model=xseg_run)
    want, _ = _convert(decoded, model, opts)
    hull, _ = _convert(decoded, model, convert.ConvertOptions())
    everywhere = [np.ones(f.shape[:2], bool) for f in decoded]
    assert psnr_inside(results["xseg"], want, everywhere) > 35.0
    assert psnr_inside(results["hull"], hull, everywhere) > 35.0
    assert any((a != b).any() for a, b in zip(want, hull))


def test_settings_files_carry_the_xseg_run_and_flags_override_it(xseg_run, tmp_path):
    path = str(tmp_path / "settings.json")
    convert.save_settings(path, convert.ConvertOptions(mask="xseg", xseg_model=xseg_run))
    assert convert.load_settings(path).xseg_model == xseg_run
    with open(path, "w") as f:
        json.dump({"mask": "xseg"}, f)
    with pytest.raises(UserError, match=r"settings.json: --mask=xseg needs --xseg_model=RUN"):
        convert.read_settings(path)
    with open(path, "w") as f:
        json.dump({"xseg_model": 3}, f)
    with pytest.raises(UserError, match=r"settings.json: xseg_model 3: expected a string"):
        convert.read_settings(path)


def test_bad_xseg_options_are_one_line_errors(xseg_run, tiny_ae_run, occluded_clip, tmp_path):
    out = str(tmp_path / "out.mp4")
    settings = str(tmp_path / "s.json")
    with open(settings, "w") as f:
        json.dump({"mask": "xseg", "xseg_model": xseg_run}, f)
    for args, message in (
            (["--mask=xseg"], "error: --mask=xseg needs --xseg_model=RUN"),
            (["--mask=xseg_x_learned"], "error: --mask=xseg_x_learned needs --xseg_model=RUN"),
            (["--mask=xseg", f"--xseg_model={tiny_ae_run}"],
             f"error: --xseg_model={tiny_ae_run}: its task autoencoder predicts no face mask"),
            (["--mask=xseg", f"--xseg_model={tmp_path}/missing"],
             f"error: --xseg_model {tmp_path}/missing: no such workdir"),
            ([f"--settings={settings}", "--xseg_model="],
             "error: --mask=xseg needs --xseg_model=RUN"),
            (["--mask=learned_x_hull", f"--xseg_model={xseg_run}"],
             f"error: --xseg_model={xseg_run}: used only with --mask=xseg or xseg_x_learned, "
             "and --mask is learned_x_hull")):
        proc = run_tool("tools/convert.py", f"--model={tiny_ae_run}", f"--input={occluded_clip}",
                        f"--output={out}", *args)
        assert proc.returncode != 0
        assert proc.stderr.strip().splitlines()[-1].startswith(message), proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr and not os.path.exists(out)
    with pytest.raises(UserError, match="--xseg_model"):
        xseg_convert.load("xseg", "", 8)
    assert xseg_convert.load("hull", "", 8) is None


def test_the_merge_preview_renders_the_frame_conversion_writes_with_xseg(
        occluded_clip, xseg_run, tiny_ae_run):
    from facejax.frame_preview import FramePreview
    preview = FramePreview(tiny_ae_run, occluded_clip)
    decoded = [f for _, f in video.FrameSource(occluded_clip).frames()]
    model = inference.load_swap_model(tiny_ae_run, "b2a", 8)
    opts = convert.ConvertOptions(mask="xseg", xseg_model=xseg_run)
    want, _ = _convert(decoded, model, opts)
    for index in (0, 13, 29):
        np.testing.assert_array_equal(preview.render(index, opts), want[index])
    hull = preview.render(13, convert.ConvertOptions())
    assert (hull != want[13]).any()
    with pytest.raises(UserError, match="--mask=xseg needs --xseg_model"):
        preview.render(13, convert.ConvertOptions(mask="xseg"))

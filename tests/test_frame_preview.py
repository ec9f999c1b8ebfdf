"""The studio's merge preview (facejax/frame_preview.py) on real clips with a trained model: a
previewed frame is the frame `facejax convert --settings` writes, erode changes only the mask's
edge, a faceless frame comes back unchanged; settings files round-trip, explicit flags override
them, and a bad one is one line."""

import json
import os

import cv2
import numpy as np
import pytest

from facejax import convert, frame_preview
from facejax.errors import UserError
from facejax.faces import video, video_look, video_writer
from tests.helpers import GRID, PYFEAT, SHARED, run_tool

CLIP = f"{GRID}/GRID_brbk7n.mpg"
ASTRONAUT = os.path.join(SHARED, "data", "stills", "astronaut.png")
# Settings unlike the defaults in every paste option and the smoothing.
SAVED = convert.ConvertOptions(erode=4, blur=6, color="hist", smooth=0.5, batch=8)
OTHER = convert.ConvertOptions(erode=-6, blur=6, color="none", smooth=0.5, batch=8)


@pytest.fixture(scope="module")
def preview(tiny_ae_run):
    return frame_preview.FramePreview(tiny_ae_run, CLIP)


@pytest.fixture(scope="module")
def converted(tiny_ae_run, tmp_path_factory):
    """The clip converted by the tool with SAVED in a settings file: (video, decoded frames)."""
    folder = tmp_path_factory.mktemp("converted")
    settings, out = str(folder / "merge.json"), str(folder / "out.mp4")
    convert.save_settings(settings, SAVED)
    proc = run_tool("tools/convert.py", f"--model={tiny_ae_run}", f"--input={CLIP}",
                    f"--output={out}", f"--settings={settings}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out, [f for _, f in video.FrameSource(out).frames()]


def face_region(preview, index, opts, margin=15):
    """The frame's face: its landmarks' box grown by `margin` pixels (a slice pair)."""
    points = preview.landmarks(index, opts)
    x0, y0 = np.maximum(points.min(0).astype(int) - margin, 0)
    x1, y1 = points.max(0).astype(int) + margin
    return slice(y0, y1), slice(x0, x1)


def mean_abs(a, b):
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_preview_is_the_frame_convert_writes_with_the_saved_settings(preview, converted):
    out, written = converted
    assert preview.frame_count == len(written) == 75
    same, other = [], []
    for k in (0, 1, 17, 40, 74):
        face = face_region(preview, k, SAVED)
        shown = preview.render(k, SAVED)
        assert shown.shape == written[k].shape and shown.dtype == np.uint8
        same.append(mean_abs(shown[face], written[k][face]))
        other.append(mean_abs(preview.render(k, OTHER)[face], written[k][face]))
    print(f"mean abs error in the face, preview vs converted video: {np.round(same, 2)}; "
          f"with other settings {np.round(other, 2)}")
    # H.264 at CRF 18 with 4:2:0 chroma errs by 4.0 to 4.7 levels on average on this tiny
    # model's grainy faces (1.5 to 1.7 on the untouched frame around them), measured by
    # encoding the preview's own frames (below): 6 levels allows for that, and other paste
    # settings differ by 29.
    assert max(same) < 6
    assert min(other) > 4 * max(same)

    # Exactly: every previewed frame, encoded as conversion encodes it, decodes to the same
    # frame as the tool's video (x264 is deterministic).
    again = str(os.path.dirname(out) + "/again.mp4")
    info = video.FrameSource(CLIP).info
    look = video_look.probe(CLIP, video_writer.ffmpeg())
    with video_writer.VideoWriter(again, info.fps, (info.width, info.height), audio_from=CLIP,
                                  look=look) as writer:
        for k in range(preview.frame_count):
            writer.write(preview.render(k, SAVED))
    decoded = [f for _, f in video.FrameSource(again).frames()]
    assert len(decoded) == len(written)
    assert max(int(np.abs(a.astype(int) - b.astype(int)).max())
               for a, b in zip(decoded, written)) == 0


def test_erode_changes_only_the_edge_of_the_mask(preview):
    k, blur, erode = 30, 4, 6
    _, hard = preview.render_with_mask(k, convert.ConvertOptions(blur=0, erode=0))
    # The mask's edge: where the unfeathered mask is not 1 (outside, and the hull's own
    # anti-aliased edge, a 64 px crop's pixel wide); its distance from every pixel inside.
    assert (hard == 1).sum() > 2000
    from_edge = cv2.distanceTransform((hard == 1).astype(np.uint8), cv2.DIST_L2, 5)

    a, alpha_a = preview.render_with_mask(k, convert.ConvertOptions(blur=blur, erode=0))
    b, alpha_b = preview.render_with_mask(k, convert.ConvertOptions(blur=blur, erode=erode))
    moved = (a != b).any(-1)
    print(f"erode {erode}: {moved.sum()} pixels changed, up to {from_edge[moved].max():.1f} px "
          "inside the mask's edge")
    assert moved.sum() > 300
    # Eroding shrinks the mask: nothing outside the uneroded mask moves, the face away from
    # the frame's face least of all; inside, only the band the erosion and the feathering
    # (Gaussian, kernel 2 * blur + 1) reach from the edge moves, one pixel spare.
    assert not moved[alpha_a == 0].any()
    assert (alpha_b <= alpha_a + 1e-6).all()
    assert from_edge[moved].max() <= erode + blur + 1
    # ...and where the erosion lowered the mask clearly, the frame changed.
    lowered = alpha_a - alpha_b > 0.1
    assert lowered.sum() > 300 and moved[lowered].mean() > 0.95
    # The face's middle is the same pixels (the cached swap, pasted again).
    core = from_edge > erode + blur + 1
    assert core.sum() > 1000
    np.testing.assert_array_equal(a[core], b[core])


def test_a_frame_without_a_face_comes_back_unchanged(tiny_ae_run):
    clip = f"{PYFEAT}/face_noface.mov"
    preview = frame_preview.FramePreview(tiny_ae_run, clip)
    opts = convert.ConvertOptions(erode=-4, blur=8)
    faceless = [k for k in range(preview.frame_count) if preview.landmarks(k, opts) is None]
    with_face = [k for k in range(preview.frame_count) if k not in faceless]
    assert len(faceless) > 20 and len(with_face) > 20
    source = video.FrameSource(clip)
    for k in faceless[::10]:
        np.testing.assert_array_equal(preview.render(k, opts), source.read(k))
    k = with_face[len(with_face) // 2]
    assert (preview.render(k, opts) != source.read(k)).any()
    side_by_side = preview.render(faceless[0], convert.ConvertOptions(preview=True))
    frame = source.read(faceless[0])
    np.testing.assert_array_equal(side_by_side, np.concatenate([frame, frame], axis=1))


def test_bad_render_requests_are_one_line(preview):
    for index, opts, message in (
            (75, SAVED, "no frame 75 (the clip has 75 frames, 0 to 74)"),
            (-1, SAVED, "no frame -1"),
            (0, convert.ConvertOptions(direction="a2b"), "this preview swaps b2a"),
            (0, convert.ConvertOptions(erode=600), "--erode 600: must be between"),
            (0, convert.ConvertOptions(mask="learned"), "predicts no mask of its own")):
        with pytest.raises(UserError, match=message.replace("(", r"\(")
                           .replace(")", r"\)")):
            preview.render(index, opts)


def test_bad_clips_and_runs_are_one_line(tiny_ae_run, tmp_path):
    for model_dir, clip, message in ((str(tmp_path / "none"), CLIP, "no such workdir"),
                                     (tiny_ae_run, str(tmp_path / "none.mp4"), "no such file"),
                                     (tiny_ae_run, CLIP, "--detector nope: expected hog")):
        with pytest.raises(UserError, match=message):
            frame_preview.FramePreview(model_dir, clip,
                                       detector="nope" if "detector" in message else "hog")


def test_frames_not_kept_in_memory_are_decoded_again_the_same(preview, tiny_ae_run):
    lean = frame_preview.FramePreview(tiny_ae_run, CLIP, max_frame_bytes=0, max_swaps=3)
    assert lean.frame_count == preview.frame_count
    for k in (60, 3, 61, 3):  # backwards too: decoding starts again from the clip's start
        np.testing.assert_array_equal(lean.render(k, SAVED), preview.render(k, SAVED))


def test_settings_round_trip(tmp_path):
    path = str(tmp_path / "merge.json")
    convert.save_settings(path, SAVED)
    assert os.listdir(tmp_path) == ["merge.json"]  # written whole, no temporary left
    assert json.load(open(path))["color"] == "hist"
    assert convert.load_settings(path) == SAVED
    # A file may set only some options; the others keep their defaults.
    with open(path, "w") as f:
        json.dump({"erode": 3, "smooth": 2}, f)
    assert convert.load_settings(path) == convert.ConvertOptions(erode=3, smooth=2.0)
    with pytest.raises(UserError, match="--blur -1: must be between 0 and 512"):
        convert.save_settings(path, convert.ConvertOptions(blur=-1))


def test_explicit_flags_override_the_settings_file(tiny_ae_run, tmp_path):
    settings = str(tmp_path / "merge.json")
    from_file = convert.ConvertOptions(erode=10, blur=2, color="none", mask="crop")
    convert.save_settings(settings, from_file)
    preview = frame_preview.FramePreview(tiny_ae_run, ASTRONAUT)
    outputs = {}
    for name, flags in (("file", []), ("override", ["--erode=0", "--mask=hull"])):
        out = str(tmp_path / f"{name}.png")
        proc = run_tool("tools/convert.py", f"--model={tiny_ae_run}", f"--input={ASTRONAUT}",
                        f"--output={out}", f"--settings={settings}", *flags)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outputs[name] = video.read_image(out)
    # PNG is lossless: the tool's image is the previewed one, exactly.
    np.testing.assert_array_equal(outputs["file"], preview.render(0, from_file))
    overridden = convert.ConvertOptions(erode=0, blur=2, color="none", mask="hull")
    np.testing.assert_array_equal(outputs["override"], preview.render(0, overridden))
    assert (outputs["file"] != outputs["override"]).any(-1).sum() > 500


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('["erode", 4]', "expected a JSON object of convert options, got list"),
    ('{"erode": 4, "feather": 2}', "unknown key 'feather'"),
    ('{"erode": "4"}', 'erode "4": expected an integer'),
    ('{"preview": 1}', "preview 1: expected true or false"),
    ('{"erode": 900}', "--erode 900: must be between -512 and 512"),
    ('{"mask": "oval"}', "--mask oval: expected one of"),
    ('{"smooth": -1}', "--smooth -1.0: must be 0 (off)"),
])
def test_a_bad_settings_file_is_one_line(tiny_ae_run, tmp_path, content, message):
    settings = tmp_path / "merge.json"
    settings.write_text(content)
    out = tmp_path / "out"
    out.mkdir()
    proc = run_tool("tools/convert.py", f"--model={tiny_ae_run}", f"--input={CLIP}",
                    f"--output={out}/x.mp4", f"--settings={settings}")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-1500:]
    assert len(lines) == 1 and str(settings) in lines[0] and message in lines[0], lines
    assert os.listdir(out) == []

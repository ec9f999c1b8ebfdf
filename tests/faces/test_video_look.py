"""Outputs keep their input's look: sample aspect ratio, colour tags, rotation (as upright
pixels) and a variable frame rate's timestamps, on clips cut here from a real face video with
the bundled FFmpeg and converted with a trained autoencoder."""

import json
import os
import subprocess

import numpy as np
import pytest

from facejax import convert, inference
from facejax.faces import detect, video, video_look, video_writer
from tests.helpers import GRID

FACE_CLIP = os.path.join(GRID, "GRID_bbaf2n.mpg")  # one speaker, face ~100 px in 360x288


def _clip(path, *options, vf="", frames=24, rotation=None):
    """FACE_CLIP's first `frames` frames with its audio, as H.264 MP4 made with `options`."""
    turn = ["-display_rotation", str(rotation)] if rotation is not None else []
    encode = [video_writer.ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", "-i", FACE_CLIP,
              "-frames:v", str(frames), *(["-vf", vf] if vf else []), *options,
              "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"]
    if rotation is None:
        subprocess.run(encode + [path], check=True, capture_output=True)
        return path
    # The rotation tag is set while copying: an input option of the second pass.
    plain = path + ".plain.mp4"
    subprocess.run(encode + [plain], check=True, capture_output=True)
    subprocess.run([video_writer.ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", *turn,
                    "-i", plain, "-c", "copy", path], check=True, capture_output=True)
    return path


@pytest.fixture(scope="module")
def model(tiny_ae_run):
    return inference.load_swap_model(tiny_ae_run, "b2a", 4)


def _convert(model, clip, tmp_path):
    out = str(tmp_path / "out.mp4")
    summary = convert.convert(model, clip, out, convert.ConvertOptions(batch=4), verbose=False)
    return out, summary


def _look(path):
    return video_look.probe(path, video_writer.ffmpeg())


def test_ffmpeg_reports_are_parsed():
    look = video_look.parse_stream(
        "  Stream #0:0[0x1](und): Video: h264 (Main) (avc1 / 0x31637661), yuv420p(tv, bt709, "
        "progressive), 512x480 [SAR 15:16 DAR 1:1], 789 kb/s, 30 fps, 90k tbn (default)\n"
        "    Side data:\n      Display Matrix: rotation of -90.00 degrees\n")
    assert (look.sar, look.range, look.matrix, look.primaries, look.transfer, look.rotation) == (
        (15, 16), "tv", "bt709", "bt709", "bt709", -90.0)
    assert look.upright_sar() == (16, 15)
    mixed = video_look.parse_stream("Stream #0:0: Video: h264, yuvj420p(pc, bt709/bt470bg/"
                                    "smpte170m, progressive), 64x48, 25 fps")
    assert (mixed.range, mixed.matrix, mixed.primaries, mixed.transfer) == (
        "pc", "bt709", "bt470bg", "smpte170m")
    assert video_look.parse_stream("Stream #0:0: Video: mjpeg, yuvj420p(pc), 64x48").sar is None


@pytest.mark.parametrize("range_", ["pc", "tv"])
def test_anamorphic_bt709_clip_keeps_its_aspect_and_colour_tags(model, tmp_path, range_):
    tags = f"setsar=15/16,setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:" \
           f"range={range_}"
    clip = _clip(str(tmp_path / "in.mp4"), vf=tags)
    before = _look(clip)
    assert (before.sar, before.range, before.matrix) == ((15, 16), range_, "bt709")
    out, summary = _convert(model, clip, tmp_path)
    assert summary["faces_swapped"] > 0
    after = _look(out)
    assert (after.sar, after.range, after.matrix, after.primaries, after.transfer) == (
        (15, 16), range_, "bt709", "bt709", "bt709")
    assert video_writer.streams(out) == [("video", "h264"), ("audio", "aac")]
    # The pixels were converted to YUV with the tagged matrix and range: frames away from the
    # face read back as the source's (CRF 18 noise only).
    src, back = next(video.FrameSource(clip).frames())[1], next(video.FrameSource(out).frames())[1]
    corner = (slice(0, 60), slice(0, 80))
    assert abs(float(src[corner].mean()) - float(back[corner].mean())) < 2.0


@pytest.mark.parametrize("rotation", [90, 270])
def test_rotated_phone_clip_is_swapped_and_written_upright(model, tmp_path, rotation):
    # As a phone stores it: the frames turned on their side, the tag turning them back.
    turn = {90: "transpose=clock", 270: "transpose=cclock"}[rotation]
    clip = _clip(str(tmp_path / "in.mp4"), vf=turn, rotation=rotation)
    assert abs(_look(clip).rotation) == 90  # FFmpeg prints 270 as -90
    out, summary = _convert(model, clip, tmp_path)
    assert summary["faces_swapped"] == summary["frames"] == 24
    after = _look(out)
    # Kept as pixels, not as a tag: upright 360x288 frames, no rotation to apply.
    assert after.rotation == 0.0
    back = video.FrameSource(out)
    assert (back.info.width, back.info.height) == (360, 288)
    # The same picture as the source shown upright (a swapped face aside), not turned.
    frame = next(back.frames())[1].astype(float)
    upright = next(video.FrameSource(clip).frames())[1].astype(float)
    assert len(detect.make_detector("hog")(upright.astype(np.uint8))) == 1  # upright faces only
    same, turned = (float(np.median(abs(frame - x))) for x in (upright, upright[::-1, ::-1]))
    assert same < 4.0 and turned > 3 * same + 4.0, (same, turned)


def test_variable_frame_rate_clip_keeps_every_timestamp(model, tmp_path):
    # Frame n shown at 40 n ms plus 0, 10 or 20 ms: durations of 50, 50 and 20 ms.
    clip = _clip(str(tmp_path / "in.mp4"), "-fps_mode", "passthrough",
                 "-enc_time_base:v", "1/1000",
                 vf="setpts='(N*0.04+0.01*mod(N,3))/TB'")
    before = _look(clip)
    assert before.timestamps is not None and len(before.timestamps) == 24
    out, summary = _convert(model, clip, tmp_path)
    after = _look(out)
    assert video_look.seconds(after) == video_look.seconds(before)
    assert summary["frames"] == 24
    assert video_writer.streams(out) == [("video", "h264"), ("audio", "aac")]
    assert json.load(open(str(tmp_path / "out.summary.json")))["frames"] == 24


def test_long_vfr_timestamps_go_through_a_filter_script(tmp_path):
    # 6,000 frames of timestamps make a filter chain past one argument's 128 KiB limit.
    pts = [40 * n + 10 * (n % 3) for n in range(6000)]
    look = video_look.Look(time_base=(1, 1000), timestamps=pts)
    chain = ",".join(video_look.filters(look))
    assert len(chain) > 100_000
    writer = video_writer.VideoWriter(str(tmp_path / "v.mp4"), 25.0, (64, 48), look=look)
    for n in range(5):
        writer.write(np.full((48, 64, 3), 40 * n, np.uint8))
    writer.close()
    assert video_look.probe(str(tmp_path / "v.mp4"), video_writer.ffmpeg()).timestamps == pts[:5]
    assert sorted(os.listdir(tmp_path)) == ["v.mp4"]  # the filter script is gone

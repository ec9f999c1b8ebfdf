"""Videos out: H.264 MP4 that browsers play, with the source's audio, written atomically."""

import os
import subprocess

import numpy as np
import pytest

from facejax.errors import OutOfSpace, RunError, UserError
from facejax.faces import video, video_writer
from tests.helpers import GRID


def _tone_clip(path, seconds=2.0, fps=25, size=(64, 48), tone=True):
    """A test pattern with a 440 Hz tone (or silent), made with the bundled FFmpeg."""
    sound = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"] if tone else []
    subprocess.run([video_writer.ffmpeg(), "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", f"testsrc=size={size[0]}x{size[1]}:rate={fps}",
                    *sound, "-t", str(seconds), "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    *(["-c:a", "aac"] if tone else []), path], check=True, capture_output=True)
    return path


def test_writes_h264_with_the_sources_audio_and_its_frames_fps_and_size(tmp_path):
    source = _tone_clip(str(tmp_path / "tone.mp4"))
    assert video_writer.streams(source) == [("video", "h264"), ("audio", "aac")]
    src = video.FrameSource(source)
    out = str(tmp_path / "out.mp4")
    with video_writer.VideoWriter(out, src.info.fps, (src.info.width, src.info.height),
                                  audio_from=source) as w:
        for _, frame in src.frames():
            w.write(255 - frame)
    assert video_writer.streams(out) == [("video", "h264"), ("audio", "aac")]
    back = video.FrameSource(out)
    frames = [f for _, f in back.frames()]
    assert len(frames) == len(src) == 50
    assert back.info.fps == pytest.approx(src.info.fps)
    assert (back.info.width, back.info.height) == (64, 48)
    # CRF 18: the inverted pattern comes back within a few levels on average.
    first = next(src.frames())[1]
    assert np.abs(frames[0].astype(int) - (255 - first.astype(int))).mean() < 6
    assert sorted(os.listdir(tmp_path)) == ["out.mp4", "tone.mp4"]


def test_a_silent_source_gives_a_silent_video_and_odd_sizes_are_padded(tmp_path):
    clip = _tone_clip(str(tmp_path / "silent.mp4"), tone=False)
    assert video_writer.streams(clip) == [("video", "h264")]
    out = str(tmp_path / "odd.mp4")
    with video_writer.VideoWriter(out, 25.0, (63, 47), audio_from=clip) as w:
        for i in range(5):
            w.write(np.full((47, 63, 3), i * 40, np.uint8))
    assert video_writer.streams(out) == [("video", "h264")]
    back = video.FrameSource(out)
    assert len(list(back.frames())) == 5 and (back.info.width, back.info.height) == (64, 48)
    # GRID's clips carry MPEG audio: re-encoded to AAC for MP4.
    grid = os.path.join(GRID, "GRID_bbaf2n.mpg")
    out = str(tmp_path / "grid.mp4")
    with video_writer.VideoWriter(out, 25.0, (64, 48), audio_from=grid) as w:
        for i in range(25):
            w.write(np.full((48, 64, 3), i * 10, np.uint8))
    assert video_writer.streams(out) == [("video", "h264"), ("audio", "aac")]


def test_atomic_and_failures_are_one_line(tmp_path):
    out = str(tmp_path / "out.mp4")
    with pytest.raises(RuntimeError):
        with video_writer.VideoWriter(out, 25.0, (64, 48)) as w:
            w.write(np.zeros((48, 64, 3), np.uint8))
            raise RuntimeError("crash mid-write")
    assert os.listdir(tmp_path) == []
    with pytest.raises(UserError, match="does not exist"):
        video_writer.VideoWriter(str(tmp_path / "missing" / "x.mp4"), 25.0, (64, 48))
    with pytest.raises(UserError, match="cannot write .gif videos"):
        video_writer.VideoWriter(str(tmp_path / "x.gif"), 25.0, (64, 48))
    # FFmpeg refusing the audio source (not a media file): its own reason, on one line.
    (tmp_path / "notmedia.mp4").write_text("text")
    with pytest.raises(RunError) as e:
        with video_writer.VideoWriter(out, 25.0, (64, 48),
                                      audio_from=str(tmp_path / "notmedia.mp4")) as w:
            for _ in range(200):
                w.write(np.zeros((48, 64, 3), np.uint8))
    assert "FFmpeg failed" in str(e.value) and "\n" not in str(e.value)
    assert not isinstance(e.value, OutOfSpace)
    assert sorted(os.listdir(tmp_path)) == ["notmedia.mp4"]

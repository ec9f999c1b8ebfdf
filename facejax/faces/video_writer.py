"""Writes videos that browsers play: H.264 in MP4 (yuv420p), with another video's audio muxed in,
through the FFmpeg binary that the imageio-ffmpeg package ships (no system ffmpeg needed).

The file appears at its path only once it is finished and read back whole; a crash, a kill or
a full disk leaves nothing at that path but what was there before.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

import cv2
import numpy as np

from facejax.errors import OutOfSpace, RunError, UserError, warn
from facejax.faces import video_look

# Per container: FFmpeg's video encoder and its settings. x264 at CRF 18 is visually lossless
# for swapped faces; yuv420p is the one pixel format every browser and phone decodes.
_H264 = ["-c:v", "libx264", "-preset", "medium", "-crf", "18", "-pix_fmt", "yuv420p"]
_ENCODERS = {
    ".mp4": _H264, ".m4v": _H264, ".mov": _H264, ".mkv": _H264,
    ".webm": ["-c:v", "libvpx-vp9", "-crf", "30", "-b:v", "0", "-pix_fmt", "yuv420p"],
    ".avi": ["-c:v", "mjpeg", "-q:v", "3", "-pix_fmt", "yuvj420p"],
}
_AUDIO = {".webm": ["-c:a", "libopus"], ".avi": ["-c:a", "mp3"]}  # else AAC
_NO_SPACE = re.compile(r"No space left|Disk quota|Read-only file system", re.I)


def ffmpeg() -> str | None:
    """The FFmpeg binary: imageio-ffmpeg's, else one on PATH, else None."""
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return shutil.which("ffmpeg")


def streams(path: str) -> list[tuple[str, str]]:
    """[(kind, codec)] of a media file's streams, e.g. [("video", "h264"), ("audio", "aac")],
    as FFmpeg reads them; [] when it cannot."""
    exe = ffmpeg()
    if exe is None:
        return []
    proc = subprocess.run([exe, "-hide_banner", "-i", path], capture_output=True, text=True,
                          errors="replace")
    return [(kind.lower(), codec) for kind, codec in
            re.findall(r"Stream #\d+:\d+\S*: (Video|Audio): (\w+)", proc.stderr)]


class VideoWriter:
    """Writes RGB frames to a video that appears at `path` only once `close()` succeeds.

    With `audio_from` (a video), its first audio track, if it has one, is muxed in. Frames of
    odd width or height are padded by one black row or column (yuv420p needs even sizes).
    With `look` (video_look.probe of the source), the video gets the source's sample aspect
    ratio, colour tags and, for a variable-frame-rate source, its frame timestamps.
    """

    def __init__(self, path: str, fps: float, size: tuple[int, int], name: str = "",
                 audio_from: str | None = None, look: video_look.Look | None = None):
        """name: what messages call the file (default `path`)."""
        self.name = name or path
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise UserError(f"{path}: output folder {directory} does not exist")
        ext = os.path.splitext(path)[1].lower()
        if ext not in _ENCODERS:
            raise UserError(f"{self.name}: cannot write {ext or 'extension-less'} videos; use "
                            f"one of {', '.join(_ENCODERS)}")
        self.path, self.size, self.count = path, size, 0
        self.tmp = os.path.join(directory, f".tmp-{os.getpid()}-{os.path.basename(path)}")
        self._proc = self._cv = self._script = None
        exe = ffmpeg()
        if exe is None:
            warn(f"{self.name}: no FFmpeg (imageio-ffmpeg missing): writing MPEG-4 Part 2 "
                 "without audio, which browsers do not play")
            self._cv = cv2.VideoWriter(self.tmp, cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
            if not self._cv.isOpened():
                raise UserError(f"{self.name}: cannot open a video writer")
            return
        # Built here, not by imageio_ffmpeg.write_frames, which takes these options but (0.8.1)
        # leaves FFmpeg's stderr on the terminal, so its reason (a full disk or another) cannot
        # become our one line; never checks FFmpeg's exit status; and maps the audio track as
        # required ("1:a:0", not "1:a:0?"), so a source without sound fails.
        w, h = size
        cmd = [exe, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo",
               "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", repr(float(fps)), "-i", "pipe:0"]
        if audio_from:
            cmd += ["-i", audio_from, "-map", "0:v:0", "-map", "1:a:0?"]
            cmd += _AUDIO.get(ext, ["-c:a", "aac", "-b:a", "192k"])
        chain = video_look.filters(look) if look else []
        if w % 2 or h % 2:
            chain.insert(0, "pad=ceil(iw/2)*2:ceil(ih/2)*2")
        if chain:
            cmd += self._filter_option(",".join(chain), directory)
        cmd += _ENCODERS[ext] + (video_look.output_options(look, ext) if look else [])
        if ext in (".mp4", ".m4v", ".mov"):
            cmd += ["-movflags", "+faststart"]  # playable while it downloads
        self._log = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(cmd + [self.tmp], stdin=subprocess.PIPE,
                                      stdout=subprocess.DEVNULL, stderr=self._log)

    def _filter_option(self, chain: str, directory: str) -> list[str]:
        """-vf CHAIN, or (a VFR source's timestamps make it long) -/vf FILE, since one
        command-line argument is limited to 128 KiB on Linux."""
        if len(chain) < 8000:
            return ["-vf", chain]
        fd, self._script = tempfile.mkstemp(prefix=".tmp-filters-", dir=directory)
        with os.fdopen(fd, "w") as f:
            f.write(chain)
        return ["-/vf", self._script]

    def write(self, rgb: np.ndarray) -> None:
        if (rgb.shape[1], rgb.shape[0]) != self.size:
            raise ValueError(f"frame of {rgb.shape[1]}x{rgb.shape[0]} for a {self.size} video")
        if self._cv is not None:
            self._cv.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        else:
            try:
                self._proc.stdin.write(np.ascontiguousarray(rgb, np.uint8).tobytes())
            except (BrokenPipeError, OSError):  # FFmpeg stopped: its own message says why
                raise self._failure()
        self.count += 1

    def _ffmpeg_message(self) -> str:
        self._proc.wait()
        self._log.seek(0)
        lines = [x.strip() for x in self._log.read().decode(errors="replace").splitlines()]
        return next((x for x in reversed(lines) if x), f"exit status {self._proc.returncode}")

    def _failure(self) -> Exception:
        message = self._ffmpeg_message()
        self.abort()
        if _NO_SPACE.search(message):
            return OutOfSpace(f"{self.name}: the video could not be written whole ({message}); "
                              "nothing was replaced: make room and rerun")
        return RunError(f"{self.name}: FFmpeg failed: {message}")

    def close(self) -> None:
        """Finishes the file and puts it at `path`, after reading it back (a writer that runs
        out of room does not always say so), so a file that does not open with every frame is
        removed and reported instead.

        Raises:
          OutOfSpace: the file could not be written whole; nothing is at `path`'s place but
            what was there before.
        """
        if self._cv is not None:
            self._cv.release()
        else:
            try:
                self._proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            if self._proc.wait() != 0:
                raise self._failure()
            self._log.close()
        cap = cv2.VideoCapture(self.tmp)
        frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else -1
        cap.release()
        if frames < self.count:
            self.abort()
            raise OutOfSpace(f"{self.name}: the video could not be written whole ({max(frames, 0)} "
                             f"of {self.count} frames readable; is the disk full?); nothing "
                             "was replaced: make room and rerun")
        os.replace(self.tmp, self.path)
        if self._script:
            os.unlink(self._script)

    def abort(self) -> None:
        if self._cv is not None:
            self._cv.release()
        elif self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        for leftover in (self.tmp, self._script):
            if leftover and os.path.exists(leftover):
                os.unlink(leftover)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()

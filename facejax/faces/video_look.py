"""How a video looks, beyond its pixels: sample aspect ratio, colour tags, rotation and frame
timestamps, read with the FFmpeg binary (no ffprobe is bundled), and the FFmpeg options that give
a written video the same look (facejax/faces/video_writer.py).

Frames are read upright (OpenCV applies the rotation tag), so outputs are written upright with
no rotation tag: the source's rotation is kept as pixels, not as a tag, and its sample aspect
ratio turns with it (90 or 270 degrees swap its terms).
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
from fractions import Fraction

_STREAM = re.compile(r"Stream #\d+:\d+\S*: Video: (.*)")
_SAR = re.compile(r"\[SAR (\d+):(\d+) DAR")
# "yuv420p(tv, bt709, progressive)" or "yuv420p(pc, bt709/bt470bg/smpte170m)": FFmpeg prints
# range, then one colour name when matrix, primaries and transfer agree, else all three.
_PAREN = re.compile(r"^\w+\(([^)]*)\)")
_ROTATION = re.compile(r"rotation of (-?[\d.]+) degrees")
_TB = re.compile(r"^#tb 0: (\d+)/(\d+)", re.M)
# Matrices swscale converts with; other tags are copied but the pixels use swscale's default.
_MATRICES = {"bt709": "bt709", "fcc": "fcc", "bt470bg": "bt601", "smpte170m": "bt601",
             "smpte240m": "smpte240m", "bt2020nc": "bt2020", "bt2020c": "bt2020"}


@dataclasses.dataclass
class Look:
    """What FFmpeg says of a video's first video stream; None where the file does not say."""
    sar: tuple[int, int] | None = None         # stored pixel width : height
    range: str | None = None                   # "tv" (limited) or "pc" (full)
    matrix: str | None = None                  # e.g. "bt709"
    primaries: str | None = None
    transfer: str | None = None
    rotation: float = 0.0                      # degrees, as FFmpeg's display matrix says
    time_base: tuple[int, int] | None = None   # of the timestamps below
    timestamps: list[int] | None = None        # per frame, presentation order; None: CFR

    def upright_sar(self) -> tuple[int, int] | None:
        """The sample aspect ratio of the upright frames OpenCV delivers."""
        if self.sar is None or self.sar[0] == self.sar[1]:
            return None
        turned = round(self.rotation) % 180 == 90
        return (self.sar[1], self.sar[0]) if turned else self.sar


def parse_stream(text: str) -> Look:
    """A Look from `ffmpeg -i`'s report (its stderr): tags of the first video stream."""
    look = Look()
    match = _STREAM.search(text)
    if match is None:
        return look
    line = match.group(1)
    sar = _SAR.search(line)
    if sar and int(sar.group(1)) and int(sar.group(2)):
        look.sar = (int(sar.group(1)), int(sar.group(2)))
    # Skip "h264 (High) (avc1 / 0x31637661), " to reach the pixel format and its parentheses.
    fields = line.split(", ")
    pix = next((f for f in fields[1:] if _PAREN.match(f)), None)
    if pix is None:  # the parenthesis holds commas: rejoin from the pixel format on
        pix = ", ".join(fields[1:])
    paren = _PAREN.match(pix)
    for item in (x.strip() for x in (paren.group(1).split(",") if paren else [])):
        if item in ("tv", "pc"):
            look.range = item
        elif item.count("/") == 2:
            look.matrix, look.primaries, look.transfer = (
                None if x in ("unknown", "reserved") else x for x in item.split("/"))
        elif item and item not in ("progressive", "top first", "bottom first", "unknown") \
                and not item.startswith(("top coded", "bottom coded")) and "/" not in item:
            look.matrix = look.primaries = look.transfer = item
    rotation = _ROTATION.search(text[match.start():])
    if rotation:
        look.rotation = float(rotation.group(1))
    return look


def parse_timestamps(text: str) -> tuple[tuple[int, int] | None, list[int]]:
    """(time base, sorted presentation timestamps) from a `-f framemd5` listing of packets."""
    tb = _TB.search(text)
    pts = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            parts = [p.strip() for p in line.split(",")]
            if len(parts) >= 4 and parts[0] == "0" and parts[2].lstrip("-").isdigit():
                pts.append(int(parts[2]))
    return ((int(tb.group(1)), int(tb.group(2))) if tb else None), sorted(pts)


def probe(path: str, exe: str | None) -> Look:
    """The look of video `path`, read with FFmpeg `exe`; an empty Look when it cannot be read.

    Timestamps are kept only for a variable-frame-rate video (frame durations not all equal):
    a constant rate is written as a rate."""
    if exe is None:
        return Look()
    report = subprocess.run([exe, "-hide_banner", "-i", path], capture_output=True, text=True,
                            errors="replace").stderr
    look = parse_stream(report)
    # Packets copied, not decoded: their timestamps at the cost of reading the file once.
    listing = subprocess.run([exe, "-hide_banner", "-loglevel", "error", "-i", path,
                              "-map", "0:v:0", "-c", "copy", "-f", "framemd5", "-"],
                             capture_output=True, text=True, errors="replace").stdout
    time_base, pts = parse_timestamps(listing)
    if len(pts) > 2 and len({b - a for a, b in zip(pts, pts[1:])}) > 1:
        look.time_base, look.timestamps = time_base, pts
    return look


def _pts_expression(pts: list[int], lo: int, hi: int) -> str:
    """setpts's value for frame numbers N in [lo, hi): a balanced tree of comparisons, so
    FFmpeg evaluates log2(frames) of them per frame. Frames past the list keep its last step."""
    if hi - lo == 1:
        if hi < len(pts):
            return str(pts[lo])
        step = pts[-1] - pts[-2]
        return f"({pts[-1]}+(N-{lo})*{step})"
    mid = (lo + hi) // 2
    return f"if(lt(N,{mid}),{_pts_expression(pts, lo, mid)},{_pts_expression(pts, mid, hi)})"


def filters(look: Look) -> list[str]:
    """FFmpeg video filters giving RGB frames the look: the source's timestamps (settb, setpts),
    its matrix and range in the conversion to YUV (the inverse of what decoding them applied),
    its colour tags and sample aspect ratio."""
    chain = []
    if look.timestamps and look.time_base:
        num, den = look.time_base
        start = look.timestamps[0]
        chain += [f"settb={num}/{den}",
                  # Quoted: the expression's commas would otherwise end the filter.
                  "setpts='" + _pts_expression([p - start for p in look.timestamps], 0,
                                               len(look.timestamps)) + f"+{start}'"]
    scale = []
    if look.matrix in _MATRICES:
        scale.append(f"out_color_matrix={_MATRICES[look.matrix]}")
    if look.range:
        scale.append(f"out_range={'full' if look.range == 'pc' else 'limited'}")
    if scale:
        chain.append("scale=" + ":".join(scale))
    params = [f"{key}={value}" for key, value in (
        ("color_primaries", look.primaries), ("color_trc", look.transfer),
        ("colorspace", look.matrix), ("range", look.range)) if value]
    if params:
        chain.append("setparams=" + ":".join(params))
    sar = look.upright_sar()
    if sar:
        chain.append(f"setsar={sar[0]}/{sar[1]}")
    return chain


def output_options(look: Look, ext: str) -> list[str]:
    """Output options that keep a VFR source's timestamps exact: no frames dropped or
    duplicated to a constant rate, and (MP4/MOV) the source's time base as the track's."""
    if not (look.timestamps and look.time_base):
        return []
    options = ["-fps_mode", "passthrough", "-enc_time_base:v", "%d/%d" % look.time_base]
    if ext in (".mp4", ".m4v", ".mov") and look.time_base[0] == 1:
        options += ["-video_track_timescale", str(look.time_base[1])]
    return options


def seconds(look: Look) -> list[float] | None:
    """The VFR timestamps in seconds (None for a constant rate)."""
    if not (look.timestamps and look.time_base):
        return None
    tb = Fraction(*look.time_base)
    return [float(p * tb) for p in look.timestamps]

"""Measures conversion with XSeg masks on a clip with a known occluder (issue 33): a disc
textured from a frame of another clip is pasted over the mouth of the clip's first frames
(facejax/faces/occluders.over_mouth), the occluded clip is written (H.264, as a user's clip
is), converted with --mask=xseg and --mask=hull (the other options conversion's defaults, or
--blur/--erode), and the PSNR of the output against the occluded input inside the disc is
printed for both, one JSON line. With xseg the occluder should stay in front of the swapped
face. Beside them, `psnr_in_occluder_reencoded`: the occluded clip written again, unchanged,
by the same video writer, the most any mask can reach once the output is encoded.

    python tools/xseg_convert_psnr.py --model=runs/ae --xseg_model=runs/xseg_generic \
        --clip=$GRID/GRID_brbk7n.mpg --donor=$LP/driving_d0.mp4 --out=/tmp/xseg_psnr
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Workdir of a trained swap run.")
flags.DEFINE_string("xseg_model", None, "Workdir of a trained XSeg run.")
flags.DEFINE_string("clip", None, "The clip (one face in every frame).")
flags.DEFINE_string("donor", None, "A video or image whose first frame textures the occluder.")
flags.DEFINE_string("out", None, "Folder for the occluded clip and the two conversions.")
flags.DEFINE_integer("frames", 30, "Frames occluded and converted (the clip's first).")
flags.DEFINE_string("direction", "b2a", "Swap direction.")
flags.DEFINE_integer("blur", None, "Conversion's --blur (default: conversion's).")
flags.DEFINE_integer("erode", None, "Conversion's --erode (default: conversion's).")
flags.mark_flags_as_required(["model", "xseg_model", "clip", "donor", "out"])


def occluded_clip(path: str) -> list[np.ndarray]:
    """Writes the clip's first FLAGS.frames frames with the mouth occluded to `path`; returns
    the discs (bool [H, W] each)."""
    from facejax import convert
    from facejax.faces import occluders, video, video_writer
    source = video.FrameSource(FLAGS.clip)
    pairs = [(i, f) for i, f in source.frames()][:FLAGS.frames]
    donor = next(iter(video.FrameSource(FLAGS.donor).frames()))[1]
    finder = convert.make_finder(convert.ConvertOptions())
    discs = []
    h, w = pairs[0][1].shape[:2]
    with video_writer.VideoWriter(path, source.info.fps, (w, h)) as writer:
        for _, frame, points in convert.found_faces(iter(pairs), finder, source.info.fps):
            if points is None:
                raise SystemExit(f"{FLAGS.clip}: no face found in a frame")
            occluded, disc = occluders.over_mouth(frame, points, donor)
            writer.write(occluded)
            discs.append(disc)
    return discs


def psnr_inside(outs, frames, regions) -> float:
    """PSNR (dB, 8 bit) of `outs` against `frames` over the pixels of `regions`, all frames."""
    from facejax import metrics
    return metrics.psnr(np.concatenate([o[r] for o, r in zip(outs, regions)]),
                        np.concatenate([f[r] for f, r in zip(frames, regions)]), 255.0)


def reencoded(frames: list[np.ndarray], fps: float, path: str) -> list[np.ndarray]:
    """`frames` written unchanged to `path` by conversion's writer, read back."""
    from facejax.faces import video, video_writer
    h, w = frames[0].shape[:2]
    with video_writer.VideoWriter(path, fps, (w, h)) as writer:
        for frame in frames:
            writer.write(frame)
    return [f for _, f in video.FrameSource(path).frames()]


def paste_options() -> dict:
    """The conversion options given as flags (the others stay conversion's defaults)."""
    return {name: value for name, value in (("blur", FLAGS.blur), ("erode", FLAGS.erode))
            if value is not None}


def main(argv):
    del argv
    from facejax import inference
    inference.configure_xla(FLAGS.model)
    from facejax import convert
    from facejax.faces import compose, video
    os.makedirs(FLAGS.out, exist_ok=True)
    clip = os.path.join(FLAGS.out, "occluded.mp4")
    discs = occluded_clip(clip)
    source = video.FrameSource(clip)
    frames = [f for _, f in source.frames()]
    result = {"frames": len(frames), "disc_share": round(float(np.mean(discs)), 4)}
    for mask in ("xseg", "hull"):
        opts = convert.ConvertOptions(mask=mask, direction=FLAGS.direction,
                                      xseg_model=FLAGS.xseg_model, **paste_options())
        model = inference.load_swap_model(FLAGS.model, opts.direction, opts.batch,
                                          with_mask=opts.mask in compose.LEARNED)
        out = os.path.join(FLAGS.out, f"{mask}.mp4")
        convert.convert(model, clip, out, opts, verbose=False)
        outs = [f for _, f in video.FrameSource(out).frames()]
        result[f"psnr_in_occluder_{mask}"] = round(psnr_inside(outs, frames, discs), 2)
    again = reencoded(frames, source.info.fps, os.path.join(FLAGS.out, "reencoded.mp4"))
    result["psnr_in_occluder_reencoded"] = round(psnr_inside(again, frames, discs), 2)
    result.update(paste_options())
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)

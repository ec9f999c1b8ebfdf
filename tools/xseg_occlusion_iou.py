"""Measures a trained XSeg run on real faces with known occlusion (issue 33): every face of the
given extraction folders (clips the run never saw) gets a hand, bar or disc pasted from frames
of other clips (facejax/faces/occluders.py), so the visible face is known exactly; prints the
mean IoU of the run's mask with it, and of the landmark hull's, as one JSON line.

    python tools/xseg_occlusion_iou.py --model=runs/xseg_generic \
        --faces=runs/faces_x,runs/faces_y \
        --donors=$LP/driving_d6.mp4,$LP/driving_d9.mp4  # LP=../shared/data/videos/liveportrait

Faces are loaded at the model's side (both splits of each folder); donors give 4 frames each.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Workdir of a trained XSeg run.")
flags.DEFINE_list("faces", None, "Extraction folders of clips the run never saw.")
flags.DEFINE_list("donors", None, "Videos (or images) whose frames texture the occluders.")
flags.DEFINE_integer("seed", 0, "Seed of the occluders.")
flags.mark_flags_as_required(["model", "faces", "donors"])


def donor_frames(paths: list[str], per_clip: int = 4) -> list[np.ndarray]:
    """`per_clip` frames spread over each donor clip."""
    from facejax.faces import video
    out = []
    for path in paths:
        source = video.FrameSource(path)
        n = max(len(source), 1)
        out += [source.read(int(i)) for i in np.linspace(0, n - 1, per_clip).astype(int)]
    return out


def faces_of(folders: list[str], size: int) -> tuple[np.ndarray, np.ndarray]:
    """(crops, hull masks) of every face of both splits of the folders, at `size`."""
    from facejax.data import pipeline
    images, hulls = [], []
    for split in ("train", "validation"):
        source = pipeline.FaceSource(folders, split, size)
        batch = source.take(np.arange(len(source)), ("image", "mask"))
        images.append(batch["image"])
        hulls.append(batch["mask"])
    return np.concatenate(images), np.concatenate(hulls)


def main(argv):
    del argv
    from facejax import inference, runs
    from facejax.faces import occluders
    size = int(runs.load_config(FLAGS.model).model.size)
    images, hulls = faces_of(FLAGS.faces, size)
    cases = occluders.occluded_set(images, hulls, donor_frames(FLAGS.donors), FLAGS.seed)
    segment = inference.load_segmenter(FLAGS.model, 16)
    predicted = segment(np.stack([c.image for c in cases]))
    model_iou = [occluders.iou(p >= 128, c.visible) for p, c in zip(predicted, cases)]
    hull_iou = [occluders.iou(h >= 128, c.visible) for h, c in zip(hulls, cases)]
    by_kind = {}
    for i, kind in enumerate(occluders.KINDS):
        by_kind[kind] = round(float(np.mean(model_iou[i::len(occluders.KINDS)])), 4)
    print(json.dumps({"faces": len(cases), "xseg_iou": round(float(np.mean(model_iou)), 4),
                      "hull_iou": round(float(np.mean(hull_iou)), 4),
                      "xseg_iou_by_occluder": by_kind,
                      "occluded_share": round(float(np.mean(
                          [1 - c.visible.sum() / max((h >= 128).sum(), 1)
                           for c, h in zip(cases, hulls)])), 4)}))


if __name__ == "__main__":
    app.run(main)

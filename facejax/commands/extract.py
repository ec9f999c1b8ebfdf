r"""Extracts aligned faces from videos, images or folders into an extraction directory.

    facejax extract --input=../shared/data/videos/liveportrait/driving_d6.mp4 \
        --output=runs/faces_a --identity=a --size=128

Exit status: 0 when at least one face was extracted (skips and failed inputs are counted in
DIR/summary.json), 1 when nothing at all could be extracted, 2 on a usage error.
"""

import json
import sys

from absl import flags

from facejax.data import extract as extract_lib

FLAGS = flags.FLAGS
flags.DEFINE_list("input", None, "Videos, images or folders of images (comma-separated).")
flags.DEFINE_string("output", None, "Extraction directory.")
flags.DEFINE_string("identity", "", "Name of the person extracted (stored in every record).")
flags.DEFINE_integer("size", 256, "Side of the aligned square crops, in pixels.",
                     lower_bound=16, upper_bound=4096)
flags.DEFINE_float("coverage", 0.75, "Jaw width of the mean face as a fraction of the crop side.",
                   lower_bound=0.1, upper_bound=2.0)
flags.DEFINE_integer("every_n", 1, "Keep every n-th frame of videos.",
                     lower_bound=1)
flags.DEFINE_string("detector", "hog", "hog, mmod, or an OpenCV DNN model file (.pb or .onnx).")
flags.DEFINE_integer("detect_max_side", 640, "Detect on frames scaled to at most this side.",
                     lower_bound=32)
flags.DEFINE_integer("max_upsample", 1, "HOG: upsampling level; faces from 80 / 2**N px (of "
                     "the frame scaled to --detect_max_side) are found.",
                     lower_bound=0, upper_bound=4)
flags.DEFINE_float("min_face", 40, "Smallest face kept (box side in source pixels).",
                   lower_bound=0.0)
flags.DEFINE_float("smooth", 1.0, "Landmark smoothing over video frames: the One Euro filter's "
                   "minimum cutoff in Hz (lower: steadier; fast motion is followed; 0: off).",
                   lower_bound=0.0)
flags.DEFINE_enum("select", "largest", ["largest", "central"], "The face kept when a frame "
                  "has several and no --reference is given: the largest, or the most central.")
flags.DEFINE_list("reference", [], "Images or folders of the target person: keep only that face.")
flags.DEFINE_integer("chunk_frames", 1000, "Video frames written at once: a kill loses at most "
                     "one chunk per worker, and workers share a long video by chunks.",
                     lower_bound=1)
flags.DEFINE_integer("workers", 1, "Processes extracting in parallel (over inputs and chunks).",
                     lower_bound=1, upper_bound=256)
flags.DEFINE_integer("num_shards", 1, "Split the inputs over this many machines or jobs ...",
                     lower_bound=1)
flags.DEFINE_integer("shard_index", 0, "... and process this part (0-based).",
                     lower_bound=0)
flags.mark_flags_as_required(["input", "output"])


def main(argv):
    del argv
    opts = extract_lib.ExtractOptions(
        size=FLAGS.size, coverage=FLAGS.coverage, identity=FLAGS.identity,
        every_n=FLAGS.every_n, detector=FLAGS.detector, detect_max_side=FLAGS.detect_max_side,
        max_upsample=FLAGS.max_upsample, min_face=FLAGS.min_face, smooth=FLAGS.smooth,
        select=FLAGS.select,
        reference=tuple(FLAGS.reference), workers=FLAGS.workers,
        chunk_frames=FLAGS.chunk_frames)
    summary = extract_lib.extract(FLAGS.input, FLAGS.output, opts, FLAGS.num_shards,
                                  FLAGS.shard_index)
    for f in summary["failed"]:
        print(f"skipped input: {f['error']}", file=sys.stderr)
    print(json.dumps({k: summary[k] for k in ("inputs", "frames_read", "faces_kept", "skipped",
                                             "frames_per_second")}))
    if summary["faces_kept"] == 0:
        print(f"error: no face extracted into {FLAGS.output}", file=sys.stderr)
        sys.exit(1)


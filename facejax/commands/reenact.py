"""Drives a trained face2face (pix2pix) model of person A with another video's landmarks.

    facejax reenact --model=runs/f2f --driver=driver.mp4 --output=runs/reenacted.mp4

Writes a side-by-side video (driver crop | retargeted landmark drawing | generated A) with the
driver's frame count and fps, and OUTPUT's name with .summary.json.
"""

import json

from absl import flags, logging


FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Workdir of a face2face_pix2pix run.")
flags.DEFINE_string("driver", None, "Video (or image folder) whose motion drives A.")
flags.DEFINE_string("output", None, "Output video path.")
flags.DEFINE_integer("batch", 8, "Frames generated per compiled call.",
                     lower_bound=1, upper_bound=4096)
flags.DEFINE_float("smooth", 1.0, "Smoothing of the driver's landmarks over frames: the One "
                   "Euro filter's minimum cutoff in Hz (lower: steadier; 0: off).",
                   lower_bound=0.0)
flags.DEFINE_string("detector", "hog", "Face detector (see facejax extract).")
flags.mark_flags_as_required(["model", "driver", "output"])


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    from facejax import reenact
    print(json.dumps(reenact.reenact(FLAGS.model, FLAGS.driver, FLAGS.output, FLAGS.batch,
                                     FLAGS.smooth, FLAGS.detector)))


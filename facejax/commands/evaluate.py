r"""Measures a trained model's swap quality and writes a report.

    facejax evaluate --model=runs/demo/train --a=clip_of_a.mp4 --b=clip_of_b.mp4 \
        --output=runs/demo/eval [--distractors=DIR,DIR]

Writes OUTPUT/metrics.json, OUTPUT/report.html and its PNG figures (see facejax/evaluate.py for
what each figure means). Works with every family that has a swap direction.
"""

import json
import os

from absl import flags, logging


FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Workdir of a trained run.")
flags.DEFINE_string("a", None, "Video, image or folder of identity A (held-out frames).")
flags.DEFINE_string("b", None, "Video, image or folder of identity B (held-out frames).")
flags.DEFINE_list("distractors", [], "Videos or folders of other identities, one each.")
flags.DEFINE_string("output", None, "Output folder (replaced when complete).")
flags.DEFINE_integer("max_frames", 150, "Frames used per clip.",
                     lower_bound=1)
flags.DEFINE_float("tail", 0.0, "Use only the last fraction of each clip; --held_out sets it "
                   "to the share the run held out for validation.",
                   lower_bound=0.0, upper_bound=0.99)
flags.DEFINE_bool("held_out", False, "Use only the frames a training run on the same clips "
                  "held out (the last part of each clip).")
flags.DEFINE_integer("every", 1, "Use every n-th frame.",
                     lower_bound=1)
flags.DEFINE_integer("batch", 8, "Faces per model call.",
                     lower_bound=1, upper_bound=4096)
flags.DEFINE_integer("samples", 6, "Rows of the sample grid per direction.",
                     lower_bound=1, upper_bound=100)
flags.DEFINE_integer("blur", 8, "Feathering radius when pasting the swap, in frame pixels.",
                     lower_bound=0, upper_bound=512)
flags.DEFINE_enum("color", "rct", ["none", "rct", "hist"], "Colour matching when pasting.")
flags.DEFINE_string("detector", "hog", "Face detector (see facejax extract).")
flags.DEFINE_float("smooth", 1.0, "Landmark smoothing when pasting, as facejax convert --smooth "
                   "(One Euro minimum cutoff in Hz; 0: off).", lower_bound=0.0)
flags.DEFINE_integer("step", None, "The checkpoint to use (default: the latest); an earlier "
                     "one when the latest is damaged.", lower_bound=0)
flags.mark_flags_as_required(["model", "a", "b", "output"])


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    from facejax import inference
    inference.configure_xla(FLAGS.model)  # the run's XLA:CPU settings, before JAX starts
    from facejax import evaluate, report, run_info
    tail = (run_info.held_out_fraction(run_info.read(FLAGS.model), FLAGS.model)
            if FLAGS.held_out else FLAGS.tail)
    opts = evaluate.EvalOptions(tail=tail, max_frames=FLAGS.max_frames, every=FLAGS.every,
                                batch=FLAGS.batch, detector=FLAGS.detector,
                                samples=FLAGS.samples, blur=FLAGS.blur, color=FLAGS.color,
                                smooth=FLAGS.smooth, step=FLAGS.step)
    metrics = evaluate.evaluate(FLAGS.model, FLAGS.a, FLAGS.b, FLAGS.output,
                                FLAGS.distractors, opts)
    print(json.dumps(report.summary(metrics), indent=1))
    print(f"report: {os.path.join(FLAGS.output, 'report.html')}")


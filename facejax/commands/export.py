"""Exports a trained swap model as ONNX, or as a DFM that DeepFaceLive and facefusion load.

    facejax export --model=runs/saehd --format=dfm --output=runs/saehd.dfm
    facejax export --model=runs/ae --format=onnx --output=runs/ae.onnx

Writes OUTPUT and OUTPUT.json (crop size, framing: face type or coverage, input and output
names); the formats' contracts are in facejax/export.py.
"""

import json

from absl import flags, logging

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Workdir of a trained run that swaps faces.")
flags.DEFINE_enum("format", "onnx", ["onnx", "dfm"], "onnx (RGB, facejax's names) or dfm "
                  "(DeepFaceLive's contract, BGR).")
flags.DEFINE_string("output", None, "The file to write.")
flags.DEFINE_enum("direction", "b2a", ["b2a", "a2b"], "b2a: faces become A (the celebrity).")
flags.DEFINE_integer("step", None, "The checkpoint to use (default: the latest); an earlier "
                     "one when the latest is damaged.", lower_bound=0)
flags.mark_flags_as_required(["model", "output"])


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    from facejax import export
    print(json.dumps(export.export(FLAGS.model, FLAGS.output, FLAGS.format, FLAGS.direction,
                                    FLAGS.step)))

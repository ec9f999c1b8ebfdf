"""Applies a trained XSeg run to extracted faces: each face's visible-face mask into the folder.

    facejax xseg apply --model=runs/xseg --faces=runs/faces_a

Writes DIR/inputs/<key>/xseg/NNNNNN.png beside each crop (255 face, 0 occluder or background);
masks already there are kept (rerun to resume); prints the counts as one JSON line.
"""

import json

from absl import flags, logging

from facejax.errors import UserError

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Workdir of a trained XSeg run (facejax train --config=xseg).")
flags.DEFINE_string("faces", None, "The extraction folder whose faces get masks.")
flags.DEFINE_integer("batch", 8, "Faces per model call.", lower_bound=1)
flags.DEFINE_integer("step", None, "The checkpoint to use (default: the latest).", lower_bound=0)
flags.mark_flags_as_required(["model", "faces"])


def main(argv):
    actions = argv[1:]
    if actions != ["apply"]:
        raise UserError(f"facejax xseg: expected the action apply, got "
                        f"{' '.join(actions) or 'none'} (facejax xseg apply --model=RUN "
                        "--faces=DIR)")
    logging.set_verbosity(logging.WARNING)
    from facejax import inference, segment
    inference.configure_xla(FLAGS.model)
    counts = segment.apply(FLAGS.model, FLAGS.faces, FLAGS.batch, FLAGS.step)
    print(json.dumps(counts.as_dict()))
    return 1 if counts.failed else 0

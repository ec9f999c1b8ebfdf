"""Swaps faces in a video, an image or a folder of images with a trained model.

    facejax convert --model=runs/demo/train --input=clip_of_b.mp4 --output=swapped.mp4

--direction b2a (default) turns B's faces into A's (autoencoder: encoder -> decoder_a;
CycleGAN: G_ba); a2b the reverse. Writes OUTPUT (video: same fps, size, frame count) and a
summary JSON beside it. --settings=FILE takes the conversion options from a file that the
studio's merge page saves (facejax.convert.save_settings); a flag given on the command line
overrides the file.
"""

import dataclasses
import json

from absl import flags, logging

from facejax.errors import UserError
from facejax.faces import compose  # numpy and OpenCV: JAX starts only after configure_xla


FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Workdir of a trained run (its config and last checkpoint).")
flags.DEFINE_string("input", None, "Video, image or folder of images.")
flags.DEFINE_string("output", None, "Output video, image, or folder.")
flags.DEFINE_enum("direction", "b2a", ["b2a", "a2b"], "Swap direction.")
# The paste options' defaults are compose.PasteOptions' (the studio's and the library's too);
# the other options' defaults equal convert.ConvertOptions' (tests/test_cli.py checks them).
PASTE_DEFAULTS = compose.PasteOptions()
flags.DEFINE_enum("mask", PASTE_DEFAULTS.mask, list(compose.MASKS),
                  "Blend mask: landmark hull, whole crop, the model's learned mask (SAEHD), "
                  "the learned mask inside the hull, the --xseg_model run's mask of the "
                  "frame's face (an occluder in front of it stays in front), or that times the "
                  "learned mask (SAEHD).")
flags.DEFINE_string("xseg_model", "", "Workdir of a trained segmentation run (facejax train "
                    "--config=xseg; its latest checkpoint) for --mask=xseg and xseg_x_learned.")
flags.DEFINE_integer("erode", PASTE_DEFAULTS.erode,
                     "Shrink (>0) or grow (<0) the mask, in frame pixels.",
                     lower_bound=-512, upper_bound=512)
flags.DEFINE_integer("blur", PASTE_DEFAULTS.blur,
                     "Feathering radius of the mask edge, in frame pixels.",
                     lower_bound=0, upper_bound=512)
flags.DEFINE_enum("color", PASTE_DEFAULTS.color, list(compose.COLOR), "Colour matching.")
flags.DEFINE_enum("blend", PASTE_DEFAULTS.blend, list(compose.BLENDS), "Blending.")
flags.DEFINE_float("smooth", 1.0, "Landmark smoothing over video frames: the One Euro filter's "
                   "minimum cutoff in Hz (lower: steadier; fast motion is followed; 0: off).",
                   lower_bound=0.0)
flags.DEFINE_enum("select", "largest", ["largest", "central"], "The face swapped when a frame "
                  "has several: the largest, or the most central.")
flags.DEFINE_integer("batch", 8, "Faces per model call.",
                     lower_bound=1, upper_bound=4096)
flags.DEFINE_bool("preview", False, "Write original | swapped side by side.")
flags.DEFINE_string("detector", "hog", "Face detector (see facejax extract).")
flags.DEFINE_integer("confirm_every", 2, "Re-detect a tracked face every n frames.",
                     lower_bound=1)
flags.DEFINE_integer("step", None, "The checkpoint to use (default: the latest); an earlier "
                     "one when the latest is damaged.", lower_bound=0)
flags.DEFINE_string("settings", None, "A JSON file of conversion options (keys: the flags "
                    "direction, mask, erode, blur, color, blend, smooth, select, batch, preview, "
                    "detector, confirm_every, xseg_model), as the studio's merge page saves "
                    "it. Its values replace the defaults; a flag given on the command line "
                    "overrides the file's value.")
flags.mark_flags_as_required(["model", "input", "output"])


def option_values(convert) -> dict:
    """The ConvertOptions fields of the conversion module `convert` (imported by the caller,
    after the run's XLA settings): the flags', replaced by --settings' values where the file
    sets them, except for the flags given on the command line."""
    names = [f.name for f in dataclasses.fields(convert.ConvertOptions)]
    values = {name: FLAGS[name].value for name in names}
    if FLAGS.settings:
        for name, value in convert.read_settings(FLAGS.settings).items():
            if not FLAGS[name].present:
                values[name] = value
    return values


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    from facejax import inference
    inference.configure_xla(FLAGS.model)  # the run's XLA:CPU settings, before JAX starts
    from facejax import convert
    opts = convert.ConvertOptions(**option_values(convert))
    opts.check()
    if FLAGS["xseg_model"].present and opts.mask not in compose.XSEG:
        raise UserError(f"--xseg_model={FLAGS.xseg_model}: used only with --mask="
                        f"{' or '.join(compose.XSEG)}, and --mask is {opts.mask}")
    from facejax import xseg_convert
    from facejax.faces import video
    video.FrameSource(FLAGS.input)  # bad input fails before the models load
    segment = xseg_convert.load(opts.mask, opts.xseg_model, opts.batch)
    model = inference.load_swap_model(FLAGS.model, opts.direction, opts.batch,
                                      with_mask=opts.mask in compose.LEARNED, step=FLAGS.step)
    summary = convert.convert(model, FLAGS.input, FLAGS.output, opts, segment=segment)
    summary.pop("track")
    print(json.dumps(summary))


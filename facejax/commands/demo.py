"""The README's main job: sample clips -> extracted faces -> a trained deepfakes autoencoder.

    facejax demo --workdir=runs/demo            # about 10 minutes on 2 CPU cores
    facejax demo --workdir=runs/demo --variant=default   # a real run (100k steps)

Leaves in WORKDIR: faces_a/ and faces_b/ (extraction directories), and train/ (checkpoints,
TensorBoard logs under train/tensorboard, preview PNGs under train/previews). Rerunning resumes.
"""

import os

from absl import flags, logging


FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/demo", "Folder for faces, checkpoints, logs and previews.")
flags.DEFINE_string("samples", None, "Folder holding the sample clips (see facejax samples).")
flags.DEFINE_string("variant", "quick", "Variant of the deepfakes_original experiment.")
flags.DEFINE_integer("steps", 0, "Override the number of training steps (0: the variant's).",
                     lower_bound=0)
flags.DEFINE_integer("size", 128, "Crop size of the extracted faces.",
                     lower_bound=16, upper_bound=4096)
flags.DEFINE_integer("every_n", 2, "Keep every n-th video frame.",
                     lower_bound=1)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    from facejax import samples
    from facejax.experiments import deepfakes_original
    from facejax import train
    from facejax.data import extract

    clips = samples.obtain(FLAGS.samples, os.path.join(FLAGS.workdir, "samples"))
    dirs = {}
    for name, clip in sorted(clips.items()):
        dirs[name] = os.path.join(FLAGS.workdir, f"faces_{name}")
        s = extract.extract([clip], dirs[name], extract.ExtractOptions(
            size=FLAGS.size, identity=name, every_n=FLAGS.every_n))
        print(f"faces {name}: {s['faces_kept']} from {clip}", flush=True)
    config = deepfakes_original.get_config(FLAGS.variant)
    config.data.a, config.data.b = dirs["a"], dirs["b"]
    if FLAGS.steps:
        config.num_steps = FLAGS.steps
        config.log_every = config.eval_every = config.preview_every = min(
            config.log_every, FLAGS.steps)
    metrics = train.train(config, os.path.join(FLAGS.workdir, "train"))
    print("final " + " ".join(f"{k} {v:.5g}" for k, v in sorted(metrics.items())))
    print(f"previews: {os.path.join(FLAGS.workdir, 'train', 'previews', 'latest.png')}")


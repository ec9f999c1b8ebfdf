"""Obtains the README's two sample clips (checked against their sha256) and prints their paths.

    facejax samples [--samples=DIR] [--out=runs/samples]

Looked for in --samples, $FACEJAX_SAMPLES, ../shared/data/videos beside a checkout; otherwise
downloaded into --out (facejax/samples.py says which clips).
"""

from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("samples", None, "Folder holding the clips (else $FACEJAX_SAMPLES, ...).")
flags.DEFINE_string("out", "runs/samples", "Where downloads go.")


def main(argv):
    del argv
    from facejax import samples
    for name, path in samples.obtain(FLAGS.samples, FLAGS.out).items():
        print(f"{name}: {path}")

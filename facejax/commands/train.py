r"""Trains an experiment.

    facejax train --config=deepfakes_original[:VARIANT] \
        [--config.KEY=VALUE ...] --workdir=runs/NAME [--distributed]

Rerunning the same command resumes from the workdir's latest checkpoint. On several hosts, run
the same command on every host with --distributed (JAX reads the cluster environment, or give
--coordinator, --num_processes and --process_id).
"""

import signal
import sys

from absl import flags, logging
from ml_collections import config_flags

from facejax import errors
from facejax.errors import Stopped, UserError, stopped_before_training

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Experiment: a name shipped with facejax (deepfakes_original, saehd, "
    "face2face_pix2pix, cyclegan_faces) or a file, NAME[.py][:VARIANT].", lock_config=True)
flags.DEFINE_string("workdir", None, "Where checkpoints, TensorBoard logs and previews go.")
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize (multi-host).")
flags.DEFINE_string("coordinator", "", "host:port of process 0 (with --distributed).")
flags.DEFINE_integer("num_processes", 0, "Number of processes (with --distributed).",
                     lower_bound=0)
flags.DEFINE_integer("process_id", -1, "This process's index (with --distributed).",
                     lower_bound=-1)
flags.DEFINE_integer("heartbeat_timeout", 60, "Seconds without a peer's heartbeat before the "
                     "other processes stop (with --distributed).",
                     lower_bound=1)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")
    from facejax import supervise
    if FLAGS.distributed and not supervise.supervised():
        # A lost peer ends the job natively (no Python exception): the supervisor turns that
        # into one line and exit status 4. (Before JAX is imported here.)
        return supervise.run(sys.orig_argv[1:])
    # Until train() takes the signals over (JAX, TensorFlow and the model load first: seconds),
    # a stop ends the run with one line too, not a silent exit 143.
    old = {s: signal.signal(s, _stop_at_start) for s in (signal.SIGTERM, signal.SIGINT)}
    hook, sys.unraisablehook = sys.unraisablehook, _quiet_dropped_stop(sys.unraisablehook)
    try:
        metrics = _train()
    except Stopped as e:  # before training or during dataset preparation: nothing to save
        print(e, flush=True)
        return 0
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        sys.unraisablehook = hook
        errors.STOPS_RAISED.clear()
    print("final " + " ".join(f"{k} {v:.5g}" for k, v in sorted(metrics.items())))


def _stop_at_start(signum, frame):
    del frame
    errors.STOPS_RAISED.append(signum)  # train.train stops then if this raise is dropped
    raise stopped_before_training(signum)


def _quiet_dropped_stop(hook):
    """sys.unraisablehook that says nothing of a dropped Stopped (train.train reports it, on
    one line) and passes everything else to `hook`."""
    def unraisable(info):
        if not isinstance(info.exc_value, Stopped):
            hook(info)
    return unraisable


def _train() -> dict:
    """Sets JAX up for the run and trains it (train.train); returns the final metrics."""
    if FLAGS.config is not None:
        from facejax import tasks, xla_setup
        # The family's XLA:CPU settings, before the first JAX computation.
        xla_setup.configure(tasks.get(FLAGS.config.task).cpu_convolutions)
    from facejax import parallel
    if FLAGS.distributed:
        parallel.initialize(FLAGS.coordinator, FLAGS.num_processes, FLAGS.process_id,
                            heartbeat_timeout=FLAGS.heartbeat_timeout)
    from facejax import train as train_lib
    logging.set_verbosity(logging.WARNING)
    return train_lib.train(FLAGS.config, FLAGS.workdir)  # Diverged: exit 3 (facejax.cli)


"""A local web workbench: clean a face set, draw masks, watch training, tune the merge.

    facejax studio --faces=DIR[,DIR...] [--workdir=RUN] [--video=CLIP] [--port=8765]

Prints a URL with a random access token (open it in a browser); serves only this machine
unless --host is given. Pages: Faces (sort, delete to DIR/trash/, undo), Masks (include and
exclude polygons into DIR/masks.jsonl), Training (RUN's curves, preview, config, ETA), Merge
(a frame of CLIP swapped with RUN's model; its options saved for `facejax convert --settings`).
"""

from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_list("faces", None, "Extraction folders to clean and label (comma-separated).")
flags.DEFINE_string("workdir", None, "A training run to watch (and whose model the Merge "
                    "page swaps with).")
flags.DEFINE_string("video", None, "A clip for the Merge page (needs --workdir).")
flags.DEFINE_string("settings", None, "Where the Merge page saves its convert settings "
                    "(default: WORKDIR/convert_settings.json).")
flags.DEFINE_enum("direction", "b2a", ["b2a", "a2b"], "The Merge page's swap direction.")
flags.DEFINE_string("xseg_model", "", "A trained XSeg run (facejax train --config=xseg) whose "
                    "masks the Merge page offers (mask xseg and xseg_x_learned).")
flags.DEFINE_string("host", "127.0.0.1", "Address to serve on; anything but this machine's "
                    "own is reachable by others (a warning is printed).")
flags.DEFINE_integer("port", 8765, "Port to serve on (0: any free one).", lower_bound=0,
                     upper_bound=65535)


def main(argv):
    del argv
    from facejax.errors import UserError
    if not FLAGS.faces:
        raise UserError("--faces: give at least one extraction folder")
    if FLAGS.workdir:  # the Merge page runs the model: with the run's XLA settings, as convert
        from facejax import inference
        inference.configure_xla(FLAGS.workdir)
    from facejax.studio import server
    studio = server.open_studio(FLAGS.faces, FLAGS.workdir, FLAGS.video, FLAGS.settings,
                                FLAGS.direction, FLAGS.xseg_model)
    server.serve(studio, FLAGS.host, FLAGS.port)

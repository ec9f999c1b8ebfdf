"""Measures whether an occluder in the training faces leaks into the trained face (issue 33).

A copy of A's extraction folder gets a disc, textured from a real image (a frame of another
clip), pasted over the mouth of a share of its training faces (faces/occluders.over_mouth);
each face's exact visible mask (the hull minus the disc) is written where `facejax xseg apply`
writes its masks, so the copy is what a perfect XSeg would give. Its held-out faces are left
clean; B's folder is copied with its hulls as its masks (a perfect XSeg of clean faces). The
same experiment is trained twice on them, inside the hull (--config.data.mask=hull)
and inside those masks (xseg), and each run's reconstruction of A's clean held-out faces is
compared with the faces inside the disc (where the occluder sat in training) and over the
whole view: the hull run learned to paint the occluder there, the xseg run never saw it. One
JSON line of PSNRs; the grid of both runs' reconstructions is written as PNG beside it.

    taskset -c 0 python tools/xseg_leak.py --faces_a=runs/faces_a --faces_b=runs/faces_b \
        --donor=$LP/driving_d0.mp4 --out=/tmp/leak --config=deepfakes_original:quick \
        --steps=300
"""

import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("faces_a", None, "Extraction folder of A (copied, then occluded).")
flags.DEFINE_string("faces_b", None, "Extraction folder of B.")
flags.DEFINE_string("donor", None, "A video or image whose first frame textures the discs.")
flags.DEFINE_string("out", None, "Folder for the occluded copy, the two runs and the results.")
flags.DEFINE_string("config", "deepfakes_original:quick", "The experiment trained both ways.")
flags.DEFINE_integer("steps", 300, "Training steps of each run.", lower_bound=1)
flags.DEFINE_float("share", 0.5, "Share of A's training faces occluded.", lower_bound=0,
                   upper_bound=1)
flags.DEFINE_multi_string("set", [], "More --config.KEY=VALUE settings for both runs.")
flags.DEFINE_list("cores", [], "Two CPU cores (e.g. 0,1): the two runs train at once, each "
                  "pinned to its core with taskset; default: one after the other, unpinned.")
flags.mark_flags_as_required(["faces_a", "faces_b", "donor", "out"])

MASKS = ("hull", "xseg")


def occluded_copy(src: str, dst: str, donor: np.ndarray, share: float) -> dict:
    """Copies extraction folder `src` to `dst` (its prepared datasets left out), pastes a disc
    over the mouth of `share` of the training faces and writes every face's visible mask as
    its applied mask; returns the counts."""
    from facejax import images
    from facejax.data import tfds_faces
    from facejax.faces import align, mask_labels, masks, occluders, video
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("tfds", "studio_cache", "trash",
                                                            mask_labels.APPLIED_FOLDER))
    size, records = tfds_faces.read_records(dst)
    tfds_faces.assign_splits(records)
    rng, counts = np.random.default_rng(33), {"occluded": 0, "clean": 0}
    for i, rec in enumerate(records):
        path = mask_labels.crop_path(dst, rec["record"])
        crop = video.read_image(path)
        points = align.transform_points(np.asarray(rec["affine"]), np.asarray(rec["landmarks"]))
        visible = masks.face_hull(points, (size, size))
        if rec["split"] == "train" and rng.random() < share:
            occluded, disc = occluders.over_mouth(crop, points, donor, seed=i)
            images.write_image(path, occluded)
            visible = np.where(disc, 0, visible).astype(np.uint8)
            counts["occluded"] += 1
        else:
            counts["clean"] += 1
        target = mask_labels.applied_path(dst, rec["key"], rec["frame"])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        images.write_image(target, visible)
    return counts


def train_command(faces_a: str, faces_b: str, mask: str, core: str | None) -> list[str]:
    """The command that trains FLAGS.config inside `mask` (pinned to `core` if given) into
    FLAGS.out/runs/MASK, that folder emptied first."""
    workdir = os.path.join(FLAGS.out, "runs", mask)
    shutil.rmtree(workdir, ignore_errors=True)
    pin = ["taskset", "-c", core] if core is not None else []
    return [*pin, sys.executable, "-m", "facejax", "train", f"--config={FLAGS.config}",
            f"--workdir={workdir}", f"--config.data.a={faces_a}",
            f"--config.data.b={faces_b}", f"--config.data.mask={mask}",
            f"--config.num_steps={FLAGS.steps}", "--config.checkpoint_every=100000",
            *[f"--config.{s}" for s in FLAGS.set]]


def train_all(faces_a: str, faces_b: str) -> None:
    """Trains both runs: at once on FLAGS.cores (two), or one after the other."""
    if FLAGS.cores and len(FLAGS.cores) != len(MASKS):
        raise SystemExit(f"error: --cores: give {len(MASKS)} cores, one per run")
    if FLAGS.cores:
        procs = [subprocess.Popen(train_command(faces_a, faces_b, mask, core))
                 for mask, core in zip(MASKS, FLAGS.cores)]
        codes = [p.wait() for p in procs]
    else:
        codes = [subprocess.run(train_command(faces_a, faces_b, mask, None)).returncode
                 for mask in MASKS]
    for mask, code in zip(MASKS, codes):
        if code:
            raise SystemExit(f"error: training inside the {mask} masks failed (its lines above)")


def held_out(workdir: str, faces_a: str, donor: np.ndarray):
    """(the run's reconstructions of A's held-out faces, those faces' model views, the disc
    over each one's mouth in the view (bool), the hull in the view (bool))."""
    import jax
    from facejax import inference
    from facejax.data import pipeline
    from facejax.faces import masks, occluders
    from facejax.tasks import common
    from facejax.training import inputs
    run = inference.load_run(workdir)
    src = pipeline.FaceSource([faces_a], "validation", run.config.data.load_size,
                              **inputs.loaded_framing(run.config))
    faces = src.take(np.arange(len(src)), ("image", "landmarks"))
    discs = np.stack([occluders.over_mouth(im, p, donor)[1] for im, p in
                      zip(faces["image"], faces["landmarks"])]).astype(np.uint8) * 255
    hulls = np.stack([masks.face_hull(p, im.shape[:2]) for im, p in
                      zip(faces["image"], faces["landmarks"])])
    views = np.asarray(common.centre_views(faces["image"], run.config))
    in_view = lambda m: np.asarray(common.centre_views(m[..., None], run.config))[..., 0] > 0.5
    recon = jax.jit(lambda s, x: run.task.reconstruct(s, x, "a", run.config))
    out = np.concatenate([np.asarray(recon(run.state, views[i:i + 8]))
                          for i in range(0, len(views), 8)])
    return out, views, in_view(discs), in_view(hulls)


def psnr(a, b, where) -> float:
    from facejax import metrics
    return float(metrics.psnr(a[where], b[where], 1.0))


def main(argv):
    del argv
    from facejax import images
    from facejax.faces import video
    donor = next(iter(video.FrameSource(FLAGS.donor).frames()))[1]
    faces_a = os.path.join(FLAGS.out, "faces_a_occluded")
    counts = occluded_copy(FLAGS.faces_a, faces_a, donor, FLAGS.share)
    faces_b = os.path.join(FLAGS.out, "faces_b_masked")
    occluded_copy(FLAGS.faces_b, faces_b, donor, 0.0)
    result = {"config": FLAGS.config, "steps": FLAGS.steps, "share": FLAGS.share, **counts}
    grid = []
    train_all(faces_a, faces_b)
    for mask in MASKS:
        workdir = os.path.join(FLAGS.out, "runs", mask)
        recon, views, discs, hulls = held_out(workdir, faces_a, donor)
        result[mask] = {"psnr_in_disc": psnr(recon, views, discs),
                        "psnr_in_hull": psnr(recon, views, hulls),
                        "held_out_faces": len(views)}
        grid.append(np.concatenate(list(recon[:8]), axis=1))
    grid.insert(0, np.concatenate(list(views[:8]), axis=1))
    images.write_image(os.path.join(FLAGS.out, "leak_grid.png"),
                       np.round(np.clip(np.concatenate(grid), 0, 1) * 255).astype(np.uint8))
    with open(os.path.join(FLAGS.out, "leak.json"), "w") as f:
        json.dump(result, f)
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)

"""`facejax benchmark memory`: peak memory of training as the dataset grows.

For each count in --records, an extraction folder of that many faces is made by repeating the
faces of --faces under new frame numbers (the crops linked, not copied; outside the repository,
in a temporary folder), its dataset is prepared, and `facejax train --config=...` runs
--steps steps on it in a child process. The figures: the training process's peak RSS, the
peak of its whole process tree (the input workers included, sampled every 0.2 s), and the
seconds to prepare and to train. Streaming keeps them flat: the records stay on disk.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from facejax.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def repeated_faces(source: str, count: int, out: str) -> None:
    """An extraction folder at `out` of `count` records: `source`'s, repeated in order under
    new frame numbers, each crop a link to the original."""
    from facejax.data import extract, tfds_faces
    _, records = tfds_faces.read_records(source)
    key = "repeated"
    faces = os.path.join(out, extract.INPUTS, key, "faces")
    os.makedirs(faces)
    shutil.copy(os.path.join(source, extract.CONFIG_FILE), out)
    lines = []
    for i in range(count):
        rec = dict(records[i % len(records)])
        os.symlink(os.path.join(source, extract.INPUTS, rec.pop("key"), "faces",
                                f"{rec['frame']:06d}.png"), os.path.join(faces, f"{i:06d}.png"))
        rec.update(frame=i, record=f"{key}/{i:06d}")
        lines.append(json.dumps(rec))
    with open(os.path.join(out, extract.INPUTS, key, "alignments.jsonl"), "w") as f:
        f.write("\n".join(lines) + "\n")


def _train(folder: str, config_args: list[str], steps: int, workdir: str) -> dict:
    import psutil
    cmd = [sys.executable, "-m", "facejax", "train", *config_args,
           f"--config.data.pretrain={folder}", f"--workdir={workdir}",
           f"--config.num_steps={steps}", f"--config.checkpoint_every={steps}",
           "--config.eval_every=0", "--config.preview_every=0", "--config.quality_every=0"]
    t = time.perf_counter()
    proc = psutil.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                        text=True)
    main_peak = tree_peak = 0
    while proc.poll() is None:
        try:
            rss = [proc.memory_info().rss] + [c.memory_info().rss
                                              for c in proc.children(recursive=True)]
        except psutil.Error:  # a process ended between the listing and the reading
            continue
        main_peak, tree_peak = max(main_peak, rss[0]), max(tree_peak, sum(rss))
        time.sleep(0.2)
    if proc.returncode != 0:
        tail = (proc.stderr.read().strip().splitlines() or ["no output"])[-1]
        raise UserError(f"benchmark memory: training failed ({tail})")
    return {"peak_rss_mb": round(main_peak / 2**20), "peak_tree_rss_mb": round(tree_peak / 2**20),
            "train_s": round(time.perf_counter() - t, 1)}


def bench_memory(faces: str, counts: list[int], config_args: list[str], steps: int) -> dict:
    """The benchmark's JSON record (see the module docstring)."""
    from facejax.data import tfds_faces
    rows = []
    with tempfile.TemporaryDirectory(prefix="facejax-bench-memory-") as tmp:
        for n in counts:
            folder = os.path.join(tmp, f"faces_{n}")
            repeated_faces(faces, n, folder)
            t = time.perf_counter()
            tfds_faces.builder(folder)
            prepare_s = time.perf_counter() - t
            row = {"records": n, "prepare_s": round(prepare_s, 1),
                   **_train(folder, config_args, steps, os.path.join(tmp, f"run_{n}"))}
            rows.append(row)
            shutil.rmtree(folder)
    return {"benchmark": "memory", "faces": faces, "config": config_args, "steps": steps,
            "runs": rows,
            "peak_rss_difference_mb": rows[-1]["peak_rss_mb"] - rows[0]["peak_rss_mb"],
            "peak_tree_rss_difference_mb":
                rows[-1]["peak_tree_rss_mb"] - rows[0]["peak_tree_rss_mb"]}

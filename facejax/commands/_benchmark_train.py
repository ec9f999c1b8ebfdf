"""`facejax benchmark train`: a family's training step on one batch of real faces (median step
time, compile seconds, XLA's FLOP count, a matmul peak measured beside it), the same step fed by
the input pipeline, the pipeline's own rate, and optionally the family's PyTorch reference step
(`Task.reference`) timed before and after facejax's (A B A). The figures are described in
facejax/commands/benchmark.py."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import resource
import statistics
import subprocess
import time
from typing import Callable, Optional

from facejax import xla_setup
from facejax.errors import UserError


@dataclasses.dataclass(frozen=True)
class ReferenceRun:
    """How to run the family's PyTorch reference (--reference_python and its flags)."""
    python: str       # a Python with torch installed
    folder: str       # the folder of the reference scripts (--reference_dir)
    huge_pages: bool  # under facejax's allocator setting (xla_setup.use_huge_pages)


def reference_step_ms(task, config, how: ReferenceRun) -> float:
    """Median step ms of the family's PyTorch reference at the config's batch and size."""
    script = os.path.join(how.folder, task.reference.script)
    if not os.path.isfile(script):
        raise UserError(f"--reference_dir: no {script}")
    cmd = [how.python, script, *task.reference.arguments(config), "--no-flops"]
    try:
        env = os.environ if how.huge_pages else xla_setup.without_huge_pages(os.environ)
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, env=env)
    except OSError as e:
        raise UserError(f"--reference_python {how.python}: {e.strerror}")
    except subprocess.TimeoutExpired:
        raise UserError(f"--reference_python: {os.path.basename(script)} ran over an hour")
    try:
        return float(json.loads(out.stdout.strip().splitlines()[-1])["step_ms"])
    except (IndexError, ValueError, KeyError):
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"--reference_python: {os.path.basename(script)} failed: {tail}")


def matmul_gflops(n: int = 2048, reps: int = 5, dtype: str = "float32") -> float:
    """GFLOP/s of the fastest of `reps` n×n matmuls in `dtype`: the machine's peak, as JAX
    reaches it."""
    import jax
    import jax.numpy as jnp
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        f(a).block_until_ready()
        times.append(time.perf_counter() - t)
    return 2 * n ** 3 / min(times) / 1e9


def input_batches(config, task, folder: str):
    """The training input path on the real faces of `folder` at the config's load size: index
    sampling, reading and decoding records, resizing, and the host augmentation when the run
    places it there."""
    from facejax.data import pipeline
    from facejax.training import inputs
    sources = {name: pipeline.FaceSource([folder], "train", config.data.load_size,
                                         mask=config.data.get("mask", ""))
               for name in task.identities}
    return pipeline.FaceBatches(sources, global_batch=config.batch_size, seed=0,
                                fields=inputs.fields(config, task),
                                augment=inputs.host_augment(config, task))


def pipeline_images_per_s(config, task, batches, sharding, workers: int,
                          steps: int = 40) -> float:
    """Images/s of the input path alone, as training runs it (the Grain loader with `workers`
    processes), transfer included; timed after the first batch arrives."""
    import jax
    from facejax.data import pipeline
    loader = pipeline.Loader(batches, 0, steps + 1, workers)
    try:
        jax.block_until_ready(pipeline.to_global(loader.next()[1], sharding))
        t = time.perf_counter()
        for _ in range(steps):
            jax.block_until_ready(pipeline.to_global(loader.next()[1], sharding))
        return steps * config.batch_size * len(task.identities) / (time.perf_counter() - t)
    finally:
        loader.close()


def loop_step_ms(compiled, state, key, batches, sharding, steps: int, workers: int):
    """Median step time as in training: each step's batch comes from the Grain loader, so the
    input path (and host augmentation) shares the machine with the step."""
    import jax
    from facejax.data import pipeline
    loader = pipeline.Loader(batches, 0, steps + 1, workers)
    times = []
    try:
        for _ in range(steps + 1):
            t = time.perf_counter()
            _, local = loader.next()
            state, m = compiled(state, pipeline.to_global(local, sharding), key)
            jax.block_until_ready(m)
            times.append(time.perf_counter() - t)
    finally:
        loader.close()
    return state, statistics.median(times[1:]) * 1e3


def flops(stage) -> float:
    """XLA's cost-analysis FLOP count of a lowered or compiled computation."""
    cost = stage.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", 0.0))


def compiled_step(task, config, state, batch, key, replicated, data_sharding) -> dict:
    """The family's train step compiled for `batch`, with its compile seconds and the GFLOP of
    the model built of plain layers (`gflop`) and of the forms that run (`executed_gflop`)."""
    import jax
    from facejax.ops import conv, loops

    def jit_step():  # a new function each time, so no trace is shared between forms
        return jax.jit(functools.partial(task.train_step, config=config),
                       in_shardings=(replicated, data_sharding, replicated),
                       out_shardings=(replicated, replicated), donate_argnums=0)

    # Counted on the lowered programs with their loops written out (XLA's cost analysis counts
    # a loop's body once); the executed count is within 1% of the compiled program's.
    with loops.unrolled():
        with conv.plain_forms():  # the model's multiply-adds, as the textbook layers count
            gflop = flops(jit_step().lower(state, batch, key)) / 1e9
        executed_gflop = flops(jit_step().lower(state, batch, key)) / 1e9
    t = time.perf_counter()
    compiled = jit_step().lower(state, batch, key).compile()
    return {"step": compiled, "compile_s": time.perf_counter() - t, "gflop": gflop,
            "executed_gflop": executed_gflop}


def timed_steps(step, state, batch, key, steps: int, warmup: int,
                reference: Callable[[], None], dtype: str = "float32"):
    """(state, step seconds, matmul peaks) of `steps` steps back to back, as the references
    time theirs, after a first step, the `reference()` run and `warmup` untimed steps; the
    matmul peak in `dtype` right before and right after them."""
    import jax
    state, m = step(state, batch, key)
    jax.block_until_ready(m)
    reference()
    for _ in range(warmup):
        state, m = step(state, batch, key)
    jax.block_until_ready(m)
    peaks, times = [matmul_gflops(dtype=dtype)], []
    for _ in range(steps):
        t = time.perf_counter()
        state, m = step(state, batch, key)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t)
    peaks.append(matmul_gflops(dtype=dtype))
    return state, times, peaks


@dataclasses.dataclass
class PreparedStep:
    """A family's train step compiled for one batch of real faces, ready to time."""
    task: object
    batches: object  # the input path (input_batches)
    data_sharding: object
    batch: dict
    key: object
    state: dict
    step: dict  # compiled_step's


@contextlib.contextmanager
def prepared_step(config, face_folder: Callable[[int], str]):
    """The PreparedStep of `config` on the faces of `face_folder(load size)`, inside the mesh
    of every device, under the family's XLA:CPU settings (as facejax train runs it)."""
    from facejax import tasks
    task = tasks.get(config.task)
    xla_setup.configure(task.cpu_convolutions)
    import jax
    from facejax import parallel
    mesh = parallel.make_mesh()
    rep, ds = parallel.replicated(mesh), parallel.batch_sharding(mesh)
    batches = input_batches(config, task, face_folder(config.data.load_size))
    with jax.set_mesh(mesh):
        batch = jax.device_put(batches(0), ds)
        key = jax.random.key(0)
        state = jax.jit(functools.partial(task.init, config=config), out_shardings=rep)(key)
        step = compiled_step(task, config, state, batch, key, rep, ds)
        yield PreparedStep(task, batches, ds, batch, key, state, step)


def bench_train(config, face_folder: Callable[[int], str], steps: int, warmup: int,
                reference: Optional[ReferenceRun]) -> dict:
    """The train benchmark's figures for `config`, on the faces of `face_folder(load size)`."""
    from facejax import tasks
    task = tasks.get(config.task)
    if reference is not None and task.reference is None:
        raise UserError(f"--reference_python: the task {config.task} has no PyTorch reference")
    import jax
    import jax.numpy as jnp
    from facejax.models import layers
    from facejax.training import inputs
    workers = inputs.data_workers(config)
    reference_ms = []

    def run_reference():
        if reference is not None:
            reference_ms.append(reference_step_ms(task, config, reference))

    # The peak in the dtype the step computes in (compute_dtype "auto": bfloat16 on a GPU).
    dtype = jnp.dtype(layers.compute_dtype(config.model) or jnp.float32).name
    with prepared_step(config, face_folder) as p:
        batches, ds, step = p.batches, p.data_sharding, p.step
        state, times, peaks = timed_steps(step["step"], p.state, p.batch, p.key, steps, warmup,
                                          run_reference, dtype)
        state, loop_ms = loop_step_ms(step["step"], state, p.key, batches, ds, steps, workers)
    run_reference()
    step_s = statistics.median(times)
    images = config.batch_size * len(task.identities)
    pipe = pipeline_images_per_s(config, task, batches, ds, workers)
    return {"benchmark": "train", "task": config.task, "size": config.model.size,
            "batch_per_identity": config.batch_size, "devices": jax.device_count(),
            "backend": jax.default_backend(),
            "augment": "host" if batches.augment else "device",
            "huge_pages": xla_setup.HUGE_PAGES in os.environ.get("GLIBC_TUNABLES", ""),
            "step_ms": round(step_s * 1e3, 1), "loop_step_ms": round(loop_ms, 1),
            "times_ms": [round(t * 1e3, 1) for t in times],
            "images_per_s": round(images / step_s, 2), "compile_s": round(step["compile_s"], 1),
            "gflop_per_step": round(step["gflop"], 1),
            "executed_gflop_per_step": round(step["executed_gflop"], 1),
            "achieved_gflop_per_s": round(step["gflop"] / step_s, 1),
            "compute_dtype": dtype, "matmul_peak_gflop_per_s": round(max(peaks), 1),
            "fraction_of_peak": round(step["gflop"] / step_s / max(peaks), 3),
            "executed_fraction_of_peak": round(step["executed_gflop"] / step_s / max(peaks), 3),
            "pipeline_workers": workers, "pipeline_images_per_s": round(pipe, 1),
            "pipeline_over_step": round(pipe / (images / step_s), 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            **({"reference": task.reference.script, "reference_step_ms": reference_ms,
                "reference_huge_pages": reference.huge_pages,
                "speedup": round(statistics.median(reference_ms) / (step_s * 1e3), 3)}
               if reference else {})}

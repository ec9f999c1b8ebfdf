"""`facejax benchmark gpu_compile`: a family's training step compiled ahead of time for an NVIDIA
H100 on a machine that has no GPU, and the compiled program checked for CPU-only forms.

JAX's CUDA plugin (jax-cuda12-plugin, no CUDA libraries needed) gives a compile-only device
topology when it is handed a GPU target config (`H100_TARGET`): the step is traced under a mesh
of those devices, so `ops.conv` picks the forms it picks for a GPU (ops/conv/backend.py), lowered
with abstract inputs and compiled by XLA's GPU compiler, cuDNN convolutions and all, as on the
GPU itself (minus autotuning, which needs the device). The plugin must be set up without its
CUDA check, which fails where no CUDA runtime is installed: the process runs with JAX's platform
set to the CPU (`use_cpu_platform`), which the plugin reads as "the CUDA devices are not used".
"""

from __future__ import annotations

import functools
import importlib.util
import re
import time

from facejax.errors import UserError

# XLA's description of an H100 SXM5 80 GB (GpuTargetConfigProto, text format): what the GPU
# compiler asks a device for, here given without one. Compute capability 9.0, 132 SMs.
H100_TARGET = """
gpu_device_info {
  threads_per_block_limit: 1024
  threads_per_warp: 32
  shared_memory_per_block: 49152
  shared_memory_per_core: 233472
  threads_per_core_limit: 2048
  core_count: 132
  fpus_per_core: 128
  block_dim_limit_x: 2147483647
  block_dim_limit_y: 65535
  block_dim_limit_z: 65535
  memory_bandwidth: 3352320000000
  l2_cache_size: 52428800
  clock_rate_ghz: 1.98
  device_memory_size: 84929347584
  shared_memory_per_block_optin: 232448
  cuda_compute_capability { major: 9 minor: 0 }
  registers_per_core_limit: 65536
  registers_per_block_limit: 65536
}
runtime_version { major: 12 minor: 8 }
platform_name: "CUDA"
dnn_version_info { major: 9 minor: 8 }
device_description_str: "NVIDIA H100 80GB HBM3"
"""
PLUGINS = ("jax_plugins.xla_cuda12", "jax_plugins.xla_cuda13")
_SOURCE = re.compile(r'loc\("([^"]+)":(\d+):')  # an MLIR source location: file, line
_CUSTOM_CALL = re.compile(r'custom_call_target="([^"]+)"')
_CONVOLUTION = re.compile(r"\sconvolution\(")  # an HLO convolution no library call replaced


def plugin_installed() -> bool:
    """Whether one of JAX's CUDA plugins is importable."""
    try:
        return any(importlib.util.find_spec(p) is not None for p in PLUGINS)
    except ImportError:  # no jax_plugins package at all
        return False


def use_cpu_platform() -> None:
    """Runs JAX on the CPU only, before it starts its backends: the CUDA plugin then registers
    without checking for CUDA libraries, and its topology still compiles for the GPU."""
    import jax
    try:
        jax.config.update("jax_platforms", "cpu")
    except RuntimeError:
        raise UserError("gpu_compile: JAX's backends started before the platform was set; "
                        "run it in a process of its own")


def gpu_topology(devices: int = 1):
    """`devices` compile-only H100s (jax.experimental.topologies), one host.

    Raises:
      UserError: no CUDA plugin, or one that gives no topology.
    """
    if not plugin_installed():
        raise UserError("gpu_compile: JAX's CUDA plugin is not installed (pip install "
                        "jax-cuda12-plugin at the pinned JAX version; no GPU needed)")
    from jax.experimental import topologies
    try:
        return topologies.get_topology_desc("h100", "cuda", target_config=H100_TARGET,
                                            topology=f"1x1x{devices}")
    except (NotImplementedError, RuntimeError) as e:
        raise UserError(f"gpu_compile: the CUDA plugin gave no GPU topology: "
                        f"{str(e).splitlines()[0]}")


def cpu_form_sources(lowered_text: str) -> list[str]:
    """"module.py:line" of every source line of a CPU-only form (ops/conv/backend.py's
    CPU_FORM_MODULES) that an operation of a lowered program comes from (its StableHLO text
    with debug info: each operation's Python call stack as locations). The compiled program's
    text names no source files (XLA keeps stack frame ids), and compiling only removes code."""
    from facejax.ops.conv import backend
    files = tuple(f"facejax/ops/conv/{m}.py" for m in backend.CPU_FORM_MODULES)
    found = {f"{path.rsplit('/', 1)[1]}:{line}" for path, line in _SOURCE.findall(lowered_text)
             if path.endswith(files)}
    return sorted(found, key=lambda s: (s.split(":")[0], int(s.split(":")[1])))


def _specs(tree, sharding):
    import jax
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                        tree)


def compile_for_gpu(task, config, batch, devices) -> dict:
    """The family's train step for `batch` (arrays of one step's batch, their shapes used)
    compiled for `devices` (`gpu_topology(n).devices`): the compiled program, its text, the
    lowered program's text with source locations, lower
    and compile seconds (wall), and the compile's CPU seconds (all of this process's threads)."""
    import jax
    from facejax import parallel
    mesh = parallel.make_mesh(devices)
    rep, ds = parallel.replicated(mesh), parallel.batch_sharding(mesh)
    step = jax.jit(functools.partial(task.train_step, config=config),
                   in_shardings=(rep, ds, rep), out_shardings=(rep, rep), donate_argnums=0)
    with jax.set_mesh(mesh):  # the forms are chosen for the mesh's devices: the GPU's
        key = _specs(jax.eval_shape(jax.random.key, 0), rep)
        state = _specs(jax.eval_shape(functools.partial(task.init, config=config), key), rep)
        t = time.perf_counter()
        lowered = step.trace(state, _specs(batch, ds), key).lower()
        lower_s = time.perf_counter() - t
        t, cpu = time.perf_counter(), time.process_time()
        compiled = lowered.compile()
    return {"compiled": compiled, "text": compiled.as_text(), "lower_s": lower_s,
            "lowered_text": lowered.as_text(debug_info=True),
            "compile_s": time.perf_counter() - t, "compile_cpu_s": time.process_time() - cpu,
            "device": mesh.devices.flat[0].device_kind}


def bench_gpu_compile(config, face_folder, devices: int = 1) -> dict:
    """The gpu_compile benchmark's figures for `config`, its batch shaped as one from the faces
    of `face_folder(load size)`."""
    use_cpu_platform()
    topology = gpu_topology(devices)  # before the faces are read: no plugin, no work
    from facejax import tasks
    from facejax.commands import _benchmark_train as benchmark_train
    task = tasks.get(config.task)
    batch = benchmark_train.input_batches(config, task, face_folder(config.data.load_size))(0)
    out = compile_for_gpu(task, config, batch, topology.devices)
    calls = _CUSTOM_CALL.findall(out["text"])
    return {"benchmark": "gpu_compile", "task": config.task, "size": config.model.size,
            "batch_per_identity": config.batch_size, "target": out["device"],
            "gpu_devices": devices, "lower_s": round(out["lower_s"], 1),
            "compile_s": round(out["compile_s"], 1),
            "compile_cpu_s": round(out["compile_cpu_s"], 1),
            "cudnn_convolutions": sum(c.startswith("__cudnn$conv") for c in calls),
            "bf16_convolutions": sum("bf16[" in line for line in out["text"].splitlines()
                                     if 'custom_call_target="__cudnn$conv' in line),
            "other_convolutions": len(_CONVOLUTION.findall(out["text"])),
            "custom_calls": sorted(set(calls)),
            "cpu_form_sources": cpu_form_sources(out["lowered_text"])}

"""Every family's train step compiled for an NVIDIA H100 on a machine without a GPU (`facejax
benchmark gpu_compile`: JAX's CUDA plugin's compile-only topology), with no CPU-only convolution
form in the program compiled (the source locations of its lowered form). The compiling tests
need the plugin and are skipped without it (.ci/run installs it beside .venv and puts it on
PYTHONPATH for them); the missing-plugin path runs without it."""

import json

import pytest

from facejax.commands import _benchmark_gpu
from facejax.errors import UserError
from tests.helpers import run_tool

PLUGIN = _benchmark_gpu.plugin_installed()
needs_plugin = pytest.mark.skipif(not PLUGIN, reason="JAX's CUDA plugin is not installed")

# Every family, at the sizes its tiny variant trains (the grid faces are 64 px). The SAEHD run
# turns its two discriminators on, so saehd_gan's parts are compiled too.
FAMILIES = [("deepfakes_original:tiny", ()), ("face2face_pix2pix:tiny", ()),
            ("cyclegan_faces:tiny", ()),
            ("saehd:tiny", ("--config.loss.gan_power=0.1", "--config.loss.true_face_power=0.01")),
            ("xseg:tiny", ())]


def _gpu_compile(experiment, faces, *flags):
    return run_tool("tools/benchmark.py", "gpu_compile", f"--config={experiment}",
                    f"--faces={faces}", *flags, timeout=900)


@needs_plugin
@pytest.mark.parametrize("experiment, flags", FAMILIES, ids=[e for e, _ in FAMILIES])
def test_every_familys_step_compiles_for_an_h100_without_cpu_forms(experiment, flags,
                                                                   grid_faces):
    """... and with its default compute dtype ("auto"), in bfloat16 convolutions."""
    assert _check_compiled(_gpu_compile(experiment, grid_faces["a"], *flags))[
        "bf16_convolutions"] > 0


@needs_plugin
def test_a_float32_step_compiled_for_an_h100_has_no_bfloat16_convolution(grid_faces):
    result = _check_compiled(_gpu_compile("deepfakes_original:tiny", grid_faces["a"],
                                          "--config.model.compute_dtype=float32"))
    assert result["bf16_convolutions"] == 0


def _check_compiled(proc) -> dict:
    """The gpu_compile result of a run that compiled for the H100: no CPU form, every
    convolution's value and gradients on cuDNN, no host callback."""
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["target"] == "NVIDIA H100 80GB HBM3" and result["gpu_devices"] == 1
    assert result["cpu_form_sources"] == []
    # XLA's GPU compiler gave every convolution to cuDNN: value and both gradients.
    assert result["cudnn_convolutions"] > 0 and result["other_convolutions"] == 0
    assert {"__cudnn$convForward", "__cudnn$convBackwardInput",
            "__cudnn$convBackwardFilter"} <= {c.replace("BiasActivation", "")
                                              for c in result["custom_calls"]}
    assert not [c for c in result["custom_calls"] if "callback" in c]  # no host round trip
    return result


@needs_plugin
def test_a_cpu_form_compiled_for_the_gpu_is_found_and_fails_the_command(grid_faces):
    """An explicit CPU form (the strided layers as space-to-depth Winograd tiles) is compiled
    as asked on any platform: the check names its source lines and the command exits 1."""
    proc = _gpu_compile("deepfakes_original:tiny", grid_faces["a"],
                        "--config.model.conv_impl=winograd")
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: gpu_compile: CPU-only forms in the step compiled for the GPU")
    assert "space_to_depth.py:" in last and "winograd.py:" in last
    assert "Traceback" not in proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["cpu_form_sources"] and result["cudnn_convolutions"] > 0


def test_cpu_form_sources_reads_the_lowered_programs_locations():
    text = ('#loc304 = loc("/src/facejax/ops/conv/winograd.py":107:30 to :63)\n'
            '#loc305 = loc("/src/facejax/ops/conv/xla.py":24:11 to :49)\n'
            '#loc306 = loc("/src/facejax/ops/conv/valid.py":24:11 to 25:3)\n'
            '#loc307 = loc("/src/facejax/ops/conv/winograd.py":12:9 to 88:94)\n'
            '#loc308 = loc("/src/facejax/ops/conv/winograd.py":107:1)\n'
            '#loc309 = loc("/src/facejax/ops/conv/__init__.py":104:9)\n')
    assert _benchmark_gpu.cpu_form_sources(text) == ["valid.py:24", "winograd.py:12",
                                                      "winograd.py:107"]
    assert _benchmark_gpu.cpu_form_sources(text.replace("winograd.py", "xla.py")
                                           .replace("valid.py", "xla.py")) == []


def test_without_the_plugin_the_command_says_so_on_one_line(monkeypatch, grid_faces):
    monkeypatch.setattr(_benchmark_gpu, "PLUGINS", ("jax_plugins.no_such_plugin",))
    with pytest.raises(UserError, match="CUDA plugin is not installed"):
        _benchmark_gpu.gpu_topology()
    if PLUGIN:
        return  # the command itself would find the plugin
    proc = _gpu_compile("deepfakes_original:tiny", grid_faces["a"])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith(
        "gpu_compile: JAX's CUDA plugin is not installed (pip install jax-cuda12-plugin at the "
        "pinned JAX version; no GPU needed)")
    assert "Traceback" not in proc.stderr and proc.stdout == ""

"""tools/benchmark.py runs each of its commands and prints one JSON line with its figures (a
smoke test on tiny configs and a short clip; the figures themselves go to docs/benchmarks.md)."""

import json
import math
import sys

import pytest

from tests.helpers import GRID, run_tool

CLIP = f"{GRID}/GRID_bbaf2n.mpg"


def _bench(*args):
    proc = run_tool("tools/benchmark.py", *args, env={"JAX_NUM_CPU_DEVICES": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    # The JSON line; a command may print a table after it (landmarks, quality).
    return json.loads(next(line for line in reversed(proc.stdout.strip().splitlines())
                           if line.startswith("{")))


# A stand-in for the family's PyTorch reference (../shared/bench): it notes its arguments and
# prints the JSON line the real scripts print.
FAKE_REFERENCE = """import json, sys
with open(sys.argv[0] + ".args", "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\\n")
print(json.dumps({"step_ms": 40.0}))
"""


def test_train_and_conv_report_their_figures(tmp_path):
    (tmp_path / "torch_autoencoder.py").write_text(FAKE_REFERENCE)
    r = _bench("train", "--config=experiments/deepfakes_original.py:tiny", "--steps=2",
               "--warmup=0", f"--clip={CLIP}", f"--reference_python={sys.executable}",
               f"--reference_dir={tmp_path}")
    assert r["task"] == "autoencoder" and len(r["times_ms"]) == 2
    # The task's reference, run before and after the timed steps at the config's batch and size.
    assert r["reference"] == "torch_autoencoder.py" and r["reference_step_ms"] == [40.0, 40.0]
    assert r["speedup"] == pytest.approx(40.0 / r["step_ms"], rel=0.01)
    assert (tmp_path / "torch_autoencoder.py.args").read_text().splitlines() == [
        "--batch 8 --size 32 --no-flops"] * 2
    assert r["step_ms"] > 0 and 0 < r["fraction_of_peak"] < 5
    assert r["compute_dtype"] == "float32"  # "auto" on the CPU; the peak is float32's
    assert r["executed_gflop_per_step"] > 0 and r["gflop_per_step"] > 0
    assert r["pipeline_over_step"] > 0 and r["peak_rss_mb"] > 100
    assert r["pipeline_workers"] == 0  # as the tiny variant sets it
    r = _bench("conv", "--layer=stride1:2x8x8x64:3:64", "--rounds=1", "--steps=1")
    assert set(r["ms"]) == {"xla", "im2col", "thin", "winograd2", "winograd3", "winograd4"}
    from facejax.ops.conv import rules
    assert r["auto"] == rules.choose("stride1", rules.Shape(3, 64, 64, 8 * 8, 2))
    assert r["fastest"] in r["ms"]


def test_extract_reports_its_figures():
    r = _bench("extract", f"--clip={CLIP}")
    assert r["frames"] == 75 and r["faces"] == 75 and r["frames_per_s"] > 0


@pytest.mark.slow  # compiles the full-size autoencoder
def test_convert_reports_its_figures():
    r = _bench("convert", f"--clip={CLIP}")
    assert r["frames"] == r["faces"] == 75 and r["frames_per_s"] > 0


def test_merge_reports_its_figures(tiny_ae_run):
    r = _bench("merge", f"--model={tiny_ae_run}", f"--clip={CLIP}")
    assert r["frames"] == 75 and r["frame_size"] == "360x288" and r["batch"] == 8
    assert r["model"] == "autoencoder 32 px"
    for key in ("open_s", "first_render_s", "paste_changed_s", "new_batch_s", "neighbour_s",
                "smoothing_changed_s"):
        assert r[key]["wall"] > 0 and r[key]["cpu"] > 0, key


def test_profile_splits_the_step_by_layer_and_pass():
    r = _bench("profile", "--config=experiments/deepfakes_original.py:tiny", "--steps=2",
               "--warmup=0", f"--clip={CLIP}", "--top=200")
    assert r["task"] == "autoencoder" and r["step_ms"] > 0 and r["op_ms_per_step"] > 0
    layers = {(row["layer"], row["pass"]): row for row in r["layers"]}
    # Every convolution of the autoencoder (models/autoencoder.py), forward and backward.
    for layer in ("Encoder/StridedConv_0", "Encoder/StridedConv_3", "Decoder/Upscale_0",
                  "Decoder/Conv_0"):
        assert (layer, "fwd") in layers and (layer, "bwd") in layers, layer
    assert sum(row["share"] for row in r["layers"]) == pytest.approx(1.0, abs=2e-3)
    assert sum(row["ms"] for row in r["layers"]) == pytest.approx(r["op_ms_per_step"], rel=1e-2)
    # The operations XLA leaves unnamed are traced back to a layer, nearly all of them.
    assert layers.get(("(no metadata)", "fwd"), {"share": 0})["share"] < 0.05
    assert sum(k["share"] for k in r["kinds"]) == pytest.approx(1.0, abs=2e-3)


def test_profile_names_layers_from_the_metadata():
    from facejax.commands._benchmark_profile import instruction_op_names, op_layer
    # op_names as the compiled CycleGAN and autoencoder steps carry them.
    assert op_layer("jit(train_step)/transpose(jvp(ResnetGenerator))/ResnetGenerator._scanned_"
                    "blocks/while/body/closed_call/dot_general") == (
        "ResnetGenerator/ResnetGenerator._scanned_blocks", "bwd")
    assert op_layer("jit(train_step)/jvp(Decoder)/Upscale_1/conv_general_dilated") == (
        "Decoder/Upscale_1", "fwd")
    assert op_layer("jit(train_step)/jvp(PatchGAN)/add") == ("PatchGAN (add)", "fwd")
    assert op_layer("jit(train_step)/transpose(jvp(SAEHD.decode))/decoder_b/Upscale_5/Conv_0/"
                    "add") == ("SAEHD.decode/decoder_b/Upscale_5", "bwd")
    assert op_layer("jit(train_step)/transpose(jvp(Decoder))/Conv_0/jvp(_pad)/pad") == (
        "Decoder/Conv_0", "bwd")  # a jitted helper is not a model
    assert op_layer("jit(train_step)/cbrt") == ("- cbrt", "fwd")
    assert op_layer("") == ("(no metadata)", "fwd")
    hlo = """HloModule m
%fused_computation.1 (p: f32[4]) -> f32[4] {
  %p = f32[4]{0} parameter(0)
  ROOT %n = f32[4]{0} negate(%p), metadata={op_name="jit(f)/jvp(Enc)/Conv_0/neg"}
}
ENTRY %main (a: f32[4], g: f32[4]) -> f32[4] {
  %a = f32[4]{0} parameter(0)
  %g = f32[4]{0} parameter(1), metadata={op_name="jit(f)/transpose(jvp(Enc))/Conv_0/mul"}
  %fusion.1 = f32[4]{0} fusion(%a), kind=kLoop, calls=%fused_computation.1
  %copy.2 = f32[4]{0} copy(%fusion.1)
  %ynn_fusion.3 = f32[4]{0} add(%copy.2, %g)
  ROOT %t = f32[4]{0} add(%a, %a), metadata={op_name="jit(f)/add"}
}"""
    names = instruction_op_names(hlo)
    assert names["fusion.1"] == "jit(f)/jvp(Enc)/Conv_0/neg"  # from the computation it calls
    assert names["copy.2"] == names["fusion.1"]  # from its operand
    assert names["ynn_fusion.3"] == names["g"]  # a backward operand first
    assert names["a"] == "" and names["t"] == "jit(f)/add"


def test_bad_commands_are_one_line():
    for args, message in ((["nope"], "usage: benchmark.py extract|train|convert|conv"),
                          (["train"], "--config: train needs"),
                          (["gpu_compile"], "--config: gpu_compile needs"),
                          (["profile"], "--config: profile needs"),
                          (["merge"], "--model: merge needs --model=RUN"),
                          (["conv", "--layer=stride2:1x8x8x4:3:4"], "--layer=stride2:1x8x8x4:3:4")):
        proc = run_tool("tools/benchmark.py", *args)
        assert proc.returncode == 2 and message in proc.stderr.strip().splitlines()[-1], args


def test_memory_datasets_repeat_the_faces_under_new_numbers(grid_faces, tmp_path):
    import os
    from facejax.commands import _benchmark_memory as benchmark_memory
    from facejax.data import pipeline, tfds_faces
    out = str(tmp_path / "big")
    benchmark_memory.repeated_faces(grid_faces["a"], 160, out)
    size, records = tfds_faces.read_records(out)
    assert size == 64 and len(records) == 160
    assert sorted(r["frame"] for r in records) == list(range(160))
    _, originals = tfds_faces.read_records(grid_faces["a"])
    faces = pipeline.FaceSource([out], "train", 64)
    assert len(faces) == 144  # 160 records, the last 10% held out
    first = records[0]
    assert os.path.realpath(os.path.join(out, "inputs", first["key"], "faces", "000000.png")) \
        == os.path.join(grid_faces["a"], "inputs", originals[0]["key"], "faces",
                        f"{originals[0]['frame']:06d}.png")


@pytest.mark.slow  # two short training runs
def test_memory_reports_its_figures(grid_faces):
    r = _bench("memory", f"--faces={grid_faces['a']}", "--records=30,90", "--steps=2",
               "--memory_config=experiments/deepfakes_original.py:tiny",
               "--memory_flags=--config.batch_size=4")
    assert [run["records"] for run in r["runs"]] == [30, 90]
    assert all(run["peak_rss_mb"] > 100 and run["peak_tree_rss_mb"] >= run["peak_rss_mb"]
               for run in r["runs"])


def test_quality_bad_flags_are_one_line(tmp_path):
    """Each refused before anything is extracted or trained: one line naming the flag, exit 2."""
    clips = [f"--a={CLIP}", f"--b={GRID}/GRID_brbk7n.mpg", f"--workdir={tmp_path / 'q'}"]
    for args, message in (
            ([f"--a={tmp_path / 'nope.mp4'}", f"--b={CLIP}", f"--workdir={tmp_path / 'q'}"],
             "--a: "),
            ([f"--b={CLIP}", f"--workdir={tmp_path / 'q'}"], "--a: quality needs"),
            ([*clips, "--experiments=saehd:nope"], "--experiments: saehd:nope: unknown variant"),
            ([*clips, "--experiments=x=saehd:tiny+model.nope=1"], "--config.model.nope=1"),
            ([*clips, "--experiments=saehd:tiny,saehd:tiny"], "two runs named 'saehd_tiny'"),
            ([*clips, "--minutes=0"], "--minutes=0"),
            ([*clips, "--cores=0,0"], "--cores=0,0"),
            ([f"--continue_from={tmp_path}", f"--workdir={tmp_path / 'q'}"],
             "no quality.json")):
        proc = run_tool("tools/benchmark.py", "quality", *args)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], (args, lines)
        assert not (tmp_path / "q").exists()


# Two tiny runs trained, four evaluations, then one run continued. Its budget covers the tiny
# models' compilation on a busy 2-core machine (over a minute each, no compilation cache).
@pytest.mark.slow
def test_quality_runs_the_protocol_end_to_end(tmp_path):
    """Extract two GRID speakers, train two tiny experiments side by side (one core each),
    evaluate each on the held-out tail and with a talking B: one table row per run, steps
    reached and finite figures; then one run continued with overrides into a new workdir."""
    work = tmp_path / "q"
    r = _bench("quality", f"--a={CLIP}", f"--b={GRID}/GRID_brbk7n.mpg",
               f"--talking={GRID}/GRID_lbax4n.mpg", f"--workdir={work}", "--minutes=2.5",
               "--experiments=saehd:tiny,ae=deepfakes_original:tiny+batch_size=4",
               "--extract_size=64", "--max_frames=10")
    record = json.loads((work / "quality.json").read_text())
    assert list(record["runs"]) == ["saehd_tiny", "ae"] == list(r["steps"])
    for label, run in record["runs"].items():
        assert run["error"] is None and run["held_out"]["b2a"]["steps"] > 0, label
        for d in ("a2b", "b2a"):
            for key in ("distance_to_target", "landmark_nme", "mouth_error", "ssim",
                        "sharpness_ratio", "detail_correlation"):
                assert math.isfinite(run["held_out"][d][key]), (label, d, key)
            assert run["held_out"][d]["sharpness_px"] == 32  # the tiny models' size
        assert math.isfinite(run["talking"]["b2a"]["mouth_error"])
        assert (work / "eval" / label / "samples_b2a.png").is_file()
    assert record["runs"]["ae"]["train_args"][-1] == "--config.batch_size=4"
    table = (work / "quality.md").read_text().splitlines()
    assert len(table) == 4 and table[2].startswith("| saehd_tiny | ")
    assert "sharpness ratio at 32 px" in table[0] and "talking B→A mouth error" in table[0]
    assert "| nan" not in "\n".join(table)

    more = tmp_path / "more"
    r = _bench("quality", f"--continue_from={work}", f"--workdir={more}", "--minutes=0.5",
               "--experiments=late=ae+augment.warp=0", "--talking=", "--max_frames=6")
    late = json.loads((more / "quality.json").read_text())["runs"]["late"]
    assert late["train_args"][-1] == "--config.augment.warp=0"
    assert late["held_out"]["b2a"]["steps"] >= record["runs"]["ae"]["held_out"]["b2a"]["steps"]
    assert (work / "runs" / "ae").is_dir()  # the earlier run is copied, not moved


def test_quality_a_run_that_fails_is_named_and_the_table_still_written(tmp_path):
    """A run whose training refuses its flags: exit 1, one line naming the run and its error,
    the table written with that run's row saying so (no evaluation of it)."""
    work = tmp_path / "q"
    proc = run_tool("tools/benchmark.py", "quality", f"--a={CLIP}",
                    f"--b={GRID}/GRID_brbk7n.mpg", f"--workdir={work}", "--minutes=2",
                    "--experiments=bad=deepfakes_original:tiny+batch_size=0", "--talking=",
                    "--extract_size=64")
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "1 run(s) failed (bad: training failed:" in last and "batch_size=0" in last, last
    record = json.loads((work / "quality.json").read_text())
    assert "batch_size=0" in record["runs"]["bad"]["error"]
    assert "held_out" not in record["runs"]["bad"] and not (work / "eval" / "bad").exists()
    assert (work / "quality.md").read_text().splitlines()[2].startswith(
        "| bad | training failed:")

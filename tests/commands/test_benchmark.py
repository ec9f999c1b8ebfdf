"""tools/benchmark.py runs each of its commands and prints one JSON line with its figures (a
smoke test on tiny configs and a short clip; the figures themselves go to docs/benchmarks.md)."""

import json
import sys

import pytest

from tests.helpers import GRID, run_tool

CLIP = f"{GRID}/GRID_bbaf2n.mpg"


def _bench(*args):
    proc = run_tool("tools/benchmark.py", *args, env={"JAX_NUM_CPU_DEVICES": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


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


def test_bad_commands_are_one_line():
    for args, message in ((["nope"], "usage: benchmark.py extract|train|convert|conv"),
                          (["train"], "--config: train needs"),
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

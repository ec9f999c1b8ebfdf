"""tools/benchmark.py runs each of its commands and prints one JSON line with its figures (a
smoke test on tiny configs and a short clip; the figures themselves go to docs/benchmarks.md)."""

import json

import pytest

from tests.conftest import GRID, run_tool

CLIP = f"{GRID}/GRID_bbaf2n.mpg"


def _bench(*args):
    proc = run_tool("tools/benchmark.py", *args, env={"JAX_NUM_CPU_DEVICES": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_train_and_conv_report_their_figures():
    r = _bench("train", "--config=experiments/deepfakes_original.py:tiny", "--steps=2",
               "--warmup=0")
    assert r["task"] == "autoencoder" and len(r["times_ms"]) == 2
    assert r["step_ms"] > 0 and 0 < r["fraction_of_peak"] < 5
    assert r["executed_gflop_per_step"] > 0 and r["gflop_per_step"] > 0
    assert r["pipeline_over_step"] > 0 and r["peak_rss_mb"] > 100
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

"""Every numeric flag of every tool has a range, and a value outside it is refused at start-up
with the flag's name (one line through facejax.cli); the config's own values are checked by
tests/test_config_check.py."""

import json
import subprocess
import sys

import pytest

from tests.helpers import GRID, ROOT, run_tool

TOOLS = ("benchmark", "convert", "demo", "evaluate", "extract", "reenact", "train")

# Run in a fresh process per tool (each defines its flags into absl's global FLAGS): every
# integer and float flag the tool module defines, with its bounds and the parse of a value just
# outside them.
_PROBE = r"""
import importlib, json, sys
from absl import flags
importlib.import_module(sys.argv[1])  # defines the command's flags, runs nothing
out = {}
for flag in flags.FLAGS.get_flags_for_module(sys.argv[1]):
    if flag.flag_type() not in ("int", "float"):
        continue
    low = getattr(flag.parser, "lower_bound", None)
    high = getattr(flag.parser, "upper_bound", None)
    refused = []
    for bad in ([low - 1] if low is not None else []) + ([high + 1] if high is not None else []):
        try:
            flag.parser.parse(str(bad))
            refused.append(None)
        except ValueError as e:
            refused.append(str(e))
    out[flag.name] = {"low": low, "high": high, "refused": refused}
print(json.dumps(out))
"""


@pytest.mark.parametrize("tool", TOOLS)
def test_every_numeric_flag_has_a_range_and_refuses_values_outside(tool):
    proc = subprocess.run([sys.executable, "-c", _PROBE, f"facejax.commands.{tool}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found, f"{tool}: no numeric flags found"
    for name, f in found.items():
        assert f["low"] is not None, f"{tool} --{name}: no lower bound"
        assert f["refused"] and all(f["refused"]), f"{tool} --{name}: accepts {f}"


@pytest.mark.parametrize("args, message", [
    (["tools/extract.py", f"--input={GRID}/GRID_bbaf2n.mpg", "--output=OUT", "--workers=-1"],
     "error: flag --workers=-1: -1 is not an integer in the range [1, 256]"),
    (["tools/train.py", "--config=experiments/deepfakes_original.py:tiny", "--workdir=OUT",
      "--config.num_steps=-5"], "error: --config.num_steps=-5: must be an integer >= 0"),
    (["tools/train.py", "--config=experiments/deepfakes_original.py:tiny", "--workdir=OUT",
      "--config.batch_size=0"], "error: --config.batch_size=0: must be an integer >= 1"),
    (["tools/train.py", "--config=experiments/nope.py", "--workdir=OUT"],
     "error: --config: cannot load the experiment file ([Errno 2] No such file or directory: "
     "'experiments/nope.py')"),
    (["tools/train.py", "--config=experiments/face2face_pix2pix.py:tiny", "--workdir=OUT",
      "--config.model.size=48", "--config.data.load_size=48", "--config.batch_size=8"],
     "error: --config.model: U-Net size must be a power of two >= 32, got 48"),
])
def test_bad_values_through_the_tools_are_one_line_exit_2(args, message, tmp_path):
    args = [a.replace("OUT", str(tmp_path / "out")) for a in args]
    proc = run_tool(*args)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [message]
    assert not (tmp_path / "out" / "checkpoints").exists()

"""Never overwrite a user's file or a facejax folder (facejax/files.check_output), through the
tools a user runs: one line, exit 2, the file unchanged."""

import hashlib
import os
import shutil

import pytest

from facejax import files, runs
from facejax.data import extract
from facejax.errors import UserError
from tests.helpers import GRID, run_tool


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_marker_names_are_the_ones_the_code_writes():
    assert files.MANAGED["extraction folder"][0] == extract.CONFIG_FILE
    assert files.MANAGED["training workdir"][0] == runs.CONFIG_FILE


def test_outputs_that_are_inputs_or_inside_managed_folders(grid_faces, tiny_ae_run, tmp_path):
    clip = tmp_path / "clip.mpg"
    shutil.copy(f"{GRID}/GRID_brbk7n.mpg", clip)
    os.symlink(clip, tmp_path / "link.mpg")
    os.link(clip, tmp_path / "hard.mpg")
    for out in (clip, tmp_path / "link.mpg", tmp_path / "hard.mpg", tmp_path / "." / "clip.mpg"):
        with pytest.raises(UserError, match="is the input"):
            files.check_output(str(out), [str(clip)])
    ext = grid_faces["a"]
    for out, where in ((ext, "is the extraction folder"),
                       (f"{ext}/summary.json", "is inside the extraction folder"),
                       (f"{ext}/inputs/new.png", "is inside the extraction folder"),
                       (tiny_ae_run, "is the training workdir"),
                       (f"{tiny_ae_run}/checkpoints/x", "is inside the training workdir"),
                       (f"{tiny_ae_run}/.lock", "is inside the training workdir")):
        with pytest.raises(UserError, match=where):
            files.check_output(out)
    files.check_output(f"{tiny_ae_run}/swapped.mp4")  # beside a run's own files: fine
    files.check_output(f"{tiny_ae_run}/eval")
    files.check_output(ext, own="extraction folder")


def test_the_tools_refuse_and_change_nothing(grid_faces, tiny_ae_run, tmp_path):
    clip = tmp_path / "clip.mpg"
    shutil.copy(f"{GRID}/GRID_brbk7n.mpg", clip)
    before = _sha(clip)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me")
    cases = [
        (["tools/convert.py", f"--model={tiny_ae_run}", f"--input={clip}", f"--output={clip}"],
         f"error: --output {clip}: is the input {clip}; refusing to overwrite it"),
        (["tools/convert.py", f"--model={tiny_ae_run}", f"--input={clip}",
          f"--output={grid_faces['a']}/summary.json"], "is inside the extraction folder"),
        (["tools/reenact.py", f"--model={tiny_ae_run}", f"--driver={clip}", f"--output={clip}"],
         "is the input"),
        (["tools/evaluate.py", f"--model={tiny_ae_run}", f"--a={clip}", f"--b={clip}",
          f"--output={tiny_ae_run}"], "is the input"),
        (["tools/evaluate.py", f"--model={tiny_ae_run}", f"--a={clip}", f"--b={clip}",
          f"--output={tmp_path / 'notes'}"], "a folder that is not an earlier evaluation"),
        (["tools/extract.py", f"--input={clip}", f"--output={clip}"], "is the input"),
    ]
    for args, message in cases:
        proc = run_tool(*args)
        assert proc.returncode == 2, (args, proc.stderr[-1500:])
        last = proc.stderr.strip().splitlines()[-1]
        assert message in last and "Traceback" not in proc.stderr, (args, last)
    assert _sha(clip) == before
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep me"
    assert sorted(os.listdir(tmp_path)) == ["clip.mpg", "notes"]

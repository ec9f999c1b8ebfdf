"""A full disk during extraction, conversion and checkpointing: one line, exit status 1, every
earlier output intact, and the same command goes on once there is room. The full disk is a
small tmpfs mounted for the test (root only; elsewhere these tests are skipped)."""

import errno
import json
import os
import subprocess

import pytest

from facejax import errors
from facejax.errors import OutOfSpace, WriteFailed
from tests.helpers import GRID, run_tool

CLIP = f"{GRID}/GRID_bbaf2n.mpg"


@pytest.fixture
def small_disk(tmp_path):
    """mount(size) mounts (or resizes) a tmpfs of that size at the returned folder."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = []

    def mount(size: str, mode: str = "rw") -> str:
        opts = f"remount,size={size},{mode}" if mounted else f"size={size},{mode}"
        cmd = ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(folder)]
        proc = subprocess.run(cmd if not mounted else ["mount", "-o", opts, str(folder)],
                              capture_output=True, text=True)
        if proc.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()[:100]})")
        mounted.append(size)
        return str(folder)

    yield mount
    if mounted:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def _last_error(proc):
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc.stderr.strip().splitlines()[-1]


def _records(folder):
    return [json.loads(x)["record"] for x in open(os.path.join(folder, "alignments.jsonl"))]


def test_extraction_stops_on_one_line_and_resumes(small_disk, tmp_path):
    ref = str(tmp_path / "ref")
    args = [f"--input={CLIP}", "--size=64", "--chunk_frames=20"]
    assert run_tool("tools/extract.py", *args, f"--output={ref}").returncode == 0
    out = os.path.join(small_disk("600k"), "faces")
    proc = run_tool("tools/extract.py", *args, f"--output={out}")
    assert proc.returncode == 1
    assert _last_error(proc).startswith(f"error: {out}: No space left on device; the finished "
                                        "inputs and chunks are kept")
    key = os.listdir(os.path.join(out, ".chunks"))[0]
    kept = [c for c in os.listdir(os.path.join(out, ".chunks", key)) if c.isdigit()]
    assert kept and not os.listdir(os.path.join(out, "inputs"))
    small_disk("8m")
    proc = run_tool("tools/extract.py", *args, f"--output={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _records(out) == _records(ref)


def test_conversion_stops_on_one_line_and_keeps_the_earlier_output(small_disk, tiny_ae_run):
    disk = small_disk("64k")
    out = os.path.join(disk, "out.mp4")
    with open(out, "w") as f:
        f.write("an earlier output")
    args = ["tools/convert.py", f"--model={tiny_ae_run}", f"--input={CLIP}", f"--output={out}"]
    proc = run_tool(*args)
    assert proc.returncode == 1
    assert _last_error(proc).startswith(f"error: {out}: the video could not be written whole")
    assert open(out).read() == "an earlier output"
    assert os.listdir(disk) == ["out.mp4"]  # no temporary file left behind
    small_disk("4m")
    proc = run_tool(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.load(open(os.path.join(disk, "out.summary.json")))["frames"] == 75


def test_checkpointing_stops_on_one_line_and_resumes(small_disk, grid_faces):
    wd = os.path.join(small_disk("24m"), "run")
    args = ["tools/train.py", "--config=experiments/deepfakes_original.py:tiny",
            f"--config.data.a={grid_faces['a']}", f"--config.data.b={grid_faces['b']}",
            "--config.num_steps=10", "--config.checkpoint_every=2", "--config.eval_every=0",
            f"--workdir={wd}"]
    proc = run_tool(*args)
    assert proc.returncode == 1
    line = _last_error(proc)
    assert line.startswith(f"error: {wd}/checkpoints: saving the checkpoint of step ")
    assert "earlier checkpoints [2, 4] are kept" in line
    small_disk("100m")
    proc = run_tool(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "resumed from" in proc.stdout and "at step 4" in proc.stdout
    assert "final" in proc.stdout and " step 10 " in proc.stdout


def test_a_read_only_output_folder_says_so_not_make_room(small_disk, tmp_path):
    out = os.path.join(small_disk("8m"), "faces")
    args = [f"--input={CLIP}", "--size=64", "--every_n=25"]
    assert run_tool("tools/extract.py", *args, f"--output={out}").returncode == 0
    small_disk("8m", "ro")  # the folder of an earlier extraction, now on a read-only mount
    proc = run_tool("tools/extract.py", *args, f"--output={out}")
    assert proc.returncode == 2
    line = _last_error(proc)
    assert line.startswith(f"error: {out}: cannot create the lock file .lock (Read-only file "
                           "system); the filesystem is read-only: remount it writable")
    assert "make room" not in line


@pytest.mark.parametrize("code, cls, says", [
    (errno.ENOSPC, OutOfSpace, "make room and rerun the same command"),
    (errno.EDQUOT, OutOfSpace, "make room and rerun the same command"),
    (errno.EROFS, WriteFailed, "the filesystem is read-only"),
    (errno.EACCES, WriteFailed, "permission denied: make the folder writable"),
    (errno.EIO, WriteFailed, "rerun the same command to go on once it can write there")])
def test_each_reason_a_write_fails_has_its_own_line(code, cls, says):
    err = errors.write_failed(OSError(code, os.strerror(code), "/out/x.png"), "/out", "the faces")
    assert type(err) is cls and isinstance(err, errors.RunError) and err.exit_code == 1
    assert str(err).startswith(f"/out: {os.strerror(code)} writing /out/x.png; the faces are kept")
    assert says in str(err) and "\n" not in str(err)
    assert ("make room" in str(err)) == (cls is OutOfSpace)

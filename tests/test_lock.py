"""One writer per folder (facejax/lock.py): a second writer is refused on one line, a lock
left by a dead process is taken over with a line saying so, and the tools take their locks;
a turn (wait_turn) is waited for."""

import errno
import json
import os
import subprocess
import sys
import time

import filelock
import pytest

from facejax.errors import UserError
from facejax.lock import FolderLock, wait_turn
from tests.helpers import GRID, ROOT, run_tool


def test_a_second_writer_is_refused_and_a_released_lock_is_free(tmp_path, capsys):
    first = FolderLock(str(tmp_path), what="workdir")
    holder = json.loads((tmp_path / ".lock").read_text())
    assert holder["pid"] == os.getpid() and holder["host"]
    with pytest.raises(UserError, match=rf"this workdir is in use by pid {os.getpid()} on "):
        FolderLock(str(tmp_path), what="workdir")
    other = FolderLock(str(tmp_path), ".lock-shard-1-of-2")  # another name: another lock
    other.release()
    first.release()
    with FolderLock(str(tmp_path)):
        pass
    assert "took over" not in capsys.readouterr().err  # released locks are not stale


def test_a_dead_holders_lock_is_taken_over_with_a_line(tmp_path, capsys):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (tmp_path / ".lock").write_text(json.dumps({"host": "elsewhere", "pid": int(dead)}))
    with FolderLock(str(tmp_path)):
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    err = capsys.readouterr().err
    assert f"took over the stale lock of pid {dead} on elsewhere" in err


def test_a_turn_is_waited_for_and_taken_without_a_lock_where_locks_are_refused(tmp_path,
                                                                              monkeypatch):
    path = str(tmp_path / "new folder" / ".prepare.lock")
    code = ("import sys; from facejax.lock import wait_turn\n"
            "with wait_turn(sys.argv[1]): print('my turn', flush=True)")
    with wait_turn(path):
        waiter = subprocess.Popen([sys.executable, "-c", code, path], cwd=ROOT, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(3)
        assert waiter.poll() is None  # waiting for this process's turn to end
    out, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 0 and out == "my turn\n", err[-2000:]

    def refused(*args, **kwargs):  # flock on NFS without its lock daemon
        raise OSError(errno.ENOLCK, "No locks available")
    monkeypatch.setattr(filelock.FileLock, "acquire", refused)
    with wait_turn(path):
        pass


def _wait_for_lock(path, proc, timeout=120):
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        if os.path.exists(path) and os.path.getsize(path) > 0:
            return
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.2)
    raise AssertionError(f"{path} never taken")


def _start(*args):
    env = dict(os.environ, JAX_NUM_CPU_DEVICES="1")
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_two_trainings_on_one_workdir(grid_faces, tmp_path):
    wd = str(tmp_path / "wd")
    args = ["tools/train.py", "--config=experiments/deepfakes_original.py:tiny",
            f"--config.data.a={grid_faces['a']}", f"--config.data.b={grid_faces['b']}",
            "--config.num_steps=100000", f"--workdir={wd}"]
    first = _start(*args)
    try:
        _wait_for_lock(os.path.join(wd, ".lock"), first)
        second = run_tool(*args, env={"JAX_NUM_CPU_DEVICES": "1"})
        assert second.returncode == 2
        line = second.stderr.strip().splitlines()[-1]
        assert line.startswith(f"error: {wd}: this training workdir is in use by pid "
                               f"{first.pid} on ")
    finally:
        first.kill()
        first.wait()


def test_two_extractions_into_one_folder_and_disjoint_shards(tmp_path):
    out = str(tmp_path / "faces")
    clips = f"{GRID}/GRID_bbaf2n.mpg,{GRID}/GRID_brbk7n.mpg"
    first = _start("tools/extract.py", f"--input={clips}", f"--output={out}", "--size=64")
    try:
        _wait_for_lock(os.path.join(out, ".lock"), first)
        second = run_tool("tools/extract.py", f"--input={clips}", f"--output={out}",
                          "--size=64")
        assert second.returncode == 2
        assert second.stderr.strip().splitlines()[-1].startswith(
            f"error: {out}: this extraction folder is in use by pid {first.pid}")
    finally:
        first.kill()
        first.wait()
    # Shards of one job lock separately: both run, together they extract every input.
    shards = [_start("tools/extract.py", f"--input={clips}", f"--output={out}", "--size=64",
                     "--num_shards=2", f"--shard_index={i}") for i in range(2)]
    for p in shards:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    assert len(os.listdir(os.path.join(out, "inputs"))) == 2

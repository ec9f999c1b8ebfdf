"""Kills: SIGKILL at random moments (the long loop is marked slow), and a lost peer in a
two-process job."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from facejax import checkpoint
from facejax.data import tfds_faces
from tests.helpers import ROOT, assert_same_params, params_of

TINY = "--config=experiments/deepfakes_original.py:tiny"


def _cmd(grid_faces, workdir, steps, *extra):
    return [sys.executable, "tools/train.py", TINY, f"--config.data.a={grid_faces['a']}",
            f"--config.data.b={grid_faces['b']}", f"--workdir={workdir}",
            f"--config.num_steps={steps}", "--config.checkpoint_every=2", "--config.log_every=1",
            "--config.eval_every=0", "--config.preview_every=0", *extra]


def _env(devices=1):
    return dict(os.environ, JAX_NUM_CPU_DEVICES=str(devices), JAX_PLATFORMS="cpu")


def _latest(workdir):
    if not os.path.isdir(os.path.join(workdir, "checkpoints")):
        return None
    ck = checkpoint.Checkpointer(workdir, read_only=True)
    try:
        return ck.latest_step()
    finally:
        ck.close()


def _finished_dirs(ckdir) -> int:
    """The highest finished step folder, read while a run writes and prunes (-1: none)."""
    try:
        return max([int(p) for p in os.listdir(ckdir) if p.isdigit()], default=-1)
    except FileNotFoundError:
        return -1


def _wait_for(predicate, timeout, poll=0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll)
    return False


@pytest.mark.slow
def test_random_sigkills_never_lose_more_than_the_last_checkpoint(grid_faces, tmp_path):
    """At least 10 SIGKILLs at random moments: during start-up, between steps, and while a
    checkpoint is being written (its temporary folder exists). Each restart resumes from the
    last complete checkpoint; the final parameters equal an uninterrupted run's bit for bit."""
    steps = 60
    for d in grid_faces.values():
        tfds_faces.builder(d)
    straight = str(tmp_path / "straight")
    subprocess.run(_cmd(grid_faces, straight, steps), cwd=ROOT, env=_env(), check=True,
                   capture_output=True, timeout=600)
    wd = str(tmp_path / "killed")
    ckdir = os.path.join(wd, "checkpoints")
    rng = random.Random(0)
    trials, during_save, resumed_ok = 0, 0, 0
    while True:
        before = _latest(wd)
        log = open(tmp_path / f"trial{trials}.log", "w")
        proc = subprocess.Popen(_cmd(grid_faces, wd, steps), cwd=ROOT, env=_env(), stdout=log,
                                stderr=subprocess.STDOUT, text=True)
        mode = trials % 3
        if trials >= 12:  # enough kills: let it finish
            assert proc.wait(timeout=600) == 0
            log.close()
            break
        progressed = (lambda b=before: _finished_dirs(ckdir) > (b if b is not None else -1))
        if mode == 0:  # while a new checkpoint is being written (its temporary folder exists)
            def saving():
                return os.path.isdir(ckdir) and any("tmp" in p for p in os.listdir(ckdir))
            _wait_for(lambda: progressed() or proc.poll() is not None, 300, poll=0.01)
            hit = _wait_for(lambda: saving() or proc.poll() is not None, 300, poll=0.001)
            during_save += bool(hit and proc.poll() is None and saving())
        elif mode == 1:  # a random moment after this run wrote a checkpoint of its own
            _wait_for(lambda: progressed() or proc.poll() is not None, 300, poll=0.01)
            time.sleep(rng.uniform(0.0, 0.3))
        else:  # any moment, start-up included
            time.sleep(rng.uniform(0.5, 12.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        log.close()
        trials += 1
        after = _latest(wd)
        # A kill never makes things worse than the last complete checkpoint, and what is
        # there restores (a partly written one is never picked up).
        assert after is None or before is None or after >= before
        if after is not None:
            params_of(wd, after)
        text = open(log.name).read()
        if before is not None:
            assert f"at step {before}" in text or "resumed from" not in text, text[-2000:]
            resumed_ok += f"at step {before}" in text
    print(f"{trials} SIGKILLs ({during_save} during a checkpoint write), {resumed_ok} restarts "
          f"checked to resume from the last checkpoint")
    assert trials >= 10 and during_save >= 3 and resumed_ok >= 6
    assert_same_params(params_of(wd), params_of(straight), atol=0)


@pytest.mark.slow  # about 60 s: two processes started twice
def test_a_killed_peer_stops_the_other_process_with_one_line(grid_faces, tmp_path):
    """Two processes on 127.0.0.1: SIGKILL one; the other exits within a bounded time with one
    error line (status 4) instead of hanging; restarting both resumes from the checkpoint."""
    for d in grid_faces.values():
        tfds_faces.builder(d)
    port = _free_port()
    wd = str(tmp_path / "run")

    def start(i, steps, tag):
        out = open(tmp_path / f"p{i}-{tag}.out", "w")
        err = open(tmp_path / f"p{i}-{tag}.err", "w")
        return subprocess.Popen(
            _cmd(grid_faces, wd, steps, "--config.data.per_process=false", "--distributed",
                 f"--coordinator=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}",
                 "--heartbeat_timeout=10"),
            cwd=ROOT, env=_env(2), stdout=out, stderr=err, text=True), out, err

    procs = [start(i, 400, "first") for i in range(2)]
    assert _wait_for(lambda: "step 10/" in (tmp_path / "p0-first.out").read_text(), 300, 0.1), \
        (tmp_path / "p0-first.err").read_text()[-3000:]
    procs[1][0].send_signal(signal.SIGKILL)
    t0 = time.monotonic()
    rc = procs[0][0].wait(timeout=120)
    waited = time.monotonic() - t0
    procs[1][0].wait()
    for _, out, err in procs:
        out.close()
        err.close()
    err = (tmp_path / "p0-first.err").read_text()
    print(f"the surviving process exited {waited:.1f} s after its peer was killed")
    assert rc == 4 and waited < 60
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "another process of this job stopped" in errors[0], err[-2000:]
    assert "Check failure stack trace" not in err and "Traceback" not in err
    last = _latest(wd)
    assert last is not None and last >= 2

    port = _free_port()
    procs = [start(i, last + 2, "again") for i in range(2)]
    for p, out, err in procs:
        assert p.wait(timeout=300) == 0
        out.close()
        err.close()
    assert f"at step {last}" in (tmp_path / "p0-again.out").read_text()
    assert _latest(wd) == last + 2


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

"""Runs a multi-process job's training in a child process and reports a lost peer on one line.

When a process of a jax.distributed job dies (killed, crashed, its host gone), the others get no
Python exception: JAX's coordination service stops them with a native fatal error and a stack
dump once the peer's heartbeats have been missing for `heartbeat_timeout` seconds. The
supervisor passes the child's output through, drops that dump, and exits with one line and
status PEER_LOST, so a scheduler (or a person) sees what happened and restarts every process,
which resume from the last checkpoint.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading

PEER_LOST = 4
ENV = "FACEJAX_SUPERVISED"
# Lines of the coordination service's fatal path (jax 0.10: coordination_service.cc,
# coordination_service_agent.cc and client.h "Terminating process because the JAX distributed
# service detected fatal errors").
# A collective whose peer vanished fails in gloo first ("Connection closed by peer"), which can
# surface as any error of the step or checkpoint in progress.
_MARKERS = re.compile(r"stopped sending heartbeats|JAX distributed service detected fatal errors|"
                      r"Polled an error from coordination service|coordination_service|"
                      r"Gloo \w+ failed|Connection (closed|reset) by peer")


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL it when the supervisor dies (Linux prctl), so killing
    the process a scheduler knows kills the training too."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def supervised() -> bool:
    """Whether this process is the supervised child."""
    return os.environ.get(ENV) == "1"


def run(argv: list[str]) -> int:
    """Runs `python argv...` as the supervised child; returns the exit status to use."""
    env = dict(os.environ, **{ENV: "1", "PYTHONUNBUFFERED": "1"})
    child = subprocess.Popen([sys.executable, *argv], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, bufsize=1,
                             preexec_fn=_die_with_parent)
    lost = threading.Event()

    def forward(signum, frame):
        del frame
        child.send_signal(signum)  # SIGTERM: the child saves a checkpoint and exits 0

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}

    held = []  # the child's own one-line errors: shown unless a lost peer explains them

    def pump(src, dst):
        for line in src:
            if _MARKERS.search(line):
                lost.set()
            if lost.is_set():  # from the first marker on: the native crash dump
                continue
            if line.startswith("error:"):
                held.append(line)
                continue
            dst.write(line)
            dst.flush()

    pumps = [threading.Thread(target=pump, args=(child.stdout, sys.stdout), daemon=True),
             threading.Thread(target=pump, args=(child.stderr, sys.stderr), daemon=True)]
    for t in pumps:
        t.start()
    rc = child.wait()
    for t in pumps:
        t.join(timeout=10)
    for s, h in old.items():
        signal.signal(s, h)
    if lost.is_set() and rc != 0:
        print("error: another process of this job stopped (killed, crashed or unreachable) and "
              "the JAX distributed service gave up on it; restart every process to resume from "
              "the last checkpoint", file=sys.stderr, flush=True)
        return PEER_LOST
    sys.stderr.writelines(held)
    return rc if rc >= 0 else 128 - rc

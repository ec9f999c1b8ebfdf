"""The per-family XLA:CPU settings (facejax/xla_setup.py) and that the tools apply them."""

import json
import os
import subprocess
import sys

from facejax import xla_setup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_cyclegan_takes_eigen_convolutions_and_a_users_setting_wins(monkeypatch):
    from facejax import tasks
    assert {n: tasks.get(n).cpu_convolutions for n in tasks.TASKS} == {
        "autoencoder": "ynnpack", "pix2pix": "ynnpack", "cyclegan": "eigen", "saehd": "ynnpack",
        "xseg": "ynnpack"}
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
    xla_setup.configure("ynnpack")
    assert os.environ["XLA_FLAGS"] == "--xla_dump_to=/tmp/x"
    xla_setup.configure("eigen")
    assert os.environ["XLA_FLAGS"] == "--xla_dump_to=/tmp/x " + xla_setup.EIGEN_CONVOLUTIONS
    xla_setup.configure("eigen")  # once only
    assert os.environ["XLA_FLAGS"].count("ynn_fusion_type") == 1
    mine = "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION"
    monkeypatch.setenv("XLA_FLAGS", mine)
    xla_setup.configure("eigen")
    assert os.environ["XLA_FLAGS"] == mine


def test_inference_tools_read_the_runs_family(monkeypatch, tmp_path):
    from facejax import inference
    monkeypatch.setenv("XLA_FLAGS", "")
    inference.configure_xla(str(tmp_path))  # no config: nothing changes
    (tmp_path / "config.json").write_text("{not json")
    inference.configure_xla(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"task": "autoencoder"}))
    inference.configure_xla(str(tmp_path))
    assert os.environ["XLA_FLAGS"] == ""
    (tmp_path / "config.json").write_text(json.dumps({"task": "cyclegan"}))
    inference.configure_xla(str(tmp_path))
    assert os.environ["XLA_FLAGS"] == xla_setup.EIGEN_CONVOLUTIONS
    for tool in ("convert", "evaluate"):  # applied before the module that runs the model loads
        src = open(os.path.join(ROOT, "facejax", "commands", f"{tool}.py")).read()
        assert -1 < src.index("configure_xla(FLAGS.model)") < src.index(
            f"from facejax import {tool}")
    src = open(os.path.join(ROOT, "facejax", "commands", "studio.py")).read()
    assert -1 < src.index("configure_xla(FLAGS.workdir)") < src.index(
        "from facejax.studio import server")  # the Merge page's model


def test_the_flag_is_accepted_by_this_jaxlib():
    """XLA aborts on an unknown flag: a jaxlib upgrade that drops it fails here, not in a run."""
    code = ("import jax, jax.numpy as jnp; x = jnp.ones((1, 8, 8, 4)); k = jnp.ones((3, 3, 4, 2));"
            "print(float(jax.lax.conv(x.transpose(0, 3, 1, 2), k.transpose(3, 2, 0, 1),"
            " (1, 1), 'SAME').sum()))")
    env = dict(os.environ, XLA_FLAGS=xla_setup.EIGEN_CONVOLUTIONS, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    # Ones through a 3×3 'SAME' window: 2 outputs × 4 channels × (2 + 6·3 + 2)² taps in range.
    assert json.loads(out.stdout.strip().splitlines()[-1]) == 2 * 4 * 22 ** 2


def test_use_huge_pages_restarts_once_and_a_users_setting_wins(monkeypatch):
    if xla_setup._glibc_version() is None or xla_setup._glibc_version() < (2, 35):
        import pytest
        pytest.skip("not glibc 2.35+")
    calls = []
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
    xla_setup.use_huge_pages(execv=lambda *a: calls.append(a))
    assert calls == [(sys.executable, [sys.executable, *sys.orig_argv[1:]])]
    assert os.environ["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:" + xla_setup.HUGE_PAGES
    assert xla_setup.without_huge_pages(os.environ)["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2"
    xla_setup.use_huge_pages(execv=lambda *a: calls.append(a))  # the restarted process: no loop
    assert len(calls) == 1
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=0")  # the user's choice
    xla_setup.use_huge_pages(execv=lambda *a: calls.append(a))
    assert len(calls) == 1 and os.environ["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=0"

    def fails(*a):
        raise OSError("no exec")
    monkeypatch.delenv("GLIBC_TUNABLES")
    monkeypatch.delenv(xla_setup.ORIGINAL_TUNABLES)
    xla_setup.use_huge_pages(execv=fails)  # runs on as it was
    assert os.environ.get("GLIBC_TUNABLES") == ""
    assert "GLIBC_TUNABLES" not in xla_setup.without_huge_pages(os.environ)


def test_tools_restart_with_huge_pages_and_fault_less():
    """A tool's main runs once, in the same process, restarted with the tunable; there a
    computation with 256 MB of temporaries faults in its memory in huge pages."""
    if xla_setup._glibc_version() is None or xla_setup._glibc_version() < (2, 35):
        import pytest
        pytest.skip("not glibc 2.35+")
    code = """
import os, resource, sys
print("start", os.getpid(), flush=True)
from facejax.cli import run_main

def main(argv):
    import jax, jax.numpy as jnp
    f = jax.jit(lambda x: (jnp.sin(x)[::-1] * 2 + jnp.cos(x)[::-1]).sum())
    x = jnp.ones((64 << 20,), jnp.float32)
    f(x).block_until_ready()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        f(x).block_until_ready()
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 3
    print("main", os.getpid(), os.environ.get("GLIBC_TUNABLES"), argv[1:], faults)

run_main(main)
"""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
    env.pop("GLIBC_TUNABLES", None)
    out = subprocess.run([sys.executable, "-c", code, "arg"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.split("\n")
    starts = [ln for ln in lines if ln.startswith("start")]
    mains = [ln.split() for ln in lines if ln.startswith("main")]
    assert len(starts) == 2 and len(set(starts)) == 1 and len(mains) == 1, out.stdout
    assert mains[0][1] == starts[0].split()[1] and mains[0][2] == xla_setup.HUGE_PAGES
    assert mains[0][3] == "['arg']"
    try:
        thp = open("/sys/kernel/mm/transparent_hugepage/enabled").read()
    except OSError:
        thp = ""
    if "[never]" not in thp and thp:
        # 256 MB is 65,536 small pages; in 2 MiB pages, 128.
        assert float(mains[0][4]) < 8000, out.stdout


def test_tools_keep_compiled_programs_in_the_users_cache(tmp_path):
    """A tool's compilation lands in $XDG_CACHE_HOME/facejax/xla and the next process loads it
    from there instead of compiling; FACEJAX_XLA_CACHE=off (what the benchmarks set for
    themselves and their children) compiles afresh and keeps nothing."""
    code = """
import jax, jax.numpy as jnp  # before run_main, as a command's module imports it
from facejax.cli import run_main

def main(argv):
    from jax import monitoring
    events = []
    monitoring.register_event_listener(lambda name, **kw: events.append(name))
    jax.jit(lambda x: jnp.sin(x) @ jnp.cos(x).T)(jnp.ones((64, 64))).block_until_ready()
    print("hits", events.count("/jax/compilation_cache/cache_hits"))

run_main(main)
"""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT, XDG_CACHE_HOME=str(tmp_path),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # the suite's own cache
    cache = tmp_path / "facejax" / "xla"

    def hits(**extra):
        out = subprocess.run([sys.executable, "-c", code], env=dict(env, **extra),
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        return int(out.stdout.split("hits")[-1])

    assert hits() == 0 and any(cache.iterdir())
    assert hits() >= 1
    off = tmp_path / "off"
    assert hits(FACEJAX_XLA_CACHE="off", XDG_CACHE_HOME=str(off)) == 0 and not off.exists()


def test_a_users_cache_folder_wins_and_the_benchmarks_turn_it_off():
    env = {"XDG_CACHE_HOME": "/x"}
    assert xla_setup.compilation_cache_dir(env) == "/x/facejax/xla"
    env = {"JAX_COMPILATION_CACHE_DIR": "/mine", "XDG_CACHE_HOME": "/x"}
    assert xla_setup.use_compilation_cache(env) == {
        "jax_compilation_cache_dir": "/mine",
        "jax_compilation_cache_max_size": xla_setup.CACHE_MAX_BYTES}
    assert env["JAX_COMPILATION_CACHE_DIR"] == "/mine"
    assert env["JAX_COMPILATION_CACHE_MAX_SIZE"] == str(xla_setup.CACHE_MAX_BYTES)
    assert xla_setup.no_compilation_cache(env) == {"jax_enable_compilation_cache": False}
    assert "JAX_COMPILATION_CACHE_DIR" not in env and xla_setup.compilation_cache_dir(env) is None
    assert xla_setup.use_compilation_cache(env) == {}


def test_a_cache_entry_jax_cannot_use_adds_no_lines_to_a_tool(tmp_path):
    """JAX warns, several lines per entry, where it cannot read or write a cache entry (here the
    cache folder is under a file); a facejax tool prints its own lines only (the entry costs a
    compilation, nothing else)."""
    script = tmp_path / "tool.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {ROOT!r})\n"
        "from facejax import cli\n"
        "def main(argv):\n"
        "    import jax\n"
        "    print(float(jax.jit(lambda x: x * 3 + 1)(2.0)))\n"
        "if sys.argv[1:] == ['bare']:\n"
        "    main([])\n"
        "else:\n"
        "    cli.run_main(main)\n")
    (tmp_path / "file").write_text("")
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(tmp_path / "file" / "cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    runs = {how: subprocess.run([sys.executable, str(script), *extra], env=env, text=True,
                                capture_output=True, timeout=300)
            for how, extra in (("bare", ["bare"]), ("tool", []))}
    assert "Error reading persistent compilation cache entry" in runs["bare"].stderr
    assert runs["tool"].returncode == 0 and runs["tool"].stdout.strip() == "7.0"
    assert "persistent compilation cache" not in runs["tool"].stderr, runs["tool"].stderr

"""The facejax command: installable, one entry point with subcommands, --help on every one,
experiments by name; tools/*.py are its aliases in a checkout."""

import json
import os
import subprocess
import sys

import pytest

from facejax import cli
from tests.helpers import ROOT

COMMANDS = ("benchmark", "convert", "demo", "evaluate", "export", "extract", "reenact", "samples",
            "studio", "train", "xseg")
# A flag each command defines: its --help must list it.
A_FLAG = {"benchmark": "--steps", "convert": "--mask", "demo": "--every_n",
          "evaluate": "--held_out", "export": "--format", "extract": "--detector", "reenact": "--driver",
          "samples": "--out", "studio": "--faces", "train": "--workdir",
          "xseg": "--faces"}


def _run(args, cwd="/tmp", env=None):
    full = dict(os.environ, PYTHONPATH=ROOT, **(env or {}))
    return subprocess.run([sys.executable, *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=120)


def test_the_command_table_is_the_commands_folder():
    assert tuple(cli.commands()) == COMMANDS
    assert all(cli.commands().values())  # each has a one-line summary


@pytest.mark.parametrize("name", COMMANDS)
def test_help_lists_the_commands_flags_and_exits_0(name):
    for args in (["-m", "facejax", name, "--help"], [os.path.join(ROOT, "tools", f"{name}.py"),
                                                    "-h"]):
        proc = _run(args)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert cli.commands()[name] in proc.stdout and A_FLAG[name] in proc.stdout
        assert "--verbosity" not in proc.stdout  # absl's own flags: --helpfull only
    full = _run(["-m", "facejax", name, "--helpfull"])
    assert full.returncode == 0 and A_FLAG[name] in full.stdout and "--verbosity" in full.stdout


def test_usage_and_unknown_commands():
    proc = _run(["-m", "facejax", "--help"])
    assert proc.returncode == 0 and all(f"  {c} " in proc.stdout for c in COMMANDS)
    assert _run(["-m", "facejax"]).returncode == 2
    proc = _run(["-m", "facejax", "trian", "--workdir=x"])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: unknown command 'trian'; expected one of " + ", ".join(COMMANDS) +
        " (facejax --help)"]


def test_convert_flags_default_to_the_libraries_options():
    # The command, the studio's merge page and library callers start from the same options.
    check = ("import dataclasses, json\n"
             "from absl import flags\n"
             "from facejax.commands import convert as command\n"
             "from facejax import convert\n"
             "print(json.dumps([(f.name, flags.FLAGS[f.name].default, f.default)\n"
             "                  for f in dataclasses.fields(convert.ConvertOptions)]))\n")
    proc = _run(["-c", check])
    assert proc.returncode == 0, proc.stderr[-2000:]
    fields = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(fields) == 13 and ["blur", 8, 8] in fields
    assert [name for name, flag, option in fields if flag != option] == []


def test_experiments_by_name_or_path(tmp_path):
    shipped = os.path.join(ROOT, "experiments", "saehd.py")
    assert cli.experiment_path("saehd") == shipped
    assert cli.experiment_path("saehd:df64") == shipped + ":df64"
    assert cli.experiment_path("saehd.py:tiny") == shipped + ":tiny"
    # From the checkout, its relative path is a file that exists: kept, the same file.
    path, variant = cli.experiment_path("experiments/saehd.py:tiny").split(":")
    assert os.path.samefile(path, shipped) and variant == "tiny"
    own = tmp_path / "saehd.py"
    own.write_text("")
    assert cli.experiment_path(f"{own}:tiny") == f"{own}:tiny"  # a file of the user's wins
    for unknown in ("nope", "experiments/nope.py", "common", "../saehd", "_x"):
        assert cli.experiment_path(unknown) == unknown
    assert cli._with_experiment_paths(["p", "--config", "saehd", "--config=saehd:tiny"]) == [
        "p", "--config", shipped, f"--config={shipped}:tiny"]


def _packages(folder: str, prefix: str) -> set[str]:
    """Dotted names of the packages (folders with an __init__.py) under `folder`."""
    out = set()
    for d, _, names in os.walk(folder):
        if "__init__.py" in names:
            rel = os.path.relpath(d, folder)
            out.add(prefix if rel == "." else ".".join([prefix, *rel.split(os.sep)]))
    return out


def test_pip_install_gives_a_facejax_command_that_trains_from_any_folder(tmp_path, grid_faces):
    target = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                           "--no-build-isolation", "--no-index", "--target", str(target), ROOT],
                          capture_output=True, text=True, timeout=300,
                          cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    # Every package of the checkout is shipped (pyproject.toml lists them), the top-level
    # experiments/ as facejax.experiments.
    shipped = _packages(str(target / "facejax"), "facejax")
    assert shipped == (_packages(os.path.join(ROOT, "facejax"), "facejax")
                       | _packages(os.path.join(ROOT, "experiments"), "facejax.experiments"))
    # The studio's pages ship inside its package (package data: no build step makes them).
    static = target / "facejax" / "studio" / "static"
    assert {"faces.html", "masks.html", "training.html", "merge.html", "studio.js"} <= {
        p.name for p in static.iterdir()}
    script = target / "bin" / "facejax"
    assert script.is_file()
    away = tmp_path / "elsewhere"
    away.mkdir()
    env = dict(os.environ, PYTHONPATH=str(target), JAX_NUM_CPU_DEVICES="1")
    # The installed copy, not the checkout: experiments and commands ship inside the package.
    probe = subprocess.run([sys.executable, "-c", "import facejax, facejax.experiments.saehd, "
                            "facejax.commands; print(facejax.__file__)"], cwd=str(away),
                           env=env, capture_output=True, text=True, timeout=120)
    assert probe.stdout.strip() == str(target / "facejax" / "__init__.py"), probe.stderr
    for args, expect in ((["--help"], "commands:"), (["train", "--help"], "--workdir")):
        proc = subprocess.run([sys.executable, str(script), *args], cwd=str(away), env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and expect in proc.stdout, (args, proc.stderr[-2000:])
    # An experiment named from any folder trains (a relative workdir lands in that folder).
    proc = subprocess.run([sys.executable, str(script), "train", "--config=saehd:tiny",
                           f"--config.data.a={grid_faces['a']}",
                           f"--config.data.b={grid_faces['b']}", "--config.num_steps=2",
                           "--config.eval_every=0", "--config.preview_every=0",
                           "--config.data.workers=0", "--workdir=run"],
                          cwd=str(away), env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (away / "run" / "checkpoints" / "2").is_dir()
    assert json.load(open(away / "run" / "config.json"))["task"] == "saehd"


@pytest.mark.slow
def test_the_gpu_requirements_resolve(tmp_path):
    """requirements-gpu.txt: the tested set plus JAX's CUDA plugin at the pinned JAX version
    (pip's resolver against the package registry; downloads only metadata)."""
    import json
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "-q",
                           "--ignore-installed", "-r", os.path.join(ROOT, "requirements-gpu.txt"),
                           "--report", str(report)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    chosen = {i["metadata"]["name"]: i["metadata"]["version"]
              for i in json.load(open(report))["install"]}
    assert chosen["jax"] == chosen["jaxlib"] == chosen["jax-cuda12-plugin"] == "0.10.2"

"""Writes docs/options.md, the reference of every `facejax` subcommand's flags, of the
experiments' settings and of the exit statuses, from the code itself, so it cannot go stale.

    python tools/options_doc.py            # prints a diff against docs/options.md; exit 1 if any
    python tools/options_doc.py --write    # rewrites docs/options.md

Each command module defines its flags in absl's global FLAGS, and two commands may define a flag
of the same name (`--model`, `--detector`): each command's flags are read in a process of its
own, as `facejax COMMAND` runs one command per process; the processes run side by side.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import difflib
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUT = os.path.join(ROOT, "docs", "options.md")
GENERATOR = "tools/options_doc.py"

# Run as `python -c _READ_FLAGS COMMAND` from ROOT: one JSON line, the command's flags. The flags
# its module defines, and any that modules of facejax define on its behalf, but not absl's own.
_READ_FLAGS = r"""
import importlib, json, sys
from absl import flags
before = set(flags.FLAGS)
module = importlib.import_module("facejax.commands." + sys.argv[1])
out = []
for name in sorted(set(flags.FLAGS) - before):
    flag = flags.FLAGS[name]
    if name != flag.name:  # a short name
        continue
    defining = flags.FLAGS.find_module_defining_flag(name) or ""
    if not defining.startswith("facejax"):
        continue
    parser = flag.parser
    required = any("must have a value other than None" in str(getattr(v, "message", ""))
                   for v in flag.validators)
    out.append({
        "name": name,
        "type": flag.flag_type(),
        "default": None if flag.default is None else (flag.default_as_str or ""),
        "help": flag.help or "",
        "choices": list(getattr(parser, "enum_values", None) or []),
        "bounds": [getattr(parser, "lower_bound", None), getattr(parser, "upper_bound", None)],
        "required": required,
    })
print(json.dumps({"doc": (module.__doc__ or "").strip(), "flags": out}))
"""


# Run as `python -c _READ_EXPERIMENTS` from ROOT: one JSON line, {experiment: {KEY: default}} of
# every experiment `--config=NAME` names (facejax.cli), each at its default variant.
_READ_EXPERIMENTS = r"""
import importlib.util, json
from facejax import cli

def flat(d, prefix=""):
    for key, value in d.items():
        if isinstance(value, dict):
            yield from flat(value, prefix + key + ".")
        else:
            yield prefix + key, value if isinstance(value, str) else repr(value)

out = {}
for name in cli.experiments():
    path = cli.experiment_path(name).partition(":")[0]
    spec = importlib.util.spec_from_file_location("experiment_" + name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out[name] = dict(flat(module.get_config().to_dict()))
print(json.dumps(out))
"""


def command_names() -> list[str]:
    """The subcommands, as `facejax --help` lists them (facejax.cli.commands)."""
    sys.path.insert(0, ROOT)
    from facejax import cli
    return list(cli.commands())


def _run_python(code: str, *args: str, what: str) -> dict:
    """The JSON object that the last output line of `python -c code args` (run from ROOT) is."""
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("FACEJAX_SHARED", None)
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise SystemExit(f"{GENERATOR}: reading {what} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def read_experiments() -> dict:
    """{experiment: {KEY: its default, as text}}."""
    return _run_python(_READ_EXPERIMENTS, what="the experiments' settings")


def read_flags(command: str) -> dict:
    """{doc: the command's docstring, flags: [{name, type, default, help, ...}]}."""
    return _run_python(_READ_FLAGS, command, what=f"the flags of facejax {command}")


def _portable(value: str) -> str:
    """A default as any checkout shows it: the shared folder beside the checkout (see
    facejax/samples.py) as ../shared, the checkout as ., the home folder as ~."""
    places = ((os.path.join(os.path.dirname(ROOT), "shared"), "../shared"), (ROOT, "."),
              (os.path.expanduser("~"), "~"))
    for path, name in places:
        if path.rstrip("/") == "":
            continue
        value = re.sub(re.escape(path) + r"(?=/|'|,|$)", name, value)
    return value


def _cell(text: str) -> str:
    """Text for a Markdown table cell: one line, `|` escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _default(flag: dict) -> str:
    if flag["required"]:
        return "required"
    if flag["default"] is None:
        return "none"
    value = _portable(flag["default"])
    if value in ("", "''", '""'):
        return "empty"
    if value.startswith("'") and value.endswith("'") and len(value) >= 2:
        value = value[1:-1]
    return f"`{value}`"


def _type(flag: dict) -> str:
    names = {"int": "integer", "float": "number", "bool": "bool", "string": "string",
             "comma separated list of strings": "list"}
    kind = flag["type"]
    if flag["choices"]:
        return "one of " + ", ".join(f"`{c}`" for c in flag["choices"])
    if kind.startswith("config"):  # ml_collections' config_file flag
        return "experiment"
    text = names.get(kind, kind)
    low, high = flag["bounds"]
    if low is not None and high is not None:
        text += f", {low} to {high}"
    elif low is not None:
        text += f" >= {low}"
    elif high is not None:
        text += f" <= {high}"
    return text


def _help(flag: dict) -> str:
    """The flag's help without the `<a|b>: ` that absl puts before an enum's."""
    return re.sub(r"^<[^>]*>:\s*", "", flag["help"]) if flag["choices"] else flag["help"]


def command_section(command: str, found: dict) -> list[str]:
    """One command's heading, docstring (what `facejax COMMAND --help` prints first) and flag
    table."""
    lines = [f"## facejax {command}", ""]
    if found["doc"]:  # plain text, as --help prints it
        lines += ["```text", *found["doc"].splitlines(), "```", ""]
    if not found["flags"]:
        return lines + ["No flags.", ""]
    lines += ["| Flag | Type | Default | Meaning |", "| --- | --- | --- | --- |"]
    for flag in found["flags"]:
        name = f"`--{flag['name']}`"
        if flag["type"] == "bool":
            name += f" / `--no{flag['name']}`"
        lines.append(f"| {name} | {_cell(_type(flag))} | {_cell(_default(flag))} | "
                     f"{_cell(_help(flag))} |")
    return lines + [""]


def experiment_section(experiments: dict) -> list[str]:
    """One table of every `--config.KEY` and its default in each experiment."""
    names = list(experiments)
    keys = sorted(set().union(*(set(e) for e in experiments.values())))
    lines = ["## Experiment settings", "",
             "`facejax train --config=NAME[:VARIANT] --config.KEY=VALUE` overrides any of these.",
             "The defaults below are each experiment's default variant; what a setting means is",
             "said beside it in the experiment files (`experiments/`). A dash: the experiment",
             "has no such setting.", "",
             "| Key | " + " | ".join(f"`{n}`" for n in names) + " |",
             "| --- |" + " --- |" * len(names)]
    for key in keys:
        cells = []
        for name in names:
            value = experiments[name].get(key)
            cells.append("-" if value is None else "empty" if value == "" else
                         f"`{_portable(value)}`")
        lines.append(f"| `{key}` | " + " | ".join(_cell(c) for c in cells) + " |")
    return lines + [""]


def _constant(path: str, dotted: str) -> int:
    """An integer constant of a module of facejax, read from its source without importing it
    (facejax.train imports JAX): `NAME` at module level or `Class.NAME`."""
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    *owner, name = dotted.split(".")
    body = tree.body
    if owner:
        body = next(n.body for n in tree.body
                    if isinstance(n, ast.ClassDef) and n.name == owner[0])
    for node in body:
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)):
            return node.value.value
    raise SystemExit(f"{GENERATOR}: {path} no longer defines {dotted}; update the exit-status "
                     "table in the generator")


def exit_status_section() -> list[str]:
    """The exit statuses of every command, with the codes read from the code that sets them."""
    run_error = _constant("facejax/errors.py", "RunError.exit_code")
    diverged = _constant("facejax/train.py", "Diverged.exit_code")
    peer_lost = _constant("facejax/supervise.py", "PEER_LOST")
    rows = [
        ("0", "Done. Also `--help`, and `facejax train` stopped by SIGTERM or Ctrl-C "
              "(it saves a checkpoint first; stopped before training starts, while it waits for "
              "another run to prepare a dataset or while it prepares one, it says so on one line "
              "and keeps nothing of that dataset)."),
        (str(run_error), "The run cannot go on (`errors.RunError`): a failed save, a full disk "
                         "(`OutOfSpace`), FFmpeg failing, a dataset that cannot be prepared; "
                         "`facejax extract` with no face extracted."),
        ("2", "Bad input (`errors.UserError`): a bad or missing flag, a config value out of "
              "range, a file that cannot be read, an unknown command, `facejax` alone."),
        (str(diverged), "`facejax train`: a non-finite loss or gradient (`train.Diverged`); "
                        "nothing non-finite is saved. `--config.rollback=N` goes on instead."),
        (str(peer_lost), "`facejax train --distributed`: another process of the job stopped "
                         "(`supervise.PEER_LOST`); restart every process to resume."),
        ("128+N", "Killed by signal N: the shell shows 128+N (137: SIGKILL). `facejax train "
                  "--distributed` exits so when its training process is killed."),
    ]
    lines = ["## Exit statuses", "",
             "Every command prints its error on one line, `error: ...`, on stderr.", "",
             "| Status | Meaning |", "| --- | --- |"]
    return lines + [f"| {code} | {_cell(text)} |" for code, text in rows] + [""]


def render() -> str:
    """The whole of docs/options.md."""
    names = command_names()
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        experiments = pool.submit(read_experiments)
        found = dict(zip(names, pool.map(read_flags, names)))
        experiments = experiments.result()
    lines = [
        "# Command-line options",
        "",
        f"Generated from the flags by `{GENERATOR}`: do not edit by hand. After changing a flag,",
        f"run `.venv/bin/python {GENERATOR} --write`; `tests/test_docs.py` checks that this",
        "page is current.",
        "",
        "`facejax COMMAND --help` prints the same flags. Give them as `--flag=value`; a bool",
        "flag as `--flag` or `--noflag`; a list as comma-separated values.",
        "",
        "Commands: " + ", ".join(f"[{n}](#facejax-{n})" for n in names) + "; "
        "[experiment settings](#experiment-settings) (`--config.KEY=VALUE`); "
        "[exit statuses](#exit-statuses).",
        "",
    ]
    for name in names:
        lines += command_section(name, found[name])
    lines += experiment_section(experiments)
    lines += exit_status_section()
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite docs/options.md")
    args = parser.parse_args()
    text = render()
    if args.write:
        with open(OUTPUT, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote {os.path.relpath(OUTPUT, ROOT)}")
        return 0
    current = open(OUTPUT, encoding="utf-8").read() if os.path.exists(OUTPUT) else ""
    diff = list(difflib.unified_diff(current.splitlines(keepends=True),
                                     text.splitlines(keepends=True),
                                     "docs/options.md", "generated"))
    if not diff:
        print("docs/options.md is current")
        return 0
    sys.stdout.writelines(diff)
    print(f"\ndocs/options.md is stale: run .venv/bin/python {GENERATOR} --write")
    return 1


if __name__ == "__main__":
    sys.exit(main())

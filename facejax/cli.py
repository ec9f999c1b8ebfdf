"""The `facejax` command: its subcommands (modules of facejax/commands), their --help, experiment
names for --config, one-line errors and exit codes.

    facejax COMMAND [--flag=value ...]      # facejax --help lists the commands
    python -m facejax COMMAND ...           # the same
    python tools/COMMAND.py ...             # the same, from a checkout without installing
"""

from __future__ import annotations

import ast
import importlib.util
import os
import sys
import warnings
from typing import Callable

from facejax.errors import RunError, UserError, one_line


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _last_line(err: BaseException) -> str:
    """The message of a flag error: config_flags wraps an experiment file's exception in the
    whole traceback text; its last line is the exception itself."""
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    if len(text) > 1 and text[0] == text[-1] == "'":  # a KeyError's repr of its message
        try:
            text = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            pass
    if "Traceback (most recent call last)" in text:
        lines = [line for line in text.strip().splitlines() if line.strip()]
        head = text.split(": Error whilst parsing", 1)[0] if text.startswith("flag --") else ""
        return one_line(f"{head}: {lines[-1]}" if head else lines[-1])
    return one_line(text)


def _check_config_files(flag_values) -> None:
    """An experiment file that could not be loaded (config_flags keeps the error until the
    config is used): one line naming the flag and the file."""
    for name in flag_values:
        value = flag_values[name].value
        if type(value).__name__ != "_ErrorConfig":
            continue
        try:
            value.lock  # re-raises the loading error
        except OSError as e:
            cause = e.__cause__ or e
            attempts = [line.strip() for line in str(cause).splitlines() if line.strip()]
            reason = attempts[-1] if attempts else one_line(cause)
            _fail(f"--{name}: cannot load the experiment file ({reason})")


COMMANDS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "commands")
# The experiments/ folder, found without running its code: installed as facejax.experiments, or
# registered under that name from a checkout (facejax/__init__.py).
EXPERIMENTS_DIR = importlib.util.find_spec("facejax.experiments").submodule_search_locations[0]
HELP = ("--help", "-h", "-?", "--helpshort")


def commands() -> dict[str, str]:
    """{name: the first line of its docstring} of every subcommand, read without importing them
    (each module defines its own flags)."""
    out = {}
    for name in sorted(os.listdir(COMMANDS_DIR)):
        if name.endswith(".py") and not name.startswith("_"):
            with open(os.path.join(COMMANDS_DIR, name), encoding="utf-8") as f:
                doc = ast.get_docstring(ast.parse(f.read())) or ""
            out[name[:-3]] = doc.strip().splitlines()[0] if doc.strip() else ""
    return out


def experiment_path(value: str) -> str:
    """--config's value with an experiment name (`saehd`, `saehd:df64`, or the checkout path
    `experiments/saehd.py[:VARIANT]`) turned into the path of the experiment shipped in the
    package; a file that exists is kept as given."""
    path, sep, variant = value.partition(":")
    if os.path.exists(path):
        return value
    name = path[len("experiments/"):] if path.startswith("experiments/") else path
    name = name[:-3] if name.endswith(".py") else name
    if name in experiments():
        return os.path.join(EXPERIMENTS_DIR, name + ".py") + sep + variant
    return value


def experiments() -> list[str]:
    """Names of the experiments shipped in experiments/ (the files with a get_config)."""
    out = []
    for name in sorted(os.listdir(EXPERIMENTS_DIR)):
        if name.endswith(".py") and not name.startswith("_"):
            with open(os.path.join(EXPERIMENTS_DIR, name), encoding="utf-8") as f:
                if "\ndef get_config(" in f.read():
                    out.append(name[:-3])
    return out


def _with_experiment_paths(argv: list[str]) -> list[str]:
    out = list(argv)
    for i, arg in enumerate(out):
        if arg.startswith("--config="):
            out[i] = "--config=" + experiment_path(arg[len("--config="):])
        elif arg == "--config" and i + 1 < len(out):
            out[i + 1] = experiment_path(out[i + 1])
    return out


def _print_help(program: str, doc: str, module: str, full: bool) -> None:
    from absl import flags
    print(doc.strip() if doc else program)
    print()
    text = flags.FLAGS.get_help() if full else flags.FLAGS.module_help(module)
    print(text if text.strip() else "(no flags)")
    if not full:
        print(f"\n{program} --helpfull also lists the flags of the libraries (absl, JAX).")


def set_started_jax(settings: dict) -> None:
    """JAX config `settings` for a JAX this process has already imported (a command's module
    imports it before its flags are parsed), which no longer reads the environment."""
    if settings and "jax" in sys.modules:
        import jax
        for name, value in settings.items():
            jax.config.update(name, value)


def run_main(main: Callable, argv: list[str] | None = None, doc: str = "",
             module: str = "") -> None:
    """Like absl's `app.run(main)` on `argv` (default sys.argv), with bad flags and UserError
    printed on one line, exit 2; a RunError on one line with its own exit status; --help
    (the flags of `module`, after `doc`) and --helpfull printed, exit 0. First restarts the
    process with huge pages for large allocations (`xla_setup.use_huge_pages`) and turns on
    the compilation cache (`xla_setup.use_compilation_cache`)."""
    import absl.logging  # noqa: F401  (absl's logging flags: --verbosity, --logtostderr, ...)
    from absl import flags

    argv = list(sys.argv if argv is None else argv)
    wants = [a for a in argv[1:] if a in HELP or a == "--helpfull"]
    if wants:
        _print_help(argv[0], doc, module or "__main__", full="--helpfull" in wants)
        sys.exit(0)

    # TensorFlow's C++ start-up lines (CPU features, oneDNN, cuda not found) say nothing to a
    # facejax user; errors still show. Before the restart below, so the restart inherits it.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from facejax import xla_setup
    xla_setup.use_huge_pages()
    set_started_jax(xla_setup.use_compilation_cache())
    # A cache entry JAX cannot write or read (another process sharing the cache evicted it
    # meanwhile, a full disk) costs a compilation, nothing else; JAX says so in a multi-line
    # warning per entry that buries a tool's own lines.
    warnings.filterwarnings("ignore", message="Error (reading|writing) persistent compilation "
                            "cache entry", category=UserWarning)

    # Parse first, so a misspelt or ill-typed flag (config_flags raises plain AttributeError,
    # KeyError, TypeError or ValueError for `--config.key=value`) is one line, not a traceback;
    # and once (not again by absl's app.run: a second parse would redefine config overrides).
    try:
        argv = flags.FLAGS(_with_experiment_paths(argv))
    except flags.Error as e:
        _fail(_last_line(e))
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        _fail(f"bad flag value: {_last_line(e)}")
    _check_config_files(flags.FLAGS)

    try:
        sys.exit(main(argv))
    except UserError as e:
        _fail(one_line(e))
    except RunError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        sys.exit(e.exit_code)


def main(argv: list[str] | None = None) -> None:
    """`facejax COMMAND ...`: runs facejax/commands/COMMAND.py's main under `run_main`."""
    import importlib

    argv = list(sys.argv if argv is None else argv)
    table = commands()
    listing = "\n".join(f"  {name:<10} {line}" for name, line in table.items())
    usage = (f"usage: facejax COMMAND [--flag=value ...]\n\ncommands:\n{listing}\n\n"
             "facejax COMMAND --help lists a command's flags.")
    if len(argv) < 2 or argv[1] in HELP or argv[1] in ("help", "--helpfull"):
        print(usage)
        sys.exit(0 if len(argv) >= 2 else 2)
    name = argv[1]
    if name not in table:
        _fail(f"unknown command {name!r}; expected one of {', '.join(table)} (facejax --help)")
    module = importlib.import_module(f"facejax.commands.{name}")
    run_main(module.main, [f"facejax {name}", *argv[2:]], module.__doc__ or "", module.__name__)

"""The docs say what the code does: the committed docs/options.md is what tools/options_doc.py
writes from the flags today, and every command the README and docs/cpu.md show uses flags that
its subcommand defines."""

import os
import re
import subprocess
import sys

import pytest

from tests.helpers import ROOT

GENERATOR = os.path.join(ROOT, "tools", "options_doc.py")
OPTIONS = os.path.join(ROOT, "docs", "options.md")
GUIDES = ("README.md", "docs/cpu.md")
OTHER_PROGRAMS_FLAGS = {"logdir"}  # tensorboard --logdir


def _read(path: str) -> str:
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def test_options_page_matches_the_flags():
    proc = subprocess.run([sys.executable, GENERATOR], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, (
        "docs/options.md differs from the flags: run `.venv/bin/python tools/options_doc.py "
        f"--write` and commit it.\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}")


def _documented_flags() -> dict[str, set[str]]:
    """{command: its flag names}, from docs/options.md's tables."""
    out, command = {}, None
    for line in _read("docs/options.md").splitlines():
        heading = re.match(r"## facejax (\w+)$", line)
        if heading:
            command = out.setdefault(heading.group(1), {"help", "helpfull"})
        elif command is not None and line.startswith("| `--"):
            command.update(re.findall(r"`--(\w+)`", line.split(" | ")[0]))
    return out


def _shown_commands(text: str) -> list[str]:
    """The command lines in `text`'s code: indented blocks (continuation lines joined) and
    inline code spans."""
    text = re.sub(r"\\\n\s*", " ", text)
    code = [line for line in text.splitlines() if line.startswith("    ")]
    code += re.findall(r"`([^`\n]+)`", text)
    return code


@pytest.mark.parametrize("guide", GUIDES)
def test_commands_shown_use_flags_their_command_defines(guide):
    flags = _documented_flags()
    assert "train" in flags and "workdir" in flags["train"], "docs/options.md lost its tables"
    wrong = []
    for line in _shown_commands(_read(guide)):
        for command, args in re.findall(r"(?:facejax |tools/)(\w+)(?:\.py)?((?: [^#]*)?)", line):
            if command not in flags:
                continue
            for name in re.findall(r"(?:^|\s)--(\w+)(?![.\w])", args):
                if name not in flags[command] and not (
                        name.startswith("no") and name[2:] in flags[command]):
                    wrong.append(f"facejax {command} --{name}")
    assert not wrong, f"{guide} shows flags its commands do not define: {wrong}"


@pytest.mark.parametrize("guide", GUIDES)
def test_every_flag_named_is_a_flag_of_some_command(guide):
    known = set().union(*_documented_flags().values(), OTHER_PROGRAMS_FLAGS)
    named = set()
    for code in _shown_commands(_read(guide)):
        named.update(re.findall(r"(?:^|[\s(])--(\w+)(?![.\w])", code))
    unknown = sorted(n for n in named if n not in known and not (
        n.startswith("no") and n[2:] in known))
    assert not unknown, f"{guide} names flags no command defines: {unknown}"


def test_options_page_lists_every_command_and_the_exit_statuses():
    text = _read("docs/options.md")
    from facejax import cli
    for name in cli.commands():
        assert f"\n## facejax {name}\n" in text, f"docs/options.md: no section for {name}"
    assert "\n## Exit statuses\n" in text
    assert "| `--workdir` | string | required |" in text  # facejax train's, marked required

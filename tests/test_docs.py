"""The committed docs/options.md is what tools/options_doc.py writes from the flags today."""

import os
import subprocess
import sys

from tests.conftest import ROOT

GENERATOR = os.path.join(ROOT, "tools", "options_doc.py")


def test_options_page_matches_the_flags():
    proc = subprocess.run([sys.executable, GENERATOR], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, (
        "docs/options.md differs from the flags: run `.venv/bin/python tools/options_doc.py "
        f"--write` and commit it.\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}")


def test_options_page_lists_every_command_and_the_exit_statuses():
    with open(os.path.join(ROOT, "docs", "options.md"), encoding="utf-8") as f:
        text = f.read()
    from facejax import cli
    for name in cli.commands():
        assert f"\n## facejax {name}\n" in text, f"docs/options.md: no section for {name}"
    assert "\n## Exit statuses\n" in text
    assert "| `--workdir` | string | required |" in text  # facejax train's, marked required

"""The benchmark scripts as typed: every command of docs/benchmarks.md parses with its script's
parser and names existing config files, and every script answers --help without importing
torch."""

import os
import re
import shlex
import subprocess
import sys

from tests.common import REPO_ROOT
from tests.scripts import load_script

DOC = os.path.join(REPO_ROOT, "docs", "benchmarks.md")


def _is_script(path: str) -> bool:
    with open(path) as f:
        return f.readline().startswith("#!")


FOLDER = os.path.join(REPO_ROOT, "tools", "benchmarks")
SCRIPTS = sorted(
    f"tools/benchmarks/{name}"
    for name in os.listdir(FOLDER)
    if name.endswith(".py") and _is_script(os.path.join(FOLDER, name))
)


def _commands():
    """argv of every `python tools/benchmarks/...` line of the doc's bash blocks."""
    with open(DOC) as f:
        blocks = re.findall(r"```bash\n(.*?)```", f.read(), flags=re.S)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line.split("  #")[0])
            while argv and "=" in argv[0]:  # environment variables
                argv = argv[1:]
            if argv[:1] == ["python"] and argv[1].startswith("tools/benchmarks/"):
                commands.append(argv[1:])
    return commands


def test_every_documented_command_parses_and_names_existing_configs():
    commands = _commands()
    assert {script for script, *_ in commands} == set(SCRIPTS)  # each script documented
    for script, *args in commands:
        parsed = load_script(script).parse_args(args)
        config = getattr(parsed, "config_file", None)
        if config:
            assert os.path.isfile(os.path.join(REPO_ROOT, config)), (script, config)


HELP = """
import runpy, sys
for script in {scripts!r}:
    sys.argv = [script, "--help"]
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        assert e.code == 0, (script, e.code)
print("heavy:", sorted(m for m in ("torch", "detectron2", "maskformer") if m in sys.modules))
"""


def test_help_answers_before_heavy_imports():
    run = subprocess.run(
        [sys.executable, "-c", HELP.format(scripts=SCRIPTS)],
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=REPO_ROOT),
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "heavy: []" in run.stdout
    assert run.stdout.count("usage: ") == len(SCRIPTS)

"""Importing the repository's stand-alone scripts (datasets/*.py, tools/*.py) in tests."""

import importlib.util
import os
import subprocess
import sys
from typing import Dict, Optional

from tests.common import REPO_ROOT


def load_script(relative_path: str):
    """Import a script that is not in a package (datasets/*.py, tools/*.py) as a module."""
    path = os.path.join(REPO_ROOT, relative_path)
    name = "_script_" + os.path.splitext(relative_path)[0].replace("/", "_")
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        # Registered so that worker processes can unpickle the script's job functions.
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def run_script(
    relative_path: str, *args, cwd: Optional[str] = None, env: Optional[Dict[str, str]] = None
) -> subprocess.CompletedProcess:
    """Run a script as a user does, `python <script> args...`, with this checkout importable;
    `env` is added to the environment."""
    return subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, relative_path), *map(str, args)],
        cwd=cwd or REPO_ROOT,
        env={**os.environ, "PYTHONPATH": REPO_ROOT, **(env or {})},
        capture_output=True,
        text=True,
    )

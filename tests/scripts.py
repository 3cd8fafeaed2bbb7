"""Importing the repository's stand-alone scripts (datasets/*.py, tools/*.py) in tests."""

import importlib.util
import os
import sys

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

"""Every script answers --help at once: before importing torch (and so Detectron2 and
maskformer, which import it). Scripts are found by globbing, so a new one is covered."""

import glob
import os
import subprocess
import sys

import pytest

from tests.common import REPO_ROOT
from tests.scripts import run_script

EXCLUDED = {
    # Measurement harnesses that are being moved out of tools/ by another change.
    "tools/benchmark.py": "moving out of tools/",
    "tools/benchmark_evaluation.py": "moving out of tools/",
    "tools/batch_agreement.py": "moving out of tools/",
    # Its parser is Detectron2's default_argument_parser; handled with train_net's rewrite.
    "train_net.py": "handled with train_net.py's rewrite",
}
SCRIPTS = sorted(
    os.path.relpath(path, REPO_ROOT)
    for pattern in ("*.py", "demo/*.py", "tools/*.py", "datasets/*.py")
    for path in glob.glob(os.path.join(REPO_ROOT, pattern))
    if os.path.relpath(path, REPO_ROOT) not in EXCLUDED
)


@pytest.fixture(scope="module")
def no_torch(tmp_path_factory):
    """PYTHONPATH entries under which `import torch` raises ImportError."""
    root = tmp_path_factory.mktemp("no_torch")
    (root / "torch").mkdir()
    (root / "torch" / "__init__.py").write_text(
        'raise ImportError("torch imported before --help was answered")\n'
    )
    return f"{root}{os.pathsep}{REPO_ROOT}"


def test_the_fake_torch_is_what_gets_imported(no_torch):
    run = subprocess.run(
        [sys.executable, "-c", "import torch"],
        env={**os.environ, "PYTHONPATH": no_torch},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1 and "torch imported before --help was answered" in run.stderr


def test_scripts_are_found():
    assert {"demo/demo.py", "tools/export_model.py", "datasets/prepare_ade20k_sem_seg.py"} <= set(
        SCRIPTS
    )


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_answers_without_importing_torch(script, no_torch):
    run = run_script(script, "--help", env={"PYTHONPATH": no_torch})
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.startswith("usage: ") and run.stderr == ""

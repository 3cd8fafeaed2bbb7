import atexit
import os
import shutil
import tempfile

# Generated datasets (the quickstart) go to a per-user temporary cache during tests, set before
# `maskformer` is imported (registration reads it), and inherited by subprocesses.
os.environ.setdefault(
    "MASKFORMER_CACHE", os.path.join(tempfile.gettempdir(), f"maskformer-tests-{os.getuid()}")
)
# Dataset descriptions (tools/register_dataset.py): an empty directory of this session, so that
# the user's own descriptions are not registered in the tests and the tests write none there.
os.environ["MASKFORMER_DATASETS_DIR"] = tempfile.mkdtemp(prefix="maskformer-test-datasets-")
atexit.register(shutil.rmtree, os.environ["MASKFORMER_DATASETS_DIR"], ignore_errors=True)
# The suite runs the bfloat16 paths on whatever CPU it is on; where bfloat16 is slow they are
# refused unless this is set (maskformer/utils/bfloat16.py). The refusal's own test unsets it.
os.environ.setdefault("MASKFORMER_ALLOW_SLOW_BFLOAT16", "1")

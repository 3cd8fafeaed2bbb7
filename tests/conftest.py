import os
import tempfile

# Generated datasets (the quickstart) go to a per-user temporary cache during tests, set before
# `maskformer` is imported (registration reads it), and inherited by subprocesses.
os.environ.setdefault(
    "MASKFORMER_CACHE", os.path.join(tempfile.gettempdir(), f"maskformer-tests-{os.getuid()}")
)

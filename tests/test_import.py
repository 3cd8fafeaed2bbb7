"""`import maskformer` registers the model parts and the built-in datasets, and does nothing else:
it patches nothing in Detectron2 (or fvcore) and reads or writes nothing in the home directory."""

import json
import os
import subprocess
import sys
import textwrap

from tests.common import REPO_ROOT

# Run in a fresh interpreter: snapshot every attribute of the Detectron2 and fvcore modules (and
# of their classes) that maskformer's import can reach, import maskformer while an audit hook
# records every file opened, and compare.
_PROBE = textwrap.dedent(
    """
    import importlib, json, os, pkgutil, sys, types

    import detectron2, fvcore
    for package in (detectron2, fvcore):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if ".tests" in info.name or "model_zoo.configs" in info.name:
                continue
            try:
                importlib.import_module(info.name)
            except Exception:  # optional dependencies of unused parts
                pass

    def snapshot():
        seen = {}
        for name, module in list(sys.modules.items()):
            if not name.startswith(("detectron2", "fvcore")) or module is None:
                continue
            for attr, value in list(vars(module).items()):
                if isinstance(value, types.ModuleType):
                    continue  # submodules become attributes when they are imported
                seen[f"{name}.{attr}"] = id(value)
                if isinstance(value, type) and value.__module__ == name:
                    for k, v in list(vars(value).items()):
                        seen[f"{name}.{attr}.{k}"] = id(v)
        return seen

    before = snapshot()
    opened = []
    sys.addaudithook(
        lambda event, args: opened.append(str(args[0]))
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)) else None
    )
    import maskformer  # noqa: F401
    after = snapshot()
    from detectron2.data import DatasetCatalog
    from detectron2.modeling import META_ARCH_REGISTRY
    print(json.dumps({
        "changed": sorted(k for k in before if k in after and before[k] != after[k]),
        "removed": sorted(k for k in before if k not in after),
        "opened": sorted(set(opened)),
        "datasets": DatasetCatalog.list(),
        "meta_archs": [name for name, _ in META_ARCH_REGISTRY],
    }))
    """
)


def test_import_patches_nothing_and_reads_no_user_file(tmp_path):
    home = tmp_path / "home"
    described = home / ".config" / "maskformer" / "datasets"
    described.mkdir(parents=True)
    (described / "mine.json").write_text(
        json.dumps({"format": "maskformer-dataset-v1", "name": "my_photos", "type": "semantic"})
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MASKFORMER_", "XDG_"))}
    env.update(HOME=str(home), PYTHONPATH=REPO_ROOT, MPLCONFIGDIR=str(tmp_path / "mpl"))
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, cwd=str(tmp_path), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["changed"] == [] and result["removed"] == []
    assert [p for p in result["opened"] if p.startswith(str(home))] == []
    assert sorted(os.listdir(home)) == [".config"]  # nothing created either
    # It did register: the model parts and the built-in datasets, not the user's described one.
    assert "MaskFormer" in result["meta_archs"]
    assert "ade20k_sem_seg_val" in result["datasets"]
    assert "my_photos" not in result["datasets"]

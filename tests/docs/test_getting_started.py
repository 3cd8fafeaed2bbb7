"""GETTING_STARTED.md: every command parses, and the walkthrough's commands run as written on a
small stand-in for the quickstart data (register, list, check, train, evaluate, demo)."""

import os
import re
import shlex

import pytest

import train_net
from maskformer import get_maskformer_cfg
from maskformer.data.datasets.quickstart import QUICKSTART_CLASSES, write_shapes_split
from maskformer.data.datasets.quickstart_panoptic import write_panoptic_split
from tests.common import REPO_ROOT
from tests.engine.test_train_net import TINY
from tests.scripts import load_script

DOC = os.path.join(REPO_ROOT, "GETTING_STARTED.md")
demo = load_script("demo/demo.py")
register_tool = load_script("tools/register_dataset.py")
check_tool = load_script("tools/check_dataset.py")
PARSERS = {
    "tools/register_dataset.py": register_tool.get_parser,
    "tools/check_dataset.py": check_tool.get_parser,
    "demo/demo.py": demo.get_parser,
    "train_net.py": train_net.default_argument_parser,
}


def _blocks(language):
    with open(DOC) as f:
        return re.findall(rf"```{language}\n(.*?)```", f.read(), flags=re.S)


def _commands():
    """(section, argv) of every `python <script>` line of the bash blocks, in order."""
    with open(DOC) as f:
        text = f.read()
    commands = []
    for match in re.finditer(r"```bash\n(.*?)```", text, flags=re.S):
        section = text[: match.start()].rsplit("\n## ", 1)[-1].split("\n")[0]
        for line in match.group(1).replace("\\\n", " ").splitlines():
            argv = shlex.split(line.split("  #")[0])
            if argv[:1] == ["python"] and argv[1] in PARSERS:
                commands.append((section, argv[1:]))
    return commands


def test_every_command_parses_and_names_existing_files():
    commands = _commands()
    assert {script for _, (script, *_) in commands} == set(PARSERS)
    for _, (script, *args) in commands:
        parsed = PARSERS[script]().parse_args(args)
        config = getattr(parsed, "config_file", "")
        if config and config != "my_shapes.yaml":
            assert os.path.isfile(os.path.join(REPO_ROOT, config)), config
    (config,) = _blocks("yaml")
    base = re.search(r"_BASE_: (\S+)", config).group(1)
    assert os.path.isfile(os.path.join(REPO_ROOT, base))


def _run(argv, qs, pan):
    """Run one documented command in this process, on the stand-in data, at test size."""
    script, *args = [a.replace("$QS", qs).replace("DIR", pan) for a in argv]
    if script == "train_net.py":
        opts = [*TINY, "SOLVER.MAX_ITER", "2", "TEST.EVAL_PERIOD", "2"]
        return train_net.main(train_net.default_argument_parser().parse_args(args + opts))
    if script == "demo/demo.py":
        return demo.main(args + TINY)  # after --opts
    tool = register_tool if script == "tools/register_dataset.py" else check_tool
    return tool.main(args)


@pytest.mark.slow
def test_walkthrough_as_written(tmp_path, monkeypatch):
    # The quickstart layout, a few small images; commands run from a fresh working directory
    # (classes.txt, my_shapes.yaml, output/ are relative to it).
    qs, pan = tmp_path / "qs", tmp_path / "pan"
    write_shapes_split(str(qs), "training", 6, seed=1, size_range=(64, 80))
    write_shapes_split(str(qs), "validation", 3, seed=2, size_range=(64, 80))
    write_panoptic_split(str(pan), "val", 2, seed=3, size_range=(48, 56))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("MASKFORMER_DATASETS_DIR", str(tmp_path / "descriptions"))
    printf = next(line for line in _blocks("bash")[1].splitlines() if "classes.txt" in line)
    assert "\\n".join(QUICKSTART_CLASSES) in printf
    (work / "classes.txt").write_text("\n".join(QUICKSTART_CLASSES) + "\n")
    (config,) = _blocks("yaml")
    config = config.replace("_BASE_: configs/", f"_BASE_: {REPO_ROOT}/configs/")
    (work / "my_shapes.yaml").write_text(config)

    results = {}
    for section, argv in _commands():
        if section.startswith(("2.", "3.", "4.", "5.", "6.", "Panoptic")):
            results[" ".join(argv[:2])] = _run(argv, str(qs), str(pan))
    assert results["tools/register_dataset.py semantic"] == 0
    assert results["tools/register_dataset.py list"] == 0
    assert results["tools/register_dataset.py panoptic"] == 0
    assert results["tools/check_dataset.py shapes_train"] == 0
    assert results["tools/check_dataset.py my_pan_val"] == 0
    assert results["tools/register_dataset.py config"] == 0
    generated = get_maskformer_cfg(str(work / "my_data.yaml"))
    assert generated.DATASETS.TRAIN == ("shapes_train",)
    assert generated.DATASETS.TEST == ("shapes_val",)
    evaluated = results["train_net.py --config-file"]  # the eval-only run, last of the two
    assert 0.0 <= evaluated["sem_seg"]["mIoU"] <= 100.0
    assert os.path.isfile(work / "output" / "shapes" / "model_final.pth")
    assert results["demo/demo.py --config-file"] == 0
    overlays = sorted(os.listdir(work / "output" / "shapes" / "demo"))
    assert overlays == sorted(os.listdir(qs / "images" / "validation"))


def test_quickstart_time_and_miou_are_stated_once():
    # One measured statement, in GETTING_STARTED.md; the recipe and the quickstart's own texts
    # point there rather than repeat numbers that could come to disagree with it.
    numbers = re.compile(r"\d\s*(minutes|min\b)|\d\s*(validation\s+)?mIoU|mIoU\s*(of\s*)?~?\d")
    quickstart_files = [
        "configs/quickstart/maskformer_R18_quickstart.yaml",
        "tools/quickstart.py",
        "tools/quickstart.sh",
    ]
    for name in quickstart_files:
        with open(os.path.join(REPO_ROOT, name)) as f:
            assert not numbers.search(f.read()), name
    with open(os.path.join(REPO_ROOT, "README.md")) as f:
        quick_start = f.read().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert not numbers.search(quick_start)
    with open(DOC) as f:
        paragraphs = [p for p in f.read().split("\n\n") if numbers.search(p)]
    assert len(paragraphs) == 1 and "quickstart" in paragraphs[0]

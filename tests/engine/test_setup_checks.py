"""What train_net.py, the demo and the predictor can check, they check before they write
anything or start a worker: a missing weights file, class weights of the wrong length, an input
format without its normalisation values, bfloat16 on a CPU without bfloat16 instructions. Each is
one line naming the key or file, with exit status 2."""

import os

import pytest
import torch
from PIL import Image

import demo.demo as demo
import maskformer.utils.bfloat16 as bfloat16
import train_net
from maskformer.config import ConfigValueError, get_maskformer_cfg
from maskformer.predictor import MaskFormerPredictor
from tests.common import CONFIG_DIR, TINY_SWIN_OPTS
from tests.deploy.test_demo import SEMANTIC_CONFIG, SEMANTIC_OPTS, _rgb
from tests.engine.test_train_net import QUICKSTART, TINY
from tests.engine.test_train_net_refusals import _argv, _checkpoint, _refused


def test_training_from_a_weights_file_that_does_not_exist(tmp_path, capsys):
    missing = str(tmp_path / "nope.pth")
    line = _refused(capsys, tmp_path / "out", "MODEL.WEIGHTS", missing, eval_only=False)
    assert missing in line and "does not exist" in line


def test_two_processes_are_not_started_for_a_weights_file_that_does_not_exist(
    tmp_path, capsys, monkeypatch
):
    spawned = []
    monkeypatch.setattr(torch.multiprocessing, "start_processes", lambda *a, **k: spawned.append(a))
    missing = str(tmp_path / "nope.pth")
    argv = _argv(tmp_path / "out", "MODEL.WEIGHTS", missing, eval_only=False)
    assert train_net.cli(["--num-gpus", "2", *argv]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("train_net.py:")]
    assert len(err) == 1 and missing in err[0]
    assert spawned == [] and not (tmp_path / "out").exists()


def test_class_weights_of_the_wrong_length(tmp_path, capsys):
    line = _refused(capsys, tmp_path / "out", "MODEL.MASK_FORMER.CLASS_WEIGHTS", "[1.0, 2.0]",
                    eval_only=False)  # fmt: skip
    assert "MODEL.MASK_FORMER.CLASS_WEIGHTS" in line and "6" in line


def test_multichannel_format_without_its_normalisation(tmp_path, capsys):
    line = _refused(capsys, tmp_path / "out", "INPUT.FORMAT", "RGBN", eval_only=False)
    assert "INPUT.FORMAT 'RGBN' has 4 channels but MODEL.PIXEL_MEAN has 3" in line


def _demo_line(capsys, tmp_path, *opts):
    image = tmp_path / "a.png"
    Image.fromarray(_rgb(20, 30)).save(image)
    out = tmp_path / "o.png"
    argv = ["--config-file", SEMANTIC_CONFIG, "--input", str(image), "--output", str(out)]
    # No weights needed: the config is refused before the model is built.
    status = demo.main(argv + ["--opts", *SEMANTIC_OPTS, "MODEL.WEIGHTS", "", *opts])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("demo:")]
    assert status == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert not out.exists()
    return lines[0]


def test_demo_and_predictor_refuse_a_multichannel_format_without_its_normalisation(
    tmp_path, capsys
):
    line = _demo_line(capsys, tmp_path, "INPUT.FORMAT", "RGBN")
    assert "INPUT.FORMAT 'RGBN' has 4 channels but MODEL.PIXEL_MEAN has 3" in line
    cfg = get_maskformer_cfg(SEMANTIC_CONFIG, [*SEMANTIC_OPTS, "INPUT.FORMAT", "RGBN"])
    with pytest.raises(ConfigValueError, match="PIXEL_STD 3 values"):
        MaskFormerPredictor.from_config(cfg, allow_random_weights=True)


@pytest.fixture
def cpu_without_bfloat16(monkeypatch):
    monkeypatch.setattr(bfloat16, "cpu_has_native_bfloat16", lambda: False)
    monkeypatch.delenv(bfloat16.ALLOW_SLOW_BFLOAT16, raising=False)


def test_bfloat16_on_a_cpu_without_bfloat16_is_refused_unless_overridden(
    tmp_path, capsys, monkeypatch, cpu_without_bfloat16
):
    weights = _checkpoint(tmp_path / "w.pth")
    line = _refused(capsys, tmp_path / "out", "MODEL.WEIGHTS", weights,
                    "MODEL.MASK_FORMER.TEST.PRECISION", "bfloat16")  # fmt: skip
    assert "MODEL.MASK_FORMER.TEST.PRECISION asks for bfloat16" in line
    assert "use float32, or set MASKFORMER_ALLOW_SLOW_BFLOAT16=1" in line
    for precision in ("bfloat16", ""):  # "": the CPU's default, bfloat16
        line = _refused(capsys, tmp_path / "out", "SOLVER.AMP.ENABLED", "True",
                        "SOLVER.AMP.PRECISION", precision, eval_only=False)  # fmt: skip
        assert "SOLVER.AMP (bfloat16 on the CPU) asks for bfloat16" in line
    assert "asks for bfloat16" in _demo_line(
        capsys, tmp_path, "MODEL.MASK_FORMER.TEST.PRECISION", "bfloat16"
    )
    # float16 training does not use bfloat16; the override lets bfloat16 through.
    from maskformer.engine import check_config
    from tests.common import tiny_cfg

    check_config(tiny_cfg("SOLVER.AMP.ENABLED", True, "SOLVER.AMP.PRECISION", "float16"), False)
    monkeypatch.setenv(bfloat16.ALLOW_SLOW_BFLOAT16, "1")
    check_config(tiny_cfg("SOLVER.AMP.ENABLED", True), False)
    check_config(tiny_cfg("MODEL.MASK_FORMER.TEST.PRECISION", "bfloat16"), True)


def test_the_quickstart_config_passes_every_check():
    from maskformer.engine import check_config
    from tests.common import tiny_cfg

    cfg = tiny_cfg(config_file=QUICKSTART)
    check_config(cfg, eval_only=True)
    check_config(cfg, eval_only=False)
    assert os.path.isfile(os.path.join(CONFIG_DIR, QUICKSTART)) and TINY


def test_a_model_its_config_cannot_build_is_refused_before_anything_is_written(tmp_path, capsys):
    swin = [*map(str, TINY_SWIN_OPTS), "MODEL.SWIN.NUM_HEADS", "[1, 2]"]
    line = _refused(capsys, tmp_path / "out", *swin, eval_only=False)
    assert "MODEL.SWIN.NUM_HEADS [1, 2] must have one entry per stage" in line
    missing = str(tmp_path / "convnext.pth")
    line = _refused(capsys, tmp_path / "out",
                    "MODEL.BACKBONE.NAME", "build_timm_backbone", "MODEL.TIMM.NAME", "resnet18",
                    "MODEL.TIMM.PRETRAINED_WEIGHTS", missing, eval_only=False)  # fmt: skip
    assert f"MODEL.TIMM.PRETRAINED_WEIGHTS '{missing}' does not exist" in line

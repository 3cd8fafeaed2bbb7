"""Export of the network (images -> class and mask logits): torch.export and ONNX round trips."""

import os
import shlex
import subprocess
import sys

import onnxruntime
import pytest
import torch
from detectron2.modeling import build_model

from maskformer.export import MaskFormerLogits, export_program
from maskformer.modeling.inference_transforms import optimize_for_inference
from tests.common import REPO_ROOT, randomize_, tiny_cfg
from tests.scripts import load_script, run_script

# Frozen BN: with the inference transforms, the folded convolutions are what gets exported.
OPTS = ("MODEL.RESNETS.NORM", "FrozenBN", "MODEL.MASK_FORMER.SIZE_DIVISIBILITY", 32)


def _module(optimized=False):
    torch.manual_seed(0)
    model = randomize_(build_model(tiny_cfg(*OPTS)), seed=0).eval()
    if optimized:
        optimize_for_inference(model)  # channels-last included
    return model, MaskFormerLogits(model)


def _tool():
    return load_script("tools/export_model.py")


def test_logits_module_equals_the_models_own_network_pass():
    model, module = _module()
    image = torch.rand(3, 60, 70) * 255  # padded to 64 x 96 by the model and by the module
    with torch.no_grad():
        logits, masks = module(image[None])
        images = model.preprocess_image([{"image": image}])
        want = model.sem_seg_head(model.backbone(images.tensor))
    assert masks.shape == (1, 8, 16, 24)
    torch.testing.assert_close(logits, want["pred_logits"], rtol=0, atol=1e-5)
    torch.testing.assert_close(masks, want["pred_masks"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("optimized", [False, True])
def test_torch_export_round_trip(tmp_path, optimized):
    _, module = _module(optimized)
    # Saved weights are dense whatever the model's memory order.
    assert all(p.is_contiguous() for p in module.parameters())
    images = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(1)) * 255
    program = export_program(module, images)
    torch.export.save(program, str(tmp_path / "m.pt2"))
    loaded = torch.export.load(str(tmp_path / "m.pt2")).module()
    with torch.no_grad():
        want = module(images)
        got = loaded(images)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-4)


def test_onnx_export_runs_in_onnxruntime(tmp_path):
    cfg = tiny_cfg(*OPTS)
    (tmp_path / "tiny.yaml").write_text(cfg.dump())
    out = tmp_path / "tiny.onnx"
    argv = ["--config-file", str(tmp_path / "tiny.yaml"), "--format", "onnx"]
    argv += ["--output", str(out), "--size", "64", "96", "--batch", "2", "--allow-random-weights"]
    diffs = _tool().main(argv)
    assert set(diffs) == {"pred_logits", "pred_masks"}
    assert max(diffs.values()) < 1e-4
    assert sorted(os.listdir(tmp_path)) == ["tiny.onnx", "tiny.yaml"]  # no temporary left
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert [o.name for o in session.get_outputs()] == ["pred_logits", "pred_masks"]
    assert session.get_outputs()[1].shape == [2, 8, 16, 24]


def test_export_refuses_weights_that_leave_the_model_random(tmp_path):
    cfg = tiny_cfg(*OPTS)
    (tmp_path / "tiny.yaml").write_text(cfg.dump())
    out = tmp_path / "tiny.onnx"
    argv = ["--config-file", str(tmp_path / "tiny.yaml"), "--format", "onnx", "--output", str(out)]
    tool = _tool()
    with pytest.raises(tool.SetupError, match="MODEL.WEIGHTS is empty"):
        tool.main(argv)
    run = subprocess.run(
        [
            sys.executable,
            "tools/export_model.py",
            *argv,
            "--opts",
            "MODEL.MASK_FORMER.NUM_QUERY",
            "8",
        ],
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=REPO_ROOT),
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1].startswith("export_model: error: command-line")
    assert "MODEL.MASK_FORMER.NUM_QUERY" in run.stderr and "Traceback" not in run.stderr
    assert not out.exists()


def test_export_refuses_backbone_only_weights_in_one_line(tmp_path):
    cfg = tiny_cfg(*OPTS)
    (tmp_path / "tiny.yaml").write_text(cfg.dump())
    state = build_model(cfg).state_dict()
    torch.save({"model": {k: v for k, v in state.items() if k.startswith("backbone.")}},
               tmp_path / "backbone.pth")  # fmt: skip
    run = run_script("tools/export_model.py", "--config-file", tmp_path / "tiny.yaml",
                     "--format", "onnx", "--output", tmp_path / "tiny.onnx",
                     "--opts", "MODEL.WEIGHTS", tmp_path / "backbone.pth")  # fmt: skip
    assert run.returncode == 2
    # The refusal alone: not Detectron2's list of the tensors the file lacks before it.
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith(f"export_model: error: {tmp_path / 'backbone.pth'}: not trained")
    assert line.endswith("; or --allow-random-weights")
    assert run.stdout == ""
    assert sorted(os.listdir(tmp_path)) == ["backbone.pth", "tiny.yaml"]


def test_help_example_parses_and_names_existing_files():
    run = run_script("tools/export_model.py", "--help")
    assert run.returncode == 0
    # Printed as typed: one option group per line, continued with a backslash.
    assert "maskformer_R50.yaml \\\n        --format onnx" in run.stdout
    text = run.stdout.replace("\\\n", " ")
    (example,) = [ln for ln in text.splitlines() if ln.strip().startswith("python tools/export")]
    argv = shlex.split(example.split("  #")[0])[2:]
    args = _tool().parse_args(argv)
    assert args.format == "onnx" and args.size == [512, 512]
    assert args.opts == ["MODEL.WEIGHTS", "model_final_d8dbeb.pkl"]
    assert os.path.isfile(os.path.join(REPO_ROOT, args.config_file))

"""The ONNX Runtime path: a network exported with tools/export_model.py --dynamic, run by
`OnnxRuntimeMaskFormer`, the predictor and the demo, against the PyTorch model it came from."""

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from PIL import Image

from maskformer.checkpoint import MaskFormerCheckpointer
from maskformer.export import OnnxRuntimeMaskFormer
from maskformer.modeling.inference_transforms import optimize_from_config
from maskformer.predictor import MaskFormerPredictor
from tests.common import cfg_opts, randomize_, sample, tiny_cfg
from tests.scripts import load_script

# The quickstart dataset's classes (the demo draws with its metadata).
OPTS = cfg_opts(
    {
        "DATASETS.TEST": ("quickstart_sem_seg_val",),
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES": 6,
        "MODEL.RESNETS.NORM": "FrozenBN",
        "MODEL.MASK_FORMER.TEST.PANOPTIC_ON": True,
        "INPUT.MIN_SIZE_TEST": 48,
        "INPUT.MAX_SIZE_TEST": 96,
    }
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(config file, weights file, .onnx file, the eager model with the inference transforms)."""
    folder = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    model = randomize_(build_model(tiny_cfg(*OPTS)), seed=1).eval()  # some panoptic segment
    weights = str(folder / "tiny.pth")
    torch.save({"model": model.state_dict()}, weights)
    cfg = tiny_cfg(*OPTS, "MODEL.WEIGHTS", weights)
    config = folder / "tiny.yaml"
    config.write_text(cfg.dump())
    onnx_file = str(folder / "tiny.onnx")
    argv = ["--config-file", str(config), "--format", "onnx", "--dynamic"]
    diffs = load_script("tools/export_model.py").main(
        [*argv, "--output", onnx_file, "--size", "64", "96"]
    )
    assert max(diffs.values()) < 1e-4
    MaskFormerCheckpointer(model).load(weights)
    return str(config), weights, onnx_file, optimize_from_config(model, cfg)


def test_onnxruntime_model_equals_the_eager_model(exported):
    _, _, onnx_file, model = exported
    cfg = tiny_cfg(*OPTS)
    runtime = optimize_from_config(OnnxRuntimeMaskFormer.from_config(cfg, onnx_file), cfg)
    assert type(runtime.postprocessing) is type(model.postprocessing)
    # Two sizes in one batch (padding), neither the exported one, outputs at other sizes.
    a, b = sample(45, 61, [0, 1, 2], seed=0), sample(70, 50, [3, 4], seed=1)
    a["height"], a["width"] = 90, 30
    with torch.no_grad():
        want = model([a, b])
        got = runtime([a, b])
        got_alone = runtime([b])
    for g, w in zip([*got, *got_alone], [*want, want[1]]):
        torch.testing.assert_close(g["sem_seg"], w["sem_seg"], rtol=0, atol=1e-4)
        assert torch.equal(g["sem_seg"].argmax(0), w["sem_seg"].argmax(0))
        (seg, info), (ref_seg, ref_info) = g["panoptic_seg"], w["panoptic_seg"]
        assert info == ref_info and len(info) > 0
        assert (seg == ref_seg).float().mean() > 0.999


def test_predictor_with_onnxruntime_backend_equals_the_pytorch_backend(exported):
    config, weights, onnx_file, _ = exported
    cfg = tiny_cfg(*OPTS, "MODEL.WEIGHTS", weights)
    image = np.random.default_rng(0).integers(0, 256, (75, 100, 3), dtype=np.uint8)
    want = MaskFormerPredictor.from_config(cfg)(image)
    onnx = MaskFormerPredictor.from_config(cfg, backend="onnxruntime", model_file=onnx_file)
    got = onnx(image)
    assert isinstance(onnx.model, OnnxRuntimeMaskFormer)
    assert torch.equal(got.semantic, want.semantic)
    assert got.panoptic[1] == want.panoptic[1]
    assert (got.panoptic[0] == want.panoptic[0]).float().mean() > 0.999
    with pytest.raises(ValueError, match="onnxruntime backend takes an .onnx file"):
        MaskFormerPredictor.from_config(cfg, backend="onnxruntime")
    with pytest.raises(ValueError, match="expected a MaskFormer network exported"):
        OnnxRuntimeMaskFormer.from_config(cfg, _normalized_export(config, onnx_file))


def _normalized_export(config, onnx_file):
    path = onnx_file.replace(".onnx", "_normalized.onnx")
    argv = ["--config-file", config, "--format", "onnx", "--normalized-input", "--output", path]
    load_script("tools/export_model.py").main([*argv, "--size", "64", "64"])
    return path


def test_demo_runs_the_onnx_file(exported, tmp_path, capsys):
    config, _, onnx_file, _ = exported
    image = np.random.default_rng(1).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "in.png")
    demo = load_script("demo/demo.py")
    argv = ["--config-file", config, "--input", str(tmp_path / "in.png")]
    argv += ["--output", str(tmp_path / "out.png"), "--backend", "onnxruntime", onnx_file]
    assert demo.main([*argv, "--task", "semantic"]) == 0
    with Image.open(tmp_path / "out.png") as im:
        assert im.size == (80, 60)
    assert demo.main([*argv[:-2], "onnxruntime", onnx_file, "extra"]) == 2
    assert "--backend takes NAME [MODEL_FILE]" in capsys.readouterr().err
    # A missing or unreadable model file: one line naming it, exit 2, nothing written.
    (tmp_path / "corrupt.onnx").write_bytes(b"not a model")
    for bad, says in [
        (tmp_path / "missing.onnx", "ONNX file not found"),
        (tmp_path / "corrupt.onnx", "ONNX Runtime cannot load it"),
    ]:
        argv = ["--config-file", config, "--input", str(tmp_path / "in.png")]
        argv += ["--output", str(tmp_path / "bad.png"), "--backend", "onnxruntime", str(bad)]
        assert demo.main(argv) == 2
        err = capsys.readouterr().err
        assert says in err and str(bad) in err and "Traceback" not in err
        assert not (tmp_path / "bad.png").exists()


@pytest.mark.slow
def test_dynamic_swin_export_runs_at_sizes_whose_windows_need_padding(tmp_path):
    # Swin pads its token grid up to whole windows (64 x 72 tokens -> 70 x 77). Rounding up with
    # -(-h // k) became an ONNX truncating division that rounded down, and the file failed at
    # run time on the shifted-window mask. (Below 224 pixels a side the export fixes the size.)
    ort = pytest.importorskip("onnxruntime")
    from maskformer.modeling.backbone.swin import D2SwinTransformer

    torch.manual_seed(0)
    swin = D2SwinTransformer(embed_dim=16, depths=(2, 1, 1, 1), num_heads=(1, 2, 2, 4)).eval()
    onnx_file = str(tmp_path / "swin.onnx")
    height, width = torch.export.Dim("height", min=16), torch.export.Dim("width", min=16)
    with torch.no_grad():
        torch.onnx.export(
            swin,
            (torch.rand(1, 3, 224, 256),),
            onnx_file,
            input_names=["images"],
            dynamo=True,
            external_data=False,
            dynamic_shapes={"x": {2: height, 3: width}},
        )
    session = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
    for size in [(224, 256), (256, 288)]:
        images = torch.rand(1, 3, *size)
        got = session.run(None, {"images": images.numpy()})
        with torch.no_grad():
            want = list(swin(images).values())
        for g, x in zip(got, want):
            np.testing.assert_allclose(g, x.numpy(), rtol=1e-4, atol=1e-4)

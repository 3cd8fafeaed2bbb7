"""The deployment transforms of the network (bfloat16 autocast, torch.compile) against the plain
model: compiled outputs equal to float rounding, bfloat16 outputs close with float32
post-processing, and a clean fall-back where no C++ compiler is found."""

import copy
import logging

import pytest
import torch
from detectron2.modeling import build_model

from maskformer.modeling.inference_transforms import optimize_for_inference
from maskformer.modeling.network_transforms import (
    Autocast,
    compile_network,
    cpp_compiler,
    network_transforms_from_config,
    run_in_precision,
)
from tests.common import randomize_, sample, tiny_cfg

PANOPTIC = ("MODEL.MASK_FORMER.TEST.PANOPTIC_ON", True)


def _plain_model(*opts):
    torch.manual_seed(0)
    return randomize_(build_model(tiny_cfg("MODEL.RESNETS.NORM", "FrozenBN", *opts)), 0).eval()


def _inputs():
    a, b = sample(45, 61, [0, 1, 2], seed=0), sample(64, 50, [3, 4], seed=1)
    a["height"], a["width"] = 90, 30
    return [a, b]


def _outputs(model):
    with torch.no_grad():
        return model(_inputs())


def test_bfloat16_runs_the_network_in_bfloat16_and_post_processing_in_float32():
    plain = _plain_model()
    model = run_in_precision(optimize_for_inference(copy.deepcopy(plain)), torch.bfloat16)
    assert isinstance(model.backbone, Autocast) and isinstance(model.sem_seg_head, Autocast)
    dtypes = {}

    def record(name, key=None):
        def hook(module, inputs, output):
            dtypes[name] = (output if key is None else output[key]).dtype

        return hook

    model.backbone.module.stem.conv1.register_forward_hook(record("conv"))
    model.sem_seg_head.register_forward_hook(record("masks", "pred_masks"))
    got, want = _outputs(model), _outputs(plain)
    assert dtypes == {"conv": torch.bfloat16, "masks": torch.bfloat16}
    for g, w in zip(got, want):
        assert g["sem_seg"].dtype == torch.float32 and g["sem_seg"].shape == w["sem_seg"].shape
        # bfloat16 keeps ~3 significant digits: close scores, not equal ones.
        assert 0 < (g["sem_seg"] - w["sem_seg"]).abs().max() < 0.1
        agree = (g["sem_seg"].argmax(0) == w["sem_seg"].argmax(0)).float().mean()
        assert agree > 0.95


def test_float32_precision_and_no_compile_leave_the_model_as_it_is():
    model = _plain_model()
    modules = list(model.modules())
    network_transforms_from_config(model, tiny_cfg())
    assert list(model.modules()) == modules


def test_precision_from_config_and_its_errors():
    model = network_transforms_from_config(
        _plain_model(), tiny_cfg("MODEL.MASK_FORMER.TEST.PRECISION", "bfloat16")
    )
    assert model.backbone.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="PRECISION is 'float16'.*'bfloat16', 'float32'"):
        network_transforms_from_config(
            _plain_model(), tiny_cfg("MODEL.MASK_FORMER.TEST.PRECISION", "float16")
        )


@pytest.mark.slow
@pytest.mark.skipif(cpp_compiler() is None, reason="torch.compile on the CPU needs a C++ compiler")
def test_compiled_network_equals_the_plain_model():
    plain = _plain_model(*PANOPTIC)
    model = optimize_for_inference(copy.deepcopy(plain))
    assert compile_network(model)
    got, want = _outputs(model), _outputs(plain)
    for g, w in zip(got, want):
        torch.testing.assert_close(g["sem_seg"], w["sem_seg"], rtol=0, atol=1e-4)
        assert torch.equal(g["sem_seg"].argmax(0), w["sem_seg"].argmax(0))
        (seg, info), (ref_seg, ref_info) = g["panoptic_seg"], w["panoptic_seg"]
        assert info == ref_info and len(info) > 0
        assert (seg == ref_seg).float().mean() > 0.999


def test_compile_without_a_compiler_warns_once_and_leaves_the_model(monkeypatch, caplog):
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    model = _plain_model()
    modules = list(model.modules())
    with caplog.at_level(logging.WARNING, logger="maskformer.modeling.network_transforms"):
        assert not compile_network(model)
    assert list(model.modules()) == modules
    assert len(caplog.records) == 1 and "no C++ compiler" in caplog.records[0].getMessage()
    # and the config switch goes the same way
    cfg = tiny_cfg("MODEL.MASK_FORMER.TEST.COMPILE", True)
    network_transforms_from_config(model, cfg)
    assert list(model.modules()) == modules

"""tools/analyze_model.py: parameter groups add up; fused attention is counted exactly."""

import json

import torch
import torch.nn.functional as F
from detectron2.modeling import build_model
from fvcore.nn import FlopCountAnalysis

from tests.common import TINY_SWIN_OPTS, tiny_cfg
from tests.scripts import load_script


def _tool():
    return load_script("tools/analyze_model.py")


class _Attention(torch.nn.Module):
    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v)


def test_fused_attention_is_counted_as_its_two_matrix_products():
    q, k, v = torch.rand(2, 4, 10, 8), torch.rand(2, 4, 30, 8), torch.rand(2, 4, 30, 6)
    flops = FlopCountAnalysis(_Attention(), (q, k, v))
    flops.set_op_handle("aten::scaled_dot_product_attention", _tool().sdpa_flop_jit)
    # q k^T: 2*4 heads x 10 x 30 x 8 multiply-adds; weights x v: 2*4 x 10 x 30 x 6.
    assert flops.total() == 2 * 4 * 10 * 30 * (8 + 6)


def test_parameters_and_flops_of_a_tiny_swin_model(tmp_path):
    cfg = tiny_cfg(*TINY_SWIN_OPTS)
    (tmp_path / "tiny_swin.yaml").write_text(cfg.dump())
    result = _tool().main(
        [
            "--config-file", str(tmp_path / "tiny_swin.yaml"),
            "--size", "64",
            "--json", str(tmp_path / "analysis.json"),
        ]
    )  # fmt: skip
    model = build_model(cfg)
    params = result["params"]
    assert params["total"] == sum(p.numel() for p in model.parameters())
    assert params["backbone"] == sum(p.numel() for p in model.backbone.parameters())
    assert sum(v for k, v in params.items() if k != "total") == params["total"]
    flops = result["flops"]
    assert flops["total"] > 0 and abs(sum(flops["parts"].values()) - flops["total"]) < 1
    assert flops["by_operator"]["scaled_dot_product_attention"] > 0
    assert min(flops["parts"].values()) > 0
    assert 0 < flops["total_as_run"] <= flops["total"]
    assert json.loads((tmp_path / "analysis.json").read_text())["params"] == params


def test_panoptic_only_config_is_counted_through_the_semantic_output(tmp_path):
    # With random weights nothing passes the panoptic thresholds; counted as configured, the
    # output would not depend on the network and the trace would count 0 FLOPs.
    totals = []
    for name, opts in [
        ("semantic", ()),
        ("panoptic", ("MODEL.MASK_FORMER.TEST.SEMANTIC_ON", False,
                      "MODEL.MASK_FORMER.TEST.PANOPTIC_ON", True)),
    ]:  # fmt: skip
        (tmp_path / f"{name}.yaml").write_text(tiny_cfg(*opts).dump())
        result = _tool().main(["--config-file", str(tmp_path / f"{name}.yaml"), "--size", "64"])
        totals.append(result["flops"]["total"])
    assert totals[0] > 0 and totals[1] == totals[0]

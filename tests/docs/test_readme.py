"""The README's lines for using MaskFormer from your own Detectron2 code run as written, on the
quickstart model saved as a model-zoo file (only the config, the weights file and the device are
replaced)."""

import os
import pickle
import re

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model

from maskformer import get_maskformer_cfg
from tests.common import CONFIG_DIR, REPO_ROOT

QUICKSTART = os.path.join(CONFIG_DIR, "quickstart", "maskformer_R18_quickstart.yaml")


def _readme_snippet():
    with open(os.path.join(REPO_ROOT, "README.md")) as f:
        section = f.read().split("## Use from your own Detectron2 code", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_readme_lines_for_your_own_code(tmp_path):
    cfg = get_maskformer_cfg(QUICKSTART, ["MODEL.DEVICE", "cpu"])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    published = {  # the model-zoo layout: numpy arrays, pixel decoder under sem_seg_head.
        k.replace("sem_seg_head.pixel_decoder.", "sem_seg_head."): v.numpy()
        for k, v in model.state_dict().items()
    }
    weights = tmp_path / "model_final.pkl"
    with open(weights, "wb") as f:
        pickle.dump({"model": published, "__author__": "Detectron2 Model Zoo"}, f)
    snippet = _readme_snippet()
    for old, new in (
        ('"configs/ade20k/maskformer_R50.yaml"', repr(QUICKSTART)),
        ('"model_final_d8dbeb.pkl"]', f'{str(weights)!r}, "MODEL.DEVICE", "cpu"]'),
    ):
        assert old in snippet
        snippet = snippet.replace(old, new)
    rgb = np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    namespace = {
        "image_chw": torch.as_tensor(rgb.transpose(2, 0, 1).astype("float32")),
        "image_bgr": rgb[:, :, ::-1].copy(),
        "image_rgb": rgb,
    }
    exec(compile(snippet, "README.md", "exec"), namespace)
    k = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    assert namespace["outputs"][0]["sem_seg"].shape == (k, 70, 90)
    # The zoo file gave the model its weights: the snippet's model computes what ours does.
    with torch.no_grad():
        want = model([{"image": namespace["image_chw"]}])[0]["sem_seg"]
    torch.testing.assert_close(namespace["outputs"][0]["sem_seg"], want, rtol=0, atol=1e-5)
    assert namespace["scores"].shape == (k, 70, 90)
    assert namespace["prediction"].semantic.shape == (70, 90)

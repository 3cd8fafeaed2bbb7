"""`train_net.py --eval-only` evaluates the model transformed for inference
(MODEL.MASK_FORMER.TEST.OPTIMIZE): the same metrics as the plain model, computed by the
transformed modules themselves."""

import pytest
from detectron2.layers import FrozenBatchNorm2d

import train_net
from tests.engine.test_train_net_refusals import _argv, _checkpoint


@pytest.mark.slow
def test_frozen_bn_pixel_decoder_is_evaluated_folded(tmp_path, monkeypatch):
    frozen = ["MODEL.SEM_SEG_HEAD.NORM", "FrozenBN", "MODEL.RESNETS.NORM", "FrozenBN"]
    weights = _checkpoint(tmp_path / "w.pth", **dict(zip(frozen[::2], frozen[1::2])))
    calls = []
    forward = FrozenBatchNorm2d.forward
    monkeypatch.setattr(FrozenBatchNorm2d, "forward", lambda m, x: calls.append(1) or forward(m, x))

    def evaluate(out, *extra):
        calls.clear()
        argv = _argv(tmp_path / out, "MODEL.WEIGHTS", weights, *frozen, *extra)
        return train_net.main(train_net.default_argument_parser().parse_args(argv)), len(calls)

    plain, plain_calls = evaluate("plain", "MODEL.MASK_FORMER.TEST.OPTIMIZE", "False")
    optimized, optimized_calls = evaluate("optimized")
    assert plain_calls > 0 and optimized_calls == 0  # every frozen norm folded, none bypassed
    for key, value in plain["sem_seg"].items():
        assert optimized["sem_seg"][key] == pytest.approx(value, abs=1e-6), key

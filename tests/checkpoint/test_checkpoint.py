"""MaskFormerCheckpointer: every file layout loads; bad, unsafe or foreign files are refused
with an error naming the file, and leave the model untouched."""

import os
import pickle

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model

from maskformer.checkpoint import (
    CheckpointError,
    CheckpointMismatchError,
    MaskFormerCheckpointer,
    UnsafeCheckpointError,
)
from maskformer.interop.hf import maskformer_to_hf
from tests.common import TINY_SWIN_OPTS, randomize_, tiny_cfg


def _model(*opts, seed=0):
    torch.manual_seed(seed)
    return build_model(tiny_cfg(*opts)).eval()


@pytest.fixture(scope="module")
def source():
    """A model whose weights the files carry (all tensors random, so a mix-up shows)."""
    return randomize_(_model(seed=1), seed=1)


def _snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_same(state_a, state_b, keys=None):
    keys = list(state_a) if keys is None else keys
    different = [k for k in keys if not torch.equal(state_a[k], state_b[k])]
    assert different == []


def _load(path, *, strict=False, model=None):
    model = model if model is not None else _model()
    checkpointer = MaskFormerCheckpointer(model, strict=strict)
    checkpointer.load(str(path))
    return model, checkpointer.last_report


def _numpy_state(state):
    return {k: v.numpy() for k, v in state.items()}


def _v1(state):
    """The layout of the published checkpoints: pixel decoder directly under sem_seg_head."""
    return {k.replace("sem_seg_head.pixel_decoder.", "sem_seg_head."): v for k, v in state.items()}


# --- every layout loads --------------------------------------------------------------------


def test_detectron2_pth_with_trainer_state(tmp_path, source):
    MaskFormerCheckpointer(source, str(tmp_path)).save("model_0000009", iteration=9)
    model, report = _load(tmp_path / "model_0000009.pth")
    _assert_same(source.state_dict(), model.state_dict())
    assert report.layout == "maskformer" and report.missing == report.unexpected == []


def test_resume_restores_optimizer_and_scheduler(tmp_path):
    # A training checkpoint holds optimizer and scheduler state too: all of it must pass
    # torch.load(weights_only=True).
    from detectron2.projects.deeplab import build_lr_scheduler

    from maskformer.solver import build_optimizer

    def trainer_state():
        model = _model()
        optimizer = build_optimizer(tiny_cfg(), model)
        return model, optimizer, build_lr_scheduler(tiny_cfg(), optimizer)

    model, optimizer, scheduler = trainer_state()
    sum(p.sum() for p in model.parameters()).backward()
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    kw = dict(optimizer=optimizer, scheduler=scheduler)
    MaskFormerCheckpointer(model, str(tmp_path), **kw).save("model_0000002", iteration=2)

    model2, optimizer2, scheduler2 = trainer_state()
    checkpointer = MaskFormerCheckpointer(
        model2, str(tmp_path), optimizer=optimizer2, scheduler=scheduler2
    )
    extra = checkpointer.resume_or_load("", resume=True)
    assert extra["iteration"] == 2 and scheduler2.last_epoch == 3
    _assert_same(model.state_dict(), model2.state_dict())
    assert optimizer2.state_dict()["state"].keys() == optimizer.state_dict()["state"].keys()


def test_plain_state_dict_pth(tmp_path, source):
    torch.save(source.state_dict(), tmp_path / "plain.pth")
    model, report = _load(tmp_path / "plain.pth", strict=True)
    _assert_same(source.state_dict(), model.state_dict())
    assert report.layout == "maskformer"


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("layout", ["v1", "v2"])
def test_numpy_pickles_in_both_layouts(tmp_path, source, layout, protocol):
    state = _numpy_state(source.state_dict())
    if layout == "v1":
        state = _v1(state)
        assert "sem_seg_head.adapter_1.weight" in state
    path = tmp_path / "model_final.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": state, "__author__": "Detectron2 Model Zoo"}, f, protocol=protocol)
    model, report = _load(path, strict=True)
    _assert_same(source.state_dict(), model.state_dict())
    assert report.layout == ("maskformer-v1" if layout == "v1" else "maskformer")


def test_published_layout_of_the_transformer_encoder_pixel_decoder(tmp_path):
    # The "+6 Enc" models: the encoder and its input projection also sit under sem_seg_head.
    opts = (
        "MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME", "TransformerEncoderPixelDecoder",
        "MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE", "transformer_encoder",
        "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", 2,
    )  # fmt: skip
    source = randomize_(_model(*opts, seed=1), seed=4)
    state = _v1(_numpy_state(source.state_dict()))
    assert "sem_seg_head.transformer.encoder.layers.1.linear2.weight" in state
    assert "sem_seg_head.input_proj.weight" in state
    with open(tmp_path / "panoptic.pkl", "wb") as f:
        pickle.dump({"model": state, "__author__": "Detectron2 Model Zoo"}, f)
    model, report = _load(tmp_path / "panoptic.pkl", strict=True, model=_model(*opts))
    _assert_same(source.state_dict(), model.state_dict())
    assert report.layout == "maskformer-v1"


def test_caffe2_imagenet_pickle_is_name_matched(tmp_path):
    # A flat dict of Caffe2 names (Detectron2's MSRA ImageNet files): Detectron2's conversion.
    stem = {
        "conv1_w": np.random.rand(64, 3, 7, 7).astype(np.float32),
        "res_conv1_bn_s": np.random.rand(64).astype(np.float32),
        "res_conv1_bn_b": np.random.rand(64).astype(np.float32),
        "fc1000_w": np.zeros((1000, 512), np.float32),
    }
    with open(tmp_path / "R-18-msra.pkl", "wb") as f:
        pickle.dump(stem, f, protocol=2)
    model, report = _load(tmp_path / "R-18-msra.pkl")
    assert report.layout == "name-matched (Caffe2)"
    assert np.array_equal(model.state_dict()["backbone.stem.conv1.weight"].numpy(), stem["conv1_w"])
    norm = model.state_dict()["backbone.stem.conv1.norm.weight"].numpy()
    assert np.array_equal(norm, stem["res_conv1_bn_s"])


def test_pickle_without_author_and_with_odd_arrays(tmp_path, source):
    # No "__author__" (Detectron2 itself would treat it as a Caffe2 file); big-endian and
    # Fortran-ordered arrays, as other tools may write them.
    state = _numpy_state(source.state_dict())
    key = "sem_seg_head.predictor.class_embed.weight"
    state[key] = np.asfortranarray(state[key].astype(">f4"))
    with open(tmp_path / "m.pkl", "wb") as f:
        pickle.dump({"model": _v1(state)}, f)
    model, _ = _load(tmp_path / "m.pkl", strict=True)
    _assert_same(source.state_dict(), model.state_dict())


def test_hugging_face_safetensors_and_bin(tmp_path, source):
    from safetensors.torch import save_file

    hf_state = {k: v.contiguous() for k, v in maskformer_to_hf(source.state_dict()).items()}
    save_file(hf_state, tmp_path / "model.safetensors")
    torch.save(hf_state, tmp_path / "pytorch_model.bin")
    for name in ("model.safetensors", "pytorch_model.bin"):
        model, report = _load(tmp_path / name, strict=True)
        _assert_same(source.state_dict(), model.state_dict())
        assert report.layout == "huggingface"


# --- mismatches -----------------------------------------------------------------------------


def _other_head_checkpoint(tmp_path):
    other = _model("MODEL.SEM_SEG_HEAD.NUM_CLASSES", 7, "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", 10)
    randomize_(other, seed=3)
    torch.save({"model": other.state_dict()}, tmp_path / "other.pth")
    return other, tmp_path / "other.pth"


def test_shape_mismatches_are_listed_by_name_and_skipped(tmp_path, caplog):
    other, path = _other_head_checkpoint(tmp_path)
    model = _model()
    before = _snapshot(model)
    with caplog.at_level("WARNING"):
        _, report = _load(path, model=model)
    mismatched = {k for k, _, _ in report.shape_mismatches}
    assert mismatched == {
        "sem_seg_head.predictor.class_embed.weight",
        "sem_seg_head.predictor.class_embed.bias",
        "sem_seg_head.predictor.query_embed.weight",
        "criterion.empty_weight",
    }
    assert ("sem_seg_head.predictor.class_embed.weight", (8, 32), (6, 32)) in (
        report.shape_mismatches
    )
    for key in mismatched:
        assert key in caplog.text
        assert torch.equal(model.state_dict()[key], before[key])
    _assert_same(other.state_dict(), model.state_dict(), report.loaded)
    assert len(report.loaded) == len(before) - 4


def test_strict_mode_refuses_and_loads_nothing(tmp_path):
    _, path = _other_head_checkpoint(tmp_path)
    model = _model()
    before = _snapshot(model)
    with pytest.raises(CheckpointMismatchError) as e:
        _load(path, strict=True, model=model)
    assert "class_embed.weight" in str(e.value) and "query_embed.weight" in str(e.value)
    assert str(path) in str(e.value)
    _assert_same(before, model.state_dict())


def test_strict_mode_lists_missing_and_unexpected(tmp_path, source):
    state = dict(source.state_dict())
    state.pop("sem_seg_head.pixel_decoder.mask_features.bias")
    state["sem_seg_head.predictor.extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "m.pth")
    with pytest.raises(CheckpointMismatchError, match="mask_features.bias") as e:
        _load(tmp_path / "m.pth", strict=True)
    assert "predictor.extra.weight" in str(e.value)
    model, report = _load(tmp_path / "m.pth")  # non-strict: the rest loads
    assert report.missing == ["sem_seg_head.pixel_decoder.mask_features.bias"]
    assert report.unexpected == ["sem_seg_head.predictor.extra.weight"]


# --- bad files: refused, named, model untouched ---------------------------------------------


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("suffix", [".pkl", ".pth"])
def test_pickle_that_runs_code_is_refused_not_executed(tmp_path, suffix):
    marker = tmp_path / "pwned"
    path = tmp_path / f"evil{suffix}"
    payload = {"model": {"backbone.stem.conv1.weight": _RunsCode(marker)}}
    if suffix == ".pkl":
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    else:
        torch.save(payload, path)
    model = _model()
    before = _snapshot(model)
    with pytest.raises(UnsafeCheckpointError) as e:
        _load(path, model=model)
    assert str(path) in str(e.value) and "system" in str(e.value)
    assert not marker.exists()
    _assert_same(before, model.state_dict())


def test_torch_tensors_in_a_pkl_are_refused_with_a_hint(tmp_path, source):
    # What the official convert-pretrained-swin-model-to-d2.py writes: torch tensors, pickled.
    with open(tmp_path / "swin.pkl", "wb") as f:
        pickle.dump({"model": dict(source.state_dict()), "__author__": "third_party"}, f)
    with pytest.raises(UnsafeCheckpointError, match="convert-pretrained-swin-model-to-d2"):
        _load(tmp_path / "swin.pkl")


@pytest.mark.parametrize("suffix", [".pkl", ".pth"])
def test_truncated_file(tmp_path, source, suffix):
    path = tmp_path / f"full{suffix}"
    if suffix == ".pkl":
        with open(path, "wb") as f:
            pickle.dump({"model": _numpy_state(source.state_dict())}, f)
    else:
        torch.save({"model": source.state_dict()}, path)
    data = path.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    model = _model()
    before = _snapshot(model)
    with pytest.raises(CheckpointError) as e:
        _load(cut, model=model)
    assert str(cut) in str(e.value)
    assert "truncated" in str(e.value) or "corrupt" in str(e.value)
    _assert_same(before, model.state_dict())


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("random.pkl", bytes(range(256)) * 4, "cannot read"),
        ("random.pth", bytes(range(256)) * 4, "not a PyTorch checkpoint"),
        ("notes.pth", b"just some text\n", "not a PyTorch checkpoint"),
        ("list.pkl", pickle.dumps([1, 2, 3]), "not a checkpoint"),
        ("strings.pkl", pickle.dumps({"model": {"a": "b"}}), "not numeric arrays"),
        ("empty.pkl", pickle.dumps({"model": {}}), "no weights"),
        ("tensor.pth", None, "not a checkpoint"),
    ],
)
def test_not_a_checkpoint(tmp_path, name, content, message):
    path = tmp_path / name
    if content is None:
        torch.save(torch.zeros(3), path)
    else:
        path.write_bytes(content)
    model = _model()
    before = _snapshot(model)
    with pytest.raises(CheckpointError, match=message) as e:
        _load(path, model=model)
    assert str(path) in str(e.value)
    _assert_same(before, model.state_dict())


def test_checkpoint_of_another_backbone_is_refused(tmp_path):
    swin = _model(*TINY_SWIN_OPTS)
    torch.save({"model": swin.state_dict()}, tmp_path / "swin.pth")
    model = _model()
    before = _snapshot(model)
    with pytest.raises(CheckpointError, match="another backbone architecture") as e:
        _load(tmp_path / "swin.pth", model=model)
    assert "swin.pth" in str(e.value) and "backbone.patch_embed" in str(e.value)
    _assert_same(before, model.state_dict())


def test_checkpoint_of_another_model_is_refused(tmp_path):
    import torchvision

    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "resnet18.pth")
    model = _model()
    before = _snapshot(model)
    with pytest.raises(CheckpointError, match="another architecture"):
        _load(tmp_path / "resnet18.pth", model=model)
    _assert_same(before, model.state_dict())


def test_mixed_layouts_are_refused(tmp_path, source):
    state = _numpy_state(source.state_dict())
    state["sem_seg_head.adapter_1.weight"] = state["sem_seg_head.pixel_decoder.adapter_1.weight"]
    with open(tmp_path / "mixed.pkl", "wb") as f:
        pickle.dump({"model": state}, f)
    with pytest.raises(CheckpointError, match="mixes two layouts"):
        _load(tmp_path / "mixed.pkl")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pkl"):
        _load(tmp_path / "nope.pkl")


def test_checkpoint_writes_are_atomic(tmp_path):
    from maskformer.utils import write_atomically

    target = tmp_path / "model_final.pth"
    target.write_bytes(b"previous checkpoint")

    def dies_midway(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half of the new ")
        raise KeyboardInterrupt  # e.g. the process is interrupted while saving

    with pytest.raises(KeyboardInterrupt):
        write_atomically(str(target), dies_midway)
    assert target.read_bytes() == b"previous checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_final.pth"]
    write_atomically(str(target), lambda tmp: open(tmp, "wb").write(b"new"))
    assert target.read_bytes() == b"new"


def test_checkpointer_saves_through_a_temporary_file(tmp_path, monkeypatch):
    import maskformer.checkpoint.checkpointer as ckpt

    model = torch.nn.Linear(2, 2)
    written = []
    real = ckpt.write_atomically
    monkeypatch.setattr(ckpt, "write_atomically", lambda p, w: (written.append(p), real(p, w)))
    MaskFormerCheckpointer(model, str(tmp_path)).save("model_0000009")
    assert written == [str(tmp_path / "model_0000009.pth"), str(tmp_path / "last_checkpoint")]
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009.pth"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_0000009.pth"]

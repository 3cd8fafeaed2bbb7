"""SlidingWindowInference: mmsegmentation's window grid, overlapping scores averaged (checked by
hand with a model whose output is a known function of the window), one window equal to the plain
model bit for bit, labels band by band equal to the argmax of the averaged scores, batching, and
no (K, H, W) tensor when labels are asked for."""

import pytest
import torch
import torch.nn.functional as F
from detectron2.modeling import build_model
from torch import nn
from torch.overrides import TorchFunctionMode

from maskformer.config import ConfigValueError
from maskformer.modeling.inference_transforms import optimize_for_inference
from maskformer.modeling.postprocessing import semantic_labels
from maskformer.modeling.resample import resized_argmax
from maskformer.modeling.sliding_window import (
    SlidingWindowInference,
    averaged_rows,
    check_sliding_window,
    coverage,
    resized_labels,
    sliding_window_from_config,
    window_grid,
    window_starts,
)
from tests.common import assert_same_labels, randomize_, tiny_cfg


# (length, window, stride) -> starts, by mmsegmentation's rule: ceil((L - window) / stride) + 1
# windows, stride apart, the last moved back to end at the border.
@pytest.mark.parametrize(
    "length, window, stride, starts",
    [
        (1024, 512, 341, [0, 341, 512]),  # Cityscapes rows: 3 windows, the last at 1024 - 512
        (2048, 1024, 683, [0, 683, 1024]),
        (10, 4, 4, [0, 4, 6]),  # stride = window: touching windows, the last overlaps
        (10, 4, 3, [0, 3, 6]),  # fits exactly
        (11, 4, 3, [0, 3, 6, 7]),
        (4, 4, 1, [0]),  # one window = the image
        (3, 5, 2, [0]),  # image shorter than the window: run whole
        (1, 1, 1, [0]),
    ],
)
def test_window_starts_by_hand(length, window, stride, starts):
    assert window_starts(length, window, stride) == starts


def test_window_starts_cover_every_position_and_end_at_the_border():
    for length in range(1, 40):
        for window in range(1, 12):
            for stride in range(1, window + 1):
                starts = window_starts(length, window, stride)
                assert starts[0] == 0
                assert starts[-1] == max(length - window, 0)
                assert all(0 < b - a <= stride for a, b in zip(starts, starts[1:]))
                assert len(starts) == -(-max(length - window, 0) // stride) + 1
                assert coverage(length, starts, window).min() >= 1


def test_window_starts_refuse_gaps():
    with pytest.raises(ValueError, match="1 <= stride <= window"):
        window_starts(10, 4, 5)
    with pytest.raises(ValueError, match="1 <= stride <= window"):
        window_starts(10, 4, 0)


def test_window_grid_of_an_image_smaller_than_the_window_along_one_side():
    grid = window_grid((30, 100), (64, 40), (32, 30))
    assert grid.rows == [0] and grid.cols == [0, 30, 60]
    assert grid.size == (30, 40)  # run whole along the short side, no padding
    assert coverage(7, [0, 3], 4).tolist() == [1, 1, 1, 2, 1, 1, 1]


class WindowStub(nn.Module):
    """A "model" whose scores are known functions of the window it is given: images carry their
    pixel coordinates (channel 0 the row, channel 1 the column). Channel 0 of its output is the
    window's first row everywhere, channel 1 its first column, channel 2 each pixel's own row.
    Records the batch sizes it is called with."""

    def __init__(self):
        super().__init__()
        self.batches = []

    def forward(self, batched_inputs):
        self.batches.append(len(batched_inputs))
        outputs = []
        for x in batched_inputs:
            image = x["image"]
            assert image.shape[-2:] == (x["height"], x["width"])  # asked at the window size
            top, left = image[0, 0, 0], image[1, 0, 0]
            scores = torch.stack([torch.full_like(image[0], top), torch.full_like(image[0], left)])
            outputs.append({"sem_seg": torch.cat([scores, image[:1]])})
        return outputs


def coordinates(h: int, w: int) -> torch.Tensor:
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([rows, cols, torch.zeros(h, w)]).float()


def test_overlapping_windows_are_averaged_as_computed_by_hand():
    # 5 x 7 image, 3 x 4 windows, stride 2 x 3: rows start at [0, 2], columns at [0, 3].
    stub = WindowStub()
    model = SlidingWindowInference(stub, window_size=(3, 4), stride=(2, 3), windows_per_batch=3)
    scores = model([{"image": coordinates(5, 7)}])[0]["sem_seg"]
    assert stub.batches == [3, 1]  # 4 windows, 3 per call
    # Rows 0-1: only windows starting at row 0; row 2: both rows of windows (0 + 2) / 2; rows
    # 3-4: only row 2. Columns likewise: 0-2 -> 0, column 3 -> (0 + 3) / 2, 4-6 -> 3.
    by_row = torch.tensor([0.0, 0.0, 1.0, 2.0, 2.0])
    by_col = torch.tensor([0.0, 0.0, 0.0, 1.5, 3.0, 3.0, 3.0])
    assert torch.equal(scores[0], by_row[:, None].expand(5, 7))
    assert torch.equal(scores[1], by_col[None, :].expand(5, 7))
    # A score that is a function of the pixel alone is the same however many windows cover it.
    assert torch.equal(scores[2], coordinates(5, 7)[0])


def test_scores_are_resized_to_the_output_size_as_the_plain_model_resizes_them():
    stub = WindowStub()
    model = SlidingWindowInference(stub, window_size=(3, 4), stride=(2, 3))
    image = coordinates(5, 7)
    at_image = model([{"image": image}])[0]["sem_seg"]
    out = model([{"image": image, "height": 9, "width": 4}])[0]["sem_seg"]
    expected = F.interpolate(at_image[None], (9, 4), mode="bilinear", align_corners=False)[0]
    assert torch.equal(out, expected)
    labels = SlidingWindowInference(
        stub, window_size=(3, 4), stride=(2, 3), semantic_output="labels"
    )
    got = labels([{"image": image, "height": 9, "width": 4}])[0]["sem_seg_labels"]
    assert torch.equal(got, resized_argmax(at_image, (9, 4)))


# Same size; up; down (an output row's taps may start beyond a band); columns only.
@pytest.mark.parametrize("out_h, out_w", [(37, 23), (90, 51), (11, 7), (5, 7), (37, 60)])
def test_labels_from_row_bands_are_resized_argmax_of_the_whole(out_h, out_w):
    height, width = 37, 23
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(6, height, width, generator=g)
    cuts = [0, 1, 5, 6, 19, 20, 33, height]  # bands of 1 to 14 rows
    bands = [(a, scores[:, a:b].clone()) for a, b in zip(cuts, cuts[1:])]
    for band_elements in (1, 6 * out_w * 3, 1 << 20):  # one row, three rows, all at a time
        labels = resized_labels(iter(bands), (height, width), (out_h, out_w), band_elements)
        if (out_h, out_w) == (height, width):
            assert torch.equal(labels, scores.argmax(0))
        else:
            assert torch.equal(labels, resized_argmax(scores, (out_h, out_w)))


def test_averaged_rows_come_as_consecutive_bands_one_per_window_row():
    grid = window_grid((5, 7), (3, 4), (2, 3))
    windows = [(y, x, torch.ones(2, 3, 4)) for y in grid.rows for x in grid.cols]
    bands = list(averaged_rows(windows, grid, (5, 7)))
    assert [(r0, b.shape) for r0, b in bands] == [(0, (2, 2, 7)), (2, (2, 3, 7))]
    assert all(torch.equal(b, torch.ones_like(b)) for _, b in bands)  # averages of ones
    with pytest.raises(ValueError, match=r"window \(2, 0\) out of order; expected \(0, 3\)"):
        list(averaged_rows([windows[0], windows[2]], grid, (5, 7)))


def _tiny_model(optimize: bool) -> nn.Module:
    torch.manual_seed(0)
    model = randomize_(build_model(tiny_cfg())).eval()
    return optimize_for_inference(model) if optimize else model


@pytest.mark.parametrize("optimize", [False, True])
def test_one_window_covering_the_image_is_the_plain_model_bit_for_bit(optimize):
    model = _tiny_model(optimize)
    image = torch.rand(3, 50, 70, generator=torch.Generator().manual_seed(1)) * 255
    # A window of the image's size, and one larger than the image (run whole).
    for window in [(50, 70), (128, 128)]:
        scores = SlidingWindowInference(model, window_size=window, stride=window)
        labels = SlidingWindowInference(
            model, window_size=window, stride=window, semantic_output="labels"
        )
        for size in [(50, 70), (100, 130), (41, 61)]:
            x = {"image": image, "height": size[0], "width": size[1]}
            with torch.no_grad():
                plain = model([x])[0]["sem_seg"]
            assert torch.equal(scores([x])[0]["sem_seg"], plain)
            got = labels([x])[0]["sem_seg_labels"]
            assert torch.equal(got, semantic_labels({"sem_seg": plain}, size))


def test_one_window_against_a_model_transformed_to_give_labels():
    reference = _tiny_model(optimize=True)
    model = optimize_for_inference(_tiny_model(optimize=False), semantic_output="labels")
    windows = SlidingWindowInference(
        _tiny_model(optimize=True), window_size=(96, 96), stride=(96, 96), semantic_output="labels"
    )
    image = torch.rand(3, 70, 90, generator=torch.Generator().manual_seed(1)) * 255
    # At another size both resize the same scores band by band: equal bit for bit.
    x = {"image": image, "height": 100, "width": 130}
    with torch.no_grad():
        assert torch.equal(windows([x])[0]["sem_seg_labels"], model([x])[0]["sem_seg_labels"])
        # At the image's own size the transformed model reduces a transposed product: equal
        # wherever the top two scores are further apart than float rounding.
        x = {"image": image, "height": 70, "width": 90}
        scores = reference([x])[0]["sem_seg"]
        assert torch.equal(windows([x])[0]["sem_seg_labels"], scores.argmax(0))
        assert_same_labels(model([x])[0]["sem_seg_labels"], scores, tol=1e-5)


def test_many_windows_labels_batches_and_the_output_size():
    model = _tiny_model(optimize=True)
    image = torch.rand(3, 80, 110, generator=torch.Generator().manual_seed(2)) * 255
    # Rows start at [0, 32], columns at [0, 40, 46]: 6 windows, uneven overlaps.
    options = {"window_size": (48, 64), "stride": (32, 40)}
    one = SlidingWindowInference(model, **options)([{"image": image}])[0]["sem_seg"]
    three = SlidingWindowInference(model, **options, windows_per_batch=4)
    batched = three([{"image": image}])[0]["sem_seg"]
    # Windows of one size batch without padding: the same scores up to float rounding.
    assert batched.shape == (5, 80, 110)
    torch.testing.assert_close(batched, one, rtol=0, atol=1e-5)
    # Labels band by band are those of the averaged scores, at the image size and another.
    labels = SlidingWindowInference(model, **options, semantic_output="labels")
    assert torch.equal(labels([{"image": image}])[0]["sem_seg_labels"], one.argmax(0))
    x = {"image": image, "height": 130, "width": 97}
    assert torch.equal(labels([x])[0]["sem_seg_labels"], resized_argmax(one, (130, 97)))
    # Windows differ from the whole image (each window is a smaller image to the network).
    with torch.no_grad():
        whole = model([{"image": image}])[0]["sem_seg"]
    assert not torch.allclose(whole, one, atol=1e-3)


class LargestTensor(TorchFunctionMode):
    """Records the largest number of elements of any tensor a torch function returns."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_labels_never_hold_the_scores_of_the_whole_image():
    stub = WindowStub()  # K = 3
    model = SlidingWindowInference(
        stub, window_size=(16, 16), stride=(12, 12), semantic_output="labels"
    )
    image = coordinates(200, 300)
    x = {"image": image, "height": 200, "width": 300}
    with LargestTensor() as mode:
        labels = model([x])[0]["sem_seg_labels"]
    assert labels.shape == (200, 300)
    # The strip of one window-row, (K, 16, W), is the largest score tensor; the image itself
    # (3, 200, 300) is created before.
    assert 3 * 16 * 300 <= mode.largest <= 200 * 300 < 3 * 200 * 300
    # Resized to a larger output: the labels are the largest tensor.
    x = {"image": image, "height": 400, "width": 600}
    with LargestTensor() as mode:
        model([x])
    assert mode.largest == 400 * 600


def test_config_turns_it_on_with_ims_per_batch_windows():
    model = nn.Identity()
    assert sliding_window_from_config(model, tiny_cfg(), semantic_output="labels") is model
    cfg = tiny_cfg(
        "MODEL.MASK_FORMER.TEST.SLIDING_WINDOW.SIZE", [64, 96],
        "MODEL.MASK_FORMER.TEST.SLIDING_WINDOW.STRIDE", [32, 64],
        "TEST.IMS_PER_BATCH", 4,
    )  # fmt: skip
    wrapped = sliding_window_from_config(model, cfg, semantic_output="labels")
    assert isinstance(wrapped, SlidingWindowInference) and wrapped.model is model
    assert (wrapped.window_size, wrapped.stride) == ((64, 96), (32, 64))
    assert (wrapped.windows_per_batch, wrapped.semantic_output) == (4, "labels")
    assert sliding_window_from_config(wrapped, cfg, semantic_output="scores") is wrapped


KEY = "MODEL.MASK_FORMER.TEST.SLIDING_WINDOW"


@pytest.mark.parametrize(
    "opts, message",
    [
        ([f"{KEY}.STRIDE", [2, 2]], "STRIDE is [2, 2] but MODEL.MASK_FORMER.TEST.SLIDING_WINDOW"
                                    ".SIZE is [] (sliding window off)"),
        ([f"{KEY}.SIZE", [64]], "SIZE is [64]; expected [h, w], two positive integers"),
        ([f"{KEY}.SIZE", [64, 0]], "SIZE is [64, 0]; expected [h, w], two positive integers"),
        ([f"{KEY}.SIZE", [64, 96]], "STRIDE is []; expected [h, w] between window starts, each "
                                    "from 1 to the window's [64, 96] (e.g. 2/3 of it: [43, 64])"),
        ([f"{KEY}.SIZE", [64, 96], f"{KEY}.STRIDE", [64, 97]], "STRIDE is [64, 97]"),
        ([f"{KEY}.SIZE", [64, 96], f"{KEY}.STRIDE", [32, 64],
          "MODEL.MASK_FORMER.TEST.PANOPTIC_ON", True],
         "panoptic and instance outputs cannot be merged across windows: set "
         "MODEL.MASK_FORMER.TEST.PANOPTIC_ON False, or SIZE [] (off)"),
        ([f"{KEY}.SIZE", [64, 96], f"{KEY}.STRIDE", [32, 64],
          "MODEL.MASK_FORMER.TEST.INSTANCE_ON", True],
         "set MODEL.MASK_FORMER.TEST.INSTANCE_ON False"),
        ([f"{KEY}.SIZE", [64, 96], f"{KEY}.STRIDE", [32, 64],
          "MODEL.MASK_FORMER.TEST.SEMANTIC_OUTPUT", "low_res_labels"],
         "SEMANTIC_OUTPUT 'low_res_labels' has none: set it to 'labels'"),
    ],
)  # fmt: skip
def test_config_values_windows_cannot_take_are_refused_in_one_line(opts, message):
    with pytest.raises(ConfigValueError) as e:
        check_sliding_window(tiny_cfg(*opts))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_model_without_scores_is_named():
    class LabelsOnly(nn.Module):
        def forward(self, batched_inputs):
            return [
                {"sem_seg_labels": torch.zeros(2, 2, dtype=torch.int64)} for _ in batched_inputs
            ]

    model = SlidingWindowInference(LabelsOnly(), window_size=(2, 2), stride=(1, 1))
    with pytest.raises(KeyError, match=r"averages the windows' 'sem_seg' scores; the model gave"):
        model([{"image": torch.zeros(3, 4, 4)}])

"""Inference on single images of any size, for the demo and for your own scripts.

    predictor = MaskFormerPredictor.from_config(cfg)     # builds the model, loads MODEL.WEIGHTS
    prediction = predictor(read_image("photo.jpg", "RGB"))
    prediction.semantic                                  # (H, W) class per pixel

Memory does not grow with the K x H x W score maps of a large photograph: the model is asked for
its outputs at the network resolution (the image resized to INPUT.MIN_SIZE_TEST /
MAX_SIZE_TEST), and only label maps are brought to the output size:

- semantic: the (K, h, w) scores are resized bilinearly and arg-maxed a band of rows at a time,
  which gives the labels of the model's own full-size output (what evaluation computes) with
  at most `max_chunk_bytes` of scores at the output size in memory;
- panoptic and instance: the segment-id map and the kept instance masks are resized by nearest
  neighbour (the model would otherwise resize Q mask logits to the full size first); boxes are
  the tight boxes of the resized masks.

Shapes: K classes, H x W the output size (default: the image's), h x w the network resolution.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Instances
from torch import Tensor, nn

from .checkpoint import MaskFormerCheckpointer, UntrainedModelError, check_trained
from .data.dataset_mapper import image_format_of
from .data.io import is_multichannel_format
from .export import OnnxRuntimeMaskFormer
from .modeling.inference_transforms import check_semantic_output, optimize_from_config
from .modeling.network_transforms import inference_precision, network_transforms_from_config
from .modeling.postprocessing import semantic_labels
from .modeling.resample import nearest_resize
from .modeling.sliding_window import check_sliding_window, sliding_window_from_config

__all__ = [
    "MaskFormerPredictor",
    "Prediction",
    "UntrainedModelError",
]

logger = logging.getLogger(__name__)

# Runtimes of the network: PyTorch (the built model) or ONNX Runtime (an exported file).
BACKENDS = ("pytorch", "onnxruntime")


@dataclass
class Prediction:
    """The outputs the model produces for one image, at the output size (H, W).

    Attributes:
        semantic: (H, W) int64 class per pixel, or None.
        panoptic: ((H, W) int32 segment ids, 0 = void; segments_info with "id", "category_id",
            "isthing"), or None.
        instances: Instances of size (H, W) with pred_masks (D, H, W) bool, pred_boxes,
            scores, pred_classes, or None.
    """

    semantic: Optional[Tensor] = None
    panoptic: Optional[Tuple[Tensor, List[Dict]]] = None
    instances: Optional[Instances] = None


def _resize_instances(instances: Instances, size: Tuple[int, int]) -> Instances:
    out = Instances(size)
    masks = nearest_resize(instances.pred_masks, size)
    out.pred_masks = masks
    out.pred_boxes = BitMasks(masks).get_bounding_boxes().to(masks.device)
    out.scores = instances.scores
    out.pred_classes = instances.pred_classes
    return out


class MaskFormerPredictor:
    """Runs a segmentation model on one RGB image at a time, like Detectron2's
    `DefaultPredictor`, with outputs brought to any size at bounded memory (module docstring).

    Works with any model taking Detectron2 input dicts and returning "sem_seg" scores,
    "panoptic_seg" and/or "instances" (MaskFormer, the per-pixel baselines' SemanticSegmentor).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        min_size_test: int,
        max_size_test: int,
        input_format: str = "RGB",
        max_chunk_bytes: int = 64 << 20,
        labels_at_output_size: bool = False,
    ):
        """
        Args:
            model: the model, in eval mode.
            min_size_test, max_size_test: the network resolution: shorter side, longest side.
            input_format: channel order the model expects ("RGB" or "BGR"), or a multi-channel
                format (one letter per channel, e.g. "RGBN"; images as stored, any dtype).
            max_chunk_bytes: memory bound of the semantic label computation (`resized_argmax`).
            labels_at_output_size: the model gives semantic labels at any size asked for, at
                bounded memory (`SlidingWindowInference`): ask for them at the output size.
        """
        if input_format not in ("RGB", "BGR") and not is_multichannel_format(input_format):
            raise ValueError(
                f"INPUT.FORMAT is '{input_format}'; the predictor takes RGB, BGR or a "
                "multi-channel format (one letter per channel, e.g. RGBN)"
            )
        self.model = model.eval()
        self.min_size_test = min_size_test
        self.max_size_test = max_size_test
        self.input_format = input_format
        self.max_chunk_bytes = max_chunk_bytes
        self.labels_at_output_size = labels_at_output_size

    @classmethod
    def from_config(
        cls,
        cfg,
        *,
        allow_random_weights: bool = False,
        backend: str = "pytorch",
        model_file: Optional[str] = None,
    ) -> MaskFormerPredictor:
        """Build `cfg`'s model, load MODEL.WEIGHTS with `MaskFormerCheckpointer` and apply the
        inference transforms (`optimize_from_config`; MODEL.MASK_FORMER.TEST.OPTIMIZE) and the
        network transforms (`network_transforms_from_config`; TEST.PRECISION, TEST.COMPILE); with
        MODEL.MASK_FORMER.TEST.SLIDING_WINDOW.SIZE, in sliding windows (`SlidingWindowInference`,
        giving the labels at the output size).

        With `backend` "onnxruntime", the network is instead the ONNX file `model_file`
        (`OnnxRuntimeMaskFormer`; exported by tools/export_model.py --format onnx --dynamic,
        weights included), with `cfg`'s input sizes and post-processing.

        Raises:
            ConfigValueError: INPUT.FORMAT without one PIXEL_MEAN/STD value per channel, an
                unknown or (on this CPU) slow TEST.PRECISION, an unknown SEMANTIC_OUTPUT, or a
                SLIDING_WINDOW with panoptic or instance output.
            UntrainedModelError: MODEL.WEIGHTS is empty, or the file leaves a tensor of the
                model missing or of another shape (e.g. another number of classes), so
                that the outputs would be partly random; unless `allow_random_weights`, which
                only warns.
            CheckpointMismatchError: MODEL.WEIGHTS_STRICT and any tensor of the model or the
                file does not match by name and shape.
        """
        if backend not in BACKENDS:
            raise ValueError(f"backend is '{backend}'; expected one of {BACKENDS}")
        # Config values that would fail only at the first image, or after loading: now.
        image_format_of(cfg)
        inference_precision(cfg, torch.device(cfg.MODEL.DEVICE).type)
        check_semantic_output(cfg)
        check_sliding_window(cfg)
        if (backend == "onnxruntime") != (model_file is not None):
            raise ValueError(
                f"backend '{backend}' with model_file {model_file!r}: the onnxruntime backend "
                "takes an .onnx file, the pytorch backend MODEL.WEIGHTS"
            )
        if backend == "onnxruntime":
            model = OnnxRuntimeMaskFormer.from_config(cfg, model_file)
        else:
            model = _trained_model(cfg, allow_random_weights)
        # The labels at the output size are resized from the scores at the network resolution
        # (exact), so the model keeps returning scores unless the approximate low-resolution
        # labels are asked for.
        low_res = cfg.MODEL.MASK_FORMER.TEST.SEMANTIC_OUTPUT == "low_res_labels"
        optimize_from_config(model, cfg, semantic_output="low_res_labels" if low_res else "scores")
        if backend == "pytorch":  # TEST.PRECISION / TEST.COMPILE act on a PyTorch network
            network_transforms_from_config(model, cfg)
        # Windows give exactly the labels resized from their averaged scores, band by band.
        model = sliding_window_from_config(model, cfg, semantic_output="labels")
        return cls._with_model(model, cfg)

    @classmethod
    def _with_model(cls, model: nn.Module, cfg) -> MaskFormerPredictor:
        return cls(
            model,
            min_size_test=cfg.INPUT.MIN_SIZE_TEST,
            max_size_test=cfg.INPUT.MAX_SIZE_TEST,
            input_format=cfg.INPUT.FORMAT,
            labels_at_output_size=bool(cfg.MODEL.MASK_FORMER.TEST.SLIDING_WINDOW.SIZE),
        )

    def network_size(self, height: int, width: int) -> Tuple[int, int]:
        """The (h, w) an image of size (height, width) is resized to for the model."""
        h, w = T.ResizeShortestEdge.get_output_shape(
            height, width, self.min_size_test, self.max_size_test
        )
        # A very elongated image (1 x 8000) would round its short side to 0.
        return max(h, 1), max(w, 1)

    @torch.no_grad()
    def __call__(
        self, image: np.ndarray, output_size: Optional[Tuple[int, int]] = None
    ) -> Prediction:
        """
        Args:
            image: (H0, W0, 3) uint8 RGB; for a multi-channel INPUT.FORMAT, (H0, W0, C) of any
                dtype with the format's channels.
            output_size: (H, W) of the outputs; default (H0, W0).
        Returns:
            the model's outputs at `output_size` (`Prediction`).
        """
        if is_multichannel_format(self.input_format):
            c = len(self.input_format)
            if image.ndim != 3 or image.shape[2] != c:
                raise ValueError(
                    f"expected an (H, W, {c}) image (INPUT.FORMAT '{self.input_format}'), got "
                    f"{image.dtype} {tuple(image.shape)}"
                )
            image = image.astype(np.float32)  # resized with torch, normalised by the model
        elif image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"expected an (H, W, 3) uint8 RGB image, got {image.dtype} {tuple(image.shape)}"
            )
        height, width = image.shape[:2]
        size = tuple(output_size) if output_size is not None else (height, width)
        h, w = self.network_size(height, width)
        resized = T.ResizeTransform(height, width, h, w).apply_image(image)
        if self.input_format == "BGR":
            resized = resized[:, :, ::-1]
        x = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)))
        # Outputs at the network resolution: no (K or Q, H, W) maps at the output size (windows
        # give the labels at the output size themselves).
        out_h, out_w = size if self.labels_at_output_size else (h, w)
        out = self.model([{"image": x, "height": out_h, "width": out_w}])[0]
        prediction = Prediction()
        if "sem_seg" in out or "sem_seg_labels" in out:
            prediction.semantic = semantic_labels(out, size, self.max_chunk_bytes).cpu()
        if "panoptic_seg" in out:
            ids, segments_info = out["panoptic_seg"]
            prediction.panoptic = (nearest_resize(ids, size).cpu(), segments_info)
        if "instances" in out:
            prediction.instances = _resize_instances(out["instances"], size).to("cpu")
        return prediction


def _trained_model(cfg, allow_random_weights: bool) -> nn.Module:
    """`cfg`'s model with MODEL.WEIGHTS loaded; see `MaskFormerPredictor.from_config`."""
    model = build_model(cfg)
    weights = cfg.MODEL.WEIGHTS
    if not weights:
        problem = (
            "MODEL.WEIGHTS is empty: the model has random weights and its output would be "
            "noise. Give trained weights (MODEL.WEIGHTS path/to/model_final.pth)"
        )
    else:
        # Refused before loading, so that the loader's own warnings do not come first.
        checkpointer = MaskFormerCheckpointer(
            model, strict=cfg.MODEL.WEIGHTS_STRICT, require_trained=not allow_random_weights
        )
        problem = ""
        try:
            checkpointer.load(weights)
            check_trained(checkpointer.last_report)
        except UntrainedModelError as e:
            problem = str(e)
    if problem:
        if not allow_random_weights:
            raise UntrainedModelError(problem + "; or allow random weights explicitly.")
        logger.warning(problem + " (random weights allowed).")
    return model

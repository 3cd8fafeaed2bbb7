"""Inference on single images of any size, for the demo and your own scripts (docs/deployment.md).

The model is run at the network resolution and only label maps are brought to the output size.
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
    """The model's outputs for one image, at the output size (H, W).

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
    """Detectron2's `DefaultPredictor` for any model returning "sem_seg", "panoptic_seg" and/or
    "instances", with outputs brought to any size at bounded memory."""

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
        """Build `cfg`'s model, load MODEL.WEIGHTS and apply the inference and network
        transforms and the sliding window as `cfg` says; with `backend` "onnxruntime", the network
        is the ONNX file `model_file` (tools/export_model.py --format onnx --dynamic) instead.

        Raises:
            ConfigValueError: a config value the inference would refuse later.
            UntrainedModelError: weights that leave a tensor of the model random, unless
                `allow_random_weights`, which only warns.
            CheckpointMismatchError: MODEL.WEIGHTS_STRICT and the file does not match exactly.
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
    try:
        if not cfg.MODEL.WEIGHTS:
            raise UntrainedModelError(
                "MODEL.WEIGHTS is empty: the model has random weights and its output would be "
                "noise. Give trained weights (MODEL.WEIGHTS path/to/model_final.pth)"
            )
        # Refused before loading, so that the loader's own warnings do not come first.
        checkpointer = MaskFormerCheckpointer(
            model, strict=cfg.MODEL.WEIGHTS_STRICT, require_trained=not allow_random_weights
        )
        checkpointer.load(cfg.MODEL.WEIGHTS)
        check_trained(checkpointer.last_report)
    except UntrainedModelError as e:
        if not allow_random_weights:
            raise UntrainedModelError(f"{e}; or allow random weights explicitly.") from None
        logger.warning(f"{e} (random weights allowed).")
    return model

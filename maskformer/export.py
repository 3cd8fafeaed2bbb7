"""The network part of MaskFormer (up to the class and mask logits, before the data-dependent
post-processing) as a plain tensor function for `torch.export` and ONNX, and an ONNX file run
by ONNX Runtime behind the model's own interface (docs/deployment.md).

Shapes: B images, Q queries, K classes, Hp x Wp the input padded to the size divisibility.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .modeling.meta_arch import MaskFormer, postprocessing_from_config, thing_ids_of
from .modeling.postprocessing import PostProcessing

__all__ = ["MaskFormerLogits", "OnnxRuntimeMaskFormer", "export_onnx", "export_program"]

# ONNX metadata written by `export_onnx` and checked by `OnnxRuntimeMaskFormer`.
SIZE_DIVISIBILITY_KEY = "maskformer.size_divisibility"
NORMALIZE_KEY = "maskformer.normalize"


class MaskFormerLogits(nn.Module):
    """MaskFormer's backbone and head as `images -> (pred_logits, pred_masks)`, eval mode,
    sharing the wrapped model's parameters.

    The weights go back to the contiguous memory order: `torch.export.save` cannot pack
    channels-last tensors as a whole.
    """

    def __init__(self, model: MaskFormer, normalize: bool = True):
        """
        Args:
            model: a MaskFormer (set to eval mode here).
            normalize: the input is a raw image tensor (float, 0-255, the model's channel order)
                and is normalised with the model's pixel mean and std; False: it is normalised
                already.
        """
        super().__init__()
        model.eval()
        self.backbone = model.backbone
        self.sem_seg_head = model.sem_seg_head
        self.size_divisibility = model.size_divisibility
        self.normalize = normalize
        self.register_buffer("pixel_mean", model.pixel_mean.clone(), False)
        self.register_buffer("pixel_std", model.pixel_std.clone(), False)
        self.to(memory_format=torch.contiguous_format)
        self.eval()

    def forward(self, images: Tensor) -> Tuple[Tensor, Tensor]:
        """
        Args:
            images: (B, 3, H, W) float.
        Returns:
            pred_logits (B, Q, K + 1), pred_masks (B, Q, Hp / 4, Wp / 4); padding at the bottom
            and right with zeros after normalisation, as the model pads.
        """
        if self.normalize:
            images = (images - self.pixel_mean) / self.pixel_std
        d = self.size_divisibility
        if d > 1:
            h, w = images.shape[-2:]
            images = F.pad(images, (0, (d - w % d) % d, 0, (d - h % d) % d))
        out = self.sem_seg_head(self.backbone(images))
        return out["pred_logits"], out["pred_masks"]


def export_program(module: MaskFormerLogits, example: Tensor) -> torch.export.ExportedProgram:
    """`torch.export` of the module at the example's (fixed) shape."""
    with torch.no_grad():
        return torch.export.export(module, (example,))


def export_onnx(
    module: MaskFormerLogits, example: Tensor, path: str, opset: int = 18, dynamic: bool = False
) -> None:
    """ONNX file of the module, inputs "images", outputs "pred_logits" and "pred_masks", its
    size divisibility and normalisation in the metadata (needs `onnx` and `onnxscript`).

    Args:
        example: (B, 3, H, W) an input; the file takes inputs of this shape only, or with
            `dynamic`, of any height and width (at least 16) and batch size B.
    """
    import onnx

    dynamic_shapes = None
    if dynamic:
        height, width = torch.export.Dim("height", min=16), torch.export.Dim("width", min=16)
        dynamic_shapes = {"images": {2: height, 3: width}}
    with torch.no_grad():
        torch.onnx.export(
            module,
            (example,),
            path,
            input_names=["images"],
            output_names=["pred_logits", "pred_masks"],
            opset_version=opset,
            dynamo=True,
            external_data=False,
            dynamic_shapes=dynamic_shapes,
        )
    proto = onnx.load(path)
    fixed = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim[2:]]
    if dynamic and all(fixed):
        # torch.export keeps the example's size where the model's code branches on it (Swin
        # below 224 pixels a side, whose last stages are then smaller than a window).
        logging.getLogger(__name__).warning(
            f"{path}: exported for {fixed[0]} x {fixed[1]} inputs only, not any size as asked "
            "(the model's code fixed the size at this example); export with a larger example"
        )
    meta = {SIZE_DIVISIBILITY_KEY: str(module.size_divisibility)}
    meta[NORMALIZE_KEY] = str(int(module.normalize))
    onnx.helper.set_model_props(proto, meta)
    onnx.save(proto, path)


class OnnxRuntimeMaskFormer(nn.Module):
    """`MaskFormer` at inference, with the network run by ONNX Runtime from a file of
    `export_onnx` (raw-image input) and the model's post-processing (`self.postprocessing`).

    Images are padded with the pixel mean, which the network's normalisation turns into the zeros
    the PyTorch model pads with: the outputs are the PyTorch model's up to float rounding.
    """

    def __init__(
        self,
        path: str,
        *,
        postprocessing: PostProcessing,
        pixel_mean: Sequence[float],
        thing_ids: Optional[Sequence[int]] = None,
        num_threads: Optional[int] = None,
    ):
        """
        Args:
            pixel_mean: the model's MODEL.PIXEL_MEAN (the padding value).
            thing_ids: contiguous ids of the thing classes (panoptic and instance outputs).
            num_threads: ONNX Runtime's intra-op threads; default torch.get_num_threads().
        """
        super().__init__()
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = num_threads or torch.get_num_threads()
        if not os.path.isfile(path):
            raise FileNotFoundError(f"ONNX file not found: {path}")
        try:
            self.session = onnxruntime.InferenceSession(
                path, options, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime's own error types are not exported stably
            raise ValueError(f"{path}: ONNX Runtime cannot load it as a model: {e}") from e
        meta = self.session.get_modelmeta().custom_metadata_map
        names = [i.name for i in self.session.get_inputs()]
        if names != ["images"] or meta.get(NORMALIZE_KEY) != "1":
            raise ValueError(
                f"{path}: expected a MaskFormer network exported by tools/export_model.py "
                f"--format onnx without --normalized-input (one input 'images' and metadata "
                f"{NORMALIZE_KEY}=1); got inputs {names} and metadata {dict(meta)}"
            )
        self.path = path
        self.size_divisibility = int(meta[SIZE_DIVISIBILITY_KEY])
        batch_size = self.session.get_inputs()[0].shape[0]
        self.batch_size = batch_size if isinstance(batch_size, int) else None
        self.postprocessing = postprocessing
        self.thing_ids = thing_ids
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)

    @classmethod
    def from_config(cls, cfg, path: str) -> OnnxRuntimeMaskFormer:
        """The file at `path` with `cfg`'s post-processing options (MODEL.MASK_FORMER.TEST) and
        the thing classes of its first DATASETS.TEST."""
        test_dataset = cfg.DATASETS.TEST[0] if len(cfg.DATASETS.TEST) else None
        return cls(
            path,
            postprocessing=postprocessing_from_config(cfg),
            pixel_mean=cfg.MODEL.PIXEL_MEAN,
            thing_ids=thing_ids_of(test_dataset),
        )

    def extra_repr(self) -> str:
        return f"path={self.path}, size_divisibility={self.size_divisibility}"

    @torch.no_grad()
    def forward(self, batched_inputs: List[Dict], dataset_name: Optional[str] = None):
        """As `MaskFormer.forward` at inference."""
        thing_ids = self.thing_ids if dataset_name is None else thing_ids_of(dataset_name)
        images = [x["image"].to(torch.float32) for x in batched_inputs]
        image_sizes = [tuple(im.shape[-2:]) for im in images]
        h, w = (max(s[i] for s in image_sizes) for i in range(2))
        batch = self.pixel_mean.expand(len(images), -1, h, w).clone()
        for i, im in enumerate(images):
            batch[i, :, : im.shape[1], : im.shape[2]] = im
        # A file's batch size is fixed (the exported example's): run the images in such chunks.
        step = self.batch_size or len(images)
        outputs = [
            self.session.run(None, {"images": batch[i : i + step].numpy()})
            for i in range(0, len(images), step)
        ]
        logits = [x for out in outputs for x in out[0]]
        masks = [x for out in outputs for x in out[1]]
        d = max(self.size_divisibility, 1)
        padded_size = (math.ceil(h / d) * d, math.ceil(w / d) * d)
        results = []
        for mask_cls, mask_logits, x, size in zip(logits, masks, batched_inputs, image_sizes):
            out_size = (x.get("height", size[0]), x.get("width", size[1]))
            results.append(
                self.postprocessing(
                    torch.from_numpy(mask_cls),
                    torch.from_numpy(mask_logits),
                    padded_size,
                    size,
                    out_size,
                    thing_ids,
                )
            )
        return results

"""The network part of MaskFormer as a plain tensor function, for `torch.export` and ONNX.

`MaskFormer.forward` takes Detectron2 input dicts and returns post-processed outputs whose sizes
depend on the data; the exportable part is everything up to the class and mask logits:

    images (B, 3, H, W) -> pred_logits (B, Q, K + 1), pred_masks (B, Q, Hp / 4, Wp / 4)

with Hp x Wp the input padded to the model's size divisibility (the padding the model applies,
at the bottom and right, with zeros after normalisation). Post-processing (`maskformer.modeling.
postprocessing`) then runs on these two tensors in Python. Shapes: B images, Q queries, K classes.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .modeling.meta_arch import MaskFormer

__all__ = ["MaskFormerLogits", "export_onnx", "export_program"]


class MaskFormerLogits(nn.Module):
    """MaskFormer's backbone and head as `images -> (pred_logits, pred_masks)`, eval mode.

    Shares the parameters of the model it wraps, and puts its convolution weights back in the
    default (contiguous) memory order: the exported program's weight files expect dense tensors
    (`torch.export.save` cannot pack channels-last ones as a whole), and the wrapped model still
    computes the same numbers.
    """

    def __init__(self, model: MaskFormer, normalize: bool = True):
        """
        Args:
            model: a MaskFormer (set to eval mode here: the export is of inference).
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
            pred_logits (B, Q, K + 1) class logits, pred_masks (B, Q, Hp / 4, Wp / 4) mask logits.
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


def export_onnx(module: MaskFormerLogits, example: Tensor, path: str, opset: int = 18) -> None:
    """ONNX file of the module at the example's (fixed) shape, inputs "images", outputs
    "pred_logits" and "pred_masks" (torch.onnx's exporter from `torch.export`; needs `onnx` and
    `onnxscript`)."""
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
        )

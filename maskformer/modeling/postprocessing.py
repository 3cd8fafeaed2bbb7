"""From Q (class, mask) pairs to semantic, panoptic and instance outputs (paper Sec. 3.4).

Pure functions of one image's predictions, and `PostProcessing`, which applies them as the
official MaskFormer does. Shapes: Q queries, K classes (the K + 1-th logit is "no object"),
h x w the mask logits' size (stride 4), Hp x Wp the padded input, H x W the output, D detections.
"""

from __future__ import annotations

import inspect
from typing import Collection, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.modeling.postprocessing import sem_seg_postprocess
from detectron2.structures import BitMasks, Boxes, Instances
from torch import Tensor, nn

from .resample import nearest_resize, resized_argmax

__all__ = [
    "PostProcessing",
    "semantic_labels",
    "instance_inference",
    "masks_at_output",
    "panoptic_inference",
    "semantic_inference",
]


def semantic_inference(mask_cls: Tensor, mask_pred: Tensor) -> Tensor:
    """(K, H, W) per-class scores `sum_q p_q(c) * sigmoid(m_q)` (not normalised) of mask_cls
    (Q, K + 1) class logits and mask_pred (Q, H, W) mask logits."""
    probs = mask_cls.softmax(-1)[:, :-1]
    return torch.einsum("qc,qhw->chw", probs, mask_pred.sigmoid())


def semantic_labels(
    output: Dict[str, object],
    size: Optional[Tuple[int, int]] = None,
    max_chunk_bytes: int = 64 << 20,
) -> Tensor:
    """(H, W) int64 class ids of one image's output ("sem_seg" (K, h, w) scores or
    "sem_seg_labels" (h, w)): the one reader of the semantic output, for every consumer. `size`:
    (H, W), default (h, w); scores are resized bilinearly (`resized_argmax`), labels nearest."""
    if "sem_seg_labels" in output:
        labels = output["sem_seg_labels"]
        return labels if size is None else nearest_resize(labels, size)
    if "sem_seg" not in output:
        raise KeyError(
            "expected a semantic output, 'sem_seg' (scores) or 'sem_seg_labels', in the model "
            f"output; got keys {sorted(output)} (MODEL.MASK_FORMER.TEST.SEMANTIC_ON?)"
        )
    scores = output["sem_seg"]
    if size is None or tuple(size) == tuple(scores.shape[-2:]):
        return scores.argmax(dim=0)
    return resized_argmax(scores, size, max_chunk_bytes)


def kept_queries(mask_cls: Tensor, object_mask_threshold: float) -> Tuple[Tensor, Tensor, Tensor]:
    """Queries whose best class is a real one with probability above the threshold: keep (Q,)
    bool, their scores (Q',) and classes (Q',)."""
    scores, labels = mask_cls.softmax(-1).max(-1)
    keep = labels.ne(mask_cls.shape[-1] - 1) & (scores > object_mask_threshold)
    return keep, scores[keep], labels[keep]


def paint_segments(
    owner: Tensor,
    original_area: Tensor,
    classes: Tensor,
    thing_ids: Collection[int],
    overlap_threshold: float,
) -> Tuple[Tensor, List[Dict[str, object]]]:
    """Turn the owner map of the kept queries into segments, visiting queries in order.

    Args:
        owner: (H, W) int64, the kept query (index into `classes` (Q',)) owning each pixel.
        original_area: (Q',) pixels where each kept query's mask probability is >= 0.5.
    """
    visible_area = torch.bincount(owner.flatten(), minlength=len(classes)).tolist()
    original_area = original_area.tolist()
    thing_ids = set(thing_ids)
    # Segment id of each kept query (0: dropped); pixels are painted once, through this table.
    segment_of = [0] * len(classes)
    segments_info: List[Dict[str, object]] = []
    stuff_segment: Dict[int, int] = {}
    for k, pred_class in enumerate(classes.tolist()):
        is_thing = pred_class in thing_ids
        mask_area, full_area = visible_area[k], original_area[k]
        if mask_area == 0 or full_area == 0:
            continue
        if mask_area / full_area < overlap_threshold:
            continue
        if not is_thing and pred_class in stuff_segment:
            segment_of[k] = stuff_segment[pred_class]
            continue
        segment_of[k] = len(segments_info) + 1
        segments_info.append({"id": segment_of[k], "isthing": is_thing, "category_id": pred_class})
        if not is_thing:
            stuff_segment[pred_class] = segment_of[k]
    table = torch.tensor(segment_of, dtype=torch.int32, device=owner.device)
    return table[owner], segments_info


def panoptic_inference(
    mask_cls: Tensor,
    mask_pred: Tensor,
    thing_ids: Collection[int],
    object_mask_threshold: float,
    overlap_threshold: float,
) -> Tuple[Tensor, List[Dict[str, object]]]:
    """Panoptic segmentation of one image, as the official MaskFormer defines it.

    A query is kept if its best class is not "no object" and its probability exceeds
    `object_mask_threshold`. Each pixel goes to the kept query maximising p_q * sigmoid(m_q).
    Queries are then visited in order; one whose visible area is less than `overlap_threshold`
    times its own mask area (sigmoid >= 0.5) is dropped. All queries of one stuff class form one
    segment; each thing query forms its own.

    Args:
        mask_cls: (Q, K + 1) class logits; mask_pred: (Q, H, W) mask logits.
        thing_ids: contiguous ids (in [0, K)) of the thing classes; the rest are stuff.
    Returns:
        panoptic_seg: (H, W) int32, 0 = void, segments numbered from 1.
        segments_info: one dict per segment id in the map: "id", "isthing", "category_id".
    """
    keep, scores, classes = kept_queries(mask_cls, object_mask_threshold)
    h, w = mask_pred.shape[-2:]
    if not bool(keep.any()):
        return torch.zeros((h, w), dtype=torch.int32, device=mask_pred.device), []
    probs = mask_pred[keep].sigmoid()
    owner = (scores.view(-1, 1, 1) * probs).argmax(0)
    original_area = (probs >= 0.5).flatten(1).sum(1)
    return paint_segments(owner, original_area, classes, thing_ids, overlap_threshold)


def instance_inference(
    mask_cls: Tensor,
    mask_pred: Tensor,
    *,
    max_detections: int,
    candidate_classes: Optional[Collection[int]] = None,
    score_threshold: float = 0.0,
) -> Instances:
    """Instance segmentation of one image: the best (query, class) pairs, as Mask2Former does.

    Every (query, class) pair is a candidate, so one query can give several detections of
    different classes. The `max_detections` pairs of highest class probability are kept; a
    detection's mask is its query's mask logit > 0, and its score is the class probability times
    the mean mask probability inside that mask. Boxes are the masks' bounding boxes.

    Args:
        mask_cls: (Q, K + 1) class logits; mask_pred: (Q, H, W) mask logits.
        candidate_classes: contiguous ids that can be instances (the thing classes); None: all K.
        score_threshold: detections scoring at most this are dropped (after the top-k).
    Returns:
        Instances of image size (H, W), highest score first, with pred_masks (D, H, W) bool,
        pred_boxes Boxes (D, 4) XYXY (zeros for an empty mask), scores (D,), pred_classes (D,)
        int64.
    """
    num_classes = mask_cls.shape[1] - 1
    device = mask_cls.device
    if candidate_classes is None:
        classes = torch.arange(num_classes, device=device)
    else:
        classes = torch.as_tensor(sorted(candidate_classes), dtype=torch.int64, device=device)
    result = Instances(tuple(mask_pred.shape[-2:]))
    probs = mask_cls.softmax(-1)[:, classes]  # (Q, C): "no object" dropped after the softmax
    k = min(max_detections, probs.numel())
    if k == 0:
        result.pred_masks = mask_pred.new_zeros((0, *mask_pred.shape[-2:]), dtype=torch.bool)
        result.pred_boxes = Boxes(mask_pred.new_zeros((0, 4)))
        result.scores = mask_pred.new_zeros((0,))
        result.pred_classes = classes[:0]
        return result
    class_scores, flat = probs.flatten().topk(k)
    queries = flat // classes.numel()
    labels = classes[flat % classes.numel()]

    # Masks and their mean probabilities once per distinct query: with Q = 100 queries at image
    # resolution, per-detection copies would cost up to k full-size float maps.
    unique_queries, which = queries.unique(return_inverse=True)
    logits = mask_pred[unique_queries]
    binary = logits > 0
    inside = (logits.sigmoid() * binary).flatten(1).sum(1)
    mask_scores = inside / (binary.flatten(1).sum(1) + 1e-6)
    scores = class_scores * mask_scores[which]
    keep = (scores > score_threshold).nonzero().flatten()
    keep = keep[scores[keep].argsort(descending=True, stable=True)]

    masks = binary[which[keep]]
    result.pred_masks = masks
    result.pred_boxes = BitMasks(masks).get_bounding_boxes().to(masks.device)
    result.scores = scores[keep]
    result.pred_classes = labels[keep]
    return result


def masks_at_output(
    mask_logits: Tensor,
    padded_size: Tuple[int, int],
    image_size: Tuple[int, int],
    output_size: Tuple[int, int],
) -> Tensor:
    """(Q, h, w) mask logits -> (Q, H, W) at the output size, as the official model does it:
    bilinear upsampling to the padded input size, crop to the image, bilinear resize."""
    masks = F.interpolate(mask_logits[None], size=padded_size, mode="bilinear", align_corners=False)
    return sem_seg_postprocess(masks[0], image_size, *output_size)


class PostProcessing(nn.Module):
    """One image's outputs from its class and mask logits, as the official MaskFormer computes
    them: the mask logits are upsampled to the padded input size, cropped to the image and
    resized to the output size, then combined."""

    def __init__(
        self,
        *,
        semantic_on: bool = True,
        panoptic_on: bool = False,
        instance_on: bool = False,
        sem_seg_postprocess_before_inference: bool = False,
        object_mask_threshold: float = 0.0,
        overlap_threshold: float = 0.0,
        detections_per_image: int = 100,
        instance_score_threshold: float = 0.0,
    ):
        """
        Args:
            sem_seg_postprocess_before_inference: resize the mask logits to the output size
                before combining them instead of resizing the combined K maps (always so for
                panoptic and instance output).
            object_mask_threshold, overlap_threshold: as `panoptic_inference`'s.
            detections_per_image, instance_score_threshold: as `instance_inference`'s
                `max_detections`, `score_threshold`.
        """
        super().__init__()
        if not (semantic_on or panoptic_on or instance_on):
            raise ValueError(
                "MaskFormer has no output: set at least one of MODEL.MASK_FORMER.TEST."
                "{SEMANTIC_ON, PANOPTIC_ON, INSTANCE_ON} to True"
            )
        self.semantic_on = semantic_on
        self.panoptic_on = panoptic_on
        self.instance_on = instance_on
        self.sem_seg_postprocess_before_inference = (
            sem_seg_postprocess_before_inference or panoptic_on or instance_on
        )
        self.object_mask_threshold = object_mask_threshold
        self.overlap_threshold = overlap_threshold
        self.detections_per_image = detections_per_image
        self.instance_score_threshold = instance_score_threshold

    def options(self) -> Dict[str, object]:
        """The constructor arguments, to build another post-processing with the same options."""
        return {name: getattr(self, name) for name in inspect.signature(PostProcessing).parameters}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.options().items())

    def forward(
        self,
        mask_cls: Tensor,
        mask_logits: Tensor,
        padded_size: Tuple[int, int],
        image_size: Tuple[int, int],
        output_size: Tuple[int, int],
        thing_ids: Optional[Sequence[int]],
    ) -> Dict[str, object]:
        """mask_cls (Q, K + 1) and mask_logits (Q, h, w) of the padded input (Hp, Wp), whose top
        left `image_size` is the image -> "sem_seg" (K, H, W), "panoptic_seg" ((H, W) int32 ids,
        segments_info) and "instances", as switched on. `thing_ids` None: the dataset declares
        none (panoptic output is then all stuff, and every class can be an instance)."""
        masks = F.interpolate(
            mask_logits[None], size=padded_size, mode="bilinear", align_corners=False
        )[0]
        if self.sem_seg_postprocess_before_inference:
            masks = sem_seg_postprocess(masks, image_size, *output_size)
        result: Dict[str, object] = {}
        if self.semantic_on:
            sem_seg = semantic_inference(mask_cls, masks)
            if not self.sem_seg_postprocess_before_inference:
                sem_seg = sem_seg_postprocess(sem_seg, image_size, *output_size)
            result["sem_seg"] = sem_seg
        if self.panoptic_on:
            result["panoptic_seg"] = panoptic_inference(
                mask_cls, masks, thing_ids or (), self.object_mask_threshold, self.overlap_threshold
            )
        if self.instance_on:
            # Stuff classes have no instances (and COCO's AP evaluation could not map them).
            result["instances"] = instance_inference(
                mask_cls,
                masks,
                max_detections=self.detections_per_image,
                candidate_classes=thing_ids,
                score_threshold=self.instance_score_threshold,
            )
        return result

"""MaskFormer configuration keys and safe config-file loading."""

from __future__ import annotations

import os

import yaml
from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg
from detectron2.projects.deeplab import add_deeplab_config

__all__ = ["add_maskformer_config", "get_maskformer_cfg", "merge_config_file", "UnsafeConfigError"]


def add_maskformer_config(cfg: CN) -> None:
    """Add the MaskFormer keys, with the defaults of the official implementation, to `cfg`.

    Call `detectron2.projects.deeplab.add_deeplab_config(cfg)` first: MaskFormer configs use its
    poly LR schedule, crop constraint and DeepLab ResNet stem.
    """
    # data
    cfg.INPUT.DATASET_MAPPER_NAME = "mask_former_semantic"  # training mapper, chosen by name
    cfg.INPUT.COLOR_AUG_SSD = False  # SSD-style colour jitter in the training mapper
    cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA = 1.0  # crop retry: max area share of one class
    cfg.INPUT.SIZE_DIVISIBILITY = -1  # mapper pads image and labels to exactly this size (-1: no)

    # solver
    cfg.SOLVER.WEIGHT_DECAY_EMBED = 0.0  # weight decay of nn.Embedding parameters (the queries)
    cfg.SOLVER.OPTIMIZER = "ADAMW"  # "ADAMW" or "SGD"
    cfg.SOLVER.BACKBONE_MULTIPLIER = 0.1  # LR factor for parameters under `backbone`
    # Autocast dtype of SOLVER.AMP: "float16" (with loss scaling) or "bfloat16"; "": float16 on
    # CUDA, bfloat16 on the CPU.
    cfg.SOLVER.AMP.PRECISION = ""

    cfg.MODEL.MASK_FORMER = CN()
    # loss
    cfg.MODEL.MASK_FORMER.DEEP_SUPERVISION = True  # losses on every decoder layer's output
    cfg.MODEL.MASK_FORMER.NO_OBJECT_WEIGHT = 0.1  # cross-entropy weight of the "no object" class
    cfg.MODEL.MASK_FORMER.DICE_WEIGHT = 1.0  # dice loss and matching-cost weight
    cfg.MODEL.MASK_FORMER.MASK_WEIGHT = 20.0  # sigmoid focal loss and matching-cost weight
    # Mask losses and matching costs at this many sampled points per mask (Mask2Former: 12544)
    # instead of every pixel; 0 = every pixel (official MaskFormer). Saves training memory.
    cfg.MODEL.MASK_FORMER.TRAIN_NUM_POINTS = 0
    cfg.MODEL.MASK_FORMER.OVERSAMPLE_RATIO = 3.0  # point sampling: candidates per kept point
    cfg.MODEL.MASK_FORMER.IMPORTANCE_SAMPLE_RATIO = 0.75  # share of points chosen by uncertainty
    # transformer predictor
    cfg.MODEL.MASK_FORMER.NHEADS = 8  # attention heads (also the pixel decoder's encoder)
    cfg.MODEL.MASK_FORMER.DROPOUT = 0.1  # transformer dropout (also the pixel decoder's encoder)
    cfg.MODEL.MASK_FORMER.DIM_FEEDFORWARD = 2048  # transformer FFN width
    cfg.MODEL.MASK_FORMER.ENC_LAYERS = 0  # encoder layers inside the predictor's transformer
    cfg.MODEL.MASK_FORMER.DEC_LAYERS = 6  # decoder layers
    cfg.MODEL.MASK_FORMER.PRE_NORM = False  # pre-norm instead of post-norm transformer layers
    cfg.MODEL.MASK_FORMER.HIDDEN_DIM = 256  # transformer width
    cfg.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES = 100  # N, the number of predicted masks
    # Feature the decoder attends to: a backbone feature name, or "transformer_encoder" for the
    # output of TransformerEncoderPixelDecoder's encoder.
    cfg.MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE = "res5"
    cfg.MODEL.MASK_FORMER.ENFORCE_INPUT_PROJ = False  # 1x1 input projection even if dims match
    # Pad the batch to a multiple of this inside the model (<0: the backbone's requirement).
    cfg.MODEL.MASK_FORMER.SIZE_DIVISIBILITY = 32

    # inference
    cfg.MODEL.MASK_FORMER.TEST = CN()
    cfg.MODEL.MASK_FORMER.TEST.SEMANTIC_ON = True  # output "sem_seg" (K score maps)
    cfg.MODEL.MASK_FORMER.TEST.PANOPTIC_ON = False  # output "panoptic_seg"
    # Output "instances"; at most TEST.DETECTIONS_PER_IMAGE per image, thing classes only.
    cfg.MODEL.MASK_FORMER.TEST.INSTANCE_ON = False
    cfg.MODEL.MASK_FORMER.TEST.INSTANCE_SCORE_THRESHOLD = 0.0  # instance: keep scores above this
    cfg.MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD = 0.0  # panoptic: min class score of a query
    cfg.MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD = 0.0  # panoptic: min visible/full mask area
    # Resize mask logits to the output size before combining them (exact but memory-hungry).
    cfg.MODEL.MASK_FORMER.TEST.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE = False
    # Inference transform (with OPTIMIZE): "sem_seg_labels" only, combined at the mask resolution
    # and resized in bands: an approximation whose memory does not grow with classes x output size.
    cfg.MODEL.MASK_FORMER.TEST.SEM_SEG_LOW_RES_LABELS = False

    # evaluation
    # Processes computing PQ; panopticapi alone would start one per CPU of the machine.
    cfg.TEST.PANOPTIC_EVAL_WORKERS = 4

    # pixel decoder
    cfg.MODEL.SEM_SEG_HEAD.MASK_DIM = 256  # per-pixel embedding dimension
    cfg.MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS = 0  # TransformerEncoderPixelDecoder layers
    cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME = "BasePixelDecoder"  # PIXEL_DECODER_REGISTRY name

    # Swin backbone (MODEL.BACKBONE.NAME: "D2SwinTransformer"); the defaults are Swin-T.
    cfg.MODEL.SWIN = CN()
    cfg.MODEL.SWIN.PRETRAIN_IMG_SIZE = 224  # pre-training image size: grid of the APE table
    cfg.MODEL.SWIN.PATCH_SIZE = 4  # patch embedding stride (res2 has this stride)
    cfg.MODEL.SWIN.EMBED_DIM = 96  # width of stage 1; stage i has EMBED_DIM * 2**i
    cfg.MODEL.SWIN.DEPTHS = [2, 2, 6, 2]  # transformer blocks per stage
    cfg.MODEL.SWIN.NUM_HEADS = [3, 6, 12, 24]  # attention heads per stage
    cfg.MODEL.SWIN.WINDOW_SIZE = 7  # attention window side, in tokens
    cfg.MODEL.SWIN.MLP_RATIO = 4.0  # MLP hidden width / block width
    cfg.MODEL.SWIN.QKV_BIAS = True  # learn a bias for the q, k, v projections
    cfg.MODEL.SWIN.QK_SCALE = None  # attention scale; None: head_dim ** -0.5
    cfg.MODEL.SWIN.DROP_RATE = 0.0  # dropout after the embedding and projections
    cfg.MODEL.SWIN.ATTN_DROP_RATE = 0.0  # dropout of the attention weights
    cfg.MODEL.SWIN.DROP_PATH_RATE = 0.3  # stochastic depth of the last block (linear from 0)
    cfg.MODEL.SWIN.APE = False  # learned absolute position embedding
    cfg.MODEL.SWIN.PATCH_NORM = True  # LayerNorm after the patch embedding
    cfg.MODEL.SWIN.OUT_FEATURES = ["res2", "res3", "res4", "res5"]  # features to return
    cfg.MODEL.SWIN.USE_CHECKPOINT = False  # gradient checkpointing of every block (saves memory)

    # inference transforms (maskformer.modeling.inference_transforms)
    # Predictor, demo, --eval-only, export and benchmark apply the exact inference transforms
    # (same outputs up to float rounding); False: the plain model.
    cfg.MODEL.MASK_FORMER.TEST.OPTIMIZE = True
    # With OPTIMIZE: semantic output "sem_seg_labels" (H, W) class ids only, no "sem_seg" scores.
    cfg.MODEL.MASK_FORMER.TEST.SEM_SEG_LABELS_ONLY = False
    # Deployment transforms of the backbone and head (maskformer.modeling.network_transforms),
    # applied by the predictor, demo, --eval-only and benchmark. PRECISION: "float32", or
    # "bfloat16" (autocast; faster where the CPU has AVX512-BF16 or AMX, labels may differ near
    # class boundaries; post-processing stays float32).
    cfg.MODEL.MASK_FORMER.TEST.PRECISION = "float32"
    # torch.compile the backbone and head (same outputs up to float rounding; compiles at the
    # first image of each size; on the CPU needs a C++ compiler, else a warning and no compile).
    cfg.MODEL.MASK_FORMER.TEST.COMPILE = False


class UnsafeConfigError(ValueError):
    """A config file asks YAML to construct Python objects (a `!!python/...` tag)."""


def _check_plain_yaml(path: str, seen: set[str]) -> None:
    """Refuse `path` (and the `_BASE_` files it names) unless it is plain YAML."""
    path = os.path.abspath(path)
    if path in seen:
        return
    seen.add(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Config file '{path}' does not exist")
    with open(path, encoding="utf-8") as f:
        try:
            data = yaml.safe_load(f)
        except yaml.constructor.ConstructorError as e:
            where = f", line {e.problem_mark.line + 1}" if e.problem_mark else ""
            tag = e.problem.split("tag ")[-1] if e.problem and "tag " in e.problem else "?"
            tag = tag.strip("'\"").replace("tag:yaml.org,2002:", "!!")
            raise UnsafeConfigError(
                f"{path}{where}: YAML tag {tag} is not allowed. MaskFormer config files are "
                "plain YAML; tags that construct Python objects could run code."
            ) from None
    base = (data or {}).get("_BASE_") if isinstance(data, dict) else None
    if base:
        if not base.startswith(("/", "~")) and "://" not in base:
            base = os.path.join(os.path.dirname(path), base)
        _check_plain_yaml(os.path.expanduser(base), seen)


def merge_config_file(cfg: CN, path: str) -> None:
    """Merge the config file `path` (and its `_BASE_` chain) into `cfg`, plain YAML only.

    Detectron2's `merge_from_file` falls back to an unsafe YAML loader by default; this refuses a
    file with a `!!python/...` tag instead, naming the file and the tag.
    """
    _check_plain_yaml(path, set())
    cfg.merge_from_file(path, allow_unsafe=False)


def get_maskformer_cfg(config_file: str = "", opts=None):
    """A Detectron2 config with the DeepLab and MaskFormer keys, optionally merged with a file.

    Args:
        config_file: a plain-YAML config (refused if it has `!!python` tags); "" for defaults.
        opts: "KEY VALUE" overrides, as a flat list.
    """
    cfg = get_cfg()
    add_deeplab_config(cfg)
    add_maskformer_config(cfg)
    if config_file:
        merge_config_file(cfg, config_file)
    if opts:
        cfg.merge_from_list(list(opts))
    return cfg

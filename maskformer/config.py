"""MaskFormer configuration keys and safe config-file loading."""

from __future__ import annotations

import difflib
import os
from typing import List

import yaml
from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg
from detectron2.projects.deeplab import add_deeplab_config

__all__ = [
    "ConfigKeyError",
    "UnsafeConfigError",
    "add_maskformer_config",
    "get_maskformer_cfg",
    "merge_config_file",
]


def add_maskformer_config(cfg: CN) -> None:
    """Add the MaskFormer keys, with the defaults of the official implementation, to `cfg`.

    Call `detectron2.projects.deeplab.add_deeplab_config(cfg)` first: MaskFormer configs use its
    poly LR schedule, crop constraint and DeepLab ResNet stem. Keys are grouped by the code that
    reads them; a comment is given where the name is not enough.
    """
    # Data: the training mapper (maskformer/data).
    cfg.INPUT.DATASET_MAPPER_NAME = "mask_former_semantic"  # a name of maskformer.data.MAPPERS
    cfg.INPUT.COLOR_AUG_SSD = False  # SSD-style colour jitter
    cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA = 1.0  # crop retry: max area share of one class
    cfg.INPUT.SIZE_DIVISIBILITY = -1  # pad image and labels to a multiple of this (<= 0: no)

    # Model: MaskFormer, its transformer predictor and pixel decoder (maskformer/modeling).
    mf = cfg.MODEL.MASK_FORMER = CN()
    mf.HIDDEN_DIM = 256  # transformer width
    mf.NUM_OBJECT_QUERIES = 100  # N, the number of predicted masks
    mf.NHEADS = 8  # attention heads (also the pixel decoder's encoder)
    mf.DROPOUT = 0.1  # (also the pixel decoder's encoder)
    mf.DIM_FEEDFORWARD = 2048
    mf.ENC_LAYERS = 0  # encoder layers inside the predictor's transformer
    mf.DEC_LAYERS = 6
    mf.PRE_NORM = False  # pre-norm instead of post-norm transformer layers
    # A backbone feature, or "transformer_encoder" (TransformerEncoderPixelDecoder's output).
    mf.TRANSFORMER_IN_FEATURE = "res5"
    mf.ENFORCE_INPUT_PROJ = False  # 1x1 input projection even if the widths match
    mf.SIZE_DIVISIBILITY = 32  # pad the batch to a multiple of this (<0: the backbone's)
    cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME = "BasePixelDecoder"  # PIXEL_DECODER_REGISTRY
    cfg.MODEL.SEM_SEG_HEAD.MASK_DIM = 256  # per-pixel embedding width
    cfg.MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS = 0  # TransformerEncoderPixelDecoder's encoder

    # Model: backbones. Swin (MODEL.BACKBONE.NAME "D2SwinTransformer"), defaults of Swin-T.
    swin = cfg.MODEL.SWIN = CN()
    swin.PRETRAIN_IMG_SIZE = 224  # grid of the absolute position embedding
    swin.PATCH_SIZE = 4
    swin.EMBED_DIM = 96  # width of stage 1; stage i has EMBED_DIM * 2**i
    swin.DEPTHS = [2, 2, 6, 2]
    swin.NUM_HEADS = [3, 6, 12, 24]
    swin.WINDOW_SIZE = 7
    swin.MLP_RATIO = 4.0
    swin.QKV_BIAS = True
    swin.QK_SCALE = None  # None: head_dim ** -0.5
    swin.DROP_RATE = 0.0
    swin.ATTN_DROP_RATE = 0.0
    swin.DROP_PATH_RATE = 0.3  # stochastic depth of the last block (linear from 0)
    swin.APE = False  # absolute position embedding
    swin.PATCH_NORM = True
    swin.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    swin.USE_CHECKPOINT = False  # gradient checkpointing of every block
    # timm (MODEL.BACKBONE.NAME "build_timm_backbone"); features named res2..res5 by stride.
    timm = cfg.MODEL.TIMM = CN()
    timm.NAME = ""  # e.g. "convnext_tiny"
    timm.OUT_INDICES = []  # timm feature indices; []: strides 4..32 (a ViT: its last block)
    timm.PRETRAINED_WEIGHTS = ""  # a local weight file in timm's layout ("": random)
    timm.KWARGS = []  # more timm model arguments as "name=value", e.g. "img_size=512"
    timm.PYRAMID_CHANNELS = 256  # single-scale (ViT) models: SimpleFeaturePyramid width
    timm.PYRAMID_NORM = "LN"  # single-scale (ViT) models: SimpleFeaturePyramid norm
    cfg.MODEL.BACKBONE.FREEZE = False  # no training of the backbone (a ViT's pyramid trains)

    # Loss and matching (maskformer/modeling/criterion.py, matcher.py).
    mf.DEEP_SUPERVISION = True  # losses on every decoder layer's output
    mf.NO_OBJECT_WEIGHT = 0.1  # cross-entropy weight of the "no object" class
    mf.DICE_WEIGHT = 1.0  # dice loss and matching-cost weight
    mf.MASK_WEIGHT = 20.0  # sigmoid focal loss and matching-cost weight
    mf.CLASS_WEIGHTS = None  # per-class CE and cost weights: K numbers or a file of K; None: 1
    # Mask losses and costs at this many sampled points (Mask2Former: 12544); 0: every pixel.
    mf.TRAIN_NUM_POINTS = 0
    mf.OVERSAMPLE_RATIO = 3.0  # point sampling: candidates per kept point
    mf.IMPORTANCE_SAMPLE_RATIO = 0.75  # point sampling: share chosen by uncertainty

    # Solver (maskformer/solver.py, maskformer/engine/amp.py).
    cfg.SOLVER.OPTIMIZER = "ADAMW"  # or "SGD"
    cfg.SOLVER.BACKBONE_MULTIPLIER = 0.1  # LR factor of the parameters under `backbone`
    cfg.SOLVER.WEIGHT_DECAY_EMBED = 0.0  # weight decay of nn.Embedding (the queries)
    # "float16" (with loss scaling) or "bfloat16"; "": float16 on CUDA, bfloat16 on the CPU.
    cfg.SOLVER.AMP.PRECISION = ""

    # Inference: the outputs and their post-processing (maskformer/modeling/postprocessing.py).
    test = mf.TEST = CN()
    test.SEMANTIC_ON = True  # "sem_seg"
    test.PANOPTIC_ON = False  # "panoptic_seg"
    test.INSTANCE_ON = False  # "instances": at most TEST.DETECTIONS_PER_IMAGE, thing classes
    test.OBJECT_MASK_THRESHOLD = 0.0  # panoptic: min class score of a query
    test.OVERLAP_THRESHOLD = 0.0  # panoptic: min visible / full area of a mask
    test.INSTANCE_SCORE_THRESHOLD = 0.0  # instance: min score
    # Resize the mask logits to the output size before combining them (exact, memory-hungry).
    test.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE = False

    # Deployment: what the predictor, the demo, --eval-only and export run (docs/deployment.md).
    test.OPTIMIZE = True  # the inference transforms; False: the plain model
    test.SEMANTIC_OUTPUT = "scores"  # or "labels", "low_res_labels" (need OPTIMIZE)
    test.PRECISION = "float32"  # or "bfloat16": autocast in the backbone and head
    test.COMPILE = False  # torch.compile the backbone and head (needs a C++ compiler on the CPU)
    # Semantic inference in overlapping windows of the resized image (docs/sliding_window.md).
    test.SLIDING_WINDOW = CN()
    test.SLIDING_WINDOW.SIZE = []  # [h, w] of a window; []: the whole image at once
    test.SLIDING_WINDOW.STRIDE = []  # [h, w] between window starts, at most SIZE (needs SIZE)

    # Evaluation (maskformer/evaluation, maskformer/engine).
    # Images per batch, all of one size (metrics do not change); with SLIDING_WINDOW, windows.
    cfg.TEST.IMS_PER_BATCH = 1
    cfg.TEST.EVAL_SEM_SEG_JSON = False  # write sem_seg_predictions.json (RLEs, COCO-Stuff)
    cfg.TEST.EVAL_BOUNDARY_IOU = False  # also per-class Boundary IoU
    cfg.TEST.EVAL_PANOPTIC_PREDICTIONS = False  # write the panoptic prediction PNGs + JSON
    cfg.TEST.EVAL_TENSORBOARD_IMAGES = 4  # image | prediction | GT panels at each evaluation

    # True: refuse MODEL.WEIGHTS unless every tensor matches by name and shape. False: training
    # skips and lists what does not fit; evaluation refuses any tensor left random either way.
    cfg.MODEL.WEIGHTS_STRICT = False


class UnsafeConfigError(ValueError):
    """A config file asks YAML to construct Python objects (a `!!python/...` tag)."""


class ConfigValueError(ValueError):
    """A config key holds a value the code it configures does not accept, or one that conflicts
    with another key's (found where the value is used, after the config was built)."""


class ConfigKeyError(KeyError):
    """A config file or override names a key that does not exist, or gives it a bad value."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _all_keys(cfg: CN, prefix: str = "") -> List[str]:
    keys = []
    for k, v in cfg.items():
        keys += _all_keys(v, f"{prefix}{k}.") if isinstance(v, CN) else [prefix + k]
    return keys


def _key_error(cfg: CN, error: Exception, where: str) -> ConfigKeyError:
    """yacs' error (an assertion or KeyError "Non-existent key: X") with the closest keys."""
    message = " ".join(str(error.args[0] if error.args else error).split())
    key = message.rsplit(" ", 1)[-1] if "Non-existent" in message else ""
    close = difflib.get_close_matches(key, _all_keys(cfg), n=3, cutoff=0.6) if key else []
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ConfigKeyError(f"{where}: {message}{hint}")


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
    Raises:
        ConfigKeyError: a key that does not exist (with the closest existing keys) or a value
            of the wrong type, naming the file or "command-line options".
        UnsafeConfigError: a `!!python` tag.
        FileNotFoundError: a config file (or a `_BASE_`) does not exist.
    """
    cfg = get_cfg()
    add_deeplab_config(cfg)
    add_maskformer_config(cfg)
    try:
        if config_file:
            merge_config_file(cfg, config_file)
    except (KeyError, AssertionError, ValueError, TypeError) as e:
        if isinstance(e, UnsafeConfigError):
            raise
        raise _key_error(cfg, e, config_file) from None
    try:
        if opts:
            cfg.merge_from_list(_dataset_names_as_tuples(list(opts)))
    except (KeyError, AssertionError, ValueError, TypeError) as e:
        raise _key_error(cfg, e, "command-line options") from None
    return cfg


def _dataset_names_as_tuples(opts: list) -> list:
    """Let `DATASETS.TRAIN name` / `DATASETS.TEST name` on the command line name one dataset:
    yacs would refuse the string where the config holds a tuple."""
    out = list(opts)
    for i in range(0, len(out) - 1, 2):
        value = out[i + 1]
        if out[i] in ("DATASETS.TRAIN", "DATASETS.TEST") and isinstance(value, str):
            if not value.strip().startswith(("(", "[")):
                out[i + 1] = tuple(n for n in value.replace(",", " ").split() if n)
    return out

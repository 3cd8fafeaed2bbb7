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
    poly LR schedule, crop constraint and DeepLab ResNet stem.
    """
    # data
    cfg.INPUT.DATASET_MAPPER_NAME = "mask_former_semantic"  # training mapper, chosen by name
    cfg.INPUT.COLOR_AUG_SSD = False  # SSD-style colour jitter in the training mapper
    cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA = 1.0  # crop retry: max area share of one class
    cfg.INPUT.SIZE_DIVISIBILITY = (
        -1
    )  # mapper pads image and labels to a multiple of this (<= 0: no)

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
    # Threads computing PQ image by image while the model runs (0: in the evaluation loop).
    cfg.TEST.PANOPTIC_EVAL_WORKERS = 4
    # The test loader's workers decode the panoptic ground-truth PNGs (panoptic output only);
    # off: the evaluator reads them, in the evaluation loop. The same PQ either way.
    cfg.TEST.PANOPTIC_EVAL_GT_IN_LOADER = True

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

    # evaluation outputs
    cfg.TEST.EVAL_SEM_SEG_JSON = False  # write sem_seg_predictions.json (RLEs, COCO-Stuff)
    cfg.TEST.EVAL_BOUNDARY_IOU = False  # also per-class Boundary IoU (an erosion per class)
    cfg.TEST.EVAL_PANOPTIC_PREDICTIONS = False  # write panoptic prediction PNGs + JSON
    cfg.TEST.EVAL_TENSORBOARD_IMAGES = 4  # image | prediction | GT overlays per evaluation

    # Backbones of any kind, class weights, N-channel input
    # Freeze the backbone (its pretrained part): no gradients, eval-mode normalisation, not in
    # the optimizer. For a SimpleFeaturePyramid (ViT) the pyramid layers still train.
    cfg.MODEL.BACKBONE.FREEZE = False
    # timm backbone (MODEL.BACKBONE.NAME: "build_timm_backbone"); features named res2..res5.
    cfg.MODEL.TIMM = CN()
    cfg.MODEL.TIMM.NAME = ""  # timm model name, e.g. "convnext_tiny"
    cfg.MODEL.TIMM.OUT_INDICES = []  # timm feature indices; []: stride 4..32 (ViT: last block)
    cfg.MODEL.TIMM.PRETRAINED_WEIGHTS = ""  # local weight file read by timm ("": random init)
    cfg.MODEL.TIMM.KWARGS = []  # more timm model arguments as "name=value", e.g. "img_size=512"
    cfg.MODEL.TIMM.PYRAMID_CHANNELS = 256  # single-scale (ViT) models: SimpleFeaturePyramid width
    cfg.MODEL.TIMM.PYRAMID_NORM = "LN"  # single-scale (ViT) models: SimpleFeaturePyramid norm
    # Cross-entropy and matching-cost weight of each of the K classes: a list of K numbers, or
    # the path of a text file of K numbers (whitespace-separated); None: all 1.
    cfg.MODEL.MASK_FORMER.CLASS_WEIGHTS = None

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

    # Loading weights.
    # Refuse MODEL.WEIGHTS unless every tensor of the model and of the file match by name and
    # shape (training, --eval-only, the predictor). Off: training skips missing tensors and
    # tensors of another shape (listed by name, for fine-tuning); evaluation and inference still
    # refuse weights that leave any tensor of the model random.
    cfg.MODEL.WEIGHTS_STRICT = False
    # Evaluation batches: up to this many images, all of one size (so the batch size never
    # changes a result; maskformer/data/test_loader.py).
    cfg.TEST.IMS_PER_BATCH = 1


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

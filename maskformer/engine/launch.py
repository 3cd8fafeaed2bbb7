"""Starting a `train_net.py` run: the set-up checks (docs/training.md), then the launch.

A problem a user fixes ends the run in one line with exit status 2 (`SetupError`).
"""

from __future__ import annotations

import difflib
import logging
import os
import sys
from typing import Callable, Optional, Tuple

import torch
import yaml
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import launch
from detectron2.modeling import META_ARCH_REGISTRY, build_model
from detectron2.utils import comm
from torch import nn

from ..checkpoint import (
    CheckpointError,
    MaskFormerCheckpointer,
    UntrainedModelError,
    check_weights,
)
from ..config import ConfigValueError, UnsafeConfigError, get_maskformer_cfg
from ..data.dataset_mapper import image_format_of
from ..data.datasets.described import DatasetDescriptionError, register_described_datasets
from ..evaluation import evaluation_semantic_output
from ..modeling.class_weights import read_class_weights
from ..modeling.inference_transforms import check_semantic_output, optimize_from_config
from ..modeling.network_transforms import inference_precision, network_transforms_from_config
from ..modeling.sliding_window import check_sliding_window, sliding_window_from_config
from .amp import amp_precision

__all__ = [
    "SetupError",
    "build_config",
    "check_config",
    "check_datasets",
    "check_model_weights",
    "device_note",
    "launch_checked",
    "load_for_evaluation",
    "prepare",
    "set_cpu_threads",
]

logger = logging.getLogger(__name__)


class SetupError(RuntimeError):
    """The run cannot start: config, dataset, device or weights. Nothing was written."""


# Failures of the set-up that a user fixes (a config key, a path, the weights): one line each.
_USER_ERRORS = (
    CheckpointError,
    ConfigValueError,
    UnsafeConfigError,
    DatasetDescriptionError,
    FileNotFoundError,
    KeyError,
    yaml.YAMLError,
)

# Dataset metadata that names files a dataset needs.
_DATASET_PATH_KEYS = ("image_root", "sem_seg_root", "panoptic_root", "panoptic_json", "json_file")


def build_config(args):
    """The frozen config of `args` (--config-file and the KEY VALUE options), writing nothing."""
    cfg = get_maskformer_cfg(args.config_file, args.opts)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logger.warning("CUDA is not available: running on the CPU")
        cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    return cfg


def check_config(cfg, eval_only: bool) -> None:
    """Refuse now the values the code they configure would refuse only later.

    Raises:
        ConfigValueError, FileNotFoundError: naming the key.
    """
    image_format_of(cfg)
    check_sliding_window(cfg)
    weights = cfg.MODEL.MASK_FORMER.CLASS_WEIGHTS
    if weights is not None and cfg.MODEL.META_ARCHITECTURE == "MaskFormer":
        try:
            read_class_weights(weights, cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES)
        except ValueError as e:
            raise ConfigValueError(str(e)) from None
    device_type = torch.device(cfg.MODEL.DEVICE).type
    if eval_only:
        inference_precision(cfg, device_type)
        evaluation_semantic_output(cfg)
    else:
        check_semantic_output(cfg)
        if cfg.SOLVER.AMP.ENABLED:
            amp_precision(cfg.SOLVER.AMP.PRECISION, device_type)


def _norm_keys(node, prefix: str = ""):
    """(key, value) of every config key named NORM, as "MODEL.RESNETS.NORM"."""
    for name, value in node.items():
        if isinstance(value, dict):
            yield from _norm_keys(value, f"{prefix}{name}.")
        elif name == "NORM":
            yield prefix + name, value


def _check_sync_norms(cfg, world_size: int) -> None:
    """Refuse "SyncBN" in training with several CPU processes: it is PyTorch's SyncBatchNorm,
    which DDP refuses on the CPU, and only after the workers have started."""
    if world_size <= 1 or torch.device(cfg.MODEL.DEVICE).type != "cpu":
        return
    for key, value in _norm_keys(cfg):
        if value == "SyncBN":
            raise ConfigValueError(
                f"{key} is SyncBN (torch.nn.SyncBatchNorm), which runs on CUDA only, and this "
                f"run trains in {world_size} CPU processes: use naiveSyncBN (Detectron2's "
                "NaiveSyncBatchNorm, synchronised over gloo) or one process"
            )


def check_datasets(cfg, eval_only: bool) -> None:
    """Refuse datasets that are not registered, or whose files are not where they should be.

    Only a dataset whose metadata names a missing path is loaded: its loader says what is missing
    (or generates it, as the quickstart dataset does)."""
    registered = DatasetCatalog.list()
    keys = [("DATASETS.TEST", cfg.DATASETS.TEST)]
    if not eval_only:
        keys.insert(0, ("DATASETS.TRAIN", cfg.DATASETS.TRAIN))
    for key, names in keys:
        for name in names:
            if name not in registered:
                close = difflib.get_close_matches(name, registered, n=3, cutoff=0.5)
                raise SetupError(
                    f"{key}: dataset '{name}' is not registered"
                    + (f"; did you mean {', '.join(close)}?" if close else "")
                    + " (tools/register_dataset.py registers your own)"
                )
            meta = MetadataCatalog.get(name).as_dict()
            paths = [v for k, v in meta.items() if k in _DATASET_PATH_KEYS and isinstance(v, str)]
            if all(os.path.exists(p) for p in paths):
                continue
            try:
                DatasetCatalog.get(name)
            except (FileNotFoundError, DatasetDescriptionError) as e:
                raise SetupError(f"{key}: {e}") from None


def _weights_to_load(cfg, resume: bool) -> str:
    """What the run will load: OUTPUT_DIR's last checkpoint with `resume` if there is one (as
    Detectron2's `resume_or_load` decides), else MODEL.WEIGHTS."""
    tag = os.path.join(cfg.OUTPUT_DIR, "last_checkpoint")
    if resume and os.path.isfile(tag):
        with open(tag) as f:
            return os.path.join(cfg.OUTPUT_DIR, f.read().strip())
    return cfg.MODEL.WEIGHTS


def _meta_model(cfg) -> nn.Module:
    """`cfg`'s model with its tensors on the "meta" device: the names and shapes, no memory.
    A timm backbone's weight file is checked to exist but not read: its values cannot go to
    the meta device (the real model reads it)."""
    timm_weights = cfg.MODEL.TIMM.PRETRAINED_WEIGHTS
    if timm_weights:
        if not os.path.isfile(timm_weights):
            raise FileNotFoundError(
                f"MODEL.TIMM.PRETRAINED_WEIGHTS '{timm_weights}' does not exist"
            )
        cfg = cfg.clone()
        cfg.defrost()
        cfg.MODEL.TIMM.PRETRAINED_WEIGHTS = ""
    with torch.device("meta"):
        return META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)


def check_model_weights(cfg, eval_only: bool, resume: bool) -> None:
    """Build the model on the "meta" device, which refuses what its construction refuses, and
    check the weights the run will load against it.

    Raises:
        UntrainedModelError: --eval-only with weights that leave tensors random, or none.
        ConfigValueError, FileNotFoundError, CheckpointError: naming the key or file.
    """
    try:
        model = _meta_model(cfg)
    except ValueError as e:  # a config value the model's construction refuses
        raise ConfigValueError(str(e)) from None
    path = _weights_to_load(cfg, resume)
    if not path:
        if eval_only:
            raise UntrainedModelError(_NO_WEIGHTS + (_NO_CHECKPOINT.format(cfg) if resume else ""))
        return
    check_weights(path, model, strict=cfg.MODEL.WEIGHTS_STRICT, require_trained=eval_only)


_NO_WEIGHTS = "--eval-only needs weights: MODEL.WEIGHTS is empty"
_NO_CHECKPOINT = " and {0.OUTPUT_DIR} has no checkpoint"


def load_for_evaluation(cfg, resume: bool) -> nn.Module:
    """The model with MODEL.WEIGHTS (or OUTPUT_DIR's last checkpoint, with `resume`) loaded and
    transformed for inference as MODEL.MASK_FORMER.TEST says.

    Raises:
        UntrainedModelError: nothing to load, or the file leaves a tensor of the model random.
        CheckpointMismatchError: MODEL.WEIGHTS_STRICT and the file does not match exactly.
    """
    model = build_model(cfg)
    checkpointer = MaskFormerCheckpointer(
        model, save_dir=cfg.OUTPUT_DIR, strict=cfg.MODEL.WEIGHTS_STRICT, require_trained=True
    )
    checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=resume)
    if checkpointer.last_report is None:
        raise UntrainedModelError(_NO_WEIGHTS + (_NO_CHECKPOINT.format(cfg) if resume else ""))
    semantic_output = evaluation_semantic_output(cfg)
    # Windows are averaged from their scores; the wrapper gives the output evaluation reads.
    windowed = bool(cfg.MODEL.MASK_FORMER.TEST.SLIDING_WINDOW.SIZE)
    optimize_from_config(model, cfg, semantic_output="scores" if windowed else semantic_output)
    network_transforms_from_config(model, cfg)  # TEST.PRECISION, TEST.COMPILE
    return sliding_window_from_config(model, cfg, semantic_output=semantic_output)


def prepare(args, *, build: bool = True) -> Tuple[object, Optional[nn.Module]]:
    """Everything that can be checked before a file is written or a worker started.

    Args:
        build: with --eval-only, build and load the evaluated model; False: check the weights
            against the model's shapes only (the parent of a multi-process run).
    Returns:
        (cfg, model), the model being the evaluated one for --eval-only with `build`, else None.
    Raises:
        SetupError: one line naming the config key, file or dataset.
    """
    try:
        register_described_datasets()
        cfg = build_config(args)
        check_config(cfg, args.eval_only)
        if not args.eval_only:
            _check_sync_norms(cfg, args.num_gpus * args.num_machines)
        check_datasets(cfg, args.eval_only)
        if args.eval_only and build:
            return cfg, load_for_evaluation(cfg, args.resume)
        check_model_weights(cfg, args.eval_only, args.resume)
        return cfg, None
    except SetupError:
        raise
    except _USER_ERRORS as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        raise SetupError(" ".join(str(message).split())) from e


def set_cpu_threads(cfg) -> None:
    """Give each of N CPU processes on a machine its share of the cores (unless OMP_NUM_THREADS
    says otherwise): OpenMP threads spin while waiting, so N x all cores oversubscribe the CPU."""
    if (
        cfg.MODEL.DEVICE == "cpu"
        and comm.get_local_size() > 1
        and "OMP_NUM_THREADS" not in os.environ
    ):
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // comm.get_local_size()))


def device_note(num_gpus: int) -> str:
    """What `--num-gpus N` does on this machine, if it is not N GPUs; "" otherwise."""
    if num_gpus <= 1 or torch.cuda.is_available():
        return ""
    cores = os.cpu_count() or 1
    return (
        f"CUDA is not available: --num-gpus {num_gpus} starts {num_gpus} CPU processes (gloo "
        f"backend) sharing {cores} CPU cores, {max(1, cores // num_gpus)} thread(s) each; "
        "SOLVER.IMS_PER_BATCH stays the total batch"
    )


def _main_or_exit(main: Callable, args, program: str) -> object:
    # A worker process answers a SetupError in one line and exits 2; the parent then says
    # nothing more (`launch_checked`).
    try:
        return main(args)
    except SetupError as e:
        print(f"{program}: error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)


def launch_checked(main: Callable, args, program: str = "train_net.py") -> int:
    """Detectron2's `launch` of `main(args)` on --num-gpus processes per machine, after the
    set-up checks (`main` calls `prepare` itself). Returns the exit status: 0, or 2 after one
    line "<program>: error: ..." on stderr when the run could not start (`SetupError`)."""
    note = device_note(args.num_gpus)
    if note:
        print(note, file=sys.stderr)
    world_size = args.num_gpus * args.num_machines
    try:
        if world_size > 1:
            prepare(args, build=False)  # a worker's error would come back as N tracebacks
        launch(
            _main_or_exit if world_size > 1 else main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(main, args, program) if world_size > 1 else (args,),
        )
    except SetupError as e:
        print(f"{program}: error: {e}", file=sys.stderr)
        return 2
    except torch.multiprocessing.ProcessExitedException as e:
        if e.exit_code == 2:  # a worker's SetupError, already said
            return 2
        raise
    return 0

#!/usr/bin/env python
"""Train and evaluate MaskFormer with Detectron2's engine.

    python train_net.py --config-file configs/ade20k/maskformer_R50.yaml --num-gpus 8
    python train_net.py --config-file ... --eval-only MODEL.WEIGHTS /path/to/model.pth
    python train_net.py --config-file ... --resume          # continue the run in OUTPUT_DIR
    python train_net.py --config-file ... --eval-only MODEL.WEIGHTS m.pth TEST.AUG.ENABLED True
        # also evaluate with multi-scale + flip test-time augmentation (results "*_TTA")

Without a GPU, `--num-gpus N` starts N CPU processes (gloo backend).
"""

from __future__ import annotations

import difflib
import logging
import os
import sys
import weakref
from collections import OrderedDict

# isort: off
import maskformer  # first: it says how to install a Detectron2 without detectron2.projects

# isort: on
import torch
import yaml
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import (
    DefaultTrainer,
    SimpleTrainer,
    TrainerBase,
    create_ddp_model,
    default_argument_parser,
    default_setup,
    launch,
)
from detectron2.evaluation import DatasetEvaluator
from detectron2.projects.deeplab import build_lr_scheduler
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from maskformer.checkpoint import (
    CheckpointError,
    MaskFormerCheckpointer,
    UntrainedModelError,
    check_trained,
)
from maskformer.config import ConfigValueError, UnsafeConfigError
from maskformer.data import (
    build_test_loader,
    build_test_mapper,
    build_train_loader,
    build_train_mapper,
)
from maskformer.data.datasets.described import DatasetDescriptionError
from maskformer.engine import (
    AMPTrainer,
    EvalImagesHook,
    StepSeedHook,
    amp_precision,
    evaluated_on,
    without_duplicate_final_checkpoint,
)
from maskformer.evaluation import build_evaluator, evaluation_options, reads_semantic_labels
from maskformer.modeling import SemanticSegmentorWithTTA
from maskformer.modeling.inference_transforms import optimize_from_config
from maskformer.modeling.network_transforms import network_transforms_from_config
from maskformer.solver import build_optimizer


class Trainer(DefaultTrainer):
    """DefaultTrainer with MaskFormer's data, optimizer, evaluators, and exact resume."""

    def __init__(self, cfg):
        # Copied from detectron2/engine/defaults.py, DefaultTrainer.__init__, which has no hook
        # for the pieces that differ: DDP also on the CPU (no device_ids there), AMP also on the
        # CPU (maskformer.engine.AMPTrainer), MaskFormerCheckpointer (safe loading, atomic
        # saving, the data sampler's state) and the sampler kept for exact resume.
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        device_type = torch.device(cfg.MODEL.DEVICE).type
        model = create_ddp_model(
            model,
            broadcast_buffers=False,
            device_ids=[comm.get_local_rank()] if device_type == "cuda" else None,
        )
        if cfg.SOLVER.AMP.ENABLED:
            precision = amp_precision(cfg.SOLVER.AMP.PRECISION)
            self._trainer = AMPTrainer(
                model, data_loader, optimizer, device_type=device_type, precision=precision
            )
        else:
            self._trainer = SimpleTrainer(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.data_sampler = data_loader.batch_sampler
        self.checkpointer = MaskFormerCheckpointer(
            model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self), data_sampler=self.data_sampler
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    def build_hooks(self):
        # The seed comes from the sampler, whose state the checkpoint restores on resume.
        self.step_seed_hook = StepSeedHook(self.data_sampler.seed)
        hooks = [self.step_seed_hook] + without_duplicate_final_checkpoint(super().build_hooks())
        cfg, n = self.cfg, self.cfg.TEST.EVAL_TENSORBOARD_IMAGES
        if n > 0 and cfg.DATASETS.TEST and comm.is_main_process():
            name = cfg.DATASETS.TEST[0]
            images = EvalImagesHook(
                eval_period=cfg.TEST.EVAL_PERIOD,
                dataset_name=name,
                records=DatasetCatalog.get(name)[:n],
                mapper=build_test_mapper(cfg),
            )
            hooks.insert(len(hooks) - 1, images)  # before the PeriodicWriter, which writes them
        return hooks

    def resume_or_load(self, resume=True):
        super().resume_or_load(resume=resume)
        # Skip the batches the checkpointed run already consumed.
        self.data_sampler.start_batch = self.start_iter
        self.step_seed_hook.seed = self.data_sampler.seed

    @classmethod
    def build_train_loader(cls, cfg):
        seed = cfg.SEED if cfg.SEED >= 0 else comm.shared_random_seed()
        return build_train_loader(cfg, build_train_mapper(cfg), seed=seed)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return build_evaluator(dataset_name, output_folder, evaluation_options(cfg))

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """DefaultTrainer.test, one dataset at a time, with the model post-processing for the
        dataset it is evaluated on (its thing and stuff classes: `evaluated_on`)."""
        if isinstance(evaluators, DatasetEvaluator):
            evaluators = [evaluators]
        if evaluators is not None and len(evaluators) != len(cfg.DATASETS.TEST):
            raise ValueError(
                f"{len(evaluators)} evaluators for {len(cfg.DATASETS.TEST)} datasets in "
                f"DATASETS.TEST {cfg.DATASETS.TEST}: give one per dataset"
            )
        results = OrderedDict()
        for i, dataset_name in enumerate(cfg.DATASETS.TEST):
            one = cfg.clone()
            one.defrost()
            one.DATASETS.TEST = (dataset_name,)
            results[dataset_name] = super().test(
                one,
                evaluated_on(model, dataset_name),
                None if evaluators is None else [evaluators[i]],
            )
        return list(results.values())[0] if len(results) == 1 else results

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        # DeepLab's builder adds WarmupPolyLR to Detectron2's schedulers.
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def test_with_TTA(cls, cfg, model):
        """Evaluate with TEST.AUG's multi-scale + flip; results are keyed "<task>_TTA"."""
        logging.getLogger("maskformer").info("Running inference with test-time augmentation ...")
        model = SemanticSegmentorWithTTA(cfg, model)
        evaluators = [
            cls.build_evaluator(
                cfg, name, output_folder=os.path.join(cfg.OUTPUT_DIR, "inference_TTA", name)
            )
            for name in cfg.DATASETS.TEST
        ]
        res = cls.test(cfg, model, evaluators)
        return OrderedDict((k + "_TTA", v) for k, v in res.items())


class SetupError(RuntimeError):
    """The run cannot start: config, dataset, device or weights. Nothing was written."""


# Failures of the set-up that a user fixes (a config key, a path, the weights): one line each.
_SETUP_ERRORS = (
    CheckpointError,
    ConfigValueError,
    UnsafeConfigError,
    DatasetDescriptionError,
    FileNotFoundError,
    KeyError,
    yaml.YAMLError,
)


def build_config(args):
    """The frozen config of `args`, writing nothing."""
    cfg = maskformer.get_maskformer_cfg(args.config_file, args.opts)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logging.getLogger(__name__).warning("CUDA is not available: running on the CPU")
        cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    return cfg


def setup(args, cfg=None):
    """Detectron2's `default_setup` (which writes OUTPUT_DIR/config.yaml and the logs)."""
    cfg = build_config(args) if cfg is None else cfg
    if (
        cfg.MODEL.DEVICE == "cpu"
        and comm.get_local_size() > 1
        and "OMP_NUM_THREADS" not in os.environ
    ):
        # N processes with all cores' worth of threads each oversubscribe the CPU many times
        # over (OpenMP threads spin while waiting); give each process its share.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // comm.get_local_size()))
    default_setup(cfg, args)
    setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="maskformer")
    return cfg


def check_datasets(cfg, eval_only: bool) -> None:
    """Refuse datasets that are not registered, or whose files are not where they should be.

    Only a dataset whose metadata names a missing path is listed (its loader then says what is
    missing and how to prepare it, or generates it, as the quickstart dataset does).
    """
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


_DATASET_PATH_KEYS = ("image_root", "sem_seg_root", "panoptic_root", "panoptic_json", "json_file")


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


def load_for_evaluation(cfg, resume: bool):
    """The model with MODEL.WEIGHTS (or OUTPUT_DIR's last checkpoint, with `resume`) loaded.

    Raises:
        UntrainedModelError: nothing to load, or the file leaves a tensor of the model random.
        CheckpointMismatchError: MODEL.WEIGHTS_STRICT and the file does not match exactly.
    """
    model = Trainer.build_model(cfg)
    checkpointer = MaskFormerCheckpointer(
        model, save_dir=cfg.OUTPUT_DIR, strict=cfg.MODEL.WEIGHTS_STRICT, require_trained=True
    )
    checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=resume)
    if checkpointer.last_report is None:
        raise UntrainedModelError(
            "--eval-only needs weights: MODEL.WEIGHTS is empty"
            + (f" and {cfg.OUTPUT_DIR} has no checkpoint" if resume else "")
            + "; evaluating a random model gives meaningless numbers"
        )
    check_trained(checkpointer.last_report)
    # MODEL.MASK_FORMER.TEST.OPTIMIZE. The exact labels without the (K, H, W) scores when every
    # evaluator reads labels (test-time augmentation averages scores).
    overrides = {}
    test = cfg.MODEL.MASK_FORMER.TEST
    if not (cfg.TEST.AUG.ENABLED or test.SEM_SEG_LOW_RES_LABELS) and all(
        reads_semantic_labels(name) for name in cfg.DATASETS.TEST
    ):
        overrides["semantic_output"] = "labels"
    optimize_from_config(model, cfg, **overrides)
    network_transforms_from_config(model, cfg)  # TEST.PRECISION, TEST.COMPILE
    return model


def prepare(args, *, load_weights: bool = True):
    """Everything that can be checked before a file is written or a worker started.

    Returns:
        (cfg, model) where model is the evaluated model for --eval-only (else None).
    Raises:
        SetupError: one line naming the config key, file or dataset.
    """
    try:
        cfg = build_config(args)
        check_datasets(cfg, args.eval_only)
        model = load_for_evaluation(cfg, args.resume) if args.eval_only and load_weights else None
    except SetupError:
        raise
    except _SETUP_ERRORS as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        raise SetupError(" ".join(str(message).split())) from e
    return cfg, model


def main(args):
    cfg, model = prepare(args)
    cfg = setup(args, cfg)
    if args.eval_only:
        res = Trainer.test(cfg, model)
        if cfg.TEST.AUG.ENABLED:
            res.update(Trainer.test_with_TTA(cfg, model))
        return res
    trainer = Trainer(cfg)
    trainer.checkpointer.strict = cfg.MODEL.WEIGHTS_STRICT
    try:
        trainer.resume_or_load(resume=args.resume)
    except CheckpointError as e:
        raise SetupError(" ".join(str(e).split())) from e
    return trainer.train()


def cli(argv=None) -> int:
    """`python train_net.py ...`. Exit status 0, or 2 when the run could not start (one line)."""
    args = default_argument_parser().parse_args(argv)
    print("Command Line Args:", args)
    note = device_note(args.num_gpus)
    if note:
        print(note, file=sys.stderr)
    try:
        if args.num_gpus * args.num_machines > 1:
            # Check in this process first: a worker's error would come back as N tracebacks.
            prepare(args)
        launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
    except SetupError as e:
        print(f"train_net.py: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())

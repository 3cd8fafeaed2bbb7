"""The trainer of `train_net.py`: Detectron2's `DefaultTrainer` with MaskFormer's data, optimizer,
LR schedule and evaluators, DDP and mixed precision also on the CPU, and exact resume."""

from __future__ import annotations

import logging
import os
import weakref
from collections import OrderedDict

import torch
from detectron2.data import DatasetCatalog
from detectron2.engine import DefaultTrainer, SimpleTrainer, TrainerBase, create_ddp_model
from detectron2.evaluation import DatasetEvaluator
from detectron2.projects.deeplab import build_lr_scheduler
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..checkpoint import MaskFormerCheckpointer
from ..data import build_test_loader, build_test_mapper, build_train_loader, build_train_mapper
from ..evaluation import build_evaluator, evaluation_options
from ..modeling import SemanticSegmentorWithTTA, sliding_window_from_config
from ..solver import build_optimizer
from .amp import AMPTrainer, amp_precision
from .evaluation import evaluated_on
from .hooks import EvalImagesHook, StepSeedHook, without_duplicate_final_checkpoint

__all__ = ["Trainer"]


class Trainer(DefaultTrainer):
    """DefaultTrainer with MaskFormer's data, optimizer, evaluators, and exact resume."""

    def __init__(self, cfg):
        # DefaultTrainer.__init__ (detectron2/engine/defaults.py) with the pieces it has no hook
        # for: DDP also on the CPU (no device_ids there), AMP also on the CPU (AMPTrainer),
        # MaskFormerCheckpointer (safe loading, atomic saving, the data sampler's state) and
        # the sampler kept for exact resume.
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
            precision = amp_precision(cfg.SOLVER.AMP.PRECISION, device_type)
            self._trainer = AMPTrainer(
                model, data_loader, optimizer, device_type=device_type, precision=precision
            )
        else:
            self._trainer = SimpleTrainer(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.data_sampler = data_loader.batch_sampler
        self.checkpointer = MaskFormerCheckpointer(
            model,
            cfg.OUTPUT_DIR,
            strict=cfg.MODEL.WEIGHTS_STRICT,
            trainer=weakref.proxy(self),
            data_sampler=self.data_sampler,
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
        """Evaluate with TEST.AUG's multi-scale + flip; results are keyed "<task>_TTA". With
        MODEL.MASK_FORMER.TEST.SLIDING_WINDOW, each scale runs in windows."""
        logging.getLogger("maskformer").info("Running inference with test-time augmentation ...")
        model = sliding_window_from_config(model, cfg, semantic_output="scores")
        model = SemanticSegmentorWithTTA(cfg, model)
        evaluators = [
            cls.build_evaluator(
                cfg, name, output_folder=os.path.join(cfg.OUTPUT_DIR, "inference_TTA", name)
            )
            for name in cfg.DATASETS.TEST
        ]
        res = cls.test(cfg, model, evaluators)
        return OrderedDict((k + "_TTA", v) for k, v in res.items())

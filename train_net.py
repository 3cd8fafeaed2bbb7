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

import logging
import os
import weakref
from collections import OrderedDict

import torch
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

import maskformer
from maskformer.checkpoint import MaskFormerCheckpointer
from maskformer.data import build_train_loader, build_train_mapper
from maskformer.engine import AMPTrainer, StepSeedHook, amp_precision, evaluated_on
from maskformer.evaluation import build_evaluator, evaluation_options
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
        return [self.step_seed_hook] + super().build_hooks()

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


def setup(args):
    cfg = maskformer.get_maskformer_cfg(args.config_file, args.opts)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logging.getLogger(__name__).warning("CUDA is not available: training on the CPU")
        cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
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


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        MaskFormerCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        optimize_from_config(model, cfg)  # MODEL.MASK_FORMER.TEST.OPTIMIZE
        network_transforms_from_config(model, cfg)  # TEST.PRECISION, TEST.COMPILE
        res = Trainer.test(cfg, model)
        if cfg.TEST.AUG.ENABLED:
            res.update(Trainer.test_with_TTA(cfg, model))
        return res
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )

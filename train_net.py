#!/usr/bin/env python
"""Train and evaluate MaskFormer with Detectron2's engine (docs/training.md).

Exit status: 0, or 2 with one line on stderr when the run cannot start.
"""

import sys

# isort: off
import maskformer  # noqa: F401  (first: it says how to install a Detectron2 without projects)

# isort: on
from detectron2.engine import default_argument_parser, default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from maskformer.engine import Trainer, build_config, launch_checked, prepare, set_cpu_threads

__all__ = ["Trainer", "cli", "main", "setup"]


def setup(args, cfg=None):
    """The frozen config of `args`, and Detectron2's `default_setup` (which writes
    OUTPUT_DIR/config.yaml and the logs)."""
    cfg = build_config(args) if cfg is None else cfg
    set_cpu_threads(cfg)
    default_setup(cfg, args)
    setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="maskformer")
    return cfg


def main(args):
    cfg, model = prepare(args)  # the checks, before anything is written
    cfg = setup(args, cfg)
    if args.eval_only:
        res = Trainer.test(cfg, model)
        if cfg.TEST.AUG.ENABLED:
            res.update(Trainer.test_with_TTA(cfg, model))
        return res
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def cli(argv=None) -> int:
    """`python train_net.py ...`; returns the exit status."""
    args = default_argument_parser().parse_args(argv)
    print("Command Line Args:", args)
    return launch_checked(main, args)


if __name__ == "__main__":
    sys.exit(cli())

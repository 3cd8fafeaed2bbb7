"""Periodic checkpoints without a duplicate of the final one."""

from __future__ import annotations

from detectron2.engine import hooks

__all__ = ["PeriodicCheckpointer", "without_duplicate_final_checkpoint"]


class PeriodicCheckpointer(hooks.PeriodicCheckpointer):
    """Detectron2's `PeriodicCheckpointer`, except that the last iteration writes only
    `model_final.pth`: when MAX_ITER is a multiple of CHECKPOINT_PERIOD, Detectron2 also writes
    `model_{MAX_ITER - 1:07d}.pth`, a second copy of the same weights."""

    def step(self, iteration: int, **kwargs) -> None:
        if self.max_iter is not None and int(iteration) >= self.max_iter - 1:
            self.checkpointer.save(
                f"{self.file_prefix}_final", **{"iteration": int(iteration), **kwargs}
            )
            return
        super().step(iteration, **kwargs)


def without_duplicate_final_checkpoint(trainer_hooks: list) -> list:
    """`trainer_hooks` with Detectron2's PeriodicCheckpointer replaced by ours (same period,
    checkpointer and file prefix)."""
    out = []
    for h in trainer_hooks:
        if type(h) is hooks.PeriodicCheckpointer:
            h = PeriodicCheckpointer(
                h.checkpointer, h.period, max_iter=h.max_iter, max_to_keep=h.max_to_keep,
                file_prefix=h.file_prefix,
            )  # fmt: skip
        out.append(h)
    return out

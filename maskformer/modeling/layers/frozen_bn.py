"""Frozen batch norm folded into the convolution before it.

A Detectron2 `Conv2d` with a `FrozenBatchNorm2d` computes `conv(x, W) * s + t` with a fixed
per-channel scale s and shift t: a second pass over every activation (and, with gradients, two
more stored tensors per layer). The same function is one convolution, `conv(x, W * s) + t`.
`fold_frozen_batchnorm` makes every such layer of a model compute it that way. The parameters,
buffers and state-dict keys stay as they are (checkpoints load and save unchanged, the optimizer
sees the same parameters); only the arithmetic is reordered, which changes results by float
rounding only.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from detectron2.layers import Conv2d, FrozenBatchNorm2d
from torch import Tensor, nn

__all__ = ["FrozenBNConv2d", "fold_frozen_batchnorm"]


def frozen_bn_affine(norm: FrozenBatchNorm2d) -> Tuple[Tensor, Tensor]:
    """(scale, shift) of the per-channel map `FrozenBatchNorm2d` applies: x * scale + shift."""
    scale = norm.weight * (norm.running_var + norm.eps).rsqrt()
    return scale, norm.bias - norm.running_mean * scale


class FrozenBNConv2d(Conv2d):
    """A Detectron2 `Conv2d` whose `FrozenBatchNorm2d` is folded into the convolution.

    Made from a `Conv2d` by `fold_frozen_batchnorm` (same attributes, `norm` kept for its
    buffers). Without gradients the folded weights are cached until a parameter or buffer
    changes (in place, by an optimizer or a checkpoint load, or by moving the module).
    """

    def _version_key(self) -> Tuple:
        tensors = (self.weight, self.bias, *self.norm.buffers())
        return tuple((t.data_ptr(), t._version, t.dtype) for t in tensors if t is not None)

    def folded(self) -> Tuple[Tensor, Tensor]:
        """(weight, bias) of the single convolution computing conv + frozen norm."""
        cacheable = not torch.is_grad_enabled() and not torch.compiler.is_compiling()
        cache: Optional[Tuple] = self.__dict__.get("_folded_cache")
        if cacheable and cache is not None and cache[0] == self._version_key():
            return cache[1], cache[2]
        scale, shift = frozen_bn_affine(self.norm)
        weight = self.weight * scale.view(-1, 1, 1, 1)
        bias = shift if self.bias is None else self.bias * scale + shift
        if cacheable:
            self.__dict__["_folded_cache"] = (self._version_key(), weight, bias)
        return weight, bias

    def forward(self, x: Tensor) -> Tensor:
        weight, bias = self.folded()
        x = F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)
        if self.activation is not None:
            x = self.activation(x)
        return x


def fold_frozen_batchnorm(module: nn.Module) -> int:
    """Make every Detectron2 `Conv2d` + `FrozenBatchNorm2d` in `module` a `FrozenBNConv2d`.

    In place, by changing the layers' class (as `torch.nn.utils.parametrize` does), so
    parameters, buffers, hooks and state-dict keys are untouched. Returns the number of layers.
    """
    count = 0
    for m in module.modules():
        if type(m) is Conv2d and isinstance(m.norm, FrozenBatchNorm2d):
            m.__class__ = FrozenBNConv2d
            count += 1
    return count

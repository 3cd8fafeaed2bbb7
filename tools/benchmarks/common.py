"""What the benchmark scripts share: configs and inference paths, synthetic samples, timing,
memory, training steps, and the line that names the machine.

Timings are wall-clock seconds with the device synchronised around them (CUDA runs
asynchronously). Memory is CUDA's peak allocation since `reset_peak_memory` on a GPU, and the
peak RSS of the process on the CPU (which never goes down: on the CPU a phase's figure is the
largest of it and all phases before it).
"""

from __future__ import annotations

import copy
import json
import os
import platform
import resource
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.structures import Instances
from torch import nn

from maskformer import get_maskformer_cfg
from maskformer.export import MaskFormerLogits, OnnxRuntimeMaskFormer, export_onnx
from maskformer.modeling.inference_transforms import optimize_from_config
from maskformer.modeling.network_transforms import network_transforms_from_config
from maskformer.utils import write_text_atomically
from tools.benchmarks.paths import PATHS

# --precision of the timing scripts: the autocast dtype of the whole model (None: none).
AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
SEMANTIC_OUTPUTS = ("scores", "labels", "low_res_labels")


def machine_line(device: torch.device) -> str:
    """One line naming what the figures are measured on."""
    if device.type == "cuda":
        what = f"GPU {torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}"
    else:
        what = (
            f"CPU {cpu_model()} (torch.backends.cpu.get_cpu_capability() "
            f"{torch.backends.cpu.get_cpu_capability()}), torch threads: {torch.get_num_threads()}"
        )
    return f"machine: {what}; torch {torch.__version__}"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown processor"


def load_cfg(config_file: str, *, device: str, opts: Sequence = ()):
    return get_maskformer_cfg(config_file, ["MODEL.DEVICE", device, *opts])


def start(args) -> Tuple[object, np.random.Generator, torch.device]:
    """What every measuring script does first: threads (--threads), seeds (--seed), the config
    (--config-file, --device, --opts). Returns (cfg, rng, device)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = load_cfg(args.config_file, device=args.device, opts=args.opts)
    return cfg, np.random.default_rng(args.seed), torch.device(args.device)


def with_semantic_output(cfg, output: str):
    """A copy of `cfg` whose model returns this semantic output: "scores" ("sem_seg" (K, H, W)),
    "labels" ("sem_seg_labels" (H, W), their argmax) or "low_res_labels" (labels combined at
    the mask resolution, then resized). The one place that names the keys of this choice."""
    if output not in SEMANTIC_OUTPUTS:
        raise ValueError(f"semantic output '{output}'; expected one of {SEMANTIC_OUTPUTS}")
    cfg = cfg.clone()
    cfg.MODEL.MASK_FORMER.TEST.SEMANTIC_OUTPUT = output
    return cfg


def path_cfg(cfg, name: str):
    """A copy of `cfg` with the inference options of path `name` (`paths.PATHS`)."""
    options = PATHS[name]
    cfg = with_semantic_output(cfg, options.get("semantic_output", "scores"))
    test = cfg.MODEL.MASK_FORMER.TEST
    test.OPTIMIZE = options.get("optimize", True)
    test.PRECISION = options.get("precision", "float32")
    test.COMPILE = options.get("compile", False)
    return cfg


def path_model(plain: nn.Module, cfg, name: str, *, workdir: str, example_size: int) -> nn.Module:
    """Path `name` built from a copy of `plain`'s weights, as the predictor builds it (eval
    mode). "onnxruntime" exports the network to `workdir` first (from an `example_size`-square
    example, with dynamic sizes)."""
    cfg = path_cfg(cfg, name)
    if PATHS[name].get("backend") == "onnxruntime":
        onnx_file = os.path.join(workdir, "network.onnx")
        example = torch.rand(1, 3, example_size, example_size) * 255
        export_onnx(MaskFormerLogits(copy.deepcopy(plain)), example, onnx_file, dynamic=True)
        model = OnnxRuntimeMaskFormer.from_config(cfg, onnx_file)
        return optimize_from_config(model, cfg).eval()
    model = optimize_from_config(copy.deepcopy(plain).eval(), cfg)
    return network_transforms_from_config(model, cfg).eval()


def synthetic_sample(
    size: Tuple[int, int], num_classes: int, rng: np.random.Generator, *, with_gt: bool
) -> Dict:
    """A random (3, H, W) image and, for training, a partition of it into 4-7 segments of
    distinct classes (at most `num_classes`) as `instances` with (T, H, W) bool `gt_masks`
    (a tensor, which the official model takes as well as ours)."""
    h, w = size
    image = torch.from_numpy(rng.integers(0, 256, (3, h, w), dtype=np.uint8)).float()
    sample = {"image": image, "height": h, "width": w}
    if with_gt:
        n = min(int(rng.integers(4, 8)), num_classes)
        seeds = rng.integers(0, [h, w], (n, 2))
        yy, xx = np.mgrid[:h, :w]
        dist = (yy[None] - seeds[:, :1, None]) ** 2 + (xx[None] - seeds[:, 1:, None]) ** 2
        owner = dist.argmin(0)
        inst = Instances((h, w))
        inst.gt_classes = torch.from_numpy(rng.choice(num_classes, n, replace=False)).long()
        inst.gt_masks = torch.from_numpy(np.stack([owner == i for i in range(n)]))
        sample["instances"] = inst
    return sample


def autocast(device: torch.device, dtype: Optional[torch.dtype]):
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def training_step(
    model: nn.Module, optimizer, batch: List[Dict], *, dtype: Optional[torch.dtype]
) -> Callable[[], torch.Tensor]:
    """One optimizer step on `batch` (forward, loss, backward, step) under autocast in `dtype`
    (None: float32), with loss scaling in float16, as `maskformer.engine.AMPTrainer` runs it.
    The returned function runs a step and returns its total loss."""
    device = next(model.parameters()).device
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    def step() -> torch.Tensor:
        with autocast(device, dtype):
            losses = model(batch)
        total = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.step(optimizer)  # unscales first: the optimizer's clipping sees true gradients
        scaler.update()
        return total.detach()

    return step


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of `fn` takes, the device's queued work included."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def timings(
    fn: Callable[[], object], device: torch.device, *, warmup: int, iters: int
) -> List[float]:
    """Seconds of each of `iters` calls of `fn` after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    return [timed(fn, device) for _ in range(iters)]


class ModuleTimer:
    """Accumulates the seconds a module's forward takes (via hooks); reset `total` yourself."""

    def __init__(self, module: nn.Module, device: torch.device):
        self.total = 0.0
        self._device = device
        module.register_forward_pre_hook(self._start)
        module.register_forward_hook(self._stop)

    def _start(self, *_):
        sync(self._device)
        self._t0 = time.perf_counter()

    def _stop(self, *_):
        sync(self._device)
        self.total += time.perf_counter() - self._t0


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """MiB: CUDA's peak allocation since `reset_peak_memory`; CPU: the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # KiB on Linux


def write_json(path: Optional[str], figures: Dict) -> None:
    if path:
        write_text_atomically(path, json.dumps(figures, indent=2))


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table; columns after the first are right-aligned (figures)."""
    lines = ["| " + " | ".join(columns) + " |", "|---" + "|---:" * (len(columns) - 1) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)

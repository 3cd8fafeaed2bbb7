"""Whether bfloat16 is fast on this CPU.

oneDNN computes bfloat16 convolutions and matrix products natively only with the AVX512-BF16 or
AMX instructions; elsewhere it converts to float32 and back, and bfloat16 is several times slower
than float32 (measured: 4x on an AVX-512 CPU without AVX512-BF16; 6.6x for the R50 model on an
AVX2-only one). Asking for bfloat16 on such a CPU is refused where the config is read, unless the
environment variable below overrides it.
"""

from __future__ import annotations

import os
import platform
from typing import Optional

import torch

from ..config import ConfigValueError

__all__ = ["ALLOW_SLOW_BFLOAT16", "check_cpu_bfloat16", "cpu_has_native_bfloat16"]

ALLOW_SLOW_BFLOAT16 = "MASKFORMER_ALLOW_SLOW_BFLOAT16"


def cpu_has_native_bfloat16() -> Optional[bool]:
    """Whether this x86 CPU has AVX512-BF16 or AMX; None on other architectures (not known)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return None
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def check_cpu_bfloat16(key: str) -> None:
    """Refuse bfloat16 on the CPU, asked for by the config key `key`, where it is slow.

    Raises:
        ConfigValueError: the CPU lacks bfloat16 instructions and $MASKFORMER_ALLOW_SLOW_BFLOAT16
            is not 1.
    """
    if os.environ.get(ALLOW_SLOW_BFLOAT16) == "1" or cpu_has_native_bfloat16() is not False:
        return
    raise ConfigValueError(
        f"{key} asks for bfloat16, but this CPU ({torch.backends.cpu.get_cpu_capability()}, no "
        "AVX512-BF16 or AMX instructions) computes bfloat16 several times slower than float32; "
        f"use float32, or set {ALLOW_SLOW_BFLOAT16}=1 to run bfloat16 anyway"
    )

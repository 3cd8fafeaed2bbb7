"""MaskFormer as a Detectron2 extension.

Importing the package registers the `MaskFormer` meta-architecture, the `MaskFormerHead` and
per-pixel baseline sem-seg heads, the pixel decoders, the `D2SwinTransformer` backbone and the
datasets in Detectron2's registries.
"""

try:
    # Detectron2's DeepLab (poly LR, DeepLab stem) and PointRend (point sampling) projects ship
    # with a source install but not with every packaged one.
    import detectron2.projects.deeplab  # noqa: F401
    import detectron2.projects.point_rend  # noqa: F401
except ModuleNotFoundError as e:
    if not (e.name or "").startswith("detectron2.projects"):
        raise
    raise ModuleNotFoundError(
        f"MaskFormer needs {e.name} (Detectron2's DeepLab and PointRend projects), which this "
        "Detectron2 installation lacks. Install Detectron2 from a source checkout, editable: "
        "git clone https://github.com/facebookresearch/detectron2.git && python -m pip install "
        "-e detectron2 (see INSTALL.md)",
        name=e.name,
    ) from None

from . import data, modeling  # noqa: E402, F401  (registration)
from .checkpoint import MaskFormerCheckpointer  # noqa: E402
from .config import add_maskformer_config, get_maskformer_cfg, merge_config_file  # noqa: E402

__all__ = [
    "MaskFormerCheckpointer",
    "add_maskformer_config",
    "get_maskformer_cfg",
    "merge_config_file",
]

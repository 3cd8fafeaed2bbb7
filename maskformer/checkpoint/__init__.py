"""Loading weights safely into MaskFormer: official model-zoo pickles, Detectron2 `.pth` files,
Hugging Face MaskFormer weights and converted ImageNet backbones; saving checkpoints atomically.

`MaskFormerCheckpointer` is the loader (and `DetectionCheckpointer` drop-in) that `train_net.py`,
the predictor, the demo and the tools use. Detectron2's own `DetectionCheckpointer` and
`DefaultPredictor` load the official model-zoo files unchanged (the heads rename the published
pixel-decoder names themselves); the other formats go through `MaskFormerCheckpointer`.

- `files`: reading a file without a model (restricted unpickler, safetensors, torch.load with
  weights_only), telling the formats apart;
- `layouts`: bringing its names to the model's;
- `checks`: what loading did (`LoadReport`), refusing another architecture, or weights that
  would leave a model random where it must be trained;
- `checkpointer`: the loader and atomic saver;
- `download`: weights named by URL.
"""

from .checkpointer import MaskFormerCheckpointer, check_weights, checked_state_dict
from .checks import LoadReport, check_trained
from .download import download
from .errors import (
    CheckpointDownloadError,
    CheckpointError,
    CheckpointMismatchError,
    UnsafeCheckpointError,
    UntrainedModelError,
)
from .files import read_checkpoint, read_pickle
from .layouts import match_state_dict

__all__ = [
    "CheckpointDownloadError",
    "CheckpointError",
    "CheckpointMismatchError",
    "LoadReport",
    "MaskFormerCheckpointer",
    "UnsafeCheckpointError",
    "UntrainedModelError",
    "check_trained",
    "check_weights",
    "checked_state_dict",
    "download",
    "match_state_dict",
    "read_checkpoint",
    "read_pickle",
]

"""Named inference paths: the inference options a deployment chooses, as the predictor applies
them (no torch import, so that the scripts list the names in their --help cheaply).

Each path is a set of options over the defaults (OPTIMIZE True, float32, not compiled, "sem_seg"
scores, PyTorch); `common.path_cfg` turns one into a config.
"""

PATHS = {
    "plain": {"optimize": False},  # the model's own computation: the reference
    "optimized": {},  # the exact inference transforms (the default)
    "compiled": {"compile": True},
    "bf16": {"precision": "bfloat16"},
    "bf16-compiled": {"precision": "bfloat16", "compile": True},
    # "sem_seg_labels" instead of the (K, H, W) scores: what a deployed segmenter returns.
    "labels": {"semantic_output": "labels"},
    "bf16-labels": {"precision": "bfloat16", "semantic_output": "labels"},
    # Labels combined at the mask resolution and resized: an approximation, bounded memory.
    "low-res-labels": {"semantic_output": "low_res_labels"},
    "onnxruntime": {"backend": "onnxruntime"},  # exported with --dynamic, run by ONNX Runtime
}

#!/usr/bin/env python
"""Draw a trained MaskFormer's predictions on images, a video or a webcam stream.

    python demo/demo.py --input photo.jpg       # ADE20K-150 R50 model-zoo weights (downloaded
                                                # once); overlay written to demo_output/
    python demo/demo.py --config-file configs/quickstart/maskformer_R18_quickstart.yaml \\
        --input photos/ more/*.jpg one.png --output overlays/ \\
        --opts MODEL.WEIGHTS output/quickstart/model_final.pth
    python demo/demo.py --config-file ... --video-input clip.mp4 --output clip_overlay.mp4 \\
        --opts MODEL.WEIGHTS ...
    python demo/demo.py --config-file ... --webcam [--output webcam.mp4] --opts MODEL.WEIGHTS ...

Without --config-file the demo uses configs/ade20k/maskformer_R50.yaml with the official
model-zoo weights (MODEL.WEIGHTS defaults to their URL; Detectron2 downloads and caches them).
Without --output, overlays of --input go to the folder demo_output/ (a video's to
demo_output/<name>.mp4), and the demo prints where. Overlays use Detectron2's Visualizer with the
class names and colours of DATASETS.TEST[0]. With several inputs (or a folder or glob), --output
is a folder: each overlay is written there under its input's name (its path relative to an input
folder), atomically. With MODEL.WEIGHTS empty (or weights that do not fit the model) the demo
refuses to draw random output unless --allow-random-weights is given.

Exit status: 0 all inputs drawn; 1 some inputs failed (each reported on one line, the others
drawn); 2 nothing could be run (an argument, config key, config file, checkpoint or download
error, reported on one line).
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import re
import sys
import time
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

# Heavy modules (torch, OpenCV, Detectron2) are imported after the arguments are parsed, so that
# --help and argument errors answer at once.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

DEFAULT_CONFIG = os.path.join(REPO_ROOT, "configs", "ade20k", "maskformer_R50.yaml")
# Official checkpoints are MODEL_ZOO_URL/<task folder>/<official config>/<file> (MODEL_ZOO.md).
MODEL_ZOO_URL = "https://dl.fbaipublicfiles.com/maskformer"
# The official model-zoo weights of DEFAULT_CONFIG (ADE20K-150, mIoU 44.5).
DEFAULT_WEIGHTS = f"{MODEL_ZOO_URL}/semantic-ade20k/maskformer_R50_bs16_160k/model_final_d8dbeb.pkl"
DEFAULT_OUTPUT = "demo_output"
EXIT_SOME_FAILED, EXIT_NOTHING_RUN = 1, 2
TASKS = ("panoptic", "instance", "semantic")  # as maskformer.visualization.TASKS, richest first

# Overlays keep their input's name when OpenCV can write that format; other inputs get ".png".
WRITABLE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Files taken from an input folder.
IMAGE_EXTENSIONS = WRITABLE_EXTENSIONS + (".gif", ".ppm", ".pgm", ".npy")
# Output video container -> codec; both are in the FFmpeg of opencv-python(-headless).
VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}
TASK_FLAGS = {"semantic": "SEMANTIC_ON", "panoptic": "PANOPTIC_ON", "instance": "INSTANCE_ON"}

logger = logging.getLogger("maskformer.demo")


class UsageError(ValueError):
    """A problem with the arguments or the set-up: nothing was processed."""


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--config-file",
        metavar="FILE",
        help="model config (YAML); default: configs/ade20k/maskformer_R50.yaml with its "
        "model-zoo weights",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--input",
        nargs="+",
        metavar="PATH",
        help="image files, folders (searched recursively) "
        "or glob patterns (quote them to let the demo expand ** too)",
    )
    source.add_argument("--video-input", metavar="FILE", help="a video file")
    source.add_argument(
        "--webcam", nargs="?", type=int, const=0, metavar="INDEX", help="camera (default 0)"
    )
    p.add_argument(
        "--output",
        metavar="PATH",
        help="overlay file or folder; a video file (.mp4, .avi) or "
        f"folder for --video-input; for --webcam, a video file instead of a window "
        f"(default: {DEFAULT_OUTPUT}/ for --input and --video-input)",
    )
    p.add_argument(
        "--task",
        choices=TASKS,
        help="output to draw (default: the richest the config enables: "
        "panoptic, then instance, then semantic); the model computes only this one",
    )
    p.add_argument(
        "--confidence-threshold",
        type=float,
        default=0.5,
        help="instance output: draw detections scoring above this (default 0.5)",
    )
    p.add_argument(
        "--max-draw-megapixels",
        type=float,
        default=4.0,
        help="larger images get their annotations drawn at this size and laid over the "
        "full-resolution image (Detectron2's Visualizer needs ~140 bytes per pixel drawn)",
    )
    p.add_argument(
        "--allow-random-weights",
        action="store_true",
        help="draw even if MODEL.WEIGHTS is empty or lacks the head's weights (random output)",
    )
    p.add_argument(
        "--backend",
        nargs="+",
        default=["pytorch"],
        metavar="NAME",
        help="'pytorch' (default), or 'onnxruntime MODEL.onnx' (tools/export_model.py --dynamic)",
    )
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="config KEY VALUE pairs")
    return p


def _has_key(opts: Sequence[str], key: str) -> bool:
    return any(opts[i] == key for i in range(0, len(opts), 2))


def setup_cfg(args) -> Tuple[object, str]:
    """The config and the task to draw; the model is set to compute only that output."""
    import torch

    from maskformer import get_maskformer_cfg
    from maskformer.data.datasets import register_described_datasets

    register_described_datasets()  # yours, so that DATASETS.TEST can name them
    opts = list(args.opts)
    if args.config_file is None:
        if not _has_key(opts, "MODEL.WEIGHTS"):
            opts = ["MODEL.WEIGHTS", DEFAULT_WEIGHTS, *opts]
        args.config_file = DEFAULT_CONFIG
    cfg = get_maskformer_cfg(args.config_file, opts)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logger.warning("CUDA is not available: running on the CPU")
        cfg.MODEL.DEVICE = "cpu"
    if cfg.MODEL.META_ARCHITECTURE != "MaskFormer":
        # E.g. the per-pixel baselines (SemanticSegmentor): semantic output only.
        if args.task not in (None, "semantic"):
            raise UsageError(
                f"--task {args.task}: MODEL.META_ARCHITECTURE '{cfg.MODEL.META_ARCHITECTURE}' "
                "gives semantic output only"
            )
        task = "semantic"
    else:
        test = cfg.MODEL.MASK_FORMER.TEST
        task = args.task or next((t for t in TASKS if test.get(TASK_FLAGS[t])), "semantic")
        if args.task is None:
            print(f"demo: drawing the {task} output (the richest the config enables; --task)")
        for t, flag in TASK_FLAGS.items():
            test[flag] = t == task
        test.INSTANCE_SCORE_THRESHOLD = args.confidence_threshold
    if not len(cfg.DATASETS.TEST):
        raise UsageError(
            "DATASETS.TEST is empty: the demo takes class names and colours from the metadata "
            "of DATASETS.TEST[0]"
        )
    cfg.freeze()
    return cfg, task


def _inside(path: str, folder: Optional[str]) -> bool:
    if not folder:
        return False
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder + os.sep)


def _overlay_name(relative: str) -> str:
    return relative if relative.lower().endswith(WRITABLE_EXTENSIONS) else relative + ".png"


def collect_inputs(
    patterns: Sequence[str], output: Optional[str] = None
) -> Tuple[List[Tuple[str, str]], List[str], bool]:
    """Expand --input; files under the folder `output` are left out of folders and globs (the
    overlays of an earlier run into a subfolder of the inputs are not inputs).

    Returns:
        (path, overlay name) per input, in order, without repeats (a missing file is kept: it
        is reported when its turn comes); errors (patterns that match nothing); whether any
        pattern was a folder or a glob (then --output is a folder).
    """
    jobs: List[Tuple[str, str]] = []
    errors: List[str] = []
    expanded = False
    for pattern in patterns:
        if os.path.isdir(pattern):
            expanded = True
            found = []
            for root, dirs, files in os.walk(pattern):
                dirs[:] = sorted(d for d in dirs if not _inside(os.path.join(root, d), output))
                found += [
                    os.path.join(root, f)
                    for f in sorted(files)
                    if f.lower().endswith(IMAGE_EXTENSIONS)
                ]
            if not found:
                errors.append(
                    f"{pattern}: a folder without image files ({', '.join(IMAGE_EXTENSIONS)})"
                )
            jobs += [(f, _overlay_name(os.path.relpath(f, pattern))) for f in found]
        elif glob.has_magic(pattern) and not os.path.isfile(pattern):  # "photo[1].jpg" exists
            expanded = True
            found = [
                f
                for f in sorted(glob.glob(pattern, recursive=True))
                if os.path.isfile(f) and not _inside(f, output)
            ]
            if not found:
                errors.append(f"{pattern}: no file matches this pattern")
            jobs += [(f, _overlay_name(os.path.basename(f))) for f in found]
        else:
            jobs.append((pattern, _overlay_name(os.path.basename(pattern))))
    seen = set()
    unique = []
    for path, name in jobs:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            unique.append((path, name))
    return unique, errors, expanded


def plan_outputs(
    jobs: List[Tuple[str, str]], output: str, to_folder: bool
) -> List[Tuple[str, str]]:
    """(input, overlay path) pairs; UsageError if two inputs would share an overlay, an overlay
    would replace its input, or a single output file has a format OpenCV cannot write."""
    to_folder = (
        to_folder or len(jobs) > 1 or os.path.isdir(output) or output.endswith(("/", os.sep))
    )
    if not to_folder:
        if not output.lower().endswith(WRITABLE_EXTENSIONS):
            raise UsageError(
                f"--output {output}: an image file needs one of the extensions "
                f"{', '.join(WRITABLE_EXTENSIONS)} (or give a folder, ending in '/')"
            )
        planned = [(jobs[0][0], output)]
    else:
        planned = [(path, os.path.join(output, name)) for path, name in jobs]
    by_output: Dict[str, str] = {}
    for path, out in planned:
        real = os.path.realpath(out)
        if real == os.path.realpath(path):
            raise UsageError(f"--output {output}: the overlay of {path} would replace the image")
        if real in by_output:
            raise UsageError(
                f"--output {output}: {by_output[real]} and {path} would both be drawn to {out}; "
                "give them from separate folders (their relative paths are kept)"
            )
        by_output[real] = path
    return planned


class Timer:
    """Seconds spent per stage, summed over calls."""

    def __init__(self):
        self.seconds: Dict[str, float] = {}

    def add(self, stage: str, start: float) -> float:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - start
        return now


def run_images(predictor, metadata, task, planned, max_draw_pixels) -> Tuple[int, List[str]]:
    """Draw and write every overlay; returns (number written, one error line per failure)."""
    from tqdm import tqdm

    from maskformer.data.io import (
        display_rgb,
        is_multichannel_format,
        read_image,
        save_image_atomically,
    )
    from maskformer.visualization import draw_overlay, drawing_size

    errors: List[str] = []
    timer = Timer()
    done = 0
    start = time.perf_counter()
    # Multi-channel inputs (INPUT.FORMAT e.g. "RGBN"; TIFF, .npy) go to the model as stored and
    # are drawn from their first three channels.
    multichannel = is_multichannel_format(predictor.input_format)
    for path, out in tqdm(planned, unit="image", disable=None, dynamic_ncols=True):
        t = time.perf_counter()
        try:
            image = read_image(path, predictor.input_format if multichannel else "RGB")
        except (OSError, ValueError) as e:  # missing, not an image, corrupt: report, go on
            errors.append(str(e))
            tqdm.write(f"demo: error: {e}", file=sys.stderr)
            continue
        t = timer.add("reading", t)
        prediction = predictor(image, drawing_size(*image.shape[:2], max_draw_pixels))
        t = timer.add("model", t)
        overlay = draw_overlay(display_rgb(image), prediction, task, metadata)
        t = timer.add("drawing", t)
        try:
            os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
            save_image_atomically(overlay, out)
        except OSError as e:
            errors.append(str(e))
            tqdm.write(f"demo: error: {e}", file=sys.stderr)
            continue
        timer.add("writing", t)
        done += 1
    total = time.perf_counter() - start
    stages = ", ".join(f"{k} {v / max(done, 1):.3f}" for k, v in timer.seconds.items())
    print(
        f"demo: {done} image{'s' * (done != 1)} in {total:.1f} s: "
        f"{total / max(done, 1):.3f} s per image ({stages}); {len(errors)} failed"
    )
    return done, errors


def _video_writer(path: str, fps: float, size: Tuple[int, int]):
    import cv2

    ext = os.path.splitext(path)[1].lower()
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*VIDEO_CODECS[ext]), fps, size)
    if not writer.isOpened():
        raise OSError(f"Cannot write video {path} (codec {VIDEO_CODECS[ext]})")
    return writer


def run_stream(predictor, metadata, task, capture, out_path: Optional[str], total=None) -> int:
    """Draw every frame of an opened VideoCapture into a video file written atomically, or into
    a window when `out_path` is None (Esc stops). Returns the number of frames drawn."""
    import cv2
    from detectron2.utils.video_visualizer import VideoVisualizer
    from tqdm import tqdm

    from maskformer.visualization import draw_video_frame

    visualizer = VideoVisualizer(metadata)
    fps = capture.get(cv2.CAP_PROP_FPS)
    fps = fps if fps and fps == fps and fps > 0 else 30.0
    tmp = None
    writer = None
    if out_path is not None:
        stem, ext = os.path.splitext(os.path.basename(out_path))
        tmp = os.path.join(
            os.path.dirname(os.path.abspath(out_path)), f".{stem}.tmp{os.getpid()}{ext}"
        )
    timer = Timer()
    frames = 0
    start = time.perf_counter()
    progress = tqdm(total=total, unit="frame", disable=None, dynamic_ncols=True)
    try:
        while True:
            t = time.perf_counter()
            ok, frame = capture.read()
            if not ok:
                break
            rgb = frame[:, :, ::-1].copy()
            t = timer.add("reading", t)
            prediction = predictor(rgb)
            t = timer.add("model", t)
            drawn = draw_video_frame(visualizer, rgb, prediction, task)[:, :, ::-1]
            t = timer.add("drawing", t)
            if tmp is not None:
                if writer is None:
                    writer = _video_writer(tmp, fps, (drawn.shape[1], drawn.shape[0]))
                writer.write(drawn)
            else:
                try:
                    cv2.imshow("MaskFormer", drawn)
                except cv2.error:
                    raise UsageError(
                        "OpenCV cannot open a window here (opencv-python-headless, or no "
                        "display): give --output FILE.mp4"
                    ) from None
                if cv2.waitKey(1) == 27:  # Esc
                    break
            timer.add("writing", t)
            frames += 1
            progress.update()
        if writer is not None:
            writer.release()
            writer = None
            os.replace(tmp, out_path)
    finally:
        progress.close()
        if writer is not None:
            writer.release()
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        if out_path is None:
            cv2.destroyAllWindows()
    total_s = time.perf_counter() - start
    stages = ", ".join(f"{k} {v / max(frames, 1):.3f}" for k, v in timer.seconds.items())
    print(
        f"demo: {frames} frames in {total_s:.1f} s: {total_s / max(frames, 1):.3f} s per frame "
        f"({stages})"
    )
    return frames


def _video_output(args) -> Optional[str]:
    if args.output is None:
        if args.video_input is None:
            return None  # webcam: a window
        out = os.path.join(DEFAULT_OUTPUT, "")
    else:
        out = args.output
    if args.video_input is not None and (os.path.isdir(out) or out.endswith(("/", os.sep))):
        stem = os.path.splitext(os.path.basename(args.video_input))[0]
        out = os.path.join(out, stem + ".mp4")
    if os.path.splitext(out)[1].lower() not in VIDEO_CODECS:
        raise UsageError(
            f"--output {args.output}: a video file needs one of the extensions "
            f"{', '.join(VIDEO_CODECS)}"
        )
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    return out


def model_zoo_weights(config_file: str) -> Optional[str]:
    """The URL of the official trained model of `config_file` (a file under configs/) that
    MODEL_ZOO.md lists; None if it lists none."""
    relative = os.path.relpath(os.path.realpath(config_file), os.path.realpath(REPO_ROOT))
    try:
        with open(os.path.join(REPO_ROOT, "MODEL_ZOO.md"), encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    folder = None
    for line in lines:
        if line.startswith("## "):
            found = re.search(r"task folder `([^`]+)`", line)
            folder = found.group(1) if found else None
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if folder and len(cells) > 2 and cells[0] == relative.replace(os.sep, "/"):
            checkpoint = next((c for c in cells if re.fullmatch(r"model_final_\w+\.pkl", c)), None)
            if checkpoint and cells[1] != "none":
                return f"{MODEL_ZOO_URL}/{folder}/{cells[1]}/{checkpoint}"
    return None


def _trained_model_hint(config_file: str) -> str:
    url = model_zoo_weights(config_file)
    if url is None:
        return (
            "pass a trained model of this config (MODEL_ZOO.md lists the official ones; your "
            "own training writes OUTPUT_DIR/model_final.pth) with --opts MODEL.WEIGHTS FILE"
        )
    return (
        f"fetch its trained model {url} (MODEL_ZOO.md) on a machine with access and pass "
        f"--opts MODEL.WEIGHTS /path/to/{url.rsplit('/', 1)[-1]}"
    )


def _download_help(url: str, config_file: str, from_config: bool) -> str:
    """Two ways forward when MODEL.WEIGHTS `url` cannot be downloaded; `from_config`: the URL
    is the config file's own MODEL.WEIGHTS (not given on the command line)."""
    quickstart = (
        "train the quickstart model (bash tools/quickstart.sh, no download) and pass "
        "--config-file configs/quickstart/maskformer_R18_quickstart.yaml --opts "
        "MODEL.WEIGHTS output/quickstart/model_final.pth"
    )
    if not from_config:
        fetch = (
            f"fetch {url} on a machine with access and pass --opts MODEL.WEIGHTS /path/to/"
            f"{url.rsplit('/', 1)[-1]}"
        )
        return f"; two ways forward: {quickstart}; or {fetch}"
    # The configs name in MODEL.WEIGHTS the ImageNet backbone that training starts from: a file
    # the demo would refuse (its head would be random).
    return (
        f"; this is the MODEL.WEIGHTS of {config_file}: the weights its training starts from "
        f"(an ImageNet backbone for the configs here), not a trained model. Two ways forward: "
        f"{_trained_model_hint(config_file)}; or {quickstart}"
    )


def _prepare(args):
    """Config, metadata, outputs and the loaded model: (cfg, task, metadata, plan, predictor),
    where plan is (planned overlays, input errors, default folder used) or the video path."""
    from maskformer.predictor import MaskFormerPredictor
    from maskformer.visualization import drawing_metadata

    cfg, task = setup_cfg(args)
    metadata = drawing_metadata(cfg.DATASETS.TEST[0], cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES)
    if args.input is not None:
        output = args.output if args.output is not None else os.path.join(DEFAULT_OUTPUT, "")
        jobs, errors, expanded = collect_inputs(args.input, output)
        plan = (plan_outputs(jobs, output, expanded) if jobs else [], errors)
    else:
        plan = _video_output(args)
        if args.video_input is not None and not os.path.isfile(args.video_input):
            raise UsageError(f"--video-input {args.video_input}: no such file")
    if len(args.backend) > 2:
        raise UsageError(f"--backend takes NAME [MODEL_FILE], got {' '.join(args.backend)}")
    backend, model_file = args.backend[0], (args.backend[1] if len(args.backend) == 2 else None)
    if backend == "pytorch" and "://" in cfg.MODEL.WEIGHTS:
        from maskformer.checkpoint import download

        download(cfg.MODEL.WEIGHTS)  # before building the model: offline, say so at once
    predictor = MaskFormerPredictor.from_config(
        cfg,
        allow_random_weights=args.allow_random_weights,
        backend=backend,
        model_file=model_file,
    )
    return cfg, task, metadata, plan, predictor


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Returns the exit status: 0, 1 if some inputs failed, 2 if nothing could be run."""
    args = get_parser().parse_args(argv)
    # Detectron2 and fvcore script functions with torch.jit when imported: a deprecation in
    # their code that a user of the demo cannot act on.
    warnings.filterwarnings(
        "ignore", message="`torch.jit.script` is deprecated", category=FutureWarning
    )
    import yaml
    from detectron2.utils.logger import setup_logger

    from maskformer.checkpoint import (
        CheckpointDownloadError,
        CheckpointError,
        UntrainedModelError,
    )
    from maskformer.config import ConfigKeyError

    setup_logger(name="maskformer")
    # The config file's own MODEL.WEIGHTS: in the configs here, what training starts from.
    config_weights = args.config_file is not None and not _has_key(args.opts, "MODEL.WEIGHTS")
    try:
        cfg, task, metadata, plan, predictor = _prepare(args)
    except UntrainedModelError as e:
        hint = f"; or {_trained_model_hint(args.config_file)}" if config_weights else ""
        print(f"demo: error: {e} (--allow-random-weights){hint}", file=sys.stderr)
        return EXIT_NOTHING_RUN
    except CheckpointDownloadError as e:
        hint = _download_help(e.url, args.config_file, config_weights)
        print(f"demo: error: {e}{hint}", file=sys.stderr)
        return EXIT_NOTHING_RUN
    except (UsageError, ValueError, OSError, CheckpointError, ConfigKeyError) as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return EXIT_NOTHING_RUN
    except yaml.YAMLError as e:
        message = " ".join(str(e).split())
        print(f"demo: error: {args.config_file}: not valid YAML ({message})", file=sys.stderr)
        return EXIT_NOTHING_RUN

    if args.input is not None:
        planned, errors = plan
        for e in errors:
            print(f"demo: error: {e}", file=sys.stderr)
        written, failed = run_images(
            predictor, metadata, task, planned, int(args.max_draw_megapixels * 1e6)
        )
        if written == 1 and len(planned) == 1:
            print(f"demo: overlay in {planned[0][1]}")
        elif written:
            folder = args.output if args.output is not None else DEFAULT_OUTPUT
            print(f"demo: {written} overlay{'s' * (written != 1)} in {folder}")
        return EXIT_SOME_FAILED if errors or failed else 0

    import cv2

    out_path = plan
    source = args.video_input if args.video_input is not None else args.webcam
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        what = f"video {source}" if args.video_input is not None else f"camera {source}"
        print(f"demo: error: cannot open {what}", file=sys.stderr)
        return EXIT_NOTHING_RUN
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if args.video_input is not None else None
    try:
        frames = run_stream(predictor, metadata, task, capture, out_path, total=total or None)
    except (UsageError, OSError) as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return EXIT_NOTHING_RUN
    finally:
        capture.release()
    if frames == 0:
        print(f"demo: error: no frame could be read from {source}", file=sys.stderr)
        return EXIT_SOME_FAILED
    if out_path:
        print(f"demo: video in {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

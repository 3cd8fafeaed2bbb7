"""Checking a registered dataset before training on it (`tools/check_dataset.py`).

Every image and label file the dataset lists is read as training reads it. Errors: unreadable
files, label values that are neither a class (0..K-1) nor the ignore label, images without labels
and labels without images (found by scanning the dataset's folders), an image and its labels of
different sizes, multi-channel semantic label maps, panoptic segments missing from
`segments_info`. It also counts, per class, the labelled pixels and the images it appears in.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from tqdm import tqdm

from .datasets.custom import IMAGE_EXTENSIONS, files_under
from .io import read_image, read_label_map, rgb_to_panoptic_ids

__all__ = ["DatasetReport", "Finding", "check_dataset", "format_report"]


@dataclass
class Finding:
    """One problem: "error" (training would fail or learn wrong labels) or "warning"."""

    level: str
    file: str
    message: str
    # Label values outside the classes that the finding is about (to summarise across files).
    bad_values: Tuple[int, ...] = ()


@dataclass
class DatasetReport:
    """What `check_dataset` found. Counts are indexed by contiguous class id."""

    name: str
    kind: str  # "semantic" or "panoptic"
    classes: List[str]
    num_images: int = 0
    findings: List[Finding] = field(default_factory=list)
    pixels: Optional[np.ndarray] = None  # (K,) labelled pixels per class
    images: Optional[np.ndarray] = None  # (K,) images containing the class
    # (K,) labelled pixels of all images containing the class (median frequency balancing)
    present_pixels: Optional[np.ndarray] = None
    ignored_pixels: int = 0

    @property
    def errors(self) -> List[Finding]:
        return [f for f in self.findings if f.level == "error"]


@dataclass
class _ImageResult:
    findings: List[Finding] = field(default_factory=list)
    pixels: Dict[int, int] = field(default_factory=dict)
    ignored: int = 0

    def error(self, file: str, message: str, bad_values: Tuple[int, ...] = ()) -> None:
        self.findings.append(Finding("error", file, message, bad_values))

    def count(self, c: int, pixels) -> None:
        self.pixels[c] = self.pixels.get(c, 0) + int(pixels)


def _image_size(path: str, result: _ImageResult) -> Optional[Tuple[int, int]]:
    """(H, W) of an image as training reads it (EXIF orientation applied), None if unreadable."""
    try:
        if path.lower().endswith(".npy"):  # a multi-channel array (INPUT.FORMAT e.g. "RGBN")
            return np.load(path, mmap_mode="r", allow_pickle=False).shape[:2]
        return read_image(path, "RGB").shape[:2]
    except (OSError, ValueError) as e:
        result.error(path, str(e))
        return None


def _size_text(hw: Tuple[int, int]) -> str:
    return f"{hw[1]}x{hw[0]}"


def _check_semantic_labels(
    image_size, label_path: str, num_classes: int, ignore_label: int, result: _ImageResult
) -> None:
    try:
        label = read_label_map(label_path)
    except OSError as e:
        result.error(label_path, str(e))
        return
    if label.ndim != 2:
        result.error(
            label_path,
            f"has {label.shape[2]} channels; a label map holds one class index per pixel "
            "(8/16-bit grey or a palette PNG), not colours",
        )
        return
    if image_size is not None and tuple(label.shape) != tuple(image_size):
        result.error(
            label_path,
            f"is {_size_text(label.shape)} (W x H) but its image is {_size_text(image_size)}",
        )
    values, counts = np.unique(label, return_counts=True)
    bad = [
        (int(v), int(c))
        for v, c in zip(values, counts)
        if not 0 <= v < num_classes and v != ignore_label
    ]
    if bad:
        listed = ", ".join(f"{v} ({c} pixels)" for v, c in bad[:8])
        more = f", ... ({len(bad) - 8} more values)" if len(bad) > 8 else ""
        result.error(
            label_path,
            f"label values {listed}{more} are outside the classes 0..{num_classes - 1} "
            f"and not the ignore label {ignore_label}",
            tuple(v for v, _ in bad),
        )
    for v, c in zip(values, counts):
        if 0 <= v < num_classes:
            result.count(int(v), c)
        elif v == ignore_label:
            result.ignored += int(c)


def _check_panoptic_labels(d: Dict, size, result: _ImageResult) -> None:
    listed = d.get("height"), d.get("width")
    if size is not None and listed[0] and tuple(listed) != tuple(size):
        result.error(
            d["file_name"],
            f"is {_size_text(size)} but the panoptic JSON says {_size_text(listed)}",
        )
    png = d["pan_seg_file_name"]
    try:
        rgb = read_label_map(png)
        ids = rgb_to_panoptic_ids(rgb[..., :3] if rgb.ndim == 3 else rgb, png)
    except (OSError, ValueError) as e:
        result.error(png, str(e))
        return
    if size is not None and ids.shape != tuple(size):
        result.error(png, f"is {_size_text(ids.shape)} but its image is {_size_text(size)}")
    present, areas = np.unique(ids, return_counts=True)
    segments = {s["id"]: s for s in d["segments_info"]}
    unlisted = [int(i) for i in present if i != 0 and int(i) not in segments]
    if unlisted:
        result.error(
            png,
            f"segment ids {unlisted[:8]}{' ...' if len(unlisted) > 8 else ''} have no "
            "entry in the JSON's segments_info (their class is unknown)",
        )
    absent = sorted(set(segments) - {int(i) for i in present})
    if absent:
        result.findings.append(
            Finding("warning", png, f"segments_info ids {absent[:8]} have no pixels")
        )
    for i, area in zip(present, areas):
        if int(i) in segments:
            result.count(segments[int(i)]["category_id"], area)
        elif i == 0:
            result.ignored += int(area)


def _check_image(d: Dict, num_classes: int, ignore_label: int) -> _ImageResult:
    """The image, its panoptic annotation if any, and its semantic label map if any."""
    result = _ImageResult()
    size = _image_size(d["file_name"], result)
    if "pan_seg_file_name" in d:
        _check_panoptic_labels(d, size, result)
    if d.get("sem_seg_file_name"):
        _check_semantic_labels(size, d["sem_seg_file_name"], num_classes, ignore_label, result)
    return result


def _unpaired(dicts: List[Dict], meta, kind: str) -> List[Finding]:
    """Files in the dataset's folders that the dataset does not use: images without labels,
    labels without images."""
    used = {os.path.realpath(d[k]) for d in dicts for k in d if k.endswith("file_name")}
    label_key = "sem_seg_file_name" if kind == "semantic" else "pan_seg_file_name"
    label_root = meta.get("sem_seg_root") if kind == "semantic" else meta.get("panoptic_root")
    label_exts = tuple({os.path.splitext(d[label_key])[1].lower() for d in dicts}) or (".png",)
    findings = []
    for path in files_under(meta.get("image_root") or "", IMAGE_EXTENSIONS):
        if os.path.realpath(path) not in used:
            what = "label map" if kind == "semantic" else "panoptic annotation"
            findings.append(Finding("error", path, f"image without a {what}"))
    for path in files_under(label_root or "", label_exts):
        if os.path.realpath(path) not in used:
            findings.append(Finding("error", path, "label file without an image"))
    return findings


# A label value outside the classes in at least this many files is reported once, with a hint:
# it is most likely the dataset's ignore label, not given at registration.
_SUMMARY_MIN_FILES = 3


def _summarise_bad_values(
    findings: List[Finding], num_classes: int, ignore_label: int, num_images: int
) -> List[Finding]:
    """One error per label value that is outside the classes in many files, instead of one per
    file (a forgotten ignore label would give one identical error per image)."""
    files: Dict[int, List[str]] = {}
    for f in findings:
        for v in f.bad_values:
            files.setdefault(v, []).append(f.file)
    common = {v for v, fs in files.items() if len(fs) >= _SUMMARY_MIN_FILES}
    if not common:
        return findings
    kept = [f for f in findings if not f.bad_values or not set(f.bad_values) <= common]
    for v in sorted(common):
        kept.append(
            Finding(
                "error",
                f"{len(files[v])} label files",
                f"label value {v} is outside the classes 0..{num_classes - 1} and not the "
                f"ignore label {ignore_label} in {len(files[v])} of {num_images} label files "
                f"(e.g. {files[v][0]}); if {v} marks unlabelled pixels, register the dataset "
                f"with --ignore-label {v}",
            )
        )
    return kept


def check_dataset(name: str, workers: int = 4, progress: bool = True) -> DatasetReport:
    """Read every file of the registered dataset `name` (semantic or panoptic) with `workers`
    threads (decoding releases the GIL) and report what is wrong with it.

    Raises:
        KeyError: `name` is not registered.
    """
    if name not in DatasetCatalog.list():
        raise KeyError(f"Dataset '{name}' is not registered (tools/register_dataset.py list)")
    meta = MetadataCatalog.get(name)
    classes = list(meta.get("stuff_classes") or [])
    ignore_label = meta.get("ignore_label", 255)
    report = DatasetReport(name=name, kind="semantic", classes=classes)
    try:
        dicts = DatasetCatalog.get(name)
    except Exception as e:  # the loader's own error (missing folder, bad JSON, unknown class)
        report.findings.append(Finding("error", name, f"cannot be loaded: {e}"))
        return report
    if not dicts:
        report.findings.append(Finding("error", name, "has no images"))
        return report
    report.kind = "panoptic" if "pan_seg_file_name" in dicts[0] else "semantic"
    if report.kind == "semantic" and "sem_seg_file_name" not in dicts[0]:
        report.findings.append(Finding("error", name, "has neither semantic nor panoptic labels"))
        return report
    if not classes:
        report.findings.append(Finding("error", name, "has no 'stuff_classes' in its metadata"))
        return report
    report.num_images = len(dicts)
    report.pixels = np.zeros(len(classes), np.int64)
    report.images = np.zeros(len(classes), np.int64)
    report.present_pixels = np.zeros(len(classes), np.int64)
    report.findings += _unpaired(dicts, meta, report.kind)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = pool.map(lambda d: _check_image(d, len(classes), ignore_label), dicts)
        for r in tqdm(results, total=len(dicts), unit="image", disable=None if progress else True):
            report.findings += r.findings
            report.ignored_pixels += r.ignored
            labelled = sum(n for c, n in r.pixels.items() if 0 <= c < len(classes))
            for c, n in r.pixels.items():
                if 0 <= c < len(classes):
                    report.pixels[c] += n
                    report.images[c] += 1
                    report.present_pixels[c] += labelled
    report.findings = _summarise_bad_values(
        report.findings, len(classes), ignore_label, report.num_images
    )
    for c in np.flatnonzero(report.images == 0):
        report.findings.append(
            Finding("warning", name, f"class {c} '{classes[c]}' appears in no image")
        )
    return report


def format_report(report: DatasetReport, max_listed: int = 50) -> str:
    """The report as text: findings (errors first, at most `max_listed` of each level) and the
    class frequencies."""
    lines = [
        f"{report.name}: {report.kind}, {len(report.classes)} classes, {report.num_images} images"
    ]
    for level in ("error", "warning"):
        found = [f for f in report.findings if f.level == level]
        for f in found[:max_listed]:
            lines.append(f"  {level.upper():<7} {f.file}: {f.message}")
        if len(found) > max_listed:
            lines.append(f"  ... and {len(found) - max_listed} more {level}s")
    if report.pixels is not None:
        labelled = max(int(report.pixels.sum()), 1)
        width = max([len(c) for c in report.classes] + [len("(ignored / void)")])
        lines.append(
            f"  {'id':>4}  {'class':<{width}}  {'pixels':>12}  {'share':>6}  {'images':>6}"
        )
        for c, name in enumerate(report.classes):
            pixels, images = int(report.pixels[c]), int(report.images[c])
            lines.append(
                f"  {c:>4}  {name:<{width}}  {pixels:>12}  {100 * pixels / labelled:5.1f}%  "
                f"{images:>6}"
            )
        lines.append(f"  {'':>4}  {'(ignored / void)':<{width}}  {report.ignored_pixels:>12}")
    errors, warnings = len(report.errors), len(report.findings) - len(report.errors)
    lines.append(f"{report.name}: {errors} errors, {warnings} warnings")
    return "\n".join(lines)

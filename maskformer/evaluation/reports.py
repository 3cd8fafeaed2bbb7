"""What a person reads after an evaluation: per-class tables (markdown and CSV), metrics.json,
the confusion matrix (.npy and a row-normalised heat map) and a sorted per-class bar chart, all
in the evaluator's output folder; and a console summary with the worst classes. K classes.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from typing import Dict, Mapping, Optional, Sequence

import numpy as np

__all__ = ["bar_chart", "confusion_heat_map", "log_summary", "overlay_panels", "write_report"]

_WORST = 10  # classes listed on the console


def _json_number(x: float) -> Optional[float]:
    x = float(x)
    return None if math.isnan(x) else x


def _figure(width: float, height: float):
    # The Agg canvas works without a display and leaves pyplot's global state alone.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def confusion_heat_map(confusion: np.ndarray, class_names: Sequence[str], title: str = ""):
    """A matplotlib Figure of the (K, K) [gt, pred] confusion matrix, each row divided by its
    sum (the fraction of a ground-truth class's pixels predicted as each class; rows of classes
    absent from the ground truth are empty). Sized so that ~200 class names stay legible."""
    k = len(class_names)
    rows = confusion.sum(axis=1, keepdims=True).astype(float)
    normalised = np.divide(confusion, rows, out=np.full(confusion.shape, np.nan), where=rows > 0)
    cells = max(3.5, 0.16 * k)  # inches of the matrix itself
    side = cells + 2.6  # + 1.8 for the class names (left, below), 0.8 for title and colour bar
    fig = _figure(side, side)
    ax = fig.add_axes((1.8 / side, 1.8 / side, cells / side, cells / side))
    image = ax.imshow(normalised, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    font = 8 if k <= 60 else 6
    ax.set_xticks(range(k), labels=class_names, rotation=90, fontsize=font)
    ax.set_yticks(range(k), labels=class_names, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    ax.set_title(title or "confusion matrix (each row sums to 1)")
    if k <= 30:
        for (i, j), v in np.ndenumerate(normalised):
            if v >= 0.005:
                color = "k" if v > 0.5 else "w"  # readable on viridis' yellow and purple
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color=color)
    fig.colorbar(
        image, cax=fig.add_axes(((1.9 + cells) / side, 1.8 / side, 0.15 / side, cells / side))
    )
    return fig


def bar_chart(values: np.ndarray, class_names: Sequence[str], metric: str, title: str = ""):
    """A matplotlib Figure with one horizontal bar per class of `values` (K,), the worst at the
    top; classes with NaN (absent from the ground truth) are left out."""
    order = [i for i in np.argsort(values, kind="stable") if not np.isnan(values[i])]
    n = max(1, len(order))
    height = 0.2 * n + 1.1  # inches: a bar of 0.2, margins of 0.6 below and 0.5 above
    fig = _figure(8.0, height)
    ax = fig.add_axes((0.3, 0.6 / height, 0.62, 1 - 1.1 / height))
    positions = np.arange(len(order))[::-1]  # worst first, at the top
    ax.barh(positions, [values[i] for i in order], color="tab:blue")
    font = 8 if n <= 60 else 6
    ax.set_yticks(positions, labels=[class_names[i] for i in order], fontsize=font)
    ax.set_ylim(-0.5, len(order) - 0.5)
    for p, i in zip(positions, order):
        ax.text(values[i], p, f" {values[i]:.1f}", va="center", fontsize=font - 1)
    ax.set_xlabel(metric)
    ax.set_title(title or f"per-class {metric}, sorted")
    return fig


def write_report(
    output_dir: str,
    *,
    task: str,
    summary: Mapping[str, float],
    class_names: Sequence[str],
    per_class: Mapping[str, np.ndarray],
    support: np.ndarray,
    sort_by: str,
    confusion: Optional[np.ndarray] = None,
) -> Dict[str, str]:
    """Write the report of one task into `output_dir`; returns {kind: path}.

    Args:
        task: "sem_seg" or "panoptic_seg", the prefix of the files and the key in metrics.json.
        summary: overall numbers, e.g. {"mIoU": 41.2}.
        per_class: column name -> (K,) values (NaN: the class did not occur).
        support: (K,) how much ground truth each class has (pixels or segments).
        sort_by: the column of `per_class` drawn as the sorted bar chart.
        confusion: (K, K) [gt, pred] counts, saved as .npy and drawn; None: no confusion matrix.
    """
    os.makedirs(output_dir, exist_ok=True)
    paths = {
        "markdown": os.path.join(output_dir, f"{task}_per_class.md"),
        "csv": os.path.join(output_dir, f"{task}_per_class.csv"),
        "metrics": os.path.join(output_dir, "metrics.json"),
        "bars": os.path.join(output_dir, f"{task}_per_class_{sort_by}.png"),
    }
    columns = list(per_class)
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["class", *columns, "support"])
        for i, name in enumerate(class_names):
            writer.writerow([name, *(f"{per_class[c][i]:.4f}" for c in columns), int(support[i])])
    lines = [
        "| " + " | ".join(summary) + " |",
        "|" + "---:|" * len(summary),
        "| " + " | ".join(f"{v:.2f}" for v in summary.values()) + " |",
        "",
        "| class | " + " | ".join(columns) + " | support |",
        "|---|" + "---:|" * (len(columns) + 1),
    ]
    for i, name in enumerate(class_names):
        cells = " | ".join(
            "-" if np.isnan(per_class[c][i]) else f"{per_class[c][i]:.2f}" for c in columns
        )
        lines.append(f"| {name} | {cells} | {int(support[i])} |")
    with open(paths["markdown"], "w") as f:
        f.write("\n".join(lines) + "\n")

    metrics = {}
    if os.path.exists(paths["metrics"]):  # the other tasks of the same evaluation
        with open(paths["metrics"]) as f:
            metrics = json.load(f)
    metrics[task] = {
        "summary": {k: _json_number(v) for k, v in summary.items()},
        "per_class": {
            name: {c: _json_number(per_class[c][i]) for c in columns}
            for i, name in enumerate(class_names)
        },
    }
    with open(paths["metrics"], "w") as f:
        json.dump(metrics, f, indent=1)

    bar_chart(np.asarray(per_class[sort_by], float), class_names, sort_by).savefig(paths["bars"])
    if confusion is not None:
        paths["confusion"] = os.path.join(output_dir, f"{task}_confusion_matrix.npy")
        paths["heat_map"] = os.path.join(output_dir, f"{task}_confusion_matrix.png")
        np.save(paths["confusion"], confusion)
        confusion_heat_map(confusion, class_names).savefig(paths["heat_map"])
    return paths


def log_summary(
    log: logging.Logger,
    dataset_name: str,
    task: str,
    summary: Mapping[str, float],
    class_names: Sequence[str],
    values: np.ndarray,
    metric: str,
) -> None:
    """One line of overall numbers and one of the worst classes by `metric` (K,)."""
    numbers = ", ".join(f"{k} {v:.2f}" for k, v in summary.items())
    worst = [i for i in np.argsort(values, kind="stable") if not np.isnan(values[i])][:_WORST]
    listed = ", ".join(f"{class_names[i]} {values[i]:.1f}" for i in worst)
    log.info(f"{dataset_name} {task}: {numbers}")
    log.info(f"{dataset_name} {task}: worst {len(worst)} classes by {metric}: {listed}")


def overlay_panels(
    image: np.ndarray,
    pred: np.ndarray,
    gt: Optional[np.ndarray],
    colors: Sequence[Sequence[int]],
    alpha: float = 0.6,
) -> np.ndarray:
    """Image | prediction | ground truth side by side, the class maps drawn in `colors` over
    the image.

    Args:
        image: (H, W, 3) uint8 RGB.
        pred, gt: (H, W) class ids; values outside [0, K) (ignore label, VOID) are not drawn.
            gt None: a black panel.
        colors: K RGB colours.
    Returns:
        (H, 3 W, 3) uint8.
    """
    palette = np.asarray(colors, np.float32)

    def draw(labels: Optional[np.ndarray]) -> np.ndarray:
        if labels is None:
            return np.zeros_like(image)
        drawn = (labels >= 0) & (labels < len(palette))
        out = image.astype(np.float32)
        out[drawn] = (1 - alpha) * out[drawn] + alpha * palette[labels[drawn]]
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)

    return np.concatenate([image, draw(pred), draw(gt)], axis=1)

"""PNG plots of a run: training curves, per-tag precision-recall curves, per-tag AP bars.

Figures are built with matplotlib's object API (``Figure``, rendered by Agg) rather than pyplot, so
plotting works headless and leaves no global state behind.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from hashtag.train.metrics import average_precision, precision_recall_curve


def plot_history(histories: Mapping[str, Mapping[str, Any]], path: Path) -> Path:
    """Per model: train/val loss and val mAP per epoch of the chosen candidate (others faint)."""
    fig = Figure(figsize=(11, 3.2 * len(histories)), layout="constrained")
    axes = fig.subplots(len(histories), 2, squeeze=False)
    for row, (name, hist) in enumerate(histories.items()):
        chosen = hist["selected"]
        loss_ax, map_ax = axes[row]
        for key, curves in hist["candidates"].items():
            epochs = np.arange(1, len(curves["val_mAP"]) + 1)
            if key == chosen:
                loss_ax.plot(epochs, curves["loss"], label="train loss")
                loss_ax.plot(epochs, curves["val_loss"], label="val loss")
                map_ax.plot(epochs, curves["val_mAP"], color="C3", linewidth=2, label=f"{key} (chosen)")
            else:
                map_ax.plot(epochs, curves["val_mAP"], color="grey", alpha=0.35, linewidth=0.8)
        loss_ax.set(title=f"{name}: loss ({chosen})", xlabel="epoch", ylabel="loss")
        map_ax.set(title=f"{name}: validation mAP (grey: other candidates)", xlabel="epoch", ylabel="mAP")
        loss_ax.legend()
        map_ax.legend(loc="lower right")
    fig.savefig(path, dpi=100)
    return path


def plot_pr_curves(labels: np.ndarray, probs: np.ndarray, tags: Sequence[str], title: str, path: Path) -> Path:
    """One precision-recall curve per tag, AP in the legend."""
    fig = Figure(figsize=(7, 6), layout="constrained")
    ax = fig.subplots()
    for j, tag in enumerate(tags):
        if not np.any(labels[:, j] > 0):
            continue
        precision, recall, _ = precision_recall_curve(labels[:, j], probs[:, j])
        ap = average_precision(labels[:, j], probs[:, j])
        ax.step(np.r_[0.0, recall], np.r_[precision[0], precision], where="pre", label=f"{tag} (AP {ap:.3f})")
    ax.set(title=title, xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(fontsize="small", loc="lower left")
    fig.savefig(path, dpi=100)
    return path


def plot_ap_bars(ap: Mapping[str, Mapping[str, float | None]], tags: Sequence[str], title: str, path: Path) -> Path:
    """Grouped bars: for each tag, one bar per model (and the ensemble)."""
    fig = Figure(figsize=(max(7, 1.1 * len(tags)), 4.5), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(len(ap), 1)
    x = np.arange(len(tags))
    for i, (name, per_tag) in enumerate(ap.items()):
        values = [per_tag.get(t) or 0.0 for t in tags]
        ax.bar(x + (i - (len(ap) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(x, list(tags), rotation=30, ha="right")
    ax.set(title=title, ylabel="average precision", ylim=(0, 1.05))
    fig.legend(*ax.get_legend_handles_labels(), fontsize="small", ncols=len(ap), loc="outside upper right")
    fig.savefig(path, dpi=100)
    return path

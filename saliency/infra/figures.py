"""PNG figures for run directories and reports: training curves, metric bar charts and picture grids.

Uses matplotlib's object API with the Agg canvas (no pyplot state, no display needed)."""
from __future__ import annotations

import io

import numpy as np
from matplotlib.figure import Figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def training_curves_png(epochs: list[int], train_loss: list[float], val_name: str, val_values: list[float],
                        higher_is_better: bool = True, title: str = "") -> bytes:
    """Training loss and the validation metric per epoch, side by side; the best epoch is marked."""
    figure = Figure(figsize=(8, 3))
    loss_axes, val_axes = figure.subplots(1, 2)
    loss_axes.plot(epochs, train_loss, marker="o", color="#3367d6")
    loss_axes.set(xlabel="epoch", ylabel="training loss", title="training loss")
    val_axes.plot(epochs, val_values, marker="o", color="#d9822b")
    best = int(np.argmax(val_values) if higher_is_better else np.argmin(val_values))
    val_axes.scatter([epochs[best]], [val_values[best]], s=120, facecolors="none", edgecolors="#1d232a",
                     label=f"best (epoch {epochs[best]})", zorder=3)
    val_axes.set(xlabel="epoch", ylabel=f"validation {val_name}", title=f"validation {val_name}")
    val_axes.legend(loc="best", fontsize="small")
    for axes in (loss_axes, val_axes):
        axes.grid(alpha=0.3)
        axes.xaxis.get_major_locator().set_params(integer=True)
    if title:
        figure.suptitle(title)
    return _png(figure)


def metric_bars_png(runs: list[str], metrics: dict[str, list[float]], title: str = "") -> bytes:
    """Grouped bars: one group per metric, one bar per run (values as printed, e.g. ×100)."""
    figure = Figure(figsize=(max(6.0, 1.1 * len(metrics) * max(1, len(runs)) / 2 + 2), 3.6))
    axes = figure.subplots()
    width = 0.8 / max(1, len(runs))
    positions = np.arange(len(metrics))
    for index, run in enumerate(runs):
        values = [metrics[name][index] for name in metrics]
        bars = axes.bar(positions + (index - (len(runs) - 1) / 2) * width, values, width, label=run)
        axes.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
    axes.set_xticks(positions, list(metrics))
    axes.set_ylabel("score ×100")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    if title:
        axes.set_title(title)
    return _png(figure)


def image_grid_png(columns: list[str], rows: list[tuple[str, list[np.ndarray]]]) -> bytes:
    """A grid of pictures: one row per item (its label, then one RGB image or 2-D map per column)."""
    figure = Figure(figsize=(1.9 * len(columns), 1.5 * len(rows) + 0.3))
    axes = figure.subplots(len(rows), len(columns), squeeze=False)
    for r, (label, pictures) in enumerate(rows):
        for c, picture in enumerate(pictures):
            cell = axes[r][c]
            cell.imshow(picture, cmap=None if picture.ndim == 3 else "inferno", interpolation="bilinear")
            cell.set_xticks([])
            cell.set_yticks([])
            if r == 0:
                cell.set_title(columns[c], fontsize=9)
            if c == 0:
                cell.set_ylabel(label, fontsize=7)
    return _png(figure)


def reliability_png(bins: list[dict], what: str) -> bytes:
    """A reliability diagram: per bin of confidence (`saliency.infra.stats.reliability`), the observed share of
    `what` against the mean confidence, each point sized by its items, beside the diagonal of perfect calibration."""
    figure = Figure(figsize=(4.2, 4.0))
    axes = figure.subplots()
    axes.plot([0, 1], [0, 1], color="#9aa6bf", linestyle="--", label="calibrated")
    axes.scatter([row["confidence"] for row in bins], [row["observed"] for row in bins],
                 s=[30 + 12 * row["items"] for row in bins], color="#2f6fde", zorder=3, label="bins (size: items)")
    for row in bins:
        axes.annotate(str(row["items"]), (row["confidence"], row["observed"]), textcoords="offset points",
                      xytext=(6, 4), fontsize=7)
    axes.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (mean in the bin)", ylabel=f"observed share {what}")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize="small")
    return _png(figure)

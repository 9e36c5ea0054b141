"""Figures and the self-contained `report.html` (each plot function returns a Figure).

Figures are built on `matplotlib.figure.Figure` directly, so nothing here touches pyplot's
global state or needs a display.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence

import numpy as np
import seaborn as sns
from matplotlib.figure import Figure
from PIL import Image

from fashion_cnn.data import CLASS_NAMES

WRONG, RIGHT = "#c0392b", "#1e7b34"
GALLERY_PAIRS = 6
THUMBNAIL = 128  # pixels: the largest side of a photo in the robustness strip (~100 shown)


def training_curves(history: dict) -> Figure:
    """Loss and accuracy per epoch, training and validation."""
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    for ax, key in zip(fig.subplots(1, 2), ("loss", "accuracy"), strict=True):
        for name, style in ((key, "-o"), (f"val_{key}", "--s")):
            values = history.get(name) or []
            if values:
                ax.plot(range(1, len(values) + 1), values, style, label=name, markersize=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    return fig


def prediction_grid(
    images: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    class_names: Sequence[str] = CLASS_NAMES,
    rows: int = 5,
    cols: int = 5,
) -> Figure:
    """The blog's grid of test images titled "predicted (true)"; mistakes in red."""
    fig = Figure(figsize=(cols * 1.9, rows * 2.0), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for i, ax in enumerate(axes):
        ax.axis("off")
        if i >= len(images):
            continue
        ax.imshow(images[i].squeeze(), cmap="gray_r", vmin=0, vmax=255)
        ok = y_pred[i] == y_true[i]
        title = (
            class_names[y_pred[i]]
            if ok
            else f"{class_names[y_pred[i]]}\n(true: {class_names[y_true[i]]})"
        )
        ax.set_title(title, fontsize=8, color=RIGHT if ok else WRONG)
        if not ok:
            ax.add_patch(_frame(ax, WRONG))
    return fig


def _frame(ax, color: str):
    from matplotlib.patches import Rectangle

    return Rectangle(
        (0, 0),
        1,
        1,
        transform=ax.transAxes,
        fill=False,
        edgecolor=color,
        linewidth=3,
        clip_on=False,
    )


def confusion_heatmap(cm: np.ndarray, class_names: Sequence[str] = CLASS_NAMES) -> Figure:
    """Counts with rows = true class and columns = predicted class, labelled as such."""
    fig = Figure(figsize=(8.5, 7), layout="constrained")
    ax = fig.subplots()
    sns.heatmap(
        np.asarray(cm),
        annot=True,
        fmt="d",
        cmap="Blues",
        xticklabels=class_names,
        yticklabels=class_names,
        cbar_kws={"label": "images"},
        ax=ax,
    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (row: true class, column: predicted class)")
    ax.tick_params(axis="x", rotation=45)
    return fig


def gallery_indices(
    y_true: np.ndarray, y_pred: np.ndarray, pairs: Sequence[Sequence[int]], per_pair: int = 8
) -> list[np.ndarray]:
    """For each (true, predicted, count) pair, the first `per_pair` test indices it hit."""
    return [np.flatnonzero((y_true == t) & (y_pred == p))[:per_pair] for t, p, _ in pairs]


def confused_gallery(
    images: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    pairs: Sequence[Sequence[int]],
    class_names: Sequence[str] = CLASS_NAMES,
    per_pair: int = 8,
    cams: dict[int, np.ndarray] | None = None,
) -> Figure:
    """For each (true, predicted, count) pair, a row of test images it happened to.

    With `cams` (test index -> Grad-CAM heatmap of the predicted class), each image gets its
    heatmap overlaid: where the model looked when it made the mistake.
    """
    pairs = list(pairs) or [(0, 0, 0)]
    fig = Figure(figsize=(per_pair * 1.2 + 2.5, len(pairs) * 1.35), layout="constrained")
    axes = np.array(fig.subplots(len(pairs), per_pair, squeeze=False))
    for row, ((t, p, count), idx) in enumerate(
        zip(pairs, gallery_indices(y_true, y_pred, pairs, per_pair), strict=True)
    ):
        for j, ax in enumerate(axes[row]):
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if j < len(idx) and t != p:
                ax.imshow(images[idx[j]].squeeze(), cmap="gray_r", vmin=0, vmax=255)
                if cams and int(idx[j]) in cams:
                    ax.imshow(cams[int(idx[j])], cmap="inferno", alpha=0.45, vmin=0, vmax=1)
        axes[row][0].set_ylabel(
            f"{class_names[t]}\n→ {class_names[p]}\n({count}x)",
            rotation=0,
            ha="right",
            va="center",
            fontsize=8,
        )
    return fig


def figure_to_png(fig: Figure, dpi: int = 90) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _img(fig: Figure, alt: str) -> str:
    data = base64.b64encode(figure_to_png(fig)).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _classification_table(metrics: dict) -> str:
    rows = []
    for name, m in metrics["per_class"].items():
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{m['precision']:.3f}</td>"
            f"<td>{m['recall']:.3f}</td><td>{m['f1']:.3f}</td><td>{m['support']}</td></tr>"
        )
    avg = metrics["macro_avg"]
    rows.append(
        f"<tr class='avg'><td>macro average</td><td>{avg['precision']:.3f}</td>"
        f"<td>{avg['recall']:.3f}</td><td>{avg['f1']:.3f}</td><td>{metrics['n']}</td></tr>"
    )
    return (
        "<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th>"
        "<th>support</th></tr>" + "".join(rows) + "</table>"
    )


def _confused_list(metrics: dict) -> str:
    names = metrics["class_names"]
    items = [
        f"<li><b>{html.escape(names[t])}</b> predicted as "
        f"<b>{html.escape(names[p])}</b>: {c} images</li>"
        for t, p, c in metrics["most_confused"]
    ]
    return "<ol>" + "".join(items) + "</ol>"


STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .7em;text-align:right}
td:first-child,th:first-child{text-align:left}tr.avg{font-weight:bold}
img{max-width:100%}code{background:#f3f3f3;padding:0 .2em}.big{font-size:1.6em}
"""


def render_html(
    metrics: dict,
    history: dict,
    config: dict,
    images: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    title: str = "fashion-cnn evaluation",
    cams: dict[int, np.ndarray] | None = None,
    robustness: dict | None = None,
) -> str:
    """The whole report as one HTML string (figures embedded as PNG data URIs).

    Args:
        cams: Grad-CAM heatmaps for the gallery's test indices (see `confused_gallery`).
        robustness: a `robustness.json` result to include, if one was computed.
    """
    names = metrics["class_names"]
    config_rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
        for k, v in config.items()
    )
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='big'>Test accuracy <b>{metrics['test_accuracy']:.2%}</b> "
        f"(loss {metrics['test_loss']:.4f}) on {metrics['n']} test images, final model.</p>",
        "<h2>Training curves</h2>",
        _img(training_curves(history), "training curves"),
        "<h2>Predictions on the first 25 test images</h2>",
        "<p>Title: predicted class; a mistake is red and framed, with the true class below.</p>",
        _img(prediction_grid(images, y_true, y_pred, names), "5x5 prediction grid"),
        "<h2>Confusion matrix</h2>",
        _img(confusion_heatmap(np.array(metrics["confusion_matrix"]), names), "confusion matrix"),
        "<h2>Classification report</h2>",
        _classification_table(metrics),
        "<h2>Most confused pairs</h2>",
        _confused_list(metrics),
        "<p>Overlay: Grad-CAM of the predicted class (bright = where the model looked).</p>"
        if cams
        else "",
        _img(
            confused_gallery(
                images, y_true, y_pred, metrics["most_confused"][:GALLERY_PAIRS], names, cams=cams
            ),
            "most confused pairs",
        ),
        *(
            ["<h2>Robustness to photo-like inputs</h2>", robustness_table(robustness)]
            if robustness
            else []
        ),
        "<h2>Config</h2>",
        f"<table>{config_rows}</table>",
    ]
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        + "\n".join(sections)
        + "</body></html>\n"
    )


def robustness_strip(images: np.ndarray, seed: int = 0) -> Figure:
    """For each shift: a rendered photo of each sample image and what the model saw of it."""
    from fashion_cnn.images import SIZE
    from fashion_cnn.robustness import SHIFTS, model_input, render_photos

    n = len(images)
    width, height, margin = 2 * n * 1.1 + 1, len(SHIFTS) * 1.2, 0.9  # inches
    fig = Figure(figsize=(width, height))
    # Fixed margins rather than a constrained layout, which costs seconds with 144 axes.
    fig.subplots_adjust(left=margin / width, right=0.998, bottom=0.01, top=0.99, wspace=0.06)
    axes = np.array(fig.subplots(len(SHIFTS), 2 * n, squeeze=False))
    for row, name in enumerate(SHIFTS):
        for j, photo in enumerate(render_photos(name, images, seed)):
            seen = model_input(photo)  # None: refused, scored as wrong; shown black
            seen = np.zeros((SIZE, SIZE), np.uint8) if seen is None else seen
            # A thumbnail: each photo shows ~100 pixels wide, and matplotlib resampling
            # 72 full-size (~900x900) photos at every draw took most of the figure's time.
            photo.thumbnail((THUMBNAIL, THUMBNAIL), Image.Resampling.LANCZOS)
            axes[row][2 * j].imshow(photo)
            axes[row][2 * j + 1].imshow(seen, cmap="gray", vmin=0, vmax=255)
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row][0].set_ylabel(
            name.replace("_", "\n"), rotation=0, ha="right", va="center", fontsize=8
        )
    return fig


def robustness_table(result: dict) -> str:
    rows = [
        f"<tr><td>clean (the 28x28 test images)</td><td>{result['clean_accuracy']:.2%}</td>"
        f"<td>100%</td></tr>"
    ]
    for name, r in result["shifts"].items():
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{r['accuracy']:.2%}</td>"
            f"<td>{r['relative']:.0%}</td></tr>"
        )
    rows.append(
        f"<tr class='avg'><td>mean under shift</td><td>{result['mean_shifted_accuracy']:.2%}</td>"
        f"<td>{result['mean_relative']:.0%}</td></tr>"
    )
    return (
        f"<p>{result['n']} test images, each rendered as a photo per shift and classified "
        f"through the full photo preprocessing.</p><table><tr><th>shift</th><th>accuracy</th>"
        f"<th>of clean</th></tr>" + "".join(rows) + "</table>"
    )


def render_robustness_html(result: dict, samples: np.ndarray, seed: int = 0) -> str:
    """`robustness.html`: the table and, per shift, sample photos next to the model's input."""
    body = [
        "<h1>Robustness to photo-like inputs</h1>",
        robustness_table(result),
        "<h2>Samples: rendered photo, then what the model saw</h2>",
        _img(robustness_strip(samples, seed), "rendered samples"),
    ]
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>robustness</title>"
        f"<style>{STYLE}</style></head><body>" + "\n".join(body) + "</body></html>\n"
    )

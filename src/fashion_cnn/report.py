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

from fashion_cnn.data import CLASS_NAMES

WRONG, RIGHT = "#c0392b", "#1e7b34"


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


def confused_gallery(
    images: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    pairs: Sequence[Sequence[int]],
    class_names: Sequence[str] = CLASS_NAMES,
    per_pair: int = 8,
) -> Figure:
    """For each (true, predicted, count) pair, a row of test images it happened to."""
    pairs = list(pairs) or [(0, 0, 0)]
    fig = Figure(figsize=(per_pair * 1.2 + 2.5, len(pairs) * 1.35), layout="constrained")
    axes = np.array(fig.subplots(len(pairs), per_pair, squeeze=False))
    for row, (t, p, count) in enumerate(pairs):
        idx = np.flatnonzero((y_true == t) & (y_pred == p))[:per_pair]
        for j, ax in enumerate(axes[row]):
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if j < len(idx) and t != p:
                ax.imshow(images[idx[j]].squeeze(), cmap="gray_r", vmin=0, vmax=255)
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
) -> str:
    """The whole report as one HTML string (figures embedded as PNG data URIs)."""
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
        _img(
            confused_gallery(images, y_true, y_pred, metrics["most_confused"][:6], names),
            "most confused pairs",
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

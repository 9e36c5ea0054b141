"""The tuning report: trial table, best-so-far curve and a parallel-coordinates plot."""

from __future__ import annotations

import base64
import html

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from fashion_cnn.report import figure_to_png


def best_so_far_figure(summary: dict) -> Figure:
    """Validation accuracy of each trial (dots) and the best so far (line), against the
    cumulative training time."""
    trials = [t for t in summary["trials"] if t["val_accuracy"] is not None]
    fig = Figure(figsize=(6, 3.2))
    ax = fig.subplots()
    if trials:
        minutes = np.cumsum([t["train_seconds"] or 0 for t in trials]) / 60
        scores = np.array([t["val_accuracy"] for t in trials])
        ax.plot(minutes, scores, "o", alpha=0.6, label="trial")
        ax.step(minutes, np.maximum.accumulate(scores), where="post", label="best so far")
        ax.legend(loc="lower right")
    ax.set_xlabel("cumulative training minutes")
    ax.set_ylabel("validation accuracy")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def parallel_coordinates_figure(summary: dict, names: list[str]) -> Figure:
    """One line per completed trial across the tuned hyperparameters (each axis scaled to
    its range), coloured by validation accuracy."""
    trials = [t for t in summary["trials"] if t["val_accuracy"] is not None]
    fig = Figure(figsize=(max(4, 1.6 * len(names)), 3.4))
    ax = fig.subplots()
    if trials and names:
        columns = []
        for name in names:
            raw = [t["values"].get(name) for t in trials]
            if all(isinstance(v, int | float) and not isinstance(v, bool) for v in raw):
                col = np.array(raw, dtype=float)
            else:  # categories: their order of appearance
                levels = sorted({str(v) for v in raw})
                col = np.array([levels.index(str(v)) for v in raw], dtype=float)
            span = col.max() - col.min()
            columns.append((col - col.min()) / span if span else np.full_like(col, 0.5))
        data = np.stack(columns, axis=1)
        scores = np.array([t["val_accuracy"] for t in trials])
        lo, hi = scores.min(), scores.max()
        shade = (scores - lo) / (hi - lo) if hi > lo else np.ones_like(scores)
        colours = matplotlib.colormaps["viridis"](shade)
        for row, colour in zip(data, colours, strict=True):
            ax.plot(range(len(names)), row, color=colour, alpha=0.8)
        ax.set_xticks(range(len(names)), names, rotation=20)
        ax.set_yticks([0, 1], ["min", "max"])
        ax.set_title(f"val accuracy {lo:.4f} (purple) to {hi:.4f} (yellow)")
    fig.tight_layout()
    return fig


def _img(fig: Figure, alt: str) -> str:
    data = base64.b64encode(figure_to_png(fig)).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def render_tune_html(summary: dict, space) -> str:
    """The whole report as one self-contained HTML page."""
    names = list(space.hyperparameters)
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = []
    best_id = summary["best"]["trial"] if summary.get("best") else None
    for t in summary["trials"]:
        cells = "".join(f"<td>{html.escape(str(t['values'].get(n)))}</td>" for n in names)
        acc = f"{t['val_accuracy']:.4f}" if t["val_accuracy"] is not None else "—"
        secs = f"{t['train_seconds']:.0f}" if t["train_seconds"] is not None else "—"
        style = ' style="font-weight:bold"' if t["trial"] == best_id else ""
        rows.append(
            f"<tr{style}><td>{t['trial']}</td><td>{html.escape(t['status'])}</td>{cells}"
            f"<td>{t['epochs'] if t['epochs'] is not None else '—'}</td><td>{acc}</td>"
            f"<td>{secs}</td></tr>"
        )
    best = summary.get("best")
    best_text = (
        f"<p>Best: trial {best['trial']}, validation accuracy {best['val_accuracy']:.4f}; "
        f"recipe written to <code>{html.escape(best['recipe_file'])}</code> "
        f"(train it with <code>fashion-cnn train --config {html.escape(best['recipe_file'])}"
        f"</code>).</p>"
        if best
        else "<p>No trial has finished yet.</p>"
    )
    base = summary.get("base")
    if base and best:
        gain = 100 * (best["val_accuracy"] - base["val_accuracy"])
        best_text += (
            f"<p>The base recipe itself (trial {base['trial']}, its own values): validation "
            f"accuracy {base['val_accuracy']:.4f}; the best trial is {gain:+.2f} points from "
            f"it.</p>"
        )
    curve = _img(best_so_far_figure(summary), "best validation accuracy so far")
    parallel = _img(parallel_coordinates_figure(summary, names), "parallel coordinates")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>fashion-cnn tuning</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px}}</style></head>
<body><h1>fashion-cnn tuning</h1>
<p>Base recipe <code>{html.escape(space.recipe)}</code>; fixed
<code>{html.escape(str(space.fixed))}</code>. Trials are scored by the final model's accuracy
on the validation split (the test set is never used). {summary["completed"]} of
{len(summary["trials"])} trials completed.</p>
{best_text}
{curve}{parallel}
<table><tr><th>trial</th><th>status</th>{head}<th>epochs</th><th>val accuracy</th>
<th>train s</th></tr>{"".join(rows)}</table></body></html>
"""

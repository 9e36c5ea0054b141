"""Batch prediction over files, folders and stdin: one result per input, errors per input.

A result is {"file", "label", "confidence", "unsure", "predictions": top-k} or
{"file", "error"}. Probabilities are temperature-calibrated when the run has a
calibration; below the confidence threshold the label is "unsure".
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from fashion_cnn.calibrate import DEFAULT_THRESHOLD, apply_temperature
from fashion_cnn.data import CLASS_NAMES
from fashion_cnn.evaluate import predict_proba
from fashion_cnn.hardware import usable_cores
from fashion_cnn.images import ImageError, load_image
from fashion_cnn.io_utils import make_folder, write_bytes

IMAGE_SUFFIXES = {
    ".png",
    ".jpg",
    ".jpeg",
    ".webp",
    ".gif",
    ".bmp",
    ".tif",
    ".tiff",
    ".jfif",
    ".ppm",
    ".pgm",
    ".pbm",
    ".tga",
    ".ico",
}
STDIN = "-"
UNSURE = "unsure"


def top_k(probs: np.ndarray, k: int, class_names: Sequence[str] = CLASS_NAMES) -> list[dict]:
    """The k most probable classes of one probability vector, most probable first."""
    order = np.argsort(-probs, kind="stable")[:k]
    return [
        {"label": class_names[i], "index": int(i), "probability": float(probs[i])} for i in order
    ]


def answer(probs: np.ndarray, threshold: float, k: int) -> dict:
    """One probability vector as the answer `predict` and `serve` give: the most probable
    class, or `UNSURE` when its probability is below `threshold`, and the top `k`."""
    best = int(probs.argmax())
    unsure = float(probs[best]) < threshold
    return {
        "label": UNSURE if unsure else CLASS_NAMES[best],
        "confidence": float(probs[best]),
        "unsure": unsure,
        "predictions": top_k(probs, k),
    }


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> Iterator[str]:
    """Files as given, folders as their image files (recursively, sorted), `-` as stdin.

    A folder's non-image files (by suffix) are skipped; a path that does not exist, and a
    folder without any image file, are passed on, so that they get their own error.
    """
    for item in inputs:
        item = str(item)
        if item != STDIN and Path(item).is_dir():
            found = False
            for p in sorted(Path(item).rglob("*")):
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
                    found = True
                    yield str(p)
            if not found:
                yield item
        else:
            yield item


def _load(item: str) -> np.ndarray:
    if item == STDIN:
        data = sys.stdin.buffer.read()
        return load_image(io.BytesIO(data), name="<stdin>")
    if Path(item).is_dir():  # `expand_inputs` passes on a folder only when it has no images
        raise ImageError(
            f"{item}: a folder without image files (searched for "
            f"{', '.join(sorted(IMAGE_SUFFIXES))}, in subfolders too)"
        )
    return load_image(item)


def _try_load(item: str) -> np.ndarray | ImageError:
    """`_load`, with an unusable input's error returned instead of raised."""
    try:
        return _load(item)
    except ImageError as e:
        return e


def predict_inputs(
    model,
    inputs: Sequence[str | os.PathLike],
    k: int = 3,
    temperature: float = 1.0,
    threshold: float = DEFAULT_THRESHOLD,
    show_input: str | os.PathLike | None = None,
    explain: str | os.PathLike | None = None,
    chunk: int = 256,
    progress: bool = False,
    explain_model=None,
    workers: int | None = None,
) -> list[dict]:
    """Classifies every input; a failing input gets an `error` and the rest go on.

    Args:
        model: a Keras model or an engine (`fashion_cnn.engines`) taking raw 0-255 pixels.
        inputs: files, folders (searched recursively) and `-` for stdin.
        k: how many classes to list.
        temperature: softmax temperature (from the run's calibration).
        threshold: below this calibrated confidence the label is "unsure".
        show_input: folder to save each 28x28 model input in, as `<name>.input.png`.
        explain: folder to save a Grad-CAM overlay for each prediction, `<name>.gradcam.png`.
        chunk: images classified per model call.
        progress: show a progress bar on stderr.
        explain_model: the Keras model Grad-CAM runs on when `model` is an ONNX or LiteRT
            engine (default: `model`).
        workers: threads that decode and convert the photos (default: one per CPU core
            this process may use); the results do not depend on it.

    Returns:
        One dict per input, in order.
    """
    items = list(expand_inputs(inputs))
    explainer = explain_model or getattr(model, "model", model)  # a KerasEngine's model
    results: list[dict] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items), unit="img", file=sys.stderr)
    for folder, flag in ((show_input, "--show-input"), (explain, "--explain")):
        if folder:
            make_folder(folder, "Folder", flag)
    # Decoding and converting a photo takes 20-30 ms of CPU (a 1.3 MP JPEG), the model well
    # under 1 ms: threads load them on every core (Pillow and NumPy release the GIL).
    pool = ThreadPoolExecutor(workers or usable_cores())
    try:
        for start in range(0, len(items), chunk):
            part = items[start : start + chunk]
            batch, where, names = [], [], []
            for i, (item, image) in enumerate(zip(part, pool.map(_try_load, part), strict=True)):
                results.append({"file": "<stdin>" if item == STDIN else item})
                if isinstance(image, ImageError):
                    results[-1]["error"] = str(image)
                    continue
                batch.append(image)
                where.append(len(results) - 1)
                names.append("stdin" if item == STDIN else f"{start + i:05d}-{Path(item).stem}")
                if show_input:
                    path = Path(show_input) / f"{names[-1]}.input.png"
                    _save_png(Image.fromarray(image), path)
                    results[-1]["input_image"] = str(path)
            if batch:
                probs = predict_proba(model, np.stack(batch)[..., None])
                probs = apply_temperature(probs, temperature) if temperature != 1.0 else probs
                for idx, p in zip(where, probs, strict=True):
                    results[idx].update(answer(p, threshold, k))
                if explain:
                    _save_explanations(
                        explainer, batch, probs, names, where, results, Path(explain)
                    )
            if bar:
                bar.update(len(part))
    finally:  # on Ctrl-C too: the chunk's photos not yet loaded are dropped, not waited for
        pool.shutdown(cancel_futures=True)
    if bar:
        bar.close()
    return results


def _save_explanations(model, batch, probs, names, where, results, folder: Path) -> None:
    from fashion_cnn.explain import grad_cam, overlay

    cams = grad_cam(model, np.stack(batch), classes=probs.argmax(axis=1))
    for image, cam, name, idx in zip(batch, cams, names, where, strict=True):
        path = folder / f"{name}.gradcam.png"
        _save_png(overlay(image, cam), path)
        results[idx]["gradcam_image"] = str(path)


def _save_png(image: Image.Image, path: Path) -> None:
    """Writes `image` as a PNG that is either whole or absent (a temporary file, renamed)."""
    buf = io.BytesIO()
    image.save(buf, "PNG")
    write_bytes(path, buf.getvalue())


def predict_files(model, paths: Sequence[str | os.PathLike], k: int = 3) -> list[dict]:
    """Uncalibrated `predict_inputs` over a list of files (kept for library users)."""
    return predict_inputs(model, paths, k=k, threshold=0.0)


def to_csv(results: list[dict], k: int) -> str:
    """Results as CSV: file, label, confidence, then label/probability pairs, then error."""
    import csv

    buf = io.StringIO()
    writer = csv.writer(buf)
    header = ["file", "label", "confidence"]
    for i in range(1, k + 1):
        header += [f"label_{i}", f"probability_{i}"]
    writer.writerow([*header, "error"])
    for r in results:
        row = [r["file"], r.get("label", ""), f"{r['confidence']:.6f}" if "confidence" in r else ""]
        preds = r.get("predictions", [])
        for i in range(k):
            row += (
                [preds[i]["label"], f"{preds[i]['probability']:.6f}"]
                if i < len(preds)
                else ["", ""]
            )
        writer.writerow([*row, r.get("error", "")])
    return buf.getvalue()

"""Export a run's model as a SavedModel, ONNX or LiteRT artifact that gives the same answers.

Every export takes raw 0-255 pixels (N, 28, 28, 1) float32 and returns the 10 class
probabilities: the scaling is the model's own `Rescaling` layer, so no normalisation can
drift between training and the app. A model trained in mixed_bfloat16 is exported in
float32 (its weights are float32 already; only the compute dtype changes).

Before anything is written, the artifact is run on the test images and compared with the
float32 Keras model (see `parity.PARITY`); an export that fails is refused. The folder holds the
artifact and `card.json`, and appears only complete (written beside, then renamed).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from fashion_cnn.data import CLASS_NAMES, FILES, Dataset
from fashion_cnn.engines import (
    CARD_FILE,
    LITERT_FILE,
    ONNX_FILE,
    check_export_folder,
    export_dir,
    installed_version,
    model_sha256,
    open_artifact,
)
from fashion_cnn.errors import FashionCnnError
from fashion_cnn.io_utils import check_folder, make_folder, read_json, write_json
from fashion_cnn.parity import PARITY, check_parity
from fashion_cnn.quantize import LITERT_INT8, quantize_onnx

log = logging.getLogger(__name__)

FORMATS = ("savedmodel", "onnx", "litert")
QUANTIZE = (None, "int8")
SERVING_SIGNATURE = "serving_default"
INPUT_NAME = "pixels"
OUTPUT_NAME = "probabilities"
SAVEDMODEL_VERSION = "1"  # TensorFlow Serving loads numbered version folders
CALIBRATION_IMAGES = 1000  # training images used to set int8 ranges (never test images)


class ExportError(FashionCnnError):
    """An export could not be made, or it does not give the Keras model's answers."""


def engine_name(fmt: str, quantize: str | None) -> str:
    """The name of the export folder and engine, e.g. "onnx" or "litert-int8"."""
    return f"{fmt}-{quantize}" if quantize else fmt


def _signature():
    import tensorflow as tf

    return [tf.TensorSpec([None, 28, 28, 1], tf.float32, name=INPUT_NAME)]


def _write_savedmodel(model, folder: Path) -> Path:
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name=SERVING_SIGNATURE,
        fn=lambda pixels: {OUTPUT_NAME: model(pixels, training=False)},
        input_signature=_signature(),
    )
    path = folder / SAVEDMODEL_VERSION
    archive.write_out(str(path), verbose=False)
    return path


def _rename_onnx_io(path: Path) -> None:
    import onnx

    graph = onnx.load(str(path))
    old = graph.graph.output[0].name
    graph.graph.output[0].name = OUTPUT_NAME
    for node in graph.graph.node:
        node.output[:] = [OUTPUT_NAME if o == old else o for o in node.output]
    for value in (graph.graph.input[0], graph.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.checker.check_model(graph)
    onnx.save(graph, str(path))


def _write_onnx(
    model, folder: Path, quantize: str | None, calibration: np.ndarray
) -> tuple[Path, dict | None]:
    path = folder / ONNX_FILE
    target = folder / "float.onnx" if quantize else path
    with warnings.catch_warnings():  # Keras' tf2onnx shim probes `np.object`: not ours to act on
        warnings.filterwarnings("ignore", r"In the future `np\.object`", FutureWarning)
        model.export(str(target), format="onnx", verbose=False, input_signature=_signature())
    _rename_onnx_io(target)
    settings = None
    if quantize:
        settings = quantize_onnx(target, path, calibration, INPUT_NAME)
        target.unlink()
    return path, settings


def _write_litert(
    model, folder: Path, quantize: str | None, calibration: np.ndarray
) -> tuple[Path, dict | None]:
    path = folder / LITERT_FILE
    kwargs = {}
    if quantize:
        import tensorflow as tf

        def representative():
            for i in range(len(calibration)):
                yield [calibration[i : i + 1]]

        kwargs = {
            "optimizations": [tf.lite.Optimize.DEFAULT],
            "representative_dataset": representative,
        }
    model.export(str(path), format="litert", verbose=False, input_signature=_signature(), **kwargs)
    return path, (LITERT_INT8 if quantize else None)


def _open_savedmodel(path: Path):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    fn = loaded.signatures[SERVING_SIGNATURE]

    def call(x):
        return fn(**{INPUT_NAME: tf.constant(x, tf.float32)})[OUTPUT_NAME].numpy()

    return call


def _batched(engine, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
    parts = [engine(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    return np.concatenate(parts).astype(np.float32)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,  # the code's own commit, not user data
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _versions(fmt: str) -> dict:
    import keras
    import tensorflow as tf

    versions = {"keras": keras.__version__, "tensorflow": tf.__version__}
    for package in {"onnx": ("onnx", "onnxruntime", "tf2onnx"), "litert": ("ai-edge-litert",)}.get(
        fmt, ()
    ):
        versions[package] = installed_version(package)
    return versions


def model_card(
    run_dir: Path,
    fmt: str,
    quantize: str | None,
    artifact: str,
    parity: dict,
    quantization: dict | None = None,
    parameters: int | None = None,
) -> dict:
    """What the export is, how to call it and how well it does.

    Args:
        run_dir, fmt, quantize: the run and the export's format and quantization.
        artifact: the exported file, relative to the export folder.
        parity: `check_parity`'s figures on the test images.
        quantization: how an int8 export was quantized (`OnnxInt8.describe`, `LITERT_INT8`).
        parameters: the Keras model's weight count (`serve`'s model card reads it from
            here, so that it need not load Keras to count them).
    """
    from fashion_cnn.runs import final_metrics

    config_path = run_dir / "config.json"
    config = read_json(config_path) if config_path.exists() else {}
    metrics = final_metrics(run_dir)  # the exports are of the final model
    calibration_path = run_dir / "calibration.json"
    calibration = read_json(calibration_path) if calibration_path.exists() else {}
    return {
        "format": fmt,
        "quantize": quantize,
        "artifact": artifact,
        "run": str(run_dir),
        "model_sha256": model_sha256(run_dir),  # of model.keras: `engines.stale_export`
        "recipe": config.get("recipe"),
        "recipe_version": config.get("recipe_version"),
        "model": config.get("model"),
        "parameters": parameters,
        "trained_precision": config.get("precision"),
        "export_precision": "int8" if quantize else "float32",
        "quantization": quantization,
        "class_names": list(CLASS_NAMES),
        "input": {
            "name": INPUT_NAME,
            "shape": [None, 28, 28, 1],
            "dtype": "float32",
            "range": [0, 255],
            "meaning": "raw grey pixels, light garment on black, as in Fashion-MNIST "
            "(no scaling needed: the model scales by itself)",
        },
        "output": {
            "name": OUTPUT_NAME,
            "shape": [None, 10],
            "dtype": "float32",
            "meaning": "class probabilities (softmax), in class_names order",
        },
        "serving_signature": SERVING_SIGNATURE if fmt == "savedmodel" else None,
        "run_test_accuracy": metrics.get("test_accuracy"),
        "run_test_accuracy_tta": metrics.get("tta"),
        "temperature": calibration.get("temperature"),
        "unsure_threshold": calibration.get("threshold"),
        "parity": parity,
        "dataset_sha256": {spec.name.removesuffix(".gz"): spec.sha256 for spec in FILES.values()},
        "git_commit": _git_commit(),
        "versions": _versions(fmt),
    }


@contextlib.contextmanager
def _folder_locked(folder: Path) -> Iterator[None]:
    """Holds an exclusive `flock` on `folder` itself, not on a lock file, so nothing is left
    behind; it ends with its process. Without `fcntl` (Windows) or where the file system
    refuses it, it goes on unlocked."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as e:
            log.warning("Folder %s cannot be locked (%s): exporting without.", folder, e)
        yield
    finally:
        os.close(fd)  # releases the lock


def _install(staging: Path, out: Path, run: Path, overwrite: bool) -> None:
    """Puts the finished export `staging` where `out` is, the earlier export moved aside
    first, so that `out` is never half-written.

    Two exports into one folder at once (two terminals, a script) take turns on a lock of
    the folder above it: each installs whole, and the later one stays. Without
    `overwrite`, an export that another process installed meanwhile is kept and this one
    refused, as it would have been had it been there at the start.

    Raises:
        OutputError: `out` appeared meanwhile and `overwrite` is off.
    """
    with _folder_locked(out.parent):  # held for a few renames
        if out.exists():
            check_export_folder(out, run, overwrite)
            old = out.with_name(f".{out.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(out, old)
            os.replace(staging, out)
            shutil.rmtree(old)
        else:
            os.replace(staging, out)


def export_run(
    run_dir: str | os.PathLike,
    data: Dataset,
    fmt: str,
    out: str | os.PathLike | None = None,
    quantize: str | None = None,
    overwrite: bool = False,
) -> dict:
    """Exports a run's final model, checks it against the Keras model, writes the folder.

    Args:
        run_dir: a finished run folder.
        data: the dataset: the test images check parity, the first training images set the
            int8 ranges.
        fmt: "savedmodel", "onnx" or "litert".
        out: the export folder (default: `RUN/exports/FORMAT[-int8]`).
        quantize: None, or "int8" (onnx and litert only).
        overwrite: replace an earlier export in `out`.

    Returns:
        The model card (also written as `card.json`, with the parity figures), plus
        `export_dir`.

    Raises:
        ExportError: bad arguments, a failed conversion, or a failed parity check (then
            nothing is written).
        OutputError: `out` cannot be written, exists without `overwrite`, is the run
            folder or above it, or holds something other than an export.
    """
    from fashion_cnn.evaluate import predict_proba
    from fashion_cnn.models import float32_clone
    from fashion_cnn.runs import load_run_model

    if fmt not in FORMATS:
        raise ExportError(
            f"Invalid value for `format`: expected one of {list(FORMATS)}, received {fmt!r}"
        )
    if quantize not in QUANTIZE:
        raise ExportError(
            f"Invalid value for `quantize`: expected 'int8' or none, received {quantize!r}"
        )
    if quantize and fmt == "savedmodel":
        raise ExportError(
            "int8 quantization is available for --format onnx and litert, not savedmodel "
            "(TensorFlow Serving runs the float32 SavedModel)."
        )
    run = Path(run_dir)
    name = engine_name(fmt, quantize)
    out = check_folder(out or export_dir(run, name), "Export folder", "--out")
    check_export_folder(out, run, overwrite)

    model = float32_clone(load_run_model(run, precision="trained"))
    x_test = np.asarray(data.x_test, np.float32).reshape(-1, 28, 28, 1)
    calibration = np.asarray(data.x_train[:CALIBRATION_IMAGES], np.float32).reshape(-1, 28, 28, 1)
    reference = predict_proba(model, x_test)

    make_folder(out.parent, "Folder", "--out")
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        try:
            if fmt == "savedmodel":
                path, settings = _write_savedmodel(model, staging), None
                engine = _open_savedmodel(path)
            else:
                writer = _write_onnx if fmt == "onnx" else _write_litert
                path, settings = writer(model, staging, quantize, calibration)
                engine = open_artifact(path, name=name)
        except FashionCnnError:
            raise
        except Exception as e:  # noqa: BLE001 - converters raise anything; say which step
            raise ExportError(f"Converting the model of {run} to {name} failed: {e}") from None
        probs = _batched(engine, x_test)
        parity = check_parity(reference, probs, data.y_test, PARITY[quantize])
        if parity["failures"]:
            raise ExportError(
                f"The {name} export of {run} does not give the Keras model's answers on "
                f"{parity['n']} test images: "
                + "; ".join(parity["failures"])
                + ". Nothing was written."
            )
        artifact = path.relative_to(staging).as_posix()
        card = model_card(
            run,
            fmt,
            quantize,
            artifact,
            parity,
            quantization=settings,
            parameters=int(model.count_params()),
        )
        write_json(staging / CARD_FILE, card)
        staging.chmod(0o755)
        _install(staging, out, run, overwrite)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    log.info("exported %s to %s", name, out)
    return {**card, "export_dir": str(out)}

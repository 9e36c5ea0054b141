"""Inference engines: one interface over a Keras model, an ONNX Runtime session and a LiteRT
interpreter, so `predict`, `serve` and the benchmarks can run any export of a run.

Every engine is a callable: raw 0-255 pixels (N, 28, 28, 1) float32 in, probabilities
(N, 10) float32 out. Exports live in `RUN/exports/NAME/` (see `fashion_cnn.export`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import threading
from importlib import metadata
from pathlib import Path

import numpy as np

from fashion_cnn.errors import DamagedFileError, OutputError, RunError
from fashion_cnn.io_utils import read_json
from fashion_cnn.run_folder import EXPORTS_DIR, MODEL_FILE

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
LITERT_FILE = "model.tflite"
CARD_FILE = "card.json"
# Export folders an engine name stands for (float first), and the package each one needs.
ENGINES = {
    "keras": None,
    "onnx": "onnx",
    "onnx-int8": "onnx-int8",
    "litert": "litert",
    "litert-int8": "litert-int8",
}
RUNTIME_PACKAGE = {"onnx": "onnxruntime", "litert": "ai_edge_litert"}
# Order in which `default_engine` picks among the float engines a run has: fastest first, as
# measured by benchmarks/inference.py (see BENCHMARKS.md). int8 engines change answers
# slightly, so they are used only when asked for by name.
PREFERENCE = ("onnx", "litert", "keras")


def _family(name: str) -> str:
    return name.split("-")[0]


def export_dir(run_dir: str | Path, name: str) -> Path:
    """Where `fashion-cnn export` puts a run's export for engine `name` by default."""
    return Path(run_dir) / EXPORTS_DIR / name


def check_export_folder(out: str | Path, run_dir: str | Path, overwrite: bool) -> None:
    """Refuses an export folder that would replace anything but an earlier export.

    Args:
        out: the export folder asked for.
        run_dir: the run folder being exported.
        overwrite: whether an earlier export in `out` may be replaced.

    Raises:
        OutputError: `out` is the run folder or a folder above it; or it exists and
            `overwrite` is off; or it holds files but no export (no card.json), which
            `overwrite` would delete.
    """
    out, run = Path(out), Path(run_dir)
    if out.resolve() == run.resolve() or out.resolve() in run.resolve().parents:
        raise OutputError(
            f"Export folder {out} would replace the run folder {run}"
            + ("" if out.resolve() == run.resolve() else ", which is inside it")
            + f". To fix it: pass --out a folder outside the run, or leave it out for "
            f"{run / EXPORTS_DIR}/FORMAT."
        )
    if not out.exists():
        return
    if not overwrite:
        raise OutputError(f"Export folder {out} already exists. Pass --overwrite to replace it.")
    if not (out / CARD_FILE).is_file() and any(out.iterdir()):
        raise OutputError(
            f"Export folder {out} holds files but no export (no {CARD_FILE}), and --overwrite "
            "replaces only an earlier export. To fix it: pass --out a new or empty folder."
        )


def runtime_installed(name: str) -> bool:
    """Whether the Python package that runs engine `name` is importable."""
    package = RUNTIME_PACKAGE.get(_family(name))
    return package is None or importlib.util.find_spec(package) is not None


def installed_version(*packages: str) -> str | None:
    """The installed version of the first of `packages` found, without importing it (e.g.
    `installed_version("tensorflow", "tensorflow-cpu")`); None when none is installed."""
    for package in packages:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return None


def _artifact(folder: Path, name: str) -> Path:
    return folder / (ONNX_FILE if _family(name) == "onnx" else LITERT_FILE)


def model_sha256(run_dir: str | Path) -> str | None:
    """The SHA-256 of the run's final model file (None while it has none). An export's
    card records it, so that an export of an earlier model is never used for this one."""
    path = Path(run_dir) / MODEL_FILE
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_card(run_dir: str | Path, name: str) -> dict:
    """The `card.json` of the run's export `name`, or {} where it is missing or unreadable
    (what the card says is checked where it matters; the export is opened on its own)."""
    try:
        card = read_json(export_dir(run_dir, name) / CARD_FILE)
    except (OSError, DamagedFileError):
        return {}
    return card if isinstance(card, dict) else {}


def stale_export(run_dir: str | Path, name: str, current: str | None = None) -> bool:
    """Whether the run's export `name` was made from another model.keras than the run's
    (it was trained again since). Exports whose card records no model (made before
    `model_sha256`), and runs shipped with their exports but without model.keras, are not
    checked.

    Args:
        run_dir, name: the run and the export's engine name.
        current: the run's `model_sha256`, if already computed.
    """
    recorded = export_card(run_dir, name).get("model_sha256")
    if recorded and current is None:
        current = model_sha256(run_dir)
    return bool(recorded) and current is not None and recorded != current


def _export_command(run_dir: str | Path, name: str) -> str:
    """The command that makes the run's export `name`, e.g. `fashion-cnn export RUN
    --format onnx --quantize int8`."""
    fmt, _, quant = name.partition("-")
    flag = f" --quantize {quant}" if quant else ""
    return f"fashion-cnn export {run_dir} --format {fmt}{flag}"


def _stale_message(run_dir: str | Path, name: str) -> str:
    return (
        f"The {name} export of {run_dir} was made from an earlier model.keras: the run was "
        f"trained again since, and the export would answer for the old model. To fix it: "
        f"`{_export_command(run_dir, name)} --overwrite`."
    )


def available_engines(run_dir: str | Path) -> list[str]:
    """Engines this run can use now: keras, plus each export present whose runtime is
    installed and that was made from the run's model.keras (`stale_export`; skipped with
    a warning).
    """
    exports = [
        name
        for name in ENGINES
        if name != "keras"
        and runtime_installed(name)
        and _artifact(export_dir(run_dir, name), name).is_file()
    ]
    current = model_sha256(run_dir) if exports else None  # hashed once, and only if needed
    found = ["keras"]
    for name in exports:
        if stale_export(run_dir, name, current):
            log.warning("%s Until then it is not used.", _stale_message(run_dir, name))
        else:
            found.append(name)
    return found


def default_engine(run_dir: str | Path) -> str:
    """The fastest float engine available for the run (see `PREFERENCE`)."""
    available = available_engines(run_dir)
    return next(name for name in PREFERENCE if name in available)


class KerasEngine:
    """The Keras model called directly through a compiled `tf.function` (never `predict`)."""

    name = "keras"

    def __init__(self, model):
        from fashion_cnn.evaluate import forward_fn

        self.model = model
        self._call = forward_fn(model)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._call(np.asarray(x, dtype=np.float32))


class OnnxEngine:
    """An ONNX Runtime inference session on the CPU.

    Args:
        path: the `.onnx` file.
        threads: intra-op threads (0: ONNX Runtime's default, one per core).
    """

    def __init__(self, path: str | Path, threads: int = 0, name: str = "onnx"):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.name = name
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._input = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        return self.session.run(None, {self._input: x})[0]


class LiteRTEngine:
    """A LiteRT (TensorFlow Lite) interpreter, resized to each new batch size.

    The interpreter is not thread-safe, so calls are serialised with a lock.

    Args:
        path: the `.tflite` file.
        threads: interpreter threads (None: LiteRT's default).
    """

    def __init__(self, path: str | Path, threads: int | None = None, name: str = "litert"):
        from ai_edge_litert.interpreter import Interpreter

        self.name = name
        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self._in = self.interpreter.get_input_details()[0]["index"]
        self._out = self.interpreter.get_output_details()[0]["index"]
        self._batch = None
        self._lock = threading.Lock()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        with self._lock:
            if x.shape[0] != self._batch:
                self.interpreter.resize_tensor_input(self._in, list(x.shape))
                self.interpreter.allocate_tensors()
                self._batch = x.shape[0]
            self.interpreter.set_tensor(self._in, x)
            self.interpreter.invoke()
            return self.interpreter.get_tensor(self._out).copy()


def open_artifact(path: str | Path, threads: int | None = None, name: str | None = None):
    """An engine over one exported file (`.onnx` or `.tflite`).

    Raises:
        RunError: the file is missing, of an unknown kind, or its runtime is not installed.
        DamagedFileError: the runtime cannot load the file.
    """
    path = Path(path)
    family = {".onnx": "onnx", ".tflite": "litert"}.get(path.suffix)
    if family is None:
        raise RunError(f"Cannot open {path}: expected a .onnx or .tflite file.")
    if not path.is_file():
        raise RunError(f"Export {path} does not exist.")
    if not runtime_installed(family):
        raise RunError(
            f"Cannot run {path}: the Python package {RUNTIME_PACKAGE[family]!r} is not "
            f"installed. Install it with `pip install 'fashion-cnn[export]'`."
        )
    try:
        if family == "onnx":
            return OnnxEngine(path, threads=threads or 0, name=name or family)
        return LiteRTEngine(path, threads=threads, name=name or family)
    except Exception as e:  # noqa: BLE001 - the runtimes raise their own types for a bad file
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise DamagedFileError(
            f"{path} is damaged: {RUNTIME_PACKAGE[family]} cannot load it ({reason}). To fix "
            "it: export the run again with `fashion-cnn export` and --overwrite."
        ) from None


def load_engine(run_dir: str | Path, name: str | None = None, checkpoint: str = "final"):
    """The engine `name` for a run folder (default: `default_engine`).

    Args:
        run_dir: a finished run folder.
        name: one of `ENGINES`, or None for the fastest float engine the run has.
        checkpoint: the Keras checkpoint ("final" or "best"). Exports are of "final", so
            "best" takes the Keras engine when `name` is None.

    Raises:
        RunError: unknown engine, the run has no such export, its runtime is missing, or
            an export is asked for with checkpoint "best".
    """
    from fashion_cnn.runs import load_run_model

    if checkpoint != "final" and name not in (None, "keras"):
        raise RunError(
            f"The {name} export holds the final model, not the {checkpoint} checkpoint. To fix "
            f"it: pass --engine keras with --checkpoint {checkpoint}, or leave out --checkpoint."
        )
    named = name is not None
    name = name or ("keras" if checkpoint != "final" else default_engine(run_dir))
    if name not in ENGINES:
        raise RunError(
            f"Invalid value for `engine`: expected one of {list(ENGINES)}, received {name!r}"
        )
    if name == "keras":
        return KerasEngine(load_run_model(run_dir, checkpoint))
    folder = export_dir(run_dir, name)
    path = _artifact(folder, name)
    if not path.is_file():
        raise RunError(
            f"Run {run_dir} has no {name} export ({path} is missing). Create it with "
            f"`{_export_command(run_dir, name)}` (an export written elsewhere with --out is "
            "not looked for)."
        )
    if named and stale_export(run_dir, name):  # the default engine is never a stale one
        raise RunError(_stale_message(run_dir, name))
    # exports since 7-bit weights record how they were quantized
    if name == "onnx-int8" and not export_card(run_dir, name).get("quantization"):
        log.warning(
            "The onnx-int8 export of %s predates 7-bit weights: on CPUs without VNNI, ONNX "
            "Runtime can saturate its 8-bit weights and change answers its parity check did "
            "not see. Re-export it with `fashion-cnn export %s --format onnx --quantize int8 "
            "--overwrite`.",
            run_dir,
            run_dir,
        )
    return open_artifact(path, name=name)

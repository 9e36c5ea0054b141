"""The classifier behind the web app: the model loaded once, warm, called directly."""

from __future__ import annotations

import base64
import io
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fashion_cnn.calibrate import DEFAULT_THRESHOLD, apply_temperature
from fashion_cnn.data import CLASS_NAMES
from fashion_cnn.engines import installed_version
from fashion_cnn.errors import FashionCnnError
from fashion_cnn.images import MAX_PIXELS, ImageError, load_image
from fashion_cnn.io_utils import read_json
from fashion_cnn.predict import answer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """What one request may send."""

    max_file_bytes: int = 10 * 1024 * 1024
    max_request_bytes: int = 40 * 1024 * 1024
    max_files: int = 16
    max_pixels: int = MAX_PIXELS


def png_data_uri(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class ClassifierService:
    """Loads a run's model and calibration once; classifies image bytes.

    Args:
        run_dir: a finished run folder.
        checkpoint: "final" or "best".
        threshold: calibrated confidence below which the answer is "unsure".
        engine: "keras", "onnx", "litert" (or their "-int8" exports); default: the fastest
            float engine the run has (see `fashion_cnn.engines.default_engine`). Grad-CAM
            always runs on the Keras model; with an export engine that model (and
            TensorFlow) is loaded at the first request that asks for Grad-CAM.
    """

    def __init__(
        self,
        run_dir: str | Path,
        checkpoint: str = "final",
        threshold: float | None = None,
        engine: str | None = None,
    ):
        from fashion_cnn.engines import KerasEngine, export_card, load_engine
        from fashion_cnn.evaluate import forward_fn
        from fashion_cnn.runs import final_metrics, load_calibration

        self.run_dir = Path(run_dir)
        self.checkpoint = checkpoint
        self.engine = load_engine(self.run_dir, engine, checkpoint)
        # With an export engine the Keras model (and TensorFlow, ~0.6 GB and ~8 s) is loaded
        # only when Grad-CAM first asks for it: see `model`.
        self._model = self.engine.model if isinstance(self.engine, KerasEngine) else None
        self._model_lock = threading.Lock()
        self._loader: threading.Thread | None = None
        self._loader_lock = threading.Lock()  # not _model_lock: held for seconds by a load
        self.export_card = (
            {} if self._model is not None else export_card(self.run_dir, self.engine.name)
        )
        calibration = load_calibration(self.run_dir) or {}
        self.temperature = float(calibration.get("temperature", 1.0))
        self.threshold = float(
            threshold if threshold is not None else calibration.get("threshold", DEFAULT_THRESHOLD)
        )
        config_path = self.run_dir / "config.json"
        self.config = read_json(config_path) if config_path.exists() else {}
        self.metrics = final_metrics(self.run_dir) if checkpoint == "final" else {}
        self._call = forward_fn(self.engine)
        self._lock = threading.Lock()  # one model call at a time: 2 cores, no oversubscription
        self.warm_up()

    @property
    def model(self):
        """The run's Keras model, for Grad-CAM: the engine's own, or loaded on first use.

        Raises:
            RunError, DamagedFileError: the run's model file is missing or damaged.
        """
        if self._model is None:
            with self._model_lock:
                if self._model is None:
                    from fashion_cnn.runs import load_run_model

                    log.info("loading the Keras model of %s for Grad-CAM", self.run_dir)
                    self._model = load_run_model(self.run_dir, self.checkpoint)
        return self._model

    def load_model_in_background(self) -> None:
        """Starts loading the Keras model for Grad-CAM on a thread, if not loaded yet: the
        page asks for Grad-CAM with every photo, so opening it starts the load (~8 s with
        TensorFlow's import) that its first upload would otherwise wait for."""
        with self._loader_lock:
            if self._model is not None or self._loader is not None:
                return
            self._loader = threading.Thread(target=self._load_quietly, daemon=True)
            self._loader.start()

    def _load_quietly(self) -> None:
        try:
            _ = self.model
        except FashionCnnError as e:  # said again to each request that asks for Grad-CAM
            log.warning("Grad-CAM is not available: %s", e)

    def warm_up(self) -> None:
        for n in (1, 4):
            self.probabilities(np.zeros((n, 28, 28), np.uint8))

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for (N, 28, 28) uint8 model inputs."""
        x = np.asarray(images, dtype=np.float32).reshape(-1, 28, 28, 1)
        with self._lock:
            probs = self._call(x)
        return apply_temperature(probs, self.temperature) if self.temperature != 1.0 else probs

    def classify(self, data: bytes, name: str, k: int = 3, explain: bool = False) -> dict:
        """Classifies one uploaded file.

        Raises:
            ImageError: the bytes are not an acceptable image.
        """
        image = load_image(io.BytesIO(data), name=name)
        probs = self.probabilities(image[None])[0]
        best = int(probs.argmax())
        result = {
            "file": name,
            **answer(probs, self.threshold, k),
            "input_image": png_data_uri(Image.fromarray(image)),  # 28x28; the page scales it
        }
        if explain:
            from fashion_cnn.explain import grad_cam, overlay

            try:
                model = self.model  # loaded outside the lock: classifications go on meanwhile
            except FashionCnnError as e:  # the answer stands; only its explanation is missing
                result["gradcam_error"] = f"No Grad-CAM: {e}"
                return result
            with self._lock:
                cam = grad_cam(model, image[None], classes=np.array([best]))[0]
            result["gradcam_image"] = png_data_uri(overlay(image, cam, size=112))
        return result

    def card(self) -> dict:
        """The model card: what this model is and how well it did."""
        parameters = self.export_card.get("parameters")
        if parameters is None:  # the Keras engine, or an export made before cards counted them
            try:
                parameters = self.model.count_params()
            except FashionCnnError:
                parameters = None
        return {
            "run": self.run_dir.name,
            "recipe": self.config.get("recipe"),
            "model": self.config.get("model"),
            "parameters": None if parameters is None else int(parameters),
            "engine": self.engine.name,
            "test_accuracy": self.metrics.get("test_accuracy"),
            "tta": self.metrics.get("tta"),
            "class_names": list(CLASS_NAMES),
            "input": "an image file; converted to 28x28 grey, light item on black",
            "temperature": self.temperature,
            "unsure_threshold": self.threshold,
            # installed versions (not imported for an export engine); on Linux x86-64
            # pyproject.toml installs TensorFlow as the package tensorflow-cpu
            "keras_version": installed_version("keras"),
            "tensorflow_version": installed_version("tensorflow", "tensorflow-cpu"),
        }


__all__ = ["ClassifierService", "ImageError", "Limits", "png_data_uri"]

"""The `fashion-cnn` command: the only place that parses arguments, sets up logging and the
Keras backend. Each subcommand is a handler in `commands.py`, a thin call into the library.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from fashion_cnn import __version__, commands
from fashion_cnn.cluster import WAIT_MINUTES
from fashion_cnn.errors import FashionCnnError
from fashion_cnn.hardware import prefer_onednn
from fashion_cnn.tta import TTA_VIEWS

log = logging.getLogger("fashion_cnn")

#: Commands that train, for which `_setup` asks TensorFlow for its oneDNN kernels.
TRAINING_COMMANDS = frozenset({"train", "tune"})


class _StderrHandler(logging.StreamHandler):
    """Writes each record to the `sys.stderr` of the moment, not the one it was created
    with, so that `main` can be called again after stderr was replaced (tests, notebooks)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def _setup(verbose: bool = False, command: str | None = None) -> None:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if command in TRAINING_COMMANDS:
        # Before anything imports TensorFlow. Training only: on a CPU where this changes
        # anything, one image at a time (serve) was slower with oneDNN (BENCHMARKS.md).
        prefer_onednn(os.environ)
    if not log.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.DEBUG if verbose else logging.INFO)


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        help="folder with the four Fashion-MNIST .gz files (default: FASHION_MNIST_DIR, "
        "/usr/share/datasets/fashion-mnist, the Keras cache)",
    )
    p.add_argument(
        "--no-download",
        action="store_true",
        help="never download the dataset, even when it is found nowhere",
    )


def _add_engine_arg(p: argparse.ArgumentParser) -> None:
    from fashion_cnn.engines import ENGINES

    p.add_argument(
        "--engine",
        choices=list(ENGINES),
        help="inference engine; onnx/litert use the run's export from `fashion-cnn export` "
        "(default: the fastest float engine the run has)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fashion-cnn",
        description="Train, evaluate and use a Keras CNN for Fashion-MNIST clothing images.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"fashion-cnn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("data", help="find and verify the dataset, and say where it is")
    _add_data_args(p)
    p.set_defaults(func=commands.cmd_data)

    p = sub.add_parser("train", help="train a recipe into a run folder (resumes if interrupted)")
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--recipe",
        default="seed",
        help="shipped recipe: NAME (its current version) or NAME@VERSION, e.g. fast@1 "
        "(default: seed)",
    )
    src.add_argument("--config", help="your own recipe file (.toml or .json)")
    p.add_argument("--out", help="run folder (default: runs/RECIPE-seedSEED)")
    p.add_argument("--model", help="override the recipe's model")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--precision", help="float32 or mixed_bfloat16")
    p.add_argument("--train-subset", type=int, help="use only the first N training images")
    p.add_argument(
        "--budget-minutes",
        type=float,
        help="train only as many of the recipe's epochs as fit in this many minutes here "
        "(timed on a few steps first)",
    )
    p.add_argument("--overwrite", action="store_true", help="discard an existing run in --out")
    p.add_argument(
        "--strategy",
        choices=("none", "mirrored", "multiworker"),
        default="none",
        help="tf.distribute: mirrored (local devices) or multiworker (TF_CONFIG or --workers)",
    )
    p.add_argument(
        "--workers", metavar="HOST:PORT,...", help="all workers of a multiworker run, in order"
    )
    p.add_argument("--rank", type=int, help="this process's position in --workers")
    p.add_argument(
        "--wait-minutes",
        type=float,
        default=WAIT_MINUTES,
        help="how long a multiworker process waits for all workers to connect "
        f"(default: {WAIT_MINUTES:g})",
    )
    p.add_argument(
        "--verbosity",
        type=int,
        choices=(0, 1, 2),
        help="Keras output: 1 progress bar, 2 a line per epoch (default: 1 on a terminal)",
    )
    _add_data_args(p)
    p.set_defaults(func=commands.cmd_train)

    p = sub.add_parser("evaluate", help="test-set metrics, metrics.json and report.html")
    p.add_argument("run", help="run folder written by `fashion-cnn train`")
    p.add_argument("--checkpoint", choices=("final", "best"), default="final")
    p.add_argument(
        "--tta",
        nargs="?",
        const="flip",
        choices=list(TTA_VIEWS),
        default=None,
        help="test-time augmentation: flip (the mean of each image's and its mirror's "
        "prediction; `--tta` alone), flip-shift (18 views: also shifted by 1 pixel), none "
        "(default: the recipe's)",
    )
    p.add_argument("--no-tta", dest="tta", action="store_const", const="none", help="--tta none")
    _add_data_args(p)
    p.set_defaults(func=commands.cmd_evaluate)

    p = sub.add_parser("predict", help="classify image files, folders or stdin")
    p.add_argument("run", help="run folder written by `fashion-cnn train`")
    p.add_argument(
        "images", nargs="+", help="image files (any format Pillow reads), folders, or - for stdin"
    )
    p.add_argument("--top-k", type=int, default=3)
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print results as JSON")
    out.add_argument("--csv", action="store_true", help="print results as CSV")
    p.add_argument(
        "--threshold",
        type=float,
        help="calibrated confidence below which the answer is 'unsure' (default: the run's, 0.5)",
    )
    p.add_argument("--show-input", metavar="DIR", help="save the 28x28 image the model saw")
    p.add_argument("--explain", metavar="DIR", help="save a Grad-CAM overlay per prediction")
    p.add_argument("--checkpoint", choices=("final", "best"), default="final")
    _add_engine_arg(p)
    p.set_defaults(func=commands.cmd_predict)
    p = sub.add_parser(
        "robustness", help="accuracy on the test set rendered as product photos, per shift"
    )
    p.add_argument("run", help="run folder written by `fashion-cnn train`")
    p.add_argument("--limit", type=int, default=2000, help="test images per shift (max 10000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the rendering")
    _add_data_args(p)
    p.set_defaults(func=commands.cmd_robustness)

    p = sub.add_parser("serve", help="web page and HTTP API for a trained run")
    p.add_argument("run", help="run folder written by `fashion-cnn train`")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="server processes")
    _add_engine_arg(p)
    p.set_defaults(func=commands.cmd_serve)

    p = sub.add_parser("tune", help="hyperparameter search with KerasTuner (resumable)")
    p.add_argument("--space", default="default", help="search-space file, or a shipped one")
    p.add_argument("--tuner", default="bayesian", choices=("hyperband", "bayesian", "random"))
    p.add_argument("--max-trials", type=int, default=20)
    p.add_argument("--budget-minutes", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=0, help="seed of the search")
    p.add_argument("--out", default="runs/tune", help="search folder (default: runs/tune)")
    p.add_argument("--overwrite", action="store_true", help="discard a previous search in --out")
    role = p.add_mutually_exclusive_group()
    role.add_argument("--chief", metavar="HOST:PORT", help="serve the oracle for workers here")
    role.add_argument("--worker", metavar="HOST:PORT", help="run trials from the chief there")
    p.add_argument("--tuner-id", help="this worker's unique name (default: worker-HOST-PID)")
    _add_data_args(p)
    p.set_defaults(func=commands.cmd_tune)

    p = sub.add_parser(
        "export", help="SavedModel, ONNX or LiteRT export, checked against the Keras model"
    )
    p.add_argument("run", help="run folder written by `fashion-cnn train`")
    p.add_argument("--format", required=True, choices=("savedmodel", "onnx", "litert"))
    p.add_argument(
        "--quantize",
        choices=("int8",),
        help="int8 weights and activations (onnx, litert); ONNX keeps the first convolution "
        "in float and uses 7-bit weights, which give the same answers on CPUs with and "
        "without VNNI",
    )
    p.add_argument(
        "--out",
        help="export folder (default: RUN/exports/FORMAT[-int8], where `predict` and `serve` "
        "look for it)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing export folder")
    _add_data_args(p)
    p.set_defaults(func=commands.cmd_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI.

    Returns:
        The exit code: 0 ok, 1 some inputs failed, 2 error, 130 interrupted.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup(args.verbose, args.command)
    try:
        return args.func(args)
    except FashionCnnError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # one the library did not name: still a message, not a traceback
        logging.getLogger("fashion_cnn").debug("details", exc_info=True)
        print(f"error: {e}. (Run with -v for the details.)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

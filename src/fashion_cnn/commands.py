"""The `fashion-cnn` subcommands: each takes the parsed arguments of `cli.py`, checks what
argparse cannot, and makes one thin call into the library.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from fashion_cnn.config import check_seed
from fashion_cnn.errors import FashionCnnError
from fashion_cnn.io_utils import check_folder
from fashion_cnn.run_folder import ROBUSTNESS_FILES, evaluation_files, model_path

log = logging.getLogger("fashion_cnn")


def _load_data(args, train: bool = True):
    from fashion_cnn.data import load_data

    data = load_data(args.data_dir, download=not args.no_download, train=train)
    log.info("data: %s", data.source)
    return data


def cmd_data(args) -> int:
    from fashion_cnn.data import FILES, find_data, verify_dir

    path, how = find_data(args.data_dir, download=not args.no_download)
    arrays = verify_dir(path)
    print(f"Fashion-MNIST found in {path} ({how}); all files verified:")
    for key, spec in FILES.items():
        print(f"  {spec.name:28s} {len(arrays[key]):6d} items  sha256(idx)={spec.sha256[:16]}…")
    return 0


def _resolve_config(args):
    from fashion_cnn.config import load_config, load_recipe

    config = load_config(args.config) if args.config else load_recipe(args.recipe)
    return config.replace(
        model=args.model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        precision=args.precision,
        train_subset=args.train_subset,
    )


def _make_strategy(args):
    """The `tf.distribute` strategy of `--strategy` (None: the default, one process)."""
    from fashion_cnn.cluster import make_strategy

    return make_strategy(args.strategy, args.workers, args.rank, args.wait_minutes)


def cmd_train(args) -> int:
    # `train` is imported last, so that a bad budget, recipe, config file or value is
    # reported before TensorFlow loads (~10 s).
    budget = args.budget_minutes
    if budget is not None:
        from fashion_cnn.budget import check_minutes, fit_to_budget

        check_minutes(budget)
        if args.strategy != "none":
            raise FashionCnnError(
                "--budget-minutes times this machine alone; with --strategy, set --epochs instead"
            )
    config = _resolve_config(args)
    name = config.recipe if args.config else args.recipe  # fast@1 keeps its version
    out = check_folder(args.out or f"runs/{name}-seed{config.seed}", "Run folder", "--out")
    strategy = _make_strategy(args)  # before any other TensorFlow work, as TF requires
    data = _load_data(args)
    from fashion_cnn.train import for_this_machine, train

    if budget is not None:
        # Resolved once here, as `tune` does, so that neither the timing nor `train` probes
        # the hardware (and logs its choice) again.
        config = fit_to_budget(
            for_this_machine(config), data, budget, None if args.overwrite else out
        )
    log.info("training %s into %s", json.dumps(config.to_dict()), out)
    verbose = args.verbosity if args.verbosity is not None else (1 if sys.stdout.isatty() else 2)
    try:
        train(config, data, out, verbose=verbose, overwrite=args.overwrite, strategy=strategy)
    except KeyboardInterrupt:
        log.error("interrupted. Run the same command again to resume from the last finished epoch.")
        return 130
    print(f"trained: {out}  (next: fashion-cnn evaluate {out})")
    return 0


def _check_run_writable(run: str, command: str, files: str) -> None:
    """Refuses a run folder that `command` could not write `files` into, before its work."""
    fix = (
        f"`{command}` writes {files} into it. To fix it: copy the run folder somewhere you "
        f"can write to (e.g. `cp -r {run} my-run`), and pass the copy."
    )
    check_folder(run, "Run folder", "", fix=fix)


def cmd_evaluate(args) -> int:
    model_path(args.run, args.checkpoint)  # a mistyped folder is reported before TF loads
    _check_run_writable(args.run, "evaluate", " and ".join(evaluation_files(args.checkpoint)))
    from fashion_cnn.runs import evaluate_run

    data = _load_data(args, train=False)  # the test set is all it uses
    metrics = evaluate_run(args.run, data, checkpoint=args.checkpoint, tta=args.tta)
    names = metrics["class_names"]
    tta = f" ({metrics['tta']} TTA)" if metrics["tta"] != "none" else ""
    print(
        f"test accuracy {metrics['test_accuracy']:.4f}  test loss {metrics['test_loss']:.4f}{tta}"
    )
    for t, p, c in metrics["most_confused"][:3]:
        print(f"  {names[t]} predicted as {names[p]}: {c}")
    print(f"report: {Path(args.run) / evaluation_files(args.checkpoint)[1]}")
    return 0


def cmd_predict(args) -> int:
    if not 1 <= args.top_k <= 10:
        raise FashionCnnError(
            f"Invalid value for `--top-k`: expected an integer in [1, 10], received {args.top_k}"
        )
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        raise FashionCnnError(
            "Invalid value for `--threshold`: expected a float in [0, 1], "
            f"received {args.threshold}"
        )
    if args.images.count("-") > 1:
        raise FashionCnnError("`-` (standard input) can be given once: it holds one image.")
    if "-" in args.images and sys.stdin.isatty():
        raise FashionCnnError(
            "`-` reads an image from standard input, which is a terminal here. To fix it: "
            f"pipe one in (`fashion-cnn predict {args.run} - < photo.jpg`), or pass its path."
        )
    model_path(args.run, args.checkpoint, must_exist=False)  # before TensorFlow loads
    for folder, flag in ((args.show_input, "--show-input"), (args.explain, "--explain")):
        if folder:
            check_folder(folder, "Folder", flag)
    from fashion_cnn.engines import KerasEngine, load_engine
    from fashion_cnn.predict import predict_inputs, to_csv
    from fashion_cnn.runs import load_calibration, load_run_model

    engine = load_engine(args.run, args.engine, args.checkpoint)
    explain_model = None  # Grad-CAM runs on the Keras model, whatever the engine
    if args.explain:
        explain_model = (
            engine.model
            if isinstance(engine, KerasEngine)
            else load_run_model(args.run, args.checkpoint)
        )
    log.debug("engine: %s", engine.name)
    calibration = load_calibration(args.run) or {}
    threshold = args.threshold if args.threshold is not None else calibration.get("threshold", 0.5)
    results = predict_inputs(
        engine,
        args.images,
        k=args.top_k,
        temperature=calibration.get("temperature", 1.0),
        threshold=threshold,
        show_input=args.show_input,
        explain=args.explain,
        progress=sys.stderr.isatty() and len(args.images) > 1,
        explain_model=explain_model,
    )
    failed = [r for r in results if "error" in r]
    if args.json:
        print(json.dumps(results, indent=2))
    elif args.csv:
        sys.stdout.write(to_csv(results, args.top_k))
    else:
        for r in results:
            if "error" in r:
                continue
            best = ", ".join(f"{p['label']} {p['probability']:.1%}" for p in r["predictions"])
            print(f"{r['file']}: {r['label']}  ({best})")
    for r in failed:
        print(f"error: {r['error']}", file=sys.stderr)
    return 1 if failed else 0


def cmd_robustness(args) -> int:
    if args.limit < 1:
        raise FashionCnnError(
            f"Invalid value for `--limit`: expected an integer >= 1, received {args.limit}"
        )
    check_seed(args.seed, "--seed")
    model_path(args.run)  # before TensorFlow loads
    _check_run_writable(args.run, "robustness", " and ".join(ROBUSTNESS_FILES))
    from fashion_cnn.runs import robustness_run

    data = _load_data(args, train=False)  # the test set is all it uses
    result = robustness_run(args.run, data, limit=args.limit, seed=args.seed)
    print(f"clean accuracy {result['clean_accuracy']:.4f} on {result['n']} test images")
    for name, r in result["shifts"].items():
        print(f"  {name:24s} {r['accuracy']:.4f}  ({r['relative']:.0%} of clean)")
    print(f"mean under shift {result['mean_shifted_accuracy']:.4f} ({result['mean_relative']:.0%})")
    print(f"report: {Path(args.run) / ROBUSTNESS_FILES[1]}")
    return 0


def _check_listen(host: str, port: int) -> None:
    """Raises FashionCnnError unless a server can listen on `host`:`port` now (checked
    before the model loads; uvicorn still reports a port taken in between)."""
    if not 1 <= port <= 65535:
        raise FashionCnnError(
            f"Invalid value for `--port`: expected an integer in [1, 65535], received {port}"
        )
    import socket

    fix = "To fix it: pass another --port (or --host), or stop the program that uses it."
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            s.bind(address)
    except OSError as e:
        raise FashionCnnError(f"Cannot listen on {host}:{port}: {e.strerror or e}. {fix}") from None


def cmd_serve(args) -> int:
    if args.workers < 1:
        raise FashionCnnError(
            f"Invalid value for `--workers`: expected an integer >= 1, received {args.workers}"
        )
    model_path(args.run, must_exist=False)  # before TensorFlow loads; an export may serve
    _check_listen(args.host, args.port)
    import uvicorn

    from fashion_cnn.engines import default_engine
    from fashion_cnn.serve.service import ClassifierService

    # Loaded here, so that a damaged run fails with a clear message, not inside the server.
    service = ClassifierService(args.run, engine=args.engine or default_engine(args.run))
    engine = service.engine.name
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s: reachable from other machines", args.host)
    print(
        f"serving {args.run} ({engine} engine) on http://{args.host}:{args.port}/  "
        "(API docs at /docs)"
    )
    if args.workers == 1:
        from fashion_cnn.serve.app import create_app

        app = create_app(args.run, service=service)
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    else:
        del service  # each worker process loads its own
        os.environ["FASHION_CNN_RUN"] = str(Path(args.run).resolve())
        os.environ["FASHION_CNN_ENGINE"] = engine
        uvicorn.run(
            "fashion_cnn.serve.app:app_from_env",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level="warning",
        )
    return 0


def cmd_export(args) -> int:
    model_path(args.run)  # before TensorFlow loads
    if args.out:
        check_folder(args.out, "Export folder", "--out")
        from fashion_cnn.engines import check_export_folder

        check_export_folder(args.out, args.run, args.overwrite)
    from fashion_cnn.export import export_run

    data = _load_data(args)
    card = export_run(
        args.run,
        data,
        args.format,
        out=args.out,
        quantize=args.quantize,
        overwrite=args.overwrite,
    )
    p = card["parity"]
    print(
        f"parity on {p['n']} test images: max |dp| {p['max_abs_diff']:.1e}, same class "
        f"{p['agreement']:.2%}, accuracy {p['export_accuracy']:.2%} "
        f"(Keras float32 {p['keras_accuracy']:.2%})"
    )
    print(f"exported: {card['export_dir']}")
    return 0


def cmd_tune(args) -> int:
    import socket

    from fashion_cnn.tune_space import load_space
    from fashion_cnn.tuning import TuneOptions, search

    space = load_space(_space_path(args.space))
    check_folder(args.out, "Search folder", "--out")
    options = TuneOptions(
        tuner=args.tuner,
        max_trials=args.max_trials,
        budget_minutes=args.budget_minutes,
        seed=args.seed,
        overwrite=args.overwrite,
    ).validate()
    role = "local"
    if args.chief or args.worker:
        from fashion_cnn.cluster import answers, host_port

        host, port = host_port(args.chief or args.worker, "--chief" if args.chief else "--worker")
        role = "chief" if args.chief else "worker"
        tuner_id = (
            "chief"
            if args.chief
            else (args.tuner_id or f"worker-{socket.gethostname()}-{os.getpid()}")
        )
        # KerasTuner's distributed mode is configured by these variables.
        os.environ.update(
            KERASTUNER_TUNER_ID=tuner_id,
            KERASTUNER_ORACLE_IP=host,
            KERASTUNER_ORACLE_PORT=port,
        )
        log.info("distributed search: %s %s, oracle at %s:%s", role, tuner_id, host, port)
        if role == "worker" and not answers(host, int(port)):
            log.warning(
                "the search's chief at %s:%s does not answer yet; waiting for it (KerasTuner "
                "waits up to 60 minutes; Ctrl-C stops). Start it with `fashion-cnn tune "
                "--chief %s:%s` and the same --space.",
                host,
                port,
                host,
                port,
            )
    data = None if role == "chief" else _load_data(args)
    try:
        summary = search(space, data, args.out, options)
    except KeyboardInterrupt:
        log.error("interrupted. Run the same command again to continue the search.")
        return 130
    if role == "worker":
        print(f"worker {summary['tuner_id']} done")
        return 0
    best = summary["best"]
    print(f"{summary['completed']} trials completed in {args.out}")
    if best:
        print(
            f"best: trial {best['trial']}, validation accuracy {best['val_accuracy']:.4f}, "
            f"{best['values']}"
        )
        print(f"recipe: {best['recipe_file']}  (fashion-cnn train --config {best['recipe_file']})")
    print(f"report: {Path(args.out) / 'tune_report.html'}")
    return 0


def _space_path(space: str) -> Path:
    """A search-space file, or the name of one shipped with the package."""
    from importlib import resources

    path = Path(space)
    if path.exists() or path.suffix:
        return path
    shipped = resources.files("fashion_cnn") / "spaces" / f"{space}.toml"
    if not shipped.is_file():
        raise FashionCnnError(
            f"Invalid value for `--space`: {space!r} is neither a file nor a shipped space "
            "(shipped: default)"
        )
    return Path(str(shipped))

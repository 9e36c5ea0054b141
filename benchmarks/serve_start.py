"""How long `fashion-cnn serve` takes to answer, and its memory, per engine.

    python benchmarks/serve_start.py RUN [--engines onnx keras] [--repeats 3] [--pause 3]

For each engine and repeat, two fresh server processes (`python -m fashion_cnn serve RUN
--engine E --port P`, the engines alternating):
  1. the API alone: seconds from the process start until `/api/health` answers, the
     resident memory after one plain prediction, the seconds of the first prediction with
     Grad-CAM (`?explain=true`) and the memory after it;
  2. the page: `GET /`, then, `--pause` seconds later (a user picking a file), the two
     requests the page sends for a photo: the answer, then its Grad-CAM: their seconds.
The table gives medians. RUN needs the exports of the engines named
(`fashion-cnn export RUN --format onnx`).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

import numpy as np
from PIL import Image

from load import MULTIPART_TYPE, multipart_payload, rss_kib  # benchmarks/load.py


def _photo_body() -> bytes:
    pixels = np.zeros((28, 28), np.uint8)
    pixels[4:24, 8:20] = 200
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return multipart_payload(buf.getvalue())


class Server:
    """One `fashion-cnn serve` process on a free port."""

    def __init__(self, run: str, engine: str):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fashion_cnn", "serve", run, "--engine", engine,
             "--port", str(port)],
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def wait_ready(self, timeout: float = 120) -> float:
        """Seconds from the process start until /api/health answers."""
        while time.perf_counter() - self.started < timeout:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited with {self.process.returncode}")
            try:
                urllib.request.urlopen(self.base + "/api/health", timeout=1).read()
                return time.perf_counter() - self.started
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"the server did not answer within {timeout} s")

    def rss_mb(self) -> float:
        return rss_kib(self.process.pid) / 1024

    def predict(self, body: bytes, explain: bool) -> tuple[float, dict]:
        request = urllib.request.Request(
            self.base + "/api/predict" + ("?explain=true" if explain else ""),
            data=body,
            headers={"Content-Type": MULTIPART_TYPE},
        )
        start = time.perf_counter()
        with urllib.request.urlopen(request, timeout=120) as response:
            result = json.load(response)["results"][0]
        return time.perf_counter() - start, result

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


def measure(run: str, engine: str, pause: float, body: bytes) -> dict:
    server = Server(run, engine)
    try:
        ready = server.wait_ready()
        server.predict(body, explain=False)
        rss = server.rss_mb()
        explain_s, result = server.predict(body, explain=True)
        if "gradcam_image" not in result:
            raise SystemExit(f"no Grad-CAM from the {engine} server: {result}")
        rss_explained = server.rss_mb()
    finally:
        server.stop()
    server = Server(run, engine)
    try:
        server.wait_ready()
        urllib.request.urlopen(server.base + "/").read()
        time.sleep(pause)
        answer_s, _ = server.predict(body, explain=False)
        page_s, _ = server.predict(body, explain=True)
    finally:
        server.stop()
    return {
        "ready": ready,
        "rss": rss,
        "explain": explain_s,
        "rss_explained": rss_explained,
        "answer": answer_s,
        "page": page_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--engines", nargs="+", default=["onnx", "keras"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pause", type=float, default=3.0, help="seconds between / and upload")
    args = parser.parse_args()
    body = _photo_body()
    rows = {engine: [] for engine in args.engines}
    for _ in range(args.repeats):
        for engine in args.engines:
            rows[engine].append(measure(args.run, engine, args.pause, body))
    print(
        f"| engine | ready (s) | RSS, API only (MB) | first Grad-CAM (s) | RSS after (MB) "
        f"| page, {args.pause:.0f} s after opening it: answer (s) | then Grad-CAM (s) |"
    )
    print("|---|---|---|---|---|---|---|")
    for engine, results in rows.items():
        med = {k: statistics.median(r[k] for r in results) for k in results[0]}
        print(
            f"| {engine} | {med['ready']:.2f} | {med['rss']:.0f} | {med['explain']:.2f} "
            f"| {med['rss_explained']:.0f} | {med['answer']:.3f} | {med['page']:.2f} |"
        )
    print(f"medians of {args.repeats} servers per engine and column")


if __name__ == "__main__":
    main()

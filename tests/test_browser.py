"""End to end in a real headless Chromium: `fashion-cnn serve` in its own process, a file
uploaded through the page, the predicted class shown. Needs Debian's `chromium` and the
`playwright` package (`make test` installs both); skipped without them, failed under CI."""

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from fashion_cnn.config import TrainConfig
from fashion_cnn.train import train

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _need_browser():
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = "the playwright package"
    else:
        missing = None if shutil.which(CHROMIUM) else CHROMIUM
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing} is missing under CI: `make test` should install it")
        pytest.skip(f"{missing} not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(run, tmp_path):
    """Starts `fashion-cnn serve RUN` in its own process; yields (url, tmp_path)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fashion_cnn", "serve", str(run), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(url + "/api/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"server did not start: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.3)
    yield url, tmp_path
    proc.terminate()
    proc.wait(timeout=20)


def _train(tmp_path, data):
    config = TrainConfig(
        recipe="t", epochs=1, batch_size=64, scale=1 / 255, optimizer="adam", learning_rate=1e-3
    )
    return train(config, data, tmp_path / "run", verbose=0)


@pytest.fixture
def server(tmp_path, synthetic_data):
    _need_browser()
    yield from _serve(_train(tmp_path, synthetic_data), tmp_path)


@pytest.fixture
def onnx_only_server(tmp_path, synthetic_data):
    """A run served through its ONNX export, without its model.keras: no Grad-CAM."""
    _need_browser()
    from fashion_cnn.export import export_run

    run = _train(tmp_path, synthetic_data)
    export_run(run, synthetic_data, "onnx")
    (run / "model.keras").unlink()
    yield from _serve(run, tmp_path)


def _item_png(folder) -> str:
    arr = np.zeros((28, 28), np.uint8)
    arr[2:26, 8:20] = 210
    Image.fromarray(arr).save(folder / "item.png")
    return str(folder / "item.png")


def test_upload_shows_the_predicted_class(server):
    from playwright.sync_api import sync_playwright

    url, tmp = server
    _item_png(tmp)
    import json

    req = urllib.request.Request(url + "/api/predict")
    boundary = "xxBOUNDARYxx"
    body = io.BytesIO()
    body.write(
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
        f'filename="item.png"\r\nContent-Type: image/png\r\n\r\n'.encode()
    )
    body.write((tmp / "item.png").read_bytes())
    body.write(f"\r\n--{boundary}--\r\n".encode())
    req.add_header("Content-Type", f"multipart/form-data; boundary={boundary}")
    with urllib.request.urlopen(req, data=body.getvalue()) as r:
        expected = json.load(r)["results"][0]["label"]

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page()
            page.goto(url)
            page.wait_for_function(
                "document.getElementById('card').textContent.includes('weights')"
            )
            page.set_input_files("#file", str(tmp / "item.png"))
            page.wait_for_selector("#result:not([hidden])", timeout=30_000)
            shown = page.get_attribute("#answer", "data-label")
            assert shown == expected
            text = page.inner_text("#answer")
            assert text == ("Unsure" if expected == "unsure" else expected)
            assert page.locator("#bars li").count() == 3
            seen = page.get_attribute("#seen", "src")
            assert seen.startswith("data:image/png")
            page.wait_for_selector("#cam[data-state=done]", timeout=30_000)  # after the answer
            cam = page.get_attribute("#cam", "src")
            assert cam.startswith("data:image/png") and cam != seen
            assert page.get_attribute("#cam", "title") == ""
            page.screenshot(path=str(tmp / "page.png"))
        finally:
            browser.close()


def test_without_grad_cam_the_answer_shows_and_the_page_says_why(onnx_only_server):
    from playwright.sync_api import sync_playwright

    url, tmp = onnx_only_server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page()
            page.goto(url)
            page.set_input_files("#file", _item_png(tmp))
            page.wait_for_selector("#result:not([hidden])", timeout=30_000)
            assert page.get_attribute("#answer", "data-label")
            page.wait_for_selector("#cam[data-state=unavailable]", timeout=30_000)
            assert page.get_attribute("#cam", "src") == page.get_attribute("#seen", "src")
            assert page.get_attribute("#cam", "title").startswith("No Grad-CAM: ")
            assert page.is_hidden("#error")
        finally:
            browser.close()

"""Bounded load test of `fashion-cnn serve` on loopback.

    python benchmarks/load.py RUN [--clients 32] [--requests 5000] [--workers 1] [--engine E]
                                  [--rate R] [--photo FILE]

Starts the server in its own process on a free 127.0.0.1 port, sends `--requests` POSTs of
one 28x28 PNG (or `--photo FILE`, e.g. a product photo) from `--clients` concurrent
keep-alive connections (a minimal asyncio HTTP client in this process, so the load
generator takes little of the shared CPU),
checks every answer, and reports requests/s, p50/p99 latency, errors and the server's RSS
before and after. Stops by itself; sends traffic to 127.0.0.1 only.

Two ways to load the server:

- closed loop (default): each client sends its next request as soon as it has an answer,
  so the server always has `--clients` requests in hand; this measures the most it can
  serve, and the latency then is mostly queueing (Little's law: 32 in flight at N
  requests/s wait 32/N s each).
- open loop (`--rate R`): requests are due at a constant R per second, sent on the first
  free one of the `--clients` connections, and each latency is counted from the time the
  request was due (no coordinated omission: a slow answer delays the requests queued
  behind it, and they are charged for it). This measures the latency users see at that
  traffic.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import time


def rss_kib(pid: int) -> int:
    """Resident memory of a process and its children (uvicorn workers), KiB."""
    total = 0
    pids = [pid]
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        pids += [int(p) for p in out.split()]
    except FileNotFoundError:
        pass
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


BOUNDARY = b"fashioncnnloadtest"
#: The Content-Type header of a `multipart_payload`.
MULTIPART_TYPE = f"multipart/form-data; boundary={BOUNDARY.decode()}"


def multipart_payload(body: bytes) -> bytes:
    """The form `/api/predict` takes: `body` as the file `x.png` in the field `files`."""
    return (
        b"--" + BOUNDARY + b"\r\n"
        b'Content-Disposition: form-data; name="files"; filename="x.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + body + b"\r\n--" + BOUNDARY + b"--\r\n"
    )


def multipart_request(port: int, body: bytes) -> bytes:
    """One complete HTTP/1.1 keep-alive POST of `body` as the file `x.png`."""
    payload = multipart_payload(body)
    head = (
        f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: {MULTIPART_TYPE}\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: keep-alive\r\n\r\n"
    ).encode()
    return head + payload


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = next(
        int(line.split(b":", 1)[1]) for line in lines if line.lower().startswith(b"content-length")
    )
    return status, await reader.readexactly(length)


class Tally:
    """Latencies, errors and the labels seen, over one load run."""

    def __init__(self):
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.labels: set[str] = set()

    async def exchange(self, port: int, conn, request: bytes, since: float):
        """Sends `request` on `conn` (reader, writer), checks the answer and records the
        latency from `since`; returns the connection to use next (a new one after an
        error)."""
        reader, writer = conn
        try:
            writer.write(request)
            status, body = await read_response(reader)
            self.latencies.append(time.perf_counter() - since)
            if status != 200:
                self.errors.append(f"HTTP {status}")
            else:
                self.labels.add(json.loads(body)["results"][0]["label"])
            return conn
        except (OSError, asyncio.IncompleteReadError, ValueError, KeyError) as e:
            self.errors.append(type(e).__name__)
            writer.close()
            return await asyncio.open_connection("127.0.0.1", port)


async def hammer(port: int, request: bytes, clients: int, n: int, deadline_s: float):
    """Closed loop: `clients` keep-alive connections send `request` until `n` are answered.

    A minimal HTTP client on asyncio streams, so that the load generator, which shares the
    machine's cores with the server, spends as little CPU as it can; every answer is still
    parsed and checked.
    """
    tally = Tally()
    counter = iter(range(n))
    stop = time.monotonic() + deadline_s

    async def worker():
        conn = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in counter:
                if time.monotonic() > stop:
                    return
                conn = await tally.exchange(port, conn, request, time.perf_counter())
        finally:
            conn[1].close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return tally, time.perf_counter() - t0


async def paced(port: int, request: bytes, clients: int, n: int, rate: float, deadline_s: float):
    """Open loop: request i is due at t0 + i / rate and goes out on the first free
    connection of `clients`; its latency runs from when it was due to its answer."""
    tally = Tally()
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(clients):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))

    async def one(due: float):
        conn = await pool.get()
        pool.put_nowait(await tally.exchange(port, conn, request, due))

    tasks = []
    t0 = time.perf_counter()
    for i in range(n):
        due = t0 + i / rate
        if due - t0 > deadline_s:
            break
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    while not pool.empty():
        pool.get_nowait()[1].close()
    return tally, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--engine", help="serve's --engine (default: serve's default)")
    parser.add_argument("--max-seconds", type=float, default=300)
    parser.add_argument(
        "--rate", type=float, help="open loop: requests per second (default: closed loop)"
    )
    parser.add_argument("--photo", help="send this image file (default: a 28x28 PNG)")
    args = parser.parse_args()

    import numpy as np
    from PIL import Image

    arr = np.zeros((28, 28), np.uint8)
    arr[2:26, 8:20] = 200
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    body = buf.getvalue()
    if args.photo:
        with open(args.photo, "rb") as f:
            body = f.read()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fashion_cnn",
            "serve",
            args.run,
            "--port",
            str(port),
            "--workers",
            str(args.workers),
            *(["--engine", args.engine] if args.engine else []),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import httpx

        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("server did not start")
            time.sleep(0.5)
        request = multipart_request(port, body)
        try:
            import uvloop  # the fastest event loop for the client too, when installed

            run = uvloop.run
        except ImportError:
            run = asyncio.run
        run(hammer(port, request, 4, 200, 60))  # warm-up
        rss0 = rss_kib(server.pid)
        if args.rate:
            load = paced(port, request, args.clients, args.requests, args.rate, args.max_seconds)
        else:
            load = hammer(port, request, args.clients, args.requests, args.max_seconds)
        tally, wall = run(load)
        lat, errors, labels = tally.latencies, tally.errors, tally.labels
        rss1 = rss_kib(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)

    ms = sorted(1000 * v for v in lat)
    p99 = ms[int(0.99 * (len(ms) - 1))]
    growth = 100 * (rss1 - rss0) / rss0
    print(
        f"{len(lat)} requests, {args.clients} clients, {args.workers} worker(s), "
        f"{f'open loop at {args.rate:g}/s' if args.rate else 'closed loop'}, "
        f"engine {args.engine or 'default'}, {len(body):,} bytes a request: "
        f"{len(lat) / wall:.0f} requests/s, p50 {statistics.median(ms):.1f} ms, "
        f"p99 {p99:.1f} ms, errors {len(errors)}, labels {sorted(labels)}, "
        f"server RSS {rss0 / 1024:.0f} -> {rss1 / 1024:.0f} MiB ({growth:+.1f}%)"
    )


if __name__ == "__main__":
    main()

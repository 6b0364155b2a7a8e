"""Load on `digitcmp serve`: a bounded number of comparisons from several concurrent clients, against a server
this script starts on 127.0.0.1, with throughput, latency percentiles and errors.

Each request posts two 28×28 PNG digits (real MNIST digits from the bundled sample) to /api/compare, the way a
program would call the API. The server runs in its own process (uvicorn, one worker), so the figures are the
server's, not this client's.

    python benchmarks/serve_load.py                       # 8 clients, 2,000 comparisons
    python benchmarks/serve_load.py --clients 16 --requests 5000 --json
"""

from __future__ import annotations

import argparse
import io
import json
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image


def sample_digits(count: int) -> list[bytes]:
    """Real MNIST digits from the package's bundled sample, as PNG files in memory."""
    import importlib.resources

    with np.load(importlib.resources.files("digitcmp.assets") / "mnist_sample.npz") as sample:
        images = sample["images"][:: max(1, len(sample["images"]) // count)][:count]
    encoded = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    return encoded


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, model: Path | None) -> subprocess.Popen:
    command = [sys.executable, "-m", "digitcmp", "serve", "--port", str(port)]
    command += ["--model", str(model)] if model else []
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    sys.exit(f"error: the server did not start: {server.stderr.read().decode()[-500:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--requests", type=int, default=2000, help="comparisons in all")
    parser.add_argument("--model", type=Path, default=None, help="ONNX model (default: the shipped one)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    digits = sample_digits(64)
    port = free_port()
    server = start_server(port, args.model)
    url = f"http://127.0.0.1:{port}/api/compare"
    errors: list[str] = []

    def compare(index: int, client: httpx.Client) -> float:
        files = {"first": ("a.png", digits[index % 64], "image/png"),
                 "second": ("b.png", digits[(index * 7 + 3) % 64], "image/png")}  # fmt: skip
        started = time.perf_counter()
        response = client.post(url, files=files)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            errors.append(f"{response.status_code}: {response.text[:100]}")
        return elapsed

    def worker(start: int) -> list[float]:
        with httpx.Client(timeout=30) as client:
            compare(start, client)  # a warm connection before the clock
            return [compare(i, client) for i in range(start, args.requests, args.clients)]

    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            latencies = [t for batch in pool.map(worker, range(args.clients)) for t in batch]
        wall = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=30)
    latencies.sort()
    figures = {
        "clients": args.clients,
        "requests": len(latencies),
        "seconds": round(wall, 2),
        "comparisons_per_second": round(len(latencies) / wall, 1),
        "latency_ms_p50": round(1000 * statistics.median(latencies), 1),
        "latency_ms_p95": round(1000 * latencies[int(0.95 * (len(latencies) - 1))], 1),
        "errors": len(errors),
        "first_errors": errors[:3],
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"{figures['requests']} comparisons from {args.clients} clients in {figures['seconds']} s: "
          f"{figures['comparisons_per_second']} per second, p50 {figures['latency_ms_p50']} ms, "
          f"p95 {figures['latency_ms_p95']} ms, {figures['errors']} errors")  # fmt: skip


if __name__ == "__main__":
    main()

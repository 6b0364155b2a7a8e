"""Load on `digitcmp serve`: comparisons from several concurrent clients against a server this script starts on
127.0.0.1, with throughput, latency percentiles and errors, beside the in-process limit of the same work.

Each request posts two 28×28 PNG digits (real MNIST digits from the bundled sample) to /api/compare, the way a
program would call the API. The server runs in its own processes (uvicorn; `--workers`), so the figures are the
server's; the clients are plain keep-alive HTTP connections with the request bodies built beforehand, so that
they take as little as they can of the cores they share with the server.

The in-process limit: the same pairs through predict's own functions, no HTTP: the pictures prepared in a pool of
processes as wide as the machine has cores (as the server prepares them), the model called on batches of 32 in
this process. The server's share is its throughput over that limit.

Soak (`--soak`): the server's resident memory (all its processes) after the first tenth of the requests and at the
end, and the median latency of the second tenth against the last tenth.

    python benchmarks/serve_load.py                          # 8 clients, 2,000 comparisons, 1 worker
    python benchmarks/serve_load.py --workers 2 --json
    python benchmarks/serve_load.py --requests 20000 --soak  # 20,000 comparisons: memory and latency over the run
"""

from __future__ import annotations

import argparse
import http.client
import importlib.resources
import io
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from digitcmp.environment import machine
from digitcmp.predict import load_model, run_batch
from digitcmp.serve import FIELDS, prepare_images

IN_PROCESS_BATCH = 32


def sample_digits(count: int) -> list[bytes]:
    """Real MNIST digits from the package's bundled sample, as PNG files in memory."""
    with np.load(importlib.resources.files("digitcmp.assets") / "mnist_sample.npz") as sample:
        images = sample["images"][:: max(1, len(sample["images"]) // count)][:count]
    encoded = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    return encoded


def pair_of(index: int, digits: list[bytes]) -> tuple[bytes, bytes]:
    return digits[index % len(digits)], digits[(index * 7 + 3) % len(digits)]


def multipart(first: bytes, second: bytes) -> tuple[bytes, str]:
    """A request body with the two images as form fields 'first' and 'second', and its content type."""
    boundary = uuid.uuid4().hex
    parts = []
    for field, data in (("first", first), ("second", second)):
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{field}.png"\r\n'
                "Content-Type: image/png\r\n\r\n")  # fmt: skip
        parts.append(head.encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, model: Path | None, workers: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "digitcmp", "serve", "--port", str(port), "--workers", str(workers)]
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


def family(pid: int) -> list[int]:
    """A process and all its descendants (uvicorn's workers, the processes preparing pictures), from Linux's /proc."""
    children = [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
                for child in (task / "children").read_text().split()]  # fmt: skip
    return [pid, *(each for child in children for each in family(child))]


def resident_mb(pid: int) -> float:
    """Resident memory of a process and its descendants, in MB."""
    total = 0
    for each in family(pid):
        status = Path(f"/proc/{each}/status").read_text()
        total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
    return total / 1024


def in_process(digits: list[bytes], requests: int) -> float:
    """Comparisons per second through predict's own functions, no HTTP: what the server's work costs alone."""
    model = load_model()
    pairs = [dict(zip(FIELDS, pair_of(i, digits), strict=True)) for i in range(requests)]
    run_batch(model, [prepare_images(pairs[0])])  # warm
    processes = os.cpu_count() or 1
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(prepare_images, pairs[:processes]))  # every process started
        started = time.perf_counter()
        prepared = pool.map(prepare_images, pairs)  # one comparison a task, as the server sends them
        batch = []
        for pair in prepared:
            batch.append(pair)
            if len(batch) == IN_PROCESS_BATCH:
                run_batch(model, batch)
                batch = []
        if batch:
            run_batch(model, batch)
    return requests / (time.perf_counter() - started)


def percentile(sorted_values: list[float], share: float) -> float:
    return sorted_values[int(share * (len(sorted_values) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--requests", type=int, default=2000, help="comparisons in all")
    parser.add_argument("--workers", type=int, default=1, help="server processes (digitcmp serve --workers)")
    parser.add_argument("--model", type=Path, default=None, help="ONNX model (default: the shipped one)")
    parser.add_argument("--soak", action="store_true", help="also memory and latency from the start to the end")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    digits = sample_digits(64)
    bodies = [multipart(*pair_of(i, digits)) for i in range(64)]
    port = free_port()
    server = start_server(port, args.model, args.workers)
    errors: list[str] = []
    finished: list[tuple[float, float]] = []  # (when, latency) of every comparison
    memory: dict[str, float] = {}
    warm_up = args.requests // 10

    def compare(index: int, connection: http.client.HTTPConnection, record: bool = True) -> None:
        body, content_type = bodies[index % len(bodies)]
        started = time.perf_counter()
        connection.request("POST", "/api/compare", body, {"Content-Type": content_type})
        response = connection.getresponse()
        payload = response.read()
        now = time.perf_counter()
        if response.status != 200:
            errors.append(f"{response.status}: {payload[:100]!r}")
        if record:
            finished.append((now, now - started))
        if args.soak and len(finished) >= warm_up and "after_warm_up_mb" not in memory:
            memory["after_warm_up_mb"] = resident_mb(server.pid)

    def client(start: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        compare(start, connection, record=False)  # a warm connection before the clock
        for index in range(start, args.requests, args.clients):
            compare(index, connection)
        connection.close()

    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(client, range(args.clients)))
        wall = time.perf_counter() - started
        if args.soak:
            memory["at_end_mb"] = resident_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    limit = in_process(digits, min(args.requests, 2000))
    finished.sort()
    latencies = sorted(latency for _, latency in finished)
    rate = len(latencies) / wall
    figures = {
        "clients": args.clients,
        "workers": args.workers,
        "cores": os.cpu_count(),
        "requests": len(latencies),
        "seconds": round(wall, 2),
        "comparisons_per_second": round(rate, 1),
        "latency_ms_p50": round(1000 * statistics.median(latencies), 1),
        "latency_ms_p95": round(1000 * percentile(latencies, 0.95), 1),
        "latency_ms_p99": round(1000 * percentile(latencies, 0.99), 1),
        "errors": len(errors),
        "first_errors": errors[:3],
        "in_process_comparisons_per_second": round(limit, 1),
        "server_share_of_in_process": round(rate / limit, 3),
    }
    if args.soak:
        tenth = len(finished) // 10
        early = statistics.median(latency for _, latency in finished[tenth : 2 * tenth])
        late = statistics.median(latency for _, latency in finished[-tenth:])
        growth = memory["at_end_mb"] / memory["after_warm_up_mb"] - 1
        figures["soak"] = {
            **{key: round(value, 1) for key, value in memory.items()},
            "memory_growth": round(growth, 3),
            "latency_ms_p50_second_tenth": round(1000 * early, 1),
            "latency_ms_p50_last_tenth": round(1000 * late, 1),
            "latency_change": round(late / early - 1, 3),
        }
    if args.json:
        print(json.dumps({**figures, "environment": machine()}, indent=2))
        return
    f = figures
    print(f"{f['requests']} comparisons from {args.clients} clients, {args.workers} worker(s), in {f['seconds']} s: "
          f"{f['comparisons_per_second']} per second, p50 {f['latency_ms_p50']} ms, p95 {f['latency_ms_p95']} ms, "
          f"p99 {f['latency_ms_p99']} ms, {f['errors']} errors")  # fmt: skip
    print(f"in-process limit: {f['in_process_comparisons_per_second']} per second; the server reaches "
          f"{100 * f['server_share_of_in_process']:.0f}% of it")  # fmt: skip
    if args.soak:
        s = f["soak"]
        print(f"soak: resident memory {s['after_warm_up_mb']} MB after warm-up, {s['at_end_mb']} MB at the end "
              f"({100 * s['memory_growth']:+.1f}%); median latency {s['latency_ms_p50_second_tenth']} ms in the "
              f"second tenth, {s['latency_ms_p50_last_tenth']} ms in the last "
              f"({100 * s['latency_change']:+.1f}%)")  # fmt: skip


if __name__ == "__main__":
    main()

"""How fast pictures are prepared for the model (predict's ``digit_from_bytes``), alone and in parallel: in threads
of one process, in a pool of processes (as ``digitcmp serve`` prepares them), and with OpenCV's own thread pool on.

Each figure is wall and processor milliseconds per picture over the same 28×28 PNG digits (real MNIST digits from
the bundled sample), after one warm-up pass.

    python benchmarks/prepare_speed.py
    python benchmarks/prepare_speed.py --pictures 2000 --json
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

import cv2
import numpy as np
from PIL import Image

from digitcmp.environment import machine
from digitcmp.predict import digit_from_bytes
from digitcmp.serve import ready


def pictures(count: int) -> list[bytes]:
    import importlib.resources

    with np.load(importlib.resources.files("digitcmp.assets") / "mnist_sample.npz") as sample:
        images = sample["images"][: 64 * (len(sample["images"]) // 64) : len(sample["images"]) // 64]
    encoded = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    return [encoded[i % len(encoded)] for i in range(count)]


def prepare(data: bytes) -> None:
    digit_from_bytes(data, "picture")


def timed(run, data: list[bytes], processes: list[int] | None = None) -> dict[str, float]:
    """Milliseconds per picture, wall and processor time (this process's, or with ``processes`` theirs too)."""
    cpu_before = time.process_time() + children_cpu(processes)
    started = time.perf_counter()
    run(data)
    wall = time.perf_counter() - started
    cpu = time.process_time() + children_cpu(processes) - cpu_before
    return {"wall_ms": round(1000 * wall / len(data), 3), "cpu_ms": round(1000 * cpu / len(data), 3)}


def children_cpu(pids: list[int] | None) -> float:
    total = 0
    for pid in pids or []:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def in_pool(pool: Executor):
    return lambda data: list(pool.map(prepare, data))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pictures", type=int, default=1000)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    data = pictures(args.pictures)
    cores = os.cpu_count() or 1
    figures: dict[str, dict[str, float]] = {}
    for threads in (1, 2, 4):
        with ThreadPoolExecutor(threads) as pool:
            in_pool(pool)(data[:64])
            figures[f"{threads} thread{'s' * (threads > 1)}"] = timed(in_pool(pool), data)
    with ProcessPoolExecutor(cores, mp_context=multiprocessing.get_context("spawn")) as pool:
        [future.result() for future in [pool.submit(ready) for _ in range(cores)]]  # every process started
        in_pool(pool)(data[:64])
        figures[f"{cores} processes"] = timed(in_pool(pool), data, [p.pid for p in pool._processes.values()])
    cv2.setNumThreads(cores)  # digitcmp runs OpenCV on one thread; here its own pool is on
    figures[f"1 thread, OpenCV on {cores} threads"] = timed(in_pool(ThreadPoolExecutor(1)), data)
    if args.json:
        document = {"pictures": args.pictures, "ms_per_picture": figures, "environment": machine()}
        print(json.dumps(document, indent=2))
        return
    print(f"{args.pictures} 28×28 PNG pictures, {cores} cores: milliseconds per picture")
    for name, f in figures.items():
        print(f"  {name:32} wall {f['wall_ms']:6.3f}   processor {f['cpu_ms']:6.3f}")


if __name__ == "__main__":
    main()

"""Inference speed of one exported model: onnxruntime against torch eager, in one run, on the same weights.

Measures single-pair latency (p50/p95, in-process), throughput (pairs/s) at several batch sizes, and the wall
time of whole `digitcmp predict a.png b.png` processes (start-up included), then prints a table.

    python benchmarks/predict_speed.py                                    # the shipped model, onnxruntime
    python benchmarks/predict_speed.py --model models/mine.onnx --checkpoint runs/study/best.pt  # and torch eager

The torch side needs the checkpoint the ONNX file was exported from; without --checkpoint only onnxruntime and
the whole process are measured.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from digitcmp.data import load_source
from digitcmp.export import ProbabilityModel
from digitcmp.model.checkpoint import load_checkpoint
from digitcmp.predict import load_model
from digitcmp.preprocess import pool_digits


def latencies(run, pairs: np.ndarray, repeats: int) -> list[float]:
    for i in range(20):  # warm-up
        run(pairs[i : i + 1])
    times = []
    for i in range(repeats):
        one = pairs[i % len(pairs) : i % len(pairs) + 1]
        started = time.perf_counter()
        run(one)
        times.append(time.perf_counter() - started)
    return times


def throughput(run, pairs: np.ndarray, batch: int, seconds: float = 1.0) -> float:
    chunk = pairs[:batch]
    run(chunk)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        run(chunk)
        done += len(chunk)
    return done / (time.perf_counter() - started)


def process_seconds(model: Path, repeats: int) -> list[float]:
    digits = load_source(None).test.images
    with tempfile.TemporaryDirectory() as folder:
        a, b = Path(folder) / "a.png", Path(folder) / "b.png"
        Image.fromarray(digits[0]).save(a)
        Image.fromarray(255 - digits[1]).save(b)
        command = [sys.executable, "-m", "digitcmp", "predict", str(a), str(b), "--model", str(model), "--json"]
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="ONNX model (default: the shipped one)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="its checkpoint, to measure torch eager too")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    digits = load_source(None).test.images
    pairs = pool_digits(np.concatenate([digits[:2048:2], digits[1:2048:2]])).reshape(2, -1, 14, 14).swapaxes(0, 1)
    runners = {"onnxruntime": model.run}
    if args.checkpoint is not None:
        eager = ProbabilityModel(load_checkpoint(args.checkpoint)[0]).eval()

        def torch_run(batch: np.ndarray) -> None:
            with torch.inference_mode():
                eager(torch.from_numpy(batch))

        runners["torch"] = torch_run
    figures: dict = {"model": str(model.path), "variant": model.metadata["variant_name"], "threads": args.threads}
    for name, run in runners.items():
        times = sorted(latencies(run, pairs, 500))
        figures[name] = {
            "latency_ms_p50": round(1e3 * times[len(times) // 2], 3),
            "latency_ms_p95": round(1e3 * times[int(len(times) * 0.95)], 3),
            "pairs_per_second": {b: round(throughput(run, pairs, b)) for b in (1, 16, 256, 1024)},
        }
    process = process_seconds(model.path, 5)
    figures["predict_process_seconds"] = {"median": round(statistics.median(process), 3), "min": round(min(process), 3)}
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"{figures['variant']} ({figures['model']}), {args.threads} threads")
    print(f"{'':12} {'p50 ms':>8} {'p95 ms':>8} " + " ".join(f"{'batch ' + str(b):>12}" for b in (1, 16, 256, 1024)))
    for name in runners:
        f = figures[name]
        rates = " ".join(f"{f['pairs_per_second'][b]:>10,}/s" for b in (1, 16, 256, 1024))
        print(f"{name:12} {f['latency_ms_p50']:>8} {f['latency_ms_p95']:>8} {rates}")
    print(f"whole 'digitcmp predict' process: median {figures['predict_process_seconds']['median']} s")


if __name__ == "__main__":
    main()

"""Inference speed of one exported model: onnxruntime against torch eager, in one run, on the same weights.

Measures single-pair latency (p50/p95, in-process), throughput (pairs/s) at several batch sizes, and the wall
time of whole `digitcmp predict a b` processes (start-up included) on two small PNGs and on two 12-megapixel JPEG
photos, then prints a table. onnxruntime runs twice: as predict reads pairs (early exit: the first view alone
where it is sure) and on every test-time view, the work torch eager does.

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
from digitcmp.environment import machine
from digitcmp.export import ProbabilityModel
from digitcmp.model.checkpoint import load_checkpoint
from digitcmp.predict import BATCH, load_model
from digitcmp.preprocess import model_digits
from digitcmp.serve import MAX_BATCH

# Batch sizes timed: one pair, a small batch, the server's largest (serve's MAX_BATCH) and predict's (BATCH).
BATCHES = (1, 16, MAX_BATCH, BATCH)


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


def photo(digit: np.ndarray, size: tuple[int, int] = (4000, 3000)) -> Image.Image:
    """A 12-megapixel, camera-sized RGB picture of a dark digit on grey paper with a light gradient and grain."""
    width, height = size
    rng = np.random.default_rng(0)
    ink = np.asarray(Image.fromarray(digit).resize((height // 2, height // 2), Image.BICUBIC), dtype=np.float32)
    paper = np.linspace(200, 235, width, dtype=np.float32)[None, :].repeat(height, axis=0)
    top, left = height // 4, (width - height // 2) // 2
    paper[top : top + height // 2, left : left + height // 2] -= ink * 0.7
    grain = rng.normal(0, 4, size=(height, width)).astype(np.float32)
    grey = np.clip(paper + grain, 0, 255).astype(np.uint8)
    return Image.fromarray(np.stack([grey, grey, (grey * 0.95).astype(np.uint8)], axis=-1))


def process_seconds(model: Path, repeats: int) -> dict[str, list[float]]:
    """Wall time of whole predict processes: on two 28×28 PNGs, and on two 12-megapixel JPEG photos."""
    digits = load_source(None).test.images
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        inputs = {"png": (Path(folder) / "a.png", Path(folder) / "b.png"),
                  "jpeg_12mp": (Path(folder) / "a.jpg", Path(folder) / "b.jpg")}  # fmt: skip
        Image.fromarray(digits[0]).save(inputs["png"][0])
        Image.fromarray(255 - digits[1]).save(inputs["png"][1])
        photo(digits[0]).save(inputs["jpeg_12mp"][0], quality=92)
        photo(digits[1]).save(inputs["jpeg_12mp"][1], quality=92)
        for kind, (a, b) in inputs.items():
            command = [sys.executable, "-m", "digitcmp", "predict", str(a), str(b), "--model", str(model), "--json"]
            times[kind] = []
            for _ in range(repeats):
                started = time.perf_counter()
                subprocess.run(command, check=True, capture_output=True)
                times[kind].append(time.perf_counter() - started)
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
    side = model.size  # the digits the model reads: pooled 14×14, or 28×28 for a model of full resolution
    chosen = np.concatenate([digits[:2048:2], digits[1:2048:2]])
    pairs = model_digits(chosen, side).reshape(2, -1, side, side).swapaxes(0, 1)
    every_view = load_model(args.model)
    every_view.all_views = True
    runners = {"onnxruntime": model.run, "onnxruntime_every_view": every_view.run}
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
            "pairs_per_second": {b: round(throughput(run, pairs, b)) for b in BATCHES},
        }
    figures["predict_process_seconds"] = {
        kind: {"median": round(statistics.median(t), 3), "min": round(min(t), 3)}
        for kind, t in process_seconds(model.path, 5).items()
    }
    if args.json:
        print(json.dumps({**figures, "environment": machine()}, indent=2))
        return
    print(f"{figures['variant']} ({figures['model']}), {args.threads} threads")
    print(f"{'':24} {'p50 ms':>8} {'p95 ms':>8} " + " ".join(f"{'batch ' + str(b):>12}" for b in BATCHES))
    for name in runners:
        f = figures[name]
        rates = " ".join(f"{f['pairs_per_second'][b]:>10,}/s" for b in BATCHES)
        print(f"{name:24} {f['latency_ms_p50']:>8} {f['latency_ms_p95']:>8} {rates}")
    process = figures["predict_process_seconds"]
    print(f"whole 'digitcmp predict' process, median of 5: two 28×28 PNGs {process['png']['median']} s, "
          f"two 12-megapixel JPEG photos {process['jpeg_12mp']['median']} s")  # fmt: skip


if __name__ == "__main__":
    main()

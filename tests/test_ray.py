"""bench and tune on Ray: the same per-round results as the local executor, cells spread over a cluster's nodes,
a lost worker's cell run again, and --resume after a killed run training only the cells it had not finished (slow,
and only where Ray is installed); without Ray, the executor says how to install it."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO, assert_one_line_error, refuse_training
from typer.testing import CliRunner

from digitcmp.bench import bench_cell, run_bench
from digitcmp.cli import app
from digitcmp.data import draw_rounds, load_source
from digitcmp.errors import DigitcmpError
from digitcmp.executor import ExecutorConfig, run_cells
from digitcmp.grid import BenchConfig, Job, expand
from digitcmp.study import Outcome

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed")
CPU = torch.device("cpu")
GRID = BenchConfig(archs=("shallow-fc", "deep-fc"), rounds=2, pairs=100, test_pairs=100, overrides={"epochs": 2})


def per_round(document: dict) -> dict[str, list]:
    return {v["name"]: [(r["test_accuracy"], r["curves"]["train_loss"]) for r in v["rounds"]]
            for v in document["variants"]}  # fmt: skip


@pytest.fixture()
def ray():
    """The ray module, for the tests that start clusters."""
    return pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> dict:
    return run_bench(GRID, load_source(None), CPU, tmp_path_factory.mktemp("local")).document


@pytest.mark.slow
@needs_ray
def test_a_grid_on_ray_gives_the_local_executors_per_round_results(ray, local_run, tmp_path):
    document = run_bench(GRID, load_source(None), CPU, tmp_path, executor=ExecutorConfig("ray")).document
    assert not ray.is_initialized()  # the local cluster started for the run is stopped after it
    assert per_round(document) == per_round(local_run)
    assert [v["name"] for v in document["variants"]] == [v["name"] for v in local_run["variants"]]  # grid order
    assert all(v["node"].startswith("ray:") for v in document["variants"])


@pytest.mark.slow
@needs_ray
def test_a_two_node_cluster_spreads_the_cells_over_both_nodes(ray, local_run, tmp_path):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        too_many = ExecutorConfig("ray", address=cluster.address, cpus_per_cell=2)
        with pytest.raises(DigitcmpError, match="no node of the Ray cluster has 2 CPUs"):
            run_bench(GRID, load_source(None), CPU, tmp_path / "refused", executor=too_many)
        executor = ExecutorConfig("ray", address=cluster.address)  # cells take 1 thread: the largest node's CPUs
        document = run_bench(GRID, load_source(None), CPU, tmp_path, executor=executor).document
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert len({v["node"] for v in document["variants"]}) == 2
    assert per_round(document) == per_round(local_run)


def failed(job: Job, reason: str) -> Outcome:
    return Outcome(job, None, reason)


@pytest.mark.slow
@needs_ray
def test_a_cell_whose_worker_dies_runs_again(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()

    def dies_once(job: Job, shared, device, on_epoch):  # sent to the workers by value
        mark = marks / job.identity
        if not mark.exists():
            mark.touch()
            os._exit(1)  # the worker process dies mid-cell
        return bench_cell(job, shared, device, on_epoch)

    jobs = expand(GRID)[:3]
    rounds = draw_rounds(load_source(None), 2, 100, 100, 0.1, seed=0)
    outcomes = list(run_cells(jobs, dies_once, (rounds, 0), "cpu", ExecutorConfig("ray", retries=1), failed))
    assert sorted(o.job.variant.name for o in outcomes) == sorted(j.variant.name for j in jobs)
    assert all(o.result is not None for o in outcomes)  # every cell complete after its retry
    assert len(list(marks.iterdir())) == 3
    never = list(run_cells(jobs[:1], dies_always, (rounds, 0), "cpu", ExecutorConfig("ray", retries=1),
                           failed))  # fmt: skip
    assert never[0].result is None and never[0].error  # lost beyond its retries: a failed cell, with the reason


def dies_always(job, shared, device, on_epoch):
    os._exit(1)


@pytest.mark.slow
@needs_ray
def test_resume_after_a_killed_run_trains_only_the_missing_cells(local_run, tmp_path):
    out = tmp_path / "bench"
    args = ["bench", "--arch", "shallow-fc,deep-fc", "--rounds", "2", "--epochs", "2", "--pairs", "100",
            "--executor", "ray", "--out", str(out), "-q"]  # fmt: skip
    env = {**os.environ, "DIGITCMP_DATA": ""}
    # The run (and the Ray workers it starts, which inherit its niceness) yields the CPU to this watcher, so that the
    # kill lands between the second cell and the last even on a busy 2-core machine, where all 8 take about a second.
    process = subprocess.Popen([sys.executable, "-m", "digitcmp", *args], cwd=REPO, env=env, start_new_session=True,
                               preexec_fn=lambda: os.nice(15))  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list((out / "cells").glob("*.json"))) < 2:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)  # a crash: no chance to clean up
    process.wait()
    before = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    assert 2 <= len(before) < 8
    result = CliRunner().invoke(app, ["bench", "--resume", str(out), "-q"], env={"DIGITCMP_DATA": ""})
    assert result.exit_code == 0, result.output
    after = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    assert len(after) == 8 and all(after[name] == stamp for name, stamp in before.items())  # finished ones untouched
    assert per_round(json.loads((out / "results.json").read_text())) == per_round(local_run)


def test_without_ray_the_executor_says_how_to_install_it(monkeypatch, tmp_path):
    refuse_training(monkeypatch)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed: importing it fails too
    for command in ("bench", "tune"):
        args = [command, "--executor", "ray", "--arch", "shallow-fc", "--out", str(tmp_path / command)]
        result = CliRunner().invoke(app, args, env={"DIGITCMP_DATA": ""})
        assert_one_line_error(result, 2, "--executor ray needs ray", "pip install 'digitcmp[ray]'")

"""Where the cells of a bench or tune run: one after another in this process, or as Ray tasks on a cluster.

A cell (a variant with its hyper-parameters, all its rounds batched as one model) is the unit of work either way,
and a cell's result depends on (seed, round) alone, so both executors give the same per-round results. With Ray,
the rounds' pairs go to the object store once, each cell declares the CPU threads (and share of a GPU) it uses, a
cell whose worker or node is lost runs again up to ``retries`` times, and results arrive in the order cells finish.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import DigitcmpError, require_extra
from .settings import Choice, check_fields, setting

Unit = TypeVar("Unit")
Result = TypeVar("Result")
SCALE = "Scaling out"


class Executor(Choice):
    local = "local"
    ray = "ray"


@dataclass(frozen=True)
class ExecutorConfig:
    """How cells are run: ``local`` (in this process) or ``ray`` (tasks on a cluster)."""

    kind: Executor = setting("Run the cells in this process (local) or as Ray tasks (ray).", Executor.local,
                             flags=("--executor",), panel=SCALE, shown=True)  # fmt: skip
    address: str | None = setting("A Ray cluster to join (ray).", None, envvar="RAY_ADDRESS", panel=SCALE,
                                  shown="a local cluster, started and stopped")  # fmt: skip
    cpus_per_cell: int | None = setting("CPU threads each Ray cell declares and uses.", None, low=1, panel=SCALE,
                                        shown="as a local run's torch threads")  # fmt: skip
    gpus_per_cell: float = setting("Share of a GPU each Ray cell declares (small cells share one).", 0.25, low=0,
                                   high=1, panel=SCALE, shown=True)  # fmt: skip
    retries: int = setting("Times a Ray cell runs again when its worker or node is lost.", 2, low=0, panel=SCALE,
                           shown=True)  # fmt: skip

    def __post_init__(self) -> None:
        check_fields(self)
        if self.kind == "ray":
            require_extra("ray", "--executor ray")


def run_cells(
    units: list[Unit],
    work: Callable[..., Result],
    shared: Any,
    device: str,
    config: ExecutorConfig,
    failed: Callable[[Unit, str], Result],
    on_epoch: Callable[[int], None] | None = None,
) -> Iterator[Result]:
    """Run ``work(unit, shared, device, on_epoch)`` for every unit and yield the results as they finish. A unit
    that cannot finish (its worker lost more often than the retries allow) yields ``failed(unit, reason)``.

    Ctrl-C (KeyboardInterrupt) cancels what is outstanding and propagates; what was yielded stays yielded."""
    if config.kind == "local":
        for unit in units:
            yield work(unit, shared, device, on_epoch)
        return
    yield from run_on_ray(units, work, shared, device, config, failed)


def run_on_ray(
    units: list[Unit],
    work: Callable[..., Result],
    shared: Any,
    device: str,
    config: ExecutorConfig,
    failed: Callable[[Unit, str], Result],
) -> Iterator[Result]:
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        address = config.address or os.environ.get("RAY_ADDRESS")
        options = {} if address else {"num_cpus": os.cpu_count(), "include_dashboard": False}
        ray.init(address=address, log_to_driver=False, configure_logging=False, **options)
    try:
        threads = cell_threads(config.cpus_per_cell, ray.nodes())
        gpus = config.gpus_per_cell if device.startswith("cuda") else 0
        task = ray.remote(num_cpus=threads, num_gpus=gpus, max_retries=config.retries)(ray_cell)
        shared_ref = ray.put(shared)  # the rounds' pairs travel to the object store once, not with every cell
        pending = {task.remote(work, unit, shared_ref, device, threads): unit for unit in units}
        try:
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                unit = pending.pop(ref)
                try:
                    yield ray.get(ref)
                except ray.exceptions.RayError as exc:  # worker or node lost beyond the retries, task cancelled
                    yield failed(unit, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}")
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
    finally:
        if started_here:
            ray.shutdown()


def cell_threads(asked: int | None, nodes: list[dict]) -> int:
    """The CPU threads each cell declares: those asked for, else as many as a local run trains with (convolution
    and batch-norm kernels sum in an order that depends on the thread count, so only then are the per-round
    results exactly a local run's), at most what the cluster's largest node has, so that every cell can run."""
    import torch

    largest = int(max((node["Resources"].get("CPU", 0) for node in nodes if node.get("Alive")), default=0))
    if asked is None:
        return max(1, min(torch.get_num_threads(), largest))
    if asked > largest:
        raise DigitcmpError(
            f"--cpus-per-cell {asked}: no node of the Ray cluster has {asked} CPUs (the largest has {largest}); "
            f"give --cpus-per-cell {max(1, largest)} or less"
        )
    return asked


def node_name() -> str:
    """Where this code runs: the Ray node inside a Ray worker, else this machine's name."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return "ray:" + ray.get_runtime_context().get_node_id()[:12]
    return platform.node()


def ray_cell(work: Callable[..., Result], unit: Unit, shared: Any, device: str, threads: int) -> Result:
    """A cell inside a Ray worker: torch uses the threads the task declared."""
    import torch

    torch.set_num_threads(max(1, threads))
    return work(unit, shared, device, None)

"""`policybot serve --workers N [--answer-workers M]`: N server processes on one port (and M answer workers),
kept running by this (parent) process.

One Python process uses one core at most (the GIL), and under load it was CPU-bound well below the target rate
(benchmarks/README.md). Each worker is a complete `policybot serve` process: the kernel spreads connections
over them (SO_REUSEPORT) and all shared state already lives in PostgreSQL and Redis, as it does for processes
on several machines.

The parent starts the embedded PostgreSQL/Redis (when no DATABASE_URL/REDIS_URL is set) and applies the
migrations once, so the workers neither race to start servers nor to migrate. Metrics are aggregated over the
workers through prometheus_client's multiprocess mode. SIGTERM/SIGINT are passed on to the workers, which
finish their answers in flight (aiohttp's graceful shutdown) before the parent exits. A worker that dies is
restarted; one that dies within STARTUP_GRACE_S of starting stops everything (a configuration error would
otherwise restart forever).
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import tempfile
import time
from typing import Callable

from adapters.settings import Settings
from bot import embedded_services as services
from knowledge import migrate
from knowledge.db import make_engine

log = logging.getLogger(__name__)

STARTUP_GRACE_S = 10.0
STOP_TIMEOUT_S = 40.0  # above a worker's 30 s graceful shutdown
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def shared_settings(settings: Settings) -> Settings:
    """Settings naming the servers every worker connects to: the embedded ones are started here, once."""
    database_url = services.database_url(settings)
    redis_url = settings.redis_url or services.embedded_redis_url(settings)
    return settings.model_copy(update={"database_url": database_url, "redis_url": redis_url})


def supervise(settings: Settings, targets: list[Callable[[Settings], None]]) -> int:
    """Run each `target(settings)` in its own process until SIGTERM/SIGINT; the exit status."""
    settings = shared_settings(settings)
    engine = make_engine(settings.database_url)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()

    metrics_dir = tempfile.mkdtemp(prefix="policybot-metrics-")
    os.environ[METRICS_DIR_ENV] = metrics_dir  # read by prometheus_client in the workers (spawned after this)
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no threads or sockets inherited
    stopping = False

    def stop(signum, _frame) -> None:
        nonlocal stopping
        if not stopping:
            log.info("received signal %d: stopping %d workers", signum, len(processes))
        stopping = True

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    processes: dict[int, tuple[multiprocessing.Process, float]] = {}

    def start(slot: int) -> None:
        target = targets[slot]
        process = context.Process(target=target, args=(settings,), name=f"policybot-{target.__name__}-{slot}")
        process.start()
        processes[slot] = (process, time.monotonic())
        log.info("%s %d started (pid %d)", target.__name__, slot, process.pid)

    status = 0
    try:
        for slot in range(len(targets)):
            start(slot)
        while not stopping:
            sentinels = [p.sentinel for p, _ in processes.values()]
            multiprocessing.connection.wait(sentinels, timeout=1.0)
            for slot, (process, started) in list(processes.items()):
                if process.is_alive() or stopping:
                    continue
                if time.monotonic() - started < STARTUP_GRACE_S:
                    log.error("worker %d exited with status %s right after starting; stopping", slot,
                              process.exitcode)
                    status = process.exitcode or 1
                    stopping = True
                    break
                log.warning("worker %d (pid %d) exited with status %s; restarting it", slot, process.pid,
                            process.exitcode)
                start(slot)
    finally:
        # Target by target, in the order given: the servers stop taking requests before the answer workers
        # (which empty the turn queue) are stopped.
        for target in dict.fromkeys(targets):
            _stop_all([p for slot, (p, _) in processes.items() if targets[slot] is target])
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        shutil.rmtree(metrics_dir, ignore_errors=True)
        os.environ.pop(METRICS_DIR_ENV, None)
    return status


def _stop_all(processes: list[multiprocessing.Process]) -> None:
    for process in processes:
        if process.is_alive():
            os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            log.warning("worker pid %d did not stop in %.0f s; killing it", process.pid, STOP_TIMEOUT_S)
            process.kill()
            process.join(5)

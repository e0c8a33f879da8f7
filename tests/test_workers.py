"""`policybot serve --workers 2` as a real process tree: two workers on one port, metrics summed over them, a
crashed worker replaced, and SIGTERM stopping everything. Real PostgreSQL and Redis (the test session's)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from adapters.supervisor import STARTUP_GRACE_S

BAD_ACTIVITIES = 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _post_json(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def _workers(parent: int) -> set[int]:
    """The parent's children that are workers (not multiprocessing's resource tracker)."""
    with open(f"/proc/{parent}/task/{parent}/children") as f:
        children = [int(pid) for pid in f.read().split()]
    workers = set()
    for pid in children:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"spawn_main" in f.read():
                    workers.add(pid)
        except FileNotFoundError:
            pass
    return workers


def _wait(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def served(settings, tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SLACK_", "MICROSOFT_"))}
    env.update(DATABASE_URL=settings.database_url, REDIS_URL=settings.redis_url, POLICYBOT_HOME=str(tmp_path / "h"),
               POLICYBOT_LOG_LEVEL="WARNING")
    process = subprocess.Popen([sys.executable, "-c", "from adapters.cli import run_main; run_main()", "serve",
                                "--workers", "2", "--host", "127.0.0.1", "--port", str(port)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _healthy(url) and len(_workers(process.pid)) == 2, 60, "two healthy workers")
        yield process, url, time.monotonic()  # the workers started before this
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        process.stdout.close()


def _healthy(url: str) -> bool:
    try:
        return _get(url + "/healthz")[0] == 200
    except OSError:
        return False


def _counter(metrics: str, line_start: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_two_workers_share_the_port_sum_their_metrics_replace_a_crash_and_stop_on_sigterm(served):
    process, url, started = served
    workers = _workers(process.pid)

    # Every request is counted once, whichever worker served it and whichever answers the scrape.
    for _ in range(BAD_ACTIVITIES):
        assert _post_json(url + "/api/messages", b"{}") == 400
    for _ in range(3):
        _, metrics = _get(url + "/metrics")
        assert _counter(metrics, 'policybot_requests_total{platform="teams",status="400"}') == BAD_ACTIVITIES

    # A worker that dies after starting up is replaced; the port keeps answering meanwhile.
    time.sleep(max(0.0, STARTUP_GRACE_S + 0.5 - (time.monotonic() - started)))
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    replaced = _wait(lambda: (lambda now: now if len(now) == 2 and victim not in now else None)(
        _workers(process.pid)), 30, "a replacement worker")
    assert victim not in replaced and len(replaced & workers) == 1
    _wait(lambda: _healthy(url), 30, "health after the restart")

    # SIGTERM: the workers shut down gracefully and the parent exits cleanly.
    process.send_signal(signal.SIGTERM)
    assert process.wait(45) == 0
    for pid in replaced:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def test_workers_must_be_positive_and_need_a_fixed_port(settings, tmp_path):
    env = {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url}
    for args, message in ((["--workers", "0"], "--workers must be 1 or more"),
                          (["--answer-workers", "-1"], "--answer-workers 0 or more"),
                          (["--workers", "2", "--port", "0"], "needs a fixed --port")):
        done = subprocess.run([sys.executable, "-c", "from adapters.cli import run_main; run_main()", "serve",
                               *args], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and message in done.stdout

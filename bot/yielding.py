"""Work that must yield the CPU to answers: a served upload's ingestion (PolicyBot.upload).

An upload embeds every passage of its document, seconds to minutes of CPU with the local model, inside a
running server: in the web process (admin console, Slack upload) or an answer worker (Teams). The answer
workers run at nice 10 (adapters/answer_worker.py), so an upload at the web process's normal priority takes the
cores the answers need (benchmarks/upload.py measured answer p95 with and without this). So the ingestion runs
on a thread of its own at POLICYBOT_UPLOAD_NICE: the upload still gets every idle cycle, and waits when answers
need the CPU. Linux gives each thread its own nice value (setpriority on the thread's native id) and a process
without CAP_SYS_NICE cannot raise it back, so the thread is new for each call and ends with it: it is never a pool
thread that would later answer at that priority. Threads the embedder starts from it (OpenMP) inherit the value.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Callable, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


def thread_nice() -> int:
    """The calling thread's nice value (Linux: per thread; elsewhere the process's)."""
    if sys.platform.startswith("linux"):
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    return os.getpriority(os.PRIO_PROCESS, 0)


def lower_this_thread(nice: int) -> int:
    """Lower the calling thread's CPU priority to `nice` (never raises it); returns the value it runs at."""
    current = thread_nice()
    if nice <= current or not sys.platform.startswith("linux"):  # elsewhere PRIO_PROCESS would mean the process
        return current
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except OSError as err:  # not fatal: the work runs, only at the same priority as answers
        log.warning("could not lower the upload's CPU priority: %s", err)
        return current
    return nice


def run_yielding(nice: int, function: Callable[..., T], *args, **kwargs) -> T:
    """function(*args, **kwargs) on a new thread at CPU priority `nice` (0: here, as it is); waits for it and
    returns its result or raises its exception."""
    if nice <= 0:
        return function(*args, **kwargs)
    outcome: dict = {}

    def work() -> None:
        try:
            lower_this_thread(nice)
            outcome["value"] = function(*args, **kwargs)
        except BaseException as err:  # handed to the caller below
            outcome["error"] = err

    thread = threading.Thread(target=work, name="upload-yielding")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]

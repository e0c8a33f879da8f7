"""Work that must yield the CPU to answers: a served upload's ingestion (PolicyBot.upload).

An upload embeds every passage of its document, minutes of CPU with the local model, inside a running server:
in the web process (admin console, Slack upload) or an answer worker (Teams). The answer workers run at nice 10
(adapters/answer_worker.py), so an upload at the web process's normal priority takes the cores the answers need:
benchmarks/upload.py measured answer p95 going from 0.57 s to 28 s at 20 questions/s on 2 cores. So the
ingestion runs on a thread of its own at POLICYBOT_UPLOAD_PRIORITY:

- `idle` (default): Linux's SCHED_IDLE, which runs only on cycles no other thread wants; the scheduler also
  treats a core running only idle-class work as free for a waking answer, which nice alone does not;
- `low`: nice 19, the lowest normal priority (it still takes a small share from busy answer workers);
- `normal`: the caller's thread and priority (how uploads ran before).

Linux sets these per thread (on the thread's native id) and a process without CAP_SYS_NICE cannot raise them
back, so the thread is new for each call and ends with it: it is never a pool thread that would later answer at
that priority. Threads the embedder starts from it (OpenMP) inherit it. Elsewhere than Linux the setting has no
effect (there, PRIO_PROCESS with a thread id would name a process).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Callable, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
PRIORITIES = ("idle", "low", "normal")
LOW_NICE = 19
_LINUX = sys.platform.startswith("linux")


def thread_priority() -> str:
    """The calling thread's CPU priority: `idle` (SCHED_IDLE) or `nice N`."""
    tid = threading.get_native_id() if _LINUX else 0
    if _LINUX and os.sched_getscheduler(tid) == os.SCHED_IDLE:
        return "idle"
    return f"nice {os.getpriority(os.PRIO_PROCESS, tid)}"


def lower_this_thread(priority: str) -> str:
    """Lower the calling thread's CPU priority to `priority` (never raises it); returns thread_priority()."""
    if _LINUX and priority in ("idle", "low"):
        tid = threading.get_native_id()
        try:
            if priority == "idle":
                os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
            elif os.getpriority(os.PRIO_PROCESS, tid) < LOW_NICE:
                os.setpriority(os.PRIO_PROCESS, tid, LOW_NICE)
        except OSError as err:  # not fatal: the work runs, only at the same priority as answers
            log.warning("could not lower the upload's CPU priority: %s", err)
    return thread_priority()


def run_yielding(priority: str, function: Callable[..., T], *args, **kwargs) -> T:
    """function(*args, **kwargs) on a new thread at `priority` (PRIORITIES; `normal`: here, as it is); waits for
    it and returns its result or raises its exception."""
    if priority == "normal":
        return function(*args, **kwargs)
    outcome: dict = {}

    def work() -> None:
        try:
            lower_this_thread(priority)
            outcome["value"] = function(*args, **kwargs)
        except BaseException as err:  # handed to the caller below
            outcome["error"] = err

    thread = threading.Thread(target=work, name="upload-yielding")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]

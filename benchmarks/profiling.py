"""Where the CPU goes during a load run (benchmarks/load.py): CPU seconds per process of the setup (psutil), and
py-spy GIL profiles of the server summarized by kind of work.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python benchmarks/NAME.py` from the repository root
    sys.path.insert(0, str(ROOT))

from benchmarks.common import log  # noqa: E402


class CpuSampler:
    """CPU seconds used by each process of the setup between start() and stop() (psutil)."""

    def __init__(self, named_pids: dict[str, int | None], postmaster_pid: int | None,
                 with_children: tuple[str, ...] = ()) -> None:
        self.named = {k: v for k, v in named_pids.items() if v}
        self.with_children = with_children  # names whose child processes count too (not the load generator's!)
        self.postmaster = postmaster_pid
        self.before: dict = {}

    def _snapshot(self) -> dict:
        import psutil

        snap: dict[str, float] = {}
        for name, pid in self.named.items():
            try:
                process = psutil.Process(pid)
                cpu = process.cpu_times()
                total = cpu.user + cpu.system
                for child in (process.children(recursive=True) if name in self.with_children else ()):
                    try:
                        c = child.cpu_times()
                        total += c.user + c.system
                    except psutil.Error:
                        pass
                snap[name] = total
            except psutil.Error:
                snap[name] = 0.0
        if self.postmaster:
            try:
                master = psutil.Process(self.postmaster)
                total = sum(master.cpu_times()[:2])
                per_child = {}
                for child in master.children():
                    try:
                        per_child[child.pid] = sum(child.cpu_times()[:2])
                    except psutil.Error:
                        pass
                snap["postgres"] = total
                snap["_pg_children"] = per_child  # type: ignore[assignment]
            except psutil.Error:
                pass
        cpu = psutil.cpu_times()
        snap["_machine_busy"] = cpu.user + cpu.system + cpu.nice + getattr(cpu, "irq", 0) + getattr(cpu, "softirq", 0)
        snap["_t"] = time.monotonic()
        return snap

    def start(self) -> None:
        self.before = self._snapshot()

    def stop(self) -> dict:
        after = self._snapshot()
        wall = after["_t"] - self.before["_t"]
        out = {}
        for name in self.named:
            out[name] = after.get(name, 0.0) - self.before.get(name, 0.0)
        if "postgres" in after:
            pg = after["postgres"] - self.before.get("postgres", 0.0)
            old = self.before.get("_pg_children", {})
            for pid, cpu in after["_pg_children"].items():
                pg += cpu - old.get(pid, 0.0)
            out["postgres"] = pg
        out["machine (all processes)"] = after["_machine_busy"] - self.before["_machine_busy"]
        return {"wall_s": round(wall, 2),
                "cpu_s": {k: round(v, 2) for k, v in out.items()},
                "cores_used": {k: round(v / wall, 2) for k, v in out.items()} if wall else {}}


def threads_by_priority(pid: int) -> dict[str, int]:
    """How many threads of `pid` and its children run at each CPU priority: `idle` (SCHED_IDLE) or `nice N`
    (Linux /proc; {} elsewhere)."""
    import psutil

    counts: dict[str, int] = {}
    try:
        pids = [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
    except psutil.Error:
        return counts
    for one in pids:
        for stat in Path(f"/proc/{one}/task").glob("*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()  # proc(5) from field 3 on
                key = "idle" if int(fields[38]) == 5 else f"nice {int(fields[16])}"  # policy 5 = SCHED_IDLE
            except (OSError, IndexError, ValueError):
                continue
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


# ----------------------------------------------------------------------------------------- py-spy


def pyspy_binary() -> str | None:
    for candidate in (shutil.which("py-spy"), str(Path(sys.executable).parent / "py-spy"), "/tmp/pyspy/bin/py-spy"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def start_profile(pid: int, seconds: float, out: Path, gil: bool = True,
                  subprocesses: bool = False) -> subprocess.Popen | None:
    """py-spy on the server. gil=True samples only the thread holding the GIL: where the one core a Python
    process can use goes (what limits throughput); gil=False samples every thread, idle ones too (what they wait on)."""
    binary = pyspy_binary()
    if binary is None:
        log("py-spy not found (pip install py-spy); no profile")
        return None
    mode = ["--gil"] if gil else ["--idle"]
    return subprocess.Popen([binary, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "100", "-f", "raw",
                             "-o", str(out), "--nonblocking", "--threads", *mode,
                             *(["--subprocesses"] if subprocesses else [])],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


# Where a GIL sample goes: the first category (in this order) with a frame in the sample's stack.
PROFILE_CATEGORIES = (
    ("Teams: msrest client configuration built per turn (ClientRetryPolicy)", r"Configuration\.__init__ \(msrest/"),
    ("core: conversation history query", r"history \(bot/interactions\.py\)"),
    ("core: record the interaction (INSERT + commit)", r"_record \(bot/core\.py\)"),
    ("core: embedding (cache miss)", r"embed_query"),
    ("core: retrieval (cache miss)", r"search \(knowledge/retrieval\.py\)"),
    ("core: LLM call (cache miss)", r"LLM\.complete"),
    ("core: answer state, cache, rate limit, rest", r"PolicyBot\.answer"),
    ("remember_message (UPDATE message_ref)", r"remember_message"),
    ("feedback (vote upsert, message lookup)", r"PolicyBot\.feedback|interaction_for_message"),
    ("Slack Web API calls (slack_sdk; a new aiohttp session per call)", r"slack_sdk/web"),
    ("Slack request handling (bolt: signature, parsing, listeners)", r"slack_bolt"),
    ("Teams turn, rest (botbuilder, msrest, requests sender)", r"botbuilder|botframework|msrest|requests/"),
    ("Redis calls (dedupe, thread marks, the turn queue)", r"redis/"),
    ("aiohttp server: HTTP parsing, routing, middleware", r"aiohttp/web_|adapters/server\.py"),
    ("asyncio internals: sockets, transports, callbacks", r"\(asyncio/|selectors\.py"),
)
_ROOT_FRAMES = re.compile(r"^(<module>|run_main |main \(adapters/cli|serve \(adapters/cli|run_app |.*\(asyncio/|.*\(threading\.py|"
                          r".*concurrent/futures/thread\.py|run_blocking\.<locals>)")


def summarize_profile(path: Path, top: int = 15) -> dict:
    """py-spy raw (collapsed) stacks → the share of samples per thread group, per category (PROFILE_CATEGORIES),
    and the top frames by inclusive share per thread group (the event-loop / thread-pool root frames left out)."""
    if not path.exists():
        return {}
    threads: Counter = Counter()
    categories: Counter = Counter()
    inclusive: dict[str, Counter] = defaultdict(Counter)
    leaf: dict[str, Counter] = defaultdict(Counter)
    compiled = [(name, re.compile(pattern)) for name, pattern in PROFILE_CATEGORIES]
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        try:
            n = int(count)
        except ValueError:
            continue
        frames = stack.split(";")
        thread = frames[0] if frames else "?"
        group = ("event loop (main thread)" if "MainThread" in thread else
                 "answer pool" if "answer" in thread else "other threads")
        threads[group] += n
        total += n
        joined = re.sub(r":\d+\)", ")", ";".join(frames[1:]))
        categories[next((name for name, rx in compiled if rx.search(joined)), "other")] += n
        seen = set()
        for frame in frames[1:]:
            name = re.sub(r":\d+\)", ")", frame)
            if name not in seen and not _ROOT_FRAMES.match(name):
                inclusive[group][name] += n
                seen.add(name)
        leaf[group][re.sub(r":\d+\)", ")", frames[-1])] += n
    out = {"samples": total, "samples_by_thread_group": dict(threads),
           "busy_samples_by_thread_group": dict(threads),
           "by_category_pct": [(name, round(100 * c / (total or 1), 1)) for name, c in categories.most_common()]}
    for group in inclusive:
        group_total = threads[group] or 1
        out[group] = {
            "top_inclusive_pct": [(f, round(100 * c / group_total, 1)) for f, c in inclusive[group].most_common(top)],
            "top_self_pct": [(f, round(100 * c / group_total, 1)) for f, c in leaf[group].most_common(top)],
        }
    return out

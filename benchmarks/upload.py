"""Answer latency while an admin uploads a document to a running server (a script, not a test).

    flock /tmp/bench.lock /tmp/venv/bin/python benchmarks/upload.py --rate 20 --baseline 25 --upload-priority normal low idle

What runs: load.py's setup (benchmarks/bot_server.py, fakes_process.py): `policybot serve --answer-workers 2`
with its own PostgreSQL and Redis, the sample handbook ingested with `policybot ingest`, the local Slack, Teams
connector and LLM fakes (--llm-delay). One round per --upload-priority value, each on a freshly started server
with POLICYBOT_UPLOAD_PRIORITY set to it (`normal`: the upload's ingestion at the server's own priority, as before
bot/yielding.py; `low`: nice 19; `idle`: SCHED_IDLE, the default):

1. steady load: --rate questions/s (load_generator.py: signed Slack events and Teams activities, every question
   made unique, so each answer embeds, retrieves and calls the LLM; no feedback clicks), for --baseline seconds;
2. while the same load goes on, an admin uploads a generated --chunks-chunk Markdown handbook (common.CorpusGenerator,
   the same document in every round) through the admin console as a person does: `policybot console-link`, the
   sign-in page and form, the documents page's CSRF token, the multipart POST /admin/documents/upload, whose reply
   comes once the document is ingested; the ingest window is that request;
3. --after seconds more of load, the drain, then the document removed through the console's form (the next round
   starts from the same corpus).

Reported per round: end-to-end answer latency (event sent → reply recorded by the fakes) p50/p95/p99 of the
questions sent in the baseline window, in the ingest window and after it; the ingest's seconds and passages/s;
CPU per process and the load average per window. Target: ingest-window p95 <= 2x baseline p95.
JSON: benchmarks/results/upload[-<tag>]-<machine>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import bot_server, common, fakes_process, load_generator, load_results, profiling  # noqa: E402
from benchmarks.common import log, percentiles, print_table  # noqa: E402
from tests.services import Postgres, Redis  # noqa: E402

ADMIN = "UBENCHADMIN"
TARGET_P95_RATIO = 2.0
PHASES = ("baseline", "upload", "after")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=20.0, help="offered questions/s")
    p.add_argument("--concurrency", type=int, default=20, help="senders")
    p.add_argument("--baseline", type=float, default=25.0, help="seconds of load before the upload")
    p.add_argument("--after", type=float, default=5.0, help="seconds of load after the upload's reply")
    p.add_argument("--chunks", type=int, default=140, help="paragraphs of the generated document (~0.75 passages each)")
    p.add_argument("--upload-priority", nargs="+", default=["normal", "low", "idle"],
                   choices=["normal", "low", "idle"],
                   help="POLICYBOT_UPLOAD_PRIORITY of each round, in order (normal: the server's own priority)")
    p.add_argument("--answer-workers", type=int, default=2)
    p.add_argument("--llm-delay", type=float, default=0.3, help="fake LLM seconds per chat completion")
    p.add_argument("--drain-timeout", type=float, default=60.0)
    p.add_argument("--tag", default="", help="results file name: upload-<tag>-<machine>.json")
    p.add_argument("--seed", type=int, default=7)
    return p.parse_args(argv)


def handbook(chunks: int, seed: int) -> tuple[str, bytes, int]:
    """The generated document: file name, bytes, and how many passages ingestion makes of it."""
    from knowledge.chunking import chunk_document
    from knowledge.loaders import load_bytes

    doc = common.CorpusGenerator(common.Vocabulary.build(), seed=seed).document(1, chunks)
    data = doc.markdown().encode()
    return "benchmark-handbook.md", data, len(chunk_document(load_bytes(data, "benchmark-handbook.md")))


class AdminConsole:
    """The admin console as a browser uses it: a cookie jar, the sign-in form, the CSRF token of the page."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.csrf = ""

    async def __aenter__(self) -> "AdminConsole":
        import aiohttp

        # unsafe=True: keep cookies from an IP address (127.0.0.1), as a browser does.
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                             timeout=aiohttp.ClientTimeout(total=900))
        return self

    async def __aexit__(self, *exc) -> None:
        await self.session.close()

    @staticmethod
    def hidden(html: str, name: str) -> str:
        match = re.search(rf'name="{name}" value="([^"]*)"', html)
        if not match:
            raise RuntimeError(f"no hidden {name} field in the console page")
        return match.group(1)

    async def sign_in(self, link: str) -> None:
        token = parse_qs(urlparse(link).query)["token"][0]
        async with self.session.get(f"{self.base_url}/admin/login", params={"token": token}) as page:
            html = await page.text()
        form = {"token": self.hidden(html, "token"), "nonce": self.hidden(html, "nonce")}
        async with self.session.post(f"{self.base_url}/admin/login", data=form) as signed_in:
            if signed_in.status != 200:
                raise RuntimeError(f"console sign-in answered {signed_in.status}")
        async with self.session.get(f"{self.base_url}/admin/documents") as documents:
            self.csrf = self.hidden(await documents.text(), "csrf")

    @staticmethod
    def message(html: str) -> str:
        match = re.search(r'<div class="message[^"]*" role="status">(.*?)</div>', html, re.S)
        return match.group(1).strip() if match else ""

    async def upload(self, filename: str, data: bytes) -> tuple[int, str]:
        import aiohttp

        form = aiohttp.FormData()
        form.add_field("csrf", self.csrf)
        form.add_field("file", data, filename=filename, content_type="text/markdown")
        async with self.session.post(f"{self.base_url}/admin/documents/upload", data=form) as response:
            return response.status, self.message(await response.text())

    async def remove(self, title: str) -> tuple[int, str]:
        async with self.session.get(f"{self.base_url}/admin/documents") as page:
            html = await page.text()
        match = re.search(rf'{re.escape(title)}</td>.*?/admin/documents/(\d+)/remove', html, re.S)
        if not match:
            return 404, f"{title} not listed"
        async with self.session.post(f"{self.base_url}/admin/documents/{match.group(1)}/remove",
                                     data={"csrf": self.csrf}) as response:
            return response.status, self.message(await response.text())


async def run_round(args, priority: str, server: bot_server.BotServer, fakes: fakes_process.Fakes, env: dict,
                    document: tuple[str, bytes, int], pg: Postgres, redis: Redis, number: int) -> dict:
    filename, data, _ = document
    config = load_generator.LoadConfig(concurrency=args.concurrency, rate=args.rate, duration_s=3600.0,
                                       feedback=0.0, unique_fraction=1.0, seed=args.seed + number)
    out: dict = {"upload_priority": priority, "windows": {}}
    async with load_generator.Load(server.url, fakes, load_generator.load_questions(), config) as load, \
            AdminConsole(server.url) as admin:
        out["cold_start_first_question_ms"] = await load.warm_up()
        await admin.sign_in(bot_server.console_link(env, ADMIN))
        await asyncio.sleep(2)
        cpu = profiling.CpuSampler({"policybot serve (web + answer workers)": server.pid, "redis": redis.pid(),
                                    "fakes (Slack/connector/LLM)": fakes.pid, "load generator": os.getpid()},
                                   pg.postmaster_pid(), with_children=("policybot serve (web + answer workers)",))
        marks: dict = {}

        def window(name: str) -> None:  # close the previous window (CPU, load average), open `name`
            now = time.monotonic()
            if load.phase in PHASES:
                out["windows"][load.phase] = {"seconds": round(now - marks[load.phase], 2), "cpu": cpu.stop(),
                                              "load_average_end": common.load_average()}
            if name:
                marks[name] = now
                load.phase = name
                cpu.start()
                log(f"round {priority}: {name} window; load average {common.load_average()}")

        async def admin_uploads() -> None:
            await asyncio.sleep(args.baseline)
            window("upload")
            started = time.perf_counter()

            async def sample_priorities() -> None:  # the server's threads by priority while it ingests
                await asyncio.sleep(2.0)
                out["threads_by_priority_during_upload"] = await asyncio.to_thread(profiling.threads_by_priority, server.pid)

            sampler = asyncio.create_task(sample_priorities())
            status, message = await admin.upload(filename, data)
            sampler.cancel()
            seconds = time.perf_counter() - started
            window("after")
            load.end_in(args.after)
            passages = re.search(r"(\d+) passages", message)
            out["upload"] = {"status": status, "message": message, "seconds": round(seconds, 2),
                             "passages": int(passages.group(1)) if passages else None,
                             "passages_per_s": round(int(passages.group(1)) / seconds, 2) if passages else None}
            log(f"upload: {status} {message} in {seconds:.1f} s")

        window("baseline")
        await asyncio.gather(load.run(3600.0), admin_uploads())
        window("")
        out["drain_s"] = round(await load.wait_answered(args.drain_timeout), 2)
        title = re.search(r"“(.+?)”", out["upload"]["message"])
        out["removed"] = await admin.remove(title.group(1)) if title else (None, "no title in the reply")
        await load.collect()
        for phase in PHASES:
            questions = [q for q in load.questions.values() if q.phase == phase]
            out["windows"][phase].update({
                "questions": len(questions), "unanswered": sum(1 for q in questions if not q.answers),
                "e2e_ms": percentiles(load_results.e2e_latencies(questions))})
    log(f"server threads by priority during the upload: {out.get('threads_by_priority_during_upload')}")
    return out


def report(result: dict) -> None:
    rows = []
    for r in result["rounds"]:
        for phase in PHASES:
            w = r["windows"][phase]
            e2e = w["e2e_ms"]
            cores = w["cpu"]["cores_used"]
            rows.append([r["upload_priority"], phase, w["seconds"], w["questions"], w["unanswered"], e2e.get("p50"),
                         e2e.get("p95"), e2e.get("p99"), cores.get("policybot serve (web + answer workers)"),
                         cores.get("postgres"), cores.get("machine (all processes)"), w["load_average_end"][0]])
    print_table("Answer latency (ms, event → answer posted) by window; server CPU in cores",
                ["upload priority", "window", "s", "questions", "unanswered", "p50", "p95", "p99", "serve cores",
                 "postgres", "machine", "load avg"], rows)
    print_table("Targets: ingest-window p95 <= 2x baseline p95", ["upload priority", "upload", "passages/s",
                                                                  "p95 ratio", "verdict"],
                [[r["upload_priority"], f"{r['upload']['passages']} passages in {r['upload']['seconds']} s",
                  r["upload"]["passages_per_s"], r["p95_ratio"],
                  "MET" if r["p95_ratio"] is not None and r["p95_ratio"] <= TARGET_P95_RATIO else "MISSED"]
                 for r in result["rounds"]])


def main(argv=None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="pbupload"))
    result: dict = {"benchmark": "upload", "config": vars(args), "machine": common.machine(),
                    "load_average_start": common.load_average(), "rounds": []}
    log(f"upload under load: {args.rate}/s, rounds with POLICYBOT_UPLOAD_PRIORITY {args.upload_priority}; "
        f"load average {common.load_average()}")
    pg = redis = fakes = server = None
    try:
        pg = Postgres(prefix="pbu", say=log).start()
        redis = Redis(say=log).start()
        fakes = fakes_process.Fakes(args.llm_delay, work / "fakes.log").start()
        db_url = pg.create_database("upload")
        env = bot_server.bot_env(db_url, redis.url, fakes, work / "home", POLICYBOT_ADMINS=ADMIN,
                                 POLICYBOT_LOG_LEVEL="WARNING")
        log("ingesting the sample handbook (policybot ingest)")
        result["handbook_ingest_s"] = round(bot_server.ingest_handbook(env), 1)
        document = handbook(args.chunks, args.seed)
        result["document"] = {"name": document[0], "bytes": len(document[1]), "passages": document[2]}
        for number, priority in enumerate(args.upload_priority):
            server = bot_server.BotServer({**env, "POLICYBOT_UPLOAD_PRIORITY": priority}, work / f"server-{number}.log",
                                          answer_workers=args.answer_workers)
            log(f"policybot serve healthy in {server.start():.1f} s (POLICYBOT_UPLOAD_PRIORITY={priority})")
            one = asyncio.run(run_round(args, priority, server, fakes, env, document, pg, redis, number))
            base, during = (one["windows"][p]["e2e_ms"].get("p95") for p in ("baseline", "upload"))
            one["p95_ratio"] = round(during / base, 2) if base and during else None
            one["shutdown"] = server.stop()
            one["server_log"] = server.log_summary()
            result["rounds"].append(one)
        result["load_average_end"] = common.load_average()
        report(result)
        path = common.write_results("upload" + (f"-{args.tag}" if args.tag else ""), result)
        log(f"wrote {path}")
        return 0
    finally:
        bot_server.stop_everything([server] if server is not None else [], fakes, redis, pg)


if __name__ == "__main__":
    sys.exit(main())

"""Time to first visible text, streamed vs posted when done (issue #14). A script, not a test.

`policybot serve`'s aiohttp app (in this process, on 127.0.0.1) answers signed Slack mentions and Teams personal
messages; the real slack_sdk and botbuilder clients reply to the local fakes (tests/fakes/), which record when
each call arrived; the real openai client reads the local LLM stub, which streams its first token after
--first-token seconds and then --tokens-per-s words a second (a --words-word answer citing [1]). Real PostgreSQL
and Redis (tests/services.py), real e5 embeddings; every question is a cache miss (the cache is emptied first).

Per platform and mode (streaming on, and the baseline with POLICYBOT_STREAM=false: today's post-when-done):
  first visible text: event sent -> Slack chat.startStream (streaming) or chat.postMessage (baseline);
                      Teams' first `streaming` typing activity or the answer message (baseline)
  full answer:        event sent -> chat.stopStream / chat.postMessage; Teams' final message
p50/p95 over --questions questions, --concurrency at a time. Also the policybot_first_text_seconds histogram
the adapters fed, and checks that every question got exactly one answer.

    .venv/bin/python benchmarks/stream.py --questions 20 --concurrency 4     # ~2-3 min on 2 cores
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from benchmarks.common import (  # noqa: E402
    create_database, load_average, log, machine, percentiles, print_table, start_services, write_results,
)
from benchmarks.load_generator import teams_message  # noqa: E402
from tests.helpers import LEAVE  # noqa: E402  (the small leave policy the tests share)

SECRET = "bench-signing-secret-0123456789ab"
QUESTIONS = ["How many vacation days do I get?", "How much paid vacation do full-time employees receive?",
             "Can I carry over unused vacation days?", "Until when can unused vacation be carried over?",
             "Do part-time employees get vacation?"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--questions", type=int, default=20, help="questions per platform and mode")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--first-token", type=float, default=0.5, help="LLM stub: seconds to the first token")
    p.add_argument("--tokens-per-s", type=float, default=30.0, help="LLM stub: words a second after that")
    p.add_argument("--words", type=int, default=90, help="LLM stub: words in an answer")
    p.add_argument("--name", default="stream")
    return p.parse_args(argv)


def answer_text(words: int) -> str:
    filler = ("In short, full-time employees receive twenty-five days of paid vacation per calendar year, part-time "
              "employees receive a pro-rated amount, and unused days can be carried over until the end of March "
              "of the next year, so plan your time off with your manager early").split()
    body = [filler[i % len(filler)] for i in range(max(words - 1, 1))]
    return " ".join(body) + " [1]."


async def run_mode(bot, fakes, args, stream: bool, platform: str) -> dict:
    from adapters.platforms import PLATFORMS
    from adapters.server import build_app
    from tests.fakes.openai_server import Scripted
    from tests.fakes.slack_api import SlackSender, app_mention

    slack_fake, connector, llm = fakes
    bot.settings = bot.runtime.settings = bot.settings.model_copy(update={"stream_answers": stream})
    bot.runtime.redis.flushdb()
    results: list[dict] = []
    slots = asyncio.Semaphore(args.concurrency)
    async with TestClient(TestServer(build_app(bot, PLATFORMS), host="127.0.0.1")) as client:
        sender = SlackSender(client, SECRET)
        await sender.event(app_mention("hello"))  # warm-up: auth.test, connections
        await asyncio.sleep(1.0)

        async def one(i: int) -> None:
            question = f"{QUESTIONS[i % len(QUESTIONS)]} (case {platform}-{stream}-{i})"
            llm.queue(Scripted(content=answer_text(args.words)))
            async with slots:
                sent = time.monotonic()
                if platform == "slack":
                    event = app_mention(question, user=f"U{i}", channel="C1")
                    key = event["ts"]
                    await sender.event(event)
                else:
                    key = f"a:bench-{stream}-{i}"
                    body = teams_message(connector.service_url, question, key, f"aad-{i}", f"act-{stream}-{i}")
                    await client.post("/api/messages", data=json.dumps(body),
                                      headers={"Content-Type": "application/json"})
                results.append(await wait_answer(fakes, platform, key, sent))

        await asyncio.gather(*(one(i) for i in range(args.questions)))
    return summarize(results)


async def wait_answer(fakes, platform: str, key: str, sent: float, timeout_s: float = 60.0) -> dict:
    """Poll the fakes' records until the answer to `key` is complete; its first-visible and full times."""
    slack_fake, connector, _ = fakes
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if platform == "slack":
            mine = [c for c in list(slack_fake.calls) if c.args.get("thread_ts") == key
                    or c.args.get("ts") in _stream_ts(slack_fake, key)]
            visible = [c for c in mine if c.method in ("chat.startStream", "chat.postMessage")]
            done = [c for c in mine if c.method in ("chat.stopStream", "chat.postMessage", "chat.update")]
            if done:
                answers = len([c for c in mine if c.method in ("chat.startStream", "chat.postMessage")])
                return {"first_ms": (visible[0].t - sent) * 1000, "full_ms": (done[-1].t - sent) * 1000,
                        "answers": answers, "streamed": visible[0].method == "chat.startStream"}
        else:
            mine = [s for s in list(connector.sent) if s.conversation_id == key]
            finals = [s for s in mine if s.type == "message"]
            if finals:
                shown = [s for s in mine if s.type == "message" or (s.stream or {}).get("streamType") == "streaming"]
                return {"first_ms": (shown[0].at - sent) * 1000, "full_ms": (finals[-1].at - sent) * 1000,
                        "answers": len(finals), "streamed": shown[0].type == "typing"}
        await asyncio.sleep(0.01)
    return {"first_ms": None, "full_ms": None, "answers": 0, "streamed": False}


def _stream_ts(slack_fake, thread_ts: str) -> set[str]:
    with slack_fake._lock:
        return {ts for ts, m in slack_fake.messages.items() if m.get("thread_ts") == thread_ts}


def summarize(results: list[dict]) -> dict:
    first = [r["first_ms"] for r in results if r["first_ms"] is not None]
    full = [r["full_ms"] for r in results if r["full_ms"] is not None]
    return {"first_visible_ms": percentiles(first), "full_answer_ms": percentiles(full),
            "answered_once": sum(1 for r in results if r["answers"] == 1),
            "lost": sum(1 for r in results if r["answers"] == 0),
            "doubled": sum(1 for r in results if r["answers"] > 1),
            "streamed": sum(1 for r in results if r["streamed"])}


def first_text_histogram() -> dict:
    from bot.metrics import REGISTRY

    out: dict = {}
    for metric in REGISTRY.collect():
        if metric.name != "policybot_first_text_seconds":
            continue
        for sample in metric.samples:
            if sample.name.endswith("_count") or sample.name.endswith("_sum"):
                key = f"{sample.labels['platform']}/streamed={sample.labels['streamed']}"
                out.setdefault(key, {})[sample.name.rsplit("_", 1)[1]] = round(sample.value, 3)
    return out


class Timed(list):
    def append(self, item) -> None:  # noqa: D401 - list API
        item.t = time.monotonic()
        super().append(item)


def main(argv=None) -> int:
    args = parse_args(argv)
    from adapters.settings import Settings
    from bot.core import PolicyBot
    from bot.runtime import build_runtime
    from knowledge.embeddings import LocalE5Embedder
    from knowledge.ingest import ingest_file
    from tests.fakes.bot_connector import FakeConnector
    from tests.fakes.openai_server import FakeOpenAI
    from tests.fakes.slack_api import FakeSlack

    slack_fake = FakeSlack()
    slack_fake.calls = Timed()
    fakes = (slack_fake.start(), FakeConnector().start(),
             FakeOpenAI(first_token_s=args.first_token, tokens_per_s=args.tokens_per_s).start())
    services = start_services()
    home = Path(tempfile.mkdtemp(prefix="pbstream"))
    try:
        settings = Settings(database_url=create_database(services), redis_url=services.redis_url, home=home,
                            openai_api_key="bench", openai_base_url=fakes[2].base_url, chat_model="base-model",
                            llm_timeout_s=30.0, slack_bot_token=slack_fake.token, slack_signing_secret=SECRET,
                            slack_api_url=slack_fake.api_url, rate_limit_per_minute=100000)
        runtime = build_runtime(settings)
        runtime.embedder = LocalE5Embedder()
        doc = home / "leave.md"
        doc.write_text(LEAVE, encoding="utf-8")
        ingest_file(runtime.sessions, runtime.embedder, doc)
        bot = PolicyBot(runtime)
        bot.warm_up()
        result: dict = {"machine": machine(), "args": vars(args), "runs": {}}
        rows = []
        for platform in ("slack", "teams"):
            for stream in (False, True):
                mode = "streaming" if stream else "baseline (post when done)"
                log(f"{platform}: {mode}, {args.questions} questions")
                load = load_average()
                summary = asyncio.run(run_mode(bot, fakes, args, stream, platform))
                summary["load_average"] = load
                result["runs"][f"{platform}/{'stream' if stream else 'baseline'}"] = summary
                f, w = summary["first_visible_ms"], summary["full_answer_ms"]
                rows.append([platform, mode, f.get("p50"), f.get("p95"), w.get("p50"), w.get("p95"),
                             f"{summary['answered_once']}/{args.questions}", summary["doubled"], summary["lost"],
                             summary["streamed"], " ".join(f"{x:.2f}" for x in load)])
        result["first_text_metric"] = first_text_histogram()
        from sqlalchemy import text as sql

        with runtime.sessions() as session:  # every measured answer should be an LLM answer (no fallbacks)
            result["answer_kinds"] = dict(session.execute(sql(
                "SELECT kind, count(*) FROM interactions WHERE question LIKE '%(case %' GROUP BY kind")).all())
        log(f"answer kinds: {result['answer_kinds']}")
        result["load_average_end"] = load_average()
        print_table(f"Time to first visible text and to the full answer, ms (LLM stub: first token "
                    f"{args.first_token}s, {args.tokens_per_s:g} words/s, {args.words} words)",
                    ["platform", "mode", "first p50", "first p95", "full p50", "full p95", "answered once",
                     "doubled", "lost", "streamed", "load avg"], rows)
        print_table("policybot_first_text_seconds (fed by the adapters)", ["platform/streamed", "count", "sum s"],
                    [[k, v.get("count"), v.get("sum")] for k, v in sorted(result["first_text_metric"].items())])
        print(f"results: {write_results(args.name, result)}")
        runtime.close()
    finally:
        for fake in fakes:
            fake.stop()
        services.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fault injection under load (a script, not a test).

    /tmp/venv/bin/python benchmarks/faults.py                      # ~2.5 min of load, 3 faults
    /tmp/venv/bin/python benchmarks/faults.py --concurrency 10 --rate 20 --outage 8 --llm-outage 20

The same set-up as benchmarks/load.py (`policybot serve` subprocess, embedded PostgreSQL and Redis that this script
controls, the fakes process), with a lower, steady load (--rate events/s from --concurrency senders; a share of the
questions made unique, --unique, so that they miss the answer cache and really need retrieval and the LLM). While it
runs, one fault at a time, each followed by a recovery phase in which nothing is touched:

1. PostgreSQL down: `pg_ctl stop -m fast` (connections are cut, in-flight transactions abort), --outage seconds,
   `pg_ctl start` with the same options (or, --pg-mode restart, a plain `pg_ctl restart -m fast`).
2. Redis down: SHUTDOWN SAVE of the redis-server, --outage seconds, started again on the same socket and db file.
3. LLM failing: every chat completion (and /models) answers HTTP 500 for --llm-outage seconds (longer than the
   health check's 15 s LLM cache, so /healthz can see it).

Per phase: events sent and acknowledged, questions answered (real answer / apology), lost or duplicated answers,
interaction rows, real answers without a row, feedback clicks saved / refused (the user was told) / lost, what
/healthz said (polled every 0.5 s), and how long after each repair the first real answer came. Results:
benchmarks/results/faults-<machine>.json.

"Loses nothing", phase by phase (what the checks assert; see the notes printed at the end):
- every question gets exactly one reply (a real answer, or during a PostgreSQL outage an apology asking to retry),
  except that a Slack retry / Teams redelivery landing while Redis is down is answered twice (dedupe fails open
  by design: answering twice is preferred to not answering);
- every real answer (one with feedback buttons) has its interaction row; apologies are not recorded (by design);
- every feedback click is either recorded, or (PostgreSQL down) refused with a message asking to try again (Slack);
  a Teams vote that cannot be saved is logged but the user is not told (Teams wants an empty 200).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import bot_server, common, fakes_process, load_generator, load_results  # noqa: E402
from benchmarks.common import log, percentiles, print_table  # noqa: E402
from tests.services import Postgres, Redis  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--rate", type=float, default=20.0, help="offered events/s in total")
    p.add_argument("--unique", type=float, default=0.4, help="share of questions made unique (cache misses)")
    p.add_argument("--llm-delay", type=float, default=0.3)
    p.add_argument("--llm-first-token", type=float, default=0.0,
                   help="fake LLM, after --llm-delay: seconds to the first streamed token (answers stream, #14)")
    p.add_argument("--llm-tokens-per-s", type=float, default=0.0, help="fake LLM: words a second after it")
    p.add_argument("--answer-workers", type=int, default=0,
                   help="`policybot serve --answer-workers M` (questions queued on a Redis stream)")
    p.add_argument("--feedback", type=float, default=0.4, help="share of answers clicked")
    p.add_argument("--baseline", type=float, default=10.0, help="seconds before the first fault")
    p.add_argument("--outage", type=float, default=8.0, help="seconds PostgreSQL / Redis stay down")
    p.add_argument("--pg-mode", choices=("stop-start", "restart"), default="stop-start",
                   help="stop-start: pg_ctl stop -m fast, --outage seconds down, pg_ctl start; "
                        "restart: pg_ctl restart -m fast (down for as long as the restart takes)")
    p.add_argument("--llm-outage", type=float, default=20.0, help="seconds the LLM answers 500")
    p.add_argument("--recovery", type=float, default=12.0, help="seconds of load after each repair")
    p.add_argument("--drain-timeout", type=float, default=120.0)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--tag", default="", help="results file name: faults-<tag>-<machine>.json")
    return p.parse_args(argv)


async def poll_health(url: str, load: load_generator.Load, samples: list, stop: asyncio.Event) -> None:
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while not stop.is_set():
            t = time.monotonic()
            try:
                async with session.get(url + "/healthz") as response:
                    body = await response.json()
                    parts = body.get("parts", {})
                    down = ",".join(name for name, part in parts.items() if not part.get("ok"))
                    samples.append((load.phase, t, f"{response.status} {body.get('status')}"
                                    + (f" ({down} not ok)" if down else "")))
            except Exception as err:
                samples.append((load.phase, t, f"no answer ({type(err).__name__})"))
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except asyncio.TimeoutError:
                pass


async def run_faults(args, server: bot_server.BotServer, fakes: fakes_process.Fakes, db_url: str, pg: Postgres,
                     redis: Redis) -> dict:
    config = load_generator.LoadConfig(concurrency=args.concurrency, rate=args.rate, duration_s=3600,
                                unique_fraction=args.unique, feedback=args.feedback, seed=args.seed)
    out: dict = {"phases": [], "actions": []}
    health: list = []
    async with load_generator.Load(server.url, fakes, load_generator.load_questions(), config) as load:
        load.phase = "warmup"
        for kind in ("mention", "dm", "teams"):
            await load.send_question(kind, "hello")
        await load.send_question("mention", "Who do I talk to about an office plant allowance?")
        await load.wait_answered(120)

        stop_health = asyncio.Event()
        health_task = asyncio.create_task(poll_health(server.url, load, health, stop_health))
        load.phase = "baseline"
        loop = asyncio.get_running_loop()
        origin = loop.time()
        sending = asyncio.create_task(load.run(3600))  # stopped below by moving the deadline

        async def action(name: str, function, *a) -> None:
            started = loop.time()
            await asyncio.to_thread(function, *a)
            out["actions"].append({"action": name, "at_s": round(started - origin, 2),
                                   "took_s": round(loop.time() - started, 2)})
            log(f"{name} (took {loop.time() - started:.1f} s)")

        async def phase(name: str, seconds: float) -> None:
            load.phase = name
            out["phases"].append({"phase": name, "start_s": round(loop.time() - origin, 2)})
            await asyncio.sleep(seconds)

        await phase("baseline", args.baseline)

        load.phase = "postgres down"
        out["phases"].append({"phase": "postgres down", "start_s": round(loop.time() - origin, 2)})
        if args.pg_mode == "restart":
            await action("pg_ctl restart -m fast", pg.restart, "fast")
            await asyncio.sleep(1.0)  # the phase also covers the questions that were in flight during the restart
        else:
            await action("pg_ctl stop -m fast", pg.stop, "fast")
            await asyncio.sleep(args.outage)
            await action("pg_ctl start", pg.start_again)
        out["postgres_restored_at"] = loop.time()
        await phase("postgres recovered", args.recovery)

        load.phase = "redis down"
        out["phases"].append({"phase": "redis down", "start_s": round(loop.time() - origin, 2)})
        await action("redis SHUTDOWN SAVE", redis.stop)
        await asyncio.sleep(args.outage)
        await action("redis-server start (same socket and db file)", redis.start)
        out["redis_restored_at"] = loop.time()
        await phase("redis recovered", args.recovery)

        load.phase = "llm 500s"
        out["phases"].append({"phase": "llm 500s", "start_s": round(loop.time() - origin, 2)})
        await action("LLM answers 500", fakes.llm_fail, 500)
        await asyncio.sleep(args.llm_outage)
        await action("LLM answers again", fakes.llm_fail, 0)
        out["llm_restored_at"] = loop.time()
        await phase("llm recovered", args.recovery)

        load.deadline = loop.time()  # the senders stop at their next iteration
        await sending
        out["load_s"] = round(loop.time() - origin, 2)
        log(f"load stopped after {out['load_s']} s; {len(load.questions)} questions; waiting for the last answers")
        out["drain_s"] = round(await load.wait_answered(args.drain_timeout), 2)
        await asyncio.sleep(2)  # late health samples after recovery
        stop_health.set()
        await health_task
        out["metrics_end"] = {k: v for k, v in load_results.scrape_metrics(server.url)["samples"].items()
                              if k.startswith(("policybot_answers_total", "policybot_llm_failures",
                                               "policybot_cache_lookups", "policybot_feedback_total",
                                               "policybot_requests_total"))}
        out["shutdown"] = server.stop()
        await load.collect()
        out["checks"] = load_results.verify(load, db_url)
        out["per_phase"] = per_phase(load, db_url, health)
        out["recovery"] = recovery_times(load, out)
        out["health_transitions"] = transitions(health, origin)
        out["fakes"] = fakes.stats()
        out["server_log"] = server.log_summary(limit=15)
    for key in ("postgres_restored_at", "redis_restored_at", "llm_restored_at"):
        out.pop(key, None)
    return out


def per_phase(load: load_generator.Load, db_url: str, health: list) -> list[dict]:
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id::text, conversation_id, kind, cached FROM interactions")).all()
    finally:
        engine.dispose()
    by_conversation = defaultdict(list)
    ids = set()
    for row in rows:
        by_conversation[row.conversation_id].append(row)
        ids.add(row.id)
    phases = []
    for name in dict.fromkeys(q.phase for q in load.questions.values()):
        if name == "warmup":
            continue
        qs = [q for q in load.questions.values() if q.phase == name]
        acked = [q for q in qs if q.status in (200, 202)]
        real = [q for q in acked if any(a[1] for a in q.answers)]
        apologies = [q for q in acked if q.answers and not any(a[1] for a in q.answers)]
        duplicated = [q for q in acked if len(q.answers) > 1]
        redelivered_dups = [q for q in duplicated if q.deliveries > 1]
        no_row = []
        kinds: Counter = Counter()
        for q in real:
            found = by_conversation.get(q.conversation, [])
            if q.platform == "slack":
                answer_ids = {a[3]["elements"][0]["positive_button"]["value"].split(":", 1)[1] for a in q.answers if a[1]}
                missing = not answer_ids <= ids
            else:
                missing = not found
            if missing:
                no_row.append(q.key)
        for q in acked:
            for row in by_conversation.get(q.conversation, []):
                kinds[row.kind + ("/cached" if row.cached else "")] += 1
        clicks = [c for c in load.clicks if c.phase == name]
        phase_requests = [r for r in load.requests if r.phase == name]
        questions_acks = [r.ms for r in phase_requests if r.target in ("slack_event", "teams_message") and r.ms
                          and r.status and r.status < 300]
        phases.append({
            "phase": name,
            "events_sent": len(phase_requests),
            "events_acked": sum(1 for r in phase_requests if r.status and r.status < 300),
            "event_errors": dict(Counter(r.error or str(r.status) for r in phase_requests
                                         if not (r.status and r.status < 300))),
            "ack_ms": percentiles(questions_acks),
            "questions": len(qs),
            "answered": sum(1 for q in acked if q.answers),
            "real_answers": len(real),
            "apologies": len(apologies),
            "apology_samples": sorted(Counter(a[2][:60] for q in apologies for a in q.answers).items())[:3],
            "lost": [q.key for q in acked if not q.answers],
            "duplicated": len(duplicated),
            "duplicated_redeliveries": len(redelivered_dups),
            "duplicated_single_delivery": [q.key for q in duplicated if q.deliveries == 1],
            "interactions_recorded": sum(len(by_conversation.get(q.conversation, [])) for q in acked),
            "real_answers_without_row": no_row,
            "kinds": dict(kinds),
            "e2e_ms": percentiles(load_results.e2e_latencies(acked)),
            "feedback_clicks": len(clicks),
            "feedback_saved": sum(1 for c in clicks if c.outcome == "saved"),
            "feedback_refused_user_told": sum(1 for c in clicks if c.outcome and c.outcome.startswith("refused")),
            "feedback_lost": [f"{c.platform}:{c.question}" for c in clicks if c.outcome == "missing"],
            "healthz": dict(Counter(h[2] for h in health if h[0] == name)),
        })
    return phases


def recovery_times(load: load_generator.Load, out: dict) -> dict:
    """After each repair: seconds until the first real answer to a question sent after it, and how many
    questions sent after the repair still got an apology."""
    result = {}
    for name, key in (("postgres", "postgres_restored_at"), ("redis", "redis_restored_at"), ("llm", "llm_restored_at")):
        restored = out.get(key)
        if restored is None:
            continue
        after = sorted((q for q in load.questions.values() if q.sent >= restored and q.answers), key=lambda q: q.sent)
        first_real = next((q for q in after if any(a[1] for a in q.answers)), None)
        result[name] = {
            "first_real_answer_after_repair_s": round(first_real.answers[0][0] - restored, 2) if first_real else None,
            "apologies_to_questions_sent_after_repair": sum(1 for q in after if not any(a[1] for a in q.answers)),
        }
    return result


def transitions(health: list, origin: float) -> list:
    out, last = [], None
    for phase, t, status in health:
        if status != last:
            out.append({"at_s": round(t - origin, 2), "phase": phase, "healthz": status})
            last = status
    return out


NOTES = {
    "baseline": "Everything up: each question one real answer and one interaction row; each click one feedback row.",
    "postgres down": (
        "Events are still acknowledged (Slack and Teams acks need neither PostgreSQL nor the answer). A question "
        "that reaches the core while PostgreSQL is down gets the apology (Answer.kind 'error': \"Sorry, I couldn't "
        "look that up just now. Please try again in a minute, or contact …\"), without feedback buttons and not "
        "recorded. 'Loses nothing' here means: no question goes unanswered, every REAL answer has its row, and "
        "every vote is either saved or refused with a message (Slack); Teams votes that can't be saved are only "
        "logged. /healthz answers 503 'down'."),
    "postgres recovered": (
        "The pool's pre-ping replaces the dead connections: real answers again from the first question; votes on "
        "answers given before the outage are saved."),
    "redis down": (
        "Answers are computed uncached (cache misses: embedding, retrieval, LLM), the rate limit and the event "
        "dedupe fail open: a Slack retry or Teams redelivery arriving now is answered twice (counted as "
        "'duplicated_redeliveries'; by design). Interactions and feedback are unaffected (PostgreSQL). /healthz "
        "answers 200 'degraded'."),
    "redis recovered": "The redis client reconnects by itself; cache hits resume (SHUTDOWN SAVE kept the keys).",
    "llm 500s": (
        "Cache hits are served as before; a cache miss tries the LLM (the client's retries), then answers "
        "extractively (kind 'fallback', not cached) and is recorded. /healthz shows the LLM not ok within its 15 s "
        "check interval ('degraded', 200)."),
    "llm recovered": "LLM answers again for the next cache miss; fallback answers were not cached, so nothing stale.",
}


def report(result: dict) -> None:
    print_table("Fault actions", ["action", "at s", "took s"],
                [[a["action"], a["at_s"], a["took_s"]] for a in result["actions"]])
    rows = []
    for p in result["per_phase"]:
        rows.append([p["phase"], p["events_sent"], p["events_acked"], p["ack_ms"].get("p99"), p["questions"],
                     p["real_answers"], p["apologies"], len(p["lost"]),
                     f"{p['duplicated']} ({p['duplicated_redeliveries']} redeliv.)", p["interactions_recorded"],
                     len(p["real_answers_without_row"]), p["feedback_clicks"], p["feedback_saved"],
                     p["feedback_refused_user_told"], len(p["feedback_lost"])])
    print_table("Per phase (questions by the phase they were sent in)",
                ["phase", "events", "acked", "ack p99 ms", "questions", "real", "apology", "lost", "dup",
                 "rows", "real w/o row", "clicks", "fb saved", "fb refused", "fb lost"], rows)
    print_table("Answer kinds recorded, per phase", ["phase", "kinds"],
                [[p["phase"], ", ".join(f"{k}: {v}" for k, v in sorted(p["kinds"].items()))] for p in result["per_phase"]])
    print_table("/healthz during each phase (polled every 0.5 s)", ["phase", "answers seen"],
                [[p["phase"], "; ".join(f"{k} ×{v}" for k, v in p["healthz"].items())] for p in result["per_phase"]])
    print_table("/healthz transitions", ["at s", "phase", "healthz"],
                [[t["at_s"], t["phase"], t["healthz"]] for t in result["health_transitions"]])
    print_table("Recovery after each repair", ["fault", "first real answer after repair (s)",
                                               "apologies to questions sent after repair"],
                [[k, v["first_real_answer_after_repair_s"], v["apologies_to_questions_sent_after_repair"]]
                 for k, v in result["recovery"].items()])
    c = result["checks"]
    fb = c["feedback"]
    unexpected_dups = sum(len(p["duplicated_single_delivery"]) for p in result["per_phase"])
    dups_outside_redis = sum(p["duplicated"] for p in result["per_phase"] if p["phase"] != "redis down")
    print_table("Overall", ["check", "value"], [
        ["questions acknowledged / answered", f"{c['acked']} / {c['acked'] - len(c['lost'])}"],
        ["lost (no reply at all)", len(c["lost"])],
        ["duplicated replies outside the Redis outage", dups_outside_redis],
        ["duplicated replies to a single delivery (never expected)", unexpected_dups],
        ["real answers without an interaction row", len(c["real_answers_without_row"])],
        ["apologies (not recorded by design)", c["apologies_without_row"]],
        ["feedback clicks acked / saved / refused (told) / lost", f"{fb['clicks_acked']} / {fb['recorded']} / "
                                                                  f"{fb['refused_told_user']} / {len(fb['missing'])}"],
        ["graceful stop (SIGTERM → exit)", f"{result['shutdown']['seconds']} s, exit {result['shutdown']['exit_code']}"],
        ["server log", ", ".join(f"{k}: {v}" for k, v in result["server_log"].get("levels", {}).items())],
    ])
    print_table("Server log warnings/errors (folded)", ["count", "message"],
                [[n, m] for m, n in result["server_log"].get("top", [])])
    print("\nWhat 'loses nothing' means, phase by phase:")
    for name, note in NOTES.items():
        print(f"- {name}: {note}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if os.environ.get("DATABASE_URL") or os.environ.get("REDIS_URL"):
        print("faults.py stops and starts PostgreSQL and Redis itself: unset DATABASE_URL and REDIS_URL",
              file=sys.stderr)
        return 2
    log(f"faults: concurrency {args.concurrency}, rate {args.rate}/s; load average {common.load_average()}")
    work = Path(tempfile.mkdtemp(prefix="pbfault"))
    pg = redis = fakes = server = None
    result: dict = {"benchmark": "faults", "config": vars(args), "machine": common.machine(),
                    "load_average_start": common.load_average()}
    try:
        pg = Postgres(prefix="pbl", say=log).start()
        redis = Redis(say=log).start()
        fakes = fakes_process.Fakes(args.llm_delay, work / "fakes.log", args.llm_first_token,
                                    args.llm_tokens_per_s).start()
        db_url = pg.create_database("faults")
        env = bot_server.bot_env(db_url, redis.url, fakes, work / "home")
        log("ingesting the sample handbook (policybot ingest)")
        result["ingest_s"] = round(bot_server.ingest_handbook(env), 1)
        server = bot_server.BotServer(env, work / "server.log", answer_workers=args.answer_workers)
        result["server_start_s"] = round(server.start(), 1)
        log(f"policybot serve (pid {server.pid}) healthy at {server.url}")
        result.update(asyncio.run(run_faults(args, server, fakes, db_url, pg, redis)))
        result["load_average_end"] = common.load_average()
        result["notes"] = NOTES
        report(result)
        checks = result["checks"]
        for key in ("lost", "duplicated", "questions_without_row", "questions_with_extra_rows",
                    "real_answers_without_row"):
            checks[f"{key}_count"] = len(checks[key])
            checks[key] = checks[key][:20]
        checks["feedback"]["missing_count"] = len(checks["feedback"]["missing"])
        checks["feedback"]["missing"] = checks["feedback"]["missing"][:20]
        path = common.write_results("faults" + (f"-{args.tag}" if args.tag else ""), result)
        log(f"wrote {path}")
        print(f"server log: {work / 'server.log'}")
        return 0
    finally:
        bot_server.stop_everything([server] if server is not None else [], fakes, redis, pg)


if __name__ == "__main__":
    sys.exit(main())

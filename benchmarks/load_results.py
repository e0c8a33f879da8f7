"""What a load run measured and checked (benchmarks/load.py, benchmarks/faults.py): acknowledgement and
end-to-end latencies, the exactly-once checks against the fakes' records and the database (interactions,
feedback), interaction kinds per phase, and the server's /metrics (counters and histogram quantiles).
"""

from __future__ import annotations

import sys
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python benchmarks/NAME.py` from the repository root
    sys.path.insert(0, str(ROOT))

from benchmarks.common import percentiles  # noqa: E402
from benchmarks.load_generator import Load, Request  # noqa: E402

FEEDBACK_SAVE_FAILED = "couldn't save your feedback"  # in the Slack ephemeral reply to a vote that was not saved


def rate_window(requests: list[Request], start: float, end: float) -> list[Request]:
    return [r for r in requests if start <= r.t < end]


def latency_table(requests: list[Request]) -> dict:
    """Per target: count, errors, latency percentiles (ms) of the acknowledged ones."""
    out = {}
    by_target: dict[str, list[Request]] = defaultdict(list)
    for r in requests:
        by_target[r.target].append(r)
    for target, rs in sorted(by_target.items()):
        ok = [r.ms for r in rs if r.status is not None and 200 <= r.status < 300]
        out[target] = {"sent": len(rs), "acked": len(ok),
                       "errors": len(rs) - len(ok),
                       "error_kinds": dict(Counter(r.error or str(r.status) for r in rs
                                                   if not (r.status is not None and 200 <= r.status < 300))),
                       "latency_ms": percentiles(ok)}
    return out


def e2e_latencies(questions) -> list[float]:
    return [(q.answers[0][0] - q.sent) * 1000 for q in questions if q.answers]


def verify(load: Load, db_url: str) -> dict:
    """Exactly once, from three independent records: the fakes (answers posted per question), the interactions
    table (rows per question's conversation), the feedback table (a row per click)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT id::text, platform, conversation_id, kind, cached, message_ref, timings FROM interactions"
            )).all()
            votes = conn.execute(text(
                "SELECT f.interaction_id::text, f.user_id, f.platform, f.rating, i.conversation_id "
                "FROM feedback f JOIN interactions i ON i.id = f.interaction_id")).all()
    finally:
        engine.dispose()
    per_conversation: dict[str, list] = defaultdict(list)
    for row in rows:
        per_conversation[row.conversation_id].append(row)
    interaction_ids = {row.id for row in rows}

    result = {"questions": len(load.questions), "acked": 0, "answered_once": 0, "lost": [], "duplicated": [],
              "ack_failed": 0, "real_answers": 0, "apologies": 0, "interaction_rows": len(rows),
              "rows_for_load_questions": 0, "questions_without_row": [], "questions_with_extra_rows": [],
              "real_answers_without_row": [], "apologies_without_row": 0, "stray_posts": len(load.stray_slack) + len(load.stray_teams)}
    kinds: Counter = Counter()
    for q in load.questions.values():
        if q.status not in (200, 202):
            result["ack_failed"] += 1
            continue
        result["acked"] += 1
        n = len(q.answers)
        if n == 0:
            result["lost"].append(q.key)
        elif n == 1:
            result["answered_once"] += 1
        else:
            result["duplicated"].append(q.key)
        real = any(a[1] for a in q.answers)
        result["real_answers" if real else "apologies"] += int(n > 0)
        found = per_conversation.get(q.conversation, [])
        result["rows_for_load_questions"] += len(found)
        for row in found:
            kinds[row.kind + (" (cached)" if row.cached else "")] += 1
        if real:
            if q.platform == "slack":
                ids = {a[3]["elements"][0]["positive_button"]["value"].split(":", 1)[1] for a in q.answers if a[1]}
                if not ids <= interaction_ids:
                    result["real_answers_without_row"].append(q.key)
            elif not any(r.kind in ("llm", "extractive", "fallback", "refusal") for r in found):
                result["real_answers_without_row"].append(q.key)
        if len(found) > 1:
            result["questions_with_extra_rows"].append(q.key)
        elif not found and real:
            result["questions_without_row"].append(q.key)
        elif not found and n:
            result["apologies_without_row"] += 1  # by design: the core records nothing when it can't answer
    result["kinds"] = dict(kinds)
    result["rows_as_expected"] = (not result["questions_with_extra_rows"] and not result["questions_without_row"]
                                  and result["rows_for_load_questions"]
                                  == result["acked"] - len(result["lost"]) - result["apologies_without_row"])

    vote_keys = {(v.conversation_id, v.rating): v for v in votes}
    clicks_ok = [c for c in load.clicks if c.status in (200, 202)]
    feedback = {"clicks": len(load.clicks), "clicks_acked": len(clicks_ok), "feedback_rows": len(votes),
                "recorded": 0, "missing": [], "refused_told_user": 0}
    slack_refused = {(e["ch"], e["th"], e["u"]) for e in load.ephemerals if FEEDBACK_SAVE_FAILED in e["txt"]}
    for c in clicks_ok:
        q = load.questions[c.question]
        vote = vote_keys.get((q.conversation, c.rating))
        if vote is not None and vote.user_id == q.user:
            feedback["recorded"] += 1
            c.outcome = "saved"
        elif c.platform == "slack" and (q.key.rsplit(":", 1)[0], q.key.rsplit(":", 1)[1], q.user) in slack_refused:
            feedback["refused_told_user"] += 1
            c.outcome = "refused (user told to try again)"
        else:
            feedback["missing"].append({"platform": c.platform, "question": c.question, "phase": c.phase})
            c.outcome = "missing"
    result["feedback"] = feedback
    result["stage_timings_ms"] = stage_timings(rows)
    return result


def stage_timings(rows) -> dict:
    """Per answer stage (the core's own timings_ms, recorded with every interaction), cached vs not."""
    out = {}
    for label, keep in (("cache hit", lambda r: r.cached), ("cache miss", lambda r: not r.cached)):
        stages: dict[str, list[float]] = defaultdict(list)
        for row in rows:
            if keep(row) and isinstance(row.timings, dict):
                for stage, ms in row.timings.items():
                    stages[stage].append(float(ms))
        out[label] = {stage: percentiles(values) for stage, values in sorted(stages.items())}
    return out


def apply_kinds(load: Load, db_url: str) -> dict[str, Counter]:
    """Interaction kinds per phase (llm, fallback, extractive, cached...)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT conversation_id, kind, cached FROM interactions")).all()
    finally:
        engine.dispose()
    out: dict[str, Counter] = defaultdict(Counter)
    for row in rows:
        q = load.by_conversation.get(row.conversation_id)
        if q is not None:
            out[q.phase][row.kind + ("/cached" if row.cached else "")] += 1
    return out


# --------------------------------------------------------------------------------------- /metrics


def scrape_metrics(base_url: str) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(base_url + "/metrics", timeout=10) as response:
        body = response.read().decode()
    samples: dict[str, float] = {}
    histograms: dict[str, dict] = defaultdict(lambda: defaultdict(dict))
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()) if k != "le")
            if s.name.endswith("_bucket"):
                histograms[s.name[:-7]][labels][float(s.labels["le"])] = s.value
            else:
                samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    quantiles, flat = {}, {}
    for name, series in histograms.items():
        for labels, buckets in series.items():
            key = f"{name}{{{labels}}}" if labels else name
            flat[key] = dict(buckets)
            quantiles[key] = {q: _bucket_quantile(buckets, q) for q in ("p50", "p95", "p99")}
    return {"samples": samples, "histogram_quantiles_s": quantiles, "histogram_buckets": flat}


def scrape_all(base_urls: list[str]) -> dict:
    """/metrics of every server, summed (counters and histogram buckets; a gauge's sum means nothing)."""
    merged: dict = {"samples": defaultdict(float), "histogram_buckets": defaultdict(lambda: defaultdict(float))}
    for url in base_urls:
        one = scrape_metrics(url)
        for key, value in one["samples"].items():
            merged["samples"][key] += value
        for key, buckets in one["histogram_buckets"].items():
            for le, count in buckets.items():
                merged["histogram_buckets"][key][le] += count
    merged["histogram_quantiles_s"] = {key: {q: _bucket_quantile(dict(b), q) for q in ("p50", "p95", "p99")}
                                       for key, b in merged["histogram_buckets"].items()}
    return merged


def _bucket_quantile(buckets: dict[float, float], q: str) -> float | None:
    """Prometheus-style histogram_quantile (linear within the bucket)."""
    quantile = {"p50": 0.5, "p95": 0.95, "p99": 0.99}[q]
    edges = sorted(buckets)
    total = buckets[edges[-1]] if edges else 0
    if not total:
        return None
    rank = quantile * total
    previous_edge, previous_count = 0.0, 0.0
    for edge in edges:
        count = buckets[edge]
        if count >= rank:
            if edge == float("inf"):
                return previous_edge
            width = count - previous_count
            return round(previous_edge + (edge - previous_edge) * ((rank - previous_count) / width if width else 1), 4)
        previous_edge, previous_count = edge, count
    return None


def metric_delta(after: dict, before: dict, prefix: str) -> dict:
    return {k: round(v - before["samples"].get(k, 0.0), 3) for k, v in after["samples"].items()
            if k.startswith(prefix) and not k.endswith("_created")}

"""Prometheus metrics, updated by the core and the adapters, exposed by `policybot serve` on /metrics."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40)

requests = Counter("policybot_requests", "HTTP requests by platform and status", ["platform", "status"],
                   registry=REGISTRY)
request_seconds = Histogram("policybot_request_seconds", "HTTP request latency by platform", ["platform"],
                            buckets=_LATENCY, registry=REGISTRY)
answers = Counter("policybot_answers", "Answers by kind", ["kind", "platform"], registry=REGISTRY)
cache_lookups = Counter("policybot_cache_lookups", "Answer cache lookups", ["result"], registry=REGISTRY)
cache_hit_ratio = Gauge("policybot_cache_hit_ratio", "Answer cache hits / lookups since start (with several "
                        "workers: the worker that looked up last)", registry=REGISTRY,
                        multiprocess_mode="mostrecent")
answer_seconds = Histogram("policybot_answer_seconds", "Whole answer latency in the core", buckets=_LATENCY,
                           registry=REGISTRY)
retrieval_seconds = Histogram("policybot_retrieval_seconds", "Hybrid retrieval latency", buckets=_LATENCY,
                              registry=REGISTRY)
llm_seconds = Histogram("policybot_llm_seconds", "LLM call latency", buckets=_LATENCY, registry=REGISTRY)
llm_tokens = Counter("policybot_llm_tokens", "LLM tokens", ["type"], registry=REGISTRY)
llm_failures = Counter("policybot_llm_failures", "LLM calls that failed (extractive fallback used)", registry=REGISTRY)
llm_fallbacks = Counter("policybot_llm_fallbacks", "Extractive fallbacks by reason (no_citation, timeout, "
                        "breaker_open, ...)", ["reason"], registry=REGISTRY)
breaker_open = Gauge("policybot_llm_breaker_open", "1 while the model's circuit breaker is open (extractive answers)",
                     ["model"], registry=REGISTRY, multiprocess_mode="mostrecent")
breaker_transitions = Counter("policybot_llm_breaker_transitions", "Circuit breaker openings and closings",
                              ["state"], registry=REGISTRY)
feedback = Counter("policybot_feedback", "Feedback votes recorded", ["rating", "platform"], registry=REGISTRY)
ingestions = Counter("policybot_ingestions", "Document uploads by result", ["status"], registry=REGISTRY)
rate_limited = Counter("policybot_rate_limited", "Questions refused by the per-user rate limit", registry=REGISTRY)
first_text_seconds = Histogram("policybot_first_text_seconds", "Time from taking a question to the first answer "
                               "text the asker can see (the first streamed words, or the whole answer), by platform "
                               "and whether it was streamed", ["platform", "streamed"], buckets=_LATENCY,
                               registry=REGISTRY)
events_deduplicated = Counter("policybot_events_deduplicated", "Platform events dropped as duplicates",
                              ["platform"], registry=REGISTRY)


def exposed_registry() -> CollectorRegistry:
    """What /metrics shows: this process's metrics, or with `serve --workers N` (PROMETHEUS_MULTIPROC_DIR set
    by the supervisor) the sum over all workers, whichever one answers the scrape."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def observe_cache(hit: bool) -> None:
    cache_lookups.labels("hit" if hit else "miss").inc()
    hits = cache_lookups.labels("hit")._value.get()
    misses = cache_lookups.labels("miss")._value.get()
    cache_hit_ratio.set(hits / (hits + misses) if hits + misses else 0.0)


def observe_answer(kind: str, platform: str, timings_ms: dict[str, float], tokens: tuple[int | None, int | None]) -> None:
    answers.labels(kind, platform).inc()
    if "total" in timings_ms:
        answer_seconds.observe(timings_ms["total"] / 1000)
    if "retrieve" in timings_ms:
        retrieval_seconds.observe(timings_ms["retrieve"] / 1000)
    if "llm" in timings_ms:
        llm_seconds.observe(timings_ms["llm"] / 1000)
    if tokens[0]:
        llm_tokens.labels("prompt").inc(tokens[0])
    if tokens[1]:
        llm_tokens.labels("completion").inc(tokens[1])


def observe_first_text(platform: str, seconds: float, streamed: bool) -> None:
    first_text_seconds.labels(platform, "yes" if streamed else "no").observe(seconds)

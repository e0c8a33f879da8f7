"""/healthz and /metrics on the real aiohttp app (real PostgreSQL and Redis behind it)."""

import asyncio

import redis
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import create_engine

from adapters.platforms import PLATFORMS
from adapters.server import build_app
from knowledge.ingest import ingest_file
from tests.helpers import write


def _get(app, path):
    async def go():
        async with TestClient(TestServer(app)) as client:
            response = await client.get(path)
            return response.status, await response.text(), response.headers.get("Content-Type", "")
    return asyncio.run(go())


def test_healthz_ok_degraded_and_down(policybot, runtime):
    status, body, _ = _get(build_app(policybot, PLATFORMS), "/healthz")
    assert status == 200 and '"postgres": {"ok": true' in body and '"status": "ok"' in body

    healthy_redis = runtime.redis
    runtime.redis = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    status, body, _ = _get(build_app(policybot, PLATFORMS), "/healthz")
    assert status == 200 and '"status": "degraded"' in body and '"redis": {"ok": false' in body
    runtime.redis = healthy_redis

    runtime.engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 1})
    status, body, _ = _get(build_app(policybot, PLATFORMS), "/healthz")
    assert status == 503 and '"status": "down"' in body and '"postgres": {"ok": false' in body


def test_metrics_exposes_answer_and_cache_counters(policybot, runtime, tmp_path):
    ingest_file(runtime.sessions, runtime.embedder, write(tmp_path / "leave.md",
                "# Leave\n\n## Vacation\nEmployees get 25 days of paid vacation each year."))
    policybot.answer("How many vacation days do I get?", "U1", "slack")
    policybot.answer("How many vacation days do I get?", "U1", "slack")
    status, body, content_type = _get(build_app(policybot, PLATFORMS), "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    assert 'policybot_answers_total{kind="extractive",platform="slack"}' in body
    assert 'policybot_cache_lookups_total{result="hit"}' in body
    assert "policybot_cache_hit_ratio" in body and "policybot_retrieval_seconds_bucket" in body

"""Health of the parts the bot depends on, for /healthz. PostgreSQL is required; Redis and the LLM degrade."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import text

from bot.breaker import Breaker
from bot.runtime import Runtime

LLM_CHECK_EVERY_S = 15.0  # the endpoint is asked at most this often, however often /healthz is polled


@dataclass(frozen=True)
class PartStatus:
    ok: bool
    required: bool
    detail: str


class HealthChecker:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._llm: tuple[float, PartStatus] | None = None
        self.breaker = Breaker.from_settings(runtime.redis, runtime.settings)

    def check(self) -> dict[str, PartStatus]:
        return {"postgres": self._postgres(), "redis": self._redis(), "llm": self._llm_status()}

    def _postgres(self) -> PartStatus:
        try:
            with self.runtime.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return PartStatus(True, True, "ok")
        except Exception as err:
            return PartStatus(False, True, type(err).__name__)

    def _redis(self) -> PartStatus:
        try:
            self.runtime.redis.ping()
            return PartStatus(True, False, "ok")
        except Exception as err:
            return PartStatus(False, False, f"{type(err).__name__}: answering uncached")

    def _llm_status(self) -> PartStatus:
        if self.runtime.openai is None:
            return PartStatus(True, False, "not configured: extractive answers")
        opened = self._open_breakers()
        if opened:  # the endpoint may answer /models fine while the model's replies are unusable
            return PartStatus(False, False, "; ".join(state.describe() for state in opened))
        now = time.monotonic()
        if self._llm and now - self._llm[0] < LLM_CHECK_EVERY_S:
            return self._llm[1]
        try:
            self.runtime.openai.with_options(timeout=3.0, max_retries=0).models.list()
            status = PartStatus(True, False, "ok")
        except Exception as err:
            status = PartStatus(False, False, f"{type(err).__name__}: extractive fallback")
        self._llm = (now, status)
        return status


    def _open_breakers(self):
        try:
            return self.breaker.open_states() if self.breaker.enabled else []
        except Exception:  # Redis down: its own part says so; the breaker is closed without it
            return []


def summary(parts: dict[str, PartStatus]) -> tuple[bool, dict]:
    healthy = all(p.ok for p in parts.values() if p.required)
    body = {
        "status": "ok" if healthy and all(p.ok for p in parts.values()) else ("degraded" if healthy else "down"),
        "parts": {name: {"ok": p.ok, "required": p.required, "detail": p.detail} for name, p in parts.items()},
    }
    return healthy, body

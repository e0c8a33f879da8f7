"""A circuit breaker around the LLM call, one per model.

    closed ──(N consecutive failures or uncited replies)──► open ──(cooldown passes)──► one probe
      ▲                                                       ▲                            │
      └──────────────────── the probe's reply is used ────────┴──── the probe fails ───────┘

While open, the core answers extractively without calling the model (reason "breaker_open"), so a model that
keeps timing out costs one timeout per cooldown instead of one per question. After the cooldown exactly one
question (across all processes: a Redis SET NX claim) is let through as the probe.

The state lives in Redis, not in the process: `serve --workers N`, the Slack and Teams processes and the CLI
all talk to the same endpoint, so one breaker protects it for all of them and /healthz reports the same state
whichever worker answers. Per model, because a failing model says little about another one (a new promotion gets
its own chance). When Redis itself is down the breaker stays closed: answers go to the model as they would
without a breaker, never blocked by a missing cache.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from redis.exceptions import RedisError

from bot import metrics

log = logging.getLogger(__name__)

PREFIX = "policybot:breaker:"  # a hash per model: failures, open_until (epoch seconds)
PROBE_PREFIX = "policybot:breaker-probe:"
STATE_TTL_S = 7 * 24 * 3600  # a model nobody asks any more leaves no state behind


@dataclass(frozen=True)
class BreakerState:
    model: str
    failures: int  # consecutive
    open_until: float | None  # epoch seconds from which a probe may go through; None: closed

    @property
    def open(self) -> bool:
        return self.open_until is not None

    def describe(self) -> str:
        wait = max(0.0, (self.open_until or 0) - time.time())
        return (f"circuit breaker open for {self.model} after {self.failures} consecutive failures; "
                f"extractive answers until a probe succeeds (next probe in {wait:.0f}s)")


class Breaker:
    def __init__(self, redis, threshold: int, cooldown_s: float, probe_ttl_s: float = 60.0) -> None:
        """threshold 0 disables the breaker. probe_ttl_s: how long one probe's claim lasts (its longest answer)."""
        self.redis = redis
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.probe_ttl_s = max(1, int(probe_ttl_s + 0.999))

    @classmethod
    def from_settings(cls, redis, settings) -> "Breaker":
        longest = settings.llm_timeout_s * (settings.llm_max_retries + 1) + 5.0
        return cls(redis, settings.llm_breaker_failures, settings.llm_breaker_cooldown_s, longest)

    @property
    def enabled(self) -> bool:
        return self.threshold > 0

    def allow(self, model: str) -> bool:
        """Whether this question may call `model`: closed, or open with the cooldown over and this caller the probe."""
        if not self.enabled:
            return True
        try:
            open_until = self.redis.hget(PREFIX + model, "open_until")
            if open_until is None:
                return True
            if time.time() < float(open_until):
                return False
            return bool(self.redis.set(PROBE_PREFIX + model, "1", nx=True, ex=self.probe_ttl_s))
        except (RedisError, ValueError) as err:
            log.warning("circuit breaker state unreadable (%s); calling the model", type(err).__name__)
            return True

    def is_open(self, model: str) -> bool:
        """Open (cooling down or probing), without claiming the probe: for calls that must not use it up."""
        if not self.enabled:
            return False
        try:
            return self.redis.hget(PREFIX + model, "open_until") is not None
        except RedisError:
            return False

    def success(self, model: str) -> None:
        if not self.enabled:
            return
        try:
            pipe = self.redis.pipeline(transaction=False)  # one round trip on every good answer
            pipe.hget(PREFIX + model, "open_until")
            pipe.delete(PREFIX + model, PROBE_PREFIX + model)
            was_open = pipe.execute()[0] is not None
        except RedisError:
            return
        if was_open:
            log.info("circuit breaker for %s closed: the probe succeeded", model)
            metrics.breaker_transitions.labels("closed").inc()
            metrics.breaker_open.labels(model).set(0)

    def failure(self, model: str) -> None:
        """A failed call or an unusable (uncited, looping, cut-off) reply."""
        if not self.enabled:
            return
        key = PREFIX + model
        try:
            failures = int(self.redis.hincrby(key, "failures", 1))
            probing = self.redis.hget(key, "open_until") is not None
            self.redis.expire(key, STATE_TTL_S)
            if failures < self.threshold and not probing:
                return
            self.redis.hset(key, "open_until", time.time() + self.cooldown_s)
            self.redis.delete(PROBE_PREFIX + model)
        except RedisError:
            return
        if not probing:
            log.warning("circuit breaker for %s opened after %d consecutive failures", model, failures)
            metrics.breaker_transitions.labels("opened").inc()
        metrics.breaker_open.labels(model).set(1)

    def state(self, model: str) -> BreakerState:
        data = self.redis.hgetall(PREFIX + model) or {}
        return _state(model, data)

    def open_states(self) -> list[BreakerState]:
        """Every open breaker (for /healthz). Raises RedisError when Redis is down."""
        found = []
        for key in self.redis.scan_iter(match=PREFIX + "*", count=100):
            key = key.decode() if isinstance(key, bytes) else key
            state = _state(key[len(PREFIX):], self.redis.hgetall(key) or {})
            if state.open:
                found.append(state)
        return sorted(found, key=lambda s: s.model)


def _state(model: str, data: dict) -> BreakerState:
    data = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in data.items()}
    open_until = data.get("open_until")
    return BreakerState(model, int(data.get("failures") or 0), float(open_until) if open_until else None)

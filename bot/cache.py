"""The Redis answer cache. Keys cover the normalized question, corpus version, active model, prompt version and
the audiences the answer could read, so a document change or a model promotion is visible to the very next
question, and an answer built from restricted documents is only ever served to readers of the same audiences.
Redis being down never fails an answer: the cache just misses, and that is logged."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import redis

from bot import ratelimit

log = logging.getLogger(__name__)

_PUNCT = re.compile(r"[^\w\s]+", re.UNICODE)
_SPACE = re.compile(r"\s+")
_LOG_EVERY_S = 30.0


def normalize_question(question: str) -> str:
    """Case, punctuation and spacing do not make a different question."""
    return _SPACE.sub(" ", _PUNCT.sub(" ", question.lower())).strip()


def cache_key(question: str, corpus_version: int, model: str, prompt_version: str,
              audiences: Sequence[str] = ("everyone",)) -> str:
    digest = hashlib.sha256(
        "\x1f".join((normalize_question(question), str(corpus_version), model, prompt_version,
                     ",".join(sorted(set(audiences))))).encode()
    ).hexdigest()
    return f"policybot:answer:{digest}"


@dataclass(frozen=True)
class Lookup:
    """What one `lookup` found: whether the rate limit allows the question, the cached answer (or None), and
    whether the caller claimed computing it (single flight)."""
    allowed: bool
    hit: dict | None
    claimed: bool


# One round trip for what a question needs of Redis before it is answered: the rate limit (when given, as
# KEYS[3]), the cached answer, and on a miss the claim. A refused question reads and claims nothing.
_LOOKUP = ratelimit.RATE_LUA + """
if #KEYS == 3 and not rate_allows(KEYS[3], ARGV[2], ARGV[3]) then return {0, false, 0} end
local raw = redis.call('GET', KEYS[1])
if raw then return {1, raw, 0} end
if redis.call('SET', KEYS[2], 1, 'NX', 'PX', ARGV[1]) then return {1, false, 1} end
return {1, false, 0}
"""


class AnswerCacheProtocol(Protocol):
    """What the core needs of an answer cache (PolicyBot's `cache` argument): AnswerCache in production;
    evaluation passes one that never hits. Values are `Answer.to_cache()` dicts."""

    def get(self, key: str) -> dict | None: ...

    def lookup(self, key: str, claim_ttl_s: float, rate: ratelimit.Check | None = None) -> Lookup: ...

    def put(self, key: str, value: dict) -> None: ...

    def claim(self, key: str, ttl_s: float) -> bool: ...

    def release(self, key: str) -> None: ...

    def wait(self, key: str, timeout_s: float) -> dict | None: ...


class AnswerCache:
    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self._last_error_log = 0.0
        self._lookup = client.register_script(_LOOKUP)  # EVALSHA, the script sent once

    def get(self, key: str) -> dict | None:
        try:
            raw = self.client.get(key)
        except redis.RedisError as err:
            self._log_down(err)
            return None
        return json.loads(raw) if raw else None

    def lookup(self, key: str, claim_ttl_s: float, rate: ratelimit.Check | None = None) -> Lookup:
        """`rate` counted (ratelimit.allow), then `get`, then on a miss `claim`, in one Redis round trip. Redis
        down: allowed, a miss, claimed (as each of them alone)."""
        keys = [key, _claim_key(key)] + ([rate.key] if rate is not None else [])
        args = [int(claim_ttl_s * 1000)] + ([rate.per_minute, ratelimit.WINDOW_TTL_S] if rate is not None else [])
        try:
            allowed, raw, claimed = self._lookup(keys=keys, args=args)
        except redis.RedisError as err:
            if rate is not None:
                ratelimit.unavailable(err)
            self._log_down(err)
            return Lookup(True, None, True)
        return Lookup(bool(allowed), json.loads(raw) if raw else None, bool(claimed))

    def put(self, key: str, value: dict) -> None:
        try:
            self.client.set(key, json.dumps(value), ex=self.ttl_s)
        except redis.RedisError as err:
            self._log_down(err)

    # Single flight: when many people ask the same question at once (after an announcement, or right after a
    # policy change emptied the cache) one of them computes the answer and the others wait for it in the cache,
    # instead of each running retrieval and an LLM call.

    def claim(self, key: str, ttl_s: float) -> bool:
        """True when the caller should compute the answer for `key` (nobody else is); with Redis down, True."""
        try:
            return bool(self.client.set(_claim_key(key), 1, nx=True, px=int(ttl_s * 1000)))
        except redis.RedisError as err:
            self._log_down(err)
            return True

    def release(self, key: str) -> None:
        try:
            self.client.delete(_claim_key(key))
        except redis.RedisError as err:
            self._log_down(err)

    def wait(self, key: str, timeout_s: float, poll_s: float = 0.05) -> dict | None:
        """The answer someone else is computing, once it is cached; None when it isn't cached by the time their
        claim ends (an answer that is never cached, a failure) or `timeout_s` passes."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            time.sleep(poll_s)
            try:
                raw, computing = self.client.pipeline(transaction=False).get(key).exists(_claim_key(key)).execute()
            except redis.RedisError as err:
                self._log_down(err)
                return None
            if raw:
                return json.loads(raw)
            if not computing:
                return None
        return None

    def _log_down(self, err: Exception) -> None:
        now = time.monotonic()
        if now - self._last_error_log > _LOG_EVERY_S:  # once per period, not once per question
            self._last_error_log = now
            log.warning("answer cache unavailable (answering uncached): %s", err)


def _claim_key(key: str) -> str:
    return key + ":computing"

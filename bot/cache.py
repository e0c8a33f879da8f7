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
from typing import Protocol

import redis

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


class AnswerCacheProtocol(Protocol):
    """What the core needs of an answer cache (PolicyBot's `cache` argument): AnswerCache in production;
    evaluation passes one that never hits. Values are `Answer.to_cache()` dicts."""

    def get(self, key: str) -> dict | None: ...

    def put(self, key: str, value: dict) -> None: ...

    def claim(self, key: str, ttl_s: float) -> bool: ...

    def release(self, key: str) -> None: ...

    def wait(self, key: str, timeout_s: float) -> dict | None: ...


class AnswerCache:
    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self._last_error_log = 0.0

    def get(self, key: str) -> dict | None:
        try:
            raw = self.client.get(key)
        except redis.RedisError as err:
            self._log_down(err)
            return None
        return json.loads(raw) if raw else None

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
            return bool(self.client.set(key + ":computing", 1, nx=True, px=int(ttl_s * 1000)))
        except redis.RedisError as err:
            self._log_down(err)
            return True

    def release(self, key: str) -> None:
        try:
            self.client.delete(key + ":computing")
        except redis.RedisError as err:
            self._log_down(err)

    def wait(self, key: str, timeout_s: float, poll_s: float = 0.05) -> dict | None:
        """The answer someone else is computing, once it is cached; None when it isn't cached by the time their
        claim ends (an answer that is never cached, a failure) or `timeout_s` passes."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            time.sleep(poll_s)
            try:
                raw, computing = self.client.pipeline(transaction=False).get(key).exists(key + ":computing").execute()
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

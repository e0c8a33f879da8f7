"""What the adapters remember about chat turns, in Redis, behind plain calls: which platform events were already
taken (retries and redeliveries are answered once, across processes) and which threads the bot answered in (so a
reply there needn't mention it). Adapters call these through `PolicyBot.events`; they never hold the Redis client.

All of it can be lost: with Redis down an event is taken (answering twice beats not answering) and a thread
counts as not answered in.
"""

from __future__ import annotations

import logging

import redis

from bot import dedupe
from bot.interactions import HISTORY_WINDOW

log = logging.getLogger(__name__)


class PlatformEvents:
    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def claim_event(self, platform: str, event_id: str) -> bool:
        """True for the first claim of (platform, event_id) in any process; False for every later one."""
        return dedupe.claim(self._redis, platform, event_id)

    def mark_thread_answered(self, platform: str, conversation: str, thread: str) -> None:
        """Remember that the bot answered in this thread for as long as follow-ups use its history."""
        try:
            self._redis.set(_thread_key(platform, conversation, thread), 1, ex=int(HISTORY_WINDOW.total_seconds()))
        except redis.RedisError as err:
            log.warning("could not remember thread %s:%s: %s", conversation, thread, err)

    def answered_in_thread(self, platform: str, conversation: str, thread: str) -> bool:
        try:
            return bool(self._redis.exists(_thread_key(platform, conversation, thread)))
        except redis.RedisError:
            return False


def _thread_key(platform: str, conversation: str, thread: str) -> str:
    # The key Slack threads have always used (policybot:slack:thread:CHANNEL:TS): marks survive an upgrade.
    return f"policybot:{platform}:thread:{conversation}:{thread}"

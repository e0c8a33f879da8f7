"""What the adapters remember about chat turns, in Redis, behind plain calls: which platform events were already
taken (retries and redeliveries are answered once, across processes) and which threads the bot answered in (so a
reply there needn't mention it). Adapters call these through `PolicyBot.events`; they never hold the Redis client.

The calls are coroutines for the adapters' event loop (redis.asyncio), so an acknowledgement does not hop to a
thread for one Redis command. The async client is made per event loop (a redis.asyncio connection belongs to
the loop that opened it), on the server of the core's Redis client.

All of it can be lost: with Redis down an event is taken (answering twice beats not answering) and a thread
counts as not answered in.
"""

from __future__ import annotations

import asyncio
import logging
import weakref

import redis
import redis.asyncio as aioredis

from bot import dedupe
from bot.interactions import HISTORY_WINDOW

log = logging.getLogger(__name__)

_THREAD_TTL_S = int(HISTORY_WINDOW.total_seconds())
_SAME_SERVER = ("host", "port", "db", "username", "password", "socket_timeout", "socket_connect_timeout",
                "ssl_keyfile", "ssl_certfile", "ssl_cert_reqs", "ssl_ca_certs", "ssl_check_hostname")


class PlatformEvents:
    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = \
            weakref.WeakKeyDictionary()

    async def claim_event(self, platform: str, event_id: str) -> bool:
        """True for the first claim of (platform, event_id) in any process; False for every later one."""
        return await dedupe.claim(self._loop_client(), platform, event_id)

    async def mark_thread_answered(self, platform: str, conversation: str, thread: str) -> None:
        """Remember that the bot answered in this thread for as long as follow-ups use its history."""
        try:
            await self._loop_client().set(_thread_key(platform, conversation, thread), 1, ex=_THREAD_TTL_S)
        except (redis.RedisError, OSError) as err:
            log.warning("could not remember thread %s:%s: %s", conversation, thread, err)

    async def answered_in_thread(self, platform: str, conversation: str, thread: str) -> bool:
        try:
            return bool(await self._loop_client().exists(_thread_key(platform, conversation, thread)))
        except (redis.RedisError, OSError):
            return False

    async def aclose(self) -> None:
        """Close the running loop's async client (at shutdown)."""
        client = self._async.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    def _loop_client(self) -> aioredis.Redis:
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            client = self._async[loop] = async_twin(self._redis)
        return client


def async_twin(client: redis.Redis) -> aioredis.Redis:
    """A redis.asyncio client on the same server, database and timeouts as `client` (TCP, TLS or unix socket)."""
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    same = {k: kwargs[k] for k in _SAME_SERVER if k in kwargs}
    if "path" in kwargs:  # a unix socket (the embedded Redis)
        same = {k: v for k, v in same.items() if not k.startswith("ssl") and k not in ("host", "port")}
        return aioredis.Redis(unix_socket_path=kwargs["path"], **same)
    return aioredis.Redis(ssl=issubclass(pool.connection_class, redis.SSLConnection), **same)


def _thread_key(platform: str, conversation: str, thread: str) -> str:
    # The key Slack threads have always used (policybot:slack:thread:CHANNEL:TS): marks survive an upgrade.
    return f"policybot:{platform}:thread:{conversation}:{thread}"

"""Questions handed from the web processes to answer-worker processes through a Redis stream.

With `policybot serve --answer-workers M` the web processes only acknowledge: a Slack question or a Teams
message activity is verified, added to the stream `policybot:turns` and answered 200/202, and one of the M
answer workers (adapters.answer_worker, at a lower CPU priority) takes it from the consumer group, runs the same
adapter code as the single-process server would (SlackAdapter.answer, the Teams turn) and acknowledges it in
the stream. The web processes therefore keep answering Slack within its 3 s even when answering is CPU-bound
(benchmarks/README.md, load test).

- A worker that dies leaves its turns pending; another worker claims those idle for RECLAIM_IDLE_MS. The
  platforms' event ids are claimed in Redis before answering (bot.dedupe), so a reclaimed turn that was already
  answered is not answered twice.
- Redis down: put() returns False and the web process answers the turn itself, as without workers. Turns
  waiting in the stream survive a Redis restart only if Redis persists its data (appendonly yes, as in
  docker-compose.yml); the workers recreate the consumer group if it is gone.
- The stream is capped (MAX_LEN, approximate) so acknowledged turns don't accumulate.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from typing import Awaitable, Callable

import redis
import redis.asyncio as aioredis

log = logging.getLogger(__name__)

STREAM = "policybot:turns"
GROUP = "answer-workers"
MAX_LEN = 100_000
RECLAIM_IDLE_MS = 60_000
BATCH = 32

Handler = Callable[[dict], Awaitable[None]]


class TurnQueue:
    """The web processes' side: put a turn on the stream."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    @classmethod
    def from_url(cls, url: str) -> "TurnQueue":
        return cls(aioredis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5))

    async def put(self, kind: str, payload: dict) -> bool:
        """True once the turn is in the stream; False (logged) when Redis can't take it."""
        try:
            await self.client.xadd(STREAM, {"kind": kind, "payload": json.dumps(payload)}, maxlen=MAX_LEN,
                                   approximate=True)
            return True
        except (redis.RedisError, OSError) as err:
            log.warning("turn queue unavailable (%s); answering in the web process", err)
            return False

    async def close(self) -> None:
        await self.client.aclose()


async def ensure_group(client: aioredis.Redis) -> None:
    try:
        await client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except redis.ResponseError as err:
        if "BUSYGROUP" not in str(err):
            raise


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


async def consume(client: aioredis.Redis, handlers: dict[str, Handler], stop: asyncio.Event,
                  concurrency: int = 64, consumer: str | None = None) -> None:
    """Take turns from the stream and run them, at most `concurrency` at once, until `stop` is set and the
    stream has no new turns; then finish the turns taken. A turn is acknowledged when its handler returns or fails (a failure is
    logged; retrying a half-answered turn could post twice)."""
    consumer = consumer or consumer_name()
    await ensure_group(client)
    slots = asyncio.Semaphore(concurrency)
    running: set[asyncio.Task] = set()

    async def run(entry_id: str, fields: dict) -> None:
        try:
            kind = _text(fields.get(b"kind"))
            handler = handlers.get(kind)
            if handler is None:
                log.error("no handler for queued turn %s of kind %r; dropping it", entry_id, kind)
            else:
                await handler(json.loads(_text(fields.get(b"payload")) or "{}"))
        except Exception:
            log.exception("queued turn %s failed", entry_id)
        finally:
            slots.release()
            try:
                await client.xack(STREAM, GROUP, entry_id)
            except redis.RedisError as err:  # left pending: reclaimed later, and dedupe stops a second answer
                log.warning("could not acknowledge queued turn %s: %s", entry_id, err)

    def start(entry_id, fields) -> None:
        task = asyncio.get_running_loop().create_task(run(_text(entry_id), fields))
        running.add(task)
        task.add_done_callback(running.discard)

    next_reclaim = 0.0
    loop = asyncio.get_running_loop()
    drained = False
    while not (stop.is_set() and drained):
        try:
            if loop.time() >= next_reclaim:  # turns left pending by a worker that died
                next_reclaim = loop.time() + RECLAIM_IDLE_MS / 2000
                _, claimed, *_ = await client.xautoclaim(STREAM, GROUP, consumer, RECLAIM_IDLE_MS, "0-0",
                                                         count=BATCH)
                for entry_id, fields in claimed:
                    if fields:
                        await slots.acquire()
                        start(entry_id, fields)
            free = max(1, min(BATCH, concurrency - len(running)))
            replies = await client.xreadgroup(GROUP, consumer, {STREAM: ">"}, count=free,
                                              block=50 if stop.is_set() else 500)
        except (redis.RedisError, OSError) as err:
            if stop.is_set():
                break
            log.warning("turn queue unavailable (%s); retrying", err)
            await asyncio.sleep(0.5)
            if "NOGROUP" in str(err):  # Redis restarted without its data: start a new group
                try:
                    await ensure_group(client)
                except (redis.RedisError, OSError):
                    pass
            continue
        drained = not any(entries for _stream, entries in replies or [])
        for _stream, entries in replies or []:
            for entry_id, fields in entries:
                await slots.acquire()
                start(entry_id, fields)
    if running:
        await asyncio.gather(*running, return_exceptions=True)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")

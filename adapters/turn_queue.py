"""Questions handed from the web processes to answer-worker processes through a Redis stream.

With `policybot serve --answer-workers M` the web processes only acknowledge: a Slack question or a Teams
message activity is verified, added to the stream `policybot:turns` and answered 200/202, and one of the M
answer workers (adapters.answer_worker, at a lower CPU priority) takes it from the consumer group, runs the same
adapter code as the single-process server would (SlackReplier.answer, the Teams turn) and acknowledges it in
the stream. The web processes therefore keep answering Slack within its 3 s even when answering is CPU-bound
(benchmarks/README.md, load test).

- A worker that dies leaves its turns pending; another worker claims those idle for RECLAIM_IDLE_MS. The
  platforms' event ids are claimed before answering (PolicyBot.events), so a reclaimed turn that was already
  answered is not answered twice.
- Redis down: put() returns False and the web process answers the turn itself, as without workers. Turns
  waiting in the stream survive a Redis restart only if Redis persists its data (appendonly yes, as in
  docker-compose.yml); the workers recreate the consumer group if it is gone.
- Bounded: when the oldest turn no worker has taken yet has waited more than `max_wait_s`, put() says FULL
  and the web process tells the asker to try again in a minute, instead of letting the backlog, and every
  asker's wait, grow without bound. (Checked every CHECK_EVERY_S per process, from the stream itself.)
- The stream is capped (MAX_LEN, approximate) so acknowledged turns don't accumulate.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from enum import Enum
from typing import Awaitable, Callable

import redis
import redis.asyncio as aioredis

log = logging.getLogger(__name__)

STREAM = "policybot:turns"
GROUP = "answer-workers"
MAX_LEN = 100_000
RECLAIM_IDLE_MS = 60_000
BATCH = 32
CHECK_EVERY_S = 0.5  # how often put() reads the oldest waiting turn's age from the stream

Handler = Callable[[dict], Awaitable[None]]


class Put(Enum):
    QUEUED = "queued"
    FULL = "full"  # too many turns waiting: tell the asker to try again later
    UNAVAILABLE = "unavailable"  # Redis can't take it: answer in this process


class TurnQueue:
    """The web processes' side: put a turn on the stream."""

    def __init__(self, client: aioredis.Redis, max_wait_s: float = 30.0) -> None:
        self.client = client
        self.max_wait_s = max_wait_s
        self._checked_at = float("-inf")
        self._full = False

    @classmethod
    def from_url(cls, url: str, max_wait_s: float = 30.0) -> "TurnQueue":
        return cls(aioredis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5), max_wait_s)

    async def put(self, kind: str, payload: dict) -> Put:
        try:
            now = time.monotonic()
            if now - self._checked_at >= CHECK_EVERY_S:  # a few Redis calls per process and interval, not per turn
                self._checked_at = now
                waited = await oldest_wait_s(self.client)
                if (waited > self.max_wait_s) != self._full:
                    log.warning("the oldest queued question has waited %.1f s: %s", waited,
                                "asking people to try again later" if not self._full else "taking questions again")
                self._full = waited > self.max_wait_s
            if self._full:
                return Put.FULL
            await self.client.xadd(STREAM, {"kind": kind, "payload": json.dumps(payload)}, maxlen=MAX_LEN,
                                   approximate=True)
            return Put.QUEUED
        except (redis.RedisError, OSError) as err:
            log.warning("turn queue unavailable (%s); answering in the web process", err)
            return Put.UNAVAILABLE

    async def close(self) -> None:
        await self.client.aclose()


async def oldest_wait_s(client: aioredis.Redis) -> float:
    """How long the oldest turn that no worker has taken yet has been waiting; 0 when there is none. A stream
    entry's id is the Redis server's clock in milliseconds when it was added."""
    try:
        groups = {_text(g["name"]): g for g in await client.xinfo_groups(STREAM)}
    except redis.ResponseError:  # no stream yet
        return 0.0
    group = groups.get(GROUP)
    low = f"({_text(group['last-delivered-id'])}" if group is not None else "-"  # no group: no worker started yet
    oldest = await client.xrange(STREAM, min=low, max="+", count=1)
    if not oldest:
        return 0.0
    seconds, micros = await client.time()
    added_ms = int(_text(oldest[0][0]).split("-", 1)[0])
    return max(0.0, (seconds * 1000 + micros / 1000 - added_ms) / 1000)


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

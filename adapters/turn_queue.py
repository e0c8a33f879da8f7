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
- Bounded: a counter (WAITING) counts the turns queued and not yet finished. Above `max_waiting` put() says
  FULL and the web process tells the asker to try again in a minute instead of letting the backlog, and every
  asker's wait, grow without bound.
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
WAITING = "policybot:turns:waiting"  # turns queued and not finished yet
GROUP = "answer-workers"
MAX_LEN = 100_000
RECLAIM_IDLE_MS = 60_000
BATCH = 32
FULL_RECHECK_S = 0.5
BUSY_MESSAGE = ("I'm getting a lot of questions right now and couldn't look into this one. "
                "Please ask me again in a minute.")  # while full, how often put() looks at the counter again

Handler = Callable[[dict], Awaitable[None]]


class Put(Enum):
    QUEUED = "queued"
    FULL = "full"  # too many turns waiting: tell the asker to try again later
    UNAVAILABLE = "unavailable"  # Redis can't take it: answer in this process


class TurnQueue:
    """The web processes' side: put a turn on the stream."""

    def __init__(self, client: aioredis.Redis, max_waiting: int = 1000) -> None:
        self.client = client
        self.max_waiting = max_waiting
        self._full_until = 0.0  # monotonic time until which the queue is taken to be full

    @classmethod
    def from_url(cls, url: str, max_waiting: int = 1000) -> "TurnQueue":
        return cls(aioredis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5), max_waiting)

    async def put(self, kind: str, payload: dict) -> Put:
        try:
            if self._full_until:
                if time.monotonic() < self._full_until:
                    return Put.FULL
                if await waiting_now(self.client, self.max_waiting) >= self.max_waiting:
                    self._full_until = time.monotonic() + FULL_RECHECK_S
                    return Put.FULL
                self._full_until = 0.0
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.xadd(STREAM, {"kind": kind, "payload": json.dumps(payload)}, maxlen=MAX_LEN, approximate=True)
                pipe.incr(WAITING)
                _, waiting = await pipe.execute()
            if waiting >= self.max_waiting:  # this one is in; the next ones wait for room
                log.warning("%d turns waiting for the answer workers: asking people to try again later", waiting)
                self._full_until = time.monotonic() + FULL_RECHECK_S
            return Put.QUEUED
        except (redis.RedisError, OSError) as err:
            log.warning("turn queue unavailable (%s); answering in the web process", err)
            return Put.UNAVAILABLE

    async def close(self) -> None:
        await self.client.aclose()


async def waiting_now(client: aioredis.Redis, limit: int) -> int:
    """Turns taken and not finished plus turns not taken yet (counted up to `limit`), read from the stream
    itself; the WAITING counter is reset to it, so a counter that drifted (a worker lost between its answer
    and its XACK) cannot keep the queue "full"."""
    try:
        groups = {_text(g["name"]): g for g in await client.xinfo_groups(STREAM)}
    except redis.ResponseError:  # no stream yet
        groups = {}
    group = groups.get(GROUP)
    if group is None:  # no worker has started yet: everything in the stream waits
        waiting = await client.xlen(STREAM)
    else:
        last = _text(group["last-delivered-id"])
        undelivered = await client.xrange(STREAM, min=f"({last}", max="+", count=limit)
        waiting = int(group["pending"]) + len(undelivered)
    await client.set(WAITING, waiting)
    return waiting


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
                async with client.pipeline(transaction=False) as pipe:
                    pipe.xack(STREAM, GROUP, entry_id)
                    pipe.decr(WAITING)
                    await pipe.execute()
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

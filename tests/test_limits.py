import redis

from bot import ratelimit


def test_rate_limit_window(redis_client):
    assert all(ratelimit.allow(redis_client, "slack:U1", 3, now=120.0) for _ in range(3))
    assert not ratelimit.allow(redis_client, "slack:U1", 3, now=121.0)
    assert ratelimit.allow(redis_client, "slack:U2", 3, now=121.0)  # per user
    assert ratelimit.allow(redis_client, "slack:U1", 3, now=180.0)  # next minute


def test_rate_limit_allows_when_redis_is_down():
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    assert ratelimit.allow(dead, "slack:U1", 1)


def test_core_replies_friendly_when_limited(runtime):
    from bot.core import PolicyBot

    runtime.settings = runtime.settings.model_copy(update={"rate_limit_per_minute": 2})
    bot = PolicyBot(runtime)
    kinds = [bot.answer("hello", "U1", "slack").kind for _ in range(3)]
    assert kinds == ["smalltalk", "smalltalk", "limited"]
    assert "wait a minute" in bot.answer("hello", "U1", "slack").text
    assert bot.answer("hello", "U2", "slack").kind == "smalltalk"
    assert all(bot.answer("hello", "U1", "terminal").kind == "smalltalk" for _ in range(3))


def test_event_dedupe_claims_once(redis_client):
    from bot import dedupe, metrics

    import asyncio

    from bot.platform_events import async_twin

    async def claim(platform: str, event_id: str) -> bool:
        client = async_twin(redis_client)
        try:
            return await dedupe.claim(client, platform, event_id)
        finally:
            await client.aclose()

    counter = metrics.events_deduplicated.labels("slack")
    before = counter._value.get()
    assert asyncio.run(claim("slack", "Ev1"))
    assert not asyncio.run(claim("slack", "Ev1"))
    assert counter._value.get() == before + 1
    assert asyncio.run(claim("teams", "Ev1"))
    # A claim is a key that expires: once it is gone, the event id can be claimed again.
    assert 0 < redis_client.ttl("policybot:event:slack:Ev1") <= dedupe.DEFAULT_TTL_S
    redis_client.delete("policybot:event:slack:Ev1")
    assert asyncio.run(claim("slack", "Ev1"))


def test_event_calls_use_the_cores_redis_per_loop_and_fail_open(redis_client):
    """The adapters' event-loop calls (redis.asyncio, no thread hop) use the server of the core's Redis client."""
    import asyncio

    from bot import metrics
    from bot.platform_events import PlatformEvents, async_twin

    events = PlatformEvents(redis_client)
    counter = metrics.events_deduplicated.labels("teams")
    before = counter._value.get()

    async def scenario() -> tuple:
        first = await events.claim_event("teams", "conv|Ev9")
        again = await events.claim_event("teams", "conv|Ev9")
        before_mark = await events.answered_in_thread("slack", "C1", "1.5")
        await events.mark_thread_answered("slack", "C1", "1.5")
        await events.aclose()
        return first, again, before_mark

    first, again, before_mark = asyncio.run(scenario())
    assert (first, again, before_mark) == (True, False, False)
    assert counter._value.get() == before + 1
    assert redis_client.exists("policybot:event:teams:conv|Ev9")  # the core's Redis holds the claim
    assert redis_client.exists("policybot:slack:thread:C1:1.5")
    assert 0 < redis_client.ttl("policybot:slack:thread:C1:1.5") <= 2 * 3600
    # A second event loop gets its own client (connections belong to a loop) on the same server.
    assert asyncio.run(events.answered_in_thread("slack", "C1", "1.5"))
    def where(client) -> dict:
        return {k: v for k, v in client.connection_pool.connection_kwargs.items()
                if k in ("path", "host", "port")}

    assert where(async_twin(redis_client)) == where(redis_client) and where(redis_client)
    tcp = redis.Redis(host="127.0.0.1", port=6399, db=3, socket_timeout=0.5)
    twin = async_twin(tcp).connection_pool.connection_kwargs
    assert where(async_twin(tcp)) == where(tcp) and (twin["db"], twin["socket_timeout"]) == (3, 0.5)

    dead = PlatformEvents(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2))

    async def down() -> tuple:
        out = (await dead.claim_event("slack", "Ev10"), await dead.answered_in_thread("slack", "C", "1"))
        await dead.mark_thread_answered("slack", "C", "1")  # logged, not raised
        return out

    assert asyncio.run(down()) == (True, False)  # Redis down: handle the event; the thread counts as new


def test_lookup_counts_the_rate_reads_and_claims_in_one_script(redis_client):
    from bot.cache import AnswerCache, Lookup

    cache = AnswerCache(redis_client, 60)
    rate = ratelimit.check("slack:U7", 3, now=600.0)
    assert ratelimit.allow(redis_client, "slack:U7", 3, now=601.0)  # the same window as the lookup's
    assert cache.lookup("policybot:answer:k1", 5.0, rate) == Lookup(True, None, True)  # a miss: claimed
    assert 0 < redis_client.pttl("policybot:answer:k1:computing") <= 5000
    assert cache.lookup("policybot:answer:k1", 5.0, rate) == Lookup(True, None, False)  # someone computes it
    cache.put("policybot:answer:k2", {"text": "cached"})
    assert cache.lookup("policybot:answer:k2", 5.0) == Lookup(True, {"text": "cached"}, False)  # no rate given
    # The fourth question of the minute is refused and neither reads nor claims anything.
    assert cache.lookup("policybot:answer:k3", 5.0, rate) == Lookup(False, None, False)
    assert not redis_client.exists("policybot:answer:k3:computing")
    assert not ratelimit.allow(redis_client, "slack:U7", 3, now=602.0)
    assert 60 < redis_client.ttl(rate.key) <= ratelimit.WINDOW_TTL_S
    assert ratelimit.check("slack:U7", 0) is None  # no limit configured

    down = AnswerCache(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2), 60)
    assert down.lookup("policybot:answer:k1", 5.0, rate) == Lookup(True, None, True)  # allowed, uncached


def test_core_limits_questions_and_follow_ups_counted_once_each(runtime, monkeypatch):
    from types import SimpleNamespace

    from bot.core import PolicyBot

    monkeypatch.setattr(ratelimit, "time", SimpleNamespace(time=lambda: 6_000_030.0))  # one minute throughout
    runtime.settings = runtime.settings.model_copy(update={"rate_limit_per_minute": 3})
    runtime.redis.delete(*runtime.redis.keys("policybot:rate:slack:U9:*") or ["none"])
    bot = PolicyBot(runtime)
    first = bot.answer("How many vacation days do I get?", "U9", "slack", "C1:1.0")
    again = bot.answer("How many vacation days do I get?", "U9", "slack", "C1:1.0")
    follow = bot.answer("and for part-timers?", "U9", "slack", "C1:1.0")  # counted before its rewrite
    kinds = [a.kind for a in (first, again, follow)]
    assert "limited" not in kinds and again.cached, kinds
    assert bot.answer("How many vacation days do I get?", "U9", "slack", "C1:1.0").kind == "limited"
    assert bot.answer("and for part-timers?", "U9", "slack", "C1:1.0").kind == "limited"
    assert bot.answer("hello", "U9", "slack").kind == "limited"
    assert bot.answer("How many vacation days do I get?", "U10", "slack").kind != "limited"

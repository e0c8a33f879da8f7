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

    counter = metrics.events_deduplicated.labels("slack")
    before = counter._value.get()
    assert dedupe.claim(redis_client, "slack", "Ev1")
    assert not dedupe.claim(redis_client, "slack", "Ev1")
    assert counter._value.get() == before + 1
    assert dedupe.claim(redis_client, "teams", "Ev1")
    # A claim is a key that expires: once it is gone, the event id can be claimed again.
    assert 0 < redis_client.ttl("policybot:event:slack:Ev1") <= dedupe.DEFAULT_TTL_S
    redis_client.delete("policybot:event:slack:Ev1")
    assert dedupe.claim(redis_client, "slack", "Ev1")

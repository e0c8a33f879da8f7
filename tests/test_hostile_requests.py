"""Hostile and broken input, end to end over real HTTP against `policybot serve`'s aiohttp app (issue #12):
download hosts and redirects for Slack and Teams uploads, the bot token never leaving Slack, request bodies
kept out of the logs, and 400/413 for malformed and over-size requests. Real PostgreSQL and Redis; Slack's Web
API, the Bot Framework connector and the file hosts are the local fakes on 127.0.0.1 (and `localhost` as a
second host name)."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import time
from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import TestClient, TestServer
from slack_bolt.request.async_request import AsyncBoltRequest

from adapters.platforms import PLATFORMS
from adapters.server import build_app
from adapters.slack.http import SLACK_KEY
from bot import logs
from bot.core import PolicyBot
from tests.fakes.file_host import FakeFileHost
from tests.fakes.slack_api import FakeSlack, app_mention, event_envelope, view_submission
from tests.test_slack import ADMIN, SECRET, run_async, serving, slack_settings
from tests.test_slack_admin import POLICY, documents, submit_upload
from tests.test_teams import ADMIN as TEAMS_ADMIN
from tests.test_teams import RunningApp, _documents, file_attachment, message

@pytest.fixture
def file_host():
    server = FakeFileHost().start()
    yield server
    server.stop()


def slack_bot_with_hosts(runtime, fake_slack: FakeSlack, hosts: list[str]) -> PolicyBot:
    runtime.settings = slack_settings(runtime.settings, fake_slack, download_hosts=hosts)
    return PolicyBot(runtime)


# --------------------------------------------------------------------------------------------- Slack downloads


@run_async
async def test_slack_redirect_to_a_host_not_allowed_is_refused_and_nothing_is_ingested(runtime, fake_slack, file_host):
    bot = slack_bot_with_hosts(runtime, fake_slack, ["127.0.0.1"])  # localhost is another host, not allowed
    file_host.add("/remote-work.md", POLICY)
    file = fake_slack.add_file("remote-work.md", POLICY, "text/markdown",
                               redirect=file_host.other_origin + "/remote-work.md")
    async with serving(bot) as slack:
        await submit_upload(slack, ADMIN, file)
        [told] = await fake_slack.wait_for("chat.postMessage")
    assert told.args["channel"] == ADMIN and told.args["text"].startswith("Upload failed: ")
    assert "localhost" in told.args["text"] and "POLICYBOT_DOWNLOAD_HOSTS" in told.args["text"], told.args["text"]
    assert fake_slack.downloads[0]["authorized"]  # Slack itself got the token
    assert file_host.requests_to("localhost") == []  # the redirect was not followed at all
    assert documents(bot) == []


@run_async
async def test_slack_bot_token_is_not_sent_to_an_allowed_host_off_slack(runtime, fake_slack, file_host):
    bot = slack_bot_with_hosts(runtime, fake_slack, ["127.0.0.1", "localhost"])
    file_host.add("/remote-work.md", POLICY)
    file = fake_slack.add_file("remote-work.md", POLICY, "text/markdown",
                               redirect=file_host.other_origin + "/remote-work.md")
    async with serving(bot) as slack:
        await submit_upload(slack, ADMIN, file)
        [done] = await fake_slack.wait_for("chat.postMessage")
    assert "Added “Remote Work Policy”" in done.args["text"], done.args["text"]
    [off_slack] = file_host.requests_to("localhost")
    assert "Authorization" not in off_slack.headers and fake_slack.token not in json.dumps(off_slack.headers)
    assert fake_slack.downloads[0]["authorized"]
    assert [d.title for d in documents(bot)] == ["Remote Work Policy"]


@run_async
async def test_slack_file_on_a_host_not_allowed_is_refused_before_downloading(runtime, fake_slack):
    # The fake Slack is the configured API host (so "Slack's"), but 127.0.0.1 is not on the list.
    bot = slack_bot_with_hosts(runtime, fake_slack, ["*.slack.com"])
    file = fake_slack.add_file("remote-work.md", POLICY, "text/markdown")
    async with serving(bot) as slack:
        await submit_upload(slack, ADMIN, file)
        [told] = await fake_slack.wait_for("chat.postMessage")
    assert "served from 127.0.0.1" in told.args["text"] and "POLICYBOT_DOWNLOAD_HOSTS" in told.args["text"]
    assert fake_slack.downloads == [] and documents(bot) == []


# --------------------------------------------------------------------------------------------- Teams downloads


@pytest.fixture
def teams_app(runtime):
    runtime.settings = runtime.settings.model_copy(update={"admins": [TEAMS_ADMIN], "download_hosts": ["127.0.0.1"]})
    server = RunningApp(build_app(PolicyBot(runtime), PLATFORMS)).start()
    yield server
    server.stop()


def _send_file(teams: RunningApp, connector, url: str, name: str = "travel.md") -> str:
    teams.post(message(connector, None, user=TEAMS_ADMIN, attachments=[file_attachment(name, url)]))
    count = len(connector.messages()) + 1
    return connector.wait_for_messages(count)[-1].text


def test_teams_redirects_are_checked_and_bounded(teams_app, connector, runtime, file_host):
    host = file_host
    host.add("/travel.md", b"# Travel Policy\n\n## Trains\nBook second class for journeys under four hours.\n")

    # To a host not on the list: refused, named, not followed, nothing ingested.
    refused = _send_file(teams_app, connector, host.redirect("/away", host.other_origin + "/travel.md"))
    assert refused.startswith("Couldn't get travel.md: ") and "localhost" in refused, refused
    assert "POLICYBOT_DOWNLOAD_HOSTS" in refused and "Nothing was changed" in refused
    assert host.requests_to("localhost") == [] and _documents(runtime) == []

    # Four redirects on an allowed host: one too many.
    for hop in range(1, 4):
        host.redirect(f"/r{hop}", f"/r{hop + 1}")
    host.redirect("/r4", "/travel.md")
    too_many = _send_file(teams_app, connector, host.origin + "/r1")
    assert "redirected more than 3 times" in too_many, too_many
    assert _documents(runtime) == []

    # Three are fine.
    added = _send_file(teams_app, connector, host.origin + "/r2")
    assert added.startswith("Added “Travel Policy”"), added
    assert [d[0] for d in _documents(runtime)] == ["Travel Policy"]


def test_teams_link_on_a_host_not_allowed_is_not_fetched(teams_app, connector, runtime, file_host):
    url = file_host.add("/travel.md", b"# Travel Policy\n\nBook second class.\n").replace(
        file_host.origin, file_host.other_origin)
    text = _send_file(teams_app, connector, url)
    assert "served from localhost" in text and "POLICYBOT_DOWNLOAD_HOSTS" in text, text
    assert file_host.seen == [] and _documents(runtime) == []


# --------------------------------------------------------------------------------------------- logs


@pytest.fixture
def production_logs():
    """Logging as `policybot serve` sets it up by default (bot.logs.configure at INFO, JSON lines), captured by a
    handler on the root logger at INFO. Everything is put back afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    library_levels = {name: logging.getLogger(name).level for name in logging.root.manager.loggerDict}
    logs.configure("INFO", json_format=True)
    stream = io.StringIO()
    capture = logging.StreamHandler(stream)
    capture.setLevel(logging.INFO)
    capture.setFormatter(logs.JsonFormatter())
    root.addHandler(capture)
    yield stream
    root.handlers[:], level = saved
    root.setLevel(level)
    for name, value in library_levels.items():
        logging.getLogger(name).setLevel(value)


@run_async
async def test_unsigned_and_unhandled_big_slack_requests_barely_grow_the_log(runtime, fake_slack, production_logs):
    runtime.settings = slack_settings(runtime.settings, fake_slack)
    bot = PolicyBot(runtime)
    big = json.dumps(event_envelope(app_mention("vacation " + "x" * 750_000)))  # the text is in it twice
    assert 1_500_000 < len(big) < 1_600_000
    async with serving(bot) as slack:  # built after logging is configured, as in `policybot serve`
        before = len(production_logs.getvalue())
        unsigned = await slack.client.post("/slack/events", data=big.encode(),
                                           headers={"Content-Type": "application/json"})
        assert unsigned.status == 401
        grown_unsigned = len(production_logs.getvalue()) - before

        # Bolt itself, handed the same unsigned request: its refusal (which quotes the body at INFO) stays quiet.
        before = len(production_logs.getvalue())
        adapter = slack.client.server.app[SLACK_KEY]
        response = await adapter.app.async_dispatch(AsyncBoltRequest(
            body=big, headers={"content-type": "application/json", "x-slack-request-timestamp": str(int(time.time())),
                               "x-slack-signature": "v0=forged"}))
        assert response.status == 401
        grown_bolt = len(production_logs.getvalue()) - before

        # A signed request nothing handles: bolt warns about it, quoting the request, which is cut.
        before = len(production_logs.getvalue())
        unknown = await slack.interaction(view_submission("someone_elses_modal", "U1",
                                                          {"b": {"a": {"type": "plain_text_input",
                                                                       "value": "y" * 1_000_000}}}))
        grown_unhandled = len(production_logs.getvalue()) - before
    assert unknown.status == 404
    assert max(grown_unsigned, grown_bolt, grown_unhandled) < 1024, production_logs.getvalue()[-3000:]
    assert "xxxxxxxxxx" not in production_logs.getvalue() and "yyyyyyyyyy" not in production_logs.getvalue()


@pytest.mark.parametrize("log_text", [False, True])
@run_async
async def test_message_text_is_logged_only_with_policybot_log_message_text(runtime, fake_slack, production_logs,
                                                                            log_text):
    runtime.settings = slack_settings(runtime.settings, fake_slack, log_message_text=log_text)
    bot = PolicyBot(runtime)
    async with serving(bot) as slack:
        await slack.event(app_mention("Is my zanzibarian sabbatical paid?"))
        await fake_slack.wait_for("chat.postMessage")
    lines = [json.loads(line) for line in production_logs.getvalue().splitlines()]
    logged = [line for line in lines if "zanzibarian" in line["message"]]
    if log_text:
        assert [(line["level"], line["logger"]) for line in logged] == [("info", "adapters.message_log")], logged
        assert "U1" in logged[0]["message"]
    else:
        assert logged == []


# --------------------------------------------------------------------------------------------- malformed requests


@pytest.fixture
def slack_bot_plain(runtime, fake_slack):
    runtime.settings = slack_settings(runtime.settings, fake_slack)
    return PolicyBot(runtime)


@run_async
async def test_signed_but_malformed_slack_bodies_get_400(slack_bot_plain, fake_slack):
    form = "application/x-www-form-urlencoded"
    cases = {
        "bad JSON": (b'{"type": "event_callback", "event": {', "application/json"),
        "a JSON list": (b'[{"type": "event_callback"}]', "application/json"),
        "a JSON string": (b'"event_callback"', "application/json"),
        "broken payload= form field": (urlencode({"payload": '{"type": "block_actions", '}).encode(), form),
        "payload= not an object": (urlencode({"payload": "[1, 2]"}).encode(), form),
        "not UTF-8": (b'{"type": "event_callback", "text": "\xff\xfe"}', "application/json"),
        # JSON objects, but not shaped like Slack's: bolt's middleware and matchers would fail on them (500).
        "an event that is not an object": (b'{"type": "event_callback", "event": "app_mention"}', "application/json"),
        "an event whose text is not text": (json.dumps(event_envelope({**app_mention("hi"), "text": 5})).encode(),
                                            "application/json"),
        "actions that are not objects": (urlencode({"payload": json.dumps(
            {"type": "block_actions", "user": {"id": "U1"}, "actions": [5]})}).encode(), form),
        "a view that is not an object": (urlencode({"payload": json.dumps(
            {"type": "view_submission", "user": {"id": ADMIN}, "view": "policybot_upload"})}).encode(), form),
        "view values that are not inputs": (urlencode({"payload": json.dumps(view_submission(
            "policybot_upload", ADMIN, {"file": "x"}))}).encode(), form),
    }
    async with serving(slack_bot_plain) as slack:
        statuses = {}
        for name, (body, content_type) in cases.items():
            timestamp = str(int(time.time()))
            signature = hmac.new(SECRET.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
            response = await slack.client.post("/slack/events", data=body, headers={
                "Content-Type": content_type, "X-Slack-Request-Timestamp": timestamp,
                "X-Slack-Signature": "v0=" + signature})
            statuses[name] = response.status
        bad_timestamp = await slack.client.post("/slack/events", data=b"{}", headers={
            "Content-Type": "application/json", "X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=1"})
    assert statuses == {name: 400 for name in cases}, statuses
    assert bad_timestamp.status == 401
    assert fake_slack.calls_to("chat.postMessage") == []


@run_async
async def test_over_size_bodies_get_413_on_both_endpoints(slack_bot_plain, fake_slack, connector):
    big = "x" * (3 * 1024 * 1024)
    async with serving(slack_bot_plain) as slack:
        signed = await slack.send(json.dumps(event_envelope(app_mention(big))), "application/json")
        teams = await slack.client.post("/api/messages", data=json.dumps(message(connector, "y" * 5_000_000)),
                                        headers={"Content-Type": "application/json"})
    assert (signed.status, teams.status) == (413, 413)
    assert fake_slack.calls_to("chat.postMessage") == [] and connector.sent == []


@run_async
async def test_teams_activities_missing_what_a_turn_needs_get_400(policybot, connector):
    def without(*path: str) -> dict:
        activity = message(connector, "How many vacation days do I get?")
        parent = activity
        for key in path[:-1]:
            parent = parent[key]
        parent.pop(path[-1])
        return activity

    cases = {"type": without("type"), "conversation.id": without("conversation", "id"),
             "from.id": without("from", "id"), "serviceUrl": without("serviceUrl"),
             "conversation": without("conversation"), "from": without("from")}
    async with TestClient(TestServer(build_app(policybot, PLATFORMS), host="127.0.0.1")) as client:
        statuses = {}
        for name, activity in cases.items():
            response = await client.post("/api/messages", data=json.dumps(activity),
                                         headers={"Content-Type": "application/json"})
            statuses[name] = response.status
        blank = await client.post("/api/messages", data=json.dumps({**message(connector, "hi"), "serviceUrl": " "}),
                                  headers={"Content-Type": "application/json"})
        good = await client.post("/api/messages", data=json.dumps(message(connector, "hi")),
                                 headers={"Content-Type": "application/json"})
    assert statuses == {name: 400 for name in cases}, statuses
    assert blank.status == 400 and good.status == 202


@run_async
async def test_with_an_app_id_an_unauthenticated_incomplete_activity_is_still_401(runtime, connector):
    # The fields are checked after authentication: a stranger learns nothing about what is missing.
    runtime.settings = runtime.settings.model_copy(update={
        "microsoft_app_id": "3f1c2b4a-1111-4a2b-9c3d-123456789abc", "microsoft_app_password": "secret"})
    activity = message(connector, "How many vacation days do I get?")
    activity.pop("serviceUrl")
    async with TestClient(TestServer(build_app(PolicyBot(runtime), PLATFORMS), host="127.0.0.1")) as client:
        response = await client.post("/api/messages", data=json.dumps(activity),
                                     headers={"Content-Type": "application/json"})
    assert response.status == 401

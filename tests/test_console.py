"""The admin console over plain HTTP (aiohttp test client on `policybot serve`'s app; real PostgreSQL and Redis):
the sign-in rules (no link, expired, reused, non-admin, missing CSRF token → refused) and what the pages show."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timezone
from contextlib import asynccontextmanager

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer

from adapters.admin.links import console_url
from adapters.admin.routes import COOKIE, LOGIN_COOKIE
from adapters.cli import main
from adapters.platforms import PLATFORMS
from adapters.server import build_app
from bot import insights
from bot.core import PolicyBot
from knowledge.ingest import ingest_file
from tests.helpers import LEAVE, write
from tests.test_slack import run_async

ADMIN = "UADMIN"


@pytest.fixture
def admin_bot(runtime):
    runtime.settings = runtime.settings.model_copy(update={"admins": [ADMIN]})
    return PolicyBot(runtime)


@asynccontextmanager
async def console(bot: PolicyBot):
    async with TestClient(TestServer(build_app(bot, PLATFORMS), host="127.0.0.1")) as client:
        yield client


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no hidden {name} in the page"
    return match.group(1)


async def sign_in(client: TestClient, token: str, headers: dict | None = None):
    page = await client.get("/admin/login", params={"token": token}, headers=headers)
    html = await page.text()
    return await client.post("/admin/login", data={"token": hidden(html, "token"), "nonce": hidden(html, "nonce")},
                             allow_redirects=False, headers=headers)


@run_async
async def test_sign_in_once_with_a_link_then_a_session_cookie(admin_bot):
    token = admin_bot.console.issue_link(ADMIN)
    public = admin_bot.settings.model_copy(update={"public_url": "https://bot.example.com/"})
    assert console_url(public, token) == f"https://bot.example.com/admin/login?token={token}"
    async with console(admin_bot) as client:
        assert (await client.get("/admin/")).status == 401  # no session
        assert (await client.get("/admin/documents")).status == 401
        assert (await client.get("/admin/login")).status == 401  # no link
        signed = await sign_in(client, token)
        assert signed.status == 303 and signed.headers["Location"] == "/admin/"
        cookie = next(v for k, v in signed.headers.items() if k == "Set-Cookie" and v.startswith(COOKIE))
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/admin" in cookie
        assert "Secure" not in cookie  # plain http here; behind an https proxy it is Secure:
        page = await client.get("/admin/")
        assert page.status == 200 and "/admin/charts/votes.svg" in await page.text()
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
        svg = await client.get("/admin/charts/votes.svg")
        assert svg.status == 200 and svg.content_type == "image/svg+xml" and "<svg" in await svg.text()

    async with console(admin_bot) as other:  # the same link a second time: refused
        reused = await sign_in(other, token)
        assert reused.status == 401 and "already" in await reused.text()
        assert (await other.get("/admin/")).status == 401
        https = {"X-Forwarded-Proto": "https"}
        page = await other.get("/admin/login", params={"token": admin_bot.console.issue_link(ADMIN)}, headers=https)
        html = await page.text()
        assert "Secure" in page.headers["Set-Cookie"]  # the sign-in form's cookie too
        proxied = await other.post("/admin/login", data={"token": hidden(html, "token"), "nonce": hidden(html, "nonce")},
                                    headers={**https, "Cookie": f"{LOGIN_COOKIE}={hidden(html, 'nonce')}"},
                                    allow_redirects=False)
        assert proxied.status == 303 and "Secure" in proxied.headers["Set-Cookie"]


@run_async
async def test_expired_forged_and_non_admin_links_are_refused(admin_bot, redis_client, settings, monkeypatch, capsys):
    token = admin_bot.console.issue_link(ADMIN)
    for key in redis_client.scan_iter("policybot:console:link:*"):
        redis_client.pexpire(key, 1)  # as if 10 minutes had passed
    assert admin_bot.console.issue_link("U2NOBODY") is None
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    monkeypatch.setenv("POLICYBOT_HOME", str(settings.home))
    monkeypatch.setenv("POLICYBOT_ADMINS", ADMIN)
    assert main(["console-link", "U2NOBODY"]) == 1
    assert "not an admin" in capsys.readouterr().err
    assert main(["console-link", ADMIN]) == 0
    printed = capsys.readouterr().out.strip()
    assert re.fullmatch(r"http://localhost:\d+/admin/login\?token=[\w%-]+", printed)
    async with console(admin_bot) as client:
        assert (await sign_in(client, token)).status == 401  # expired
        assert (await sign_in(client, "forged-token")).status == 401
        # no nonce cookie / wrong nonce: the sign-in form itself is refused
        assert (await client.post("/admin/login", data={"token": "x", "nonce": "y"})).status == 403
        # the link the CLI printed works (same Redis)
        assert (await sign_in(client, printed.split("token=")[1])).status == 303
        assert (await client.get("/admin/")).status == 200
        admin_bot.settings.admins.remove(ADMIN)  # no longer an admin: the session stops working
        assert (await client.get("/admin/")).status == 401



@run_async
async def test_forms_need_the_csrf_token_and_pages_show_the_data(admin_bot, tmp_path):
    runtime = admin_bot.runtime
    ingest_file(runtime.sessions, runtime.embedder, write(tmp_path / "leave.md", LEAVE), uploaded_by=ADMIN)
    answer = admin_bot.answer("How many vacation days do I get?", "U7", "slack")
    admin_bot.feedback(answer.interaction_id, "U7", "slack", -1, correction="27 days for long service.")
    admin_bot.answer("Can I bring my parrot to work?", "U8", "slack")
    async with console(admin_bot) as client:
        assert (await sign_in(client, admin_bot.console.issue_link(ADMIN))).status == 303
        documents = await client.get("/admin/documents")
        html = await documents.text()
        assert "Leave Policy" in html and ADMIN in html
        csrf = hidden(html, "csrf")
        document_id = re.search(r'/admin/documents/(\d+)/remove', html).group(1)

        # without the token, or with a wrong one: refused, nothing changed
        assert (await client.post(f"/admin/documents/{document_id}/remove")).status == 403
        assert (await client.post(f"/admin/documents/{document_id}/remove", data={"csrf": "wrong"})).status == 403
        form = FormData()
        form.add_field("file", b"# Pets\n\nDogs are welcome on Fridays.\n", filename="pets.md")
        assert (await client.post("/admin/documents/upload", data=form)).status == 403
        assert [d.title for d in admin_bot.documents()] == ["Leave Policy"]

        form = FormData()
        form.add_field("csrf", csrf)
        form.add_field("file", b"# Pets\n\nDogs are welcome on Fridays.\n", filename="pets.md")
        uploaded = await client.post("/admin/documents/upload", data=form)
        assert uploaded.status == 200 and "Added “Pets”" in await uploaded.text()
        assert sorted(d.title for d in admin_bot.documents()) == ["Leave Policy", "Pets"]
        removed = await client.post(f"/admin/documents/{document_id}/remove", data={"csrf": csrf})
        assert removed.status == 200 and "Removed “Leave Policy”" in await removed.text()
        assert [d.title for d in admin_bot.documents()] == ["Pets"]

        questions = await (await client.get("/admin/questions")).text()
        assert "How many vacation days do I get?" in questions and "27 days for long service." in questions
        assert "parrot" in questions
        found = await (await client.get("/admin/questions", params={"q": "parrot"})).text()
        assert "parrot" in found and "How many vacation days" not in found
        gaps = await client.get("/admin/gaps", params={"since": "7d"})
        html = await gaps.text()
        assert gaps.status == 200 and "How many vacation days do I get?" in html and "thumbs down 1" in html
        assert (await client.get("/admin/gaps", params={"since": "soon"})).status == 400
        assert (await client.get("/admin/escalations")).status == 200
        models = await client.get("/admin/models")
        assert models.status == 200 and "No fine-tuned models yet" in await models.text()
        week = datetime.now(timezone.utc).strftime("%G-W%V")
        votes_svg = await (await client.get("/admin/charts/votes.svg")).text()
        assert week in votes_svg and "👎" in votes_svg
        assert "Leave Policy" in await (await client.get("/admin/charts/documents.svg")).text()  # its 👎
        assert (await client.get("/admin/charts/nothing.svg")).status == 404
        logout = await client.post("/admin/logout", data={"csrf": csrf})
        assert logout.status == 200
        assert (await client.get("/admin/")).status == 401

    data = insights.chart_data(runtime.sessions)
    [this_week] = data.weeks
    assert (this_week["up"], this_week["down"]) == (0, 1) and this_week["answers"] == 2
    assert this_week["refusal_rate"] == this_week["refusals"] / 2
    [today] = data.days
    assert today["answers"] == 2 and today["p95_ms"] > 0
    assert data.most_disliked_documents == [{"document": "Leave Policy", "up": 0, "down": 1}]


@run_async
async def test_slack_console_command_sends_a_working_link_to_admins_only(runtime, fake_slack):
    from tests.fakes.slack_api import slash_command
    from tests.test_slack import serving, slack_settings

    runtime.settings = slack_settings(runtime.settings, fake_slack)
    bot = PolicyBot(runtime)
    async with serving(bot) as slack:
        refused = await slack.command(slash_command("console", "U1", f"{fake_slack.url}/response/1"))
        granted = await slack.command(slash_command("console", ADMIN, f"{fake_slack.url}/response/2"))
        text = granted.json()["text"]
        assert "Only policy admins" in refused.json()["text"] and "token=" not in refused.json()["text"]
        assert granted.json()["response_type"] == "ephemeral" and "valid 10 minutes" in text
        token = re.search(r"/admin/login\?token=([\w%-]+)", text).group(1)
        client = slack.client  # the same app serves the console
        assert (await sign_in(client, token)).status == 303
        assert (await client.get("/admin/documents")).status == 200


def test_teams_console_command_in_a_personal_chat(runtime, connector):
    from tests.test_teams import ADMIN as TEAMS_ADMIN, RunningApp, _ask

    runtime.settings = runtime.settings.model_copy(update={"admins": [TEAMS_ADMIN]})
    app = RunningApp(build_app(PolicyBot(runtime), PLATFORMS)).start()
    try:
        _, employee = _ask(app, connector, "console")
        _, admin = _ask(app, connector, "console", user=TEAMS_ADMIN)
    finally:
        app.stop()
    assert "Only policy admins" in employee.text and "token=" not in employee.text
    assert re.search(r"http://localhost:\d+/admin/login\?token=[\w%-]+", admin.text)


@run_async
async def test_models_promote_through_the_gate_and_roll_back(admin_bot):
    from bot.finetune import registry

    sessions = admin_bot.runtime.sessions
    good = {"citation_validity": 1.0, "grounded_rate": 1.0, "correct_refusal_rate": 1.0, "fallbacks": 0, "errors": 0,
            "question_set": "qs1"}
    baseline = registry.baseline(sessions, admin_bot.settings.chat_model, create_missing=True)
    registry.set_metrics(sessions, baseline.id, {**good, "grounded_rate": 0.9})
    worse = registry.create(sessions, provider="openai", model_id="ft:worse", base_model="b", status="candidate",
                            metrics={**good, "citation_validity": 0.5})
    better = registry.create(sessions, provider="openai", model_id="ft:better", base_model="b", status="candidate",
                             metrics=good)
    async with console(admin_bot) as client:
        assert (await sign_in(client, admin_bot.console.issue_link(ADMIN))).status == 303
        page = await (await client.get("/admin/models")).text()
        csrf = hidden(page, "csrf")
        assert f"Promote #{worse.id}" in page and "ft:better" in page
        assert (await client.post(f"/admin/models/{better.id}/promote")).status == 403  # no CSRF token
        assert registry.active(sessions) is None
        refused = await (await client.post(f"/admin/models/{worse.id}/promote", data={"csrf": csrf})).text()
        assert "citation_validity" in refused and registry.active(sessions) is None  # the gate said no
        promoted = await client.post(f"/admin/models/{better.id}/promote", data={"csrf": csrf})
        assert promoted.status == 200 and registry.active(sessions).id == better.id
        assert "Roll back the active model" in await promoted.text()
        rolled = await (await client.post("/admin/models/rollback", data={"csrf": csrf})).text()
        assert "Rolled back" in rolled and registry.active(sessions) is None
        assert registry.get(sessions, better.id).status == "rolled_back"
        again = await (await client.post("/admin/models/rollback", data={"csrf": csrf})).text()
        assert "nothing to roll back" in again


class ThreadRecordingEmbedder:
    """The session's real e5 embedder, noting on which thread and at which CPU priority each call ran."""

    def __init__(self, embedder) -> None:
        self.embedder, self.name, self.dim = embedder, embedder.name, embedder.dim
        self.calls: list[tuple[str, str, str]] = []  # (query | passages, thread name, priority)

    def _note(self, what: str) -> None:
        import threading

        from bot.yielding import thread_priority

        self.calls.append((what, threading.current_thread().name, thread_priority()))

    def embed_query(self, text):
        self._note("query")
        return self.embedder.embed_query(text)

    def embed_passages(self, texts):
        self._note("passages")
        return self.embedder.embed_passages(texts)


@run_async
async def test_an_upload_embeds_at_a_lower_cpu_priority_than_answers(runtime, embedder):
    """A served upload's ingestion runs on a thread of its own at POLICYBOT_UPLOAD_PRIORITY (default idle: SCHED_IDLE),
    below the answer workers' nice 10; the server's threads, which answer afterwards, keep theirs."""
    from bot.yielding import thread_priority

    spy = ThreadRecordingEmbedder(embedder)
    runtime.embedder = spy
    runtime.settings = runtime.settings.model_copy(update={"admins": [ADMIN]})
    bot = PolicyBot(runtime)
    assert bot.settings.upload_priority == "idle"
    before = thread_priority()
    assert before != "idle"
    async with console(bot) as client:
        assert (await sign_in(client, bot.console.issue_link(ADMIN))).status == 303
        csrf = hidden(await (await client.get("/admin/documents")).text(), "csrf")
        form = FormData()
        form.add_field("csrf", csrf)
        form.add_field("file", LEAVE.encode(), filename="leave.md")
        uploaded = await client.post("/admin/documents/upload", data=form)
        assert uploaded.status == 200 and "Added “Leave Policy”" in await uploaded.text()
    assert spy.calls == [("passages", "upload-yielding", "idle")]
    answer = await asyncio.to_thread(bot.answer, "How many vacation days do I get?", "U7", "slack")
    assert answer.grounded and thread_priority() == before
    assert spy.calls[-1][0] == "query" and spy.calls[-1][2] == before  # a new thread: answers never run idle

    for priority, expected in (("low", "nice 19"), ("normal", before)):  # normal: the caller's thread, as before
        spy.calls.clear()
        bot.settings = runtime.settings.model_copy(update={"upload_priority": priority})
        result = await asyncio.to_thread(bot.upload, ADMIN, "pets.md", f"# Pets\n\nDogs come on {priority} days.\n".encode())
        assert result.ok and [(w, p) for w, _, p in spy.calls] == [("passages", expected)]
        assert (spy.calls[0][1] == "upload-yielding") == (priority != "normal")

    bot.settings = runtime.settings
    bad = await asyncio.to_thread(bot.upload, ADMIN, "empty.md", b"   \n")
    assert not bad.ok and "Upload failed" in bad.message  # the thread's DocumentError reaches the admin

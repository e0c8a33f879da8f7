"""Teams end to end over real HTTP: activities are POSTed to /api/messages on the aiohttp app from
adapters.server.build_app (anonymous mode), run on 127.0.0.1; the bot's replies go through botbuilder's real
ConnectorClient to a local Bot Framework connector (tests/fakes/bot_connector.py) named as the serviceUrl.
Real PostgreSQL and Redis behind the core."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from aiohttp import web
from botbuilder.schema import Activity
from sqlalchemy import select, text

from adapters.platforms import PLATFORMS
from adapters.server import build_app
from adapters.teams.clients import AsyncConversations
from adapters.teams.http import TEAMS_KEY
from bot.core import PolicyBot
from bot.records import Interaction
from knowledge.ingest import ingest_file
from tests.fakes.bot_connector import FakeConnector
from tests.helpers import LEAVE, write

BOT = {"id": "28:policybot-app-id", "name": "PolicyBot"}
ADMIN = "aad-admin-0001"
EMPLOYEE = "aad-employee-0002"
PERSONAL = "a:1personal-chat-with-ann"
GROUP = "19:group-chat-id@thread.v2"
CHANNEL = "19:hr-questions@thread.tacv2"


EXPENSES = """# Expenses Policy

## Coworking spaces
Employees may expense a coworking desk up to 250 EUR per month with their manager's approval.
Keep the invoice and submit it in the expense tool within 30 days.
"""

LONG_TITLE = ("Parental Leave, Adoption Leave and Family Care Arrangements for Full-Time, Part-Time and Temporary "
              "Employees in All Countries")
PARENTAL = f"""# {LONG_TITLE}

## Parental leave entitlement for birth parents, adoptive parents and foster parents in every country
Birth parents and adoptive parents receive 20 weeks of fully paid parental leave, which can be taken in up to
three blocks within the first two years after the child arrives, with at least four weeks in each block.
"""

TRAVEL = """# Travel Policy

## Trains
Book second class for train journeys under four hours and first class for longer journeys.

## Hotels
Hotel stays are reimbursed up to 180 EUR per night in capital cities.
"""


# ------------------------------------------------------------------------------------------------- harness


class RunningApp:
    """The aiohttp app on 127.0.0.1:0, served by its own event loop in a thread (sync tests talk plain HTTP)."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner = web.AppRunner(app)
        self.url = ""

    def start(self) -> "RunningApp":
        self.thread.start()
        self._call(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self._call(site.start())
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        try:
            self._call(self.runner.cleanup(), timeout=40)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    def _call(self, coroutine, timeout: float = 20):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def post(self, body, headers: dict | None = None, path: str = "/api/messages") -> tuple[int, bytes]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method="POST",
                                         headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def wait_idle(self, timeout_s: float = 30.0) -> None:
        """Bounded wait until no Teams turn is running in the background."""
        endpoint = self.app[TEAMS_KEY]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not endpoint.background.tasks:
                return
            time.sleep(0.02)
        raise AssertionError(f"{len(endpoint.background.tasks)} Teams turn(s) still running after {timeout_s}s")


_ids = itertools.count(1700000000000)


def message(connector: FakeConnector, text: str | None, *, conversation: str = PERSONAL, kind: str = "personal",
            user: str = EMPLOYEE, mention: bool = False, attachments: list | None = None,
            activity_id: str | None = None) -> dict:
    """A Teams message activity as the Bot Framework delivers it."""
    entities = []
    if mention:
        entities.append({"type": "mention", "text": f"<at>{BOT['name']}</at>",
                         "mentioned": {"id": BOT["id"], "name": BOT["name"]}})
    channel_data = {"tenant": {"id": "tenant-1"}}
    if kind == "channel":
        channel_data.update({"channel": {"id": CHANNEL.split(";")[0]}, "team": {"id": "19:team@thread.tacv2"}})
    return {
        "type": "message",
        "id": activity_id or str(next(_ids)),
        "timestamp": "2025-01-15T10:00:00.000Z",
        "serviceUrl": connector.service_url,
        "channelId": "msteams",
        "from": {"id": f"29:{user}", "name": "Ann Example", "aadObjectId": user},
        "conversation": {"id": conversation, "conversationType": kind, "tenantId": "tenant-1",
                         **({"isGroup": True} if kind != "personal" else {})},
        "recipient": BOT,
        "text": text,
        "textFormat": "plain",
        "locale": "en-US",
        "entities": entities,
        "attachments": attachments or [],
        "channelData": channel_data,
    }


def file_attachment(name: str, url: str, file_type: str | None = None) -> dict:
    return {"contentType": "application/vnd.microsoft.teams.file.download.info", "name": name,
            "contentUrl": "https://contoso.sharepoint.com/personal/ann/Documents/" + name,
            "content": {"downloadUrl": url, "uniqueId": "1150D938-8870-4044-9F2C-5BBDEBA70C9D",
                        "fileType": file_type or name.rsplit(".", 1)[-1]}}


def feedback_invoke(connector: FakeConnector, reply_to_id: str, reaction: str, comment: str = "", *,
                    user: str = EMPLOYEE, conversation: str = PERSONAL, kind: str = "personal") -> dict:
    activity = message(connector, None, conversation=conversation, kind=kind, user=user)
    activity.update({"type": "invoke", "name": "message/submitAction", "replyToId": reply_to_id,
                     "value": {"actionName": "feedback",
                               "actionValue": {"reaction": reaction,
                                               "feedback": json.dumps({"feedbackText": comment})}}})
    activity.pop("text")
    return activity


# ------------------------------------------------------------------------------------------------- fixtures




@pytest.fixture
def core(runtime):
    runtime.settings = runtime.settings.model_copy(update={"admins": [ADMIN]})
    return PolicyBot(runtime)


@pytest.fixture
def teams(core):
    server = RunningApp(build_app(core, PLATFORMS)).start()
    yield server
    server.stop()


def _load(runtime, tmp_path, *docs):
    for name, body, link in docs:
        ingest_file(runtime.sessions, runtime.embedder, write(tmp_path / name, body), link=link)


def _interactions(runtime) -> list[Interaction]:
    with runtime.sessions() as s:
        return list(s.scalars(select(Interaction).order_by(Interaction.created_at)))


def _feedback_rows(runtime) -> list[tuple]:
    with runtime.sessions() as s:
        return [tuple(r) for r in s.execute(text(
            "SELECT interaction_id, user_id, platform, rating, comment FROM feedback ORDER BY user_id"))]


def _documents(runtime) -> list[tuple]:
    with runtime.sessions() as s:
        return [tuple(r) for r in s.execute(text(
            "SELECT title, source, uploaded_by, version FROM documents ORDER BY id"))]


def _ask(teams, connector, question: str, **kwargs):
    before = len(connector.messages())
    activity = message(connector, question, **kwargs)
    status, _ = teams.post(activity)
    assert status == 202
    sent = connector.wait_for_messages(before + 1)
    teams.wait_idle()  # the turn also maps the sent message to its interaction, just after sending it
    return activity, sent[before]


# ------------------------------------------------------------------------------------------------- answers


def test_personal_question_gets_cited_answer_with_feedback_loop(teams, connector, runtime, tmp_path, monkeypatch):
    monkeypatch.setattr("adapters.background.INDICATOR_DELAY_S", 30.0)  # any answer counts as quick
    _load(runtime, tmp_path, ("leave.md", LEAVE, "https://intranet.example.com/policies/leave"),
          ("expenses.md", EXPENSES, None))
    activity, reply = _ask(teams, connector, "How many vacation days do I get?")

    # A quick answer goes out without a typing indicator first, as a reply to the question.
    assert [s.type for s in connector.sent] == ["message"]
    assert reply.conversation_id == PERSONAL and reply.reply_to_id == activity["id"]

    body = reply.activity
    assert "25 days" in body["text"] and "[1]" in body["text"]
    assert body["channelData"] == {"feedbackLoop": {"type": "default"}}
    [entity] = body["entities"]
    assert entity["type"] == "https://schema.org/Message" and entity["@type"] == "Message"
    assert entity["@context"] == "https://schema.org" and entity["@id"] == ""
    assert entity["additionalType"] == ["AIGeneratedContent"]
    citations = entity["citation"]
    assert 1 <= len(citations) <= 20
    for claim in citations:  # every citation is a marker in the text, and the other way round
        assert claim["@type"] == "Claim" and f"[{claim['position']}]" in body["text"]
        assert claim["appearance"]["@type"] == "DigitalDocument"
        assert len(claim["appearance"]["name"]) <= 80 and len(claim["appearance"]["abstract"]) <= 160
    first = next(c for c in citations if c["position"] == 1)["appearance"]
    assert first["name"] == "Leave Policy" and first["url"] == "https://intranet.example.com/policies/leave"
    assert "25 days" in first["abstract"] and first["image"] == {"@type": "ImageObject", "name": "Text"}

    [row] = _interactions(runtime)
    assert row.platform == "teams" and row.user_id == EMPLOYEE and row.conversation_id == PERSONAL
    assert row.message_ref == f"teams:{PERSONAL}:{reply.activity_id}"


def test_turns_reuse_the_connector_client_and_its_connections(teams, connector, runtime, tmp_path):
    _load(runtime, tmp_path, ("leave.md", LEAVE, None))
    for question in ("How many vacation days do I get?", "Can I carry vacation days over?",
                     "Do part-timers get vacation?", "Who approves vacation?"):
        _ask(teams, connector, question)
    # botbuilder alone builds a new client (and connection pool) per turn, so every turn opened its own
    # connection; the reused client keeps its connections open across turns.
    assert len(connector.peers) >= 4
    assert len(set(connector.peers)) <= 2, connector.peers
    assert len(teams.app[TEAMS_KEY].clients.connectors) == 1
    # ... and its activities go out on the shared aiohttp pool, not msrest's requests-in-threads sender
    assert all(isinstance(c.conversations, AsyncConversations) for c in teams.app[TEAMS_KEY].clients.connectors.values())


def test_activities_are_sent_with_the_bearer_token_on_aiohttp(connector):
    """What ConnectorClient would send (URL, JSON, bearer token), on aiohttp; a refusal keeps its status."""
    from botframework.connector.aio import ConnectorClient
    from botframework.connector.auth import MicrosoftAppCredentials

    from adapters.teams.clients import ConnectorError, ReusedClients

    class Credentials(MicrosoftAppCredentials):  # msal's token, without Entra
        calls = 0

        def get_access_token(self, force_refresh: bool = False) -> str:
            Credentials.calls += 1
            return "token-1"

    async def scenario():
        clients = ReusedClients()
        signed = AsyncConversations(ConnectorClient(Credentials("app-id", "secret"), base_url=connector.service_url),
                                    clients.session)
        anonymous = AsyncConversations(ConnectorClient(MicrosoftAppCredentials(None, None),
                                                       base_url=connector.service_url), clients.session)
        wrong = AsyncConversations(ConnectorClient(Credentials("app-id", "secret"),
                                                   base_url=connector.service_url + "nowhere/"), clients.session)
        sent = await signed.send_to_conversation("19:a/b@thread.v2", Activity(type="message", text="hi"))
        reply = await signed.reply_to_activity("19:a/b@thread.v2", "act 1", Activity(type="message", text="re"))
        updated = await anonymous.update_activity("conv", reply.id, Activity(type="message", text="edited"))
        with pytest.raises(ConnectorError) as refused:
            await wrong.send_to_conversation("conv", Activity(type="message", text="lost"))
        await clients.aclose()
        return sent, reply, updated, refused.value

    sent, reply, updated, refused = asyncio.run(scenario())
    first, second, third = connector.sent
    assert (first.conversation_id, first.reply_to_id, first.text, first.activity_id) == (
        "19:a/b@thread.v2", None, "hi", sent.id)
    assert (second.reply_to_id, second.text, second.activity_id) == ("act 1", "re", reply.id)
    assert (third.reply_to_id, third.text, updated.id) == (reply.id, "edited", third.activity_id)
    assert connector.authorizations == ["Bearer token-1", "Bearer token-1", None, "Bearer token-1"]
    assert Credentials.calls == 2  # one per client (signed, wrong), reused across its sends
    assert refused.response.status_code == 404 and "NotFound" in str(refused)
    assert len(set(connector.peers)) == 1  # one pooled connection


def test_slow_llm_answer_keeps_typing_and_is_cited(llm_policybot, fake_openai, connector, tmp_path, monkeypatch):
    monkeypatch.setattr("adapters.teams.bot.TYPING_PERIOD_S", 0.2)
    monkeypatch.setattr("adapters.background.INDICATOR_DELAY_S", 0.1)
    fake_openai.delay_s = 0.9
    runtime = llm_policybot.runtime
    # The typing indicator of a non-streamed answer (group chats, channels, POLICYBOT_STREAM=false).
    llm_policybot.settings = runtime.settings = runtime.settings.model_copy(update={"stream_answers": False})
    _load(runtime, tmp_path, ("leave.md", LEAVE, "https://intranet.example.com/policies/leave"))
    server = RunningApp(build_app(llm_policybot, PLATFORMS)).start()
    try:
        _, reply = _ask(server, connector, "How many vacation days do I get?")
    finally:
        server.stop()
    assert len(connector.of_type("typing")) >= 3  # a slow answer: typing first, repeated while the LLM works
    assert connector.sent[0].type == "typing" and connector.sent[0].reply_to_id == reply.reply_to_id
    assert connector.sent[-1].activity_id == reply.activity_id  # no indicator after the answer
    assert reply.text.startswith("According to our policy:") and "[1]" in reply.text
    [claim] = reply.activity["entities"][0]["citation"]
    assert claim["position"] == 1 and claim["appearance"]["url"] == "https://intranet.example.com/policies/leave"
    assert _interactions(runtime)[0].kind == "llm"


def test_long_titles_and_snippets_are_cut_to_teams_limits(teams, connector, runtime, tmp_path):
    _load(runtime, tmp_path, ("parental.md", PARENTAL, None))
    _, reply = _ask(teams, connector, "How many weeks of parental leave do adoptive parents get?")
    claim = reply.activity["entities"][0]["citation"][0]["appearance"]
    assert claim["name"].endswith("…") and len(claim["name"]) <= 80 and claim["name"].startswith("Parental Leave")
    assert claim["abstract"].endswith("…") and len(claim["abstract"]) <= 160
    assert "url" not in claim  # no link on the document: no url rather than a made-up one


def test_smalltalk_has_no_citations_or_feedback_buttons(teams, connector):
    _, reply = _ask(teams, connector, "hello")
    assert "entities" not in reply.activity or not reply.activity["entities"]
    assert not reply.activity.get("channelData")


def test_refusal_keeps_feedback_buttons_without_citations(teams, connector, runtime, tmp_path):
    _load(runtime, tmp_path, ("leave.md", LEAVE, None))
    _, reply = _ask(teams, connector, "What is the dress code for the summer party on the rooftop?")
    assert "couldn't find" in reply.text and reply.activity["channelData"] == {"feedbackLoop": {"type": "default"}}
    assert "citation" not in reply.activity["entities"][0]


def test_channel_mention_is_stripped_and_reply_chain_is_the_conversation(teams, connector, runtime, tmp_path):
    _load(runtime, tmp_path, ("leave.md", LEAVE, None), ("expenses.md", EXPENSES, None))
    thread = f"{CHANNEL};messageid=1700000000001"
    _, reply = _ask(teams, connector, "<at>PolicyBot</at> How many vacation days do I get?", conversation=thread,
                    kind="channel", mention=True)
    assert reply.conversation_id == thread and "25 days" in reply.text
    first = _interactions(runtime)[0]
    assert first.question == "How many vacation days do I get?" and first.conversation_id == thread

    # A follow-up in the same reply chain is read with the chain's history; the same words elsewhere are not.
    _, follow = _ask(teams, connector, "<at>PolicyBot</at> and for part-timers?", conversation=thread,
                     kind="channel", mention=True)
    assert "Reading this as" in follow.text and "Reading this as" not in reply.text
    _ask(teams, connector, "<at>PolicyBot</at> and for part-timers?", conversation=f"{CHANNEL};messageid=17000000009",
         kind="channel", mention=True)
    rows = _interactions(runtime)
    assert rows[1].question == "and for part-timers?" and "vacation" in (rows[1].rewritten_question or "").lower()
    assert rows[2].rewritten_question is None


def test_channel_and_group_messages_without_mention_are_ignored_personal_answered(teams, connector, runtime,
                                                                                   tmp_path):
    _load(runtime, tmp_path, ("leave.md", LEAVE, None))
    for conversation, kind in ((f"{CHANNEL};messageid=1700000000002", "channel"), (GROUP, "groupChat")):
        status, _ = teams.post(message(connector, "How many vacation days do I get?", conversation=conversation,
                                       kind=kind))
        assert status == 202
    teams.wait_idle()
    assert connector.sent == [] and _interactions(runtime) == []

    # Mentioned in the group chat: answered there.
    _, reply = _ask(teams, connector, "<at>PolicyBot</at> How many vacation days do I get?", conversation=GROUP,
                    kind="groupChat", mention=True)
    assert reply.conversation_id == GROUP and "25 days" in reply.text
    # Personal chat needs no mention.
    _, reply = _ask(teams, connector, "How many vacation days do I get?")
    assert reply.conversation_id == PERSONAL and "25 days" in reply.text


def test_a_redelivered_message_is_answered_once(teams, connector, runtime, tmp_path):
    _load(runtime, tmp_path, ("leave.md", LEAVE, None))
    activity = message(connector, "How many vacation days do I get?")
    assert teams.post(activity)[0] == 202
    assert teams.post(activity)[0] == 202
    teams.wait_idle()
    assert len(connector.messages()) == 1 and len(_interactions(runtime)) == 1


# ------------------------------------------------------------------------------------------------- feedback


def test_feedback_invoke_is_recorded_and_a_second_vote_replaces_it(teams, connector, runtime, tmp_path):
    _load(runtime, tmp_path, ("leave.md", LEAVE, None))
    _, reply = _ask(teams, connector, "How many vacation days do I get?")
    [row] = _interactions(runtime)

    status, body = teams.post(feedback_invoke(connector, reply.activity_id, "like", "Clear and quick"))
    assert (status, body) == (200, b"")
    assert _feedback_rows(runtime) == [(row.id, EMPLOYEE, "teams", 1, "Clear and quick")]

    status, body = teams.post(feedback_invoke(connector, reply.activity_id, "dislike", "Actually I'm part-time"))
    assert (status, body) == (200, b"")
    assert _feedback_rows(runtime) == [(row.id, EMPLOYEE, "teams", -1, "Actually I'm part-time")]

    # Another user's vote is their own; an unknown message still gets 200 (Teams insists) and records nothing.
    assert teams.post(feedback_invoke(connector, reply.activity_id, "like", user=ADMIN))[0] == 200
    assert teams.post(feedback_invoke(connector, "no-such-message", "like"))[0] == 200
    assert teams.post(feedback_invoke(connector, reply.activity_id, "like", conversation="a:1other-chat"))[0] == 200
    odd = feedback_invoke(connector, reply.activity_id, "like")
    odd["value"]["actionValue"]["reaction"] = "meh"
    assert teams.post(odd)[0] == 200
    rows = _feedback_rows(runtime)
    assert [(r[1], r[3]) for r in rows] == [(ADMIN, 1), (EMPLOYEE, -1)]

    # Other invokes are botbuilder's: not implemented here, and the status goes through as is.
    other = feedback_invoke(connector, reply.activity_id, "like")
    other["name"] = "composeExtension/query"
    assert teams.post(other)[0] == 501
    assert connector.messages() == [reply]  # votes are acknowledged by Teams' own form, not by a message


# ------------------------------------------------------------------------------------------------- uploads


def test_admin_upload_in_personal_chat_is_ingested_and_answers_use_it(teams, connector, runtime):
    url = connector.add_file("travel.md", TRAVEL.encode(), "text/markdown")
    teams.post(message(connector, "upload", user=ADMIN, attachments=[file_attachment("travel.md", url)]))
    [reply] = connector.wait_for_messages(1)
    assert reply.text.startswith("Added “Travel Policy” (version 1,"), reply.text
    assert _documents(runtime) == [("Travel Policy", "travel.md", ADMIN, 1)]
    assert connector.of_type("typing")

    # `upload TITLE` names the document; the same file name replaces it (version 2).
    connector.add_file("travel.md", TRAVEL.replace("180 EUR", "200 EUR").encode(), "text/markdown")
    teams.post(message(connector, "upload Business Travel", user=ADMIN,
                       attachments=[file_attachment("travel.md", url)]))
    assert "version 2" in connector.wait_for_messages(2)[1].text
    assert _documents(runtime) == [("Business Travel", "travel.md", ADMIN, 2)]

    _, answer = _ask(teams, connector, "How much can I spend on a hotel in a capital city?")
    assert "200 EUR" in answer.text and answer.activity["entities"][0]["citation"][0]["appearance"]["name"] == \
        "Business Travel"


def test_non_admin_upload_is_refused_and_nothing_is_downloaded(teams, connector, runtime):
    url = connector.add_file("travel.md", TRAVEL.encode(), "text/markdown")
    teams.post(message(connector, "upload", user=EMPLOYEE, attachments=[file_attachment("travel.md", url)]))
    [reply] = connector.wait_for_messages(1)
    assert "Only policy admins can upload" in reply.text
    assert connector.downloads() == [] and _documents(runtime) == []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("case, expected", [
    ("missing", "not found (HTTP 404)"),
    ("html", "returned a web page instead of the file"),
    ("refused", "could not be reached"),
    ("server error", "download failed (HTTP 500)"),
    ("empty", "is empty"),
])
def test_bad_or_unreachable_attachment_gives_a_clear_error_and_ingests_nothing(teams, connector, runtime, case,
                                                                               expected):
    if case == "missing":
        url = f"{connector.service_url}files/gone.pdf"
    elif case == "html":
        url = connector.add_file("policy.pdf", b"<!DOCTYPE html><html><body>Sign in</body></html>", "text/html")
    elif case == "refused":
        url = f"http://127.0.0.1:{_closed_port()}/files/policy.pdf"
    elif case == "server error":
        url = connector.add_file("policy.pdf", b"oops", "text/plain", status=500)
    else:
        url = connector.add_file("policy.pdf", b"", "application/pdf")
    teams.post(message(connector, None, user=ADMIN, attachments=[file_attachment("policy.pdf", url)]))
    [reply] = connector.wait_for_messages(1)
    assert reply.text.startswith("Couldn't get policy.pdf: ") and expected in reply.text, reply.text
    assert "Nothing was changed" in reply.text and _documents(runtime) == []


def test_upload_over_the_size_limit_is_refused(runtime, connector):
    runtime.settings = runtime.settings.model_copy(update={"admins": [ADMIN], "max_document_mb": 0.001})
    server = RunningApp(build_app(PolicyBot(runtime), PLATFORMS)).start()
    try:
        url = connector.add_file("travel.md", TRAVEL.encode() * 10, "text/markdown")
        server.post(message(connector, None, user=ADMIN, attachments=[file_attachment("travel.md", url)]))
        [reply] = connector.wait_for_messages(1)
    finally:
        server.stop()
    assert "it is 1.9 KB, over the 1.0 KB upload limit" in reply.text, reply.text
    assert _documents(runtime) == []


def test_unsupported_file_type_is_explained(teams, connector, runtime):
    url = connector.add_file("budget.xlsx", b"PK\x03\x04 not really a spreadsheet", "application/octet-stream")
    teams.post(message(connector, None, user=ADMIN, attachments=[file_attachment("budget.xlsx", url)]))
    [reply] = connector.wait_for_messages(1)
    assert "Upload failed" in reply.text and "supported: pdf, docx, md, txt, html" in reply.text
    assert _documents(runtime) == []


def test_file_in_a_channel_points_to_personal_chat(teams, connector, runtime):
    url = connector.add_file("travel.md", TRAVEL.encode(), "text/markdown")
    teams.post(message(connector, "<at>PolicyBot</at> upload", conversation=f"{CHANNEL};messageid=17000000003",
                       kind="channel", mention=True, user=ADMIN, attachments=[file_attachment("travel.md", url)]))
    [reply] = connector.wait_for_messages(1)
    assert "personal chat" in reply.text and connector.downloads() == [] and _documents(runtime) == []


# ------------------------------------------------------------------------------------------------- commands


def test_help_list_and_remove_commands(teams, connector, runtime, tmp_path):
    _load(runtime, tmp_path, ("leave.md", LEAVE, "https://intranet.example.com/leave"),
          ("expenses.md", EXPENSES, None))

    _, employee_help = _ask(teams, connector, "help")
    assert "`list`" in employee_help.text and "remove" not in employee_help.text
    _, admin_help = _ask(teams, connector, "help", user=ADMIN)
    assert "`remove TITLE`" in admin_help.text and "upload TITLE" in admin_help.text

    _, listing = _ask(teams, connector, "list")
    assert "[Leave Policy](https://intranet.example.com/leave)" in listing.text and "Expenses Policy" in listing.text

    _, refused = _ask(teams, connector, "remove Leave Policy")
    assert "Only policy admins can remove" in refused.text and len(_documents(runtime)) == 2
    # A question that happens to start with "remove" is answered as a question.
    _ask(teams, connector, "remove a coworking desk from my expense claim")
    assert _interactions(runtime)[-1].question == "remove a coworking desk from my expense claim"

    _, removed = _ask(teams, connector, "remove Leave Policy", user=ADMIN)
    assert removed.text.startswith("Removed “Leave Policy”")
    assert [d[0] for d in _documents(runtime)] == ["Expenses Policy"]

    _, upload_hint = _ask(teams, connector, "upload", user=ADMIN)
    assert "Attach the file" in upload_hint.text


def test_welcome_message_when_installed_in_personal_chat(teams, connector):
    update = message(connector, None)
    update.update({"type": "conversationUpdate", "membersAdded": [{"id": BOT["id"]}]})
    update.pop("text")
    assert teams.post(update)[0] == 202
    [reply] = connector.wait_for_messages(1)
    assert "Ask me about our HR and company policies" in reply.text


# ------------------------------------------------------------------------------------------------- HTTP edges


def test_bad_requests_are_rejected(teams, connector):
    assert teams.post(b"not json")[0] == 400
    assert teams.post(b"{}", headers={"Content-Type": "text/plain"})[0] == 415
    assert teams.post({"text": "no type"})[0] == 400
    assert teams.post([1, 2, 3])[0] == 400


def test_activities_msrest_cannot_read(teams, connector):
    """The endpoint reads a few fields itself and builds botbuilder's Activity only where a turn runs: an
    invoke it cannot build is refused, a message is accepted and dropped, and the next one is answered."""
    broken = {"timestamp": "not a date"}
    invoke = {**feedback_invoke(connector, "some-reply", "like"), **broken}
    assert teams.post(invoke)[0] == 400
    assert teams.post({**message(connector, "How many vacation days do I get?"), **broken})[0] == 202
    assert teams.post(message(connector, "hello"))[0] == 202
    time.sleep(0.5)
    [reply] = connector.wait_for_messages(1)
    assert reply.text.startswith("Hi! I answer questions about our HR policies")  # the reply to "hello"


def test_anonymous_mode_refuses_requests_relayed_from_elsewhere(teams, connector, runtime):
    # No app id means nothing is verified (anyone could claim to be an admin), so only direct local callers.
    question = message(connector, "remove Leave Policy", user=ADMIN)
    for header in ({"X-Forwarded-For": "203.0.113.7"}, {"Forwarded": "for=203.0.113.7"}):
        assert teams.post(question, headers=header)[0] == 401
    teams.wait_idle()
    assert connector.sent == [] and _interactions(runtime) == []


def test_unauthenticated_request_is_refused_when_an_app_id_is_set(runtime, connector):
    runtime.settings = runtime.settings.model_copy(update={
        "microsoft_app_id": "3f1c2b4a-1111-4a2b-9c3d-123456789abc", "microsoft_app_password": "secret"})
    server = RunningApp(build_app(PolicyBot(runtime), PLATFORMS)).start()
    try:
        question = message(connector, "How many vacation days do I get?")
        assert server.post(question)[0] == 401
        assert server.post(question, headers={"Authorization": "Bearer not-a-token"})[0] == 401
        assert server.post(question, headers={"Authorization": "Basic dXNlcjpwYXNz"})[0] == 401
        assert server.post(feedback_invoke(connector, "bot-1", "like"))[0] == 401
        server.wait_idle()
    finally:
        server.stop()
    assert connector.sent == [] and _interactions(runtime) == []

"""HR in the loop, end to end: "Ask HR" under an answer → a thread in the HR channel → an HR member's reply →
the employee gets it → it is stored as the interaction's correction → `finetune export` uses it. Slack through
the local Web API (tests/fakes/slack_api.py), Teams through the local Bot Framework connector; real PostgreSQL
and Redis."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import select, text

from adapters.cli import main
from adapters.slack import render
from adapters.slack.escalation import RESOLVE_ACTION
from bot import insights
from bot.core import PolicyBot
from bot.finetune import formats
from bot.records import Escalation
from tests.fakes.slack_api import message
from tests.test_slack import load_leave, run_async, serving, slack_settings

HR_CHANNEL = "CHRTEAM"
HR = "UHRPAT"
EMPLOYEE = "U1ANN"
HR_ANSWER = "You get 25 days & after five years 27. Ask your manager to approve carry-over by March 31."


def button_click(action_id: str, value: str, user: str, message_payload: dict, channel: str) -> dict:
    """block_actions for a button in a message, as Slack posts it."""
    return {
        "type": "block_actions", "api_app_id": "A0POLICY", "token": "legacy-verification-token",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T0POLICY"},
        "container": {"type": "message", "message_ts": message_payload["ts"], "channel_id": channel,
                      "is_ephemeral": False},
        "trigger_id": "1.1234567890.escalatetrigger", "team": {"id": "T0POLICY", "domain": "example"},
        "channel": {"id": channel, "name": "x"}, "message": message_payload, "state": {"values": {}},
        "response_url": "https://hooks.slack.com/actions/T0POLICY/1/abc",
        "actions": [{"type": "button", "action_id": action_id, "block_id": "b", "value": value,
                     "text": {"type": "plain_text", "text": "Ask HR"}, "action_ts": f"{time.time():.6f}"}],
    }


def button(blocks: list[dict], action_id: str) -> dict:
    found = [e for b in blocks if b["type"] == "actions" for e in b["elements"] if e["action_id"] == action_id]
    assert len(found) == 1, blocks
    return found[0]


def escalations(runtime) -> list[Escalation]:
    with runtime.sessions() as s:
        return list(s.scalars(select(Escalation).order_by(Escalation.id)))


@pytest.fixture
def hr_slack_bot(runtime, fake_slack):
    runtime.settings = slack_settings(runtime.settings, fake_slack, hr_channel=HR_CHANNEL, hr_users=[HR])
    return PolicyBot(runtime)


def export_sft(settings, monkeypatch, tmp_path, capsys) -> list[dict]:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    monkeypatch.setenv("POLICYBOT_HOME", str(settings.home))
    monkeypatch.setenv("POLICYBOT_ADMINS", "UADMIN")  # corrections from admins only: HR members count as admins
    monkeypatch.setenv("POLICYBOT_HR_USERS", HR)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    capsys.readouterr()
    assert main(["finetune", "export", "--kind", "sft", "--out", str(tmp_path / "sft"), "--min-examples", "1",
                 "--validation-share", "0", "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["origins"] == {"correction": 1}
    return formats.read_jsonl(tmp_path / "sft" / "train.jsonl")


@run_async
async def test_slack_ask_hr_round_trip_into_the_sft_export(hr_slack_bot, fake_slack, tmp_path, monkeypatch, capsys):
    runtime = hr_slack_bot.runtime
    load_leave(runtime, tmp_path)
    async with serving(hr_slack_bot) as slack:
        question = message("How many vacation days do I get?", user=EMPLOYEE, channel="D1ANN")
        assert (await slack.event(question)).status == 200
        [answer_post] = await fake_slack.wait_for("chat.postMessage")
        blocks = answer_post.args["blocks"]
        ask = button(blocks, render.ESCALATE_ACTION)
        assert button(blocks, render.ESCALATE_ANONYMOUS_ACTION)["value"].startswith("anonymous:")
        answer_message = {"type": "message", "ts": "1767000001.000100", "thread_ts": question["ts"],
                          "blocks": blocks, "text": answer_post.args["text"]}

        # 1. the employee asks HR: a new thread in the HR channel with the question, answer, sources and who
        await slack.interaction(button_click(render.ESCALATE_ACTION, ask["value"], EMPLOYEE, answer_message, "D1ANN"))
        posts = await fake_slack.wait_for("chat.postMessage", 2)
        hr_post = posts[1].args
        assert hr_post["channel"] == HR_CHANNEL and not hr_post.get("thread_ts")
        hr_text = json.dumps(hr_post["blocks"])
        assert f"<@{EMPLOYEE}>" in hr_text and "How many vacation days do I get?" in hr_text
        assert "25 days" in hr_text and "Leave" in hr_text  # the bot's answer and its source
        resolve = button(hr_post["blocks"], RESOLVE_ACTION)
        [ephemeral] = await fake_slack.wait_for("chat.postEphemeral")
        assert "asked the People team" in ephemeral.args["text"]
        hr_ts = f"{1767000000 + 2}.000100"  # the fake's second message ts: the HR thread's root
        [row] = escalations(runtime)
        assert (row.status, row.user_id, row.anonymous, row.hr_conversation, row.hr_thread) == (
            "open", EMPLOYEE, False, HR_CHANNEL, hr_ts)

        # 2. a colleague who is not HR chats in the thread: not relayed
        await slack.event(message("Anyone know?", user="U2BOB", channel=HR_CHANNEL, channel_type="channel",
                                  thread_ts=hr_ts))
        # 3. an HR member replies: the employee gets it in the conversation they asked in, naming who answered
        await slack.event(message(HR_ANSWER.replace("&", "&amp;"), user=HR, channel=HR_CHANNEL,
                                  channel_type="channel", thread_ts=hr_ts))
        posts = await fake_slack.wait_for("chat.postMessage", 3)
        relay = posts[2].args
        assert relay["channel"] == "D1ANN" and relay["thread_ts"] == question["ts"]
        assert f"<@{HR}>" in relay["text"] and "after five years 27" in relay["text"]
        assert "&amp;" in relay["text"] and "&amp;amp;" not in relay["text"]

        # 4. Mark resolved, by HR
        await slack.interaction(button_click(RESOLVE_ACTION, resolve["value"], HR,
                                             {"ts": hr_ts, "blocks": hr_post["blocks"]}, HR_CHANNEL))
        posts = await fake_slack.wait_for("chat.postMessage", 4)
        assert posts[3].args["thread_ts"] == hr_ts and "resolved" in posts[3].args["text"]
    assert len(fake_slack.calls_to("chat.postMessage")) == 4  # the colleague's message was never relayed

    [row] = escalations(runtime)
    assert row.status == "resolved" and row.answered_by == HR and row.resolved_by == HR
    assert row.answer == HR_ANSWER and row.answered_at >= row.created_at
    with runtime.sessions() as s:
        votes = s.execute(text("SELECT user_id, rating, correction FROM feedback")).all()
    assert [tuple(v) for v in votes] == [(HR, -1, HR_ANSWER)]

    # ...which is not a 👎 from a person in the console's charts
    [week] = insights.chart_data(runtime.sessions).weeks
    assert (week["up"], week["down"], week["answers"]) == (0, 0, 1)

    # 5. the HR answer is the target of an SFT example for that question
    [example] = export_sft(runtime.settings, monkeypatch, tmp_path, capsys)
    assert example["messages"][-1]["content"].startswith("You get 25 days")
    assert "How many vacation days do I get?" in example["messages"][-2]["content"]


@run_async
async def test_slack_anonymous_ask_hides_the_asker_and_a_second_click_is_refused(hr_slack_bot, fake_slack,
                                                                                tmp_path):
    load_leave(hr_slack_bot.runtime, tmp_path)
    async with serving(hr_slack_bot) as slack:
        await slack.event(message("When do I need a doctor's note?", user=EMPLOYEE, channel="D1ANN"))
        [answer_post] = await fake_slack.wait_for("chat.postMessage")
        anonymous = button(answer_post.args["blocks"], render.ESCALATE_ANONYMOUS_ACTION)
        payload = {"ts": "1767000001.000100", "blocks": answer_post.args["blocks"]}
        await slack.interaction(button_click(render.ESCALATE_ANONYMOUS_ACTION, anonymous["value"], EMPLOYEE,
                                             payload, "D1ANN"))
        posts = await fake_slack.wait_for("chat.postMessage", 2)
        await fake_slack.wait_for("chat.postEphemeral")
        await slack.interaction(button_click(render.ESCALATE_ACTION, anonymous["value"].replace("anonymous", "named"),
                                             EMPLOYEE, payload, "D1ANN"))
        notes = await fake_slack.wait_for("chat.postEphemeral", 2)
    hr_text = json.dumps(posts[1].args["blocks"]) + posts[1].args["text"]
    assert "anonymous" in hr_text and EMPLOYEE not in hr_text
    assert "already asked HR" in notes[1].args["text"]
    assert len(fake_slack.calls_to("chat.postMessage")) == 2
    [row] = escalations(hr_slack_bot.runtime)
    assert row.anonymous and row.user_id == EMPLOYEE  # kept for the relay, never shown


# ------------------------------------------------------------------------------------------------- Teams

TEAMS_HR_CHANNEL = "19:people-team@thread.tacv2"
TEAMS_HR = "aad-hr-pat-0009"


@pytest.fixture
def hr_teams(runtime):
    from adapters.platforms import PLATFORMS
    from adapters.server import build_app
    from tests.test_teams import RunningApp

    runtime.settings = runtime.settings.model_copy(update={"hr_channel": TEAMS_HR_CHANNEL, "hr_users": [TEAMS_HR]})
    server = RunningApp(build_app(PolicyBot(runtime), PLATFORMS)).start()
    yield server
    server.stop()


def test_teams_ask_hr_round_trip(hr_teams, connector, runtime, tmp_path):
    from tests.test_teams import PERSONAL, _ask
    from tests.test_teams import message as teams_message

    load_leave(runtime, tmp_path)
    _, reply = _ask(hr_teams, connector, "How many vacation days do I get?")
    [card] = reply.activity["attachments"]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert reply.activity["channelData"] == {"feedbackLoop": {"type": "default"}}  # 👍/👎 still there
    named = next(a["data"] for a in card["content"]["actions"] if a["title"] == "Ask HR")

    def submit(data: dict, **kwargs) -> None:
        activity = teams_message(connector, None, **kwargs)
        activity.update({"value": data, "replyToId": reply.activity_id})
        activity.pop("text")
        assert hr_teams.post(activity)[0] == 202
        hr_teams.wait_idle()

    submit(named)
    [hr_post] = connector.messages(TEAMS_HR_CHANNEL)
    assert hr_post.reply_to_id is None  # a new thread, not a reply
    hr_card = json.dumps(hr_post.activity["attachments"][0]["content"])
    assert "Question from Ann Example" in hr_card and "How many vacation days do I get?" in hr_card
    assert "25 days" in hr_card and "Leave" in hr_card
    assert "asked the People team" in connector.messages(PERSONAL)[-1].text
    [row] = escalations(runtime)
    assert (row.platform, row.user_id, row.hr_conversation, row.hr_thread) == (
        "teams", "aad-employee-0002", TEAMS_HR_CHANNEL, hr_post.activity_id)

    # A reply in the HR thread by an HR member (mentioning the bot, as a channel needs) reaches the employee.
    thread = f"{TEAMS_HR_CHANNEL};messageid={hr_post.activity_id}"
    answer = teams_message(connector, f"<at>PolicyBot</at> {HR_ANSWER}", conversation=thread, kind="channel",
                           user=TEAMS_HR, mention=True)
    answer["from"]["name"] = "Pat Rivera"
    before = len(connector.messages(PERSONAL))
    assert hr_teams.post(answer)[0] == 202
    hr_teams.wait_idle()
    relayed = connector.messages(PERSONAL)[before:]
    assert len(relayed) == 1 and "**Pat Rivera** from the People team" in relayed[0].text
    assert HR_ANSWER in relayed[0].text
    assert "Sent to the employee" in connector.messages(thread)[-1].text

    # Someone outside HR in the thread: nothing relayed. Then HR marks it resolved from the card.
    other = teams_message(connector, "<at>PolicyBot</at> me too", conversation=thread, kind="channel",
                          user="aad-someone-else", mention=True)
    assert hr_teams.post(other)[0] == 202
    hr_teams.wait_idle()
    assert len(connector.messages(PERSONAL)) == before + 1
    submit({"policybot": "resolve", "escalation": row.id}, conversation=thread, kind="channel", user=TEAMS_HR)
    assert "Marked resolved" in connector.messages(thread)[-1].text

    [row] = escalations(runtime)
    assert row.status == "resolved" and row.answer == HR_ANSWER and row.answered_by == TEAMS_HR
    with runtime.sessions() as s:
        votes = [tuple(v) for v in s.execute(text("SELECT user_id, platform, rating, correction FROM feedback"))]
    assert votes == [(TEAMS_HR, "teams", -1, HR_ANSWER)]

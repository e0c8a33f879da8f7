"""Answer → Block Kit: pure functions, checked against Slack's limits and escaping rules."""

import json

from adapters.slack import render
from adapters.slack.app import strip_mention
from adapters.slack.uploads import SlackFile, check_file, trusted_file_url
from bot.contract import Answer, DocumentInfo, Source

ID = "0f8fa3a0-1111-4222-8333-444455556666"


def answer(text="You get 25 days [1].", sources=None, kind="extractive", notice=None) -> Answer:
    sources = sources if sources is not None else [
        Source(1, "Leave Policy", "leave.md", "Vacation", None, "https://intranet.example.com/leave", "25 days")]
    return Answer(ID, text, sources, True, False, "extractive", kind, notice=notice)


def sections(blocks):
    return [b["text"]["text"] for b in blocks if b["type"] == "section"]


def test_answer_blocks_sources_and_feedback():
    message = render.render_answer(answer())
    assert [b["type"] for b in message.blocks] == ["section", "context", "context_actions"]
    assert sections(message.blocks) == ["You get 25 days [1]."]
    assert message.blocks[1]["elements"][0]["text"] == "[1] <https://intranet.example.com/leave|Leave Policy › Vacation>"
    buttons = message.blocks[2]["elements"][0]
    assert buttons["type"] == "feedback_buttons" and buttons["action_id"] == render.FEEDBACK_ACTION
    assert render.parse_feedback_value(buttons["positive_button"]["value"]) == (1, ID)
    assert render.parse_feedback_value(buttons["negative_button"]["value"]) == (-1, ID)
    assert message.text.startswith("You get 25 days [1].") and "Leave Policy › Vacation" in message.text


def test_source_without_link_shows_its_title_and_everything_is_escaped():
    sources = [
        Source(1, "Pay & <Bonus>", "pay.pdf", "", 4, None, "x"),
        Source(2, "Travel", "t.md", "Hotels › Caps", None, "file:///srv/travel.md", "x"),  # not a web link
        Source(3, "Odd|Link", "o.md", "A>B", None, "https://x.example/a b?q=1&r=<2>|x", "x"),
    ]
    message = render.render_answer(answer("Ask <!channel> & **everyone** [1][2][3].", sources))
    context = message.blocks[1]["elements"][0]["text"].split("\n")
    assert context[0] == "[1] Pay &amp; &lt;Bonus&gt;, p. 4"
    assert context[1] == "[2] Travel › Hotels › Caps"
    assert context[2] == "[3] <https://x.example/a%20b?q=1&amp;r=%3C2%3E%7Cx|Odd|Link › A&gt;B>"
    assert sections(message.blocks) == ["Ask &lt;!channel&gt; &amp; *everyone* [1][2][3]."]
    assert "<!channel>" not in json.dumps(message.blocks) and "<!channel>" not in message.text


def test_markdownish_text_becomes_mrkdwn():
    text = "## Carry-over\n**Unused days** expire on *March 31*.\n- first\n* second\n[Portal](https://hr.example.com/?a=1&b=2)"
    assert render.to_mrkdwn(text) == ("*Carry-over*\n*Unused days* expire on _March 31_.\n• first\n• second\n"
                                      "<https://hr.example.com/?a=1&amp;b=2|Portal>")
    assert render.to_mrkdwn("5 * 3 = 15 and 2*x") == "5 * 3 = 15 and 2*x"


def test_long_answers_are_split_within_slack_limits():
    paragraph = ("Employees accrue vacation monthly and may carry over unused days until March 31. " * 30).strip()
    long_text = "\n\n".join([paragraph] * 12) + " [1]"  # ~30,000 characters
    message = render.render_answer(answer(long_text))
    texts = sections(message.blocks)
    assert len(texts) > 10 and all(len(t) <= render.SECTION_LIMIT for t in texts)
    assert "".join(texts).replace(" ", "").replace("\n", "") == long_text.replace(" ", "").replace("\n", "")
    assert message.blocks[-1]["type"] == "context_actions" and len(message.blocks) <= render.MAX_BLOCKS

    endless = "word " * 60000  # 300,000 characters: more than 50 blocks can hold
    capped = render.render_answer(answer(endless))
    assert len(capped.blocks) == render.MAX_BLOCKS and capped.blocks[-1]["type"] == "context_actions"
    assert "answer shortened" in sections(capped.blocks)[-1]
    assert len(capped.text) <= render.FALLBACK_LIMIT


def test_split_never_cuts_an_entity_or_exceeds_the_limit():
    text = render.escape("&" * 7000)
    pieces = render.split_text(text, 3000)
    assert all(len(p) <= 3000 for p in pieces) and "".join(pieces) == text
    assert all(p.startswith("&amp;") and p.endswith("&amp;") for p in pieces)


def test_no_feedback_buttons_on_smalltalk_errors_and_rate_limits_and_notice_shown():
    for kind in ("smalltalk", "error", "limited"):
        blocks = render.render_answer(answer("Hi!", [], kind=kind)).blocks
        assert [b["type"] for b in blocks] == ["section"], kind
    refusal = render.render_answer(answer("I couldn't find that.", [], kind="refusal")).blocks
    assert refusal[-1]["type"] == "context_actions"  # a refusal can be wrong too
    noticed = render.render_answer(answer(notice="Your message was long & cut.")).blocks
    assert noticed[0] == {"type": "context", "elements": [{"type": "mrkdwn", "text": "Your message was long &amp; cut."}]}


def test_feedback_values_are_parsed_strictly():
    assert render.parse_feedback_value(render.feedback_value(-1, ID)) == (-1, ID)
    for bad in (None, "", "+2:" + ID, "+1:", "+1:<script>", "up:" + ID):
        assert render.parse_feedback_value(bad) is None


def test_feedback_modal_roundtrip():
    view = render.feedback_modal(ID, "C1", "1767000000.000100")
    values = {"wrong": {"wrong": {"type": "plain_text_input", "value": "  too vague "}},
              "correction": {"correction": {"type": "plain_text_input", "value": None}}}
    metadata, comment, correction = render.parse_feedback_submission({**view, "state": {"values": values}})
    assert metadata == {"interaction_id": ID, "channel": "C1", "thread_ts": "1767000000.000100"}
    assert (comment, correction) == ("too vague", None)


def test_documents_list_and_help():
    docs = [DocumentInfo(1, "Leave & Absence", "leave.md", "https://x.example/leave", 2, 14, "2026-05-01T10:00:00"),
            DocumentInfo(2, "Travel", "travel.pdf", None, 1, 3, None)]
    text = render.documents_text(docs)
    assert "<https://x.example/leave|Leave &amp; Absence> (version 2, 14 passages, updated 2026-05-01)" in text
    assert "• Travel (version 1, 3 passages)" in text
    assert "No documents yet" in render.documents_text([])
    assert "`/hr upload`" in render.help_text("/hr")


def test_mentions_are_stripped_from_questions():
    assert strip_mention("<@UBOT> how many days?", "UBOT") == "how many days?"
    assert strip_mention("hey <@UBOT|policybot>, what about <@U2>?", "UBOT") == "hey , what about <@U2>?"
    assert strip_mention("<@UBOT> hi", None) == "hi"


def test_upload_checks_and_trusted_download_hosts():
    assert check_file(SlackFile("F1", "a.md", 10, "u"), 100) is None
    assert "unsupported file type '.exe'" in check_file(SlackFile("F1", "a.exe", 10, "u"), 100)
    assert "(no extension)" in check_file(SlackFile("F1", "README", 10, "u"), 100)
    api = "https://slack.com/api/"
    assert trusted_file_url("https://files.slack.com/files-pri/T1-F1/download/a.pdf", api)
    assert not trusted_file_url("https://files.slack.com.evil.example/a.pdf", api)
    assert not trusted_file_url("http://files.slack.com/a.pdf", api)  # never send the token in the clear
    assert trusted_file_url("http://127.0.0.1:9000/files/F1/a.md", "http://127.0.0.1:9000/api/")
    assert not trusted_file_url("http://127.0.0.1:9001/files/F1/a.md", "http://127.0.0.1:9000/api/")


def test_a_long_documents_list_stays_one_message():
    docs = [DocumentInfo(i, f"Policy number {i} with a long title", f"p{i}.md", None, 1, 5, None) for i in range(200)]
    text = render.documents_text(docs)
    assert len(text) <= render.LIST_LIMIT + 40 and text.startswith("*200 documents:*")
    assert text.endswith("more.") and "Policy number 0 " in text


def test_manifest_matches_the_code():
    import pytest

    yaml = pytest.importorskip("yaml")
    from pathlib import Path

    from adapters.slack import http
    from adapters.settings import Settings

    manifest = yaml.safe_load((Path(http.__file__).parent / "manifest.yaml").read_text())
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == {
        "app_mentions:read", "chat:write", "im:history", "im:read", "im:write", "commands", "files:read",
        "assistant:write", "users:read", "usergroups:read"}
    settings = manifest["settings"]
    assert set(settings["event_subscriptions"]["bot_events"]) == {
        "app_mention", "message.im", "app_home_opened", "assistant_thread_started"}
    [command] = manifest["features"]["slash_commands"]
    assert command["command"] == Settings.model_fields["slack_command"].default == "/policy"
    urls = {settings["event_subscriptions"]["request_url"], settings["interactivity"]["request_url"], command["url"]}
    assert urls == {f"https://YOUR-HOST{http.PATH}"} and settings["interactivity"]["is_enabled"]

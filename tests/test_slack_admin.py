"""Slack admin commands end to end: /policy upload (modal, file_input, download with the bot token), list,
remove and help, against the fake Slack Web API, with real PostgreSQL and Redis."""

from __future__ import annotations

import json

import pytest

from bot.core import PolicyBot
from tests.fakes.slack_api import FakeSlack, app_mention, slash_command, view_submission
from tests.test_slack import ADMIN, interactions, run_async, serving, slack_settings

POLICY = b"""# Remote Work Policy

## Working abroad
Employees may work from another EU country for up to 30 days a year with their manager's approval.

## Equipment
The company provides a laptop and a monitor for home offices.
"""




@pytest.fixture
def slack_bot(runtime, fake_slack):
    runtime.settings = slack_settings(runtime.settings, fake_slack)
    return PolicyBot(runtime)


def response_url(fake: FakeSlack, name: str = "cmd") -> str:
    return f"{fake.url}/response/{name}"


def upload_values(file: dict | None, title: str | None = None, link: str | None = None) -> dict:
    """state.values of the upload modal as Slack submits it (file_input gives a `files` list)."""
    return {
        "file": {"file": {"type": "file_input", "files": [file] if file else []}},
        "title": {"title": {"type": "plain_text_input", "value": title}},
        "link": {"link": {"type": "url_text_input", "value": link}},
    }


async def submit_upload(slack, user: str, file: dict | None, title=None, link=None):
    return await slack.interaction(view_submission("policybot_upload", user, upload_values(file, title, link),
                                                   private_metadata=json.dumps({"v": 1})))


def documents(bot: PolicyBot) -> list:
    return bot.documents()


# --------------------------------------------------------------------------------------------- upload


@run_async
async def test_admin_uploads_a_document_and_answers_cite_it(slack_bot, fake_slack):
    async with serving(slack_bot) as slack:
        command = slash_command("upload", ADMIN, response_url(fake_slack))
        reply = await slack.command(command)
        assert reply.status == 200 and reply.body == ""  # acknowledged at once; the form opens next
        [form] = await fake_slack.wait_for("views.open")
        view = form.args["view"]
        assert form.args["trigger_id"] == command["trigger_id"] and view["callback_id"] == "policybot_upload"
        file_input = view["blocks"][0]["element"]
        assert file_input["type"] == "file_input" and file_input["max_files"] == 1
        assert file_input["filetypes"] == ["pdf", "docx", "md", "txt", "html"]
        assert [b["block_id"] for b in view["blocks"] if b["type"] == "input"] == ["file", "title", "link", "audiences"]

        file = fake_slack.add_file("remote-work.md", POLICY, "text/markdown")
        submitted = await submit_upload(slack, ADMIN, file, title="Remote Work & Travel",
                                        link="https://intranet.example.com/remote")
        assert submitted.status == 200 and submitted.body == ""  # closes the modal
        [done] = await fake_slack.wait_for("chat.postMessage")
        assert done.args["channel"] == ADMIN
        assert "Added “Remote Work &amp; Travel” (version 1," in done.args["text"] and "passages" in done.args["text"]
        [download] = fake_slack.downloads
        assert download["authorized"] and download["path"].endswith("/remote-work.md")

        await slack.event(app_mention("Can I work from another EU country?"))
        answer = (await fake_slack.wait_for("chat.postMessage", 2))[1]
    [doc] = documents(slack_bot)
    assert (doc.title, doc.link, doc.version, doc.source) == (
        "Remote Work & Travel", "https://intranet.example.com/remote", 1, "remote-work.md")
    assert "30 days" in answer.args["text"]
    assert "<https://intranet.example.com/remote|Remote Work &amp; Travel › Working abroad>" in json.dumps(
        answer.args["blocks"], ensure_ascii=False)


@run_async
async def test_file_known_only_by_id_is_looked_up_with_files_info(slack_bot, fake_slack):
    file = fake_slack.add_file("remote-work.md", POLICY, "text/markdown")
    async with serving(slack_bot) as slack:
        await submit_upload(slack, ADMIN, {"id": file["id"]})
        [done] = await fake_slack.wait_for("chat.postMessage")
    assert fake_slack.calls_to("files.info")[0].args["file"] == file["id"]
    assert "Added “Remote Work Policy”" in done.args["text"]
    assert [d.title for d in documents(slack_bot)] == ["Remote Work Policy"]


@run_async
async def test_non_admin_is_refused_and_nothing_is_ingested(slack_bot, fake_slack):
    file = fake_slack.add_file("remote-work.md", POLICY, "text/markdown")
    async with serving(slack_bot) as slack:
        upload = await slack.command(slash_command("upload", "U1", response_url(fake_slack)))
        remove = await slack.command(slash_command("remove Remote Work Policy", "U1", response_url(fake_slack)))
        # Even a submission of the form (say the admin list changed since it opened) is refused.
        submitted = await submit_upload(slack, "U1", file)
    assert upload.status == 200 and "Only policy admins can upload documents" in upload.json()["text"]
    assert "Only policy admins can remove documents" in remove.json()["text"]
    assert submitted.json() == {"response_action": "errors",
                                "errors": {"file": submitted.json()["errors"]["file"]}}
    assert "Only policy admins" in submitted.json()["errors"]["file"]
    assert fake_slack.calls_to("views.open") == [] and fake_slack.downloads == []
    assert documents(slack_bot) == []


@run_async
async def test_wrong_type_and_oversized_files_are_refused_in_the_form(slack_bot, fake_slack):
    exe = fake_slack.add_file("setup.exe", b"MZ\x90\x00", "application/octet-stream")
    big = fake_slack.add_file("handbook.pdf", b"%PDF-1.7 tiny", "application/pdf", size=11 * 1024 * 1024)
    async with serving(slack_bot) as slack:
        wrong_type = (await submit_upload(slack, ADMIN, exe)).json()
        too_big = (await submit_upload(slack, ADMIN, big)).json()
        no_file = (await submit_upload(slack, ADMIN, None)).json()
        bad_link = (await submit_upload(slack, ADMIN, fake_slack.add_file("a.md", POLICY), link="ftp://x")).json()
    assert wrong_type["response_action"] == "errors" and "unsupported file type '.exe'" in wrong_type["errors"]["file"]
    assert "handbook.pdf is 11 MB, over the 10 MB limit" in too_big["errors"]["file"]
    assert no_file["errors"] == {"file": "Choose a file to upload."}
    assert "link" in bad_link["errors"]
    assert fake_slack.downloads == [] and documents(slack_bot) == []


@run_async
async def test_bad_and_oversized_downloads_are_reported_and_nothing_is_ingested(slack_bot, fake_slack):
    garbage = fake_slack.add_file("benefits.pdf", b"%PDF-1.4\n" + b"\x00\x01garbage" * 50, "application/pdf")
    huge = fake_slack.add_file("handbook.txt", b"x" * (12 * 1024 * 1024), "text/plain")
    streamed = fake_slack.add_file("streamed.txt", b"y" * (10 * 1024 * 1024 + 1), "text/plain", chunked=True)
    async with serving(slack_bot) as slack:
        await submit_upload(slack, ADMIN, garbage)
        [bad] = await fake_slack.wait_for("chat.postMessage")
        await submit_upload(slack, ADMIN, {"id": huge["id"]})  # size known only from files.info
        oversized = (await fake_slack.wait_for("chat.postMessage", 2))[1]
        lying = {**streamed, "size": 1000}  # Slack said 1000 bytes; the (chunked) download is bigger
        await submit_upload(slack, ADMIN, lying)
        cut = (await fake_slack.wait_for("chat.postMessage", 3))[2]
    assert bad.args["channel"] == ADMIN and bad.args["text"].startswith("Upload failed: ")
    assert "benefits.pdf" in bad.args["text"]
    assert "handbook.txt is 12 MB, over the 10 MB limit" in oversized.args["text"]
    assert fake_slack.calls_to("files.info") and len(fake_slack.downloads) == 2  # not downloaded at all
    assert "streamed.txt is over the 10 MB limit" in cut.args["text"]  # cut off while reading
    assert documents(slack_bot) == []


@run_async
async def test_sign_in_page_instead_of_the_file_is_detected(slack_bot, fake_slack):
    file = fake_slack.add_file("leave.txt", b"Employees get 25 days of vacation.", "text/plain")
    fake_slack.login_page = True  # Slack's answer to a download it won't authorize: 200, text/html
    async with serving(slack_bot) as slack:
        await submit_upload(slack, ADMIN, file)
        [told] = await fake_slack.wait_for("chat.postMessage")
    assert fake_slack.downloads[0]["authorized"]  # the token was sent; Slack still said no
    assert "sign-in page instead of leave.txt" in told.args["text"] and "files:read" in told.args["text"]
    assert documents(slack_bot) == []


@run_async
async def test_html_body_with_a_binary_content_type_is_detected(slack_bot, fake_slack):
    from tests.fakes.slack_api import LOGIN_PAGE

    file = fake_slack.add_file("policy.md", b"  \n" + LOGIN_PAGE, "application/octet-stream")
    page = fake_slack.add_file("page.html", b"<!DOCTYPE html><html><head><title>Dress code</title></head><body>"
                               b"<h1>Dress code</h1><p>Business casual is fine every day.</p></body></html>",
                               "text/html")
    async with serving(slack_bot) as slack:
        await submit_upload(slack, ADMIN, file)
        [told] = await fake_slack.wait_for("chat.postMessage")
        await submit_upload(slack, ADMIN, page)  # a real .html document is HTML, and that's fine
        added = (await fake_slack.wait_for("chat.postMessage", 2))[1]
    assert "sign-in page instead of policy.md" in told.args["text"]
    assert "Added “Dress code”" in added.args["text"]
    assert [d.title for d in documents(slack_bot)] == ["Dress code"]


# --------------------------------------------------------------------------------------------- list, remove, help


@run_async
async def test_list_remove_help_and_unknown_subcommands(slack_bot, fake_slack):
    file = fake_slack.add_file("remote-work.md", POLICY, "text/markdown")
    async with serving(slack_bot) as slack:
        await submit_upload(slack, ADMIN, file, link="https://intranet.example.com/remote")
        await fake_slack.wait_for("chat.postMessage")

        assert (await slack.command(slash_command("list", "U1", response_url(fake_slack, "list")))).body == ""
        [listed] = await fake_slack.wait_for("response_url")
        await slack.command(slash_command("remove remote work policy", ADMIN, response_url(fake_slack, "rm")))
        removed = (await fake_slack.wait_for("response_url", 2))[1]
        missing_title = await slack.command(slash_command("remove", ADMIN, response_url(fake_slack)))
        helped = await slack.command(slash_command("help", "U1", response_url(fake_slack)))
        empty = await slack.command(slash_command("", "U1", response_url(fake_slack)))
        unknown = await slack.command(slash_command("frobnicate <now>", "U1", response_url(fake_slack)))

    assert listed.args["response_type"] == "ephemeral"
    assert "<https://intranet.example.com/remote|Remote Work Policy> (version 1," in listed.args["text"]
    assert "Removed “Remote Work Policy”" in removed.args["text"] and documents(slack_bot) == []
    assert "Say which document to remove" in missing_title.json()["text"]
    for reply in (helped, empty):
        assert "`/policy upload`" in reply.json()["text"] and "`/policy remove TITLE`" in reply.json()["text"]
    assert "I don't know `frobnicate`" in unknown.json()["text"] and "`/policy list`" in unknown.json()["text"]
    assert interactions(slack_bot.runtime) == []


@run_async
async def test_custom_command_name(runtime, fake_slack):
    runtime.settings = slack_settings(runtime.settings, fake_slack, slack_command="/hr")
    bot = PolicyBot(runtime)
    async with serving(bot) as slack:
        custom = await slack.command(slash_command("help", "U1", response_url(fake_slack), command="/hr"))
        default = await slack.command(slash_command("help", "U1", response_url(fake_slack), command="/policy"))
    assert custom.status == 200 and "`/hr upload`" in custom.json()["text"]
    assert default.status == 404  # not ours
